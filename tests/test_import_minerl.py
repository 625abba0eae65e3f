"""Importing MineRL-v0 trajectory folders (recording.mp4 + rendered.npz + metadata.json)."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from collect.import_minerl import map_actions
from collect.importers import run_import
from collect.record import main
from rad_env.data import EpisodeStore, SchemaError

KEYS = ("forward", "left", "back", "right", "jump", "sneak", "sprint", "attack")


def write_trajectory(folder, actions: int = 10, frames: int | None = None, success: bool = True,
                     true_count: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """A MineRL-v0 style folder; frame i of the video is uniformly gray level 10 + 10 * i."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    frames = actions + 1 if frames is None else frames
    levels = 10 + 10 * np.arange(frames)
    video = np.broadcast_to(levels[:, None, None, None], (frames, 64, 64, 3)).astype(np.uint8)
    iio.imwrite(folder / "recording.mp4", video, fps=20)
    data = {f"action${k}": rng.integers(0, 2, actions) for k in KEYS}
    camera = np.zeros((actions, 2), np.float32)
    camera[:, 0] = rng.normal(0, 3, actions)
    camera[:, 1] = rng.choice([-30.0, -2.0, 0.0, 1.5, 25.0], actions)
    data["action$camera"] = camera
    data["action$place"] = np.array(["none"] * actions)
    data["reward"] = np.zeros(actions, np.float32)
    data["reward"][-1] = 100.0
    data["observation$compassAngle"] = rng.normal(0, 90, actions + 1).astype(np.float32)
    data["observation$inventory$dirt"] = rng.integers(0, 5, actions + 1)
    np.savez(folder / "rendered.npz", **data)
    meta = {"success": success, "duration_steps": actions}
    if true_count is not None:
        meta["true_video_frame_count"] = true_count
    (folder / "metadata.json").write_text(json.dumps(meta))
    return data


def expected_ids(data) -> np.ndarray:
    yaw = data["action$camera"][:, 1]
    moving = (data["action$forward"] > 0) | (data["action$jump"] > 0)
    return np.where(np.abs(yaw) > 5, np.where(yaw < 0, 2, 3), np.where(moving, 1, 0))


def test_import_minerl_folders(tmp_path, capsys):
    src = tmp_path / "MineRLNavigate-v0"
    full = write_trajectory(src / "v3_a", actions=10, seed=1)  # N + 1 frames
    short = write_trajectory(src / "v3_b", actions=8, frames=8, success=False, seed=2)  # N frames
    out = tmp_path / "out"
    assert main(["import", "minerl", str(src), "--out", str(out), "--no-progress"]) == 0
    store = EpisodeStore(out)
    assert (store.meta.source, store.meta.action_set, store.meta.num_actions) == \
        ("minerl-v0/MineRLNavigate-v0", "minecraft", 4)
    first, second = store.episodes
    assert (first.length, second.length) == (10, 7)

    group = store.group(first)
    ids = group["action_id"][()]
    assert np.array_equal(ids, expected_ids(full)) and set(ids.tolist()) >= {2, 3}
    native = {key: group["action"][key][()] for key in group["action"]}
    assert set(native) == set(KEYS) | {"camera", "place"}
    assert np.allclose(native["camera"], full["action$camera"]) and native["place"].dtype.kind == "S"
    assert np.array_equal(map_actions(native), ids)
    obs = group["obs"][()]
    assert obs.shape == (11, 64, 64, 3)
    assert np.abs(obs[:, 32, 32, 0].astype(int) - (10 + 10 * np.arange(11))).max() <= 3
    assert np.allclose(group["compassAngle"][()], full["observation$compassAngle"])
    assert group["inventory_dirt"].shape == (11,)
    assert group["reward"][-1] == 100 and group["terminated"][-1] and not group["truncated"][()].any()

    group = store.group(second)  # video without the final state: the last action is dropped
    assert group["obs"].shape == (8, 64, 64, 3)
    assert np.array_equal(group["action_id"][()], expected_ids(short)[:7])
    assert group["action"]["camera"].shape == (7, 2)
    assert np.array_equal(group["reward"][()], short["reward"][:7])
    assert group["truncated"][-1] and not group["terminated"][()].any()


def test_leading_frames_dropped_with_true_frame_count(tmp_path):
    folder = tmp_path / "traj"
    write_trajectory(folder, actions=6, frames=10, true_count=10)  # 3 frames before the experiment
    run_import("minerl", folder, tmp_path / "out", frame_size=32)
    store = EpisodeStore(tmp_path / "out")
    obs = store.read(store.episodes[0], "obs")
    assert obs.shape == (7, 32, 32, 3)
    assert abs(int(obs[0, 16, 16, 0]) - 40) <= 3  # starts at video frame 3


def test_yaw_threshold_option(tmp_path):
    folder = tmp_path / "traj"
    data = write_trajectory(folder, actions=10, seed=3)
    run_import("minerl", folder, tmp_path / "out", yaw_threshold=50.0)
    store = EpisodeStore(tmp_path / "out")
    moving = (data["action$forward"] > 0) | (data["action$jump"] > 0)
    assert np.array_equal(store.read(store.episodes[0], "action_id"), np.where(moving, 1, 0))


@pytest.mark.parametrize("case, message", [
    ("frames", "12 video frames for 6 actions"),
    ("no_npz", "missing rendered.npz"),
    ("bad_json", "not valid JSON"),
    ("no_camera", "missing action keys ['action$camera']"),
    ("short_action", "action$jump has (5,) rows for 6 rewards"),
])
def test_malformed_minerl_inputs(tmp_path, case, message):
    folder = tmp_path / "MineRLNavigate-v0" / "bad_traj"
    write_trajectory(folder, actions=6, frames=12 if case == "frames" else None)
    if case == "no_npz":
        (folder / "rendered.npz").unlink()
    if case == "bad_json":
        (folder / "metadata.json").write_text("{oops")
    if case in ("no_camera", "short_action"):
        with np.load(folder / "rendered.npz") as npz:
            data = dict(npz)
        if case == "no_camera":
            del data["action$camera"]
        else:
            data["action$jump"] = data["action$jump"][:5]
        np.savez(folder / "rendered.npz", **data)
    with pytest.raises(SchemaError) as info:
        run_import("minerl", tmp_path / "MineRLNavigate-v0", tmp_path / "out")
    assert "bad_traj" in str(info.value) and message in str(info.value)
