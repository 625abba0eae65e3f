"""The real Memory Maze as a Gymnasium env (memory-maze ships only a legacy ``gym`` wrapper)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from .specs import discrete_action

#: Maze size -> (episode length in steps at 4 Hz, number of target objects).
MAZE_SIZES: dict[int, tuple[int, int]] = {9: (1000, 3), 11: (2000, 4), 13: (3000, 5), 15: (4000, 6)}
#: Per-step observations kept as ``info`` entries (and recorded as episode extras).
GLOBAL_KEYS = ("agent_pos", "agent_dir", "target_color", "target_pos")


@dataclass(frozen=True)
class MemoryMazeState:
    """Everything that decides what one maze does next, saved at a step boundary by
    :meth:`MemoryMazeEnv.save_state`: MuJoCo's whole ``MjData`` (solver warm start included, so the steps after
    a restore are bit-identical to the steps after the save), the task's target bookkeeping and the dm_control
    env's random state (it picks the next target after a reward)."""

    maze: int  # serial number of the maze (one per reset) the state belongs to
    data: Any  # mujoco.MjData
    random_state: tuple
    task: tuple[int, bool, int]  # current target, rewarded this step, targets obtained
    reset_next_step: bool
    image: np.ndarray


class MemoryMazeEnv(gym.Env):
    """Memory Maze ``size x size`` with discrete actions and 64x64 RGB image observations.

    ``info`` holds ``agent_pos``, ``agent_dir``, ``target_color``, ``target_pos`` every step and
    ``maze_layout`` after reset (a new maze on every reset, drawn from the generator ``reset(seed=...)`` seeds, so
    the episodes that follow a seeded reset are the same for every agent). Episodes are truncated
    at the task's own time limit (1000 steps for 9x9).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, size: int = 9, *, render_mode: str | None = None, camera_resolution: int = 64) -> None:
        if size not in MAZE_SIZES:
            raise ValueError(f"Memory Maze size must be one of {sorted(MAZE_SIZES)}, got {size}")
        self.size = size
        self.max_steps = MAZE_SIZES[size][0]
        self.render_mode = render_mode
        self.camera_resolution = camera_resolution
        self.observation_space = gym.spaces.Box(0, 255, (camera_resolution, camera_resolution, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(6)
        self._env = None
        self._maze = 0  # serial number of the current maze, for MemoryMazeState
        self._last_image: np.ndarray | None = None

    def _make(self, seed: int) -> None:
        try:
            from memory_maze import tasks
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError("the real Memory Maze needs `memory-maze` and the legacy `gym==0.26.2` "
                              f"package (pip install -e .): {exc}") from exc
        factory = getattr(tasks, f"memory_maze_{self.size}x{self.size}")
        if self._env is not None:
            self._env.close()
        self._env = factory(global_observables=True, seed=seed, camera_resolution=self.camera_resolution)
        self._maze += 1

    def _info(self, observation: dict[str, Any]) -> dict[str, Any]:
        return {key: np.asarray(observation[key], dtype=np.float32) for key in GLOBAL_KEYS}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # every episode's maze from this env's own seeded generator: the k-th episode after reset(seed=s) is the
        # same whatever happened before it (the dm_control env's own reset draws from a state that play advances)
        self._make(int(self.np_random.integers(2**31 - 1)))
        timestep = self._env.reset()
        self._last_image = timestep.observation["image"]
        info = self._info(timestep.observation)
        info["maze_layout"] = np.asarray(timestep.observation["maze_layout"], dtype=np.uint8)
        return self._last_image, info

    def step(self, action):
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        timestep = self._env.step(discrete_action(action, self.action_space.n))
        self._last_image = timestep.observation["image"]
        truncated = bool(timestep.last())  # Memory Maze has a time limit and no terminal states
        return self._last_image, float(timestep.reward or 0.0), False, truncated, self._info(timestep.observation)

    def _core(self):
        """The dm_control composer env under memory-maze's wrappers."""
        env = self._env
        while hasattr(env, "env"):
            env = env.env
        return env

    def save_state(self) -> MemoryMazeState:
        """The current state of this maze; :meth:`restore_state` returns to it (e.g. to try other actions
        from one recorded state without replaying the episode from its start)."""
        import copy

        if self._env is None:
            raise RuntimeError("call reset() before save_state()")
        core = self._core()
        task = core.task
        if any(target.activated for target in task._targets):  # cleared at every step boundary
            raise RuntimeError("a target is activated mid-step: save_state() only between steps")
        return MemoryMazeState(self._maze, copy.copy(core.physics.data.ptr), core.random_state.get_state(),
                               (task._current_target_ix, task._rewarded_this_step, task._targets_obtained),
                               core._reset_next_step, self._last_image.copy())

    def restore_state(self, state: MemoryMazeState) -> np.ndarray:
        """Return this maze to ``state`` (saved by :meth:`save_state` since the last reset); returns its frame."""
        import mujoco

        if not self.holds(state):
            raise ValueError("this state belongs to another maze: restore_state() only within the episode it "
                             "was saved in (no reset() between)")
        core = self._core()
        physics = core.physics
        mujoco.mj_copyData(physics.data.ptr, physics.model.ptr, state.data)
        core.random_state.set_state(state.random_state)
        task = core.task
        task._current_target_ix, task._rewarded_this_step, task._targets_obtained = state.task
        core._reset_next_step = state.reset_next_step
        self._last_image = state.image.copy()
        return self._last_image.copy()

    def holds(self, state: MemoryMazeState) -> bool:
        """Whether ``state`` belongs to the current maze (so :meth:`restore_state` accepts it)."""
        return self._env is not None and state.maze == self._maze

    def render(self):
        return None if self._last_image is None else self._last_image.copy()

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
