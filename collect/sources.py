"""Recording sources: run a policy in a real env and return :class:`rad_env.data.Episode` objects.

Sources (``make_source(name)``):

- ``memory-maze-9x9``, ``-11x11``, ``-13x13``, ``-15x15``: :class:`MemoryMazeSource` over
  :class:`rad_env.envs.memory_maze.MemoryMazeEnv`. Native actions are the env's Discrete(6) ints
  (identical to ``action_id``). Extras: ``agent_pos``, ``agent_dir``, ``target_color``,
  ``target_pos`` (T+1, ...) float32 and ``maze_layout`` (size, size) uint8 (1 = free cell).
- ``minerl-navigate``: :class:`MineRLSource`, a recorder against the MineRL API (0.4 ``gym`` style:
  ``reset() -> obs``, ``step(dict) -> (obs, reward, done, info)``, ``action_space.noop()``, obs
  dict with ``"pov"`` (H, W, 3) uint8). The discrete ids of ``rad_env.data.actions.MINECRAFT`` (or
  ``MINECRAFT_WALK``) map to dict actions (see :data:`MINECRAFT_DICT_ACTIONS`); the native dict
  actions are stored under ``action`` (one (T, ...) array per key) and the ids under ``action_id``;
  ``location_stats`` observations become extras ``x``, ``y``, ``z``, ``yaw``. The env is built by an
  injectable ``env_factory`` (default: ``gym.make(env_id)`` after ``import minerl``).

Each source records one episode per call of :meth:`record` with ``reset(seed=...)``, so an
episode is a pure function of (source, policy, steps, seed).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

from rad_env.data import (MEMORY_MAZE, MINECRAFT, MINECRAFT_WALK, Episode, FileMeta, action_space_json,
                          get_action_set, walk_action_vector)

from .frames import resize_frames
from .policies import make_policy

StepCallback = Callable[[int], None]

MEMORY_MAZE_SIZES = (9, 11, 13, 15)
SOURCE_NAMES = tuple(f"memory-maze-{n}x{n}" for n in MEMORY_MAZE_SIZES) + ("minerl-navigate",)

#: MINECRAFT action id -> (keys set to 1, camera (pitch, yaw) in degrees).
MINECRAFT_DICT_ACTIONS: dict[int, tuple[tuple[str, ...], tuple[float, float]]] = {
    0: ((), (0.0, 0.0)),                    # noop
    1: (("forward", "jump"), (0.0, 0.0)),   # forward + jump
    2: ((), (0.0, -20.0)),                  # turn left 20 degrees (yaw -20)
    3: ((), (0.0, 20.0)),                   # turn right 20 degrees (yaw +20)
}

MINERL_INSTALL_HINT = ("the minerl-navigate source needs MineRL: pip install -e '.[minerl]' "
                       "(MineRL 0.4 needs a Java 8 JDK; see https://minerl.readthedocs.io)")


class MemoryMazeSource:
    """Memory Maze ``size x size`` episodes recorded with a discrete-action policy."""

    action_set = MEMORY_MAZE
    policies = ("random", "explore", "target", "retrace", "agent")

    def __init__(self, size: int = 9, frame_size: int | None = None) -> None:
        from rad_env.envs.memory_maze import MAZE_SIZES

        if size not in MAZE_SIZES:
            raise ValueError(f"Memory Maze size must be one of {sorted(MAZE_SIZES)}, got {size}")
        self.size = size
        self.name = f"memory-maze-{size}x{size}"
        self.frame_size = frame_size or 64
        self.default_steps = MAZE_SIZES[size][0]
        self.env = None

    def open(self) -> None:
        if self.env is None:
            from rad_env.envs.memory_maze import MemoryMazeEnv

            self.env = MemoryMazeEnv(self.size, camera_resolution=self.frame_size)

    def file_meta(self, seed: int = -1) -> FileMeta:
        space = {"type": "Discrete", "n": 6, "names": list(MEMORY_MAZE.names),
                 "env": f"MemoryMaze-{self.size}x{self.size}"}
        return FileMeta(source=self.name, action_set=MEMORY_MAZE.name, num_actions=MEMORY_MAZE.num_actions,
                        frame_shape=(self.frame_size, self.frame_size, 3), action_space=action_space_json(space),
                        seed=seed)

    def make_policy(self, kind: str, **kwargs: Any):
        return make_policy(kind, MEMORY_MAZE.num_actions, **kwargs)

    def record(self, policy, steps: int, seed: int, *, policy_seed: int | None = None,
               on_step: StepCallback | None = None) -> Episode:
        """One episode of at most ``steps`` steps (fewer if the env's time limit ends it)."""
        self.open()
        obs, info = self.env.reset(seed=seed)
        layout = np.asarray(info["maze_layout"], np.uint8)
        policy.reset(info, seed=policy_seed if policy_seed is not None else seed)
        frames = [obs]
        extras: dict[str, list] = {key: [info[key]] for key in ("agent_pos", "agent_dir", "target_color", "target_pos")}
        actions, rewards, terminated, truncated = [], [], [], []
        for _ in range(steps):
            action = int(policy(obs, info))
            obs, reward, term, trunc, info = self.env.step(action)
            frames.append(obs)
            for key, values in extras.items():
                values.append(info[key])
            actions.append(action)
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
            if on_step is not None:
                on_step(1)
            if term or trunc:
                break
        if not (terminated[-1] or truncated[-1]):
            truncated[-1] = True  # cut by --steps before the env's own time limit
        actions_arr = np.asarray(actions, np.int64)
        episode_extras = {key: np.asarray(values, np.float32) for key, values in extras.items()}
        episode_extras["maze_layout"] = layout
        return Episode(obs=np.stack(frames).astype(np.uint8), action_id=actions_arr, action=actions_arr.copy(),
                       reward=np.asarray(rewards, np.float32), terminated=np.asarray(terminated, bool),
                       truncated=np.asarray(truncated, bool), extras=episode_extras, seed=seed)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def _default_minerl_factory(env_id: str) -> Callable[[], Any]:
    def factory():
        try:
            import minerl  # noqa: F401  (registers the MineRL env ids with gym)
            import gym
        except ImportError as exc:
            raise ImportError(f"{MINERL_INSTALL_HINT} ({exc})") from exc
        return gym.make(env_id)

    return factory


def check_minerl_available() -> None:
    """Raise a clear ImportError when MineRL is not installed."""
    import importlib.util

    if importlib.util.find_spec("minerl") is None:
        raise ImportError(MINERL_INSTALL_HINT)


def _native_value(value: Any) -> np.ndarray:
    """A MineRL action value as an HDF5-storable array (enum strings become bytes)."""
    array = np.asarray(value)
    if array.dtype.kind in "UO":
        array = np.asarray(array.astype(str)).astype(np.bytes_)
    return array


#: Per-frame extras from MineRL's ``location_stats`` (position in blocks, yaw in degrees).
LOCATION_EXTRAS = ("x", "y", "z", "yaw")


def _location(obs: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """(x, y, z, yaw) from ``obs["location_stats"]`` (keys xpos, ypos, zpos, yaw), or None."""
    stats = obs.get("location_stats")
    if not isinstance(stats, dict) or not all(k in stats for k in ("xpos", "ypos", "zpos", "yaw")):
        return None
    return tuple(float(np.asarray(stats[k]).reshape(-1)[0]) for k in ("xpos", "ypos", "zpos", "yaw"))


def _compass_angle(obs: dict[str, Any]) -> float | None:
    compass = obs.get("compass")
    if isinstance(compass, dict) and "angle" in compass:
        return float(np.asarray(compass["angle"]).reshape(-1)[0])
    if "compassAngle" in obs:
        return float(np.asarray(obs["compassAngle"]).reshape(-1)[0])
    return None


class MineRLSource:
    """Episodes from a MineRL env (default ``MineRLNavigate-v0``) driven by discrete action ids.

    ``action_set``: ``minecraft`` (TECO's 4 ids) or ``minecraft-walk`` (the RAD authors' 18
    forward/back/jump x +-20 degree yaw combinations; the native [forward, back, jump, turn] is what
    they record). When the observations carry ``location_stats`` (MineRL's handler: ``xpos``,
    ``ypos``, ``zpos``, ``yaw``), the agent's position and yaw are stored per frame as extras ``x``,
    ``y``, ``z``, ``yaw`` (what the evaluation's Minecraft revisit metric reads)."""

    name = "minerl-navigate"
    action_sets = (MINECRAFT.name, MINECRAFT_WALK.name)

    def __init__(self, env_id: str = "MineRLNavigate-v0", frame_size: int | None = None,
                 env_factory: Callable[[], Any] | None = None, max_episode_steps: int = 6000,
                 action_set: str = MINECRAFT.name) -> None:
        if action_set not in self.action_sets:
            raise ValueError(f"MineRL action set must be one of {self.action_sets}, got {action_set!r}")
        if env_factory is None:
            check_minerl_available()
            env_factory = _default_minerl_factory(env_id)
        self.env_id = env_id
        self.env_factory = env_factory
        self.action_set = get_action_set(action_set)
        self.policies = ("random", "walker") if action_set == MINECRAFT_WALK.name else ("random",)
        self.frame_size = frame_size or 64
        self.default_steps = max_episode_steps
        self.max_episode_steps = max_episode_steps
        self.env = None
        self._noop: dict[str, Any] | None = None

    def open(self) -> None:
        if self.env is None:
            self.env = self.env_factory()
            self._noop = dict(self.env.action_space.noop())
            needed = {"forward", "jump", "camera"} | ({"back"} if self.action_set is MINECRAFT_WALK else set())
            missing = needed - set(self._noop)
            if missing:
                raise ValueError(f"{self.env_id}: action space lacks keys {sorted(missing)} needed by the "
                                 f"{self.action_set.name} action set")

    def keys_and_camera(self, action_id: int) -> tuple[tuple[str, ...], tuple[float, float]]:
        """Keys pressed and camera (pitch, yaw) degrees of an action id of this source's action set."""
        if self.action_set is MINECRAFT_WALK:
            forward, back, jump, turn = walk_action_vector(action_id)
            keys = tuple(k for k, on in (("forward", forward), ("back", back), ("jump", jump)) if on)
            return keys, (0.0, 20.0 * turn)
        if action_id not in MINECRAFT_DICT_ACTIONS:
            raise ValueError(f"invalid MINECRAFT action id {action_id}; expected 0..{len(MINECRAFT_DICT_ACTIONS) - 1}")
        return MINECRAFT_DICT_ACTIONS[action_id]

    def dict_action(self, action_id: int) -> dict[str, Any]:
        """The MineRL dict action for an action id (noop() with the mapped keys set)."""
        if self._noop is None:
            self.open()
        keys, camera = self.keys_and_camera(action_id)
        action = copy.deepcopy(self._noop)
        for key in keys:
            action[key] = 1
        action["camera"] = np.asarray(camera, np.float32)
        return action

    def file_meta(self, seed: int = -1) -> FileMeta:
        self.open()
        assert self._noop is not None
        keys = {}
        spaces = getattr(self.env.action_space, "spaces", None)
        for key in self._noop:
            keys[key] = str(spaces[key]) if spaces is not None and key in spaces else str(np.asarray(self._noop[key]).dtype)
        mapping = {str(i): dict(zip(("press", "camera_pitch_yaw"), map(list, self.keys_and_camera(i))))
                   for i in range(self.action_set.num_actions)}
        space = {"type": "Dict", "env": self.env_id, "keys": keys, "from_action_id": mapping}
        return FileMeta(source=self.name, action_set=self.action_set.name, num_actions=self.action_set.num_actions,
                        frame_shape=(self.frame_size, self.frame_size, 3), action_space=action_space_json(space),
                        seed=seed)

    def make_policy(self, kind: str, **kwargs: Any):
        if kind not in self.policies:
            raise ValueError(f"policy {kind!r} is not available for {self.name} with the {self.action_set.name} "
                             f"action set; use --policy {' or '.join(self.policies)}")
        return make_policy(kind, self.action_set.num_actions, **kwargs)

    def _frame(self, obs: dict[str, Any]) -> np.ndarray:
        if not isinstance(obs, dict) or "pov" not in obs:
            raise ValueError(f"{self.env_id}: expected a dict observation with 'pov', got {type(obs).__name__}")
        pov = np.asarray(obs["pov"], np.uint8)
        return resize_frames(pov[None], self.frame_size)[0]

    def record(self, policy, steps: int, seed: int, *, policy_seed: int | None = None,
               on_step: StepCallback | None = None) -> Episode:
        self.open()
        if hasattr(self.env, "seed"):
            self.env.seed(int(seed))
        obs = self.env.reset()
        if isinstance(obs, tuple):  # gym>=0.26-style (obs, info)
            obs = obs[0]
        policy.reset({}, seed=policy_seed if policy_seed is not None else seed)
        frames = [self._frame(obs)]
        compass = [_compass_angle(obs)]
        places = [_location(obs)]
        ids, native, rewards, terminated, truncated = [], [], [], [], []
        for t in range(steps):
            action_id = int(policy(obs, {}))
            action = self.dict_action(action_id)
            result = self.env.step(action)
            if len(result) == 5:
                obs, reward, term, trunc, info = result
                done = term or trunc
            else:
                obs, reward, done, info = result
                trunc = bool(done) and (bool((info or {}).get("TimeLimit.truncated", False))
                                        or t + 1 >= self.max_episode_steps)
                term = bool(done) and not trunc
            frames.append(self._frame(obs))
            compass.append(_compass_angle(obs))
            places.append(_location(obs))
            ids.append(action_id)
            native.append(action)
            rewards.append(float(reward))
            terminated.append(bool(term))
            truncated.append(bool(trunc))
            if on_step is not None:
                on_step(1)
            if done:
                break
        if not (terminated[-1] or truncated[-1]):
            truncated[-1] = True  # cut by --steps
        native_arrays = {key: np.stack([_native_value(a[key]) for a in native]) for key in native[0]}
        native_arrays["camera"] = native_arrays["camera"].astype(np.float32)
        extras = {}
        if all(c is not None for c in compass):
            extras["compass_angle"] = np.asarray(compass, np.float32)
        if all(p is not None for p in places):
            extras.update({name: np.asarray(values, np.float32) for name, values in zip(LOCATION_EXTRAS, zip(*places))})
        return Episode(obs=np.stack(frames), action_id=np.asarray(ids, np.int64), action=native_arrays,
                       reward=np.asarray(rewards, np.float32), terminated=np.asarray(terminated, bool),
                       truncated=np.asarray(truncated, bool), extras=extras, seed=seed)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def make_source(name: str, *, frame_size: int | None = None, env_factory: Callable[[], Any] | None = None,
                minerl_env_id: str = "MineRLNavigate-v0", minerl_actions: str = "minecraft"):
    """A recording source by name (see :data:`SOURCE_NAMES`)."""
    if name.startswith("memory-maze-"):
        size_text = name[len("memory-maze-"):]
        parts = size_text.split("x")
        if len(parts) == 2 and parts[0] == parts[1] and parts[0].isdigit() and int(parts[0]) in MEMORY_MAZE_SIZES:
            if env_factory is not None:
                raise ValueError("env_factory is only supported by the minerl-navigate source")
            return MemoryMazeSource(int(parts[0]), frame_size=frame_size)
    if name == "minerl-navigate":
        return MineRLSource(minerl_env_id, frame_size=frame_size, env_factory=env_factory, action_set=minerl_actions)
    raise ValueError(f"unknown source {name!r}; choose one of {', '.join(SOURCE_NAMES)}")
