"""The Triton backend beyond the correctness table (which runs it under TRITON_INTERPRET=1): kernels
compile for a real GPU target without a GPU, the mixed-precision rule, torch.compile beside Triton."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from spikeforge import neurons as N
from tests.conftest import ROOT, has_module

pytestmark = pytest.mark.skipif(not has_module("triton"), reason="triton not installed (the [gpu] extra)")

AOT = """
import os, torch
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from spikeforge import neurons as N
from spikeforge.surrogate import Sigmoid
from spikeforge.kernels.driver import plan_for, spec_for
from spikeforge.kernels.spec import layout
from spikeforge.kernels.triton_codegen import load_module
from examples.custom_neuron import AdEx

def sig(fn):
    out = {}
    for a in fn.arg_names:
        if a in ("STORE_CK", "HAS_FIN", "NG", "BLOCK"):
            out[a] = "constexpr"
        elif a in ("T", "N", "XS", "K"):
            out[a] = "i32"
        else:
            out[a] = "*fp64" if a == "part_ptr" else "*fp32"
    return out

for m in (N.IF(), N.LIF(), N.PLIF(), N.ALIF(), N.CUBALIF(), N.Izhikevich(), N.MultiSpike(), AdEx(surrogate=Sigmoid())):
    x = torch.zeros(4)
    plan = plan_for(type(m).step_fn, m.init_state(x), m.params())
    rt = plan.split.runtime
    spec = spec_for(plan, (False,) * len(rt), tuple(r == rt[0] for r in rt), 32)
    mod = load_module(spec, layout(spec))
    for fn, consts in ((mod.fwd, {"STORE_CK": True, "BLOCK": 256}),
                       (mod.bwd, {"HAS_FIN": True, "NG": 1, "BLOCK": 256})):
        k = triton.compile(ASTSource(fn=fn, signature=sig(fn), constexprs=consts), target=GPUTarget("cuda", 80, 32),
                           options={"enable_fp_fusion": False, "num_warps": 4})
        ptx = k.asm["ptx"]
        assert len(k.asm["cubin"]) > 1000, type(m).__name__
        assert "fma.rn.f32" not in ptx, f"{type(m).__name__}: a fused multiply-add would change the rounding"
    print(type(m).__name__, "ok")
"""


def test_generated_kernels_compile_for_sm80_without_a_gpu() -> None:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(AOT)], capture_output=True, text=True, cwd=ROOT,
                       timeout=600)
    if "No module named 'triton.backends.nvidia'" in r.stderr:
        pytest.skip("this Triton build has no NVIDIA backend")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == [w for n in ("IF", "LIF", "PLIF", "ALIF", "CUBALIF", "Izhikevich", "MultiSpike",
                                            "AdEx") for w in (n, "ok")]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixed_precision_rule_on_triton(dtype: torch.dtype) -> None:
    x = (torch.rand(10, 3, 40) * 2).to(dtype)
    s, (v,) = N.LIF(backend="triton").run(x)
    s_ref, (v_ref,) = N.LIF(backend="torch").run(x)
    assert s.dtype == dtype and v.dtype == torch.float32
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)


def test_torch_compile_still_works_beside_triton() -> None:
    f = torch.compile(lambda a: torch.sin(a) * 2 + 1)
    a = torch.randn(16)
    torch.testing.assert_close(f(a), torch.sin(a) * 2 + 1)
