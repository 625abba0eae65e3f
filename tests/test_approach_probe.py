"""The approach probe: starts a few steps before real rewards, the same states in the real maze and the dream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.approach_probe import Start, find_starts, main, run_dream, run_real
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


def test_the_recorded_walk_reaches_its_reward_in_exactly_before_steps_in_the_real_maze(target_walk: Path) -> None:
    """The replay puts the real env in the recorded state (it checks the frame), and the walk's own actions
    then pay the reward at the step it was recorded; a random walk from there is scored on the same clock."""
    store = EpisodeStore(target_walk)
    starts = find_starts(store, BEFORE, context=2, per_episode=2, max_starts=2)
    assert run_real("recorded", None, store, starts, steps=8, seed=0).tolist() == [BEFORE] * len(starts)
    random = run_real("random", None, store, starts, steps=8, seed=0)
    assert ((random >= 0) & (random <= 8)).all()


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
        return np.zeros((self.n, *self.frame_shape), np.uint8), rewards, np.zeros(self.n, bool)


def test_dream_counts_the_first_reward_of_each_start(target_walk: Path) -> None:
    store = EpisodeStore(target_walk)
    starts = [Start(0, 10), Start(0, 20), Start(0, 30)]
    core = PayingCore(3, window=4)
    first = run_dream("recorded", None, core, store, starts, steps=2, seed=7)
    assert first.tolist() == [1, 2, 0]  # later rewards do not move the first; none within 2 steps: 0
    assert core.started == {0: (4, 7), 1: (4, 8), 2: (4, 9)}  # each start its real window and its own noise


def test_cli_runs_both_envs_and_writes_the_table(target_walk: Path, dream_files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "probe"
    assert main(["--data", str(target_walk), "--checkpoint", dream_files["checkpoint"], "--policies", "random,recorded",
                 "--before", str(BEFORE), "--steps", "6", "--max-starts", "1", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads((out / "approach.json").read_text())["results"]
    assert set(result["random"]) == {"real", "dream"} and set(result["recorded"]) == {"dream"}
    assert result["random"]["real"]["starts"] == 1
    assert "by construction" in capsys.readouterr().out


def test_user_errors_are_one_line(target_walk: Path, random_episodes, tmp_path: Path, capsys) -> None:
    no_rewards = random_episodes(tmp_path / "quiet.h5", [20])
    cases = [(["--data", str(target_walk)], "--agent"),  # ppo is among the default policies
             (["--data", str(tmp_path / "missing"), "--policies", "random"], "no episodes"),
             (["--data", str(target_walk), "--policies", "random", "--envs", "moon"], "--envs"),
             (["--data", str(no_rewards), "--policies", "random", "--envs", "real"], "no reward event")]
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
