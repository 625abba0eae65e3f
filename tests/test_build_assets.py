"""tools/build_default_assets.py: the shipped start segments (from episode starts or from anywhere)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rad_env.data import EpisodeStore
from rad_env.envs.context import StartFrames

TOOL = Path(__file__).resolve().parents[1] / "tools" / "build_default_assets.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("build_default_assets", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_start_segments_from_anywhere_are_the_recorded_frames(tmp_path, random_episodes) -> None:
    tool = load_tool()
    store = EpisodeStore(random_episodes(tmp_path / "data.h5", [30, 2, 40]))  # episode 1 is too short for 4 frames
    firsts = tool.start_segments(store, [0, 1, 2], 4, 2, anywhere=False)
    assert firsts == [(0, 0), (1, 0)]
    picks = tool.start_segments(store, [0, 1, 2], 4, 12, anywhere=True)
    assert picks == tool.start_segments(store, [0, 1, 2], 4, 12, anywhere=True)  # seeded
    assert len(picks) == 12 and {e for e, _ in picks} <= {0, 2}
    assert all(0 <= s <= store.episodes[e].num_frames - 4 for e, s in picks)
    assert len({s for _, s in picks}) > 1  # not all at the episode start
    starts = StartFrames.from_episodes(tool.export_start_frames(tmp_path / "data.h5", picks, 4,
                                                                tmp_path / "starts.h5"), 4, max_segments=100)
    assert len(starts) == 12
    exported = {starts.frames[i].tobytes() for i in range(12)}
    for e, s in picks:
        real = store.read_episode(store.episodes[e], ("obs",))["obs"][s:s + 4]
        assert real.tobytes() in exported


def test_segments_before_rewards_end_within_reach_of_a_real_reward(tmp_path) -> None:
    import numpy as np
    import pytest

    from rad_env.data import Episode, FileMeta, write_episodes

    tool = load_tool()
    rewards = {0: [2, 20], 1: []}  # reward[t] arrives with frame t + 1: frames 3 and 21 of episode 0
    episodes = []
    for e, paid in rewards.items():
        reward = np.zeros(30, np.float32)
        reward[paid] = 1
        actions = np.zeros(30, np.int64)
        episodes.append(Episode(obs=np.zeros((31, 8, 8, 3), np.uint8), action_id=actions, action=actions.astype(np.int32),
                                reward=reward, terminated=np.zeros(30, bool), truncated=np.zeros(30, bool), seed=e))
    path = write_episodes(tmp_path / "r.h5", episodes,
                          FileMeta(source="test", action_set="memory-maze", num_actions=6, frame_shape=(8, 8, 3)))
    store = EpisodeStore(path)
    picks = tool.segments_before_rewards(store, 4, 50, within=3)
    ends = {s + 3 for _, s in picks}
    assert {e for e, _ in picks} == {0}  # the episode without rewards gives none
    assert ends == {18, 19, 20}  # 1..3 frames before frame 21; frame 3 has no 4 frames of context 1..3 before it
    with pytest.raises(SystemExit, match="no reward"):
        tool.segments_before_rewards(store, 30, 5, within=3)


def test_model_only_leaves_the_start_frames_in_place(tmp_path, dream_files) -> None:
    tool = load_tool()
    out = tmp_path / "assets"
    out.mkdir()
    (out / "memory_maze_starts.h5").write_bytes(b"the starts shipped before")
    tool.main(["--checkpoint", dream_files["checkpoint"], "--data", dream_files["context"], "--out", str(out),
               "--model-only"])
    assert (out / "memory_maze_tiny.pt").stat().st_size > 0
    assert (out / "memory_maze_starts.h5").read_bytes() == b"the starts shipped before"
    tool.main(["--checkpoint", dream_files["checkpoint"], "--data", dream_files["context"], "--out", str(out)])
    assert (out / "memory_maze_starts.h5").read_bytes() != b"the starts shipped before"


def test_model_only_without_data_keeps_the_weights_and_the_training_seeds(tmp_path, dream_files) -> None:
    """An inference setting changed on a shipped model (``--set``) without its training data at hand."""
    import pytest
    import torch

    from rad_env.checkpoint import load_checkpoint

    tool = load_tool()
    first, second = tmp_path / "first", tmp_path / "second"
    tool.main(["--checkpoint", dream_files["checkpoint"], "--data", dream_files["context"], "--out", str(first),
               "--model-only"])
    tool.main(["--checkpoint", str(first / "memory_maze_tiny.pt"), "--out", str(second), "--model-only",
               "--set", "sampling_steps=5"])
    before, after = load_checkpoint(first / "memory_maze_tiny.pt"), load_checkpoint(second / "memory_maze_tiny.pt")
    assert before["model"].keys() == after["model"].keys()
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert after["data"]["seeds"] == before["data"]["seeds"] and after["model_config"]["sampling_steps"] == 5
    with pytest.raises(SystemExit):
        tool.main(["--checkpoint", str(first / "memory_maze_tiny.pt"), "--out", str(second)])


def test_starts_only_leaves_the_model_in_place(tmp_path, dream_files, capsys) -> None:
    """New start frames for the shipped model (the PPO starts of the embedded default), its file untouched."""
    tool = load_tool()
    out = tmp_path / "assets"
    out.mkdir()
    (out / "memory_maze_tiny.pt").write_bytes(b"the model shipped before")
    tool.main(["--checkpoint", dream_files["checkpoint"], "--data", dream_files["context"], "--out", str(out),
               "--starts-only", "--anywhere", "--segments", "3"])
    assert (out / "memory_maze_tiny.pt").read_bytes() == b"the model shipped before"
    assert len(EpisodeStore(out / "memory_maze_starts.h5")) == 3
    for argv, needle in [(["--starts-only", "--model-only"], "exclude each other"),
                         (["--starts-only"], "--starts-only needs --data")]:
        with pytest.raises(SystemExit):
            tool.main(["--checkpoint", dream_files["checkpoint"], "--out", str(out), *argv])
        assert needle in capsys.readouterr().err
