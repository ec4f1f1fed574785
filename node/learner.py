"""The CPU side of one real peer: its model vector, local data, training, merging.

Everything here is blocking torch work; the runtime calls it through
``asyncio.to_thread`` so the event loop keeps serving the network and the API.
Training and evaluation reuse BatchedTrainer with one row, the same code the
simulator runs for thousands of peers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from rumor import aggregation
from rumor.node.data import Dataset
from rumor.node.merging import is_stateful, merge_updates, resolve_rule
from rumor.node.trainer import BatchedTrainer
from rumor.protocols.events import ReceivedUpdate


@dataclass
class LearnerConfig:
    model: str = "mlp"
    aggregator: str = "variance-corrected"
    lr: float = 0.1
    batch_size: int = 8
    local_epochs: int = 1
    f: int = 0
    seed: int = 0
    rule_params: dict[str, Any] = field(default_factory=dict)


class Learner:
    """Owns one model vector; train / merge / adopt / evaluate, all synchronous."""

    def __init__(
        self,
        config: LearnerConfig,
        dataset: Dataset,
        indices: npt.NDArray[np.int64],
        params: torch.Tensor,
        peer_index: int = 0,
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.indices = indices
        self.peer_index = peer_index
        self.trainer = BatchedTrainer(
            config.model,
            dataset.input_shape,
            dataset.num_classes,
            dataset,
            lr=config.lr,
            batch_size=config.batch_size,
            local_epochs=config.local_epochs,
        )
        self.params = params.detach().to(torch.float32).clone()
        self.rule = resolve_rule(config.aggregator)
        self.defense = (
            aggregation.make_defense(config.aggregator, **config.rule_params)
            if is_stateful(config.aggregator) else None
        )
        self.last_accuracy: float | None = None
        self._round = 0

    @property
    def dimension(self) -> int:
        return int(self.params.shape[0])

    @property
    def num_samples(self) -> int:
        return len(self.indices)

    def train(self, round_: int) -> npt.NDArray[np.float32]:
        self._round = round_
        out = self.trainer.train(
            self.params[None],
            [self.indices],
            seed=self.config.seed,
            round=round_,
            steps=self.trainer.steps_per_round([len(self.indices)]),
        )
        self.params = out[0]
        return self.params.numpy().copy()

    def merge(self, updates: Sequence[ReceivedUpdate]) -> npt.NDArray[np.float32]:
        self.params = merge_updates(
            self.config.aggregator,
            self.rule,
            self.params,
            updates,
            f=self.config.f,
            layout=self.trainer.layout,
            params=self.config.rule_params,
            defense=self.defense,
            round_=self._round,
        )
        return self.params.numpy().copy()

    def adopt(self, vector: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        self.params = torch.from_numpy(np.array(vector, dtype=np.float32))
        return self.params.numpy().copy()

    def evaluate(self) -> float:
        acc = self.trainer.evaluate(self.params[None], self.dataset.x_test, self.dataset.y_test)
        self.last_accuracy = float(acc[0])
        return self.last_accuracy
