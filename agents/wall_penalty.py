"""Reward shaping for training in the dream: a cost for every press the dream's wall refuses."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper


class WallPenalty(VecEnvWrapper):
    """Subtract ``penalty`` from the reward of each step whose press the dream refused (``info["refused"]``,
    set by the dream env when its collision gate finds the agent facing a wall).

    A training aid only: the real maze charges nothing for walking into a wall, but a step into one is a
    step lost, and in a short dream the loss of the steps left is too small for PPO to see. Wrap it
    outside ``VecMonitor`` so that logged returns stay the dream's own; each finished episode's
    ``info["episode"]`` gets ``"refused"``, its count of refused presses.
    """

    def __init__(self, venv: VecEnv, penalty: float) -> None:
        if penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {penalty}")
        super().__init__(venv)
        self.penalty = float(penalty)
        self.counts = np.zeros(self.num_envs, np.int64)

    def reset(self):
        self.counts[:] = 0
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        refused = np.array([bool(info.get("refused", False)) for info in infos])
        self.counts += refused
        for i in np.flatnonzero(dones):
            if "episode" in infos[i]:
                infos[i]["episode"]["refused"] = int(self.counts[i])
            self.counts[i] = 0
        return obs, (rewards - self.penalty * refused).astype(np.float32), dones, infos
