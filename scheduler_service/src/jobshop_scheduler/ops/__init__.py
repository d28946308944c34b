"""Deployment checks: the model's integrity and backups, and the host's prerequisites (preflight).

Each check measures and returns a ``checklist.Check``; the commands only render them.
"""
