"""Offline benchmarks of the scheduler: plan quality of the PPO policy against the rules."""
