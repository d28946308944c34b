"""Can the window scorer learn more from rollout labels than it has? An offline test.

`collect` plays the shipped model's greedy pass on shops of the rollout recipe's range and, in
about 32 states of each, finishes the plan greedily after every candidate (as
`self_label.rollout_label` does), keeping each candidate's makespan and the state's feature
table, plus columns the scorer does not see: five about the jobs' remaining routes, five
about what dispatching each candidate does to the shop one step on (`lookahead_columns`), and
three about how much of the lower bound each job's own chain fills (`chain_columns`). With
`--flexible` the shops are production-like ones of 5-40 jobs, where the first scorer chooses
(fit them with `--first`; docs/benchmark.md, "Small flexible shops").

`fit` starts from the shipped window scorer, fits it (or a variant with more capacity or more
information) to those labels on three quarters of the shops, and prints, on the other quarter,
the regret of its choice (how much longer the plan after the chosen candidate is than after the
best, in %) and how often its choice is a best one. A variant that lowers the held-out regret
has learnt something the shipped scorer cannot; docs/benchmark.md, "What rollout labels cannot
teach", has the figures.

    uv run python docs/experiments/label_fit.py collect --shops 360 --seed 30000 --out /tmp/l.pt
    uv run python docs/experiments/label_fit.py fit /tmp/l.pt --variant attention
    uv run python docs/experiments/label_fit.py collect --flexible --shops 400 --seed 31000 \
        --out /tmp/f.pt
    uv run python docs/experiments/label_fit.py fit /tmp/f.pt --first --variant chain

`headroom` compares, on generated shops of one shape, the greedy pass with the rollout policy
(the best candidate by greedy finish at every state, or at about `--states` of them), both as
ratios to each shop's best rule, or to the best known on Taillard instances: what rollout labels
could teach at most.

    uv run python docs/experiments/label_fit.py headroom 30x15 --shops 6
    uv run python docs/experiments/label_fit.py headroom ta71,ta72 --states 48
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from stable_baselines3.common.save_util import load_from_zip_file
from torch import nn

from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.heuristics.dispatch import best_rule_makespan
from jobshop_scheduler.instances import best_known, load_taillard
from jobshop_scheduler.instances.families import family_shop, parse_shape
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.config import load_config
from jobshop_scheduler.rl.fast_policy import Buffers, FastScorer, finishes, rollout
from jobshop_scheduler.rl.features import N_FEATURES, FeatureScales, job_features
from jobshop_scheduler.rl.self_label import mixture_instance, rollout_label
from jobshop_scheduler.rl.state import ShopState

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "scheduler_service/src/jobshop_scheduler/rl/self_label_rollout.toml"
MODEL = ROOT / "models/full_production/final_model.zip"
ROUTE_COLUMNS = 5
LOOK_COLUMNS = 5
CHAIN_COLUMNS = 3
VARIANTS = ("base", "wide", "candidates", "attention", "route", "lookahead", "chain")
# the extra columns each variant reads, after the scorer's own (`collect_shop` stores them all)
EXTRA = {
    "route": slice(0, ROUTE_COLUMNS),
    "lookahead": slice(ROUTE_COLUMNS, ROUTE_COLUMNS + LOOK_COLUMNS),
    "chain": slice(ROUTE_COLUMNS + LOOK_COLUMNS, None),
}
# `collect --flexible`: production-like shops of this many jobs, which the first scorer chooses on
FLEXIBLE_JOBS = (5, 40)
LOSSES = ("hard", "tolerant", "soft", "regret")
FLOOR = -1e9


def policy_state(model: Path) -> dict[str, Any]:
    state: dict[str, Any] = load_from_zip_file(model, device="cpu", load_data=False)[1]["policy"]
    return state


def route_columns(state: ShopState, scales: FeatureScales) -> NDArray[np.float32]:
    """Per job: remaining work weighted by its machines' share of the largest remaining load;
    remaining work on machines with at least 0.9 of it; work before and after the most loaded
    machine; the largest share among its later machines."""
    cp = state.cp
    load = state.machine_load.astype(np.float64)
    share = load / max(load.max(), 1.0)
    top = int(np.argmax(load))
    out = np.zeros((cp.n_jobs, ROUTE_COLUMNS), np.float32)
    for job in np.flatnonzero(state.active):
        ops = np.arange(state.next_op[job], state.end_op[job])
        machines = state.single_machine[ops]
        work = cp.op_min_duration[ops].astype(np.float64)
        shares = share[machines]
        at = np.flatnonzero(machines == top)
        out[job, :4] = (
            (work * shares).sum(),
            (work * (shares >= 0.9)).sum(),
            work[: at[0]].sum() if len(at) else work.sum(),
            work[at[0] + 1 :].sum() if len(at) else 0.0,
        )
        out[job, 4] = shares[1:].max(initial=0.0)
    out[:, :4] /= np.float32(scales.work)
    return out


def lookahead_columns(
    state: ShopState, candidates: NDArray[np.int64], scales: FeatureScales
) -> NDArray[np.float32]:
    """Per candidate, what dispatching it does to the shop one step on: the rise of the lower
    bound (`ShopState.lower_bound`), of its job part and of its machine part, the delay it
    puts on the other jobs' earliest starts, and the idle time it leaves on its machine; in
    mean durations, 0 on other jobs."""
    cp = state.cp
    out = np.zeros((cp.n_jobs, LOOK_COLUMNS), np.float32)
    bound = state.lower_bound()
    for job in map(int, candidates):
        machine, _ = state.machine_for(job)
        after = state.copy()
        after.dispatch(job)
        work = np.where(after.active, cp.work_from[np.minimum(after.next_op, cp.n_ops - 1)], 0)
        jobs = max(int((after.job_ready + work).max(initial=0)), after.makespan)
        machines = int((after.machine_free + after.machine_load).max(initial=0))
        others = state.active.copy()
        others[job] = False
        delay = (np.maximum(after.est, state.est) - state.est)[others].sum()
        idle = after.op_start[state.next_op[job]] - state.machine_free[machine]
        out[job] = (after.lower_bound() - bound, jobs - bound, machines - bound, delay, idle)
    return np.clip(out / np.float32(scales.duration), -20.0, 20.0)


def chain_columns(state: ShopState, scales: FeatureScales) -> NDArray[np.float32]:
    """Per job, how much of the shop's lower bound its own chain fills: (earliest start +
    remaining work) / bound, remaining work / bound, and the mean job's work / the initial
    bound. Where the jobs' chains bind (small shops) rather than the machines, the scorer's
    table, which scales work by the mean job, does not say so."""
    cp = state.cp
    bound = max(state.lower_bound(), 1)
    out = np.zeros((cp.n_jobs, CHAIN_COLUMNS), np.float32)
    jobs = np.flatnonzero(state.active)
    work = cp.work_from[np.minimum(state.next_op[jobs], cp.n_ops - 1)]
    out[jobs, 0] = (np.maximum(state.est[jobs], state.t_star) + work) / bound
    out[jobs, 1] = work / bound
    out[jobs, 2] = scales.work / scales.horizon
    return out


_WORKER: dict[str, Any] = {}  # what each collecting process loads once


def _load_worker(model: Path, flexible: bool) -> None:
    torch.set_num_threads(1)
    _WORKER["scorer"] = FastScorer.from_state_dict(policy_state(model))
    _WORKER["shops"] = load_config(RECIPE).self_label
    _WORKER["flexible"] = flexible


def collect_shop(seed: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """(states, jobs, features + route + lookahead columns) tables and (states, jobs) candidate
    makespans (-1: not a candidate) of one shop, over its states where the finishes differ."""
    scorer: FastScorer = _WORKER["scorer"]
    rng = np.random.default_rng(seed)
    if _WORKER["flexible"]:
        jobs = int(rng.integers(FLEXIBLE_JOBS[0], FLEXIBLE_JOBS[1] + 1))
        cp = compile_problem(production_like(jobs, seed=int(rng.integers(0, 2**31))))
    else:
        cp = mixture_instance(_WORKER["shops"], rng)
    share = 32 / max(len(rollout(cp, scorer)[1]), 1)
    state = ShopState(cp, scorer.window_for(cp))
    scales, buffers = FeatureScales(state), Buffers.for_jobs(cp.n_jobs)
    tables, spans = [], []
    for candidates in state.decisions():
        job = scorer.choose(state, scales, buffers)
        if rng.random() < share:
            span = np.full(cp.n_jobs, -1, np.int64)
            span[candidates] = finishes(state, candidates, scorer, scales, buffers)
            if span[candidates].min() != span[candidates].max():
                table = job_features(state, scales, cp.n_jobs)
                extra = (
                    route_columns(state, scales),
                    lookahead_columns(state, candidates, scales),
                    chain_columns(state, scales),
                )
                tables.append(np.concatenate([table, *extra], axis=1))
                spans.append(span)
                if span[job] != span[candidates].min() and rng.random() < 0.5:
                    job = int(candidates[np.argmin(span[candidates])])
        state.dispatch(job)
    width = N_FEATURES + ROUTE_COLUMNS + LOOK_COLUMNS + CHAIN_COLUMNS
    if not tables:
        return np.zeros((0, cp.n_jobs, width), np.float32), np.zeros((0, cp.n_jobs), np.int64)
    return np.stack(tables), np.stack(spans)


class Scorer(nn.Module):
    """The window scorer (`policy.JobScorer`), optionally wider, with a context pooled over the
    candidates, with two self-attention blocks over the jobs, or with the route or lookahead
    columns."""

    def __init__(self, variant: str, columns: int) -> None:
        super().__init__()
        self.variant = variant
        width = 192 if variant == "wide" else 64
        contexts = 3 if variant == "candidates" else 2
        self.embed = nn.Sequential(
            nn.Linear(columns, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh()
        )
        self.score = nn.Sequential(
            nn.Linear(contexts * width, width), nn.Tanh(), nn.Linear(width, 1)
        )
        self.blocks = nn.ModuleList()
        for _ in range(2 if variant == "attention" else 0):
            attend = nn.MultiheadAttention(width, 4, batch_first=True)
            mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width))
            for layer in (attend.out_proj, mlp[2]):  # residual blocks that start as identity
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            self.blocks.append(nn.ModuleList([attend, mlp]))

    def forward(self, table: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        present = table[..., :1]
        emb = self.embed(table)
        for attend, mlp in self.blocks:
            emb = emb + attend(emb, emb, emb, key_padding_mask=present[..., 0] == 0)[0]
            emb = emb + mlp(emb)
        parts = [emb, self._pool(emb, present)]
        if self.variant == "candidates":
            parts.append(self._pool(emb, candidates.unsqueeze(-1).float()))
        logits: torch.Tensor = self.score(torch.cat(parts, dim=-1)).squeeze(-1)
        return logits

    @staticmethod
    def _pool(emb: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        mean = (emb * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)
        return mean.unsqueeze(1).expand_as(emb)

    @torch.no_grad()
    def load_shipped(self, state: dict[str, Any], prefix: str = "window_") -> None:
        """The shipped window scorer's weights (``prefix`` "": the first scorer's); every added
        weight that feeds its output is 0, so the variant starts out choosing exactly as the
        shipped model does."""
        for module in (*self.embed, *self.score):
            if isinstance(module, nn.Linear):
                module.weight.zero_()
                module.bias.zero_()
        for index in (0, 2):
            self._put(self.embed[index], state, f"{prefix}embed.{index}")
        first = state[f"mlp_extractor.{prefix}score.0.weight"]
        hidden = first.shape[0]
        width = self.score[0].out_features
        self.score[0].weight[:hidden, :hidden] = first[:, :hidden]
        self.score[0].weight[:hidden, width : width + hidden] = first[:, hidden:]
        self.score[0].bias[:hidden] = state[f"mlp_extractor.{prefix}score.0.bias"]
        self.score[2].weight[:, :hidden] = state[f"mlp_extractor.{prefix}score.2.weight"]
        self.score[2].bias[:] = state[f"mlp_extractor.{prefix}score.2.bias"]
        if width > hidden:  # new units see the input; what they add to the score starts at 0
            generator = torch.Generator().manual_seed(0)
            for module in (self.embed[0], self.embed[2], self.score[0]):
                module.weight[hidden:] = 0.1 * torch.randn(
                    module.weight[hidden:].shape, generator=generator
                )

    @staticmethod
    def _put(layer: nn.Linear, state: dict[str, Any], name: str) -> None:
        weight, bias = state[f"mlp_extractor.{name}.weight"], state[f"mlp_extractor.{name}.bias"]
        layer.weight[: weight.shape[0], : weight.shape[1]] = weight
        layer.bias[: bias.shape[0]] = bias


def loss_of(
    kind: str, logits: torch.Tensor, candidates: torch.Tensor, regret: torch.Tensor
) -> torch.Tensor:
    """hard: -log p(a best candidate), `self_label.candidate_cross_entropy`; tolerant: the same
    with every candidate within 0.5 % of the best right; soft: cross-entropy to a softmax of
    the regrets at 0.5 %; regret: the expected regret of a choice drawn from the scores."""
    log_p = torch.log_softmax(logits.masked_fill(~candidates, FLOOR), dim=-1)
    if kind in ("hard", "tolerant"):
        right = candidates & (regret <= (0.005 if kind == "tolerant" else 0.0))
        return -torch.logsumexp(log_p.masked_fill(~right, FLOOR), dim=-1).mean()
    if kind == "soft":
        target = torch.softmax((-regret / 0.005).masked_fill(~candidates, FLOOR), dim=-1)
        return -(target * log_p.masked_fill(~candidates, 0.0)).sum(dim=-1).mean()
    return 100 * (log_p.exp() * regret).sum(dim=-1).mean()


Shop = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def shops_of(data: list[tuple[NDArray[np.float32], NDArray[np.int64]]], variant: str) -> list[Shop]:
    """(tables, candidate masks, regrets as fractions of the best) per shop with labels."""
    shops = []
    for tables, spans in data:
        if not len(tables):
            continue
        span = torch.from_numpy(spans).double()
        candidates = span >= 0
        best = span.masked_fill(~candidates, float("inf")).min(dim=1, keepdim=True).values
        regret = ((span - best) / best).masked_fill(~candidates, 0.0).float()
        columns = tables[..., :N_FEATURES]
        if variant in EXTRA:
            columns = np.concatenate([columns, tables[..., N_FEATURES:][..., EXTRA[variant]]], -1)
        shops.append((torch.from_numpy(np.ascontiguousarray(columns)), candidates, regret))
    return shops


@torch.no_grad()
def measure(scorer: Scorer, shops: list[Shop]) -> tuple[float, float]:
    """Mean regret of the argmax choice (%) and the share of states where it is a best one."""
    regrets = []
    for tables, candidates, regret in shops:
        pick = scorer(tables, candidates).masked_fill(~candidates, FLOOR).argmax(1, keepdim=True)
        regrets.append(regret.gather(1, pick).squeeze(1))
    every = torch.cat(regrets)
    return 100 * float(every.mean()), float((every == 0).float().mean())


def fit(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    shops = shops_of(torch.load(args.data, weights_only=False), args.variant)
    order = np.random.default_rng(0).permutation(len(shops))
    held = len(shops) // 4
    test, train = [shops[i] for i in order[:held]], [shops[i] for i in order[held:]]
    columns = shops[0][0].shape[-1]
    scorer = Scorer(args.variant, columns)
    scorer.load_shipped(policy_state(args.model), "" if args.first else "window_")
    optimizer = torch.optim.Adam(scorer.parameters(), lr=args.learning_rate)
    states = sum(len(shop[0]) for shop in train)
    print(f"{args.variant} / {args.loss}: {len(train)} shops ({states} states), {held} held out")
    print("epoch  held-out regret %  held-out best  train regret %  train best")
    order_rng = np.random.default_rng(1)
    for epoch in range(args.epochs + 1):
        if epoch:
            for k in order_rng.permutation(len(train)):
                tables, candidates, regret = train[k]
                loss = loss_of(args.loss, scorer(tables, candidates), candidates, regret)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        if epoch % 3 == 0:
            (test_regret, test_best), (train_regret, train_best) = (
                measure(scorer, test),
                measure(scorer, train),
            )
            print(
                f"{epoch:5d}  {test_regret:17.4f}  {test_best:13.4f}  {train_regret:14.4f}  "
                f"{train_best:10.4f}",
                flush=True,
            )


def collect(args: argparse.Namespace) -> None:
    seeds = range(args.seed, args.seed + args.shops)
    with multiprocessing.Pool(args.workers, _load_worker, (args.model, args.flexible)) as pool:
        data = pool.map(collect_shop, seeds, chunksize=4)
    torch.save(data, args.out)
    print(
        f"{len(data)} shops, {sum(len(tables) for tables, _ in data)} labelled states: {args.out}"
    )


def headroom(args: argparse.Namespace) -> None:
    """Greedy against rollout, as ratios to each shop's best rule; on Taillard instances
    (``ta01``...) against the best known."""
    scorer = FastScorer.from_state_dict(policy_state(args.model))
    if args.shape.startswith("ta"):
        names = args.shape.split(",")
        shops = [(name, compile_problem(load_taillard(name)), best_known(name)) for name in names]
    else:
        shape = parse_shape(args.shape)
        rng = np.random.default_rng(args.seed)
        problems = [
            family_shop(shape.family, shape.jobs, shape.machines, rng) for _ in range(args.shops)
        ]
        compiled = [compile_problem(problem) for problem in problems]
        shops = [(str(k), cp, best_rule_makespan(cp)) for k, cp in enumerate(compiled)]
    ratios = []
    print("shop  scheme  greedy  rollout policy  seconds")
    for k, (name, cp, reference) in enumerate(shops):
        start = time.perf_counter()
        greedy, choices = rollout(cp, scorer)
        _, best = rollout_label(
            cp, scorer, follow=1.0, keep=args.states, decisions=len(choices), seed=k
        )
        ratios.append((greedy.makespan / reference, best / reference))
        print(
            f"{name:>4}  {scorer.window_for(cp):6.2f}  {ratios[-1][0]:6.4f}  {ratios[-1][1]:14.4f}"
            f"  {time.perf_counter() - start:7.1f}",
            flush=True,
        )
    mean = np.mean(ratios, axis=0)
    print(f"mean          {mean[0]:6.4f}  {mean[1]:14.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, default=MODEL, help="final_model.zip (default: shipped)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    gather = commands.add_parser("collect", help="label states of generated shops")
    gather.add_argument("--shops", type=int, default=360)
    gather.add_argument("--seed", type=int, default=30000)
    gather.add_argument("--workers", type=int, default=2)
    gather.add_argument("--out", type=Path, required=True)
    gather.add_argument(
        "--flexible", action="store_true", help="production-like shops of 5-40 jobs instead"
    )
    fitting = commands.add_parser("fit", help="fit a scorer variant to collected labels")
    fitting.add_argument("data", type=Path)
    fitting.add_argument("--variant", choices=VARIANTS, default="base")
    fitting.add_argument("--loss", choices=LOSSES, default="hard")
    fitting.add_argument("--learning-rate", type=float, default=3e-4)
    fitting.add_argument("--epochs", type=int, default=12)
    fitting.add_argument(
        "--first", action="store_true", help="start from the first scorer (flexible shops)"
    )
    bound = commands.add_parser("headroom", help="greedy against the rollout policy on a shape")
    bound.add_argument("shape", help="JOBSxMACHINES[:FAMILY], or Taillard names: ta71,ta72")
    bound.add_argument("--shops", type=int, default=6)
    bound.add_argument("--seed", type=int, default=777)
    bound.add_argument("--states", type=int, default=0, help="rolled-out states, about (0: all)")
    args = parser.parse_args()
    {"collect": collect, "fit": fit, "headroom": headroom}[args.command](args)


if __name__ == "__main__":
    main()
