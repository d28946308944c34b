"""Problem instances generated from code (published algorithms, seeds) rather than shipped data."""

from jobshop_scheduler.instances.taillard import (
    TAILLARD,
    TaillardSpec,
    best_known,
    load_taillard,
    taillard,
    taillard_arrays,
)

__all__ = [
    "TAILLARD",
    "TaillardSpec",
    "best_known",
    "load_taillard",
    "taillard",
    "taillard_arrays",
]
