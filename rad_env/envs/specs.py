"""What each registered dream env expects (kept import-light: registration happens on import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def discrete_action(action: Any, n: int) -> int:
    """A single env's action as an int id in [0, n); ``ValueError`` otherwise. Booleans are refused:
    gymnasium's ``Discrete.contains`` accepts ``True`` only because bool subclasses int (it rejects
    numpy booleans)."""
    array = np.asarray(action)
    if (isinstance(action, (bool, np.bool_)) or array.shape != () or not np.issubdtype(array.dtype, np.integer)
            or not 0 <= int(array) < n):
        raise ValueError(f"invalid action {action!r}: expected an int in [0, {n})")
    return int(array)


@dataclass(frozen=True)
class DreamSpec:
    """A dream env's action sets (any one the checkpoint was trained with), shipped defaults and the
    real env's episode length."""

    action_sets: tuple[str, ...]
    default_checkpoint: str | None  # file name in rad_env/assets; None if nothing is shipped
    default_context: str | None  # start-frame episodes in rad_env/assets
    max_episode_steps: int
    # steps after a paid reward in which the dream pays none: what the real env allows (0: no limit)
    reward_cooldown: int = 0


# Memory Maze replaces a touched target by one elsewhere: 387 consecutive rewards of the recorded target walks
# (seeds 8 and 4) are at least 8 steps apart, and a dream that keeps paying at a target is the head's mistake
MEMORY_MAZE_SPEC = DreamSpec(action_sets=("memory-maze",), default_checkpoint="memory_maze_tiny.pt",
                             default_context="memory_maze_starts.h5", max_episode_steps=1000, reward_cooldown=7)
# TECO's 4 actions or the RAD authors' walker combinations (their recordings, `import rad-minecraft`)
MINECRAFT_SPEC = DreamSpec(action_sets=("minecraft", "minecraft-walk"), default_checkpoint=None, default_context=None,
                           max_episode_steps=300)

ENV_SPECS = {"RAD-MemoryMaze-v0": MEMORY_MAZE_SPEC, "RAD-Minecraft-v0": MINECRAFT_SPEC}
