"""Drive an env through a list of actions (the demo and the headless player share it)."""

from __future__ import annotations

import time
from typing import Any, Sequence

import gymnasium as gym
import numpy as np


def scripted_actions(steps: int, num_actions: int, seed: int = 0) -> np.ndarray:
    """A wandering walk: runs of forward moves broken by short turns (random, seeded)."""
    rng = np.random.default_rng(seed)
    actions: list[int] = []
    while len(actions) < steps:
        actions += [1] * int(rng.integers(3, 9))  # forward
        turn = int(rng.choice([2, 3]))  # left / right
        actions += [turn] * int(rng.integers(1, 5))
        if num_actions >= 6 and rng.random() < 0.5:
            actions += [int(rng.choice([4, 5]))] * int(rng.integers(1, 4))  # forward + turn
    return np.asarray(actions[:steps], dtype=np.int64)


def play_actions(env: gym.Env, actions: Sequence[int], seed: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Reset with ``seed``, step through ``actions`` (resetting when an episode ends); returns the frames
    (reset frame first) and stats: steps, total_reward, episodes_ended, steps_per_s."""
    n = int(env.action_space.n)
    bad = [a for a in actions if not 0 <= a < n]
    if bad:
        raise ValueError(f"actions must be ids in [0, {n}), got {sorted(set(bad))}")
    obs, _ = env.reset(seed=seed)
    frames, total, resets = [obs], 0.0, 0
    start = time.perf_counter()
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        frames.append(obs)
        total += float(reward)
        if terminated or truncated:
            resets += 1
            obs, _ = env.reset()
    seconds = time.perf_counter() - start
    return frames, {"steps": len(actions), "total_reward": total, "episodes_ended": resets,
                    "steps_per_s": len(actions) / max(seconds, 1e-9)}
