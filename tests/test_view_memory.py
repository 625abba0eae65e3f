"""benchmarks/view_memory.py: odometry from the actions, retrieval by pose, the CLI's one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks import view_memory

NUM_IDS = 7  # Memory Maze's 6 actions and the null action


def walk(actions: np.ndarray, refused: np.ndarray, turn: float = 0.25, step: float = 0.2) -> dict[str, np.ndarray]:
    """Poses of one walk where a left turn (2) adds ``turn`` radians, a step forward (1) moves ``step`` cells
    unless ``refused``, and nothing else moves."""
    pos, heading = [np.zeros(2)], [0.0]
    for a, r in zip(actions, refused):
        h = heading[-1]
        d = step if a == 1 and not r else 0.0
        pos.append(pos[-1] + d * np.array([np.cos(h), np.sin(h)]))
        heading.append(h + (turn if a == 2 else 0.0))
    heading = np.array(heading)
    return {"action_id": actions[None], "agent_pos": np.array(pos)[None],
            "agent_dir": np.stack([np.cos(heading), np.sin(heading)], -1)[None]}


def test_odometry_is_fit_and_dead_reckoned_from_the_actions() -> None:
    rng = np.random.default_rng(0)
    actions = rng.choice([0, 1, 2], size=300)
    refused = (actions == 1) & (rng.random(300) < 0.2)
    data = walk(actions, refused)
    turns, steps = view_memory.fit_odometry(data, NUM_IDS)
    keys = view_memory.pair_keys(actions[None], NUM_IDS)[0]
    assert np.allclose(turns[keys[actions == 2]], 0.25) and np.allclose(steps[keys[actions == 1]], 0.2)
    true = np.concatenate([data["agent_pos"], view_memory.headings(data["agent_dir"])[..., None]], -1)
    known = view_memory.dead_reckon(data, turns, steps, NUM_IDS, refusals_known=True)
    assert np.allclose(known[..., :2], true[..., :2], atol=1e-6)
    assert np.allclose(view_memory.wrap(known[..., 2] - true[..., 2]), 0, atol=1e-6)
    blind = view_memory.dead_reckon(data, turns, steps, NUM_IDS, refusals_known=False)
    assert np.linalg.norm(blind[0, -1, :2] - true[0, -1, :2]) > 0.5  # refused steps counted as made: it drifts


def test_retrieval_takes_the_nearest_pose_within_the_limits() -> None:
    poses = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, np.radians(20)], [3.0, 0.0, 0.0],
                      [0.12, 0.0, np.radians(2)]])
    candidates = np.arange(4)
    assert view_memory.retrieve(poses, 4, candidates, radius=0.25, heading=15) == 1
    assert view_memory.retrieve(poses, 4, candidates[[0, 2, 3]], radius=0.25, heading=15) == 0
    assert view_memory.retrieve(poses, 4, candidates[[2, 3]], radius=0.25, heading=15) is None


def test_episodes_without_poses_are_one_line(random_episodes, tmp_path: Path, capsys) -> None:
    data = random_episodes(tmp_path / "noise.h5", [8])
    argv = ["--quick", "--checkpoint", "rad_env/assets/memory_maze_tiny.pt", "--train", str(data), "--test", str(data)]
    assert view_memory.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("view_memory:") and "agent_pos" in err and err.count("\n") == 1
