"""Local SGD for many peers at once: each peer's model is one row of a ``(P, d)`` tensor.

The simulator trains every peer that trains at the same virtual instant in one batched
computation: the rows are viewed as a dict of stacked parameter tensors and
``torch.func.vmap(torch.func.grad(loss))`` over ``torch.func.functional_call`` gives
every peer's gradient on its own minibatch in one pass. The real-network node trains
its single model through :meth:`BatchedTrainer.train_one`, which runs the very same
code with one row, so the two cannot drift.

Update rule (per peer, per step; the same as ``torch.optim.SGD`` with dampening 0 and
no Nesterov)::

    g   = grad of mean cross-entropy over the peer's minibatch
    g   = g + weight_decay * w
    buf = momentum * buf + g          (buf starts at 0 every round)
    w   = w - lr * (buf if momentum else g)

Opt-in persistent Polyak momentum (MoNNA): ``train(..., momentum_state=M,
polyak_beta=beta)`` with M a ``(P, d)`` float32 tensor instead uses, per step::

    m   = beta * m + (1 - beta) * g   (m = M[p] at the start of the round)
    w   = w - lr * m

and writes each trained peer's final m back into M[p] (M is the one argument that is
modified in place), so the momentum carries over from round to round. ``momentum``
must then be 0.

Opt-in SAM (DFedSAM's local step, ``sam_rho > 0``): the gradient of each step is taken
at the ascent point instead of at w, on the same minibatch::

    g   = grad at w
    w'  = w + rho * g / ||g||         (||.|| over all of one peer's parameters)
    g   = grad at w'                  (then weight decay, momentum and the step as above)

It costs a second gradient per step and works for every row at once (vmap) as for one.

Minibatches. Every peer draws from its own index list through its own generator,
``numpy.random.Generator(PCG64(SeedSequence([seed, round, peer])))``, so a peer's
batches depend only on (seed, round, peer id) and never on which other peers share
the batch or on the chunk size. The generator yields a stream of fresh permutations of
the peer's indices, concatenated; batch s of the round is items
``[s*batch_size, (s+1)*batch_size)`` of that stream. So within a pass over the peer's
data, sampling is without replacement; a peer with fewer samples than ``batch_size``
sees each sample several times in one batch (batches keep one shape so that vmap can
stack them).

Steps per round. All peers trained together take the same number of steps ``S``:
``local_steps`` if given, else ``local_epochs * ceil(median(n_p) / batch_size)`` where
the median runs over the sizes of all non-empty index lists passed to ``train`` (not
only the selected rows, so the step count does not depend on the selection). A peer
with more data than the median therefore sees part of it each round; one with less
sees it more than once. Peers with an empty index list are returned unchanged.

Memory is bounded by ``chunk_size`` rows at a time (activations are about
``chunk_size * batch_size`` examples).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from rumor.aggregation.layout import Layout
from rumor.node import batched_mlp
from rumor.node.data.datasets import Dataset
from rumor.node.models import build_model, flatten_params, param_layout, unflatten_into
from rumor.protocols.errors import ConfigError

LabelMap = Sequence[int] | Mapping[int, int] | torch.Tensor
IndexList = Sequence[int] | npt.NDArray[np.integer]


def peer_generator(seed: int, round: int, peer: int) -> np.random.Generator:
    """The generator of ``peer``'s minibatches in ``round`` (see the module docstring)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, round, peer])))


def batch_schedule(
    indices: IndexList, steps: int, batch_size: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """``(steps, batch_size)`` dataset indices: consecutive slices of a stream of fresh
    permutations of ``indices`` (without replacement within each pass).

    The stream is ``rng.permuted(np.tile(indices, (passes, 1)), axis=1).reshape(-1)``
    with ``passes = ceil(steps * batch_size / len(indices))``.
    """
    idx = np.asarray(indices, dtype=np.int64)
    n = len(idx)
    if n == 0:
        raise ValueError("cannot draw batches from an empty index list")
    need = steps * batch_size
    passes = -(-need // n)
    # row j of the tile is pass j; permuted(axis=1) shuffles each row independently
    stream = rng.permuted(np.tile(idx, (passes, 1)), axis=1).reshape(-1)
    return stream[:need].reshape(steps, batch_size)


def sam_ascent(params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor],
               rho: float) -> dict[str, torch.Tensor]:
    """SAM's ascent point per row: ``w' = w + rho * g / ||g||``.

    ``params`` and ``grads`` map names to ``(B, *shape)`` tensors (B peers); the norm of
    row b runs over all of its tensors. A zero gradient leaves w where it is.
    """
    b = next(iter(grads.values())).shape[0]
    sq = torch.zeros(b, dtype=torch.float32)
    for g in grads.values():
        sq = sq + g.reshape(b, -1).pow(2).sum(1)
    scale = rho / (sq.sqrt() + 1e-12)
    return {k: params[k] + grads[k] * scale.view(b, *([1] * (grads[k].dim() - 1)))
            for k in params}


def label_map_tensor(label_map: LabelMap | None, num_classes: int) -> torch.Tensor:
    """A ``(num_classes,)`` int64 lookup ``t`` with ``t[y]`` the label a peer trains on.

    ``label_map`` is a full sequence/tensor of length ``num_classes`` or a partial dict
    ``{from: to}`` (unmentioned labels map to themselves); None is the identity.
    """
    table = torch.arange(num_classes, dtype=torch.int64)
    if label_map is None:
        return table
    if isinstance(label_map, Mapping):
        for src, dst in label_map.items():
            table[int(src)] = int(dst)
    else:
        t = torch.as_tensor(label_map, dtype=torch.int64).reshape(-1)
        if t.numel() != num_classes:
            raise ConfigError(f"label map needs {num_classes} entries, got {t.numel()}")
        table = t.clone()
    if int(table.min()) < 0 or int(table.max()) >= num_classes:
        raise ConfigError(f"label map sends labels outside [0, {num_classes})")
    return table


#: Inputs per forward call when one model is evaluated alone (see ``predict``).
ONE_MODEL_BATCH = 256


_F = TypeVar("_F", bound=Callable[..., Any])


def warm_up() -> None:
    """Pay torch.func's one-time start now: its first ``grad`` imports torch._dynamo
    (1.4-2.2 s on this box). A launch worker calls this before its peers report ready,
    so the cost does not land inside round 0, where the peers that finish first wait on
    the others until their round timeout."""
    lin = nn.Linear(2, 1)
    params = {k: v.detach() for k, v in lin.named_parameters()}

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(lin, p, (x,))
        return out.sum()

    grad(loss)(params, torch.zeros(1, 2))


def _holds_module(method: _F) -> _F:
    """Run ``method`` holding the trainer's module lock.

    ``functional_call`` swaps the parameters of the one shared ``nn.Module`` for the
    duration of a call, so two threads using it at once (the real node trains in a
    worker thread while its engine thread evaluates a merge) see each other's tensors:
    training then fails with "One of the differentiated Tensors does not require grad"
    (seen on the NAT test's peers, and for a catch-up training started while the
    previous round's training was still in flight).
    """

    @functools.wraps(method)
    def locked(self: BatchedTrainer, *args: Any, **kwargs: Any) -> Any:
        with self._module_lock:
            return method(self, *args, **kwargs)

    return cast(_F, locked)


class BatchedTrainer:
    """Local SGD and evaluation for many peers whose parameters are rows of ``(P, d)``.

    ``local_steps`` (if given) overrides ``local_epochs``. ``chunk_size`` bounds how many
    peers are trained or evaluated at once. The trainer holds the training set of
    ``dataset`` and never modifies the tensors passed in.
    """

    def __init__(
        self,
        model_name: str,
        input_shape: Sequence[int],
        num_classes: int,
        dataset: Dataset,
        *,
        lr: float,
        batch_size: int = 32,
        local_epochs: int = 1,
        local_steps: int | None = None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        chunk_size: int = 256,
        vmap_peers: bool | None = None,
        sam_rho: float = 0.0,
    ) -> None:
        if not math.isfinite(sam_rho) or sam_rho < 0:
            raise ConfigError(f"SAM's rho must be >= 0, got {sam_rho}")
        if lr <= 0 or batch_size < 1 or local_epochs < 1 or chunk_size < 1:
            raise ConfigError("lr, batch_size, local_epochs and chunk_size must be positive")
        if local_steps is not None and local_steps < 1:
            raise ConfigError(f"local_steps must be >= 1, got {local_steps}")
        if not 0.0 <= momentum < 1.0 or weight_decay < 0:
            raise ConfigError("momentum must be in [0, 1) and weight_decay >= 0")
        self.model_name = model_name
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = num_classes
        self.module = build_model(model_name, self.input_shape, num_classes, dataset)
        if list(self.module.buffers()):
            raise ConfigError(f"model {model_name!r} has buffers; batched training needs none")
        if tuple(dataset.input_shape) != self.input_shape:
            raise ConfigError(
                f"dataset {dataset.name} has input shape {dataset.input_shape}, "
                f"the model expects {self.input_shape}"
            )
        self._module_lock = threading.RLock()  # see _holds_module
        self.layout: Layout = param_layout(self.module)
        self.d = self.layout[-1].stop
        self.x_train = dataset.x_train
        self.y_train = dataset.y_train
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.local_epochs = int(local_epochs)
        self.local_steps = local_steps
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.chunk_size = int(chunk_size)
        self.sam_rho = float(sam_rho)
        # vmap over peers wins for small dense models; for conv models torch's batched
        # convolutions are slower than a plain loop over peers (measured: LeNet-5 on
        # MNIST, 50 peers). None picks by model.
        self.use_vmap = (model_name in ("mlp", "bristle-head")) if vmap_peers is None \
            else bool(vmap_peers)

        module = self.module

        def loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
                 ) -> torch.Tensor:
            logits = functional_call(module, params, (x,))
            return F.cross_entropy(logits, y)

        def logits(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(module, params, (x,))
            return out

        self._grad1: Callable[..., dict[str, torch.Tensor]] = grad(loss)
        self._grads: Callable[..., dict[str, torch.Tensor]] = vmap(self._grad1)
        self._logits: Callable[..., torch.Tensor] = vmap(logits, in_dims=(0, None))
        # the MLP's batched gradients and logits by hand (rumor.node.batched_mlp): the
        # same function without torch.func's first-call import (~2 s) and its overhead
        layers = self._mlp_layers = batched_mlp.linear_layers(module)
        if layers is not None:
            self._grads = functools.partial(batched_mlp.grads, layers=layers)
            self._logits = functools.partial(batched_mlp.logits, layers=layers)

    # -- parameters ---------------------------------------------------------------
    def _views(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows ``(B, d)`` as ``{name: (B, *shape)}`` views sharing w's storage."""
        b = w.shape[0]
        return {s.name: w[:, s.start:s.stop].view(b, *s.shape) for s in self.layout}

    def _check_params(self, params: torch.Tensor) -> torch.Tensor:
        if params.dim() != 2 or params.shape[1] != self.d:
            raise ValueError(f"expected params of shape (P, {self.d}), got {tuple(params.shape)}")
        return params.detach().to(torch.float32)

    def steps_per_round(self, sizes: Sequence[int]) -> int:
        """``local_steps``, or ``local_epochs * ceil(median(sizes > 0) / batch_size)``."""
        if self.local_steps is not None:
            return self.local_steps
        nonzero = [s for s in sizes if s > 0]
        if not nonzero:
            return 0
        median = float(np.median(np.asarray(nonzero, dtype=np.float64)))
        return self.local_epochs * max(1, math.ceil(median / self.batch_size))

    # -- training -----------------------------------------------------------------
    def train(
        self,
        params: torch.Tensor,
        peer_indices: Sequence[IndexList],
        *,
        seed: int,
        round: int = 0,
        rows: Sequence[int] | npt.NDArray[np.integer] | None = None,
        steps: int | None = None,
        label_maps: Mapping[int, LabelMap] | None = None,
        momentum_state: torch.Tensor | None = None,
        polyak_beta: float | None = None,
    ) -> torch.Tensor:
        """One round of local SGD for the peers ``rows`` (default: all) of ``params``.

        ``params`` is ``(P, d)``; ``peer_indices[p]`` is peer p's training indices
        (``len(peer_indices) == P``); ``label_maps[p]`` (optional) relabels peer p's
        data (label flipping). Peer p's batches come from ``peer_generator(seed,
        round, p)``. Returns a new ``(len(rows), d)`` tensor; ``params`` is untouched.
        ``momentum_state`` (P, d) float32 with ``polyak_beta``: persistent Polyak
        momentum (module docstring); rows of trained peers are updated in place.
        """
        polyak = self._check_polyak(params, momentum_state, polyak_beta)
        w_all = self._check_params(params)
        if len(peer_indices) != w_all.shape[0]:
            raise ValueError(f"{len(peer_indices)} index lists for {w_all.shape[0]} peers")
        sel = np.arange(w_all.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        if steps is None:
            steps = self.steps_per_round([len(ix) for ix in peer_indices])
        # ``out`` is a fresh copy: it never shares storage with ``params``
        out = w_all.clone() if rows is None else w_all[torch.from_numpy(sel)].contiguous()
        active = [i for i, p in enumerate(sel) if len(peer_indices[int(p)]) > 0]
        if steps <= 0 or not active:
            return out
        chunk = self.chunk_size if self.use_vmap else 1
        for c0 in range(0, len(active), chunk):
            pos = active[c0:c0 + chunk]
            peers = [int(sel[i]) for i in pos]
            maps = None
            if label_maps:
                maps = torch.stack(
                    [label_map_tensor(label_maps.get(p), self.num_classes) for p in peers]
                )
            indices = [peer_indices[p] for p in peers]
            buf = None
            if polyak is not None:
                buf = polyak[0][torch.as_tensor(peers, dtype=torch.int64)].contiguous()
            if pos[-1] - pos[0] + 1 == len(pos):  # a run of rows: train the view in place
                self._train_rows(
                    out[pos[0]:pos[-1] + 1], indices, peers, seed, round, steps, maps, buf,
                    None if polyak is None else polyak[1],
                )
            else:
                pos_t = torch.as_tensor(pos, dtype=torch.int64)
                out[pos_t] = self._train_rows(
                    out[pos_t], indices, peers, seed, round, steps, maps, buf,
                    None if polyak is None else polyak[1],
                )
            if polyak is not None and buf is not None:
                polyak[0][torch.as_tensor(peers, dtype=torch.int64)] = buf
        return out

    def _check_polyak(
        self, params: torch.Tensor, state: torch.Tensor | None, beta: float | None
    ) -> tuple[torch.Tensor, float] | None:
        if state is None and beta is None:
            return None
        if state is None or beta is None:
            raise ConfigError("persistent momentum needs both momentum_state and polyak_beta")
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"polyak_beta must be in [0, 1), got {beta}")
        if self.momentum:
            raise ConfigError("polyak_beta and momentum > 0 cannot be combined")
        if state.shape != params.shape or state.dtype != torch.float32:
            raise ValueError(f"momentum_state must be float32 of shape {tuple(params.shape)}, "
                             f"got {state.dtype} {tuple(state.shape)}")
        return state, float(beta)

    @_holds_module
    def _train_rows(
        self,
        w: torch.Tensor,
        indices: Sequence[IndexList],
        peers: Sequence[int],
        seed: int,
        round: int,
        steps: int,
        maps: torch.Tensor | None,
        polyak_buf: torch.Tensor | None = None,
        polyak_beta: float | None = None,
    ) -> torch.Tensor:
        """Train the contiguous ``(B, d)`` rows ``w`` in place for ``steps``; returns w.

        ``w`` must not alias the caller's ``params``. The update runs per parameter
        tensor on views of ``w`` (and of the momentum buffer), so no (B, d) gradient is
        ever assembled. ``polyak_buf`` (B, d), with ``polyak_beta``, is the persistent
        Polyak momentum of these rows, updated in place.
        """
        sched = torch.from_numpy(np.stack([
            batch_schedule(ix, steps, self.batch_size, peer_generator(seed, round, p))
            for ix, p in zip(indices, peers, strict=True)
        ]))  # (B, steps, batch_size)
        single = w.shape[0] == 1
        views = self._views(w)
        bufs = self._views(torch.zeros_like(w)) if self.momentum else None
        pbufs = self._views(polyak_buf) if polyak_buf is not None else None
        pbeta = 0.0 if polyak_beta is None else float(polyak_beta)
        with torch.no_grad():
            for s in range(steps):
                idx = sched[:, s]
                xb = self.x_train[idx]
                yb = self.y_train[idx]
                if maps is not None:
                    yb = torch.gather(maps, 1, yb)
                with torch.enable_grad():
                    g = self._grad_rows(views, xb, yb, single)
                    if self.sam_rho:  # SAM: the gradient at the ascent point
                        g = self._grad_rows(sam_ascent(views, g, self.sam_rho), xb, yb,
                                            single)
                for name, wv in views.items():
                    step = g[name]
                    if self.weight_decay:
                        step.add_(wv, alpha=self.weight_decay)
                    if bufs is not None:
                        step = bufs[name].mul_(self.momentum).add_(step)
                    elif pbufs is not None:
                        step = pbufs[name].mul_(pbeta).add_(step, alpha=1.0 - pbeta)
                    wv.add_(step, alpha=-self.lr)
        return w

    def _grad_rows(self, params: Mapping[str, torch.Tensor], xb: torch.Tensor,
                   yb: torch.Tensor, single: bool) -> dict[str, torch.Tensor]:
        """Per-row gradients ``{name: (B, *shape)}`` of each row's minibatch loss."""
        if single and self._mlp_layers is None:  # one row: plain grad, half vmap's overhead
            g1 = self._grad1({k: v[0] for k, v in params.items()}, xb[0], yb[0])
            return {k: v.unsqueeze(0) for k, v in g1.items()}
        return self._grads(dict(params), xb, yb)

    def train_one(
        self,
        model: torch.Tensor | nn.Module,
        indices: IndexList,
        *,
        seed: int,
        round: int = 0,
        peer: int = 0,
        steps: int | None = None,
        label_map: LabelMap | None = None,
    ) -> torch.Tensor:
        """One round of local SGD for a single model (the real-network node).

        ``model`` is a parameter vector (d,) or an nn.Module of this trainer's
        architecture (then updated in place too). The batches are those that
        :meth:`train` would draw for peer ``peer``. Returns the new vector (d,).
        """
        vec = flatten_params(model) if isinstance(model, nn.Module) else model.reshape(-1)
        if steps is None:
            steps = self.steps_per_round([len(indices)])
        peer_indices: list[IndexList] = [indices]
        new = vec
        if steps > 0 and len(indices) > 0:
            maps = None
            if label_map is not None:
                maps = label_map_tensor(label_map, self.num_classes).unsqueeze(0)
            w = self._check_params(vec.unsqueeze(0)).clone()
            new = self._train_rows(w, peer_indices, [peer], seed, round, steps, maps)[0]
        else:
            new = self._check_params(vec.unsqueeze(0))[0].clone()
        if isinstance(model, nn.Module):
            unflatten_into(model, new)
        return new

    # -- evaluation -----------------------------------------------------------------
    @_holds_module
    def predict(
        self,
        params: torch.Tensor,
        x: torch.Tensor,
        *,
        chunk_size: int | None = None,
        max_examples: int = 32768,
    ) -> torch.Tensor:
        """``(P, N)`` int64 predicted classes of every row's model on ``x`` (N, *shape).

        Works on ``chunk_size`` rows (default ``self.chunk_size``) and
        ``max(1, max_examples // rows)`` inputs at a time to bound memory, at most
        ``ONE_MODEL_BATCH`` when one model runs alone (conv models are memory-bound on
        big batches: the small CNN on 2,000 MNIST images took 6.4 s in one call and
        2.4 s in batches of 256, same predictions; issue 13).
        """
        w_all = self._check_params(params)
        p_total, n = w_all.shape[0], x.shape[0]
        out = torch.empty((p_total, n), dtype=torch.int64)
        chunk = chunk_size or (self.chunk_size if self.use_vmap else 1)
        with torch.no_grad():
            for c0 in range(0, p_total, chunk):
                w = w_all[c0:c0 + chunk].contiguous()
                views = self._views(w)
                step = max(1, max_examples // w.shape[0])
                if w.shape[0] == 1:  # one model: batches past a few hundred spill caches
                    step = min(step, ONE_MODEL_BATCH)
                for n0 in range(0, n, step):
                    if w.shape[0] == 1 and self._mlp_layers is None:  # no vmap overhead
                        one = {k: v[0] for k, v in views.items()}
                        logits = functional_call(self.module, one, (x[n0:n0 + step],))[None]
                    else:
                        logits = self._logits(views, x[n0:n0 + step])
                    out[c0:c0 + w.shape[0], n0:n0 + step] = logits.argmax(dim=-1)
        return out

    def evaluate(
        self,
        params: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        chunk_size: int | None = None,
    ) -> npt.NDArray[np.float64]:
        """Accuracy of every row's model on ``(x, y)``: a ``(P,)`` float64 array."""
        pred = self.predict(params, x, chunk_size=chunk_size)
        correct = (pred == y.reshape(1, -1)).sum(dim=1).numpy().astype(np.float64)
        result: npt.NDArray[np.float64] = correct / max(1, int(y.numel()))
        return result


def confusion_matrices(
    pred: torch.Tensor, y: torch.Tensor, num_classes: int
) -> npt.NDArray[np.int64]:
    """``(P, C, C)`` counts: ``[p, true, predicted]`` for predictions ``(P, N)``.

    Per-class recall of peer p is ``M[p].diagonal() / M[p].sum(1)``, precision
    ``M[p].diagonal() / M[p].sum(0)``, F1 their harmonic mean.
    """
    p = pred.shape[0]
    c = num_classes
    flat = (torch.arange(p).reshape(-1, 1) * c * c + y.reshape(1, -1) * c + pred).reshape(-1)
    counts = torch.bincount(flat, minlength=p * c * c).reshape(p, c, c)
    result: npt.NDArray[np.int64] = counts.numpy().astype(np.int64)
    return result
