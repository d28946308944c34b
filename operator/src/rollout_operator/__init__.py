"""Kubernetes operator that rolls out new job-shop scheduler versions in stages.

Shadow → 10% → 25% → 50% → approval → 100%, with automatic rollback on Prometheus triggers.
"""

__version__ = "0.1.0"
