"""The real Memory Maze env's episodes: every reset draws its maze from the env's own seeded generator, so the
episodes that follow ``reset(seed=s)`` are the same for every agent, whatever it did in the earlier ones."""

from __future__ import annotations

import numpy as np
import pytest
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


def _target_walk(env: MemoryMazeEnv, seed: int, steps: int) -> tuple[list[int], list[np.ndarray], list[float]]:
    """The target-seeking walker's actions, frames and rewards for ``steps`` steps after ``reset(seed=seed)``."""
    from collect.policies import TargetPolicy

    obs, info = env.reset(seed=seed)
    policy = TargetPolicy()
    policy.reset(info, seed=0)
    actions, frames, rewards = [], [], []
    for _ in range(steps):
        actions.append(int(policy(obs, info)))
        obs, reward, _, _, info = env.step(actions[-1])
        frames.append(obs)
        rewards.append(reward)
    return actions, frames, rewards


def test_restore_state_replays_the_same_steps_bit_for_bit() -> None:
    env = MemoryMazeEnv(9)
    try:
        actions, frames, rewards = _target_walk(env, seed=4, steps=40)  # seed 4: the first reward at step 11
        assert sum(rewards) >= 1, "the walk must pass a reward (the target and the random state then change)"
        env.reset(seed=4)
        cut = 5
        for a in actions[:cut]:
            env.step(a)
        saved = env.save_state()
        for a in actions[cut:]:  # a branch through the reward: the task picks its next target from the rng
            env.step(a)
        for a in [1, 3, 3, 1, 2, 1]:  # and on into other places
            env.step(a)
        assert np.array_equal(env.restore_state(saved), frames[cut - 1])
        # the reward's next target is drawn from the env's random state: it must be back where it was
        _, key, pos, *_ = env._core().random_state.get_state()
        assert np.array_equal(key, saved.random_state[1]) and pos == saved.random_state[2]
        for k, a in enumerate(actions[cut:], start=cut):
            obs, reward, *_ = env.step(a)
            assert np.array_equal(obs, frames[k]), f"step {k} differs after the restore"
            assert reward == rewards[k]
        env.reset(seed=4)
        with pytest.raises(ValueError, match="another maze"):
            env.restore_state(saved)
    finally:
        env.close()
