"""Reward shaping for training in the dream, from its collision gate: a cost for every press the dream's wall
refuses, and a bonus for every step forward it performs."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rad_env.data.actions import MEMORY_MAZE


class WallShaping(VecEnvWrapper):
    """Subtract ``penalty`` from the reward of each step whose press the dream refused (``info["refused"]``, set
    by the dream env when its collision gate finds the agent facing a wall), and add ``forward_bonus`` to each
    step that pressed ``forward_action`` and was not refused (a step forward the dream performed).

    A training aid only: the real maze charges nothing for walking into a wall and pays nothing for a step, but
    a step into a wall is a step lost and a step along a corridor is ground covered, both beyond what a short
    dream can show PPO. Wrap it outside ``VecMonitor`` so that logged returns stay the dream's own; each
    finished episode's ``info["episode"]`` gets ``"refused"`` and ``"forward"``, its counts of refused presses
    and of performed steps forward.
    """

    def __init__(self, venv: VecEnv, penalty: float, forward_bonus: float = 0.0,
                 forward_action: int = MEMORY_MAZE.ids("forward")[0]) -> None:
        if penalty < 0 or forward_bonus < 0:
            raise ValueError(f"penalty and forward_bonus must be >= 0, got {penalty} and {forward_bonus}")
        super().__init__(venv)
        self.penalty, self.forward_bonus, self.forward_action = float(penalty), float(forward_bonus), forward_action
        self.actions = np.zeros(self.num_envs, np.int64)
        self.refused_counts = np.zeros(self.num_envs, np.int64)
        self.forward_counts = np.zeros(self.num_envs, np.int64)

    def reset(self):
        self.refused_counts[:] = 0
        self.forward_counts[:] = 0
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64)
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        refused = np.array([bool(info.get("refused", False)) for info in infos])
        forward = (self.actions == self.forward_action) & ~refused
        self.refused_counts += refused
        self.forward_counts += forward
        for i in np.flatnonzero(dones):
            if "episode" in infos[i]:
                infos[i]["episode"]["refused"] = int(self.refused_counts[i])
                infos[i]["episode"]["forward"] = int(self.forward_counts[i])
            self.refused_counts[i] = self.forward_counts[i] = 0
        shaped = rewards - self.penalty * refused + self.forward_bonus * forward
        return obs, shaped.astype(np.float32), dones, infos
