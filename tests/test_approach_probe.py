"""The approach probe: starts a few steps before real rewards, the same states in the real maze and the dream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.approach_probe import Start, find_starts, main, random_starts, run_dream, run_real
from rad_env.data import EpisodeStore

BEFORE = 4


@pytest.fixture(scope="module")
def target_walk(tmp_path_factory) -> Path:
    """One real target-seeking walk of 150 steps (seed 4 collects its first rewards within them)."""
    from collect.record import main as record

    out = tmp_path_factory.mktemp("approach") / "target"
    assert record(["--env", "memory-maze-9x9", "--episodes", "1", "--steps", "150", "--policy", "target",
                   "--seed", "4", "--out", str(out), "--no-progress"]) == 0
    return out


def test_starts_precede_real_rewards_with_room_for_the_context(target_walk: Path) -> None:
    store = EpisodeStore(target_walk)
    reward = store.read(store.episodes[0], "reward")
    starts = find_starts(store, BEFORE, context=3, per_episode=10, max_starts=10)
    assert starts, "the walk collected no reward"
    for s in starts:
        assert s.t >= 2 and reward[s.t + BEFORE - 1] > 0  # the reward arrives with frame t + BEFORE
    assert len(find_starts(store, BEFORE, 3, per_episode=1, max_starts=10)) == 1
    assert find_starts(store, BEFORE, context=1000, per_episode=10, max_starts=10) == []


def test_random_starts_are_seeded_distinct_and_leave_room_for_context_and_an_action(random_episodes,
                                                                                   tmp_path: Path) -> None:
    store = EpisodeStore(random_episodes(tmp_path / "walks.h5", [12, 5, 30]))
    starts = random_starts(store, context=4, count=20, seed=3)
    assert len(starts) == 20 and len(set(starts)) == 20
    assert starts == sorted(starts, key=lambda s: (s.episode, s.t)) == random_starts(store, 4, 20, seed=3)
    lengths = [ref.length for ref in store.episodes]
    assert all(3 <= s.t < lengths[s.episode] for s in starts)  # 3 frames before, an action after
    assert starts != random_starts(store, 4, 20, seed=4)
    assert len(random_starts(store, context=4, count=1000, seed=0)) == (12 - 3) + (5 - 3) + (30 - 3)  # all there are
    assert random_starts(store, context=40, count=5, seed=0) == []


def test_the_recorded_walk_reaches_its_reward_in_exactly_before_steps_in_the_real_maze(target_walk: Path) -> None:
    """The replay puts the real env in the recorded state (it checks the frame), and the walk's own actions
    then pay the reward at the step it was recorded; a random walk from there is scored on the same clock."""
    store = EpisodeStore(target_walk)
    starts = find_starts(store, BEFORE, context=2, per_episode=2, max_starts=2)
    walks = run_real("recorded", None, store, starts, steps=8, seed=0)
    assert walks.first.tolist() == [BEFORE] * len(starts)
    first = store.read(store.episodes[0], "obs", starts[0].t, starts[0].t + 9)
    assert np.array_equal(walks.frames[0], first)  # the recorded frames, start included
    random = run_real("random", None, store, starts, steps=8, seed=0)
    assert ((random.first >= 0) & (random.first <= 8)).all() and random.frames.shape == walks.frames.shape
    again = run_real("random", None, store, starts, steps=8, seed=0, actions=random.actions)
    assert np.array_equal(again.frames, random.frames)  # a policy's actions replay its walk exactly


def test_replay_steps_through_an_episode_once_for_states_in_order(target_walk: Path) -> None:
    """States of one episode in order cost one replay of it: each go_to restores the last state and steps on
    (the probe's own steps in between do not count), and every state is checked against its recorded frame."""
    from rad_env.evaluation.probes import MemoryMazeReplay

    store = EpisodeStore(target_walk)
    ref = store.episodes[0]
    seed, actions = int(store.group(ref).attrs["seed"]), store.read(ref, "action_id")
    replay = MemoryMazeReplay()
    try:
        for t in (20, 60, 100):  # through the walk's first reward (seed 4: step 11), so the target changes
            replay.go_to(seed, actions[:t], expect=store.read(ref, "obs", t, t + 1)[0])
            for a in (1, 1, 3, 1):  # a probe walks off
                replay.env.step(a)
        assert replay.steps_replayed == 100
        replay.go_to(seed, actions[:50], expect=store.read(ref, "obs", 50, 51)[0])  # earlier: from the start
        assert replay.steps_replayed == 150
    finally:
        replay.close()


class PayingCore:
    """A stand-in dream: env ``i`` pays a reward at every step from step ``i + 1`` on."""

    num_actions, frame_shape = 6, (64, 64, 3)

    def __init__(self, n: int, window: int) -> None:
        from rad_env.envs.context import StartFrames

        self.starts = StartFrames(np.zeros((1, window, 64, 64, 3), np.uint8))
        self.n, self.k, self.started = n, 0, {}

    def start_env(self, i, frames, prev_actions, seed):
        self.started[i] = (len(frames), seed)
        return frames[-1]

    def step(self, actions):
        assert len(actions) == self.n
        self.k += 1
        rewards = (np.arange(self.n) + 1 <= self.k).astype(np.float32)
        self.features = torch.full((self.n, 2), float(self.k))  # what the heads read: the step, here
        return np.zeros((self.n, *self.frame_shape), np.uint8), rewards, np.zeros(self.n, bool)


def test_dream_counts_the_first_reward_of_each_start(target_walk: Path) -> None:
    store = EpisodeStore(target_walk)
    starts = [Start(0, 10), Start(0, 20), Start(0, 30)]
    core = PayingCore(3, window=4)
    walks = run_dream("recorded", None, core, store, starts, steps=2, seed=7)
    assert walks.first.tolist() == [1, 2, 0]  # later rewards do not move the first; none within 2 steps: 0
    assert walks.features.shape == (3, 2, 2) and walks.features[:, :, 0].tolist() == [[1, 2]] * 3  # step by step
    assert core.started == {0: (4, 7), 1: (4, 8), 2: (4, 9)}  # each start its real window and its own noise


def test_cli_runs_both_envs_and_writes_the_table(target_walk: Path, dream_files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "probe"
    assert main(["--data", str(target_walk), "--checkpoint", dream_files["checkpoint"], "--policies", "random,recorded",
                 "--before", str(BEFORE), "--steps", "6", "--max-starts", "1", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads((out / "approach.json").read_text())["results"]
    assert set(result["random"]) == {"real", "dream", "dream actions in the real maze"}
    assert set(result["recorded"]) == {"dream"} and (out / "approach_random.png").is_file()
    assert result["random"]["real"]["starts"] == 1
    printed = capsys.readouterr().out
    assert "by construction" in printed and "replayed in the real maze" in printed


def test_cli_starts_anywhere_and_checks_the_dreams_rewards_in_the_real_maze(target_walk: Path, dream_files,
                                                                            tmp_path: Path, capsys) -> None:
    out = tmp_path / "anywhere"
    assert main(["--data", str(target_walk), "--checkpoint", dream_files["checkpoint"], "--at", "anywhere",
                 "--policies", "random", "--envs", "dream", "--steps", "3", "--max-starts", "2", "--threads", "1",
                 "--out", str(out)]) == 0
    saved = json.loads((out / "approach.json").read_text())
    assert len(saved["starts"]) == 2 and saved["config"]["at"] == "anywhere"
    assert set(saved["results"]["random"]) == {"dream", "dream actions in the real maze"}
    assert "at random frames" in capsys.readouterr().out


def test_user_errors_are_one_line(target_walk: Path, random_episodes, dream_files, tmp_path: Path, capsys) -> None:
    no_rewards = random_episodes(tmp_path / "quiet.h5", [20])
    cases = [(["--data", str(target_walk)], "--agent"),  # ppo is among the default policies
             (["--data", str(tmp_path / "missing"), "--policies", "random"], "no episodes"),
             (["--data", str(target_walk), "--policies", "random", "--envs", "moon"], "--envs"),
             (["--data", str(no_rewards), "--policies", "random", "--envs", "real"], "no reward event"),
             (["--data", str(random_episodes(tmp_path / "short.h5", [1])), "--policies", "random", "--envs", "dream",
               "--checkpoint", dream_files["checkpoint"], "--at", "anywhere"], "no episode has more than")]
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2, err


def test_dream_rewards_are_checked_against_the_same_actions_in_the_real_maze() -> None:
    from agents.approach_probe import Walks, dream_rewards_in_the_real_maze, first_rewards

    assert first_rewards(np.array([[0, 1, 1], [0, 0, 0], [1, 0, 0]])).tolist() == [2, 0, 1]
    frames = np.zeros((4, 4, 8, 8, 3), np.uint8)
    dream = Walks(np.array([3, 5, 0, 2]), np.zeros((4, 3), np.int64), frames)
    real = Walks(np.array([4, 0, 6, 9]), np.zeros((4, 3), np.int64), frames)
    check = dream_rewards_in_the_real_maze(dream.first, real.first, tolerance=2)
    assert check == {"dream paid": 3, "real pays too": 1, "real pays, dream not": 1, "precision": 1 / 3}
