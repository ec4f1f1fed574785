"""Pure merge and filter rules on stacked tensors; one file per rule, registered by name.

``REGISTRY[name](updates, own=own, f=f, **params)`` maps an (n, d) float tensor to (d,).
"""

from rumor.aggregation import mean as _mean  # noqa: F401  (registers)
from rumor.aggregation.registry import REGISTRY, Rule, get, names, register

__all__ = ["REGISTRY", "Rule", "get", "names", "register"]
