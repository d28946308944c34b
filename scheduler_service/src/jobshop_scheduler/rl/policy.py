"""MaskablePPO policy whose action logits come from one shared per-job scorer.

The same small network scores every row of the job table, so the number of parameters does not
depend on the number of jobs: one model serves 15 or 170 jobs, and padding rows cost nothing
but masked-out logits. Each job sees the whole shop through a mean-pooled context vector. The
critic reads mean- and max-pooled job embeddings.

A model with a dispatching window (`state.dispatch_window`) has a second scorer of the same
shape for the states dispatched with it (the table's `window` column holds the window there,
and every scorer reads only its sign, 1): choosing
among active-schedule candidates, which may leave a machine idle, is another decision than
choosing among non-delay ones, and training one leaves the other's plans exactly as they were.
(The window, and with it this scorer, also serves the flexible shops with few jobs per machine
where a model sets `window_flexible`, and those with short routes where it sets
`window_flexible_ops`; the other flexible shops keep the first scorer.)
A model may also have a long-shop scorer for the classic shops longer than its window's
(`long_shops`; the `window` column is -1 there), so that learning those leaves the flexible
shops' choices, which the first scorer keeps, exactly as they were. And a fourth for the long
shops with alike routes (`alike_shops`), which the window serves narrowed: the states whose
window is below the model's own, so that learning those leaves the square shops' plans alone.

`JobScorer.table_logits` is re-implemented in NumPy by `fast_policy` for serving; keep the
two in step (a start-up check compares their actions).
"""

from __future__ import annotations

from typing import Any

import torch as th
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn

from jobshop_scheduler.heuristics.compiled import CompiledProblem
from jobshop_scheduler.rl.features import WINDOW_COLUMN
from jobshop_scheduler.rl.state import DispatchScheme

HIDDEN = 64
# The dispatching scheme's buffers (`JobScorer`); --init never overrides them
# (`train.initial_parameters`). Their keys in the SB3 policy's state dict and the actor arrays:
SCHEME_BUFFERS = tuple(buffer for _, buffer in DispatchScheme.BUFFERS)
SCHEME_KEYS = tuple(f"mlp_extractor.{name}" for name in SCHEME_BUFFERS)


def _embedder(n_features: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
    )


def _head(hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def _scorer_view(table: th.Tensor) -> th.Tensor:
    """`features.scorer_view` in torch: the `window` column routes, its sign informs."""
    column = table[..., WINDOW_COLUMN]
    sign = th.sign(column)
    if th.equal(column, sign):
        return table
    view = table.clone()
    view[..., WINDOW_COLUMN] = sign
    return view


class JobScorer(nn.Module):
    """Features (B, rows*F) -> per-row logits (B, rows) and a critic latent (B, HIDDEN)."""

    window_embed: nn.Sequential | None
    window_score: nn.Sequential | None
    long_embed: nn.Sequential | None
    long_score: nn.Sequential | None
    alike_embed: nn.Sequential | None
    alike_score: nn.Sequential | None
    window: th.Tensor
    window_ratio: th.Tensor
    window_alike: th.Tensor
    window_narrowing: th.Tensor
    window_widening: th.Tensor
    window_flexible: th.Tensor
    window_flexible_ops: th.Tensor

    def __init__(
        self,
        rows: int,
        n_features: int,
        hidden: int = HIDDEN,
        *,
        scheme: DispatchScheme | None = None,
    ) -> None:
        super().__init__()
        scheme = scheme or DispatchScheme()
        window, long_shops = scheme.window, scheme.long_scorer
        self.rows, self.n_features = rows, n_features
        self.latent_dim_pi = rows
        self.latent_dim_vf = hidden
        self.embed, self.score = _embedder(n_features, hidden), _head(hidden)
        self.critic = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh())
        self.window_embed = _embedder(n_features, hidden) if window > 0 else None
        self.window_score = _head(hidden) if window > 0 else None
        self.long_embed = _embedder(n_features, hidden) if long_shops else None
        self.long_score = _head(hidden) if long_shops else None
        self.alike_embed = _embedder(n_features, hidden) if scheme.alike_scorer else None
        self.alike_score = _head(hidden) if scheme.alike_scorer else None
        # The dispatching scheme the scorer was trained for (`state.dispatch_window`): its
        # choices mean something only among the candidates of that scheme. Buffers, so they
        # travel in the state dict to the zip, the serving arrays and every FastScorer.
        for field, buffer in DispatchScheme.BUFFERS:
            self.register_buffer(buffer, th.tensor(float(getattr(scheme, field))))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # models from before the window dispatched non-delay, as this module's default does
        for name in SCHEME_BUFFERS:
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args)

    @property
    def scheme(self) -> DispatchScheme:
        """The dispatching scheme this model chooses in (as its buffers hold it)."""
        return DispatchScheme.from_buffers(
            lambda name: float(getattr(self, name)),
            self.long_embed is not None,
            self.alike_embed is not None,
        )

    def window_for(self, cp: CompiledProblem) -> float:
        """The dispatching window this model chooses in on ``cp`` (`FastScorer.window_for`)."""
        return self.scheme.window_for(cp)

    def _embed_table(
        self, view: th.Tensor, embed: nn.Module | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Embeddings of a table as the scorers read it (`_scorer_view`)."""
        present = view[..., :1]  # column 0 is "present"
        emb = (embed or self.embed)(view)
        count = present.sum(dim=1).clamp(min=1.0)
        mean = (emb * present).sum(dim=1) / count
        return emb, present, mean

    @staticmethod
    def _logits(score: nn.Module, emb: th.Tensor, mean: th.Tensor) -> th.Tensor:
        logits: th.Tensor = score(th.cat([emb, mean.unsqueeze(1).expand_as(emb)], dim=-1))
        return logits.squeeze(-1)

    def _critic(self, emb: th.Tensor, present: th.Tensor, mean: th.Tensor) -> th.Tensor:
        peak = (emb - 2.0 * (1.0 - present)).max(dim=1).values  # tanh < 1: padding never wins
        latent: th.Tensor = self.critic(th.cat([mean, peak], dim=-1))
        return latent

    def _table(self, features: th.Tensor) -> th.Tensor:
        return features.view(-1, self.rows, self.n_features)

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        table = self._table(features)
        view = _scorer_view(table)
        emb, present, mean = self._embed_table(view)
        return self._actor(table, view, emb, mean), self._critic(emb, present, mean)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.table_logits(self._table(features))

    def table_logits(self, table: th.Tensor) -> th.Tensor:
        """Actor logits of a (B, any rows, F) table: the same scorer on any number of rows;
        the window scorer's on the tables of states dispatched with the window."""
        view = _scorer_view(table)
        emb, _, mean = self._embed_table(view)
        return self._actor(table, view, emb, mean)

    def _actor(
        self, table: th.Tensor, view: th.Tensor, emb: th.Tensor, mean: th.Tensor
    ) -> th.Tensor:
        """`table_logits`, given the first scorer's embedding (the critic shares it): the
        `window` column of ``table`` routes, each scorer reads ``view``."""
        logits = self._logits(self.score, emb, mean)
        column = table[..., WINDOW_COLUMN]
        window = column.amax(dim=1)
        for embed, score, routed in (
            (self.window_embed, self.window_score, window > 0),
            (self.long_embed, self.long_score, column.amin(dim=1) < 0),
            (self.alike_embed, self.alike_score, (window > 0) & (window < self.window)),
        ):
            if embed is None or score is None or not bool(routed.any()):
                continue
            emb, _, mean = self._embed_table(view, embed)
            logits = th.where(routed.unsqueeze(1), self._logits(score, emb, mean), logits)
        return logits

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self._critic(*self._embed_table(_scorer_view(self._table(features))))

    def window_parameters(self) -> list[nn.Parameter]:
        """The window scorer's weights (none without a window)."""
        return self._parameters_of(self.window_embed, self.window_score)

    def long_parameters(self) -> list[nn.Parameter]:
        """The long-shop scorer's weights (none without one)."""
        return self._parameters_of(self.long_embed, self.long_score)

    def alike_parameters(self) -> list[nn.Parameter]:
        """The long alike shops' scorer's weights (none without one)."""
        return self._parameters_of(self.alike_embed, self.alike_score)

    def non_delay_parameters(self) -> list[nn.Parameter]:
        """The first scorer's weights: the states no other scorer takes."""
        return self._parameters_of(self.embed, self.score)

    @staticmethod
    def _parameters_of(embed: nn.Module | None, score: nn.Module | None) -> list[nn.Parameter]:
        if embed is None or score is None:
            return []
        return [*embed.parameters(), *score.parameters()]


class JobScorerPolicy(MaskableActorCriticPolicy):
    """The scorer's logits are the action logits (no extra linear layer on top)."""

    def __init__(
        self,
        *args: Any,
        hidden: int = HIDDEN,
        window: float = 0.0,
        window_ratio: float = 0.0,
        long_shops: bool = False,
        window_alike: float = 0.0,
        window_narrowing: float = 0.0,
        window_widening: float = 0.0,
        alike_shops: bool = False,
        window_flexible: float = 0.0,
        window_flexible_ops: float = 0.0,
        **kwargs: Any,
    ) -> None:
        # one argument per setting: SB3 stores them in the zip by these names
        self.hidden = hidden
        self.scheme = DispatchScheme(
            window, window_ratio, long_shops, window_alike, window_narrowing, window_widening,
            alike_shops, window_flexible, window_flexible_ops,
        )  # fmt: skip
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        rows, n_features = self.observation_space.shape  # type: ignore[misc]
        self.mlp_extractor = JobScorer(  # type: ignore[assignment]
            rows,
            n_features,
            self.hidden,
            scheme=self.scheme,
        )

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
        data.update(self.scheme.model_arguments())
        return data
