"""The two API answers the operator handles the same way everywhere: 404, the object is not
there, and 409, a write lost a race with another writer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from kubernetes.client.exceptions import ApiException

T = TypeVar("T")

CONFLICT_RETRIES = 5


def none_if_missing(call: Callable[[], T]) -> T | None:
    """``call()``, or None when the API server answers 404; any other error propagates."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def created(create: Callable[[], object]) -> bool:
    """``create()``; False when the API server answers 409 (one of that name exists already:
    made meanwhile, or by an earlier attempt); any other error propagates."""
    try:
        create()
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def retry_on_conflict(attempt: Callable[[], T], attempts: int = CONFLICT_RETRIES) -> T:
    """``attempt()``, run again while it ends in a 409 (the object changed between its read and
    its write, so the attempt must read it again), ``attempts`` times at most. The last 409
    propagates: a transient error, which the next reconcile retries."""
    for _ in range(attempts - 1):
        try:
            return attempt()
        except ApiException as exc:
            if exc.status != 409:
                raise
    return attempt()
