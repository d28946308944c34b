"""Deterministic sampling by request id: the same request is mirrored (or faulted) every time."""

from __future__ import annotations

import hashlib


def stable_unit(key: str) -> float:
    """A number in [0, 1) fixed by ``key``: the same key lands on the same side of any cut."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sampled(request_id: str, percent: float) -> bool:
    """Whether ``request_id`` is mirrored at ``percent``: always or never for a given id."""
    return stable_unit(request_id) * 100 < percent
