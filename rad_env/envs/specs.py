"""What each registered dream env expects (kept import-light: registration happens on import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DreamSpec:
    """A dream env's action set, shipped defaults and the real env's episode length."""

    action_set: str
    default_checkpoint: str | None  # file name in rad_env/assets; None if nothing is shipped
    default_context: str | None  # start-frame episodes in rad_env/assets
    max_episode_steps: int


MEMORY_MAZE_SPEC = DreamSpec(action_set="memory-maze", default_checkpoint="memory_maze_tiny.pt",
                             default_context="memory_maze_starts.h5", max_episode_steps=1000)
MINECRAFT_SPEC = DreamSpec(action_set="minecraft", default_checkpoint=None, default_context=None,
                           max_episode_steps=300)

ENV_SPECS = {"RAD-MemoryMaze-v0": MEMORY_MAZE_SPEC, "RAD-Minecraft-v0": MINECRAFT_SPEC}
