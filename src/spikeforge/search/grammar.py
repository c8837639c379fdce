"""A BNF grammar of networks and its DSGE genotypes (dynamic structured grammatical evolution, Lourenço et
al. 2018, as DENSER and SPENSER use it).

The text format, one statement a line (``#`` starts a comment)::

    module features:   <feature_layer> [1, 6]     # a module: a list of 1..6 layers, each derived from <feature_layer>
    <feature_layer> ::= <conv> | <avgpool>         # alternatives
    <conv>   ::= layer:conv channels:int[8, 64] kernel:<kernel> neuron:<neuron>
    <kernel> ::= 3 | 5                             # a rule of bare values: used as key:<kernel>
    <neuron> ::= type:lif tau:float[1.5, 4.0] v_reset:<reset>
               | type:if v_reset:<reset>           # a line starting with '|' continues the rule above
    <reset>  ::= 0.0 | null
    <learning> ::= optimizer:adam lr:float[1e-4, 1e-2] log

An alternative is a sequence of items, each adding to the layer's attribute dict:

* ``key:value``: a fixed attribute; the value is a number, ``null``, ``true`` / ``false`` or a word;
* ``key:int[a, b]`` / ``key:float[a, b]``: a number drawn uniformly in ``[a, b]``, evolved by Gaussian
  perturbation clipped to the range; ``log`` after the range draws and perturbs it on a log scale;
* ``key:<rule>``: a nested attribute: the attributes ``<rule>`` derives (or the value, for a rule of bare
  values); a bare ``<rule>`` merges the attributes it derives into this layer's.

A rule's alternatives are either all attribute sequences or all single bare values (``3 | 5``).

**Genotype (DSGE).** A layer is a ``dict`` from rule name (without brackets) to the list of its expansions
in derivation order (pre-order), each ``[alternative index, {key: number}]`` holding the numbers its ranges
drew: ``{"conv": [[0, {"channels": 23}]], "kernel": [[1, {}]], ...}``. ``Grammar.derive`` maps a layer to
its attribute dict, repairing the genotype on the way when given a random generator (a missing expansion
is drawn, an unused one dropped, a number out of its range redrawn), as DSGE does after a mutation.

**Checks** before any search (``Grammar.check``): undefined symbols, rules no module can reach, rules that
cannot derive a finite string (a fixpoint over the productions: a rule is finite when one of its
alternatives uses only finite rules), rules mixing bare values and attributes, a bare value rule used
without a key. A syntax error names the file and line.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .base import SearchError

__all__ = ["Grammar", "Module", "Range", "Item", "load_grammar", "parse_grammar", "default_grammar_path",
           "GrammarError"]

Gene = dict[str, list[list[Any]]]
"""One layer's DSGE genotype: rule name -> ``[[alternative, {key: number}], ...]`` in derivation order."""


class GrammarError(SearchError):
    """A grammar that cannot be used: a syntax error (``FILE:LINE: ...``) or a failed check."""


@dataclass(frozen=True)
class Range:
    """A numeric terminal ``int[lo, hi]`` / ``float[lo, hi]`` (``log``: uniform and Gaussian in ``log x``)."""

    kind: str
    lo: float
    hi: float
    log: bool = False

    def _to(self, v: float) -> float:
        return math.log(v) if self.log else v

    def _from(self, u: float) -> float:
        return math.exp(u) if self.log else u

    def fix(self, v: float) -> int | float:
        """``v`` as this range's type: clipped, an ``int`` rounded, a ``float`` to 4 significant digits."""
        if self.kind == "int":
            return int(min(max(round(v), self.lo), self.hi))
        return float(min(max(float(f"{v:.4g}"), self.lo), self.hi))

    def sample(self, rng: random.Random) -> int | float:
        """A uniform draw (on a log scale for ``log``)."""
        if self.kind == "int" and not self.log:
            return rng.randint(int(self.lo), int(self.hi))
        return self.fix(self._from(rng.uniform(self._to(self.lo), self._to(self.hi))))

    def perturb(self, v: float, rng: random.Random, sigma: float = 0.15) -> int | float:
        """``v`` plus a Gaussian of ``sigma`` times the range's width (on a log scale for ``log``), clipped."""
        lo, hi = self._to(self.lo), self._to(self.hi)
        return self.fix(self._from(min(max(self._to(v) + rng.gauss(0.0, sigma * (hi - lo)), lo), hi)))

    def contains(self, v: Any) -> bool:
        """Whether ``v`` is a value of this range (an ``int`` for ``int`` ranges)."""
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        if self.kind == "int" and not isinstance(v, int):
            return False
        return self.lo <= v <= self.hi

    def __str__(self) -> str:
        def num(x: float) -> str:
            return str(int(x)) if self.kind == "int" else f"{x:g}"
        return f"{self.kind}[{num(self.lo)}, {num(self.hi)}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class Item:
    """One item of an alternative: ``key`` (``None`` for a bare item) and what it holds: ``"ref"`` (a rule
    name), ``"lit"`` (a fixed value) or ``"range"`` (a ``Range``)."""

    key: str | None
    kind: str
    value: Any

    def __str__(self) -> str:
        if self.kind == "ref":
            v = f"<{self.value}>"
        else:
            v = str(self.value) if self.kind == "range" else _lit_str(self.value)
        return v if self.key is None else f"{self.key}:{v}"


@dataclass(frozen=True)
class Module:
    """``module NAME: <start> [lo, hi]``: a list of ``lo..hi`` layers, each derived from rule ``start``."""

    name: str
    start: str
    lo: int
    hi: int
    line: int = 0


def _is_value(alt: tuple[Item, ...]) -> bool:
    """A bare-value alternative (``3``, ``null``): a single keyless literal."""
    return len(alt) == 1 and alt[0].key is None and alt[0].kind == "lit"


def _lit_str(v: Any) -> str:
    return "null" if v is None else "true" if v is True else "false" if v is False else str(v)


def _literal(text: str) -> Any:
    if text in ("null", "none"):
        return None
    if text in ("true", "false"):
        return text == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


_NAME = r"[A-Za-z_][\w\-]*"
_ITEM = re.compile(rf"""\s*(?:
      <(?P<bare>{_NAME})>
    | (?P<key>{_NAME})\s*:\s*(?:
          <(?P<ref>{_NAME})>
        | (?P<kind>int|float)\s*\[\s*(?P<lo>[^,\]\s]+)\s*,\s*(?P<hi>[^\]\s]+)\s*\](?P<log>\s+log\b)?
        | (?P<lit>[^\s|<>\[\]:]+))
    | (?P<range>(?:int|float)\s*\[)
    | (?P<value>[^\s|<>\[\]:]+)
    )""", re.X)
_RULE = re.compile(rf"^<(?P<name>{_NAME})>\s*::=(?P<rhs>.*)$")
_MODULE = re.compile(rf"^module\s+(?P<name>{_NAME})\s*:\s*<(?P<start>{_NAME})>\s*\[\s*(?P<lo>[^,\]]+),\s*"
                     rf"(?P<hi>[^\]]+)\]\s*$")


class Grammar:
    """A parsed grammar: ``rules`` (name -> alternatives, each a tuple of ``Item``) and ``modules``.

    Build it with ``parse_grammar`` / ``load_grammar``; ``check()`` finds what would break a search.

    Args:
        rules: name -> alternatives.
        modules: name -> ``Module``, in file order.
        source: the file (or ``"<string>"``) named in errors.
        lines: where each rule is defined (for messages).
        max_depth: the deepest derivation tree allowed for one layer (recursive rules stop there by choosing
            only alternatives that can still finish in time).
    """

    def __init__(self, rules: dict[str, list[tuple[Item, ...]]], modules: dict[str, Module], source: str = "<string>",
                 lines: dict[str, int] | None = None, max_depth: int = 10) -> None:
        self.rules, self.modules, self.source = rules, modules, source
        self.lines = lines or {}
        self.max_depth = int(max_depth)
        self.height = self._heights()

    # -- analysis ---------------------------------------------------------------------------------------
    def _alt_height(self, alt: tuple[Item, ...], height: dict[str, float]) -> float:
        return 1 + max((height.get(i.value, 1.0) for i in alt if i.kind == "ref"), default=0.0)

    def _heights(self) -> dict[str, float]:
        """The least height of a derivation tree of each rule, by a fixpoint over the productions (a rule
        with only infinite alternatives stays ``inf``: it cannot derive a finite string). An undefined
        symbol counts as finite, so that it is reported once, as undefined."""
        height = {n: math.inf for n in self.rules}
        changed = True
        while changed:
            changed = False
            for n, alts in self.rules.items():
                h = min(self._alt_height(a, height) for a in alts)
                if h < height[n]:
                    height[n], changed = h, True
        return height

    def undefined(self) -> list[str]:
        """Symbols used but never defined, in order of first use."""
        seen = [i.value for alts in self.rules.values() for a in alts for i in a if i.kind == "ref"]
        seen += [m.start for m in self.modules.values()]
        return list(dict.fromkeys(s for s in seen if s not in self.rules))

    def unreachable(self) -> list[str]:
        """Rules that no module's start rule derives."""
        todo = [m.start for m in self.modules.values()]
        seen = set(todo)
        while todo:
            for a in self.rules.get(todo.pop(), []):
                for i in a:
                    if i.kind == "ref" and i.value not in seen:
                        seen.add(i.value)
                        todo.append(i.value)
        return [n for n in self.rules if n not in seen]

    def unbounded(self) -> list[str]:
        """Rules that cannot derive a finite string (every alternative recurses forever)."""
        return [n for n, h in self.height.items() if math.isinf(h)]

    def value_rules(self) -> set[str]:
        """Rules whose alternatives are single bare values (``<kernel> ::= 3 | 5``)."""
        return {n for n, alts in self.rules.items() if all(_is_value(a) for a in alts)}

    def check(self) -> None:
        """Raise ``GrammarError`` (one line) naming every undefined, unreachable and unbounded symbol and
        every misused rule; return quietly for a usable grammar."""
        problems = []
        if not self.modules:
            problems.append("no module (add a line 'module NAME: <start> [min, max]')")
        if u := self.undefined():
            problems.append("undefined symbol" + "s" * (len(u) > 1) + " " + ", ".join(f"<{s}>" for s in u))
        if u := self.unreachable():
            problems.append("unreachable rule" + "s" * (len(u) > 1) + " " + ", ".join(f"<{s}>" for s in u)
                            + " (no module derives it)")
        if u := self.unbounded():
            problems.append("unbounded rule" + "s" * (len(u) > 1) + " " + ", ".join(f"<{s}>" for s in u)
                            + " (every alternative recurses: no finite derivation)")
        values = self.value_rules()
        mixed = [n for n, alts in self.rules.items() if n not in values and any(_is_value(a) for a in alts)]
        if mixed:
            problems.append("rules mixing bare values and key:value attributes: " + ", ".join(f"<{s}>" for s in mixed))
        bare = sorted({i.value for alts in self.rules.values() for a in alts for i in a
                       if i.kind == "ref" and i.key is None and i.value in values})
        bare += [m.start for m in self.modules.values() if m.start in values]
        if bare:
            problems.append("rules of bare values used without a key (write key:<rule>): "
                            + ", ".join(f"<{s}>" for s in dict.fromkeys(bare)))
        deep = [m.start for m in self.modules.values() if self.height.get(m.start, 0) > self.max_depth]
        if deep and not self.unbounded():
            problems.append(f"max_depth {self.max_depth} is too small to derive " + ", ".join(f"<{s}>" for s in deep))
        if problems:
            raise GrammarError(f"grammar {self.source}: " + "; ".join(problems))

    def productions(self) -> list[tuple[str, int]]:
        """Every ``(rule, alternative index)``."""
        return [(n, k) for n, alts in self.rules.items() for k in range(len(alts))]

    def to_text(self) -> str:
        """The grammar in its text format (comments dropped)."""
        out = [f"module {m.name}: <{m.start}> [{m.lo}, {m.hi}]" for m in self.modules.values()]
        out += [f"<{n}> ::= " + " | ".join(" ".join(map(str, a)) for a in alts) for n, alts in self.rules.items()]
        return "\n".join(out) + "\n"

    # -- derivation --------------------------------------------------------------------------------------
    def allowed(self, rule: str, depth: int) -> list[int]:
        """Alternatives of ``rule`` that can finish within ``max_depth`` when expanded at ``depth`` (1 for
        a module's start rule)."""
        return [k for k, a in enumerate(self.rules[rule])
                if depth - 1 + self._alt_height(a, self.height) <= self.max_depth]

    def random_layer(self, module: str, rng: random.Random) -> Gene:
        """A random layer of ``module``: its DSGE genotype."""
        gene: Gene = {}
        self.derive(self.modules[module].start, {}, rng, out=gene)
        return gene

    def derive(self, start: str, gene: Gene, rng: random.Random | None = None, *,
               out: Gene | None = None) -> Any:
        """The attributes (a ``dict``, or a value for a rule of bare values) that ``gene`` derives from rule
        ``start``.

        Args:
            start: the rule to expand (a module's start rule).
            gene: the layer's genotype (read only).
            rng: with a generator, a missing or invalid expansion (an alternative out of range or too deep,
                a number missing or out of its range) is drawn anew; without one it raises ``GrammarError``.
            out: if given, filled with the genotype actually used (the repaired one, unused entries dropped).
        """
        used: Gene = {} if out is None else out
        return self._expand(start, 1, gene, {}, used, rng)

    def _expand(self, rule: str, depth: int, gene: Gene, pos: dict[str, int], used: Gene,
                rng: random.Random | None) -> Any:
        i = pos.get(rule, 0)
        pos[rule] = i + 1
        entries = gene.get(rule, [])
        entry: Any = entries[i] if isinstance(entries, list) and i < len(entries) else None
        allowed = self.allowed(rule, depth)
        ok = (isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[0], int)
              and not isinstance(entry[0], bool) and entry[0] in allowed and isinstance(entry[1], dict))
        if ok:
            alt_ix, nums = entry[0], entry[1]
        elif rng is None:
            raise GrammarError(f"genotype: expansion {i} of <{rule}> is {entry!r}, not [alternative in {allowed}, "
                               "{key: number}]")
        else:
            alt_ix, nums = rng.choice(allowed), {}
        alt = self.rules[rule][alt_ix]
        numbers: dict[str, int | float] = {}
        for item in alt:
            if item.kind != "range" or item.key is None:
                continue
            v = nums.get(item.key)
            if not item.value.contains(v):
                if rng is None:
                    raise GrammarError(f"genotype: <{rule}> expansion {i}: {item.key} = {v!r} is not in {item.value}")
                v = item.value.sample(rng)
            numbers[item.key] = v
        slot = used.setdefault(rule, [])
        slot.append([alt_ix, numbers])          # before the children: pre-order, as the reader consumes it
        if _is_value(alt):
            return alt[0].value
        attrs: dict[str, Any] = {}
        for item in alt:
            if item.kind == "ref":
                sub = self._expand(item.value, depth + 1, gene, pos, used, rng)
                if item.key is not None:
                    self._put(attrs, item.key, sub, rule)
                elif isinstance(sub, dict):
                    for k, v in sub.items():
                        self._put(attrs, k, v, rule)
                else:
                    raise GrammarError(f"grammar {self.source}: <{rule}> uses the value rule <{item.value}> without "
                                       "a key")
            elif item.kind == "lit":
                self._put(attrs, item.key, item.value, rule)
            else:
                self._put(attrs, item.key, numbers[item.key or ""], rule)
        return attrs

    def _put(self, attrs: dict[str, Any], key: str | None, value: Any, rule: str) -> None:
        if key is None:
            raise GrammarError(f"grammar {self.source}: <{rule}> mixes a bare value with attributes")
        if key in attrs:
            raise GrammarError(f"grammar {self.source}: <{rule}> derives the attribute {key!r} twice")
        attrs[key] = value


def _syntax(source: str, line: int, what: str) -> GrammarError:
    return GrammarError(f"{source}:{line}: {what}")


def _number(text: str, source: str, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise _syntax(source, line, f"{text!r} is not a number") from None


def _parse_alt(text: str, source: str, line: int) -> tuple[Item, ...]:
    items: list[Item] = []
    at = 0
    text = text.rstrip()
    while at < len(text):
        m = _ITEM.match(text, at)
        if m is None or m.end() == at:
            raise _syntax(source, line, f"cannot read {text[at:].strip()!r} (expected <rule>, key:value, "
                                        "key:<rule>, key:int[a, b] or key:float[a, b])")
        at = m.end()
        if m["bare"]:
            items.append(Item(None, "ref", m["bare"]))
        elif m["range"]:
            raise _syntax(source, line, "a number range needs a key: write key:int[a, b] or key:float[a, b]")
        elif m["value"] is not None:
            items.append(Item(None, "lit", _literal(m["value"])))
        elif m["ref"]:
            items.append(Item(m["key"], "ref", m["ref"]))
        elif m["kind"]:
            lo, hi = _number(m["lo"], source, line), _number(m["hi"], source, line)
            kind, log = m["kind"], bool(m["log"])
            if kind == "int" and not (lo.is_integer() and hi.is_integer()):
                raise _syntax(source, line, f"{m['key']}: int range bounds must be integers, got "
                                            f"[{m['lo']}, {m['hi']}]")
            if not lo <= hi or not (math.isfinite(lo) and math.isfinite(hi)):
                raise _syntax(source, line, f"{m['key']}: empty range [{m['lo']}, {m['hi']}] (need lo <= hi)")
            if log and lo <= 0:
                raise _syntax(source, line, f"{m['key']}: a log range needs lo > 0, got {m['lo']}")
            items.append(Item(m["key"], "range", Range(kind, lo, hi, log)))
        else:
            items.append(Item(m["key"], "lit", _literal(m["lit"])))
    if not items:
        raise _syntax(source, line, "empty alternative")
    keys = [i.key for i in items if i.key is not None]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
        raise _syntax(source, line, f"attribute {dup!r} given twice in one alternative")
    if len(items) > 1 and any(i.key is None and i.kind == "lit" for i in items):
        raise _syntax(source, line, "a bare value must stand alone in its alternative (or write key:value)")
    return tuple(items)


def parse_grammar(text: str, source: str = "<string>", max_depth: int = 10) -> Grammar:
    """Parse the text format (see the module docstring); a syntax error raises ``GrammarError`` naming
    ``source`` and the line. The semantic checks are ``Grammar.check()``'s."""
    rules: dict[str, list[tuple[Item, ...]]] = {}
    lines: dict[str, int] = {}
    modules: dict[str, Module] = {}
    current: str | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("|"):
            if current is None:
                raise _syntax(source, n, "a continuation '| ...' needs a rule '<name> ::= ...' before it")
            rhs = line[1:]
        elif m := _RULE.match(line):
            current = m["name"]
            if current in rules:
                raise _syntax(source, n, f"<{current}> is defined twice (first on line {lines[current]})")
            rules[current], lines[current], rhs = [], n, m["rhs"]
        elif line.startswith("module"):
            mm = _MODULE.match(line)
            if mm is None:
                raise _syntax(source, n, f"expected 'module NAME: <start> [min, max]', got {line!r}")
            lo, hi = _number(mm["lo"].strip(), source, n), _number(mm["hi"].strip(), source, n)
            if not (lo.is_integer() and hi.is_integer() and 0 <= lo <= hi and hi >= 1):
                raise _syntax(source, n, f"module {mm['name']}: layer counts [{mm['lo']}, {mm['hi']}] must be integers "
                                         "with 0 <= min <= max and max >= 1")
            if mm["name"] in modules:
                raise _syntax(source, n, f"module {mm['name']} is defined twice (first on line "
                                         f"{modules[mm['name']].line})")
            modules[mm["name"]] = Module(mm["name"], mm["start"], int(lo), int(hi), n)
            current = None
            continue
        else:
            raise _syntax(source, n, f"expected '<name> ::= alternatives', '| alternatives' or "
                                     f"'module NAME: <start> [min, max]', got {line!r}")
        parts = rhs.split("|")
        if rhs.strip() == "" and not line.startswith("|"):
            raise _syntax(source, n, f"<{current}> ::= has no alternatives")
        for part in parts:
            rules[current].append(_parse_alt(part, source, n))
    return Grammar(rules, modules, source, lines, max_depth)


def load_grammar(path: str | Path | None = None, max_depth: int = 10) -> Grammar:
    """Parse the grammar file ``path`` (``None``: the packaged SPENSER grammar, ``default_grammar_path()``)."""
    p = Path(path) if path is not None else default_grammar_path()
    try:
        text = p.read_text()
    except OSError as e:
        raise GrammarError(f"grammar {p}: cannot read it ({e.strerror or e})") from None
    return parse_grammar(text, str(p), max_depth)


def default_grammar_path() -> Path:
    """The packaged SPENSER grammar, ``spikeforge/search/grammars/spenser.txt``."""
    return Path(str(resources.files("spikeforge.search") / "grammars" / "spenser.txt"))
