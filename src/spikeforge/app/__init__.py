"""Workflows: what a command does, from a config or a checkpoint to files a user reads.

* ``train(cfg)`` → a run folder (``config.json``, checkpoints, ``metrics.csv``, TensorBoard, ``summary.json``);
* ``evaluate_checkpoint(path)`` → test accuracy; ``run_report(path)`` → ``report.json`` and plots;
* ``export_checkpoint(path, out)`` → a NIR file, checked against the model before it is written;
* ``import_nir(file, out, dataset)`` → a checkpoint of a NIR graph that ``eval`` and ``report`` take;
* ``convert_run(run_dir, T)`` → an ANN twin's run as SNN checkpoints per ``T`` and ``conversion.json``;
* ``rebuild(path)`` → the config, data and model of a checkpoint (the one place that rebuilds a model);
* ``list_names(kind)`` → what ``spikeforge list`` prints.

``spikeforge.cli`` only parses arguments and calls these.
"""

from .build import Rebuilt, data_from_config, model_from_config, neuron_from_config, rebuild, registries, validate
from .config import FIELD_HELP, ConfigError, TrainConfig, load_config, read_config_file
from .convert import TWIN_METHODS, convert_run
from .evaluate import evaluate_checkpoint
from .export import ExportTargetError, export_checkpoint, import_nir
from .listing import LISTS, list_names
from .report import run_report
from .rundir import SAFE_ON_RESUME
from .train import layer_firing_rates, sample_spikes, threads, train

__all__ = ["TrainConfig", "ConfigError", "load_config", "read_config_file", "FIELD_HELP", "validate", "registries",
           "neuron_from_config", "model_from_config", "data_from_config", "rebuild", "Rebuilt", "train",
           "evaluate_checkpoint", "run_report", "layer_firing_rates", "sample_spikes", "threads", "LISTS",
           "list_names", "SAFE_ON_RESUME", "export_checkpoint", "import_nir", "ExportTargetError",
           "convert_run", "TWIN_METHODS"]
