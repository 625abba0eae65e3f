"""A native Gymnasium vector env: all dream episodes advance in one batched model call."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .core import DreamCore
from .factory import make_dream_core
from .specs import MEMORY_MAZE_SPEC, DreamSpec


class DreamVectorEnv(VectorEnv):
    """``num_envs`` dream episodes with autoreset.

    ``autoreset_mode`` NEXT_STEP (Gymnasium's default: the step after an episode ends resets it)
    or SAME_STEP (the reset happens in the same step; the last frame is in
    ``infos["final_obs"]``, as SB3 expects). Env ``i`` seeded with ``seed + i`` reproduces a single
    :class:`DreamEnv` reset with that seed. Episodes are truncated after ``max_episode_steps``.
    ``infos["refused"]`` (num_envs,) bool: the presses the model's collision gate refused.
    """

    def __init__(self, num_envs: int = 1, spec: DreamSpec = MEMORY_MAZE_SPEC, *, checkpoint=None,
                 device: str = "auto", sampling_steps: int | None = None, context: Any = None,
                 compile: bool = False, max_episode_steps: int | None = None, render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, amp: str = "auto",
                 core: DreamCore | None = None) -> None:
        self.core = core or make_dream_core(checkpoint, context, num_envs, spec=spec, device=device,
                                            sampling_steps=sampling_steps, compile=compile, amp=amp)
        self.num_envs = self.core.num_envs
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode == AutoresetMode.DISABLED:
            raise ValueError("DreamVectorEnv supports NEXT_STEP and SAME_STEP autoreset")
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": 4, "autoreset_mode": self.autoreset_mode}
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps or spec.max_episode_steps
        self.single_observation_space = gym.spaces.Box(0, 255, self.core.frame_shape, np.uint8)
        self.single_action_space = gym.spaces.Discrete(self.core.num_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self._needs_reset = np.ones(self.num_envs, bool)

    def seed_env(self, i: int, seed: int | None) -> None:
        self._rngs[i] = seeding.np_random(seed)[0]

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        seeds = [None if seed is None else seed + i for i in range(self.num_envs)] if not isinstance(seed, list) else seed
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
        if seed is not None:
            self._np_random_seed = seed if isinstance(seed, int) else None
        for i, s in enumerate(seeds):
            if s is not None:
                self.seed_env(i, s)
            self.core.reset_env(i, self._rngs[i])
        self._needs_reset[:] = False
        return self.core.frames.copy(), {}

    def step(self, actions):
        actions = self.core.check_actions(actions)  # before any autoreset substitution
        resetting = self._needs_reset.copy() if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros(self.num_envs, bool)
        if resetting.any():  # envs that ended last step take no action now; any valid id keeps the batch shape
            actions = np.where(resetting, 0, actions)
        frames, rewards, terminated = self.core.step(actions)
        truncated = (self.core.steps >= self.max_episode_steps) & ~terminated
        infos: dict[str, Any] = {"refused": self.core.refused & ~resetting, "_refused": ~resetting}
        for i in np.flatnonzero(resetting):
            frames[i] = self.core.reset_env(i, self._rngs[i])
        rewards[resetting] = 0.0
        terminated[resetting] = False
        truncated[resetting] = False
        done = terminated | truncated
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = done
        elif done.any():
            # filled element by element: np.array(list_of_frames, dtype=object) would make an (N, H, W, 3)
            # array of scalars when every env ends at once (e.g. all truncated at the same step)
            infos["final_obs"] = np.empty(self.num_envs, dtype=object)
            infos["_final_obs"] = done.copy()
            infos["final_info"] = {}
            for i in np.flatnonzero(done):
                infos["final_obs"][i] = frames[i].copy()
                frames[i] = self.core.reset_env(i, self._rngs[i])
        return frames, rewards, terminated, truncated, infos

    def render(self):
        return self.core.frames.copy() if self.render_mode == "rgb_array" else None
