"""The evaluation's reward replay: real reward events replayed into a model, and quiet stretches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rad_env.data import Episode, EpisodeStore, FileMeta, write_episodes
from rad_env.evaluation.rewards import find_cases, reward_replay
from rad_env.model.world_model import Imagined

PAY_STEPS = (20, 60, 100)  # steps whose action (1) earns a reward; it arrives with frame step + 1


@pytest.fixture(scope="module")
def sparse_rewards(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(2):
        actions = rng.choice([0, 2, 3], 120)
        actions[list(PAY_STEPS)] = 1
        obs = rng.integers(0, 255, (121, 8, 8, 3), dtype=np.uint8)
        episodes.append(Episode(obs=obs, action_id=actions, action=actions, reward=(actions == 1).astype(np.float32),
                                terminated=np.zeros(120, bool), truncated=np.eye(1, 120, 119, dtype=bool)[0]))
    path = tmp_path_factory.mktemp("rewards") / "eps.h5"
    write_episodes(path, episodes, FileMeta("synthetic", "memory-maze", 6, (8, 8, 3)))
    return path


class PayingModel:
    """Pays +1 ``delay`` frames after a frame reached by action 1 (delay 0: exactly like the real env)."""

    device = torch.device("cpu")

    def __init__(self, delay: int = 0, always: bool = False) -> None:
        self.delay, self.always = delay, always

    def init_state(self, b, device=None):
        return [[] for _ in range(b)]

    def observe(self, frames, prev_actions, state, generators=None):
        return [s + [int(a)] for s, a in zip(state, prev_actions)]

    def imagine(self, prev_actions, state, steps=None, generators=None, sampler=None):
        state = [s + [int(a)] for s, a in zip(state, prev_actions)]
        pays = [self.always or (len(s) > self.delay and s[-1 - self.delay] == 1) for s in state]
        b = len(state)
        return Imagined(torch.zeros(b, 8, 8, 3, dtype=torch.uint8), torch.tensor(pays, dtype=torch.float32),
                        torch.zeros(b), state, torch.as_tensor(prev_actions))


def test_cases_have_room_and_quiet_stretches_are_quiet(sparse_rewards: Path) -> None:
    events, quiet = find_cases(EpisodeStore(sparse_rewards), [0, 1], context=4, lead=6, tolerance=2)
    assert [(c.episode, c.centre, c.sign) for c in events] == [(e, s + 1, 1) for e in (0, 1) for s in PAY_STEPS]
    assert [(c.episode, c.centre) for c in quiet] == [(e, r) for e in (0, 1) for r in (10, 110)]  # 60 holds a reward


def test_reward_replay_counts_paid_events_and_false_rewards(sparse_rewards: Path) -> None:
    store = EpisodeStore(sparse_rewards)
    exact = reward_replay(PayingModel(), store, [0, 1], context=4)
    assert (exact["events"], exact["paid"], exact["quiet stretches"], exact["false rewards"]) == (6, 6, 4, 0)
    assert reward_replay(PayingModel(delay=2), store, [0, 1], context=4)["paid fraction"] == 1.0  # within 2 frames
    assert reward_replay(PayingModel(delay=3), store, [0, 1], context=4)["paid fraction"] == 0.0  # too late
    always = reward_replay(PayingModel(always=True), store, [0, 1], context=4)
    assert always["paid fraction"] == 1.0 and always["false fraction"] == 1.0


def test_no_reward_no_replay(sparse_rewards: Path, tmp_path: Path) -> None:
    store = EpisodeStore(sparse_rewards)
    assert reward_replay(PayingModel(), store, [0], context=100) is None  # no event with 100 frames before it
