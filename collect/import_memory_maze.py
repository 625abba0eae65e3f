"""Memory Maze offline dataset -> rad-env episodes.

Input: one ``.npz`` per trajectory (``SRC`` may be a file or a directory searched recursively).
Every array has a leading time axis of ``T + 1``; index 0 is the frame before the first action:

- ``image`` (T+1, 64, 64, 3) uint8
- ``action`` (T+1, 6) one-hot of the *previous* action (row 0 is a dummy, usually all zero)
- ``reward`` (T+1,) the *previous* reward (row 0 is a dummy)
- optional ``maze_layout`` (T+1, n, n), ``agent_pos``/``agent_dir``/``target_pos``/``target_vec``
  (T+1, 2), ``targets_pos``/``targets_vec`` (T+1, k, 2), ``target_color`` (T+1, 3)

Conversion: ``obs = image``; ``action_id[t] = argmax(action[t + 1])`` (also stored as the native
``action``); ``reward[t] = reward[t + 1]``; ``terminated`` all False and ``truncated[-1] = True``
(trajectories end at the task's time limit); the optional per-frame arrays are kept as float32
extras over all ``T + 1`` frames and ``maze_layout[0]`` as the per-episode ``maze_layout``
(uint8, 1 = free). The source name is ``memory-maze-<n>x<n>`` from the layout (or ``--source``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rad_env.data import MEMORY_MAZE, Episode, FileMeta, SchemaError, action_space_json
from collect.npz import load_npz

FRAME_EXTRAS = ("agent_pos", "agent_dir", "target_color", "target_pos", "target_vec", "targets_pos", "targets_vec")
REQUIRED = ("image", "action", "reward")


def find_inputs(src: Path) -> list[Path]:
    src = Path(src)
    return [src] if src.is_file() else sorted(src.rglob("*.npz"))


def convert(path: Path, *, source: str | None = None) -> tuple[Episode, FileMeta]:
    """One trajectory file -> (Episode, FileMeta); :class:`SchemaError` names the file on bad input."""
    path = Path(path)
    data = load_npz(path)
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise SchemaError(f"{path}: missing keys {missing} (has {sorted(data)}); not a Memory Maze trajectory NPZ")
    image, action, reward = data["image"], data["action"], data["reward"]
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
        raise SchemaError(f"{path}: image must be uint8 (T+1, H, W, 3), got {image.dtype} {image.shape}")
    frames = image.shape[0]
    if frames < 2:
        raise SchemaError(f"{path}: image has {frames} frame(s); a trajectory needs at least 2")
    if action.shape != (frames, MEMORY_MAZE.num_actions):
        raise SchemaError(f"{path}: action shape {action.shape}, expected ({frames}, {MEMORY_MAZE.num_actions}) "
                          "(one-hot of the previous action, same length as image)")
    if reward.shape != (frames,):
        raise SchemaError(f"{path}: reward shape {reward.shape}, expected ({frames},)")
    onehot = action[1:]
    if not (np.isin(onehot, (0, 1)).all() and (onehot.sum(axis=1) == 1).all()):
        bad = int(np.nonzero(~(np.isin(onehot, (0, 1)).all(axis=1) & (onehot.sum(axis=1) == 1)))[0][0]) + 1
        raise SchemaError(f"{path}: action[{bad}] = {action[bad].tolist()} is not one-hot")
    action_id = onehot.argmax(axis=1).astype(np.int64)
    steps = frames - 1

    extras: dict[str, np.ndarray] = {}
    for key in FRAME_EXTRAS:
        if key in data:
            value = data[key]
            if value.shape[:1] != (frames,):
                raise SchemaError(f"{path}: {key} shape {value.shape}, expected a leading axis of {frames}")
            extras[key] = value.astype(np.float32)
    maze_size = None
    if "maze_layout" in data:
        layout = data["maze_layout"]
        if layout.ndim != 3 or layout.shape[0] != frames or layout.shape[1] != layout.shape[2]:
            raise SchemaError(f"{path}: maze_layout shape {layout.shape}, expected ({frames}, n, n)")
        extras["maze_layout"] = layout[0].astype(np.uint8)
        maze_size = layout.shape[1]
    if source is None:
        source = f"memory-maze-{maze_size}x{maze_size}" if maze_size else "memory-maze"

    truncated = np.zeros(steps, bool)
    truncated[-1] = True
    episode = Episode(obs=image, action_id=action_id, action=action_id.copy(),
                      reward=reward[1:].astype(np.float32), terminated=np.zeros(steps, bool),
                      truncated=truncated, extras=extras)
    space = {"type": "Discrete", "n": 6, "names": list(MEMORY_MAZE.names), "imported_from": "memory-maze offline npz"}
    meta = FileMeta(source=source, action_set=MEMORY_MAZE.name, num_actions=MEMORY_MAZE.num_actions,
                    frame_shape=tuple(image.shape[1:]), action_space=action_space_json(space))
    episode.validate(meta, where=str(path))
    return episode, meta
