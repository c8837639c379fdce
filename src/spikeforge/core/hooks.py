"""Whether a module must run through its own call: a fast path that computes a module's output some other way
(a fused kernel in place of ``module(x)``) skips ``nn.Module.__call__``, so it would skip the module's hooks and
the global module hooks too."""

from __future__ import annotations

from torch import nn

__all__ = ["hooks_why_not"]


def hooks_why_not(m: nn.Module) -> str | None:
    """Why ``m`` must run through ``m(x)`` because of hooks (its own forward / backward hooks, or global module
    hooks), or ``None``."""
    if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
        return "the module has hooks, which run with the module's own call"
    g = nn.modules.module
    if (g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks
            or g._global_backward_pre_hooks):
        return "global module hooks are registered, which expect every module's own call"
    return None
