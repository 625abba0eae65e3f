"""Importing TECO Minecraft trajectories: npz (video + actions) and mp4 + npz (actions)."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from collect.frames import resize_frames
from collect.importers import run_import
from collect.record import main
from rad_env.data import EpisodeStore, SchemaError


def teco_actions(frames: int, seed: int = 0) -> np.ndarray:
    actions = np.random.default_rng(seed).integers(1, 4, frames)
    actions[0] = 0  # no action before the first frame
    return actions


def gray_video(frames: int, size: int) -> np.ndarray:
    """Frames of uniform gray levels 20, 30, ... (survive lossy video coding almost exactly)."""
    levels = 20 + 10 * np.arange(frames)
    return np.broadcast_to(levels[:, None, None, None], (frames, size, size, 3)).astype(np.uint8).copy()


def test_import_teco_npz_with_resize(tmp_path, capsys):
    src = tmp_path / "teco"
    src.mkdir()
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (10, 128, 128, 3), dtype=np.uint8)
    actions = teco_actions(10)
    np.savez(src / "traj0.npz", video=video, actions=actions)
    out = tmp_path / "out"
    assert main(["import", "teco", str(src), "--out", str(out), "--frame-size", "64", "--no-progress"]) == 0
    store = EpisodeStore(out)
    assert (store.meta.source, store.meta.action_set, tuple(store.meta.frame_shape)) == \
        ("teco-minecraft", "minecraft", (64, 64, 3))
    ep = store.read_episode(store.episodes[0], ["obs", "action_id", "action", "reward", "truncated"])
    assert ep["obs"].shape == (10, 64, 64, 3)
    block = video[3, 10:12, 20:22].astype(np.float64).mean(axis=(0, 1))  # 2x2 block mean of pixel (5, 10)
    assert np.array_equal(ep["obs"][3, 5, 10], np.rint(block).astype(np.uint8))
    assert np.array_equal(ep["action_id"], actions[1:])  # actions[t] led to frame t
    assert np.array_equal(ep["action"], actions[1:]) and (ep["reward"] == 0).all() and ep["truncated"][-1]


def test_import_teco_mp4_plus_npz(tmp_path):
    src = tmp_path / "teco"
    src.mkdir()
    iio.imwrite(src / "clip.mp4", gray_video(12, 64), fps=20)
    actions = teco_actions(12, seed=1)
    np.savez(src / "clip.npz", actions=actions)
    summary = run_import("teco", src, tmp_path / "out")
    assert len(summary.imported) == 1
    store = EpisodeStore(tmp_path / "out")
    ep = store.read_episode(store.episodes[0], ["obs", "action_id"])
    assert ep["obs"].shape == (12, 64, 64, 3)
    assert np.abs(ep["obs"][:, 32, 32, 0].astype(int) - (20 + 10 * np.arange(12))).max() <= 3
    assert np.array_equal(ep["action_id"], actions[1:])


def test_resize_frames_paths():
    frames = np.random.default_rng(0).integers(0, 255, (2, 128, 128, 3), dtype=np.uint8)
    assert resize_frames(frames, 48).shape == (2, 48, 48, 3)  # not an integer factor: Pillow box filter
    assert resize_frames(frames, 128) is not None and np.array_equal(resize_frames(frames, 128), frames)
    assert np.array_equal(resize_frames(gray_video(3, 128), 64), gray_video(3, 64))


@pytest.mark.parametrize("files, message", [
    ({"a.npz": dict(video=np.zeros((5, 16, 16, 3), np.uint8), actions=np.zeros(4, np.int64))}, "4 actions for 5 frames"),
    ({"a.npz": dict(video=np.zeros((5, 16, 16, 3), np.uint8), actions=np.array([0, 1, 2, 7, 1]))}, "actions[3] = 7"),
    ({"a.npz": dict(video=np.zeros((5, 16, 16), np.uint8), actions=np.zeros(5, np.int64))}, "video must be uint8"),
    ({"a.npz": dict(actions=np.zeros(5, np.int64))}, "no 'video' key and no a.mp4"),
    ({"a.npz": dict(video=np.zeros((5, 16, 16, 3), np.uint8))}, "missing key 'actions'"),
    ({"a.mp4": None}, "no a.npz"),
])
def test_malformed_teco_inputs(tmp_path, files, message):
    for name, arrays in files.items():
        if arrays is None:
            iio.imwrite(tmp_path / name, gray_video(4, 16), fps=20)
        else:
            np.savez(tmp_path / name, **arrays)
    with pytest.raises(SchemaError) as info:
        run_import("teco", tmp_path, tmp_path / "out")
    assert "a.npz" in str(info.value) or "a.mp4" in str(info.value)
    assert message in str(info.value)
