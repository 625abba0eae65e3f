"""The reward head's spatial part: a correction to the pooled head's reward logits that reads every token.

The pooled head (``WorldModel.head``) reads the frame's mean-pooled final tokens and the memory, so it knows
which colours are in view but not where: a ball of the target's colour ahead and a wall of that colour close
up look alike to it, and a head trained on the dream's frames learns to pay for both (docs/agents.md, sessions
30-31). :class:`RewardGridHead` sees the token grid, each token projected to a few channels, next to the
pooled features, and adds its output to the pooled head's reward logits. Its last layer starts at zero, so a
model that gains it computes what it did until the head is trained.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import RADConfig


class RewardGridHead(nn.Module):
    """features (..., pooled_dim + tokens * dim), as :meth:`RADDiT._features` makes them with
    ``reward_grid_channels`` -> a correction to the reward-sign logits (..., reward_classes)."""

    def __init__(self, cfg: RADConfig, pooled_dim: int):
        super().__init__()
        if cfg.reward_grid_channels < 1:
            raise ValueError(f"RewardGridHead needs reward_grid_channels >= 1, got {cfg.reward_grid_channels}")
        self.pooled_dim = pooled_dim
        self.tokens, self.dim = cfg.tokens_per_frame, cfg.dim
        self.project = nn.Linear(cfg.dim, cfg.reward_grid_channels)
        width = pooled_dim + cfg.tokens_per_frame * cfg.reward_grid_channels
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, cfg.dim), nn.SiLU(),
                                 nn.Linear(cfg.dim, cfg.reward_classes))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        pooled, grid = feats[..., :self.pooled_dim], feats[..., self.pooled_dim:]
        grid = grid.unflatten(-1, (self.tokens, self.dim))
        return self.mlp(torch.cat([pooled, self.project(grid).flatten(-2)], dim=-1))
