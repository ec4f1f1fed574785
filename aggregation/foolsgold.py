"""FoolsGold (Fung et al., 2020), stateless: the caller passes the histories."""

from __future__ import annotations

import torch
from torch import Tensor

from rumor.aggregation._linalg import gram, weighted_sum
from rumor.aggregation.registry import register
from rumor.protocols.errors import AggregationError


def foolsgold_weights(histories: Tensor, kappa: float = 1.0) -> Tensor:
    """FoolsGold weights in [0, 1] for k senders from their (k, h) histories; (k,) f64.

    cs = cosine similarities with cs_ii = 0; v_i = max_j cs_ij; pardoning:
    cs_ij *= v_i / v_j where v_i < v_j; w_i = clip(1 - max_j cs_ij, 0, 1);
    w <- w / max(w), w = 1 -> 0.99; w <- clip(kappa·(ln(w / (1 - w)) + 0.5), 0, 1).
    As the paper's reference code (kappa = 1). A zero history has similarity 0 to all.
    If every w is 0 before rescaling (all histories parallel), all weights are 0.
    Similarities are computed in float64: the logit amplifies their rounding errors.
    """
    k = histories.shape[0]
    if k == 0:
        return torch.zeros(0, dtype=torch.float64)
    g = gram(histories, None, exact=True).cpu()
    norms = g.diagonal().clamp_min(0.0).sqrt().clamp_min(1e-300)
    cs = g / norms[:, None] / norms[None, :]
    cs.fill_diagonal_(0.0)
    v = cs.max(dim=1).values
    pardon = (v[:, None] < v[None, :]) & (v[None, :] != 0)
    cs = torch.where(pardon, cs * v[:, None] / v[None, :], cs)
    w = (1.0 - cs.max(dim=1).values).clamp(0.0, 1.0)
    top = float(w.max())
    if top <= 0.0:
        return torch.zeros(k, dtype=torch.float64)
    w = w / top
    w = torch.where(w == 1.0, 0.99, w)
    logit = kappa * (torch.log(w / (1.0 - w)) + 0.5)
    return torch.nan_to_num(logit, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)


@register("foolsgold")
def foolsgold(
    updates: Tensor,
    *,
    own: Tensor | None = None,
    f: int = 0,
    histories: Tensor | None = None,
    kappa: float = 1.0,
) -> Tensor:
    """Weighted mean of {own} ∪ updates with own weight 1, update j weight w_j.

    w = foolsgold_weights(histories), where ``histories`` (len(updates), h) holds each
    sender's accumulated update history; by default the updates themselves are treated
    as the histories (pass updates, not models: models are all nearly parallel).
    x = (own + Σ_j w_j u_j) / (1 + Σ_j w_j). Without own, if all w_j are 0 the result
    falls back to the plain mean of updates. Ignores f. byzfl has no FoolsGold.
    """
    hist = updates if histories is None else histories
    if hist.dim() != 2 or hist.shape[0] != updates.shape[0]:
        raise AggregationError(
            f"histories must have shape ({updates.shape[0]}, h), got {tuple(hist.shape)}"
        )
    w = foolsgold_weights(hist, kappa).to(updates.device)
    if own is not None:
        w = torch.cat([torch.ones(1, dtype=w.dtype, device=w.device), w])
    elif float(w.sum()) == 0.0:
        return updates.mean(dim=0)
    return weighted_sum(updates, own, w / w.sum())
