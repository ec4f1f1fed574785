"""LocalEvaluator: a peer's Evaluator (rumor.protocols.hooks) over its own local data.

Validation set = up to ``val_size`` of the peer's own training samples (seeded draw;
all of them when it holds fewer). It therefore contains only classes the peer holds:
``familiar`` is the set of classes present in it. A peer has no other labelled data,
so the validation samples are also training samples (this favours own's F1 on the
familiar classes a little; it never leaks a class the peer does not hold).

``per_class_f1(vectors)`` runs the trainer's batched prediction (the same module the
peer trains) on the validation set and returns per-class F1, (n, C). Built once per peer
by its runtime (the simulator from its trainer rows and the peer's indices, the real node
from its Learner) and handed to ``build_peer``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from rumor.aggregation.bristle import per_class_f1
from rumor.node.models import BristleHead
from rumor.node.trainer import BatchedTrainer, confusion_matrices

VAL_SIZE = 100


class LocalEvaluator:
    def __init__(self, trainer: BatchedTrainer, indices: npt.ArrayLike, *,
                 val_size: int = VAL_SIZE, seed: int = 0) -> None:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) > val_size:
            rng = np.random.default_rng([seed & 0xFFFFFFFF, 11])
            idx = np.sort(rng.choice(idx, size=val_size, replace=False))
        self.trainer = trainer
        self.indices = idx
        sel = torch.from_numpy(idx)
        self.x = trainer.x_train[sel]
        self.y = trainer.y_train[sel]
        c = trainer.num_classes
        fam = np.zeros(c, dtype=bool)
        fam[np.unique(self.y.numpy())] = True
        self._familiar = fam
        self._feats: torch.Tensor | None = None
        module = trainer.module
        if isinstance(module, BristleHead) and len(idx):  # frozen features: once
            with torch.no_grad():
                self._feats = module.features(self.x)

    @property
    def familiar(self) -> npt.NDArray[np.bool_]:
        return self._familiar

    def per_class_f1(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        v = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        if v.dim() == 1:
            v = v[None]
        c = self.trainer.num_classes
        if len(self.indices) == 0:
            return np.zeros((v.shape[0], c), dtype=np.float64)
        if self._feats is not None:
            w, b = self.trainer.layout  # head.weight (C, h), head.bias (C,)
            with torch.no_grad():
                logits = torch.einsum("nh,pch->pnc", self._feats,
                                      v[:, w.start:w.stop].reshape(-1, *w.shape))
                pred = (logits + v[:, b.start:b.stop][:, None, :]).argmax(-1)
        else:
            pred = self.trainer.predict(v, self.x)
        return per_class_f1(confusion_matrices(pred, self.y, c))
