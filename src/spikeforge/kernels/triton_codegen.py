"""Op-list → Triton kernel source: the GPU twin of ``llvm_kernels``, from the same ``KernelSpec``.

One program handles ``BLOCK`` neurons, one lane per neuron, with the time loop inside (every step's
loads are coalesced across lanes). Forward and backward have the same structure as on the CPU:
checkpoints every ``K`` steps; backward replays a segment into a small workspace ``[K, n_state, N]``
and walks it backwards carrying the state adjoint; per-neuron parameter gradients are summed over time
in registers, scalar ones per program (``partials [programs, n]``, summed by the driver in order).

Division is ``div_rn`` (IEEE, as torch) and kernels are launched with ``enable_fp_fusion=False``, so the
forward rounds exactly as the torch reference. The source is written to the kernel cache folder and
imported from there (Triton's JIT reads a function's source file).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from ..core import atomic_write
from .autodiff import _REF
from .ir import Graph
from .spec import KernelSpec, Layout, cache_dir

__all__ = ["triton_source", "load_module"]

_HELPERS = '''
@triton.jit
def _div(a, b):
    # IEEE division as torch: div_rn for float32 (Triton's "/" is approximate there); float64 "/" is IEEE
    if b.dtype == tl.float64:
        return a / b
    else:
        return tl.math.div_rn(a, b)


@triton.jit
def _rint(x):
    # round half to even without libdevice (the interpreter has none): the fraction is exact
    fl = tl.floor(x)
    frac = x - fl
    odd = (fl - 2.0 * tl.floor(fl * 0.5)) != 0.0
    up = (frac > 0.5) | ((frac == 0.5) & odd)
    return tl.where(up, fl + 1.0, fl)


@triton.jit
def _tanh(x):
    ax = tl.abs(x)
    e = _exp(-2.0 * ax)
    big = _div(1.0 - e, 1.0 + e)
    big = tl.where(x < 0.0, -big, big)
    z = x * x
    p = (((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z \\
        - 3.33332819422e-1
    return tl.where(ax < 0.625, p * z * x + x, big)


@triton.jit
def _horner(x, C: tl.constexpr):
    y = x * 0.0 + C[0]
    for i in tl.static_range(1, len(C)):
        y = y * x + C[i]
    return y


@triton.jit
def _exp(x):
    # tl.exp is float32-only; float64 uses the CPU backend's range reduction: e^x = 2^n·e^r, |r| <= ln2/2
    if x.dtype == tl.float64:
        xc = tl.minimum(tl.maximum(x, -708.3964), 710.0)
        n = tl.floor(xc * 1.4426950408889634 + 0.5)
        r = (xc - n * 0.693145751953125) - n * 1.42860682030941723212e-6
        y = _horner(r, (
            1.6059043836821613e-10, 2.08767569878681e-09, 2.505210838544172e-08,
            2.755731922398589e-07, 2.7557319223985893e-06, 2.48015873015873e-05,
            0.0001984126984126984, 0.001388888888888889, 0.008333333333333333, 0.041666666666666664,
            0.16666666666666666, 0.5, 1.0, 1.0))
        scale = ((n.to(tl.int64) + 1022) << 52).to(tl.float64, bitcast=True)
        return tl.where(x < -708.3964, 0.0, tl.where(x != x, x, y * scale * 2.0))
    else:
        return tl.exp(x)


@triton.jit
def _log(x):
    if x.dtype == tl.float64:
        bits = x.to(tl.int64, bitcast=True)
        e = ((bits >> 52) & 0x7FF).to(tl.float64) - 1022.0
        m = ((bits & 0xFFFFFFFFFFFFF) | 0x3FE0000000000000).to(tl.float64, bitcast=True)   # [0.5, 1)
        small = m < 0.7071067811865476
        e = tl.where(small, e - 1.0, e)
        f = tl.where(small, m + m - 1.0, m - 1.0)
        s = f / (f + 2.0)
        y = s * _horner(s * s, (
            0.08695652173913043, 0.09523809523809523, 0.10526315789473684, 0.11764705882352941,
            0.13333333333333333, 0.15384615384615385, 0.18181818181818182, 0.2222222222222222,
            0.2857142857142857, 0.4, 0.6666666666666666, 2.0)) + e * 0.6931471805599453
        y = tl.where(x == 0.0, -float("inf"), y)
        return tl.where(x < 0.0, float("nan"), tl.where(x == float("inf"), x, y))
    else:
        return tl.log(x)
'''

_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def _expr(op: str, a: list[str], const: dict[int, float], args: tuple[int, ...],
          attr: tuple[Any, ...] = ()) -> str:
    # a literal divisor or dividend becomes a tensor of the kernel's dtype (x is always in scope)
    t = [f"(tl.zeros_like(x) + {v})" if j in const else v for j, v in zip(args, a)]
    one = "(tl.zeros_like(x) + 1.0)"
    if op in ("add", "sub", "mul"):
        return f"({a[0]} {'+-*'[('add', 'sub', 'mul').index(op)]} {a[1]})"
    if op == "div":
        return f"_div({t[0]}, {t[1]})"
    if op == "rdiv":
        return f"(_div({one}, {t[0]}) * {a[1]})"
    if op == "recip":
        return f"_div({one}, {t[0]})"
    if op == "neg":
        return f"(-{a[0]})"
    if op in ("exp", "log"):
        return f"_{op}({a[0]})"
    if op == "sigmoid":
        return f"_div({one}, 1.0 + _exp(-{a[0]}))"
    if op in ("abs", "floor"):
        return f"tl.{op}({a[0]})"
    if op == "floor_ste":
        return f"tl.floor({a[0]})"
    if op == "shr":
        return f"tl.floor({a[0]} * {2.0 ** -attr[0]!r})"
    if op in ("round", "round_ste"):
        return f"_rint({a[0]})"
    if op == "tanh":
        return f"_tanh({a[0]})"
    if op == "detach":
        return a[0]
    if op == "float":
        return f"tl.where({a[0]}, 1.0, 0.0)"
    if op in ("minimum", "maximum"):
        return f"tl.{op}({a[0]}, {a[1]})"
    if op == "clamp_min":
        return f"tl.where({a[0]} < {a[1]}, {a[1]}, {a[0]})"
    if op == "clamp_max":
        return f"tl.where({a[0]} > {a[1]}, {a[1]}, {a[0]})"
    if op == "pow":
        c = const.get(args[1])
        special = {2.0: f"({a[0]} * {a[0]})", 3.0: f"({a[0]} * {a[0]} * {a[0]})", 1.0: a[0],
                   0.5: f"tl.sqrt({a[0]})", -1.0: f"_div({one}, {t[0]})",
                   -0.5: f"_div({one}, tl.sqrt({t[0]}))", -2.0: f"_div({one}, {t[0]} * {t[0]})"}
        if c in special:
            return special[c]
        return f"_exp({a[1]} * _log({a[0]}))"
    if op in _CMP:
        return f"({a[0]} {_CMP[op]} {a[1]})"
    if op == "and":
        return f"({a[0]} & {a[1]})"
    if op == "or":
        return f"({a[0]} | {a[1]})"
    if op == "not":
        return f"({a[0]} == 0)"
    if op == "where":
        return f"tl.where({a[0]}, {a[1]}, {a[2]})"
    raise NotImplementedError(f"the Triton backend has no lowering for op {op!r}")


def _emit(g: Graph, env: dict[str, str], outputs: list[str], prefix: str,
          indent: str) -> tuple[list[str], dict[str, str]]:
    """Lines computing the live nodes of ``g``; returns them and the output expressions."""
    lines: list[str] = []
    val: dict[int, str] = {}
    const: dict[int, Any] = {}
    for i in g.live():
        n = g.nodes[i]
        if n.op == "input":
            val[i] = env[n.attr[0]]
            continue
        if n.op == "const":
            const[i] = n.attr[0]
            val[i] = repr(float(n.attr[0])) if not isinstance(n.attr[0], bool) else repr(n.attr[0])
            continue
        if all(a in const for a in n.args) and n.op in _REF:       # fold constant-only nodes in Python
            v = _REF[n.op]([const[a] for a in n.args])
            const[i] = v
            val[i] = repr(bool(v)) if isinstance(v, bool) else repr(float(v))
            continue
        name = f"{prefix}{i}"
        lines.append(f"{indent}{name} = {_expr(n.op, [val[a] for a in n.args], const, n.args, n.attr)}")
        val[i] = name
    return lines, {k: val[g.outputs[k]] for k in outputs}


def triton_source(spec: KernelSpec, lay: Layout) -> str:
    ns, rt = spec.n_state, spec.runtime
    arr_names = [f"ar{j}" for j in range(len(lay.arrays))]
    garr_names = [f"ga{j}" for j in range(len(lay.grad_arrays))]
    env: dict[str, str] = {"x": "x"}
    env.update({f"state{k}": f"st{k}" for k in range(ns)})
    env.update({rt[r]: f"r_{rt[r]}" for r in (*lay.arrays, *lay.scalars)})
    I = " " * 4  # noqa: E741
    # ---- forward ----
    sig = ["x_ptr", "s_ptr", *(f"si{k}" for k in range(ns)), *(f"so{k}" for k in range(ns)),
           *(f"ck{k}" for k in range(ns)), *arr_names, "sc_ptr", "T", "N", "XS", "K", "STORE_CK: tl.constexpr",
           "BLOCK: tl.constexpr"]
    f = ["@triton.jit", f"def fwd({', '.join(sig)}):", f"{I}pid = tl.program_id(0)",
         f"{I}offs = pid * BLOCK + tl.arange(0, BLOCK)", f"{I}m = offs < N"]
    f += [f"{I}st{k} = tl.load(si{k} + offs, mask=m, other=0.0)" for k in range(ns)]
    f += [f"{I}r_{rt[r]} = tl.load({arr_names[j]} + offs, mask=m, other=0.0)" for j, r in enumerate(lay.arrays)]
    f += [f"{I}r_{rt[r]} = tl.load(sc_ptr + {j})" for j, r in enumerate(lay.scalars)]   # in the kernel's dtype
    f += [f"{I}for t in range(0, T):", f"{I * 2}if STORE_CK:", f"{I * 3}if t % K == 0:"]
    f += [f"{I * 4}tl.store(ck{k} + (t // K) * N + offs, st{k}, mask=m)" for k in range(ns)]
    f += [f"{I * 2}x = tl.load(x_ptr + t * XS + offs, mask=m, other=0.0)"]
    outs = ["spike", *(f"state{k}" for k in range(ns))]
    lines, res = _emit(spec.fwd, env, outs, "f", I * 2)
    f += lines
    f += [f"{I * 2}tl.store(s_ptr + t * N + offs, {res['spike']} + tl.zeros_like(x), mask=m)"]
    f += [f"{I * 2}st{k} = {res[f'state{k}']} + tl.zeros_like(x)" for k in range(ns)]
    f += [f"{I}tl.store(so{k} + offs, st{k}, mask=m)" for k in range(ns)]
    # ---- backward ----
    ng = len(lay.grad_scalars)
    sig = ["x_ptr", "gs_ptr", "gx_ptr", *(f"ck{k}" for k in range(ns)), *(f"gf{k}" for k in range(ns)),
           *(f"g0{k}" for k in range(ns)), *arr_names, *garr_names, "part_ptr", "ws_ptr", "sc_ptr", "T", "N", "XS",
           "K", "HAS_FIN: tl.constexpr", "NG: tl.constexpr", "BLOCK: tl.constexpr"]
    b = ["@triton.jit", f"def bwd({', '.join(sig)}):", f"{I}pid = tl.program_id(0)",
         f"{I}offs = pid * BLOCK + tl.arange(0, BLOCK)", f"{I}m = offs < N",
         f"{I}zero = tl.load(x_ptr + offs, mask=m, other=0.0) * 0.0"]   # the kernel's float type
    b += [f"{I}r_{rt[r]} = tl.load({arr_names[j]} + offs, mask=m, other=0.0)" for j, r in enumerate(lay.arrays)]
    b += [f"{I}r_{rt[r]} = tl.load(sc_ptr + {j})" for j, r in enumerate(lay.scalars)]
    for k in range(ns):
        b += [f"{I}if HAS_FIN:", f"{I * 2}gst{k} = tl.load(gf{k} + offs, mask=m, other=0.0)", f"{I}else:",
              f"{I * 2}gst{k} = zero"]
    b += [f"{I}acc_a{j} = zero" for j in range(len(lay.grad_arrays))]
    b += [f"{I}acc_s{j} = zero" for j in range(ng)]
    b += [f"{I}nseg = (T + K - 1) // K", f"{I}for si in range(0, nseg):", f"{I * 2}seg = nseg - 1 - si",
          f"{I * 2}t0 = seg * K", f"{I * 2}L = tl.minimum(K, T - t0)"]
    b += [f"{I * 2}st{k} = tl.load(ck{k} + seg * N + offs, mask=m, other=0.0)" for k in range(ns)]
    b += [f"{I * 2}for k in range(0, L):"]
    b += [f"{I * 3}tl.store(ws_ptr + (k * {ns} + {k}) * N + offs, st{k}, mask=m)" for k in range(ns)]
    b += [f"{I * 3}x = tl.load(x_ptr + (t0 + k) * XS + offs, mask=m, other=0.0)"]
    lines, res = _emit(spec.fwd, env, [f"state{k}" for k in range(ns)], "p", I * 3)
    b += lines + [f"{I * 3}st{k} = {res[f'state{k}']} + zero" for k in range(ns)]
    b += [f"{I * 2}for kk in range(0, L):", f"{I * 3}k = L - 1 - kk", f"{I * 3}t = t0 + k"]
    b += [f"{I * 3}st{k} = tl.load(ws_ptr + (k * {ns} + {k}) * N + offs, mask=m, other=0.0)" for k in range(ns)]
    b += [f"{I * 3}x = tl.load(x_ptr + t * XS + offs, mask=m, other=0.0)",
          f"{I * 3}gsp = tl.load(gs_ptr + t * N + offs, mask=m, other=0.0)"]
    benv = {**env, "g.spike": "gsp", **{f"g.state{k}": f"gst{k}" for k in range(ns)}}
    bouts = ["g.x", *(f"g.state{k}" for k in range(ns)), *(f"g.{rt[r]}" for r in lay.grad_arrays),
             *(f"g.{rt[r]}" for r in lay.grad_scalars)]
    lines, res = _emit(spec.bwd, benv, bouts, "b", I * 3)
    b += lines
    b += [f"{I * 3}tl.store(gx_ptr + t * N + offs, {res['g.x']}, mask=m)"]
    b += [f"{I * 3}gst{k} = {res[f'g.state{k}']} + zero" for k in range(ns)]
    b += [f"{I * 3}acc_a{j} = acc_a{j} + tl.where(m, {res[f'g.{rt[r]}']}, 0.0)"
          for j, r in enumerate(lay.grad_arrays)]
    b += [f"{I * 3}acc_s{j} = acc_s{j} + tl.where(m, {res[f'g.{rt[r]}']}, 0.0)"
          for j, r in enumerate(lay.grad_scalars)]
    b += [f"{I}tl.store(g0{k} + offs, gst{k}, mask=m)" for k in range(ns)]
    b += [f"{I}tl.store({garr_names[j]} + offs, acc_a{j}, mask=m)" for j in range(len(lay.grad_arrays))]
    b += [f"{I}tl.store(part_ptr + pid * NG + {j}, tl.sum(acc_s{j}, axis=0))" for j in range(ng)]
    head = ['"""Generated by spikeforge.kernels.triton_codegen from an op list; do not edit."""', "",
            "import triton", "import triton.language as tl", ""]
    return "\n".join(head + [_HELPERS, "", *f, "", "", *b, ""])


_modules: dict[str, ModuleType] = {}


def load_module(spec: KernelSpec, lay: Layout) -> ModuleType:
    """Write the kernel source (atomically) to the cache folder and import it."""
    key = spec.key
    if key in _modules:
        return _modules[key]
    folder = cache_dir() / "triton"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sf_{key}.py"
    src = triton_source(spec, lay)
    if not path.is_file() or path.read_text() != src:
        atomic_write(path, src)
    mspec = importlib.util.spec_from_file_location(f"spikeforge_triton_{key}", Path(path))
    assert mspec is not None and mspec.loader is not None
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    _modules[key] = mod
    return mod
