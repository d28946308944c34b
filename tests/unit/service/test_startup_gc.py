"""The collector's settings for serving: start-up objects frozen, young collections rarer."""

from __future__ import annotations

import gc

from jobshop_scheduler.service.readiness import (
    PYTHON_YOUNG_COLLECTION_EVERY,
    YOUNG_COLLECTION_EVERY,
    freeze_startup_objects,
    thaw_startup_objects,
)


def test_serving_freezes_the_start_up_heap_and_shutdown_restores_python_defaults() -> None:
    _, middle, oldest = gc.get_threshold()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, middle, oldest)
    finally:
        thaw_startup_objects()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (PYTHON_YOUNG_COLLECTION_EVERY, middle, oldest)
