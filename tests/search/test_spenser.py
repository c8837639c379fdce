"""The SPENSER space: its grammar (parser, checks, DSGE derivation), its network (``create_model("spenser")``),
random derivations and mutation chains that stay valid, and a deterministic evaluation on digits."""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from spikeforge.models import create_model
from spikeforge.models.spenser import DEFAULT_GENOTYPE, GenotypeError, check_genotype
from spikeforge.search import (
    SEARCHES,
    EvalContext,
    GrammarError,
    SearchError,
    SpenserSpace,
    default_grammar_path,
    load_grammar,
    parse_grammar,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_grammar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged grammar with tiny widths: the same productions, cheap to build and run."""
    text = default_grammar_path().read_text()
    assert "channels:int[8, 64]" in text and "units:int[16, 256]" in text
    path = tmp_path_factory.mktemp("grammar") / "tiny.txt"
    path.write_text(text.replace("channels:int[8, 64]", "channels:int[1, 4]").replace("units:int[16, 256]",
                                                                                         "units:int[1, 8]"))
    return path


@pytest.fixture(scope="module")
def space(tiny_grammar: Path) -> SpenserSpace:
    sp = SpenserSpace(grammar=str(tiny_grammar), img_size=8)
    sp.check()
    return sp


def runs_forward(net: dict, T: int = 2) -> None:
    model = create_model("spenser", genotype=net, in_channels=1, num_classes=10, img_size=8, T=T)
    y = model(torch.rand(2, 1, 8, 8))
    assert y.shape == (T, 2, 10) and torch.isfinite(y).all()
    assert model.forward_features(torch.rand(T, 2, 1, 8, 8)).shape == (T, 2, model.num_features)


# -- the grammar ----------------------------------------------------------------------------------------------
def test_packaged_grammar_is_registered_and_clean() -> None:
    assert SEARCHES["spenser"] is SpenserSpace
    g = load_grammar()
    g.check()
    assert list(g.modules) == ["features", "classifier", "learning"]
    assert [(m.lo, m.hi) for m in g.modules.values()] == [(1, 6), (0, 2), (1, 1)]
    assert {"conv", "avgpool", "dropout", "linear", "neuron", "reset", "learning"} <= set(g.rules)
    assert parse_grammar(g.to_text()).to_text() == g.to_text()          # the printed form parses back


@pytest.mark.parametrize("text,line,what", [
    ("module m: <a> [1, 1]\n<a> ::= k:1\n<b> ::= k:int[3, 1]\n", 3, "empty range"),
    ("module m: <a> [1, 1]\n# comment\n\n<a> ::= k:1 |\n", 4, "empty alternative"),
    ("module m: <a> [1, 1]\n<a> ::= int[1, 2]\n", 2, "needs a key"),
    ("| k:1\n", 1, "continuation"),
    ("module m <a> [1, 1]\n", 1, "module NAME"),
    ("module m: <a> [1, 1]\n<a> ::= k:1\n<a> ::= k:2\n", 3, "defined twice"),
    ("module m: <a> [1, 1]\n<a> ::= k:1 k:2\n", 2, "given twice"),
    ("module m: <a> [1, 1]\n<a> ::= k:float[1e-3, 1] log\n<b> := k:1\n", 3, "expected '<name> ::="),
])
def test_syntax_error_names_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    path = tmp_path / "g.txt"
    path.write_text(text)
    with pytest.raises(GrammarError, match=rf"^{path}:{line}: .*{what}"):
        load_grammar(path)


def test_checks_name_unreachable_unbounded_and_undefined_symbols() -> None:
    g = parse_grammar("module m: <a> [1, 2]\n"
                      "<a> ::= layer:x <b> | layer:y <loop>\n"
                      "<b> ::= k:1 | k:2 sub:<c>\n"
                      "<c> ::= v:<undefined_one>\n"
                      "<loop> ::= n:<loop>\n"
                      "<ping> ::= p:<pong>\n<pong> ::= p:<ping>\n"
                      "<orphan> ::= k:3\n", "bad.txt")
    assert g.undefined() == ["undefined_one"]
    assert g.unreachable() == ["ping", "pong", "orphan"]
    assert g.unbounded() == ["loop", "ping", "pong"]
    with pytest.raises(GrammarError, match=r"^grammar bad\.txt: undefined symbol <undefined_one>; unreachable rules "
                                           r"<ping>, <pong>, <orphan> .*; unbounded rules <loop>, <ping>, <pong>"):
        g.check()
    assert "<a>" not in str(pytest.raises(GrammarError, g.check).value).split("unbounded")[1]


def test_fixpoint_height_and_depth_limit_stop_recursion() -> None:
    g = parse_grammar("module m: <a> [1, 1]\n<a> ::= x:1 | x:2 sub:<a>\n", max_depth=4)
    g.check()
    assert g.height == {"a": 1}
    rng = random.Random(0)
    depths = set()
    for _ in range(200):
        gene = g.random_layer("m", rng)
        d, node = 1, g.derive("a", gene)
        while "sub" in node:
            d, node = d + 1, node["sub"]
        depths.add(d)
        assert len(gene["a"]) == d
    assert max(depths) == 4 and min(depths) == 1
    with pytest.raises(GrammarError, match="max_depth 0 is too small"):
        parse_grammar("module m: <a> [1, 1]\n<a> ::= x:1\n", max_depth=0).check()


def test_derive_repairs_with_a_generator_and_refuses_without() -> None:
    g = load_grammar()
    gene = {"feature_layer": [[0, {}]], "conv": [[0, {"channels": 500}]], "kernel": [[1, {}]]}
    with pytest.raises(GrammarError, match=r"channels = 500 is not in int\[8, 64\]"):
        g.derive("feature_layer", gene)
    used: dict = {}
    layer = g.derive("feature_layer", gene, random.Random(0), out=used)
    assert 8 <= layer["channels"] <= 64 and layer["kernel"] == 5 and set(layer["neuron"]) >= {"type", "v_reset"}
    assert set(used) == {"feature_layer", "conv", "kernel", "neuron", "reset"}
    assert g.derive("feature_layer", used) == layer                  # the repaired genotype derives the same


# -- the network -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("patch,field", [
    (lambda g: g["features"][0].update(channels=0), r"features\[0\]\.channels must be an integer >= 1, got 0"),
    (lambda g: g["features"][0].update(kernel=4), r"features\[0\]\.kernel must be an odd integer"),
    (lambda g: g["features"][0].update(chanels=8), r"features\[0\] has an unknown field 'chanels'"),
    (lambda g: g["features"][1].update(layer="maxpool"), r"features\[1\]\.layer must be one of conv, avgpool"),
    (lambda g: g["classifier"][0]["neuron"].update(tau=0.5), r"classifier\[0\]\.neuron\.tau must be a number >= 1"),
    (lambda g: g["classifier"][0]["neuron"].update(type="alif"), r"classifier\[0\]\.neuron\.type must be 'lif'"),
    (lambda g: g["classifier"].append({"layer": "dropout", "p": 1.0}), r"classifier\[1\]\.p must be a number in"),
    (lambda g: g["learning"].update(optimizer="rmsprop"), r"learning\.optimizer must be one of adam, adamw, sgd"),
    (lambda g: g.update(extra=1), r"\(top level\) has an unknown field 'extra'"),
])
def test_bad_genotype_field_gives_one_clear_error(patch, field: str) -> None:  # noqa: ANN001
    g = copy.deepcopy(DEFAULT_GENOTYPE)
    patch(g)
    with pytest.raises(GenotypeError, match=rf"^spenser genotype: {field}"):
        create_model("spenser", genotype=g)


def test_model_round_trips_through_json(space: SpenserSpace) -> None:
    net = space.random(random.Random(4))["network"]
    x = torch.rand(3, 1, 8, 8)
    outs = []
    for g in (net, json.loads(json.dumps(net))):
        torch.manual_seed(7)
        model = create_model("spenser", genotype=g, img_size=8, T=3).eval()
        outs.append(model(x))
        assert model.genotype == check_genotype(net)
    torch.manual_seed(7)
    again = create_model("spenser", genotype=json.dumps(model.genotype), img_size=8, T=3).eval()
    assert torch.equal(outs[0], outs[1]) and torch.equal(again(x), outs[0])


# -- the space ------------------------------------------------------------------------------------------------
def test_random_derivations_cover_every_production_and_run(space: SpenserSpace) -> None:
    g = space.grammar
    rng = random.Random(0)
    seen: set[tuple[str, int]] = set()
    for _ in range(500):
        cand = space.random(rng)
        assert space.invalid(cand["network"]) is None
        assert space.network({"dsge": cand["dsge"]}) == cand["network"]
        for layers in cand["dsge"].values():
            seen |= {(rule, e[0]) for layer in layers for rule, entries in layer.items() for e in entries}
        runs_forward(cand["network"])
    assert seen == set(g.productions()), f"never derived: {set(g.productions()) - seen}"
    # raw derivations, without the space's filter: each is refused by the checks or builds and runs
    for _ in range(100):
        dsge = {m: [g.random_layer(m, rng) for _ in range(rng.randint(0, 3))] for m in g.modules}
        net = space._derive(dsge, None)[0]
        if space.invalid(net) is None:
            runs_forward(net)


def test_mutation_chains_stay_valid(space: SpenserSpace) -> None:
    rng = random.Random(1)
    changed = 0
    for chain in range(300):
        cand = space.random(rng)
        for _ in range(4):
            before = copy.deepcopy(cand)
            child = space.mutate(cand, rng)
            assert cand == before                                          # the parent is left unchanged
            assert space.invalid(child["network"]) is None
            assert space.network({"dsge": child["dsge"]}) == child["network"]
            assert json.loads(json.dumps(child)) == child
            changed += child["network"] != cand["network"]
            cand = child
        if chain % 10 == 0:
            runs_forward(cand["network"])
    assert changed > 0.95 * 1200


def test_mutation_ignores_key_order(space: SpenserSpace) -> None:
    """A resumed search reads its parents back from JSON written with sorted keys: the same draws must give
    the same children."""
    for seed in range(20):
        parent = space.random(random.Random(seed))
        shuffled = json.loads(json.dumps(parent, sort_keys=True))
        assert space.mutate(parent, random.Random(seed)) == space.mutate(shuffled, random.Random(seed))


def test_options_bound_modules_and_refuse_unknown_names(tiny_grammar: Path) -> None:
    sp = SpenserSpace(grammar=str(tiny_grammar), max_features="2", min_classifier="1")
    rng = random.Random(0)
    for _ in range(50):
        net = sp.mutate(sp.random(rng), rng)["network"]
        assert 1 <= len(net["features"]) <= 2 and 1 <= len(net["classifier"]) <= 2
    with pytest.raises(SearchError, match="unknown option 'widht'"):
        SpenserSpace(widht=3)
    with pytest.raises(SearchError, match="no module 'head'"):
        SpenserSpace(max_head=3).check()


def test_check_refuses_a_grammar_without_the_spenser_modules(tmp_path: Path) -> None:
    path = tmp_path / "g.txt"
    path.write_text("module features: <a> [1, 2]\n<a> ::= layer:dropout p:0.1\n")
    with pytest.raises(GrammarError, match="needs the modules features, classifier, learning"):
        SpenserSpace(grammar=str(path)).check()


def test_evaluate_is_deterministic_and_reports_energy(space: SpenserSpace, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    cand = {"network": {**DEFAULT_GENOTYPE, "features": DEFAULT_GENOTYPE["features"][:2]}}
    ctx = EvalContext(dataset="digits", epochs=1, T=2, seed=3, run_dir=str(tmp_path), limit_train=128)
    first, again = space.evaluate(cand, ctx), space.evaluate(cand, ctx)
    assert first == again
    assert 0.0 <= first["val_accuracy"] <= 1.0 and 0.0 <= first["test_accuracy"] <= 1.0
    assert first["energy_uj"] > 0 and first["params"] > 0 and 0.0 <= first["firing_rate"] <= 1.0
    assert space.fitness(first) == first["val_accuracy"]
    assert "error" not in first and torch.get_num_threads() == 1      # the caller's thread count is kept


def test_a_diverging_candidate_scores_zero_without_crashing(space: SpenserSpace, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    net = {**DEFAULT_GENOTYPE, "features": DEFAULT_GENOTYPE["features"][:2],
           "learning": {"optimizer": "sgd", "lr": 1e9, "batch_size": 16}}
    ctx = EvalContext(dataset="digits", epochs=1, T=2, seed=3, run_dir=str(tmp_path), limit_train=128)
    m = space.evaluate({"network": net}, ctx)
    assert m["val_accuracy"] == 0.0 and m["energy_uj"] > 0 and "loss" in m["error"]
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_docs_page_shows_the_packaged_grammar() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "search" / "spenser.md").read_text()
    blocks = re.findall(r"^```text\n(.*?)^```", page, re.S | re.M)
    assert default_grammar_path().read_text() in blocks, "docs/search/spenser.md does not show the packaged grammar"
