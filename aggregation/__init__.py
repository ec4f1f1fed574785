"""Pure merge and filter rules on stacked tensors; one file per rule, registered by name.

``REGISTRY[name](updates, own=own, f=f, **params)`` maps an (n, d) float tensor to (d,).
Rules: mean, weighted-mean, median, trimmed-mean, krum, multi-krum, geometric-median,
centered-clipping, foolsgold, nna, variance-corrected (``names()`` lists them).

Variance correction on top of any rule: ``get("vc:<rule>")``, e.g. ``get("vc:median")``,
runs the rule and then ``variance_correct(out, {own} ∪ updates, layout)`` (module
rumor.aggregation.variance); it takes the extra params ``layout=`` and ``tau2_from=``.
These composed names are resolved by ``get`` only: they are not keys of REGISTRY and
not listed by ``names()``.

Stateful defenses (one instance per peer, explicit checkpointable state) live in
``DEFENSES`` / ``make_defense(name)``; see rumor.aggregation.stateful.
"""

from rumor.aggregation import bristle as _bristle  # noqa: F401  (registers a defense)
from rumor.aggregation import centered_clipping as _centered_clipping  # noqa: F401
from rumor.aggregation import foolsgold as _foolsgold  # noqa: F401
from rumor.aggregation import geometric_median as _geometric_median  # noqa: F401
from rumor.aggregation import krum as _krum  # noqa: F401
from rumor.aggregation import mean as _mean  # noqa: F401  (registers)
from rumor.aggregation import median as _median  # noqa: F401
from rumor.aggregation import monna as _monna  # noqa: F401  (registers a defense)
from rumor.aggregation import nna as _nna  # noqa: F401
from rumor.aggregation import sybilwall as _sybilwall  # noqa: F401  (registers a defense)
from rumor.aggregation import trimmed_mean as _trimmed_mean  # noqa: F401
from rumor.aggregation import variance_corrected as _variance_corrected  # noqa: F401
from rumor.aggregation import weighted_mean as _weighted_mean  # noqa: F401
from rumor.aggregation.layout import LayerSlice, Layout, single_tensor_layout
from rumor.aggregation.registry import REGISTRY, Rule, get, names, register
from rumor.aggregation.stateful import (
    DEFENSES,
    Defense,
    defense_names,
    make_defense,
    register_defense,
)
from rumor.aggregation.variance import corrected, variance_correct

__all__ = [
    "DEFENSES",
    "REGISTRY",
    "Defense",
    "LayerSlice",
    "Layout",
    "Rule",
    "corrected",
    "defense_names",
    "get",
    "make_defense",
    "names",
    "register",
    "register_defense",
    "single_tensor_layout",
    "variance_correct",
]
