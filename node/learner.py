"""The CPU side of one real peer: its model vector, local data, training, evaluation.

Everything here is blocking torch work; the runtime runs it off the event loop.
Training and evaluation reuse BatchedTrainer with one row, the same code the
simulator runs for thousands of peers. Merging is not here: it is the Peer's merger
(rumor.node.engine), the same one the simulator runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from rumor.node.data import Dataset
from rumor.node.engine.evaluator import VAL_SIZE, LocalEvaluator
from rumor.node.optimizers import parse_optimizer
from rumor.node.trainer import BatchedTrainer
from rumor.protocols.events import TrainingHints


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
    label_map: dict[int, int] | None = None  # a label-flipping attacker's relabelling
    optimizer: str = "sgd"  # sgd | sam[:rho=R] (rumor.node.optimizers)


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
            sam_rho=parse_optimizer(config.optimizer).sam_rho,
        )
        self.params = params.detach().to(torch.float32).clone()
        self.momentum: torch.Tensor | None = None  # persistent Polyak momentum (MoNNA)
        self.last_accuracy: float | None = None

    @property
    def dimension(self) -> int:
        return int(self.params.shape[0])

    @property
    def num_samples(self) -> int:
        return len(self.indices)

    def train(self, round_: int, hints: TrainingHints | None = None
              ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(base, trained): one round of local SGD from the current model. The model
        is not replaced: the runtime adopts ``trained`` once the Peer accepts it.
        ``hints.local_steps == 0`` (a mixing step): trained is the current model."""
        base = self.params.clone()
        beta = hints.polyak_beta if hints is not None else None
        if beta is not None and self.momentum is None:
            self.momentum = torch.zeros_like(base)[None]
        out = self.trainer.train(
            base[None],
            [self.indices],
            seed=self.config.seed,
            round=round_,
            steps=hints.local_steps if hints is not None and hints.local_steps is not None
            else self.trainer.steps_per_round([len(self.indices)]),
            label_maps={0: self.config.label_map} if self.config.label_map else None,
            momentum_state=self.momentum if beta is not None else None,
            polyak_beta=beta,
        )
        return base.numpy(), out[0].numpy().copy()

    def evaluator(self, val_size: int = VAL_SIZE) -> LocalEvaluator:
        """This peer's Evaluator (per-class F1 on a validation set drawn from its own
        local data only), for merge rules that need one (bristle)."""
        return LocalEvaluator(self.trainer, self.indices, val_size=val_size,
                              seed=self.config.seed)

    def set_params(self, vector: npt.NDArray[np.floating]) -> None:
        self.params = torch.from_numpy(np.array(vector, dtype=np.float32))

    def evaluate(self) -> float:
        acc = self.trainer.evaluate(self.params[None], self.dataset.x_test, self.dataset.y_test)
        self.last_accuracy = float(acc[0])
        return self.last_accuracy
