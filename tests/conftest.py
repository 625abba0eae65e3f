"""Shared test settings."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The test models are tiny, so per-op overhead dominates: one intra-op thread is faster, and it
    stays fast when the machine is busy (more threads than free cores make torch's pool spin)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_random_episodes(path: Path, lengths: Sequence[int], seed: int = 0, size: int = 64) -> Path:
    """One episode of random ``size`` x ``size`` frames and random Memory Maze actions per entry of
    ``lengths`` (its steps), written to ``path``."""
    from rad_env.data import Episode, FileMeta, write_episodes

    rng = np.random.default_rng(seed)
    episodes = []
    for s, steps in enumerate(lengths):
        actions = rng.integers(0, 6, steps)
        episodes.append(Episode(obs=rng.integers(0, 256, (steps + 1, size, size, 3), dtype=np.uint8),
                                action_id=actions, action=actions.astype(np.int32),
                                reward=np.zeros(steps, np.float32), terminated=np.zeros(steps, bool),
                                truncated=np.zeros(steps, bool), seed=s))
    meta = FileMeta(source="test", action_set="memory-maze", num_actions=6, frame_shape=(size, size, 3))
    return write_episodes(path, episodes, meta)


@pytest.fixture(scope="session")
def random_episodes():
    """:func:`write_random_episodes`, for test modules."""
    return write_random_episodes


@pytest.fixture(scope="session")
def dream_files(tmp_path_factory) -> dict[str, str]:
    """A tiny random checkpoint (never predicts termination) and a few recorded start segments."""
    from rad_env.checkpoint import save_checkpoint
    from rad_env.model import RADConfig, WorldModel

    root = tmp_path_factory.mktemp("agents")
    torch.manual_seed(0)
    cfg = RADConfig.preset("tiny", dim=32, depth=1, heads=2, mlp_ratio=2.0, memory_slots=2, memory_dim=16,
                           noise_features=16)
    model = WorldModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.head[-1].bias[3] = -30.0
    data = dict(source="test", action_set="memory-maze", num_actions=6, frame_shape=(64, 64, 3))
    ckpt = save_checkpoint(root / "tiny.pt", model, train_config={}, data=data, step=0)
    context = write_random_episodes(root / "starts.h5", [5, 5])
    return {"checkpoint": str(ckpt), "context": str(context), "root": str(root)}


def save_untrained_agent(path: Path, num_actions: int = 6) -> Path:
    """An untrained SB3 PPO CnnPolicy agent on 64x64 frames, saved like agents.train_ppo saves one."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    class Frames(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        action_space = gym.spaces.Discrete(num_actions)

        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    PPO("CnnPolicy", Frames(), n_steps=8, batch_size=8, device="cpu", seed=0).save(path)
    return path


@pytest.fixture(scope="session")
def untrained_agent():
    """:func:`save_untrained_agent`, for test modules."""
    return save_untrained_agent
