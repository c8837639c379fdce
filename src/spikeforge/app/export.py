"""The export workflow: a checkpoint (or a run folder) → a NIR file (what ``spikeforge export`` calls)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ..core import UserError, atomic_write, eval_mode
from ..export import EXPORTERS, NIRExportError, from_nir
from ..export.nir_params import require_nir
from ..layers import fold_bn_pairs
from ..training import save_checkpoint
from .build import IMPORTED_NIR, check_input, data_from_config, first_input, graph_from_bytes, rebuild, validate
from .config import TrainConfig
from .rundir import run_checkpoint

__all__ = ["export_checkpoint", "import_nir", "ExportTargetError"]


class ExportTargetError(UserError, FileExistsError):
    """The output file exists (nothing is overwritten without ``overwrite=True``) or its folder does not."""



def check_target(out: str | Path, overwrite: bool) -> Path:
    """The file a command will write: refused if it is a folder, its folder is missing, or it exists (unless
    ``overwrite``)."""
    if not str(out):
        raise ExportTargetError("-o/--out: an empty path; give the file to write")
    path = Path(out)
    if path.is_dir():
        raise ExportTargetError(f"{path} is a folder; give the file to write")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise ExportTargetError(f"{path} exists; pass --overwrite to replace it")
    if path.parent.exists() and not path.parent.is_dir():
        raise ExportTargetError(f"{path}: {path.parent} is a file, not a folder")
    if not path.parent.is_dir():
        raise ExportTargetError(f"{path}: the folder {path.parent} does not exist")
    return path


def _check_dt(dt: float) -> None:
    if not dt > 0 or dt == float("inf"):
        raise UserError(f"--dt: the duration of one step must be a positive number of seconds, got {dt}")


def import_nir(path: str | Path, out: str | Path, dataset: str, T: int = 8, encoding: str | None = None,
               dt: float = 1e-3, overwrite: bool = False, data_root: str | None = None) -> dict[str, Any]:
    """Write a NIR file as a spikeforge checkpoint that ``eval`` and ``report`` take on ``dataset``.

    The checkpoint stores the file itself (so it rebuilds without it, checked by the checkpoint's hash), the
    imported module's weights and a config naming the dataset, ``T`` and the encoding (``train``'s default
    when not given). The graph must take one sample of the dataset and return ``[T, 1, num_classes]``: that
    is checked before anything is written.
    """
    require_nir()
    target = check_target(out, overwrite)
    _check_dt(dt)
    src = Path(path)
    if src.is_dir():
        raise UserError(f"{src}: a folder, not a NIR file")
    try:
        data_bytes = src.read_bytes()                  # read once: what is checked is what is stored
    except FileNotFoundError:
        raise UserError(f"{src}: no such file") from None
    raw = torch.frombuffer(bytearray(data_bytes), dtype=torch.uint8)
    net = graph_from_bytes(raw, dt, str(src))          # a malformed file: one line naming it
    fields: dict[str, Any] = {"dataset": dataset, "model": IMPORTED_NIR, "T": T, "progress": False,
                              "data_root": data_root}
    if encoding is not None:
        fields["encoding"] = encoding
    cfg = validate(TrainConfig(**fields), imported=True)
    data = data_from_config(cfg)
    check_input(net, data, cfg)
    try:
        save_checkpoint(target, model=net.state_dict(), overwrite=overwrite,
                        meta={"step": 0, "config": cfg.to_dict(), "method": "nir-import", "source": str(src)},
                        extra={"nir": {"file": raw, "dt": dt}})
    except FileExistsError:
        raise ExportTargetError(f"{target} appeared while importing; pass --overwrite to replace it") from None
    return {"file": str(src), "checkpoint": str(target), "dataset": dataset, "T": T, "encoding": cfg.encoding,
            "dt": dt, "nodes": len(net.names), "parameters": sum(p.numel() for p in net.parameters())}


def export_checkpoint(path: str | Path, out: str | Path, fmt: str = "nir", dt: float = 1e-3,
                      overwrite: bool = False, r_mode: str = "keep", data_root: str | None = None) -> dict[str, Any]:
    """Export the model of a checkpoint (or of a run folder's ``best``, else ``last``) to ``out``.

    The graph is checked before it is written: imported back, it must give the BatchNorm-folded model's
    output on the first test sample exactly (``r_mode="fold"``: up to float rounding, at most one spike in a
    thousand). The file is written atomically; an existing ``out`` is refused unless ``overwrite``, also one
    that appears while the export runs.
    """
    nir = require_nir()
    EXPORTERS[fmt]                                     # an unknown format: one line with the choices
    out = check_target(out, overwrite)
    _check_dt(dt)
    ckpt = run_checkpoint(Path(path))
    rb = rebuild(ckpt, progress=False, data_root=data_root)
    x = first_input(rb.data, rb.cfg)                   # [T, 1, ...]
    graph = EXPORTERS[fmt](rb.model, x[0], dt=dt, r_mode=r_mode)
    folded = copy.deepcopy(rb.model)
    fold_bn_pairs(folded)
    with eval_mode(folded), torch.no_grad():
        want = folded(x)
        got = from_nir(graph, dt=dt)(x)
    exact = torch.equal(want, got)
    if not exact and not (r_mode == "fold" and (want != got).float().mean().item() <= 1e-3):
        raise NIRExportError(f"the exported graph does not reproduce {rb.cfg.model}'s output on a test sample "
                             f"(max difference {(want - got).abs().max().item():.3g}); this is a bug, please report it")
    try:
        atomic_write(out, lambda p: nir.write(str(p), graph), overwrite=overwrite)
    except FileExistsError:
        raise ExportTargetError(f"{out} appeared while exporting; pass --overwrite to replace it") from None
    return {"checkpoint": str(ckpt), "model": rb.cfg.model, "format": fmt, "file": str(out), "dt": dt, "r_mode": r_mode,
            "nodes": len(graph.nodes), "edges": len(graph.edges), "checked_on": tuple(x.shape)}
