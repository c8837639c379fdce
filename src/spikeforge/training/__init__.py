"""Training: the loop (``engine``), train-step strategies (``steps``), checkpoints, callbacks, losses
(``contrastive``: TCL/STCL), optimisers, batch augmentation (``augment``: ``--augment``).

    from spikeforge.training import fit
    result = fit(model, data, T=8, loss=my_loss, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
                 callbacks=[MyCallback()], run_dir="runs/x", method="bptt")

Datasets by name are ``spikeforge.data.build_dataset``; the workflow from a config to a run folder is
``spikeforge.app.train``.
"""

from .augment import Augment
from .callbacks import Callback, CSVLogger, FiringRates, ProgressBar, StepInfo, TensorBoardLogger
from .checkpoint import (
    CheckpointError,
    CheckpointFallbackWarning,
    find_checkpoint,
    load_checkpoint,
    newest_checkpoint,
    save_checkpoint,
)
from .contrastive import ContrastiveHead, RandomShift, TemporalContrastive, TwoViews, supcon, without_contrastive_head
from .engine import DivergedError, FitResult, NonFiniteError, RunFailed, TooManySkipped, Trainer, evaluate, fit
from .losses import LOSSES, LossError, accuracy, count_correct, get_loss, mean_ce, mse_rate, prepare_loss, tet
from .optim import constant, cosine_warmup, optimizer_factory
from .steps import (
    BPTT,
    METHODS,
    NonFiniteLoss,
    StepContext,
    StepOutput,
    TrainStep,
    get_method,
    mark_prepared,
    prepared_by,
)

__all__ = ["fit", "Trainer", "FitResult", "RunFailed", "NonFiniteError", "DivergedError", "TooManySkipped",
           "evaluate", "Callback", "StepInfo", "CSVLogger", "TensorBoardLogger", "ProgressBar", "FiringRates",
           "save_checkpoint", "load_checkpoint", "CheckpointError", "find_checkpoint", "newest_checkpoint",
           "CheckpointFallbackWarning",
           "LOSSES", "get_loss", "mean_ce", "mse_rate", "tet", "accuracy", "count_correct", "optimizer_factory",
           "cosine_warmup", "constant", "TrainStep", "BPTT", "StepContext", "StepOutput", "NonFiniteLoss",
           "METHODS", "get_method", "prepared_by", "mark_prepared", "prepare_loss", "LossError",
           "TemporalContrastive", "ContrastiveHead", "supcon", "TwoViews", "RandomShift", "without_contrastive_head",
           "Augment"]
