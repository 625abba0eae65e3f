"""Dream environments (a RAD world model as a Gymnasium env) and the real Memory Maze.

Importing this package only registers the env ids; the model code loads on ``gym.make``.
"""

from __future__ import annotations

import gymnasium as gym

from .specs import ENV_SPECS, MEMORY_MAZE_SPEC, MINECRAFT_SPEC, DreamSpec


def register_envs() -> None:
    """Register ``RAD-MemoryMaze-v0`` and ``RAD-Minecraft-v0`` with Gymnasium (idempotent)."""
    for env_id, spec in ENV_SPECS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="rad_env.envs.dream:DreamEnv",
            vector_entry_point="rad_env.envs.vector:DreamVectorEnv",
            max_episode_steps=spec.max_episode_steps,
            kwargs={"spec": spec},
        )


__all__ = ["ENV_SPECS", "MEMORY_MAZE_SPEC", "MINECRAFT_SPEC", "DreamSpec", "register_envs"]
