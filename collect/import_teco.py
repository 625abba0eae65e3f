"""TECO Minecraft dataset -> rad-env episodes.

Input (``SRC`` a file or a directory searched recursively), one trajectory per name:

- ``<name>.npz`` holding ``video`` (T, H, W, 3) uint8 and ``actions`` (T,) integers (TECO's
  released format), or
- ``<name>.mp4`` (read with imageio/ffmpeg) plus ``<name>.npz`` holding ``actions`` (T,).

Actions use TECO's ids, identical to ``rad_env.data.actions.MINECRAFT``: 0 noop, 1 forward
(+jump), 2 turn left, 3 turn right. ``actions[t]`` is the action taken *before* frame ``t``, so
``actions[0]`` (no action yet, 0 in TECO data) is ignored and ``action_id[t - 1] = actions[t]`` for
``t >= 1``; an episode of T frames has T - 1 steps. Rewards are 0, ``terminated`` is all False
and ``truncated[-1] = True``. TECO frames are 128x128; ``--frame-size 64`` downsizes by 2x2 block
mean (exact area pooling; other sizes use Pillow's box filter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rad_env.data import MINECRAFT, Episode, FileMeta, SchemaError, action_space_json

from collect.frames import read_video, resize_frames
from collect.npz import load_npz


def find_inputs(src: Path) -> list[Path]:
    """One path per trajectory: its ``.npz`` (or the ``.mp4`` when the npz is missing)."""
    src = Path(src)
    if src.is_file():
        return [src]
    npz = sorted(src.rglob("*.npz"))
    stems = {p.with_suffix("") for p in npz}
    orphans = [p for p in sorted(src.rglob("*.mp4")) if p.with_suffix("") not in stems]
    return sorted(npz + orphans)


def convert(path: Path, *, frame_size: int | None = None, source: str | None = "teco-minecraft"
            ) -> tuple[Episode, FileMeta]:
    path = Path(path)
    npz_path, mp4_path = path.with_suffix(".npz"), path.with_suffix(".mp4")
    if not npz_path.exists():
        raise SchemaError(f"{path}: no {npz_path.name} with the trajectory's actions next to it")
    data = load_npz(npz_path)
    if "actions" not in data:
        raise SchemaError(f"{npz_path}: missing key 'actions' (has {sorted(data)})")
    if "video" in data:
        video, video_from = data["video"], npz_path
    elif mp4_path.exists():
        try:
            video, video_from = read_video(mp4_path), mp4_path
        except ValueError as exc:
            raise SchemaError(str(exc)) from exc
    else:
        raise SchemaError(f"{npz_path}: no 'video' key and no {mp4_path.name} next to it")
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise SchemaError(f"{video_from}: video must be uint8 (T, H, W, 3), got {video.dtype} {video.shape}")
    actions = np.asarray(data["actions"])
    if actions.ndim != 1 or not np.issubdtype(actions.dtype, np.integer):
        raise SchemaError(f"{npz_path}: actions must be a 1-D integer array, got {actions.dtype} {actions.shape}")
    if len(actions) != len(video):
        raise SchemaError(f"{npz_path}: {len(actions)} actions for {len(video)} frames in {video_from.name} "
                          "(TECO stores one action per frame, actions[t] leading to frame t)")
    if len(video) < 2:
        raise SchemaError(f"{video_from}: {len(video)} frame(s); a trajectory needs at least 2")
    action_id = actions[1:].astype(np.int64)
    if action_id.min() < 0 or action_id.max() >= MINECRAFT.num_actions:
        bad = int(np.nonzero((action_id < 0) | (action_id >= MINECRAFT.num_actions))[0][0]) + 1
        raise SchemaError(f"{npz_path}: actions[{bad}] = {actions[bad]} outside TECO's ids 0..3")
    frames = resize_frames(video, frame_size)
    steps = len(action_id)
    truncated = np.zeros(steps, bool)
    truncated[-1] = True
    episode = Episode(obs=frames, action_id=action_id, action=action_id.copy(), reward=np.zeros(steps, np.float32),
                      terminated=np.zeros(steps, bool), truncated=truncated)
    space = {"type": "Discrete", "n": 4, "names": list(MINECRAFT.names), "imported_from": "teco minecraft"}
    meta = FileMeta(source=source or "teco-minecraft", action_set=MINECRAFT.name, num_actions=MINECRAFT.num_actions,
                    frame_shape=tuple(frames.shape[1:]), action_space=action_space_json(space))
    episode.validate(meta, where=str(path))
    return episode, meta
