"""Agents in the dream (agents/): PPO training/evaluation, baselines, the headless player and the demo,
on a tiny randomly initialised checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import rad_env  # noqa: F401 - registers the env ids
from agents import play, train_ppo, train_real
from agents.common import RandomAgent, TargetSeekerAgent, WallTurnAgent
from rad_env import demo

SIZE = 64


@pytest.fixture(scope="module")
def files(dream_files) -> dict[str, str]:
    return dream_files


def dream_args(files) -> list[str]:
    return ["--checkpoint", files["checkpoint"], "--context", files["context"], "--device", "cpu"]


def video_frames(path: str | Path) -> int:
    return len(iio.imread(path))


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ppo")
    summary = train_ppo.cli([*dream_args(files), "--num-envs", "2", "--n-steps", "64", "--batch-size", "64",
                              "--n-epochs", "2", "--timesteps", "256", "--train-max-steps", "32",
                              "--eval-episodes", "2",
                              "--eval-max-steps", "10", "--eval-envs", "dream", "--out", str(out), "--verbose", "0"])
    return {"out": out, "summary": summary}


def test_ppo_trains_in_the_dream(trained) -> None:
    out, summary = trained["out"], trained["summary"]
    assert summary["train"]["timesteps"] == 256 and summary["train"]["env"] == "dream"
    assert summary["config"]["compile"] is True  # the default: the dream's frame pass compiled
    assert (out / "ppo_dream.zip").exists()
    with open(out / "train_returns.csv") as f:  # 2 envs x 128 steps in episodes of 32 steps
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {int(r["length"]) for r in rows} == {32}
    assert [int(r["timesteps"]) for r in rows] == sorted(int(r["timesteps"]) for r in rows)
    assert list((out / "tb").rglob("events.out.tfevents.*")), "no TensorBoard logs"
    (result,) = summary["eval"]
    assert result["policy"] == "ppo" and result["env"] == "dream" and result["episodes"] == 2
    assert result["lengths"] == [10, 10]  # the test model never terminates: cut at --eval-max-steps
    saved = json.loads((out / "eval.json").read_text())
    assert saved["eval"][0]["mean_length"] == 10
    assert summary["video"].endswith("episode_dream.mp4") and video_frames(summary["video"]) == 11


def test_saved_agent_loads_and_evaluates(trained, files, tmp_path) -> None:
    from stable_baselines3 import PPO

    agent = PPO.load(trained["out"] / "ppo_dream.zip", device="cpu")
    assert agent.observation_space.shape == (3, SIZE, SIZE)  # SB3 trains on channels-first images
    summary = train_ppo.cli([*dream_args(files), "--no-compile", "--load", str(trained["out"] / "ppo_dream.zip"),
                             "--timesteps", "0", "--num-envs", "2", "--eval-episodes", "3", "--eval-max-steps", "5",
                              "--eval-envs", "dream", "--no-video", "--out", str(tmp_path), "--deterministic"])
    assert "train" not in summary and summary["eval"][0]["episodes"] == 3
    assert summary["eval"][0]["lengths"] == [5, 5, 5]


def test_random_policy_baseline(files, tmp_path, capsys) -> None:
    summary = train_ppo.cli([*dream_args(files), "--no-compile", "--policy", "random", "--num-envs", "2",
                             "--eval-episodes", "2", "--eval-max-steps", "8", "--eval-envs", "dream",
                             "--out", str(tmp_path)])
    (result,) = summary["eval"]
    assert result["policy"] == "random" and result["lengths"] == [8, 8]
    printed = capsys.readouterr().out
    assert "return mean" in printed and "random" in printed and "cut to 8 steps" in printed
    agent = RandomAgent(6, seed=0)
    assert agent.predict(np.zeros((3, SIZE, SIZE, 3), np.uint8))[0].shape == (3,)
    assert 0 <= int(agent.predict(np.zeros((SIZE, SIZE, 3), np.uint8))[0]) < 6


def test_wall_turner_turns_a_few_steps_where_a_step_forward_left_the_view_as_it_was() -> None:
    rng = np.random.default_rng(0)

    def frames() -> np.ndarray:
        return rng.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)

    agent = WallTurnAgent(seed=0)
    obs = frames()
    assert agent.predict(obs, episode_start=np.ones(2, bool))[0].tolist() == [1, 1]
    wall = obs.copy()
    wall[1] = frames()[1]  # env 0's view stays: a wall; env 1 moved on
    first, _ = agent.predict(wall, episode_start=np.zeros(2, bool))
    assert first[0] in (2, 3) and first[1] == 1
    turns = [int(first[0])]
    while True:  # the turn goes on one way for 2-6 steps (views changing all along), then forward again
        action = int(agent.predict(frames(), episode_start=np.zeros(2, bool))[0][0])
        if action == 1:
            break
        turns.append(action)
    assert 2 <= len(turns) <= 6 and len(set(turns)) == 1
    same = frames()
    agent.predict(same, episode_start=np.zeros(2, bool))  # forward pressed
    assert agent.predict(same, episode_start=np.ones(2, bool))[0].tolist() == [1, 1]  # a new episode: no wall yet
    assert int(WallTurnAgent().predict(same[0])[0]) == 1  # a single observation


@pytest.mark.parametrize("policy", ["wallturn", "seeker"])
def test_scripted_walkers_are_policies_of_the_ppo_script(files, tmp_path, policy) -> None:
    summary = train_ppo.cli([*dream_args(files), "--no-compile", "--policy", policy, "--num-envs", "2",
                             "--eval-episodes", "2", "--eval-max-steps", "6", "--eval-envs", "dream", "--no-video",
                             "--out", str(tmp_path)])
    (result,) = summary["eval"]
    assert result["policy"] == policy and result["lengths"] == [6, 6]
    with pytest.raises(train_ppo.UserError, match=f"--load makes no sense with --policy {policy}"):
        train_ppo.parse_config(["--policy", policy, "--load", __file__]).validate()


def maze_view(target=(80, 137, 71)) -> np.ndarray:
    """A 64x64 Memory Maze-like view: sky above the horizon (row 32), floor below, the target's colour as the
    2-pixel border."""
    view = np.zeros((64, 64, 3), np.uint8)
    view[:32] = (70, 100, 140)
    view[32:] = (40, 50, 55)
    view[:2], view[-2:], view[:, :2], view[:, -2:] = target, target, target, target
    return view


def test_target_seeker_steers_for_a_ball_of_the_border_colour_not_for_a_wall_of_it() -> None:
    green, blue = (80, 137, 71), (60, 70, 200)
    left_ball, right_ball, ahead_ball, far_left_ball = (maze_view() for _ in range(4))
    left_ball[40:48, 14:22] = (90, 150, 80)  # a shaded green ball on the floor, left of the middle
    right_ball[40:48, 42:50] = green
    ahead_ball[40:48, 28:36] = green
    far_left_ball[40:48, 4:10] = green
    wall = maze_view()
    wall[12:52, 10:30] = green  # a wall of the target's colour: above the horizon too
    other = maze_view()
    other[40:48, 14:22] = blue  # a ball of another colour
    views = np.stack([left_ball, right_ball, ahead_ball, far_left_ball, wall, other])
    agent = TargetSeekerAgent(seed=0)
    assert [len(xs) > 0 for xs in agent.target_columns(views)] == [True, True, True, True, False, False]
    actions, _ = agent.predict(views, episode_start=np.ones(6, bool))
    forward, left, right, fwd_left, fwd_right = 1, 2, 3, 4, 5
    assert actions.tolist() == [fwd_left, fwd_right, forward, left, forward, forward]
    assert int(TargetSeekerAgent(seed=0).predict(right_ball)[0]) == fwd_right  # a single observation


@pytest.mark.parametrize("shaping", ["--wall-penalty", "--forward-bonus"])
def test_shaping_needs_a_dream_that_can_refuse_a_press(files, tmp_path, shaping) -> None:
    with pytest.raises(train_ppo.UserError, match="no collision gate"):
        train_ppo.cli([*dream_args(files), "--no-compile", shaping, "0.1", "--num-envs", "2",
                       "--timesteps", "64", "--eval-episodes", "0", "--no-video", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_real_memory_maze_evaluation(trained, files, tmp_path) -> None:
    summary = train_ppo.cli([*dream_args(files), "--no-compile", "--load", str(trained["out"] / "ppo_dream.zip"),
                             "--timesteps", "0", "--num-envs", "1", "--eval-episodes", "1",
                              "--eval-max-steps", "20", "--eval-envs", "dream,real", "--out", str(tmp_path)])
    dream, real = summary["eval"]
    assert real["env"] == "real" and real["episodes"] == 1 and real["lengths"] == [20]
    assert dream["lengths"] == [20]
    assert summary["video"].endswith("episode_real_vs_dream.mp4") and video_frames(summary["video"]) == 21


def test_saved_agent_evaluates_in_the_real_maze_alone(trained, files, tmp_path) -> None:
    """Only the real maze: no dream is built (this used to fail building a dream training env from nothing)."""
    summary = train_ppo.cli([*dream_args(files), "--load", str(trained["out"] / "ppo_dream.zip"), "--timesteps", "0",
                             "--eval-episodes", "1", "--eval-max-steps", "5", "--eval-envs", "real", "--no-video",
                             "--out", str(tmp_path)])
    (real,) = summary["eval"]
    assert real["env"] == "real" and real["lengths"] == [5]


def test_train_in_real_memory_maze(tmp_path) -> None:
    summary = train_real.cli(["--num-envs", "1", "--n-steps", "16", "--batch-size", "16", "--n-epochs", "1",
                               "--timesteps", "16", "--train-max-steps", "8", "--eval-episodes", "0",
                               "--no-video", "--no-tensorboard", "--out", str(tmp_path), "--device", "cpu",
                               "--verbose", "0"])
    assert summary["train"]["env"] == "real" and (tmp_path / "ppo_real.zip").exists()


def test_bad_arguments(files, tmp_path, capsys) -> None:
    """User mistakes: exit status 2 and one line `prog: error: ...` on stderr, no traceback, no folder left."""
    out = tmp_path / "never"
    cases = [
        ([*dream_args(files), "--eval-envs", "moon"], "unknown env(s) ['moon']"),
        ([*dream_args(files), "--timesteps", "0"], "--timesteps 0 needs --load"),
        ([*dream_args(files), "--start-turns", "-1"], "--start-turns must be >= 0"),
        (["--checkpoint", str(tmp_path / "none.pt"), "--context", files["context"], "--timesteps", "64"],
         "checkpoint file not found"),
        ([*dream_args(files), "--load", str(tmp_path / "agent.zip"), "--timesteps", "0"], "no saved agent"),
        (["--checkpoint", files["context"], "--context", files["context"], "--timesteps", "64"],
         "not a readable torch checkpoint"),  # an HDF5 file passed as a checkpoint
    ]
    for argv, expected in cases:
        assert train_ppo.main([*argv, "--out", str(out)]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("python -m agents.train_ppo: error: ") and expected in err, err
        assert "Traceback" not in err and "weights_only" not in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists(), "a failed run left its output folder behind"
    with pytest.raises(SystemExit) as exc:  # argparse's own usage errors exit 2 too
        train_ppo.main(["--policy", "nope"])
    assert exc.value.code == 2


def test_ppo_config_flags_document_every_field() -> None:
    text = train_ppo.build_parser().format_help()
    for name in train_ppo.PPOConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text, name
    assert "--no-video" in text and "(default: 256)" in text and "PPO minibatch size" in text
    cfg = train_ppo.parse_config(["--num-envs", "3", "--no-tensorboard", "--policy", "random"])
    assert (cfg.num_envs, cfg.tensorboard, cfg.policy, cfg.batch_size) == (3, False, "random", 256)


# ------------------------------------------------------------------------------------------ player


def test_parse_actions() -> None:
    assert play.parse_actions("1,1, 2 3\n# comment\n3x4 5") == [1, 1, 2, 3, 4, 4, 4, 5]
    with pytest.raises(ValueError):
        play.parse_actions("1,forward")
    assert play.keys_to_action({"up", "left"}, 6) == 4 and play.keys_to_action({"right"}, 6) == 3
    assert play.keys_to_action(set(), 6) == 0 and play.keys_to_action({"up", "right"}, 4) == 1


def test_play_headless_writes_video(files, tmp_path) -> None:
    out = tmp_path / "play.mp4"
    stats = play.cli([*dream_args(files), "--actions", "1,1,2,3,4x1,5", "--out", str(out), "--headless"])
    assert stats["steps"] == 9 and stats["frames"] == 10
    assert Path(stats["video"]) == out and video_frames(out) == 10
    actions_file = tmp_path / "actions.txt"
    actions_file.write_text("1 1 1\n2\n")
    stats = play.cli([*dream_args(files), "--actions-file", str(actions_file), "--out", str(tmp_path / "b.mp4")])
    assert video_frames(stats["video"]) == 5
    with pytest.raises(SystemExit):
        play.main([*dream_args(files), "--actions", "1,7", "--out", str(tmp_path / "c.mp4")])


def test_play_without_display_uses_scripted_actions(files, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    stats = play.cli([*dream_args(files), "--steps", "6", "--out", str(tmp_path / "p.mp4")])
    assert stats["frames"] == 7 and video_frames(stats["video"]) == 7


def test_play_default_video_goes_to_ignored_outputs_folder(files, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert play.main([*dream_args(files), "--actions", "1,2", "--headless"]) == 0
    assert (tmp_path / "outputs" / "play.mp4").exists() and not (tmp_path / "play.mp4").exists()
    assert "outputs/play.mp4" in capsys.readouterr().out
    repo = Path(__file__).resolve().parents[1]
    assert "/outputs/" in (repo / ".gitignore").read_text().split()


def test_play_errors_are_one_line_and_leave_no_folder(files, tmp_path, capsys) -> None:
    out = tmp_path / "new" / "play.mp4"
    assert play.main(["--checkpoint", str(tmp_path / "none.pt"), "--context", files["context"],
                      "--headless", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m agents.play: error: ") and "not found" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------ demo


def test_demo_runs(files, tmp_path, capsys) -> None:
    out = tmp_path / "dream_demo.mp4"
    result = demo.cli([*dream_args(files), "--steps", "20", "--out", str(out)])
    assert result["frames"] == 21 and video_frames(out) == 21
    printed = capsys.readouterr().out
    assert "steps/s" in printed and "total reward" in printed
    assert demo.main([*dream_args(files), "--steps", "2", "--out", str(out)]) == 0


def test_demo_without_shipped_checkpoint_says_how_to_train(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("rad_env.defaults.default_assets_dir", lambda: tmp_path)
    assert demo.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m rad_env.demo: error: the shipped default checkpoint")
    assert "rad_env.train" in err and "Traceback" not in err


def test_demo_user_errors_are_one_line(files, tmp_path, capsys) -> None:
    out = tmp_path / "sub" / "demo.mp4"
    for argv, expected in (
        (["--checkpoint", str(tmp_path / "none.pt"), "--context", files["context"]], "checkpoint file not found"),
        (["--checkpoint", files["checkpoint"], "--context", str(tmp_path / "nodata")], "no episode data at"),
        (["--checkpoint", files["context"], "--context", files["context"]], "not a readable torch checkpoint"),
    ):
        assert demo.main([*argv, "--device", "cpu", "--steps", "2", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m rad_env.demo: error: ") and expected in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not (tmp_path / "sub").exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for bad_out, expected in ((tmp_path, "is a folder"), (a_file / "demo.mp4", "not a folder")):
        assert demo.main([*dream_args(files), "--steps", "2", "--out", str(bad_out)]) == 2
        err = capsys.readouterr().err
        assert expected in err and str(bad_out if bad_out == tmp_path else a_file) in err, err
    assert not list(tmp_path.glob("*.gif")) and not (tmp_path.parent / f"{tmp_path.name}.gif").exists()


def test_console_script_exits_0_and_prints_to_stdout(files, tmp_path) -> None:
    """The installed console scripts call ``sys.exit(main())``: main must return an exit status."""
    import subprocess
    import sys

    out = tmp_path / "v.mp4"
    code = (f"import sys; from agents.play import main; "
            f"sys.exit(main({[*dream_args(files), '--actions', '1,2', '--out', str(out)]!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 steps" in done.stdout and "{" not in done.stderr
