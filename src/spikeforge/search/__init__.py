"""Architecture search: search spaces (``SearchSpace``, registered in ``SEARCHES``) whose candidates are
trained and evaluated on Ray, locally or on a cluster (``spikeforge search``).

* ``base`` — the seam: ``SearchSpace``, ``EvalContext``, ``SEARCHES``, genotype hashes, candidate seeds.
* ``runner`` — ``run_search``: the (μ+λ) evolution, its candidates Ray tasks; the run folder's files, resume.
* ``grammar`` — BNF grammars of networks and their DSGE genotypes (``Grammar``, ``load_grammar``).
* ``spenser`` — ``SpenserSpace`` (``"spenser"``): DENSER-style grammatical evolution of convolutional SNNs.
* ``autospikformer`` — ``AutoSpikformerSpace`` (``"autospikformer"``): a weight-entangled Spikformer supernet
  (``SpikformerSupernet``, ``extract_subnet``, ``SupernetStep``) searched over depth, dim, heads, MLP ratio,
  LIF τ and V_th; sub-networks scored with inherited weights (``recalibrate_bn``) by ``aeb_fitness``.
"""

from .autospikformer import AutoSpikformerSpace, aeb_fitness
from .autospikformer_eval import recalibrate_bn
from .autospikformer_supernet import SpikformerChoices, SpikformerSupernet, SupernetStep, extract_subnet
from .base import SEARCHES, EvalContext, SearchError, SearchSpace, candidate_seed, genotype_hash
from .grammar import Grammar, GrammarError, default_grammar_path, load_grammar, parse_grammar
from .runner import SearchConfig, pareto_front, read_candidates, require_ray, run_search
from .spenser import SpenserSpace

__all__ = ["SEARCHES", "EvalContext", "SearchError", "SearchSpace", "candidate_seed", "genotype_hash",
           "Grammar", "GrammarError", "load_grammar", "parse_grammar", "default_grammar_path", "SpenserSpace",
           "AutoSpikformerSpace", "SpikformerSupernet", "SpikformerChoices", "SupernetStep", "extract_subnet",
           "recalibrate_bn", "aeb_fitness"]
__all__ += ["SearchConfig", "run_search", "pareto_front", "read_candidates", "require_ray"]
