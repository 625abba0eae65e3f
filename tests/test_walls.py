"""The wall probe (rad_env.evaluation.walls): forward presses the real maze refused, dreamed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rad_env.cli import UserError
from rad_env.data import Episode, EpisodeStore, FileMeta, write_episodes
from rad_env.evaluate import EvalConfig, evaluate, format_report
from rad_env.evaluation.walls import ForwardRun, find_forward_runs, run_scores, wall_table

BLOCKED_AT, MOVING_AT, RUN = 10, 30, 5  # forward presses from these steps: refused by a wall / moving on


def walk(seed: int, blocked: bool = True, size: int = 64) -> Episode:
    """40 steps of turns and noops (in place), with RUN forward presses from MOVING_AT (0.25 cells each,
    new frames) and, if ``blocked``, from BLOCKED_AT (the agent does not move; the frame stays the same)."""
    rng = np.random.default_rng(seed)
    actions = rng.choice([0, 2, 3], 40)
    obs = rng.integers(0, 256, (41, size, size, 3), dtype=np.uint8)
    step = np.zeros((40, 2))
    actions[MOVING_AT:MOVING_AT + RUN] = 1
    step[MOVING_AT:MOVING_AT + RUN, 0] = 0.25
    if blocked:
        actions[BLOCKED_AT:BLOCKED_AT + RUN] = 1
        step[BLOCKED_AT:BLOCKED_AT + RUN, 0] = 0.005
        obs[BLOCKED_AT + 1:BLOCKED_AT + RUN + 1] = obs[BLOCKED_AT]
    position = np.concatenate([[[1.5, 1.5]], 1.5 + np.cumsum(step, axis=0)]).astype(np.float32)
    return Episode(obs=obs, action_id=actions, action=actions, reward=np.zeros(40, np.float32),
                   terminated=np.zeros(40, bool), truncated=np.zeros(40, bool), extras={"agent_pos": position},
                   seed=seed)


@pytest.fixture(scope="module")
def walls(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("walls")
    meta = FileMeta("synthetic", "memory-maze", 6, (64, 64, 3))
    no_position = walk(3)
    no_position.extras = {}
    return {"bumps": write_episodes(root / "bumps.h5", [walk(0), walk(1)], meta),
            "none": write_episodes(root / "none.h5", [walk(2, blocked=False)], meta),
            "no position": write_episodes(root / "no_position.h5", [no_position], meta)}


def test_runs_are_found_where_forward_was_refused_and_where_it_moved(walls) -> None:
    store = EpisodeStore(walls["bumps"])
    assert find_forward_runs(store, 4, 4, 10, blocked=True) == [ForwardRun(0, BLOCKED_AT, True),
                                                                ForwardRun(1, BLOCKED_AT, True)]
    assert find_forward_runs(store, 4, 4, 10, blocked=False) == [ForwardRun(0, MOVING_AT, False),
                                                                 ForwardRun(1, MOVING_AT, False)]
    assert find_forward_runs(store, 4, RUN + 1, 10, blocked=True) == []  # runs are only RUN presses long
    assert find_forward_runs(store, BLOCKED_AT + 3, 4, 10, blocked=True) == []  # too little context before it
    assert find_forward_runs(store, 4, 2, 1, blocked=True) == [ForwardRun(0, BLOCKED_AT, True)]  # capped


def test_scores_a_dream_that_stops_against_one_that_walks_on() -> None:
    rng = np.random.default_rng(0)
    last = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    real = np.repeat(last[:, None], 4, axis=1)  # the wall: the view stays
    stops = run_scores(real.copy(), real, last)
    assert stops["dream psnr"] == [100.0] * 4 and stops["copy-last psnr"] == [100.0] * 4
    assert stops["dream change"] == [0.0] * 4 and stops["real change"] == [0.0] * 4
    walks_on = run_scores(rng.integers(0, 256, real.shape, dtype=np.uint8), real, last)
    assert max(walks_on["dream psnr"]) < 15 and min(walks_on["dream change"]) > 50
    rows = wall_table(walks_on, stops)
    assert [r["forward presses"] for r in rows] == ["blocked (into a wall)", "moving (control)"]
    assert rows[1]["dream change"] == 0.0 and rows[0]["dream change"] > 50


def test_evaluate_reports_the_wall_probe(walls, dream_files, tmp_path) -> None:
    base = dict(checkpoint=dream_files["checkpoint"], data=str(walls["bumps"]), context=4, horizon=2, retrieval=False,
                denoiser=False, probes=False, rewards=False, wall_presses=4)
    result = evaluate(EvalConfig(**base, walls=str(walls["bumps"]), out=str(tmp_path / "eval")))
    w = result["walls"]
    assert w["runs"] == 2 and len(w["per press"]["blocked"]["dream psnr"]) == 4 and "moving" in w["per press"]
    assert w["per press"]["blocked"]["real change"] == [0.0] * 4
    assert "Walking into walls" in format_report(result) and (tmp_path / "eval" / "walls.png").exists()
    skipped = evaluate(EvalConfig(**base, walls=str(walls["none"])))
    assert "walls" not in skipped and "--bump" in skipped["walls_skipped"]
    assert "agent_pos" in evaluate(EvalConfig(**base, walls=str(walls["no position"])))["walls_skipped"]
    with pytest.raises(UserError, match="no such episodes"):
        evaluate(EvalConfig(**base, walls=str(tmp_path / "missing")))


def test_evaluate_reports_the_gate_on_dreamed_frames(walls, tmp_path) -> None:
    """With a collision gate the wall probe also judges the presses of short dreams on the dreamed frames."""
    import torch

    from rad_env.checkpoint import save_checkpoint
    from rad_env.model import RADConfig, WorldModel

    model = WorldModel(RADConfig(image_size=64, patch_size=16, dim=32, depth=1, heads=2, memory_slots=2,
                                 memory_dim=16, window=2, seq_len=4, refused_actions=[0, 0, 2, 3, 2, 3])).eval()
    torch.nn.init.zeros_(model.collision.net[-1].weight)
    torch.nn.init.constant_(model.collision.net[-1].bias, 10.0)  # refuses every press it can
    path = save_checkpoint(tmp_path / "gate.pt", model, train_config={}, step=0,
                           data={"source": "synthetic", "action_set": "memory-maze", "num_actions": 6,
                                 "frame_shape": [64, 64, 3]})
    base = dict(checkpoint=str(path), data=str(walls["bumps"]), context=2, horizon=2, retrieval=False,
                denoiser=False, probes=False, rewards=False, wall_presses=4, walls=str(walls["bumps"]))
    dreamed = evaluate(EvalConfig(**base, wall_dreams=4))
    assert "The gate in a dream" in format_report(dreamed)
    rows = dreamed["walls"]["gate on dreamed frames"]
    assert [r["presses"] for r in rows] == ["1", "2-4", "5-8", "9-16"]
    assert sum(r["refused"] for r in rows) > 0 and all(r["free passed"] == 0.0 for r in rows if r["free"])
    assert all(r["refused caught"] == 1.0 for r in rows if r["refused"])
    result = evaluate(EvalConfig(**base, wall_dreams=0))
    assert "gate on dreamed frames" not in result["walls"] and "collision gate" in result["walls"]
    short = walk(5)  # 16 frames: the blocked run fits, a 2 + 16-frame dream does not
    short.obs, short.extras = short.obs[:16], {"agent_pos": short.extras["agent_pos"][:16]}
    for name in ("action_id", "action", "reward", "terminated", "truncated"):
        setattr(short, name, getattr(short, name)[:15])
    path = write_episodes(tmp_path / "short.h5", [short], FileMeta("synthetic", "memory-maze", 6, (64, 64, 3)))
    skipped = evaluate(EvalConfig(**{**base, "walls": str(path)}, wall_dreams=4))
    assert "18 frames" in skipped["walls"]["gate on dreamed frames skipped"]
    assert "gate on dreamed frames skipped" in format_report(skipped)
