"""The reward loop: dream walks of an agent, labelled by the real maze, teach the reward head (with a spatial part)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import agents.reward_loop as loop
from agents.approach_probe import Start, find_starts
from rad_env.checkpoint import load_world_model
from rad_env.data import EpisodeStore
from rad_env.model import RADConfig, WorldModel

MICRO = dict(dim=32, depth=1, heads=2, mlp_ratio=2.0, memory_slots=2, memory_dim=16, noise_features=16)


@pytest.fixture(scope="module")
def target_walk(tmp_path_factory) -> Path:
    """One real target-seeking walk of 60 steps (seed 4 collects its first reward at step 11): short enough that
    an untrained agent's 4-step walks from 3 random frames of it earn nothing (the approach probe's 150-step walk
    does not give that)."""
    from collect.record import main as record

    out = tmp_path_factory.mktemp("loop") / "target"
    assert record(["--env", "memory-maze-9x9", "--episodes", "1", "--steps", "60", "--policy", "target",
                   "--seed", "4", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def agent_zip(tmp_path_factory, untrained_agent) -> str:
    """An untrained PPO agent with the Memory Maze action count."""
    return str(untrained_agent(tmp_path_factory.mktemp("loop_agent") / "agent.zip", 6))


def test_walk_labels_mark_the_real_reward_and_drop_what_follows_it() -> None:
    features = np.arange(3 * 4, dtype=np.float16).reshape(3, 4, 1)  # walk w, step k: value 4 w + k - 1
    feats, rewards = loop.label_walks(features, np.array([0, 2, 4]))
    assert feats[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11]  # walk 1 stops at its real reward (step 2)
    assert rewards.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1]


def test_a_grown_grid_head_starts_as_a_zero_correction(dream_files) -> None:
    """A model given a spatial reward head dreams and pays exactly as before until the head is trained; its
    features carry the token grid after what the pooled head reads."""
    base, _ = load_world_model(dream_files["checkpoint"])
    grown = loop.with_grid_head(base, 3)
    assert grown is not base and loop.with_grid_head(grown, 5) is grown and loop.with_grid_head(base, 0) is base
    cfg = base.config
    assert grown.dit.feature_dim == base.dit.feature_dim + cfg.tokens_per_frame * cfg.dim
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    outs = []
    for model in (base, grown):
        gens = [torch.Generator().manual_seed(i) for i in range(2)]
        state = model.observe(frames, torch.tensor([6, 6]), model.init_state(2), generators=gens)
        outs.append(model.imagine(torch.tensor([1, 2]), state, steps=2, generators=gens))
    assert torch.equal(outs[0].frames, outs[1].frames)
    assert torch.allclose(outs[0].reward, outs[1].reward) and torch.allclose(outs[0].terminated_prob,
                                                                             outs[1].terminated_prob)
    assert outs[1].features.shape == (2, grown.dit.feature_dim)
    assert torch.allclose(outs[1].features[:, :base.dit.feature_dim], outs[0].features)


def test_the_grid_head_learns_where_a_token_is_which_the_pooled_head_cannot() -> None:
    """Frames whose tokens are the same set in another order have the same pooled features: only the spatial
    head can pay one arrangement (a ball ahead) and not the other (the same colours elsewhere)."""
    torch.manual_seed(0)
    accuracy = {}
    for channels in (0, 4):
        model = WorldModel(RADConfig.preset("tiny", **MICRO, reward_grid_channels=channels)).eval()
        n, d = model.config.tokens_per_frame, model.config.dim
        grids = torch.randn(256, n, d)
        shuffled = grids[:, torch.randperm(n)]
        pooled = lambda g: torch.cat([g.mean(1), torch.zeros(len(g), model.dit.pooled_feature_dim - d)], 1)  # noqa: E731
        feats = torch.cat([pooled(grids), pooled(shuffled)])
        if channels:
            feats = torch.cat([feats, torch.cat([grids, shuffled]).flatten(1)], 1)
        rewards = torch.cat([torch.ones(256), torch.zeros(256)])
        loop.train_heads(model, feats.numpy(), rewards.numpy(), steps=300, batch_size=64, lr=3e-3,
                         weight_decay=0.0, seed=0)
        with torch.no_grad():
            expected, _ = model.predict_outcome(feats)
        accuracy[channels] = float(((expected >= 0.5) == (rewards > 0)).float().mean())
    assert accuracy[4] > 0.95 and accuracy[0] <= 0.55, accuracy


def test_real_replays_label_the_walks_in_worker_processes(target_walk: Path) -> None:
    """The recorded actions from 3 steps before each real reward: the real maze pays at step 3, whichever process
    replays the walk; other actions from an unrelated frame pay nothing."""
    store = EpisodeStore(target_walk)
    starts = find_starts(store, 3, context=2, per_episode=2, max_starts=2)
    assert starts, "the walk collected no reward"
    actions = np.stack([store.read(store.episodes[0], "action_id")[s.t:s.t + 5] for s in starts])
    quiet = Start(0, 1)
    first = loop.replay_in_real_maze(str(target_walk), [*starts, quiet], np.concatenate([actions, [[3] * 5]]),
                                     workers=2, seed=0)
    assert first.tolist() == [3] * len(starts) + [0]


def test_cli_trains_the_heads_on_real_labels_and_writes_a_dream_checkpoint(target_walk: Path, agent_zip: str,
                                                                            dream_files, tmp_path: Path,
                                                                            monkeypatch, capsys) -> None:
    """The whole turn with the real replay stubbed to pay the first walk at step 2: the saved model has the
    spatial head, pays that walk in its (cached) features, is loaded by the dream env, and only its heads
    changed. Without any real reward it is a one-line error and writes nothing."""
    from rad_env.envs.factory import make_dream_core

    args = ["--agent", agent_zip, "--data", str(target_walk), "--checkpoint", dream_files["checkpoint"],
            "--starts", "3", "--steps", "4", "--grid-channels", "2", "--head-steps", "200", "--lr", "3e-3",
            "--threads", "1"]
    assert loop.main([*args, "--out", str(tmp_path / "none")]) == 2  # an untrained agent's 4 steps pay nothing
    err = capsys.readouterr().err
    assert "the real maze paid none of the 3 walks" in err and "Traceback" not in err
    assert not (tmp_path / "none").exists()

    monkeypatch.setattr(loop, "replay_in_real_maze", lambda data, starts, actions, workers, seed:
                        np.array([2] + [0] * (len(starts) - 1)))
    summary = loop.cli([*args, "--out", str(tmp_path / "loop")])
    assert summary["walks"] == 3 and summary["rewarded frames"] == 1 and summary["training frames"] == 2 + 4 + 4
    assert summary["after (in sample)"]["real pays too"] == 1
    model, ckpt = load_world_model(tmp_path / "loop" / "model.pt")
    assert model.config.reward_grid_channels == 2 and ckpt["extra"]["reward_loop"]["walks"] == 3
    base, _ = load_world_model(dream_files["checkpoint"])
    after = model.state_dict()
    changed = {k for k, v in base.state_dict().items() if not torch.equal(v, after[k])}
    assert changed and all(k.startswith("head.") for k in changed)
    assert json.loads((tmp_path / "loop" / "loop.json").read_text())["config"]["starts"] == 3
    core = make_dream_core(str(tmp_path / "loop" / "model.pt"), dream_files["context"], 2, device="cpu")
    frames, rewards, _ = core.step([1, 2])
    assert frames.shape == (2, 64, 64, 3) and core.features.shape == (2, model.dit.feature_dim)
    assert loop.main([*args, "--out", str(tmp_path / "loop")]) == 2  # never overwrites a model
    assert "already holds a model.pt" in capsys.readouterr().err
