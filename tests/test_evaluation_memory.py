"""The memory-retrieval evaluation: revisits of the real prefix, the window-only ablation, identical noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rad_env.checkpoint import save_checkpoint
from rad_env.data import Episode, FileMeta, write_episodes
from rad_env.evaluate import EvalConfig, evaluate, format_report
from rad_env.evaluation.clips import Clips
from rad_env.evaluation.places import prefix_revisit_masks
from rad_env.evaluation.retrieval import (memory_retention, memory_retrieval, memoryless_frames, one_step_masks,
                                         one_step_predictions, one_step_retrieval, retrieval_dreams)
from rad_env.model import RADConfig, WorldModel
from rad_env.model.world_model import Imagined

EAST, WEST, NORTH = [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]


def maze_extras(cells: list[float], dirs: list[list[float]]) -> dict[str, np.ndarray]:
    """One clip's extras: agent in cell (c, 0) of each frame (NaN: unrecorded), facing dirs."""
    pos = np.array([[c + 0.5, 0.5] for c in cells])
    return {"agent_pos": pos[None], "agent_dir": np.array(dirs, np.float64)[None]}


def test_prefix_revisit_and_new_place_masks() -> None:
    # prefix: frames 0-3 in cells 0,1,2,3 facing east; then frames 4-10
    cells = [0, 1, 2, 3, 3, 0, 0, 5, 2, np.nan, 1]
    dirs = [EAST] * 5 + [EAST, WEST, EAST, [np.cos(0.6), np.sin(0.6)], EAST, NORTH]
    revisit, new = prefix_revisit_masks(maze_extras(cells, dirs), prefix=4, window=3)
    # revisits match prefix frames before the last `window` (here frame 0 only): 4: cell 3, seen at frame
    # 3 (inside the last 3): neither; 5: cell 0 east, seen at frame 0: revisit; 6: cell 0 facing west,
    # never seen so: new; 7: cell 5: new; 8: cell 2, 34 degrees off east (within 45), seen at frame 2
    # (inside the last 3): neither; 9: unknown: neither; 10: cell 1 facing north: new
    assert revisit.tolist() == [[False, True, False, False, False, False, False]]
    assert new.tolist() == [[False, False, True, True, False, False, True]]
    revisit, _ = prefix_revisit_masks(maze_extras(cells, dirs), prefix=4, window=1)
    assert revisit.tolist() == [[False, True, False, False, True, False, False]]  # frame 2 is now out of the last 1
    revisit, _ = prefix_revisit_masks(maze_extras(cells, dirs), prefix=4, window=4)
    assert not revisit.any()  # the ablation saw the whole prefix: nothing to remember
    unknown_prefix = maze_extras([np.nan, 1, 2, 3, 0], [EAST] * 5)
    revisit, new = prefix_revisit_masks(unknown_prefix, prefix=4, window=1)
    assert revisit.tolist() == [[False]] and new.tolist() == [[True]]  # an unrecorded frame is no place
    assert prefix_revisit_masks({"agent_pos": np.zeros((1, 5, 2))}, 4, 1) is None
    # Minecraft: 2x2-block cells, yaw within 30 degrees (wrapping at 360); NaN positions are unknown
    minecraft = {"x": np.array([[0.5, 4.5, 6.5, 1.5, 0.5, np.nan]]), "z": np.array([[0.5, 0.5, 0.5, 1.5, 0.5, 0.5]]),
                 "yaw": np.array([[170.0, 0.0, 0.0, -175.0, 120.0, 170.0]])}
    revisit, new = prefix_revisit_masks(minecraft, prefix=3, window=2)
    assert revisit.tolist() == [[True, False, False]] and new.tolist() == [[False, True, False]]


class RememberingModel:
    """Imagines, for each action, the last frame it saw reached by that action (grey if none): it
    remembers everything it observed, so it can only bring back places its state saw."""

    device = torch.device("cpu")

    def init_state(self, b, device=None):
        return [{} for _ in range(b)]

    def observe(self, frames, prev_actions, state, generators=None):
        return [{**s, int(a): f.clone()} for s, a, f in zip(state, prev_actions, frames)]

    def imagine(self, prev_actions, state, steps=None, generators=None, sampler=None):
        frames = torch.stack([s.get(int(a), torch.full((8, 8, 3), 128, dtype=torch.uint8))
                              for s, a in zip(state, prev_actions)])
        b = len(state)
        return Imagined(frames, torch.zeros(b), torch.zeros(b), self.observe(frames, prev_actions, state),
                        torch.as_tensor(prev_actions))


def test_the_ablation_measures_memory() -> None:
    """Actions lead to cells; each cell has its own picture. Dream A saw the early prefix, B only its end."""
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    cells = [0, 0, 1, 2, 3, 4, 3, 4] + [0, 1, 5, 5, 2, 3]  # prefix of 8, then 6 dreamed frames
    actions = [6] + cells[1:]  # the action that led to each frame is its cell (6: episode start)
    extras = {k: np.repeat(v, 2, 0) for k, v in maze_extras(cells, [EAST] * len(cells)).items()}
    clips = Clips(frames=np.stack([pictures[cells]] * 2), prev_actions=np.array([actions] * 2), episodes=[0, 1],
                  starts=[0, 0], env_seeds=[-1, -1], episode_actions=[np.array(actions[1:])] * 2, extras=extras)
    r = memory_retrieval(RememberingModel(), clips, prefix=8, window=2, mean_frame=pictures.mean(0).astype(np.uint8))
    assert r.revisit[0].tolist() == [True, True, False, False, True, True]
    assert r.new[0].tolist() == [False, False, True, True, False, False]
    # A recalls every revisit perfectly; B only cell 3 (observed in its window)
    assert r.scores.psnr["full prefix"][0].tolist()[:2] == [100.0, 100.0]
    summary = r.summary()
    assert summary["gain on revisits"] > 10 and summary["gain on new places"] == 0.0
    rows = {row["frames"]: row for row in summary["table"]}
    assert (rows["revisit"]["n"], rows["new place"]["n"], rows["all"]["n"]) == (8, 4, 12)
    assert rows["revisit"]["full prefix psnr"] == 100.0 > rows["revisit"]["window only psnr"]
    assert r.most_revisits(1) == [0]


def tiny_model(memory: str, depth: int, **kw) -> WorldModel:
    torch.manual_seed(0)
    cfg = RADConfig(image_size=16, patch_size=4, dim=32, depth=depth, heads=2, window=3, seq_len=8, memory=memory,
                    memory_slots=2, memory_dim=16, noise_features=16, sampling_steps=2, **kw)
    model = WorldModel(cfg).eval()
    with torch.no_grad():  # make the zero-initialised branches matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_without_memory_both_dreams_are_identical() -> None:
    """Identical noise: a memory-less model dreams the same after the whole prefix as after its last
    ``memoryless_frames`` frames, frame for frame; fewer frames (the bare window, with 2 layers) or a
    memory make them differ."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 12, 16, 16, 3), dtype=np.uint8)
    actions = rng.integers(0, 6, (2, 12))
    model = tiny_model("none", depth=2)
    k = memoryless_frames(model.config)
    assert k == 2 * (3 - 1) + 1
    full, last = retrieval_dreams(model, frames, actions, prefix=9, window=k, seed=3)
    assert full.frames.shape == (2, 3, 16, 16, 3)
    np.testing.assert_array_equal(full.frames, last.frames)
    np.testing.assert_array_equal(full.rewards, last.rewards)
    _, bare = retrieval_dreams(model, frames, actions, prefix=9, window=model.config.window, seed=3)
    assert not np.array_equal(full.frames, bare.frames)  # 2 layers reach further back than one window
    lstm = tiny_model("lstm", depth=2)
    full, last = retrieval_dreams(lstm, frames, actions, prefix=9, window=k, seed=3)
    assert not np.array_equal(full.frames, last.frames)  # the memory remembers the earlier prefix


def test_one_step_masks_count_every_earlier_frame() -> None:
    """One step ahead the full state has seen every earlier frame, the prefix and the predicted frames alike: a
    revisit matches a frame at least ``window`` earlier, a new place matches no earlier frame."""
    cells = [0, 1, 2, 3, 4, 0, 4, 5, 5, 1]
    revisit, new = one_step_masks(maze_extras(cells, [EAST] * len(cells)), prefix=4, window=2)
    # frame 4: cell 4 new; 5: cell 0 (frame 0): revisit; 6: cell 4 seen at frame 4, 2 frames earlier: revisit;
    # 7: cell 5 new; 8: cell 5 seen 1 frame earlier: neither; 9: cell 1 (frame 1): revisit
    assert revisit.tolist() == [[False, True, True, False, False, True]]
    assert new.tolist() == [[True, False, False, True, False, False]]
    assert one_step_masks({"agent_pos": np.zeros((1, 5, 2))}, 4, 1) is None


def test_one_step_predictions_differ_only_by_memory() -> None:
    """Identical noise: a memory-less model predicts each frame after the prefix the same from all earlier real
    frames as from the last ``memoryless_frames``; an LSTM memory makes them differ. The scores put the previous
    real frame as copy-last."""
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (2, 12, 16, 16, 3), dtype=np.uint8)
    frames[:, 10] = frames[:, 9]  # the agent stood still: copy-last is exact there
    actions = rng.integers(0, 6, (2, 12))
    model = tiny_model("none", depth=2)
    k = memoryless_frames(model.config)
    full, last = one_step_predictions(model, frames, actions, prefix=8, window=k, seed=3)
    assert full.shape == (2, 4, 16, 16, 3) and full.dtype == np.uint8
    np.testing.assert_array_equal(full, last)
    full, last = one_step_predictions(tiny_model("lstm", depth=2), frames, actions, prefix=8, window=k, seed=3)
    assert not np.array_equal(full, last)
    cells = list(range(6)) + [0, 1, 2, 3, 4, 5]
    extras = {k_: np.repeat(v, 2, 0) for k_, v in maze_extras(cells, [EAST] * 12).items()}
    clips = Clips(frames=frames, prev_actions=actions, episodes=[0, 1], starts=[0, 0], env_seeds=[-1, -1],
                  episode_actions=[actions[0, 1:]] * 2, extras=extras)
    r = one_step_retrieval(model, clips, prefix=8, window=k, mean_frame=frames.mean((0, 1)).astype(np.uint8))
    assert r.revisit.all() and not r.new.any()  # frames 8-11 revisit cells 2-5 of frames 2-5
    assert r.scores.psnr["copy-last"][:, 2].tolist() == [100.0, 100.0]
    assert r.summary()["gain on revisits"] == 0.0  # no memory, identical predictions


def test_memory_retention_measures_how_long_the_memory_keeps_a_frame() -> None:
    """Swapping the first frames for another clip's changes an LSTM memory for many frames after (chrono
    gates); the same model with zero gate biases forgets within a few; no memory: no measurement."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (3, 40, 16, 16, 3), dtype=np.uint8)
    actions = rng.integers(0, 6, (3, 40))
    model = tiny_model("lstm", depth=2)
    r = memory_retention(model, frames, actions, swap=4, lags=(1, 8, 32, 64))
    assert r["lags"] == [1, 8, 32] and len(r["layers"]) == 2  # 4 + 64 > 40 frames: lag 64 is left out
    assert all(np.isfinite(v) and v >= 0 for layer in r["layers"] for v in layer)
    with torch.no_grad():
        for blk in model.dit.blocks:
            blk.memory.lstm.bias_ih.zero_()
            blk.memory.lstm.bias_hh.zero_()
    forgetful = memory_retention(model, frames, actions, swap=4, lags=(1, 8, 32))
    assert r["layers"][-1][2] > 10 * forgetful["layers"][-1][2]
    assert memory_retention(tiny_model("none", depth=1), frames, actions) is None


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, Path]:
    """A tiny random checkpoint and two stores of 3 episodes of 15 frames, with and without positions."""
    root = tmp_path_factory.mktemp("retrieval")
    model = tiny_model("lstm", depth=1)
    data = dict(source="test", action_set="memory-maze", num_actions=6, frame_shape=(16, 16, 3))
    ckpt = save_checkpoint(root / "tiny.pt", model, train_config={}, data=data, step=0)
    rng = np.random.default_rng(0)
    paths = {"checkpoint": ckpt}
    for name, with_places in (("places", True), ("plain", False)):
        episodes = []
        for _ in range(3):
            actions = rng.integers(0, 6, 14)
            cells = rng.integers(0, 3, 15)
            extras = {"agent_pos": np.stack([cells + 0.5, np.full(15, 0.5)], 1).astype(np.float32),
                      "agent_dir": np.tile(np.float32(EAST), (15, 1))} if with_places else {}
            episodes.append(Episode(obs=rng.integers(0, 256, (15, 16, 16, 3), dtype=np.uint8), action_id=actions,
                                    action=actions, reward=np.zeros(14, np.float32), terminated=np.zeros(14, bool),
                                    truncated=np.eye(1, 14, 13, dtype=bool)[0], extras=extras))
        paths[name] = write_episodes(root / f"{name}.h5", episodes, FileMeta("test", "memory-maze", 6, (16, 16, 3)))
    return paths


def run(store: dict[str, Path], data: str, out: Path | None = None, **kw) -> dict:
    settings = dict(context=2, horizon=2, denoiser=False, probes=False, rewards=False, threads=1, retrieval_prefix=8,
                    retrieval_horizon=6, out=str(out) if out else "", report=out is not None)
    return evaluate(EvalConfig(checkpoint=str(store["checkpoint"]), data=str(store[data]), **{**settings, **kw}))


def test_evaluate_runs_the_memory_retrieval_section(store: dict[str, Path], tmp_path: Path) -> None:
    result = run(store, "places", tmp_path / "eval")
    r = result["retrieval"]
    assert (r["prefix"], r["horizon"], r["window"], r["clips"]) == (8, 6, 3, 3)  # depth 1: window 3
    rows = {row["frames"]: row for row in r["table"]}
    assert rows["all"]["n"] == 3 * 6 and rows["all"]["n"] >= r["revisit frames"] + r["new place frames"]
    for row in rows.values():
        for who in ("full prefix", "window only", "copy-last", "mean frame"):
            assert 0 < row[f"{who} psnr"] <= 100
    names = {t["target"] for t in result["targets"]}
    assert "memory gain on revisits (full prefix - last window)" in names
    assert result["seconds"]["retrieval"] > 0
    grid = tmp_path / "eval" / "memory_retrieval.png"
    assert grid.read_bytes()[:4] == b"\x89PNG" and str(grid) in result["pictures"]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## Memory retrieval" in report and "memory gain" in report and "memory_retrieval.png" in report
    assert "memory_retention" not in result and "## Memory retention" not in report  # 8-frame prefix: no lag fits
    assert "memory retrieval" in format_report(result, markdown=False)
    one = result["retrieval_one_step"]  # the same clips predicted one step ahead from real frames
    assert (one["prefix"], one["horizon"], one["window"], one["clips"]) == (8, 6, 3, 3)
    assert {row["frames"]: row for row in one["table"]}["all"]["n"] == 3 * 6
    assert "## Memory one step ahead" in report and "memory gain one step ahead" in report


def test_evaluate_skips_memory_retrieval_with_a_reason(store: dict[str, Path]) -> None:
    short = run(store, "places", retrieval_prefix=12, retrieval_horizon=4)
    assert "retrieval" not in short and "no evaluation episode has 16 frames" in short["retrieval_skipped"]
    assert "memory retrieval skipped" in format_report(short)
    assert "no positions" in run(store, "plain")["retrieval_skipped"]
    assert "retrieval_skipped" not in run(store, "places", retrieval=False)
    assert "longer than" in run(store, "places", retrieval_window=8)["retrieval_skipped"]


def test_warp_interpolation_sets_the_motion_priors_resampling(store: dict[str, Path], tmp_path: Path) -> None:
    from rad_env.cli import UserError

    with pytest.raises(UserError, match="has no motion prior"):
        run(store, "plain", retrieval=False, warp_interpolation="bicubic")
    data = dict(source="test", action_set="memory-maze", num_actions=6, frame_shape=(16, 16, 3))
    warping = save_checkpoint(tmp_path / "warp.pt", tiny_model("lstm", 1, motion_prior=True, motion_grid=4),
                              train_config={}, data=data, step=0)
    dreams = {}
    for mode in ("", "nearest"):
        result = run({**store, "checkpoint": warping}, "plain", retrieval=False, warp_interpolation=mode)
        assert result["model"]["warp_interpolation"] == (mode or "bilinear")
        dreams[mode] = [row["model psnr"] for row in result["rollout"]]
    assert dreams[""] != dreams["nearest"]  # the same seeds: only the warp differs
