"""Anytime search: turn a time budget into the best plan found (see `search.anytime`)."""
