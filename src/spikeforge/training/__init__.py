"""Training: the loop (``engine``), checkpoints, callbacks, losses, optimisers, datasets by name, runs.

    from spikeforge.training import fit
    result = fit(model, data, T=8, loss=my_loss, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
                 callbacks=[MyCallback()], run_dir="runs/x")
"""

from .callbacks import Callback, CSVLogger, FiringRates, ProgressBar, StepInfo, TensorBoardLogger
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .datasets import DATASETS, DataBundle, build_dataset, list_datasets, to_time_first
from .engine import FitResult, NonFiniteError, Trainer, evaluate, fit
from .losses import LOSSES, get_loss, mean_ce, mse_rate, tet
from .optim import constant, cosine_warmup, optimizer_factory

__all__ = ["fit", "Trainer", "FitResult", "NonFiniteError", "evaluate", "Callback", "StepInfo", "CSVLogger",
           "TensorBoardLogger", "ProgressBar", "FiringRates", "save_checkpoint", "load_checkpoint", "CheckpointError",
           "DataBundle", "DATASETS", "build_dataset", "list_datasets", "to_time_first", "LOSSES", "get_loss",
           "mean_ce", "mse_rate", "tet", "optimizer_factory", "cosine_warmup", "constant"]
