"""The real Memory Maze env's episodes: every reset draws its maze from the env's own seeded generator, so the
episodes that follow ``reset(seed=s)`` are the same for every agent, whatever it did in the earlier ones."""

from __future__ import annotations

import numpy as np
from gymnasium.utils import seeding

from rad_env.envs.memory_maze import MemoryMazeEnv


def test_every_episode_maze_comes_from_the_seeded_generator(monkeypatch) -> None:
    seeds: list[int] = []
    original = MemoryMazeEnv._make

    def spy(self, seed: int) -> None:
        seeds.append(seed)
        original(self, seed)

    monkeypatch.setattr(MemoryMazeEnv, "_make", spy)
    env = MemoryMazeEnv(9)
    try:
        layouts = []
        for k in range(3):
            _, info = env.reset(seed=3) if k == 0 else env.reset()
            layouts.append(info["maze_layout"])
            for _ in range(5 * k):  # play does not change the next maze
                env.step(2)
    finally:
        env.close()
    rng, _ = seeding.np_random(3)
    assert seeds == [int(rng.integers(2**31 - 1)) for _ in range(3)]
    assert not np.array_equal(layouts[0], layouts[1]) or not np.array_equal(layouts[1], layouts[2])
