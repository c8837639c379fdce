"""What every fused backend shares: planning, the parameter prologue, the autograd function.

``fused_scan(launcher, step_fn, x_seq, state, params, memory)``:

1. ``plan_for`` traces the step once per static configuration and splits off the parameter prologue;
2. the prologue runs with the reference's own arithmetic (Python floats in double, tensors through
   torch — so learnable parameters get their gradient through torch's autograd);
3. each runtime value is a scalar or a per-neuron array (broadcast to one step's shape), and the
   launcher's compiled kernel pair for that pattern runs forward and, in ``_FusedScan.backward``,
   backward. An array is kept for backward as it was given (a per-channel ``[C, 1, 1]`` stays that size)
   and broadcast again there; its per-neuron gradient is summed back to that shape. A launcher with
   ``periodic_arrays`` gets an array that repeats along the leading dims of a step in memory order as one
   period (per-channel channels-last: ``C`` values) and may return its gradient as block rows of a period.

With gradients on, only the input and the state every ``K`` steps are kept for backward, and backward
replays each segment from its checkpoint. The launcher chooses ``K`` (``Launcher.segment``): the CPU kernels
replay a block of neurons at a time into a per-thread buffer, so they keep the initial state only
(``K = T``: 4 bytes per neuron-step for a float32 input, whatever the number of state variables); the GPU
kernels replay every neuron at once, so they keep the state every 2 bytes per neuron-step
(``memory="default"``) or every ``⌈√T⌉`` steps (``memory="lean"``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from ..core import State, StepFn, state_like
from .autodiff import Split, interpret, lower, split, vjp
from .ir import Graph
from .pool import POOL, handing_off
from .spec import KernelSpec, Layout
from .trace import KernelTraceError, flatten_params, trace_step

__all__ = ["Plan", "plan_for", "spec_for", "Launcher", "KernelCache", "fused_scan", "MEMORY_MODES", "FusedBackend",
           "segment_every"]

MEMORY_MODES = ("default", "lean")


@dataclass
class Plan:
    split: Split
    fwd: Any          # lowered body graph
    bwd_raw: Any      # un-lowered body (the vjp is derived per gradient pattern)
    specs: dict[Any, KernelSpec] = field(default_factory=dict)


_plans: dict[Any, Plan | str] = {}
_lock = threading.Lock()


def plan_for(step_fn: StepFn, state: State, params: Any, static: Any = None) -> Plan:
    """Trace (once per static configuration) and split; raises ``KernelTraceError`` if it cannot.

    ``static`` is ``flatten_params(params)[0]`` when the caller has it already."""
    if static is None:
        static, _ = flatten_params(params)
    key = (step_fn, type(state), len(state), static)
    got = _plans.get(key)
    if isinstance(got, str):
        raise KernelTraceError(got)
    if got is None:
        try:
            tr = trace_step(step_fn, state, params)
            sp = split(tr)
            got = Plan(sp, lower(sp.body), sp.body)
        except KernelTraceError as e:
            _plans[key] = str(e)
            raise
        _plans[key] = got
    return got


def spec_for(plan: Plan, is_array: tuple[bool, ...], need_grad: tuple[bool, ...], bits: int,
             int_bits: int = 0) -> KernelSpec:
    """The op lists for one pattern of runtime kinds and wanted gradients (derived once, cached on the plan).
    An integer spec (``int_bits``) has no backward."""
    key = (is_array, need_grad, bits, int_bits)
    got = plan.specs.get(key)
    if got is None:
        sp = plan.split
        wrt = [r for r, g in zip(sp.runtime, need_grad) if g]
        bwd = Graph() if int_bits else lower(vjp(plan.bwd_raw, sp.n_state, sp.runtime, wrt))
        got = plan.specs[key] = KernelSpec(plan.fwd, bwd, sp.n_state, tuple(sp.runtime), is_array, need_grad, bits,
                                           int_bits)
    return got


# ops whose integer result equals the reference's (which computes in float32 where a float meets an integer,
# then truncates the state back): everything but division and the transcendentals
INTEGER_OPS = frozenset({"input", "const", "add", "sub", "mul", "neg", "abs", "minimum", "maximum", "clamp_min",
                         "clamp_max", "lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not", "where", "float",
                         "round", "floor", "round_ste", "floor_ste", "shr"})
INTEGER_DTYPES = {torch.int32: 32, torch.int64: 64}


def integer_reason(step_fn: StepFn, state: State, params: Any) -> str | None:
    """Why the step cannot run as an exact integer kernel (``None`` if it can): an op outside ``INTEGER_OPS``,
    a non-integral constant, or a runtime value the forward reads that is not an integer."""
    static, values = flatten_params(params)
    plan = plan_for(step_fn, state, params, static)
    g = plan.fwd
    for i in g.live():
        n = g.nodes[i]
        if n.op not in INTEGER_OPS:
            return f"integer state: op {n.op!r} has no exact integer form"
        if n.op == "const" and not isinstance(n.attr[0], bool) and not float(n.attr[0]).is_integer():
            return f"integer state: the step uses the non-integer constant {n.attr[0]!r}"
    used = {g.nodes[i].attr[0] for i in g.live() if g.nodes[i].op == "input"}
    sp = plan.split
    rt = interpret(sp.prologue, values) if sp.runtime else {}
    for r in sp.runtime:
        v = rt[r]
        a = torch.as_tensor(v).detach()
        if r in used and not bool(torch.all(a == a.round())):
            return f"integer state: a parameter value the step reads is not an integer ({_describe(v)})"
    return None


def _describe(v: Any) -> str:
    return repr(float(v)) if not isinstance(v, Tensor) or v.numel() == 1 else f"a tensor of shape {tuple(v.shape)}"


class KernelCache:
    """A launcher's compiled kernels by spec key, each built once per process (threads may race to the
    first call of a neuron, so the build runs under a lock)."""

    def __init__(self) -> None:
        self._kernels: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, spec: KernelSpec, build: Callable[[KernelSpec], Any]) -> Any:
        with self._lock:
            k = self._kernels.get(spec.key)
            if k is None:
                k = self._kernels[spec.key] = build(spec)
        return k


class Launcher(Protocol):
    """A backend's way to compile a spec and run its two kernels over neuron blocks."""

    def compile(self, spec: KernelSpec) -> Any: ...

    def layout(self, kernel: Any) -> Layout: ...

    def segment(self, T: int, state_bytes: int, lean: bool) -> int: ...

    def block_size(self, kernel: Any, N: int, replay: int) -> int: ...

    def forward(self, c: Call, x: Tensor, states: list[Tensor], arrays: list[Tensor], s: Tensor,
                out_states: list[Tensor], ck: list[Tensor], keep: bool) -> None: ...

    def backward(self, c: Call, x: Tensor, gs: Tensor, gx: Tensor, ck: list[Tensor], fin: list[Tensor],
                 has_fin: bool, g0: list[Tensor], arrays: list[Tensor], garr: list[Tensor],
                 partials: Tensor) -> None: ...


@dataclass
class Call:
    launcher: Launcher
    kernel: Any
    layout: Layout
    T: int
    N: int
    block: int        # neurons per block (the kernels' unit of work; not the batch)
    K: int
    scalars: list[float]              # scalar runtime values, in layout order
    scalar_tensors: list[Tensor | None]
    dtype: torch.dtype
    device: torch.device
    # an array runtime value as given (e.g. a per-channel [C, 1, 1]) -> the values the kernels read: one per
    # neuron [N], or the first `period` of them when they repeat (a launcher with `periodic_arrays`); and the
    # kernels' gradient of it ([N], or [n_blocks, period] block rows with `block_grads`) -> the gradient of
    # the value as given (summed over the neurons that share an entry)
    flat: Callable[[Tensor], Tensor]
    unflat: Callable[[Tensor, Tensor], Tensor]
    period: int
    block_grads: bool

    @property
    def n_blocks(self) -> int:
        return -(-self.N // self.block)


def _take(c: Call, shape: tuple[int, ...]) -> Tensor:
    """Output memory: pooled (already touched) on the CPU; the caching allocator elsewhere."""
    if c.device.type == "cpu":
        return POOL.take(shape, c.dtype)
    return torch.empty(shape, dtype=c.dtype, device=c.device)


def _dense(c: Call, g: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    """A contiguous gradient (``loss.sum()`` sends an expanded one), copied into pooled memory if needed."""
    if g is not None and g.is_contiguous() and g.dtype == c.dtype:
        return g
    out = _take(c, shape)
    if g is None:
        out.zero_()
    else:
        out.copy_(g)
    return out


def _forward(c: Call, x: Tensor, states: list[Tensor], arrays: list[Tensor], keep: bool
             ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    ns = len(states)
    s = _take(c, (c.T, c.N))
    out_states = [_take(c, (c.N,)) for _ in range(ns)]
    nck = -(-c.T // c.K)
    ck = [_take(c, (nck, c.N)) for _ in range(ns)] if keep else []
    c.launcher.forward(c, x, states, arrays, s, out_states, ck, keep)
    return s, out_states, ck


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, c: Call, x: Tensor, n_state: int, *rest: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.one_step = x.dim() == 1
        if ctx.one_step:             # one step for every t (a static input): the kernels read it with stride 0
            x = x.view(1, c.N).expand(c.T, c.N)
        states, tail = list(rest[:n_state]), rest[n_state:]
        sources = list(tail[:len(c.layout.arrays)])      # array values as given: kept for backward, not their copies
        spikes, out_states, ck = _forward(c, x, states, [c.flat(v) for v in sources], keep=True)
        ctx.c, ctx.n_state, ctx.receive = c, n_state, c.device.type == "cpu" and handing_off()
        ctx.state_numel = [s.numel() for s in states]
        # one segment from a one-value initial state (the resting state): keep that value, not its N copies
        ctx.one_value = [c.K >= c.T and s.numel() == 1 and c.N > 1 for s in states]
        ctx.save_for_backward(x, *(s if one else k for s, k, one in zip(states, ck, ctx.one_value)), *sources)
        return (spikes, *out_states)

    @staticmethod
    def backward(ctx: Any, gs: Tensor | None, *gfin: Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        c: Call = ctx.c
        lay, ns = c.layout, ctx.n_state
        saved = ctx.saved_tensors
        x, ck, sources = saved[0], list(saved[1:1 + ns]), list(saved[1 + ns:])
        arrays = [c.flat(v) for v in sources]
        if not getattr(c.launcher, "broadcast_checkpoint", False):   # a launcher that reads N values
            for k, one in enumerate(ctx.one_value):
                if one:
                    ck[k] = _take(c, (1, c.N)).fill_(float(ck[k]))
        width = getattr(c.launcher, "broadcast_grad", 0)
        if width and gs is not None and gs.numel() > 1 and all(st == 0 for st in gs.stride()):
            gs_d = gs.as_strided((width,), (0,)).to(c.dtype).contiguous()    # loss.sum(): one value, W copies
        else:
            gs_d = _dense(c, gs, (c.T, c.N))
        has_fin = any(g is not None for g in gfin)
        fin = [_dense(c, g, (c.N,)) for g in gfin] if has_fin else [gs_d] * ns
        if (ctx.receive and not ctx.one_step and gs_d is gs and not torch.is_grad_enabled()
                and POOL.receive(gs_d)):
            gx = gs_d      # a pool's gradient handed on (pool.handoff): each element is read before it is written
        else:
            gx = _take(c, (c.N,) if ctx.one_step else (c.T, c.N))    # one input step: its gradient summed over t
        g0 = [torch.empty(c.N, dtype=c.dtype, device=c.device) for _ in range(ns)]
        garr = [torch.zeros(c.n_blocks, c.period, dtype=c.dtype, device=c.device) if c.block_grads
                else torch.empty(c.N, dtype=c.dtype, device=c.device) for _ in lay.grad_arrays]
        partials = torch.zeros((c.n_blocks, max(1, len(lay.grad_scalars))), dtype=torch.float64, device=c.device)
        c.launcher.backward(c, x, gs_d, gx, ck, fin, has_fin, g0, arrays, garr, partials)
        # gradients in the order of the inputs: c, x, n_state, states, arrays, scalar tensors
        gi = iter(garr)
        arr_grads = [c.unflat(next(gi), v) if r in lay.grad_arrays else None for r, v in zip(lay.arrays, sources)]
        sums = partials.sum(dim=0)      # block partials summed in order: the same for any thread count
        sc_grads: list[Tensor | None] = []
        for j, r in enumerate(lay.scalars):
            t = c.scalar_tensors[j]
            if t is None:
                continue
            q = lay.grad_scalars.index(r) if r in lay.grad_scalars else None
            sc_grads.append(None if q is None else sums[q].to(t.dtype).reshape(t.shape))
        # a one-value initial state (the resting state) gets the sum over neurons, when anyone wants it
        wants = ctx.needs_input_grad[3:3 + ns]
        g0_out: list[Tensor | None] = [(g.sum().reshape(1) if want else None) if st_numel == 1 and c.N > 1 else g
                                       for g, st_numel, want in zip(g0, ctx.state_numel, wants)]
        return (None, gx, None, *g0_out, *arr_grads, *sc_grads)


def _leading_broadcast(shape: torch.Size, logical: torch.Size, perm: list[int] | None) -> int:
    """How many leading dims of a step in memory order an array value of ``shape`` is broadcast along (its own
    size 1 there, or no such dim). From the shape, not the strides: a value that is itself an expanded tensor
    (stride 0, one entry behind many) is still a value per position, and gets a gradient per position."""
    own = (1,) * (len(logical) - len(shape)) + tuple(shape)
    order = perm if perm is not None else list(range(len(logical)))
    for k, d in enumerate(order):
        if own[d] != 1 and logical[d] != 1:
            return k
    return len(order)


def _dense_order(x_seq: Tensor) -> list[int] | None:
    """The memory order of the step dims (outermost first) when ``x_seq`` is a permuted dense tensor with time
    outermost but not plain contiguous (e.g. channels-last ``[T, B, C, H, W]``), or one step of it expanded
    over time (time stride 0: a static input); else ``None``."""
    if x_seq.dim() < 3 or x_seq[0].is_contiguous():
        return None
    order = sorted(range(x_seq.dim() - 1), key=lambda d: (-x_seq.stride(d + 1), d))
    step = x_seq[0].permute(*order)
    ok = step.is_contiguous() and x_seq.stride(0) in (0, step.numel())
    return order if ok else None


def fused_scan(launcher: Launcher, step_fn: StepFn, x_seq: Tensor, state: State, params: Any,
               memory: str = "default") -> tuple[Tensor, State]:
    """Run the step over ``x_seq`` with the launcher's compiled kernels (see the module docstring)."""
    if memory not in MEMORY_MODES:
        raise ValueError(f"memory must be one of {MEMORY_MODES}, got {memory!r}")
    static, values = flatten_params(params)
    plan = plan_for(step_fn, state, params, static)
    sp = plan.split
    in_dtype = x_seq.dtype
    int_bits = INTEGER_DTYPES.get(in_dtype, 0)       # integer simulation: no gradient, exact integer arithmetic
    dtype = in_dtype if int_bits else torch.float64 if in_dtype == torch.float64 else torch.float32
    # run in the input's physical order (e.g. channels-last) and hand spikes back in that layout
    perm = _dense_order(x_seq)
    logical = x_seq.shape[1:]
    xs = x_seq.permute(0, *(d + 1 for d in perm)) if perm is not None else x_seq
    T, step_shape = xs.shape[0], xs.shape[1:]
    N = math.prod(step_shape)
    if N == 0:                 # an empty batch: nothing to compute (the result still joins the autograd graph)
        return x_seq * 0, state_like(state, [s.expand(logical).clone() for s in state])
    x = xs.to(dtype).reshape(T, N)
    if x.stride(1) != 1:
        x = x.contiguous()

    def physical(t: Tensor) -> Tensor:
        t = t.to(device=x.device, dtype=dtype).expand(logical)
        return t if perm is None else t.permute(perm)

    def flat(t: Tensor) -> Tensor:
        return physical(t).reshape(N)

    one_value = getattr(launcher, "broadcast_state", False)
    states = [s.to(device=x.device, dtype=dtype).reshape(1) if one_value and s.numel() == 1 else flat(s)
              for s in state]
    states = [s if s.is_contiguous() else s.contiguous() for s in states]
    rt = interpret(sp.prologue, values) if sp.runtime else {}
    is_array, need_grad, scalars, scalar_tensors, sources = [], [], [], [], []
    for r in sp.runtime:
        v = rt[r]
        if isinstance(v, Tensor) and v.numel() > 1:
            sources.append(v.to(device=x.device))
            is_array.append(True)
            need_grad.append(bool(v.requires_grad))
        else:
            scalars.append(float(v.detach()) if isinstance(v, Tensor) else float(v))
            scalar_tensors.append(v if isinstance(v, Tensor) and v.requires_grad else None)
            is_array.append(False)
            need_grad.append(isinstance(v, Tensor) and v.requires_grad)
    # a static input (one step expanded over time, as TimeFold hands it): autograd sees the step itself, so its
    # gradient is summed over time in the kernel instead of written for every step and summed by expand
    base = x_seq._base
    one_step = None
    if (base is not None and getattr(launcher, "one_step_input", False) and T > 1 and x.stride(0) == 0
            and base.dtype == dtype and tuple(base.shape) == tuple(logical) and base.data_ptr() == x_seq.data_ptr()):
        step = base if perm is None else base.permute(perm)      # in memory order (channels-last too)
        one_step = step.reshape(N) if step.is_contiguous() else None
    # array values that repeat along the leading dims of a step in memory order (a per-channel value channels-last:
    # every C neurons) are handed over as one period, when the launcher reads them so
    lead = 0
    if sources and getattr(launcher, "periodic_arrays", False):
        lead = min(_leading_broadcast(v.shape, logical, perm) for v in sources)
    period = math.prod(step_shape[lead:])

    def flat_array(t: Tensor) -> Tensor:
        with torch.no_grad():
            a = physical(t)[(0,) * lead].reshape(period)
        return a if a.is_contiguous() else a.contiguous()

    def unflat(g: Tensor, t: Tensor) -> Tensor:
        g = g.sum(0).view((1,) * lead + tuple(step_shape[lead:])) if g.dim() == 2 else g.view(step_shape)
        if perm is not None:
            g = g.permute([perm.index(d) for d in range(len(perm))])
        return g.sum_to_size(t.shape).to(t.dtype)

    grad = torch.is_grad_enabled() and (x.requires_grad or any(s.requires_grad for s in states) or any(need_grad))
    if not grad or int_bits:
        grad, need_grad = False, [False] * len(need_grad)
    spec = spec_for(plan, tuple(is_array), tuple(need_grad), 64 if dtype == torch.float64 else 32, int_bits)
    kern = launcher.compile(spec)
    ns = sp.n_state
    state_bytes = ns * (8 if dtype == torch.float64 else 4)
    K = min(T, max(1, launcher.segment(T, state_bytes, memory == "lean")))
    block = launcher.block_size(kern, N, K * ns)
    # array gradients summed per block ([n_blocks, period] rows) where those rows are small beside [N]
    block_grads = period < N and -(-N // block) * period <= N // 8 and any(
        g for a, g in zip(is_array, need_grad) if a)
    c = Call(launcher, kern, launcher.layout(kern), T, N, block, K, scalars, scalar_tensors, dtype, x.device,
             flat_array, unflat, period, block_grads)
    if grad:
        sc_inputs = [t for t in scalar_tensors if t is not None]
        outs = _FusedScan.apply(c, x if one_step is None else one_step, ns, *states, *sources, *sc_inputs)
        spikes, finals = outs[0], list(outs[1:])
    else:
        with torch.no_grad():
            spikes, finals, _ = _forward(c, x.detach(), [s.detach() for s in states],
                                         [flat_array(v) for v in sources], keep=False)
    spikes = spikes.view(xs.shape)
    if spikes.dtype != in_dtype:
        spikes = spikes.to(in_dtype)
    final = [f.view(step_shape) for f in finals]
    if perm is not None:
        inv = [perm.index(d) for d in range(len(perm))]
        spikes = spikes.permute(0, *(d + 1 for d in inv))
        final = [f.permute(inv) for f in final]
    return spikes, state_like(state, final)


def segment_every(T: int, state_bytes: int, lean: bool) -> int:
    """The checkpoint interval of a launcher that replays all neurons at once: ``⌈√T⌉`` steps when ``lean``,
    else so that the checkpoints cost 2 bytes per neuron-step."""
    return max(1, math.ceil(math.sqrt(T))) if lean else max(1, -(-state_bytes // 2))


class FusedBackend:
    """What the fused backends share: ``scan`` through a launcher, and "can the step be traced" as the last
    check of ``why_not`` (subclasses check the device and dtype first, then call ``_untraceable``)."""

    name = "fused"
    launcher: Launcher

    def _untraceable(self, step_fn: StepFn, state: State, params: Any) -> str | None:
        try:
            plan_for(step_fn, state, params)
        except KernelTraceError as e:
            return str(e)
        return None

    def scan(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any,
             memory: str = "default") -> tuple[Tensor, State]:
        return fused_scan(self.launcher, step_fn, x_seq, state, params, memory)
