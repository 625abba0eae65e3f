"""A trained agent acting with a sampling temperature: each action drawn from the policy's distribution with its
logits divided by T (T = 1: as PPO trained it; toward 0: the greedy action). An evaluation-time choice between
sampling, which lets an agent leave what it cannot see past, and the greedy action, which walks with fewer
stray presses."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class TemperedAgent:
    """``agent`` (an SB3 agent with a categorical policy) whose non-deterministic ``predict`` samples at
    ``temperature``; everything else (its spaces, its policy) is the agent's own."""

    def __init__(self, agent: Any, temperature: float, seed: int | None = None) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.agent, self.temperature = agent, float(temperature)
        self.generator = torch.Generator().manual_seed(0 if seed is None else seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.agent, name)

    def probabilities(self, observation: np.ndarray) -> tuple[torch.Tensor, bool]:
        """Action probabilities (N, A) at this temperature, and whether ``observation`` was a batch."""
        policy = self.agent.policy
        policy.set_training_mode(False)
        obs, batched = policy.obs_to_tensor(observation)
        with torch.no_grad():
            logits = policy.get_distribution(obs).distribution.logits
        return torch.softmax(logits.float() / self.temperature, dim=-1).cpu(), batched

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        if deterministic:
            return self.agent.predict(observation, state, episode_start, deterministic=True)
        probs, batched = self.probabilities(observation)
        actions = torch.multinomial(probs, 1, generator=self.generator)[:, 0].numpy()
        return (actions if batched else actions[0]), state
