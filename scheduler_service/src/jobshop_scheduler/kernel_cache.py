"""The compiled numba kernels an image ships, copied where numba can use them.

Compiling the dispatching and search kernels takes about 13 s on a 2-core machine; loading
them from numba's cache takes a fraction of a second. The image compiles them at build time into
a read-only folder (``SCHEDULER_NUMBA_CACHE_SEED``), but numba only uses a cache folder it can
write to, and the pod's root filesystem is read-only. So before the first numba import the CLI
copies that folder into ``NUMBA_CACHE_DIR`` (a writable volume) if the latter does not exist
yet. Entries are keyed by a hash of each kernel's source file and by the target CPU: the image
builds them for ``NUMBA_CPU_NAME=generic``, so they hold on any x86-64 node, and an edited
source file simply misses (and is compiled and cached at run time).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SEED_ENV = "SCHEDULER_NUMBA_CACHE_SEED"


def seed_kernel_cache() -> Path | None:
    """Copy the seed into ``NUMBA_CACHE_DIR`` when it is missing; the folder copied, or None."""
    seed, target = os.environ.get(SEED_ENV), os.environ.get("NUMBA_CACHE_DIR")
    if not seed or not target or not Path(seed).is_dir() or Path(target).exists():
        return None
    partial = f"{target}.{os.getpid()}.partial"  # renamed whole: never a half-copied cache
    try:
        shutil.copytree(seed, partial)
        os.rename(partial, target)
    except OSError:  # a cold cache costs start-up time, never the start itself
        shutil.rmtree(partial, ignore_errors=True)
        return None
    return Path(target)
