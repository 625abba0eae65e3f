"""Stable-Baselines3 ``VecEnv`` over the batched dream, so PPO steps all envs in one model call."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv

from .vector import DreamVectorEnv


class DreamSB3VecEnv(VecEnv):
    """Adapts a :class:`DreamVectorEnv` (SAME_STEP autoreset) to SB3's VecEnv API.

    Finished episodes are reset in the same step; ``infos[i]`` then holds ``terminal_observation``
    and ``TimeLimit.truncated`` as SB3 expects.
    """

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        vector = kwargs.pop("vector_env", None)
        self.venv = vector or DreamVectorEnv(num_envs, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
        if self.venv.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError("DreamSB3VecEnv needs a DreamVectorEnv with SAME_STEP autoreset")
        self.render_mode = self.venv.render_mode
        super().__init__(self.venv.num_envs, self.venv.single_observation_space, self.venv.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self):
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self.venv.seed_env(i, seed)
        self._reset_seeds()
        self._reset_options()
        obs, _ = self.venv.reset()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self):
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        dones = terminated | truncated
        out: list[dict[str, Any]] = [{"refused": bool(r)} for r in infos["refused"]]
        for i in np.flatnonzero(dones):
            out[i]["terminal_observation"] = infos["final_obs"][i]
            out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, rewards.astype(np.float32), dones, out

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.venv.core.frames.copy())

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self, attr_name) if attr_name == "render_mode" else getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        method = getattr(self.venv, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
