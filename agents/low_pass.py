"""Agents that see a coarse view: SB3's NatureCNN behind a low-pass filter (each ``pool`` x ``pool`` block of the
frame replaced by its mean), the same in the dream and in the real maze. The idea: the dream's frames are softer
than the real ones and carry its 8x8 token grid, so block means might look alike in both worlds. Measured
(docs/agents.md, session 29), they do not help: block means keep the dream's haze and colours and drop the edges
it gets right, and pooled agents act differently in the real maze than in the dream. The filter is part of the
saved policy, so a loaded agent always sees as it was trained."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from stable_baselines3.common.torch_layers import NatureCNN


class LowPassCNN(NatureCNN):
    """NatureCNN on the frame's ``pool`` x ``pool`` block means, repeated back to the frame's size (so the CNN is
    NatureCNN unchanged); ``pool=1`` is NatureCNN itself."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 512, pool: int = 1) -> None:
        height, width = observation_space.shape[-2:]  # SB3 hands extractors channels-first images
        if pool < 1 or height % pool or width % pool:
            raise ValueError(f"pool must be >= 1 and divide the frame's {height}x{width} pixels, got {pool}")
        super().__init__(observation_space, features_dim)
        self.pool = pool

    def low_pass(self, observations: torch.Tensor) -> torch.Tensor:
        """Each ``pool`` x ``pool`` block replaced by its mean (channels-first batch)."""
        if self.pool == 1:
            return observations
        blocks = F.avg_pool2d(observations, self.pool)
        return blocks.repeat_interleave(self.pool, dim=-2).repeat_interleave(self.pool, dim=-1)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return super().forward(self.low_pass(observations))


def view_pool_kwargs(pool: int) -> dict[str, Any]:
    """``policy_kwargs`` for an SB3 CnnPolicy that sees ``pool`` x ``pool`` block means (none for 1: NatureCNN)."""
    if pool == 1:
        return {}
    return {"features_extractor_class": LowPassCNN, "features_extractor_kwargs": {"pool": pool}}


def view_pool_of(agent: Any) -> int:
    """The block size a (PPO) agent sees its frames at: 1 for NatureCNN and for agents without a policy."""
    extractor = getattr(getattr(agent, "policy", None), "features_extractor", None)
    return int(getattr(extractor, "pool", 1))
