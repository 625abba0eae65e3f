"""Recording real Memory Maze episodes through the CLI: schema, resume after a kill, worker shards."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from collect.record import episode_seeds, main, split_episodes
from rad_env.data import EpisodeStore

STEPS = 20


@pytest.fixture(scope="module")
def collect_mm_dataset(tmp_path_factory):
    """Two short real Memory Maze 9x9 episodes recorded once for this module via main(argv)."""
    out = tmp_path_factory.mktemp("collect") / "mm9"
    status = main(["--env", "memory-maze-9x9", "--episodes", "2", "--steps", str(STEPS), "--policy", "explore",
                   "--seed", "7", "--out", str(out)])
    assert status == 0
    return out


def test_recorded_episodes_read_back(collect_mm_dataset):
    store = EpisodeStore(collect_mm_dataset)
    assert len(store) == 2 and store.problems == []
    assert sorted(p.file.relative_to(collect_mm_dataset).as_posix() for p in store.episodes) == \
        ["w0/ep000000.h5", "w0/ep000001.h5"]
    meta = store.meta
    assert (meta.source, meta.action_set, meta.num_actions, tuple(meta.frame_shape), meta.seed) == \
        ("memory-maze-9x9", "memory-maze", 6, (64, 64, 3), 7)
    assert json.loads(meta.action_space)["n"] == 6
    keys = ["obs", "action_id", "action", "reward", "terminated", "truncated",
            "agent_pos", "agent_dir", "target_color", "target_pos", "maze_layout"]
    layouts = []
    for ref in store.episodes:
        assert ref.length == STEPS
        ep = store.read_episode(ref, keys)
        assert ep["obs"].shape == (STEPS + 1, 64, 64, 3) and ep["obs"].dtype == np.uint8
        assert ep["action_id"].shape == (STEPS,) and ep["action_id"].dtype == np.int64
        assert np.array_equal(ep["action"], ep["action_id"]) and ep["action_id"].max() < 6
        assert ep["reward"].dtype == np.float32 and np.isfinite(ep["reward"]).all()
        assert ep["terminated"].dtype == bool and not ep["terminated"].any()
        # 20 < 1000 steps: cut by --steps, which ends the episode as a truncation (like MineRL's source)
        assert ep["truncated"].tolist() == [False] * (STEPS - 1) + [True]
        for key, width in (("agent_pos", (2,)), ("agent_dir", (2,)), ("target_color", (3,)), ("target_pos", (2,))):
            assert ep[key].shape == (STEPS + 1, *width) and ep[key].dtype == np.float32, key
        assert np.abs(ep["agent_pos"][-1] - ep["agent_pos"][0]).max() > 0.1  # the explorer moved
        assert np.allclose(np.linalg.norm(ep["agent_dir"], axis=1), 1, atol=1e-3)
        assert ep["maze_layout"].shape == (9, 9) and set(np.unique(ep["maze_layout"])) <= {0, 1}
        x, y = ep["agent_pos"].astype(int).T
        assert ep["maze_layout"][y, x].all()
        assert ep["obs"].std() > 5  # real rendered frames, not blank
        layouts.append(ep["maze_layout"])
        assert store.group(ref).attrs["seed"] == episode_seeds(7, 0, int(ref.file.stem[2:]))[0]
    assert not np.array_equal(layouts[0], layouts[1])  # a new maze per episode seed
    config = json.loads((collect_mm_dataset / "record.json").read_text())
    run = config["runs"][-1]
    assert run["episodes_recorded"] == 2 and run["steps"] == 2 * STEPS and run["problems"] == []
    assert run["bytes_per_1000_frames"] > 0 and run["steps_per_s"] > 0


def test_existing_output_needs_resume(collect_mm_dataset, capsys):
    status = main(["--env", "memory-maze-9x9", "--episodes", "2", "--steps", str(STEPS), "--policy", "explore",
                   "--seed", "7", "--out", str(collect_mm_dataset), "--no-progress"])
    assert status == 2
    assert "already holds recorded data" in capsys.readouterr().err


def test_resume_rejects_changed_settings(collect_mm_dataset, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(collect_mm_dataset, out)
    status = main(["--env", "memory-maze-9x9", "--episodes", "3", "--steps", str(STEPS), "--policy", "explore",
                   "--seed", "8", "--out", str(out), "--resume", "--no-progress"])
    assert status == 2
    assert "seed: 7 -> 8" in capsys.readouterr().err
    assert len(EpisodeStore(out)) == 2


def test_resume_after_kill_records_only_missing(collect_mm_dataset, tmp_path, capsys):
    out = tmp_path / "killed"
    shutil.copytree(collect_mm_dataset, out)
    original = EpisodeStore(collect_mm_dataset)
    second = original.read_episode(original.episodes[1], ["obs", "action_id", "agent_pos"])
    # Simulate a kill while episode 1 was being written, then ask for 3 episodes in total.
    (out / "w0" / "ep000001.h5").unlink()
    (out / "w0" / "ep000001.h5.tmp").write_bytes(b"half-written episode")
    assert "incomplete episode file" in EpisodeStore(out).problems[0]
    status = main(["--env", "memory-maze-9x9", "--episodes", "3", "--steps", str(STEPS), "--policy", "explore",
                   "--seed", "7", "--out", str(out), "--resume", "--no-progress"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "recorded 2 episode(s)" in printed and "removed partial episode" in printed
    assert not list(out.rglob("*.tmp"))
    store = EpisodeStore(out)
    assert len(store) == 3 and store.problems == []
    assert [ref.file.name for ref in store.episodes] == ["ep000000.h5", "ep000001.h5", "ep000002.h5"]
    again = store.read_episode(store.episodes[1], ["obs", "action_id", "agent_pos"])
    for key in again:  # seeds depend only on (--seed, worker, index): the lost episode comes back identical
        assert np.array_equal(again[key], second[key]), key
    # Nothing left to do: a second resume records nothing.
    assert main(["--env", "memory-maze-9x9", "--episodes", "3", "--steps", str(STEPS), "--policy", "explore",
                 "--seed", "7", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "recorded 0 episode(s)" in capsys.readouterr().out


def test_two_workers_write_two_shards(tmp_path, capsys):
    out = tmp_path / "shards"
    status = main(["--env", "memory-maze-9x9", "--episodes", "3", "--steps", "5", "--workers", "2",
                   "--seed", "1", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.h5")) == \
        ["w0/ep000000.h5", "w0/ep000001.h5", "w1/ep000000.h5"]
    store = EpisodeStore(out)
    assert len(store) == 3 and all(ref.length == 5 for ref in store.episodes)
    seeds = {int(store.group(ref).attrs["seed"]) for ref in store.episodes}
    assert len(seeds) == 3
    assert "2 worker(s)" in printed


def test_target_policy_collects_rewards(tmp_path, capsys):
    """--policy target walks to the current target: real Memory Maze rewards at a rate close to a human's
    (~26 per 1000 steps), where the explorer almost never touches one; each reward is a touched target."""
    out = tmp_path / "target"
    assert main(["--env", "memory-maze-9x9", "--episodes", "1", "--steps", "300", "--policy", "target",
                 "--seed", "4", "--out", str(out), "--no-progress"]) == 0
    store = EpisodeStore(out)
    ep = store.read_episode(store.episodes[0], ["reward", "agent_pos", "target_pos"])
    paid = np.nonzero(ep["reward"])[0]
    assert len(paid) >= 3, ep["reward"].sum()  # 300 steps; 18 per 1000 steps measured over 500 steps
    for t in paid:  # frame t + 1 follows the paying step: the agent stood at the target of frame t
        assert np.linalg.norm(ep["agent_pos"][t + 1] - ep["target_pos"][t]) < 0.8
        assert np.linalg.norm(ep["target_pos"][t + 1] - ep["target_pos"][t]) > 0.5  # the next target is elsewhere
    assert json.loads((out / "record.json").read_text())["settings"]["policy_kwargs"]["wander"] == 0.2


def test_split_and_seeds():
    assert split_episodes(5, 2) == [3, 2] and split_episodes(2, 3) == [1, 1, 0]
    assert episode_seeds(0, 0, 0) == episode_seeds(0, 0, 0)
    assert len({episode_seeds(0, w, i) for w in range(3) for i in range(3)}) == 9


def test_usage_errors(tmp_path, capsys):
    assert main(["--env", "memory-maze-9x9", "--episodes", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--episodes must be >= 1" in capsys.readouterr().err
    assert main(["--env", "minerl-navigate", "--episodes", "1", "--policy", "explore",
                 "--out", str(tmp_path / "y")]) == 2
    assert capsys.readouterr().err  # explore is Memory Maze only, or MineRL is missing: a clear message
    with pytest.raises(SystemExit):
        main(["--env", "nowhere", "--episodes", "1", "--out", str(tmp_path / "z")])


class _BrokenSource:
    """A source whose env cannot start (as a machine without a renderer)."""

    policies = ("random",)
    default_steps = 5

    def open(self):
        raise RuntimeError("no renderer on this machine")

    def close(self):
        pass


def test_failed_run_leaves_no_empty_output_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("collect.record.make_source", lambda *args, **kwargs: _BrokenSource())
    out = tmp_path / "new" / "mm9"
    assert main(["--env", "memory-maze-9x9", "--episodes", "1", "--out", str(out), "--no-progress"]) == 1
    assert "no renderer on this machine" in capsys.readouterr().out
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"  # a folder the user made is kept, without the run's leftovers
    mine.mkdir()
    assert main(["--env", "memory-maze-9x9", "--episodes", "1", "--out", str(mine), "--no-progress"]) == 1
    assert mine.is_dir() and not any(mine.iterdir())  # so the same command can run again


def test_agent_policy_records_a_trained_agents_actions(tmp_path, capsys, untrained_agent):
    """--policy agent --agent ZIP records the agent's sampled actions in the real maze, reproducibly per
    seed (the data that lets a world model learn where its agent goes); a missing or mismatched agent is a
    one-line error."""
    from collect.policies import AgentPolicy

    agent = untrained_agent(tmp_path / "agent.zip", 6)
    argv = ["--env", "memory-maze-9x9", "--episodes", "1", "--steps", "12", "--policy", "agent", "--agent",
            str(agent), "--seed", "3", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert main(argv + ["--out", str(tmp_path / "b")]) == 0
    first, second = (EpisodeStore(tmp_path / d) for d in ("a", "b"))
    actions = first.read(first.episodes[0], "action_id")
    assert np.array_equal(actions, second.read(second.episodes[0], "action_id"))
    policy = AgentPolicy(str(agent), 6)
    frames = first.read(first.episodes[0], "obs")
    policy.reset(seed=episode_seeds(3, 0, 0)[1])
    assert [policy(f) for f in frames[:-1]] == actions.tolist()  # the agent's own choice on each frame
    capsys.readouterr()
    assert main(argv[:-5] + ["--agent", str(tmp_path / "missing.zip"), "--out", str(tmp_path / "c")]) == 2
    assert "--agent" in capsys.readouterr().err
    four = untrained_agent(tmp_path / "four.zip", 4)
    assert main(argv[:-5] + ["--agent", str(four), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "Discrete(4)" in err and "Traceback" not in err and not (tmp_path / "d").exists()


def test_evaluate_probes_replay_recorded_episodes_in_the_real_maze(collect_mm_dataset, tmp_path):
    """The evaluation's real-env probes (action probe, loop closure, standing still) replay the recorded
    seeds and actions: each real continuation starts at exactly the recorded frame (a mismatch would skip
    the probes), and standing still keeps the real view where it was."""
    from rad_env.evaluate import EvalConfig, evaluate
    from rad_env.train import cli as train_cli

    out = tmp_path / "model"
    train_cli(["--data", str(collect_mm_dataset), "--out", str(out), "--steps", "1", "--batch-size", "2",
               "--held-out", "0.5", "--no-tensorboard", "--model", "dim=32", "depth=1", "heads=2", "memory_slots=2",
               "memory_dim=16", "window=2", "seq_len=6"])
    result = evaluate(EvalConfig(checkpoint=str(out / "model.pt"), data=str(collect_mm_dataset), episodes=2,
                                 context=2, horizon=4, probe_states=1, probe_steps=2, loop_turns=2, retrieval=False,
                                 denoiser=False, rewards=False))
    assert "probes_skipped" not in result, result.get("probes_skipped")
    states = result["loop_closure"]["cases"]
    assert states >= 1 and result["action_probe"]["cases"] == 3 * states
    still = result["standing_still"]
    # 4 noop steps: the real view stays (about where momentum left it; unrelated mazes score ~15 dB)
    assert still["cases"] == states and still["real psnr(last, first)"] > 20
    assert 0 < still["dream psnr(last, real last)"] <= 100
