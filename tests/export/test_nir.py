"""NIR export and import: round trips with identical spikes, the parameter mapping against NIR's ODEs, the
``≥``/``>`` threshold at ties, a hand-built graph of every supported node, and one-line refusals."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spikeforge.export import NIRExportError, NIRImportError, from_nir, to_nir
from spikeforge.layers import TimeFold, fold_bn_pairs
from spikeforge.models import create_model
from spikeforge.neurons import CUBALIF, IF, LI, LIF, SpikingNeuron

nir = pytest.importorskip("nir")

EXPORTABLE = ["spiking_mlp_tiny", "sew_resnet_tiny", "spiking_resnet_tiny"]


def _spikes(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every spiking layer's output by module path (an imported graph's by its NIR node, which is the
    exported module's path), and the model's output under ``"output"``."""
    names = getattr(model, "names", {})
    out: dict[str, torch.Tensor] = {}
    hooks = []
    for path, m in model.named_modules():
        if isinstance(m, SpikingNeuron):
            key = path.split(".")[1] if names else path          # layers.<key>[.1]
            name = names.get(key, path)
            hooks.append(m.register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, o)))
    with torch.no_grad():
        out["output"] = model(x)
    for h in hooks:
        h.remove()
    return out


def _trained_like(name: str) -> nn.Module:
    """A zoo model with BatchNorm statistics that make every layer fire sometimes (untrained ones are silent)."""
    torch.manual_seed(0)
    net = create_model(name, in_channels=2, num_classes=10, img_size=16, T=4)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.05, 0.2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(0.1, 0.6)
        if isinstance(m, nn.Linear):
            m.weight.data *= 6
    return net.eval()


@pytest.mark.parametrize("name", EXPORTABLE)
def test_export_import_gives_identical_spikes_at_every_layer(name: str, tmp_path: Path) -> None:
    net = _trained_like(name)
    x = (torch.rand(6, 3, 2, 16, 16) < 0.3).float()
    folded = copy.deepcopy(net)
    fold_bn_pairs(folded)
    nir.write(tmp_path / "m.nir", to_nir(net, x[0], dt=1e-3))           # through the file format too
    back = from_nir(tmp_path / "m.nir", dt=1e-3).eval()
    want, got = _spikes(folded, x), _spikes(back, x)
    assert want.keys() == got.keys()
    for layer, a in want.items():
        if layer != "output":
            assert 0 < a.mean() < 1, f"{name}.{layer} does not fire: the comparison would prove nothing"
        assert torch.equal(a, got[layer]), f"{name}.{layer} differs after the round trip"


def test_folded_batchnorm_changes_spikes_only_at_the_threshold() -> None:
    """BN folded into the conv differs from conv-then-BN by float rounding only: count the spikes that flip."""
    net = _trained_like("sew_resnet_tiny")
    x = (torch.rand(6, 4, 2, 16, 16) < 0.3).float()
    folded = copy.deepcopy(net)
    fold_bn_pairs(folded)
    a, b = _spikes(net, x), _spikes(folded, x)
    layers = [k for k in a if k != "output"]
    flips = sum(int((a[k] != b[k]).sum()) for k in layers)
    total = sum(a[k].numel() for k in layers)
    print(f"BN folded vs not: {flips} of {total} spikes differ")
    assert flips <= 1e-4 * total
    torch.testing.assert_close(a["output"], b["output"], rtol=1e-4, atol=1e-4)


def _euler(node, x: np.ndarray, dt: float) -> np.ndarray:
    """NIR's LIF/IF ODE stepped by forward Euler in float64, firing on ``v > v_threshold``."""
    v, i = np.array(node.v_reset, dtype=np.float64), 0.0
    out = []
    for xt in x:
        if isinstance(node, nir.CubaLIF):          # the current first, the membrane with the new current
            i = i + dt / node.tau_syn * (-i + node.w_in * xt)
            v = v + dt / node.tau_mem * ((node.v_leak - v) + node.r * i)
        elif isinstance(node, nir.LIF):
            v = v + dt / node.tau * ((node.v_leak - v) + node.r * xt)
        else:
            v = v + dt * node.r * xt
        s = (v > node.v_threshold).astype(np.float64)
        v = np.where(s > 0, node.v_reset, v)
        out.append(s)
    return np.stack(out)


@pytest.mark.parametrize("neuron", [LIF(tau=2.0), LIF(tau=5.0, decay_input=False), LIF(tau=3.0, v_reset=-0.2),
                                    IF(), CUBALIF(tau=3.0, tau_syn=5.0),
                                    CUBALIF(tau=2.0, tau_syn=4.0, decay_input=False)],
                         ids=["lif", "lif-no-decay-input", "lif-reset", "if", "cubalif", "cubalif-no-decay-input"])
@pytest.mark.parametrize("dt", [1e-3, 1e-4])
def test_exported_parameters_follow_nirs_ode(neuron: SpikingNeuron, dt: float) -> None:
    net = nn.Sequential(TimeFold(nn.Linear(5, 7)), neuron).eval()
    graph = to_nir(net, torch.rand(1, 5), dt=dt)
    node = graph.nodes["1"]
    x = torch.rand(40, 3, 5) * 6
    drive = net[0](x).detach().double().numpy()
    torch_net = copy.deepcopy(net)
    for m in torch_net.modules():
        if isinstance(m, SpikingNeuron):
            m.backend = "torch"
    want = torch_net.double()(x.double()).detach().numpy()
    got = _euler(node, drive, dt)
    assert (want != got).mean() < 1e-3           # float64 Euler of the ODE vs the Euler step: equal but for ties
    assert want.mean() > 0.05


def test_ties_fire_as_in_spikeforge() -> None:
    """Integer weights and spikes make ``v == v_threshold`` common: spikeforge fires there (``≥``), and so does
    the exported graph, through the threshold nextafter(V_th, −∞)."""
    torch.manual_seed(0)
    lin = nn.Linear(6, 8, bias=False)
    lin.weight.data = torch.randint(-1, 3, (8, 6)).float()
    net = nn.Sequential(TimeFold(lin), IF(v_threshold=2.0)).eval()
    x = (torch.rand(20, 16, 6) < 0.5).float()
    graph = to_nir(net, x[0])
    assert graph.nodes["1"].v_threshold.flat[0] == np.nextafter(np.float32(2.0), np.float32(-1))
    drive = net[0](x)
    v, ties = torch.zeros(16, 8), 0
    for t in range(20):
        v = v + drive[t]
        ties += int((v == 2.0).sum())
        v = torch.where(v >= 2.0, torch.zeros_like(v), v)
    assert ties > 20
    assert torch.equal(from_nir(graph)(x), net(x))


def test_a_hand_built_graph_of_every_supported_node_matches_a_hand_computed_trace() -> None:
    rng = np.random.default_rng(0)
    conv_w, conv_b = rng.normal(0, 0.5, (3, 2, 3, 3)), rng.normal(0, 0.1, 3)
    aff_w, aff_b = rng.normal(0, 0.5, (6, 12)), rng.normal(0, 0.1, 6)
    lin_w = rng.normal(0, 0.5, (4, 6))
    nodes = {
        "in": nir.Input(input_type={"input": np.array([2, 4, 4])}),
        "conv": nir.Conv2d(input_shape=(4, 4), weight=conv_w, stride=1, padding=1, dilation=1, groups=1, bias=conv_b),
        "if": nir.IF(r=np.full((3, 4, 4), 1e3), v_threshold=np.full((3, 4, 4), 0.5), v_reset=np.zeros((3, 4, 4))),
        "avg": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "sum": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
        "aff": nir.Affine(weight=aff_w, bias=aff_b),
        "scale": nir.Scale(scale=np.full(6, 2.0)),
        "lif": nir.LIF(tau=np.full(6, 4e-3), r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.full(6, 0.3),
                       v_reset=np.zeros(6)),
        "lin": nir.Linear(weight=lin_w),
        "out": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("in", "conv"), ("conv", "if"), ("if", "avg"), ("if", "sum"), ("avg", "flat"), ("sum", "flat"),
             ("flat", "aff"), ("aff", "scale"), ("scale", "lif"), ("lif", "lin"), ("lin", "out")]
    net = from_nir(nir.NIRGraph(nodes=nodes, edges=edges), dt=1e-3)
    x = (torch.rand(10, 2, 2, 4, 4) < 0.5).float()
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    F = torch.nn.functional
    v1, v2, outs = torch.zeros(2, 3, 4, 4), torch.zeros(2, 6), []
    for xt in x:                                         # the trace, written out step by step
        v1 = v1 + F.conv2d(xt, t(conv_w), t(conv_b), padding=1)
        s1 = (v1 >= np.nextafter(np.float32(0.5), np.float32(1))).float()
        v1 = v1 * (1 - s1)
        pooled = F.avg_pool2d(s1, 2) + F.avg_pool2d(s1, 2) * 4
        h = (pooled.flatten(1) @ t(aff_w).T + t(aff_b)) * 2.0
        v2 = v2 + 0.25 * (h - v2)
        s2 = (v2 >= np.nextafter(np.float32(0.3), np.float32(1))).float()
        v2 = v2 * (1 - s2)
        outs.append(s2 @ t(lin_w).T)
    want = torch.stack(outs)
    got = net(x)
    assert float(torch.stack([o.abs().sum() for o in outs]).sum()) > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model,where", [
    (lambda: create_model("spiking_cnn_tiny", in_channels=2, num_classes=10, img_size=16, T=4), "pool1.0: MaxPool2d"),
    (lambda: nn.Sequential(TimeFold(nn.Linear(4, 4)), LIF(v_reset=None)), "1: LIF has a soft .subtractive. reset"),
    (lambda: create_model("spikformer_tiny", in_channels=2, num_classes=10, img_size=16, T=4),
     "patch_embed.pools.3.0: MaxPool2d"),
    (lambda: create_model("seq_csnn_tiny", in_channels=2, num_classes=10, img_size=16, T=4),
     "SequentialCSNN: torch.fx cannot trace"),
    (lambda: create_model("sew_resnet_tiny", in_channels=2, num_classes=10, img_size=16, T=4, cnf="AND"),
     "the operation mul"),
])
def test_what_nir_cannot_express_is_refused_naming_it(model, where: str) -> None:
    with pytest.raises(NIRExportError, match=where):
        to_nir(model().eval(), torch.rand(1, 4) if where.startswith("1:") else torch.rand(1, 2, 16, 16))


def _tiny_graph(**lif):
    p = dict(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3))
    p.update(lif)
    return {"in": nir.Input(input_type={"input": np.array([2])}), "aff": nir.Affine(weight=np.ones((3, 2)),
            bias=np.zeros(3)), "lif": nir.LIF(**p), "out": nir.Output(output_type={"output": np.array([3])})}


@pytest.mark.parametrize("nodes,edges,message", [
    (_tiny_graph(tau=np.array([2e-3, 3e-3, 2e-3])), None, "lif: tau differs between neurons"),
    (_tiny_graph(v_leak=np.full(3, 0.5)), None, "lif: v_leak = 0.5 differs from v_reset"),
    (_tiny_graph(tau=np.full(3, 1e-4)), None, "lif: tau = 0.0001 s is shorter than dt"),
    ({**_tiny_graph(), "lif": nir.Delay(delay=np.ones(3))}, None, "lif: NIR node type Delay is not imported"),
    ({**_tiny_graph(), "aff2": nir.Affine(weight=np.eye(3), bias=np.zeros(3))},
     [("in", "aff"), ("aff", "aff2"), ("aff2", "aff"), ("aff", "lif"), ("lif", "out")],
     r"the graph has a cycle without state through \['aff', 'aff2'\]"),
    ({**_tiny_graph(), "aff": nir.Affine(weight=np.ones((3, 5)), bias=np.zeros(3))}, None,
     r"aff: its input of shape \(1, 1, 2\) \[T, B, ...\] does not fit the node"),
    (_tiny_graph(), [("in", "aff"), ("aff", "lif"), ("lif", "nowhere")], "no node named 'nowhere'"),
])
def test_a_graph_spikeforge_cannot_run_is_refused_naming_the_node(nodes, edges, message: str) -> None:
    edges = edges or [("in", "aff"), ("aff", "lif"), ("lif", "out")]
    with pytest.raises(NIRImportError, match=message):
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))


def test_fold_refuses_a_neuron_fed_by_spikes() -> None:
    net = _trained_like("spiking_resnet_tiny")
    with pytest.raises(NIRExportError, match="r_mode='fold' scales the weights .* its input stem.1 is a LIF"):
        to_nir(net, torch.rand(1, 2, 16, 16), r_mode="fold")


def test_a_file_that_is_not_nir_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "x.nir").write_bytes(b"not hdf5 at all")
    with pytest.raises(NIRImportError, match="x.nir: not a readable NIR file"):
        from_nir(tmp_path / "x.nir")
    with pytest.raises(NIRImportError, match="missing.nir: no such file"):
        from_nir(tmp_path / "missing.nir")


# -- interoperability with the peers (installed --no-deps by make test) ---------------------------------------
def _integer_mlp(decay_input: bool) -> nn.Module:
    """Integer-valued weights and power-of-two leaks: every float operation is exact, so any difference is a
    difference of meaning, not of rounding."""
    torch.manual_seed(1)
    l1, l2 = nn.Linear(20, 30), nn.Linear(30, 5)
    for lin in (l1, l2):
        lin.weight.data = torch.randint(-2, 3, lin.weight.shape).float()
        lin.bias.data = torch.randint(-1, 2, lin.bias.shape).float()
    return nn.Sequential(TimeFold(l1), LIF(tau=4.0, decay_input=decay_input, v_threshold=2.0), TimeFold(l2),
                         LIF(tau=2.0, decay_input=decay_input, v_threshold=2.0)).eval()


def _run_snntorch(theirs: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A snnTorch network (hidden state inside its modules) over ``x [T, B, ...]``, one step per call."""
    import snntorch.utils as su
    su.reset(theirs)
    return _stepwise(lambda xt: (lambda o: o[0] if isinstance(o, tuple) else o)(theirs(xt)), x)


def _run_norse(theirs: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A Norse network (explicit state) over ``x [T, B, ...]``, one step per call."""
    state = None

    def step(xt: torch.Tensor) -> torch.Tensor:
        nonlocal state
        out, state = theirs(xt, state)
        return out

    return _stepwise(step, x)


def _stepwise(step, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([step(xt) for xt in x])


@pytest.mark.peers
@pytest.mark.parametrize("decay_input,r_mode", [(False, "keep"), (True, "fold")])
def test_snntorch_runs_what_we_export(decay_input: bool, r_mode: str) -> None:
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    net = _integer_mlp(decay_input)
    x = (torch.rand(30, 8, 20) < 0.5).float()
    theirs = import_from_nir(to_nir(net, x[0], dt=1e-4, r_mode=r_mode))     # snnTorch assumes dt = 1e-4
    got = _run_snntorch(theirs, x)
    want = net(x)
    assert 0.05 < want.mean() < 0.95
    assert torch.equal(got, want)
    assert torch.equal(from_nir(to_nir(net, x[0], dt=1e-4, r_mode=r_mode), dt=1e-4)(x), want)   # and we read it


@pytest.mark.peers
def test_snntorch_runs_our_current_based_lif() -> None:
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    torch.manual_seed(2)
    lin = nn.Linear(20, 30)
    lin.weight.data, lin.bias.data = torch.randint(-2, 3, (30, 20)).float(), torch.zeros(30)
    net = nn.Sequential(TimeFold(lin), CUBALIF(tau=2.0, tau_syn=4.0, v_threshold=0.5)).eval()
    x = (torch.rand(30, 8, 20) < 0.5).float()
    theirs = import_from_nir(to_nir(net, x[0], dt=1e-4, r_mode="fold"))
    got = _run_snntorch(theirs, x)
    want = net(x)
    assert 0.05 < want.mean() < 0.95
    assert torch.equal(got, want)


@pytest.mark.peers
def test_norse_runs_what_we_export() -> None:
    norse = pytest.importorskip("norse.torch")
    net = _integer_mlp(True)
    x = (torch.rand(30, 8, 20) < 0.5).float()
    theirs = norse.from_nir(to_nir(net, x[0], dt=1e-3), dt=1e-3)
    want = net(x)
    assert 0.05 < want.mean() < 0.95
    assert torch.equal(_run_norse(theirs, x), want)


@pytest.mark.peers
def test_we_run_what_snntorch_exports() -> None:
    """snnTorch's Leaky with reset to zero and no reset delay is an Euler LIF with decay_input=False; its
    exporter needs per-neuron parameter tensors (scalars fail nir 1.0.8's type inference)."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    l1, l2 = nn.Linear(20, 30), nn.Linear(30, 5)
    for lin in (l1, l2):
        lin.weight.data = torch.randint(-2, 3, lin.weight.shape).float()
    theirs = nn.Sequential(l1, snn.Leaky(beta=torch.full((30,), 0.75), threshold=torch.full((30,), 2.0),
                                         init_hidden=True, reset_mechanism="zero", reset_delay=False),
                           l2, snn.Leaky(beta=torch.full((5,), 0.5), threshold=torch.full((5,), 2.0), init_hidden=True,
                                         output=True, reset_mechanism="zero", reset_delay=False))
    x = (torch.rand(30, 8, 20) < 0.5).float()
    graph = export_to_nir(theirs, x[0, 0])
    want = _run_snntorch(theirs, x)
    assert 0.05 < want.mean() < 0.95
    assert torch.equal(from_nir(graph, dt=1e-4)(x), want)


@pytest.mark.peers
def test_norse_exports_are_refused_not_misread() -> None:
    """Norse 1.1 writes tau = dt / tau_mem_inv (1e-5 for its default 0.01 s membrane; its own importer reads
    tau_mem_inv = 1/tau back, so Norse does not round-trip its own files): at dt = 1e-3 that tau is shorter
    than a step, which spikeforge refuses rather than simulating the wrong neuron."""
    norse = pytest.importorskip("norse.torch")
    graph = norse.to_nir(norse.SequentialState(nn.Linear(4, 3), norse.LIFBoxCell()), torch.rand(4))
    with pytest.raises(NIRImportError, match="tau = 1e-05 s is shorter than dt"):
        from_nir(graph, dt=1e-3)


@pytest.mark.parametrize("neuron", [LIF(tau=3.0), LIF(tau=5.0, decay_input=False, v_reset=-0.5), IF(v_threshold=0.7),
                                    CUBALIF(tau=3.0, tau_syn=5.0), CUBALIF(tau=2.0, tau_syn=4.0, decay_input=False)],
                         ids=["lif", "lif-no-decay-input", "if", "cubalif", "cubalif-no-decay-input"])
@pytest.mark.parametrize("r_mode", ["keep", "fold"])
def test_every_exported_neuron_comes_back_the_same(neuron: SpikingNeuron, r_mode: str) -> None:
    torch.manual_seed(3)
    lin = nn.Linear(12, 16)
    lin.weight.data = torch.randint(-2, 3, (16, 12)).float() / 2
    net = nn.Sequential(TimeFold(lin), neuron).eval()
    x = (torch.rand(25, 6, 12) < 0.5).float()
    want = net(x)
    assert 0.02 < want.mean() < 0.98
    back = from_nir(to_nir(net, x[0], dt=1e-3, r_mode=r_mode), dt=1e-3)
    if r_mode == "keep":
        assert torch.equal(back(x), want)
    else:                     # folding rescales weights: equal up to float rounding, so compare spike by spike
        assert (back(x) != want).float().mean() < 0.01


@pytest.mark.parametrize("readout", [LI(tau=3.0), LI(tau=4.0, decay_input=False, v_rest=0.25)],
                         ids=["li", "li-no-decay-input-rest"])
def test_the_leaky_integrator_readout_follows_nirs_ode_and_comes_back(readout: LI) -> None:
    torch.manual_seed(4)
    net = nn.Sequential(TimeFold(nn.Linear(6, 9)), LIF(tau=2.0), TimeFold(nn.Linear(9, 3)), readout).eval()
    x = (torch.rand(30, 5, 6) < 0.6).float() * 3
    graph = to_nir(net, x[0], dt=1e-3)
    node = graph.nodes["3"]
    assert isinstance(node, nir.LI)
    drive = net[2](net[1](net[0](x))).detach().double().numpy()
    v, trace = np.full_like(drive[0], node.v_leak.flat[0]), []
    for xt in drive:                                    # NIR's LI stepped by forward Euler in float64
        v = v + 1e-3 / node.tau * ((node.v_leak - v) + node.r * xt)
        trace.append(v)
    want = net(x)
    np.testing.assert_allclose(np.stack(trace), want.detach().double().numpy(), rtol=1e-5, atol=1e-5)
    assert torch.equal(from_nir(graph, dt=1e-3)(x), want)


@pytest.mark.peers
def test_norse_passes_an_li_node_through_unchanged() -> None:
    """Norse 1.1's importer has no LI mapping: it replaces the node by an identity, so a readout exported for
    Norse is read as the layer feeding it. Pinned so the docs' statement is checked."""
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(5)
    net = nn.Sequential(TimeFold(nn.Linear(6, 9)), LIF(tau=2.0), TimeFold(nn.Linear(9, 3)), LI(tau=4.0)).eval()
    x = (torch.rand(30, 5, 6) < 0.6).float() * 3
    theirs = norse.from_nir(to_nir(net, x[0], dt=1e-3), dt=1e-3)
    torch.testing.assert_close(_run_norse(theirs, x), net[2](net[1](net[0](x))).detach(), rtol=1e-6, atol=1e-6)


# -- recurrence ------------------------------------------------------------------------------------------------
def _recurrent_graph(nested: bool) -> tuple[object, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    w_in, w_rec = rng.integers(-2, 3, (5, 6)).astype(float), rng.integers(-1, 2, (5, 5)).astype(float)
    lif = nir.LIF(tau=np.full(5, 2e-3), r=np.ones(5), v_leak=np.zeros(5), v_threshold=np.full(5, 0.5),
                  v_reset=np.zeros(5))
    inner = {"input": nir.Input(input_type={"input": np.array([5])}), "lif": lif,
             "w_rec": nir.Linear(weight=w_rec), "output": nir.Output(output_type={"output": np.array([5])})}
    inner_edges = [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    outer = {"in": nir.Input(input_type={"input": np.array([6])}), "w_in": nir.Linear(weight=w_in),
             "out": nir.Output(output_type={"output": np.array([5])})}
    if nested:
        nodes = {**outer, "rnn": nir.NIRGraph(nodes=inner, edges=inner_edges)}
        edges = [("in", "w_in"), ("w_in", "rnn"), ("rnn", "out")]
    else:
        nodes = {**outer, "lif": lif, "w_rec": inner["w_rec"]}
        edges = [("in", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges), w_in, w_rec


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested-graph"])
def test_a_recurrent_graph_runs_step_by_step_as_written_out(nested: bool) -> None:
    graph, w_in, w_rec = _recurrent_graph(nested)
    x = (torch.rand(25, 4, 6) < 0.5).float()
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    v, s, outs = torch.zeros(4, 5), torch.zeros(4, 5), []
    for xt in x:                                  # the recurrent edge carries the previous step's spikes
        v = v + 0.5 * (xt @ t(w_in).T + s @ t(w_rec).T - v)
        s = (v >= np.nextafter(np.float32(0.5), np.float32(1))).float()
        v = v * (1 - s)
        outs.append(s)
    want = torch.stack(outs)
    assert 0.05 < want.mean() < 0.95
    assert torch.equal(from_nir(graph, dt=1e-3)(x), want)


@pytest.mark.peers
def test_we_run_snntorchs_recurrent_leaky() -> None:
    """snnTorch's RLeaky exports as a LIF with a recurrent Affine (a cycle through the neuron)."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    lin = nn.Linear(6, 5)
    lin.weight.data, lin.bias.data = torch.randint(-2, 3, lin.weight.shape).float(), torch.zeros(5)
    rl = snn.RLeaky(beta=torch.full((5,), 0.5), threshold=torch.full((5,), 1.0), linear_features=5, init_hidden=True,
                    output=True, reset_mechanism="zero", reset_delay=False)
    rl.recurrent.weight.data, rl.recurrent.bias.data = torch.randint(-1, 2, (5, 5)).float(), torch.zeros(5)
    theirs = nn.Sequential(lin, rl)
    x = (torch.rand(30, 4, 6) < 0.5).float()
    graph = export_to_nir(theirs, x[0, 0])
    want = _run_snntorch(theirs, x)
    assert 0.05 < want.mean() < 0.95
    assert torch.equal(from_nir(graph, dt=1e-4)(x), want)


# -- refusals found by a hostile review ---------------------------------------------------------------------
class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.sn = TimeFold(nn.Linear(4, 4)), TimeFold(nn.Linear(4, 4)), LIF()

    def forward(self, x):
        return self.sn(self.fc2(self.sn(self.fc1(x))))


class _Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = TimeFold(nn.Linear(4, 4))

    def forward(self, x):
        y = self.fc(x)
        return y, y


class _Doubled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.sn = TimeFold(nn.Linear(4, 4)), LIF()

    def forward(self, x):
        a = self.fc(x)
        return self.sn(a + a)


@pytest.mark.parametrize("model,sample,message", [
    (_Twice(), (1, 4), "sn: the module is called more than once in forward"),
    (_Pair(), (1, 4), "only models with one output tensor"),
    (_Doubled(), (1, 4), "its input adds a value to itself"),
    (nn.Sequential(TimeFold(nn.Conv2d(2, 2, 3, groups=2)), LIF()), (1, 2, 5, 5), "a grouped Conv2d"),
    (nn.Sequential(nn.Flatten(1), LIF()), (1, 2, 4), "would merge time and batch"),
    (nn.Sequential(TimeFold(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False))), (2, 4),
     "no running statistics"),
    (nn.Sequential(TimeFold(nn.Linear(4, 4)), LIF()), (1, 5), "the sample input of shape (1, 5)"),
], ids=["called-twice", "tuple-output", "a+a", "grouped-conv", "flatten-time", "bn-without-stats", "bad-sample"])
def test_export_refusals_name_the_module(model: nn.Module, sample: tuple[int, ...], message: str,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NIRExportError, match=re.escape(message)):
        to_nir(model.eval(), torch.rand(*sample))
    assert capfd.readouterr().err == ""                 # no traceback printed by fx's shape propagation


def test_a_flatten_on_the_time_first_tensor_exports_as_the_same_flatten() -> None:
    net = nn.Sequential(nn.Flatten(2), TimeFold(nn.Linear(8, 3)), LIF(tau=2.0)).eval()
    x = torch.rand(6, 5, 2, 4) * 3
    graph = to_nir(net, x[0])
    assert graph.nodes["0"].start_dim == 0
    assert torch.equal(from_nir(graph)(x), net(x))


def test_node_names_that_are_module_attributes_import() -> None:
    nodes = _tiny_graph()
    graph = nir.NIRGraph(nodes={"input": nodes["in"], "train": nodes["aff"], "forward": nodes["lif"],
                                "output": nodes["out"]},
                         edges=[("input", "train"), ("train", "forward"), ("forward", "output")])
    assert from_nir(graph)(torch.rand(5, 2, 2) * 4).shape == (5, 2, 3)


@pytest.mark.parametrize("edges", [
    [("in", "A"), ("A", "L"), ("L", "B"), ("B", "A"), ("A", "B"), ("L", "out")],
    [("in", "A"), ("A", "B"), ("B", "A"), ("A", "L"), ("L", "B"), ("L", "out")],
], ids=["one-order", "another-order"])
def test_a_stateless_cycle_is_refused_whatever_the_edge_order(edges) -> None:
    eye = nir.Affine(weight=np.eye(3), bias=np.zeros(3))
    lif = _tiny_graph()["lif"]
    nodes = {"in": nir.Input(input_type={"input": np.array([3])}), "A": eye, "B": eye, "L": lif,
             "out": nir.Output(output_type={"output": np.array([3])})}
    with pytest.raises(NIRImportError, match=r"cycle without state through \['A', 'B'\]"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))


def test_without_the_nir_package_one_line_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(NIRImportError, match=re.escape("pip install 'spikeforge[nir]'")):
        to_nir(nn.Sequential(TimeFold(nn.Linear(2, 2)), LIF()), torch.rand(1, 2))
