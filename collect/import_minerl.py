"""MineRL-v0 dataset trajectories -> rad-env episodes with the discrete MINECRAFT action set.

Input: one folder per trajectory (``SRC`` is such a folder or a directory searched recursively
for folders holding ``rendered.npz``) with

- ``recording.mp4``: the pov frames (read with imageio/ffmpeg),
- ``rendered.npz``: ``reward`` (N,) and native actions ``action$forward``, ``action$back``,
  ``action$left``, ``action$right``, ``action$jump``, ``action$sneak``, ``action$sprint``,
  ``action$attack`` (N,), ``action$camera`` (N, 2) = (pitch, yaw) in degrees, maybe more
  ``action$*`` keys and ``observation$*`` arrays with N + 1 rows (states 0..N),
- ``metadata.json`` (optional): ``success`` and ``true_video_frame_count`` are used.

Frame/action alignment, with F decoded video frames and N actions:

- F == N + 1: frame ``t`` is the state before action ``t`` and frame ``t + 1`` the one after it.
- F == N: the video lacks the state after the last action; that action and reward are dropped
  (T = N - 1 steps).
- F > N + 1 and ``metadata.json`` says ``true_video_frame_count == F``: as in MineRL's own data
  pipeline the first ``F - (N + 1)`` frames precede the recorded experiment and are dropped.
- anything else is an error naming the folder.

Discrete ids (``rad_env.data.actions.MINECRAFT``), per step, first rule that applies:
``|yaw| > --yaw-threshold`` (default 5 degrees) -> 2 (turn left) if yaw < 0 else 3 (turn right);
``forward`` or ``jump`` pressed -> 1 (forward+jump); otherwise -> 0 (noop). Strafing, ``back``,
pitch, ``attack`` etc. are not represented in the ids; the full native actions are kept under
the ``action`` group (one (T, ...) dataset per key; string enums stored as bytes).
``observation$*`` arrays with one row per kept frame become float extras (``$`` -> ``_``, e.g.
``compassAngle``); others are ignored. ``terminated[-1]`` is ``metadata["success"]``,
``truncated[-1]`` its negation (or True when the last action was dropped).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rad_env.data import MINECRAFT, Episode, FileMeta, SchemaError, action_space_json

from collect.frames import read_video, resize_frames
from collect.npz import load_npz

DEFAULT_YAW_THRESHOLD = 5.0
ACTION_PREFIX, OBS_PREFIX = "action$", "observation$"
REQUIRED_ACTIONS = ("forward", "jump", "camera")


def find_inputs(src: Path) -> list[Path]:
    src = Path(src)
    if (src / "rendered.npz").exists() or (src / "recording.mp4").exists():
        return [src]
    folders = {p.parent for p in src.rglob("rendered.npz")} | {p.parent for p in src.rglob("recording.mp4")}
    return sorted(folders)


def map_actions(actions: dict[str, np.ndarray], yaw_threshold: float = DEFAULT_YAW_THRESHOLD) -> np.ndarray:
    """Native MineRL actions (key -> (N, ...) array) -> MINECRAFT ids (N,) int64 (rule in the module doc)."""
    camera = np.asarray(actions["camera"], np.float64)
    yaw = camera[:, 1]
    moving = (np.asarray(actions["forward"]).astype(float) > 0) | (np.asarray(actions["jump"]).astype(float) > 0)
    ids = np.where(moving, 1, 0)
    ids = np.where(np.abs(yaw) > yaw_threshold, np.where(yaw < 0, 2, 3), ids)
    return ids.astype(np.int64)


def _storable(value: np.ndarray) -> np.ndarray:
    if value.dtype.kind in "UO":
        return value.astype(str).astype(np.bytes_)
    return value


def convert(folder: Path, *, frame_size: int | None = None, yaw_threshold: float = DEFAULT_YAW_THRESHOLD,
            source: str | None = None, allow_pickle: bool = False) -> tuple[Episode, FileMeta]:
    folder = Path(folder)
    npz_path, video_path, meta_path = folder / "rendered.npz", folder / "recording.mp4", folder / "metadata.json"
    for path in (npz_path, video_path):
        if not path.exists():
            raise SchemaError(f"{folder}: missing {path.name} (a MineRL-v0 trajectory folder has recording.mp4, "
                              "rendered.npz and metadata.json)")
    metadata = {}
    if meta_path.exists():
        try:
            metadata = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"{meta_path}: not valid JSON: {exc}") from exc
    data = load_npz(npz_path, allow_pickle)
    if "reward" not in data:
        raise SchemaError(f"{npz_path}: missing key 'reward' (has {sorted(data)})")
    reward = np.asarray(data["reward"], np.float64).reshape(-1)
    n = len(reward)
    native = {key[len(ACTION_PREFIX):]: np.asarray(value) for key, value in data.items() if key.startswith(ACTION_PREFIX)}
    missing = [key for key in REQUIRED_ACTIONS if key not in native]
    if missing:
        raise SchemaError(f"{npz_path}: missing action keys {[ACTION_PREFIX + k for k in missing]}")
    for key, value in native.items():
        if value.shape[:1] != (n,):
            raise SchemaError(f"{npz_path}: {ACTION_PREFIX}{key} has {value.shape[:1]} rows for {n} rewards")
    if native["camera"].shape != (n, 2):
        raise SchemaError(f"{npz_path}: action$camera shape {native['camera'].shape}, expected ({n}, 2) (pitch, yaw)")

    try:
        video = read_video(video_path)
    except ValueError as exc:
        raise SchemaError(str(exc)) from exc
    frames_count = len(video)
    last_dropped = False
    if frames_count == n + 1:
        steps, first = n, 0
    elif frames_count == n:
        steps, first, last_dropped = n - 1, 0, True
    elif frames_count > n + 1 and int(metadata.get("true_video_frame_count", -1)) == frames_count:
        steps, first = n, frames_count - (n + 1)
    else:
        raise SchemaError(f"{folder}: {frames_count} video frames for {n} actions; expected {n + 1} (or {n}, or more "
                          "with metadata.json true_video_frame_count equal to the frame count)")
    if steps < 1:
        raise SchemaError(f"{folder}: no complete step ({frames_count} frames, {n} actions)")
    frames = resize_frames(video[first:first + steps + 1], frame_size)

    native = {key: _storable(value[:steps]) for key, value in native.items()}
    native["camera"] = native["camera"].astype(np.float32)
    action_id = map_actions(native, yaw_threshold)
    extras = {}
    for key, value in data.items():
        if key.startswith(OBS_PREFIX) and key != OBS_PREFIX + "pov":
            value = np.asarray(value)
            if value.shape[:1] == (n + 1,) and value.dtype.kind in "biuf":
                extras[key[len(OBS_PREFIX):].replace("$", "_")] = value[:steps + 1].astype(np.float32)
    success = bool(metadata.get("success", False))
    terminated, truncated = np.zeros(steps, bool), np.zeros(steps, bool)
    if success and not last_dropped:
        terminated[-1] = True
    else:
        truncated[-1] = True
    if source is None:
        parent = folder.parent.name
        source = f"minerl-v0/{parent}" if parent.startswith("MineRL") else "minerl-v0"
    episode = Episode(obs=frames, action_id=action_id, action=native, reward=reward[:steps].astype(np.float32),
                      terminated=terminated, truncated=truncated, extras=extras)
    space = {"type": "Dict", "keys": {key: f"{value.dtype}{list(value.shape[1:])}" for key, value in native.items()},
             "imported_from": "minerl-v0 rendered.npz",
             "to_action_id": f"|yaw|>{yaw_threshold}: 2 if yaw<0 else 3; forward or jump: 1; else 0"}
    meta = FileMeta(source=source, action_set=MINECRAFT.name, num_actions=MINECRAFT.num_actions,
                    frame_shape=tuple(frames.shape[1:]), action_space=action_space_json(space))
    episode.validate(meta, where=str(folder))
    return episode, meta
