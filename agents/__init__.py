"""Agents for the dream: PPO training and evaluation, baselines, an interactive player."""
