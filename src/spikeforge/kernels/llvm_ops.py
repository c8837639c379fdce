"""Op-list → LLVM IR, one lane type at a time (a float, or a SIMD vector of floats).

Arithmetic is plain IEEE with no fast-math flags, so ``+ − × ÷`` round exactly as torch's elementwise
kernels do and spikes come out bit-identical to the torch reference. ``scalar / tensor`` is emitted as
torch computes it (reciprocal, then multiply), ``pow`` by 2, 3, ½, −1 as torch special-cases them.
Transcendentals are polynomial (Cephes-style range reduction; ≤ 2 ulp in float32), vectorisable with no
math library: ``exp`` via 2ⁿ built from the exponent bits, ``log`` via the mantissa.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from llvmlite import ir

from .ir import Graph

__all__ = ["Lanes", "IntLanes", "emit_graph", "emit_graph_int"]


class Lanes:
    """A lane type: ``width`` floats (1 = scalar) of ``bits`` 32 or 64, with the integer twin for bit tricks."""

    def __init__(self, bits: int, width: int) -> None:
        self.bits, self.width = bits, width
        self.f = ir.FloatType() if bits == 32 else ir.DoubleType()
        self.i = ir.IntType(bits)
        self.ty = self.f if width == 1 else ir.VectorType(self.f, width)
        self.ity = self.i if width == 1 else ir.VectorType(self.i, width)
        self.bty = ir.IntType(1) if width == 1 else ir.VectorType(ir.IntType(1), width)

    def c(self, v: float) -> ir.Constant:
        if self.width == 1:
            return ir.Constant(self.ty, v)
        return ir.Constant(self.ty, [ir.Constant(self.f, v)] * self.width)

    def ci(self, v: int) -> ir.Constant:
        if self.width == 1:
            return ir.Constant(self.ity, v)
        return ir.Constant(self.ity, [ir.Constant(self.i, v)] * self.width)

    def splat(self, b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        if self.width == 1:
            return x
        v = b.insert_element(ir.Constant(self.ty, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(v, ir.Constant(self.ty, ir.Undefined),
                                ir.Constant(ir.VectorType(ir.IntType(32), self.width), [0] * self.width))

    def suffix(self) -> str:
        base = "f32" if self.bits == 32 else "f64"
        return base if self.width == 1 else f"v{self.width}{base}"


class IntLanes(Lanes):
    """Integer lanes (``bits`` 32 or 64) for the exact integer kernels: ``f``/``ty`` are the integer types
    (what loads and stores use), ``c`` makes integer constants."""

    def __init__(self, bits: int, width: int) -> None:
        super().__init__(64, width)              # the float twin is unused; fill the integer slots
        self.bits = bits
        self.f = self.i = ir.IntType(bits)
        self.ty = self.ity = self.f if width == 1 else ir.VectorType(self.f, width)

    def c(self, v: float) -> ir.Constant:
        return self.ci(int(v))

    def suffix(self) -> str:
        return f"i{self.bits}" if self.width == 1 else f"v{self.width}i{self.bits}"


def _intrinsic(b: ir.IRBuilder, name: str, L: Lanes, *args: ir.Value) -> ir.Value:
    mod = b.module
    fname = f"llvm.{name}.{L.suffix()}"
    fn = mod.globals.get(fname)
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(L.ty, [L.ty] * len(args)), name=fname)
    return b.call(fn, list(args))


def _fma(b: ir.IRBuilder, L: Lanes, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    """``x·y + z``, fused where the CPU has FMA. Only inside the polynomial kernels of exp/log/tanh, whose
    results differ from torch's in the last bit anyway; plain + − × ÷ of the op list are never fused."""
    return _intrinsic(b, "fmuladd", L, x, y, z)


def _horner(b: ir.IRBuilder, L: Lanes, x: ir.Value, coeffs: list[float]) -> ir.Value:
    y = L.c(coeffs[0])
    for c in coeffs[1:]:
        y = _fma(b, L, y, x, L.c(c))
    return y


def _scalef(b: ir.IRBuilder, L: Lanes, y: ir.Value, n: ir.Value) -> ir.Value:
    """``y · 2^n`` for integral ``n`` in one AVX-512 instruction (vscalefps/pd)."""
    mask_t = ir.IntType(L.width)
    name = f"llvm.x86.avx512.mask.scalef.{'ps' if L.bits == 32 else 'pd'}.512"
    fn = b.module.globals.get(name)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(L.ty, [L.ty, L.ty, L.ty, mask_t, ir.IntType(32)]), name=name)
    return b.call(fn, [y, n, ir.Constant(L.ty, ir.Undefined), ir.Constant(mask_t, -1), ir.Constant(ir.IntType(32), 4)])


def _exp(b: ir.IRBuilder, L: Lanes, x: ir.Value) -> ir.Value:
    """e^x = 2^n · e^r with n = round(x / ln 2), |r| <= ln2 / 2.

    2^n is built as 2^(n−1)·2 so that n = 128 (1024 in float64) still scales finitely and anything
    beyond overflows to inf by itself; NaN propagates through the arithmetic; below the smallest normal
    the result is 0. On an AVX-512 vector one ``vscalef`` computes y·2^n instead (five ops fewer, ~2% of
    the benchmark backward): the same values except at n = −126 (−1022), where it returns the tiny or
    subnormal y·2^n that the bit construction flushes to 0; below ``lo_lim`` both give 0.
    """
    if L.bits == 32:
        lo_lim, hi_lim, bias, mant = -87.33654, 89.0, 127, 23
        ln2_hi, ln2_lo = 0.693359375, -2.12194440e-4
    else:
        lo_lim, hi_lim, bias, mant = -708.3964, 710.0, 1023, 52
        ln2_hi, ln2_lo = 0.693145751953125, 1.42860682030941723212e-6
    xc = b.select(b.fcmp_ordered("<", x, L.c(lo_lim)), L.c(lo_lim), x)
    xc = b.select(b.fcmp_ordered(">", xc, L.c(hi_lim)), L.c(hi_lim), xc)
    fx = _intrinsic(b, "floor", L, _fma(b, L, xc, L.c(1.4426950408889634), L.c(0.5)))
    r = _fma(b, L, fx, L.c(-ln2_lo), _fma(b, L, fx, L.c(-ln2_hi), xc))
    if L.bits == 32:
        p = _horner(b, L, r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                              1.6666665459e-1, 5.0000001201e-1])
        y = b.fadd(_fma(b, L, p, b.fmul(r, r), r), L.c(1.0))
    else:
        y = _horner(b, L, r, [1.0 / math.factorial(k) for k in range(13, -1, -1)])
    if L.width * L.bits == 512:     # an AVX-512 vector: one vscalef instead of five integer/float ops
        y = _scalef(b, L, y, fx)
    else:
        n = b.add(b.fptosi(fx, L.ity), L.ci(bias - 1))
        scale = b.bitcast(b.shl(n, L.ci(mant)), L.ty)
        y = b.fmul(b.fmul(y, scale), L.c(2.0))
    return b.select(b.fcmp_ordered("<", x, L.c(lo_lim)), L.c(0.0), y)


def _log(b: ir.IRBuilder, L: Lanes, x: ir.Value) -> ir.Value:
    """log x = e·ln2 + log m, m in [√½, √2) from the float's exponent and mantissa bits."""
    mant, bias = (23, 126) if L.bits == 32 else (52, 1022)
    bits = b.bitcast(x, L.ity)
    e = b.sitofp(b.sub(b.lshr(bits, L.ci(mant)), L.ci(bias)), L.ty)
    half_bits = 0x3F000000 if L.bits == 32 else 0x3FE0000000000000
    mmask = (1 << mant) - 1
    m = b.bitcast(b.or_(b.and_(bits, L.ci(mmask)), L.ci(half_bits)), L.ty)      # m in [0.5, 1)
    small = b.fcmp_ordered("<", m, L.c(0.7071067811865476))
    e = b.select(small, b.fsub(e, L.c(1.0)), e)
    f = b.select(small, b.fsub(b.fadd(m, m), L.c(1.0)), b.fsub(m, L.c(1.0)))  # f = m' − 1, m' in [√½, √2)
    if L.bits == 32:
        z = b.fmul(f, f)
        p = _horner(b, L, f, [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                              1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                              3.3333331174e-1])
        y = b.fmul(b.fmul(p, f), z)
        y = b.fadd(y, b.fmul(e, L.c(-2.12194440e-4)))
        y = b.fsub(y, b.fmul(z, L.c(0.5)))
        y = b.fadd(b.fadd(f, y), b.fmul(e, L.c(0.693359375)))
    else:   # log(1+f) = 2·atanh(s), s = f / (2 + f)
        s = b.fdiv(f, b.fadd(f, L.c(2.0)))
        s2 = b.fmul(s, s)
        p = _horner(b, L, s2, [2.0 / (2 * k + 1) for k in range(11, -1, -1)])
        y = b.fadd(b.fmul(s, p), b.fmul(e, L.c(math.log(2.0))))
    y = b.select(b.fcmp_ordered("==", x, L.c(0.0)), L.c(-math.inf), y)
    y = b.select(b.fcmp_unordered("<", x, L.c(0.0)), L.c(math.nan), y)     # negative or NaN
    return b.select(b.fcmp_ordered("==", x, L.c(math.inf)), x, y)


def _tanh(b: ir.IRBuilder, L: Lanes, x: ir.Value) -> ir.Value:
    ax = _intrinsic(b, "fabs", L, x)
    t = _exp(b, L, b.fmul(ax, L.c(-2.0)))
    big = b.fdiv(b.fsub(L.c(1.0), t), b.fadd(L.c(1.0), t))
    big = b.select(b.fcmp_ordered("<", x, L.c(0.0)), b.fneg(big), big)
    z = b.fmul(x, x)   # small |x|: odd polynomial, no cancellation (Cephes tanhf)
    p = _horner(b, L, z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
                          -3.33332819422e-1])
    small = b.fadd(b.fmul(b.fmul(p, z), x), x)
    return b.select(b.fcmp_ordered("<", ax, L.c(0.625)), small, big)


def _pow(b: ir.IRBuilder, L: Lanes, u: ir.Value, c: ir.Value, const: float | None) -> ir.Value:
    if const is not None:      # torch's special cases of pow(tensor, scalar)
        if const == 2.0:
            return b.fmul(u, u)
        if const == 3.0:
            return b.fmul(b.fmul(u, u), u)
        if const == 1.0:
            return u
        if const == 0.0:
            return L.c(1.0)
        if const == 0.5:
            return _intrinsic(b, "sqrt", L, u)
        if const == -0.5:
            return b.fdiv(L.c(1.0), _intrinsic(b, "sqrt", L, u))
        if const == -1.0:
            return b.fdiv(L.c(1.0), u)
        if const == -2.0:
            return b.fdiv(L.c(1.0), b.fmul(u, u))
    return _exp(b, L, b.fmul(c, _log(b, L, u)))    # a positive base (documented)


_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=="}
_ICMP = {**_CMP, "ne": "!="}
# min/max/clamp as one compare and a select: (predicate, left operand, right operand), picking a[1] if it holds
_SELECT = {"minimum": ("<", 1, 0), "maximum": (">", 1, 0), "clamp_min": ("<", 0, 1), "clamp_max": (">", 0, 1)}
Value = Any          # an llvmlite IR value (llvmlite ships no type hints)
OpEmitter = Callable[[Any, list[Any]], Value]


def _walk(b: ir.IRBuilder, g: Graph, L: Lanes, env: dict[str, Value], outputs: list[str],
          emit: OpEmitter) -> dict[str, Value]:
    """Emit the live nodes of ``g`` in order: inputs from ``env``, bool constants and logic here, every other
    node through ``emit(node, args)`` (the arithmetic of one lane type); returns the named outputs."""
    val: dict[int, Value] = {}
    for i in g.live():
        n = g.nodes[i]
        a = [val.get(j) for j in n.args]
        if n.op == "input":
            v = env[n.attr[0]]
        elif n.op == "const" and isinstance(n.attr[0], bool):
            one = ir.Constant(ir.IntType(1), int(n.attr[0]))
            v = one if L.width == 1 else ir.Constant(L.bty, [one] * L.width)
        elif n.op == "and":
            v = b.and_(a[0], a[1])
        elif n.op == "or":
            v = b.or_(a[0], a[1])
        elif n.op == "not":
            v = b.not_(a[0])
        elif n.op == "where":
            v = b.select(a[0], a[1], a[2])
        elif n.op == "detach":
            v = a[0]
        else:
            v = emit(n, a)
        val[i] = v
    return {k: val[g.outputs[k]] for k in outputs}


def emit_graph(b: ir.IRBuilder, g: Graph, L: Lanes, env: dict[str, Value],
               outputs: list[str]) -> dict[str, Value]:
    """Emit the live nodes of ``g`` with inputs from ``env`` (already of lane type); return the outputs."""
    binops: dict[str, Callable[[Any, Any], Value]] = {"add": b.fadd, "sub": b.fsub, "mul": b.fmul, "div": b.fdiv}
    unary: dict[str, Callable[[Any], Value]] = {
        "recip": lambda u: b.fdiv(L.c(1.0), u), "neg": b.fneg, "abs": lambda u: _intrinsic(b, "fabs", L, u),
        "exp": lambda u: _exp(b, L, u), "log": lambda u: _log(b, L, u), "tanh": lambda u: _tanh(b, L, u),
        "sigmoid": lambda u: b.fdiv(L.c(1.0), b.fadd(L.c(1.0), _exp(b, L, b.fneg(u)))),
        "round": lambda u: _intrinsic(b, "roundeven", L, u), "round_ste": lambda u: _intrinsic(b, "roundeven", L, u),
        "floor": lambda u: _intrinsic(b, "floor", L, u), "floor_ste": lambda u: _intrinsic(b, "floor", L, u),
        "float": lambda u: b.select(u, L.c(1.0), L.c(0.0)),     # one masked move (uitofp of i1 is three ops)
    }

    def emit(n: Any, a: list[Any]) -> Value:
        op = n.op
        if op == "const":
            return L.c(n.attr[0])
        if op in binops:
            return binops[op](a[0], a[1])
        if op in unary:
            return unary[op](a[0])
        if op == "rdiv":
            return b.fmul(b.fdiv(L.c(1.0), a[0]), a[1])
        if op == "shr":                       # ⌊x·2^-k⌋: the scaling by a power of two is exact
            return _intrinsic(b, "floor", L, b.fmul(a[0], L.c(2.0 ** -n.attr[0])))
        if op == "pow":
            c = g.nodes[n.args[1]]
            return _pow(b, L, a[0], a[1], c.attr[0] if c.op == "const" else None)
        if op in _SELECT:                     # torch's NaN and tie behaviour: which operand a comparison keeps
            pred, i, j = _SELECT[op]
            return b.select(b.fcmp_ordered(pred, a[i], a[j]), a[1], a[0])
        if op in _CMP:
            return b.fcmp_ordered(_CMP[op], a[0], a[1])
        if op == "ne":
            return b.fcmp_unordered("!=", a[0], a[1])
        raise NotImplementedError(f"the LLVM backend has no lowering for op {op!r} (lower spikes first)")

    return _walk(b, g, L, env, outputs, emit)


def emit_graph_int(b: ir.IRBuilder, g: Graph, L: IntLanes, env: dict[str, Value],
                   outputs: list[str]) -> dict[str, Value]:
    """Emit the live nodes of ``g`` in integer arithmetic (two's complement, wrapping as torch's integer ops
    do). Only the ops of ``driver.INTEGER_OPS`` occur (checked before compiling): rounding is the identity,
    ``shr`` an arithmetic shift (⌊x / 2^k⌋), ``float(bool)`` 0 or 1."""
    binops: dict[str, Callable[[Any, Any], Value]] = {"add": b.add, "sub": b.sub, "mul": b.mul}

    def emit(n: Any, a: list[Any]) -> Value:
        op = n.op
        if op == "const":
            return L.ci(int(n.attr[0]))
        if op in binops:
            return binops[op](a[0], a[1])
        if op == "neg":
            return b.neg(a[0])
        if op == "abs":
            return b.select(b.icmp_signed("<", a[0], L.ci(0)), b.neg(a[0]), a[0])
        if op in ("round", "round_ste", "floor", "floor_ste"):
            return a[0]
        if op == "shr":
            return b.ashr(a[0], L.ci(n.attr[0]))
        if op == "float":
            return b.select(a[0], L.ci(1), L.ci(0))
        if op in ("minimum", "clamp_max"):
            return b.select(b.icmp_signed("<", a[1], a[0]), a[1], a[0])
        if op in ("maximum", "clamp_min"):
            return b.select(b.icmp_signed(">", a[1], a[0]), a[1], a[0])
        if op in _ICMP:
            return b.icmp_signed(_ICMP[op], a[0], a[1])
        raise NotImplementedError(f"no exact integer lowering for op {op!r}")

    return _walk(b, g, L, env, outputs, emit)
