"""The RAD authors' Minecraft format (NNNNNN.mp4 + NNNNNN.npz, 4- or 8-column actions) end to end, on
samples written here in that layout: import, train a few steps, dream in RAD-Minecraft-v0."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest

from collect.frames import square_frames
from collect.record import main as record_main
from rad_env.data import MINECRAFT_WALK, EpisodeStore, walk_action_ids, walk_action_vector

STEPS = 12
LEFT, CENTRE, RIGHT = (200, 40, 40), (40, 200, 40), (40, 40, 200)


def minecraft_frames(frames: int) -> np.ndarray:
    """640x360 frames: red left edge, blue right edge (both outside the centred 360x360 square), a green
    centre whose brightness rises with t (survives mp4 coding)."""
    video = np.zeros((frames, 360, 640, 3), np.uint8)
    video[:, :, :140] = LEFT
    video[:, :, 500:] = RIGHT
    video[:, :, 140:500] = CENTRE
    video[:, 100:260, 240:400, 1] = (60 + 10 * np.arange(frames))[:, None, None]
    return video


def walker_actions(steps: int, columns: int, seed: int) -> np.ndarray:
    """(T+1, columns) float32 like the collector: row 0 zeros, [forward, back, jump, turn] (+ x, y, z, yaw)."""
    rng = np.random.default_rng(seed)
    actions = np.zeros((steps + 1, columns), np.float32)
    actions[1:, :4] = np.array([walk_action_vector(i) for i in rng.integers(0, 18, steps)], np.float32)
    if columns == 8:
        actions[1:, 4] = np.cumsum(rng.normal(size=steps))  # x
        actions[1:, 5] = 64.0  # y
        actions[1:, 6] = np.cumsum(rng.normal(size=steps))  # z
        actions[1:, 7] = np.cumsum(20.0 * actions[1:, 3])  # yaw
    return actions


def write_episode(folder: Path, name: str, actions: np.ndarray, frames: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # OpenCV's mp4v is MPEG-4 part 2 ("mpeg4" in ffmpeg); macro_block_size=1 keeps 640x360 exactly
    iio.imwrite(folder / f"{name}.mp4", minecraft_frames(frames or len(actions)), fps=20, codec="mpeg4",
                macro_block_size=1)
    np.savez_compressed(folder / f"{name}.npz", actions=actions)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[int, tuple[Path, list[np.ndarray]]]:
    """Per action width, a worker folder with two episodes (as the collector lays them out)."""
    root = tmp_path_factory.mktemp("rad_minecraft")
    result = {}
    for columns in (4, 8):
        src = root / f"mc{columns}" / "0"
        actions = [walker_actions(STEPS + e, columns, seed=10 * columns + e) for e in range(2)]
        for e, a in enumerate(actions):
            write_episode(src, f"{e:06d}", a)
        result[columns] = (src.parent, actions)
    return result


@pytest.mark.parametrize("columns", [4, 8])
def test_import_both_action_widths(samples, tmp_path, columns, capsys) -> None:
    src, actions = samples[columns]
    out = tmp_path / "out"
    assert record_main(["import", "rad-minecraft", str(src), "--out", str(out), "--no-progress"]) == 0
    assert "imported 2 episode(s)" in capsys.readouterr().out
    store = EpisodeStore(out)
    assert (store.meta.source, store.meta.action_set, store.meta.num_actions, tuple(store.meta.frame_shape)) == \
        ("rad-minecraft", "minecraft-walk", 18, (64, 64, 3))
    for ref, a in zip(store.episodes, actions):
        steps = len(a) - 1
        ep = store.read_episode(ref, ["obs", "action_id", "action", "reward", "terminated", "truncated"])
        assert ep["obs"].shape == (steps + 1, 64, 64, 3) and ref.length == steps  # T+1 frames, T steps
        assert np.array_equal(ep["action_id"], walk_action_ids(a[1:, :4]))  # row t led to frame t
        assert np.array_equal(ep["action"], a[1:, :4]) and ep["action"].dtype == np.float32
        assert (ep["reward"] == 0).all() and not ep["terminated"].any() and ep["truncated"][-1]
        # centre crop: the red/blue edges are cut off, the green centre is kept
        obs = ep["obs"].astype(int)
        assert np.abs(obs[:, 32, 1] - CENTRE).max() < 12 and np.abs(obs[:, 32, 62] - CENTRE).max() < 12
        assert obs[-1, 32, 32, 1] - obs[0, 32, 32, 1] > 5 * steps  # frame t's brightness: order kept
        group = store.group(ref)
        if columns == 8:
            for i, name in enumerate(("x", "y", "z", "yaw")):
                values = group[name][()]
                assert values.shape == (steps + 1,) and np.isnan(values[0])  # frame 0: not recorded
                assert np.allclose(values[1:], a[1:, 4 + i])
        else:
            assert not {"x", "y", "z", "yaw"} & set(group)


def test_letterbox_and_frame_size(samples, tmp_path) -> None:
    src, actions = samples[4]
    out = tmp_path / "out"
    assert record_main(["import", "rad-minecraft", str(src), "--out", str(out), "--square", "letterbox",
                        "--frame-size", "32", "--no-progress"]) == 0
    obs = EpisodeStore(out).read_episode(EpisodeStore(out).episodes[0], ["obs"])["obs"].astype(int)
    assert obs.shape[1:] == (32, 32, 3)
    assert obs[:, :2].max() < 8 and obs[:, -2:].max() < 8  # black bars above and below
    assert np.abs(obs[:, 16, 1] - LEFT).max() < 16 and np.abs(obs[:, 16, 30] - RIGHT).max() < 16  # whole width


def test_square_frames_rules() -> None:
    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    assert np.array_equal(square_frames(frames, "crop"), frames[:, :, 1:5])
    boxed = square_frames(frames, "letterbox")
    assert boxed.shape == (2, 6, 6, 3) and np.array_equal(boxed[:, 1:5], frames) and not boxed[:, [0, 5]].any()
    with pytest.raises(ValueError, match="square rule"):
        square_frames(frames, "stretch")


def test_walk_action_ids_cover_every_combination() -> None:
    ids = np.arange(MINECRAFT_WALK.num_actions)
    vectors = np.array([walk_action_vector(i) for i in ids])
    assert np.array_equal(walk_action_ids(vectors), ids) and len({tuple(v) for v in vectors}) == 18
    assert MINECRAFT_WALK.names[0] == "noop" and MINECRAFT_WALK.names[walk_action_ids([[1, 0, 1, -1]])[0]] == \
        "forward+jump+left_20"
    assert walk_action_ids([[1, 1, 0, 0]])[0] == 0  # forward and back cancel
    with pytest.raises(ValueError, match=r"row 1 = \[0.0, 0.0, 0.0, 2.0\]"):
        walk_action_ids([[0, 0, 0, 0], [0, 0, 0, 2]])


@pytest.mark.parametrize("break_it, message", [
    (lambda d: np.savez(d / "000000.npz", actions=np.zeros((STEPS + 1, 5), np.float32)), "(T+1, 4) or (T+1, 8)"),
    (lambda d: np.savez(d / "000000.npz", actions=np.zeros((STEPS + 3, 4), np.float32)), "action rows for"),
    (lambda d: np.savez(d / "000000.npz", acts=np.zeros((STEPS + 1, 4))), "missing key 'actions'"),
    (lambda d: np.savez(d / "000000.npz", actions=np.eye(STEPS + 1, 4, -3, dtype=np.float32) * 3), "actions row 3"),
    (lambda d: (d / "000000.mp4").unlink(), "no 000000.mp4"),
    (lambda d: (d / "000000.mp4").write_bytes(b"not a video"), "cannot decode video"),
])
def test_bad_inputs_name_the_file(tmp_path, capsys, break_it, message) -> None:
    src = tmp_path / "src"
    write_episode(src, "000000", walker_actions(STEPS, 4, seed=0))
    write_episode(src, "000001", walker_actions(STEPS, 4, seed=1))
    break_it(src)
    assert record_main(["import", "rad-minecraft", str(src), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "000000" in err and message in err, err
    # --skip-bad imports the good episode and lists the bad one (exit status 1)
    assert record_main(["import", "rad-minecraft", str(src), "--out", str(tmp_path / "skip"), "--skip-bad",
                        "--no-progress"]) == 1
    assert len(EpisodeStore(tmp_path / "skip")) == 1 and "PROBLEM" in capsys.readouterr().out


def test_resume_imports_only_new_episodes(tmp_path, capsys) -> None:
    src = tmp_path / "src"
    write_episode(src, "000000", walker_actions(STEPS, 8, seed=0))
    out = tmp_path / "out"
    assert record_main(["import", "rad-minecraft", str(src), "--out", str(out), "--no-progress"]) == 0
    write_episode(src, "000001", walker_actions(STEPS, 8, seed=1))
    assert record_main(["import", "rad-minecraft", str(src), "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert record_main(["import", "rad-minecraft", str(src), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "(1 already imported)" in capsys.readouterr().out and len(EpisodeStore(out)) == 2


def test_minecraft_dream_from_imported_data(samples, tmp_path) -> None:
    """Import -> train a few steps -> RAD-Minecraft-v0 (18 walker actions) steps and renders."""
    from rad_env.train import cli as train_cli

    src, _ = samples[8]
    data = tmp_path / "data"
    assert record_main(["import", "rad-minecraft", str(src), "--out", str(data), "--frame-size", "16",
                        "--no-progress"]) == 0
    summary = train_cli(["--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2",
                         "--held-out", "0", "--no-tensorboard", "--warmup", "1",
                         "--model", "dim=32", "depth=1", "heads=2", "memory_slots=2", "memory_dim=16", "window=2",
                         "seq_len=6"])
    env = gym.make("RAD-Minecraft-v0", checkpoint=summary["checkpoint"], context=str(data), render_mode="rgb_array")
    try:
        assert env.action_space.n == 18
        obs, _ = env.reset(seed=0)
        assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8
        for action in (walk_action_ids([[1, 0, 1, -1]])[0], 17, 0):
            obs, reward, terminated, truncated, _ = env.step(int(action))
            assert obs.shape == (16, 16, 3) and isinstance(reward, float)
        assert np.array_equal(env.render(), obs)
    finally:
        env.close()

    # the evaluation splits Minecraft frames beyond the window into revisits and new places from x/z/yaw
    from rad_env.evaluate import EvalConfig, evaluate

    src = tmp_path / "revisits"
    actions = walker_actions(STEPS, 8, seed=3)
    actions[1:, 4:] = (0.5, 64.0, 0.5, 0.0)  # standing in one place, facing one way: every frame revisits
    actions[8:, 4] = 40.5 + 4 * np.arange(STEPS - 7)  # ... then a new place every step
    write_episode(src, "000000", actions)
    held_out = tmp_path / "held_out"
    assert record_main(["import", "rad-minecraft", str(src), "--out", str(held_out), "--frame-size", "16",
                        "--no-progress"]) == 0
    result = evaluate(EvalConfig(checkpoint=summary["checkpoint"], data=str(held_out), context=2, horizon=10,
                                 denoiser=False, probes=False, threads=1))
    rows = {r["frames"]: r for r in result["rollout"]}
    # dreamed frames h=1..10 are frames 2..11; beyond the window (h >= 2): frames 3..11; 3..7 revisit
    assert rows["beyond window, revisit"]["n"] == 5 and rows["beyond window, new place"]["n"] == 4
