"""The evaluate workflow: a checkpoint's accuracy on a test split (what ``spikeforge eval`` calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core import keep_freed_memory
from ..training import evaluate, get_loss
from .build import rebuild

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(path: str | Path, dataset: str | None = None, data_root: str | None = None) -> dict[str, Any]:
    """Rebuild the model a checkpoint was trained with and evaluate it on the test split of its dataset
    (or of ``dataset``, which must give inputs of the same shape)."""
    keep_freed_memory()       # as `fit` does: batches reuse the last one's memory (core.allocator)
    rb = rebuild(path, dataset=dataset, data_root=data_root, progress=False)
    cfg = rb.cfg
    res = evaluate(rb.model, rb.data.test, rb.data.kind, cfg.T, cfg.encoding, loss=get_loss(cfg.loss))
    return {"dataset": cfg.dataset, "model": cfg.model, "method": cfg.method, "test_loss": res["loss"],
            "test_accuracy": res["accuracy"], "test_samples": len(rb.data.test),  # type: ignore[arg-type]
            "step": rb.checkpoint["meta"]["step"]}
