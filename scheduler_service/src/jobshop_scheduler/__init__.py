"""Job-shop scheduling service: a PPO dispatching policy behind a gRPC API.

Layers, lowest first (lower never imports higher): domain ← heuristics / environment ← policy ←
server. The gRPC stubs in `_generated` are produced by the build from protos/.
"""

import os

# The policy's matrices are small (jobs x 64): a multi-threaded BLAS only adds contention with
# the planner threads and the event loop, and made 170-job answers 5-10x slower on a loaded
# 2-core machine (`schedctl bench-latency`). Set before NumPy loads; an explicit setting wins.
for _variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

__version__ = "0.1.0"
