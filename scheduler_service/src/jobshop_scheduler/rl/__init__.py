"""Reinforcement learning: the dispatching environment, features, PPO policy and training."""
