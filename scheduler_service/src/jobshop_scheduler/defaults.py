"""Defaults the server, the CLI and the settings share, importable without NumPy or numba.

The settings of ingestion and of the deployment checks need the model folder's default; they
must not load the dispatching kernels to learn it (`planner` and `rl.model_store` do).
"""

from pathlib import Path

# models/full_production of the checkout (a non-editable install passes --model-dir, as the
# image does).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[3] / "models" / "full_production"
DEFAULT_BATCH_SIZE = 170  # jobs the policy sees at once (`ShopState`'s horizon); its table's size
# The server's default search budget: a 170-job call answers in about 0.5 s with it (p99 510 ms
# over gRPC: greedy pass, search and checks), well inside the 1 s the plant expects
# (docs/benchmark.md).
DEFAULT_TIME_BUDGET_MS = 500
MAX_TIME_BUDGET_MS = 60_000  # the server's default cap on what a request may ask for
