"""MaskablePPO policy whose action logits come from one shared per-job scorer.

The same small network scores every row of the job table, so the number of parameters does not
depend on the number of jobs: one model serves 15 or 170 jobs, and padding rows cost nothing
but masked-out logits. Each job sees the whole shop through a mean-pooled context vector. The
critic reads mean- and max-pooled job embeddings.

`JobScorer.forward_actor` is re-implemented in NumPy by `fast_policy` for serving; keep the
two in step (a start-up check compares their actions).
"""

from __future__ import annotations

from typing import Any

import torch as th
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn

HIDDEN = 64


class JobScorer(nn.Module):
    """Features (B, rows*F) -> per-row logits (B, rows) and a critic latent (B, HIDDEN)."""

    def __init__(self, rows: int, n_features: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.rows, self.n_features = rows, n_features
        self.latent_dim_pi = rows
        self.latent_dim_vf = hidden
        self.embed = nn.Sequential(
            nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
        )
        self.score = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.critic = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh())

    def _embed(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        return self._embed_table(features.view(-1, self.rows, self.n_features))

    def _embed_table(self, table: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        present = table[..., :1]  # column 0 is "present"
        emb = self.embed(table)
        count = present.sum(dim=1).clamp(min=1.0)
        mean = (emb * present).sum(dim=1) / count
        return emb, present, mean

    def _actor(self, emb: th.Tensor, mean: th.Tensor) -> th.Tensor:
        context = mean.unsqueeze(1).expand(-1, self.rows, -1)
        logits: th.Tensor = self.score(th.cat([emb, context], dim=-1)).squeeze(-1)
        return logits

    def _critic(self, emb: th.Tensor, present: th.Tensor, mean: th.Tensor) -> th.Tensor:
        peak = (emb - 2.0 * (1.0 - present)).max(dim=1).values  # tanh < 1: padding never wins
        latent: th.Tensor = self.critic(th.cat([mean, peak], dim=-1))
        return latent

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        emb, present, mean = self._embed(features)
        return self._actor(emb, mean), self._critic(emb, present, mean)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        emb, _, mean = self._embed(features)
        return self._actor(emb, mean)

    def table_logits(self, table: th.Tensor) -> th.Tensor:
        """Actor logits of a (B, any rows, F) table: the same scorer on any number of rows."""
        emb, _, mean = self._embed_table(table)
        logits: th.Tensor = self.score(
            th.cat([emb, mean.unsqueeze(1).expand(-1, table.shape[1], -1)], dim=-1)
        ).squeeze(-1)
        return logits

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        emb, present, mean = self._embed(features)
        return self._critic(emb, present, mean)


class JobScorerPolicy(MaskableActorCriticPolicy):
    """The scorer's logits are the action logits (no extra linear layer on top)."""

    def __init__(self, *args: Any, hidden: int = HIDDEN, **kwargs: Any) -> None:
        self.hidden = hidden
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        rows, n_features = self.observation_space.shape  # type: ignore[misc]
        self.mlp_extractor = JobScorer(rows, n_features, self.hidden)  # type: ignore[assignment]

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()
        # rebuilt without the dropped layer's weights
        self.optimizer = self.optimizer_class(
            self.parameters(),
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self.optimizer_kwargs,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data: dict[str, Any] = super()._get_constructor_parameters()
        data["hidden"] = self.hidden
        return data
