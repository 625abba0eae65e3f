"""Importing Memory Maze offline-dataset NPZ files (written by the test itself)."""

from __future__ import annotations

import numpy as np
import pytest

from collect.importers import INDEX_FILE, run_import
from collect.record import main
from rad_env.data import EpisodeStore, SchemaError


def write_mm_npz(path, steps: int = 12, maze: int = 9, seed: int = 0) -> dict[str, np.ndarray]:
    """A trajectory in the offline dataset's layout: T+1 rows, previous action/reward per row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 6, steps)
    action = np.zeros((steps + 1, 6), np.float32)
    action[np.arange(1, steps + 1), ids] = 1  # row t+1 holds the action taken at step t; row 0 is a dummy
    reward = np.zeros(steps + 1, np.float32)
    reward[1:] = rng.integers(0, 2, steps)
    layout = (rng.random((maze, maze)) > 0.3).astype(np.uint8)
    data = {
        "image": rng.integers(0, 255, (steps + 1, 64, 64, 3), dtype=np.uint8),
        "action": action, "reward": reward,
        "maze_layout": np.repeat(layout[None], steps + 1, axis=0),
        "agent_pos": rng.random((steps + 1, 2)) * maze, "agent_dir": rng.random((steps + 1, 2)),
        "targets_pos": rng.random((steps + 1, 3, 2)), "targets_vec": rng.random((steps + 1, 3, 2)),
        "target_pos": rng.random((steps + 1, 2)), "target_vec": rng.random((steps + 1, 2)),
        "target_color": rng.random((steps + 1, 3)),
    }
    np.savez_compressed(path, **data)
    return {**data, "ids": ids, "layout": layout}


def test_import_memory_maze_npz(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    written = [write_mm_npz(src / "a.npz", seed=1), write_mm_npz(src / "sub" / "b.npz", steps=7, seed=2)]
    out = tmp_path / "out"
    assert main(["import", "memory-maze", str(src), "--out", str(out), "--no-progress"]) == 0
    assert "imported 2 episode(s), 19 steps" in capsys.readouterr().out
    store = EpisodeStore(out)
    assert (store.meta.source, store.meta.action_set, store.meta.num_actions) == ("memory-maze-9x9", "memory-maze", 6)
    assert [ref.length for ref in store.episodes] == [12, 7]
    for ref, data in zip(store.episodes, written):
        ep = store.read_episode(ref, ["obs", "action_id", "action", "reward", "terminated", "truncated",
                                      "agent_pos", "agent_dir", "target_color", "targets_pos", "maze_layout"])
        steps = ref.length
        assert np.array_equal(ep["obs"], data["image"])
        assert np.array_equal(ep["action_id"], data["ids"]) and np.array_equal(ep["action"], data["ids"])
        assert np.array_equal(ep["reward"], data["reward"][1:])
        assert not ep["terminated"].any() and ep["truncated"][-1] and not ep["truncated"][:-1].any()
        assert ep["agent_pos"].shape == (steps + 1, 2) and ep["agent_pos"].dtype == np.float32
        assert np.allclose(ep["agent_pos"], data["agent_pos"]) and ep["targets_pos"].shape == (steps + 1, 3, 2)
        assert np.array_equal(ep["maze_layout"], data["layout"])
    lines = (out / INDEX_FILE).read_text().splitlines()
    assert [line.split("\t")[1].endswith(name) for line, name in zip(lines, ("a.npz", "b.npz"))] == [True, True]


def test_import_resume_and_existing_output(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    write_mm_npz(src / "a.npz", seed=1)
    assert run_import("memory-maze", src, out).imported
    write_mm_npz(src / "b.npz", seed=2)
    assert main(["import", "memory-maze", str(src), "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    (out / "ep000001.h5.tmp").write_bytes(b"partial")
    summary = run_import("memory-maze", src, out, resume=True)
    assert [p.rsplit("/", 1)[-1] for _, p in summary.imported] == ["b.npz"] and summary.skipped_done == 1
    assert not list(out.glob("*.tmp")) and len(EpisodeStore(out)) == 2
    assert run_import("memory-maze", src, out, resume=True).imported == []


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.pop("image"), "missing keys ['image']"),
    (lambda d: d.update(action=d["action"][:-1]), "action shape"),
    (lambda d: d["action"].__setitem__((3, slice(None)), 0), "action[3]"),
    (lambda d: d.update(reward=d["reward"][:, None]), "reward shape"),
    (lambda d: d.update(agent_pos=d["agent_pos"][:4]), "agent_pos shape"),
])
def test_malformed_memory_maze_npz(tmp_path, damage, message):
    data = write_mm_npz(tmp_path / "ok.npz")
    arrays = {k: v for k, v in data.items() if k not in ("ids", "layout")}
    damage(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SchemaError) as info:
        run_import("memory-maze", tmp_path / "bad.npz", tmp_path / "out")
    assert "bad.npz" in str(info.value) and message in str(info.value)


def test_skip_bad_and_mixed_sizes(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    write_mm_npz(src / "a.npz")
    (src / "b.npz").write_bytes(b"not a zip file")
    out = tmp_path / "out"
    assert main(["import", "memory-maze", str(src), "--out", str(out), "--skip-bad", "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert "imported 1 episode(s)" in printed and "PROBLEM" in printed and "b.npz" in printed
    write_mm_npz(src / "c.npz", maze=11)
    (src / "b.npz").unlink()
    with pytest.raises(SchemaError, match=r"c\.npz.*memory-maze-11x11"):
        run_import("memory-maze", src, out, resume=True)
