"""The RAD authors' Minecraft recordings -> rad-env episodes (action set ``minecraft-walk``).

Input (``SRC`` a file or a directory searched recursively, e.g. their ``<out>/<worker>/`` tree), one
episode per name, as written by their collector (MineRL 0.4.4, a scripted walker):

- ``NNNNNN.mp4``: T + 1 frames (640x360 RGB, 20 fps, OpenCV ``mp4v``), read with imageio/ffmpeg;
- ``NNNNNN.npz``: ``actions`` float32 ``(T + 1, 4)`` = [forward, back, jump, turn] with forward, back,
  jump in {0, 1} and turn in {-1, 0, +1} = camera yaw -20 / 0 / +20 degrees; row ``t`` is the action
  that led to frame ``t``, row 0 is all zeros (no action yet). The memory variant stores
  ``(T + 1, 8)``: the same 4 columns, then the agent's x, y, z position and yaw (degrees) after the
  step (row 0: zeros, i.e. not recorded).

Conversion: ``action_id[t - 1]`` is the ``minecraft-walk`` id of row ``t``
(``rad_env.data.actions.MINECRAFT_WALK``: every move x jump x turn combination, forward and back
together cancel), so T + 1 frames give T steps; the native rows 1..T are kept as ``action`` (T, 4).
The 8-column variant's x, y, z and yaw become per-frame extras ``x``, ``y``, ``z``, ``yaw`` (T + 1,)
with frame 0 NaN (the collector does not record where the agent starts). Rewards are 0,
``terminated`` is all False (the collector drops episodes in which the agent dies) and
``truncated[-1] = True``. Frames: 16:9 -> square by ``--square crop`` (default: the centred 360x360
square) or ``letterbox`` (black bars above and below), then resized to ``--frame-size`` (default 64)
with an area filter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rad_env.data import MINECRAFT_WALK, Episode, FileMeta, SchemaError, action_space_json, walk_action_ids

from collect.frames import read_video, resize_frames, square_frames
from collect.npz import load_npz

DEFAULT_FRAME_SIZE = 64
POSITION_COLUMNS = ("x", "y", "z", "yaw")


def find_inputs(src: Path) -> list[Path]:
    """One path per episode: its ``.npz`` (which names the ``.mp4`` beside it)."""
    src = Path(src)
    if src.is_file():
        return [src.with_suffix(".npz")]
    return sorted(src.rglob("*.npz"))


def convert(path: Path, *, frame_size: int | None = DEFAULT_FRAME_SIZE, square: str = "crop",
            source: str | None = "rad-minecraft") -> tuple[Episode, FileMeta]:
    path = Path(path)
    npz_path, mp4_path = path.with_suffix(".npz"), path.with_suffix(".mp4")
    if not npz_path.exists():
        raise SchemaError(f"{path}: no {npz_path.name} with the episode's actions next to it")
    if not mp4_path.exists():
        raise SchemaError(f"{npz_path}: no {mp4_path.name} with the episode's frames next to it")
    data = load_npz(npz_path)
    if "actions" not in data:
        raise SchemaError(f"{npz_path}: missing key 'actions' (has {sorted(data)})")
    actions = np.asarray(data["actions"])
    if actions.ndim != 2 or actions.shape[1] not in (4, 8) or not np.issubdtype(actions.dtype, np.number):
        raise SchemaError(f"{npz_path}: actions must be numeric (T+1, 4) or (T+1, 8) "
                          f"([forward, back, jump, turn] (+ x, y, z, yaw)), got {actions.dtype} {actions.shape}")
    try:
        video = read_video(mp4_path)
    except ValueError as exc:
        raise SchemaError(str(exc)) from exc
    if len(video) != len(actions):
        raise SchemaError(f"{npz_path}: {len(actions)} action rows for {len(video)} frames in {mp4_path.name} "
                          "(the collector writes T+1 of each, row 0 before the first step)")
    if len(video) < 2:
        raise SchemaError(f"{mp4_path}: {len(video)} frame(s); an episode needs at least 2")
    native = actions[1:, :4].astype(np.float32)
    try:
        action_id = walk_action_ids(actions[:, :4])[1:]  # row indices in errors are the file's
    except ValueError as exc:
        raise SchemaError(f"{npz_path}: actions {exc}") from exc
    try:
        frames = resize_frames(square_frames(video, square), frame_size)
    except ValueError as exc:
        raise SchemaError(f"{mp4_path}: {exc}") from exc
    extras = {}
    if actions.shape[1] == 8:
        positions = actions[:, 4:].astype(np.float32)
        positions[0] = np.nan  # not recorded: row 0 is all zeros
        extras = {name: positions[:, i].copy() for i, name in enumerate(POSITION_COLUMNS)}
    steps = len(action_id)
    truncated = np.zeros(steps, bool)
    truncated[-1] = True
    episode = Episode(obs=frames, action_id=action_id, action=native, reward=np.zeros(steps, np.float32),
                      terminated=np.zeros(steps, bool), truncated=truncated, extras=extras)
    space = {"type": "Box", "shape": [4], "columns": ["forward", "back", "jump", "turn"],
             "turn": "-1/0/+1 = camera yaw -20/0/+20 degrees", "imported_from": "rad-minecraft npz+mp4",
             "to_action_id": "6 * move(none/forward/back) + 3 * jump + turn(none/left/right)",
             "frames": f"{video.shape[2]}x{video.shape[1]} -> square by {square} -> {frames.shape[1]}"}
    meta = FileMeta(source=source or "rad-minecraft", action_set=MINECRAFT_WALK.name,
                    num_actions=MINECRAFT_WALK.num_actions, frame_shape=tuple(frames.shape[1:]),
                    action_space=action_space_json(space))
    episode.validate(meta, where=str(path))
    return episode, meta
