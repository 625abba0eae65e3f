"""benchmarks/memory_experiment.py end to end (--quick) on a small synthetic episode store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import memory_experiment
from rad_env.data import Episode, FileMeta, write_episodes

STEPS = 40  # 41 frames: the quick settings need 4 + 8 (rollout) and 24 + 16 (retrieval)
LOOP = [(2, 2), (3, 2), (4, 2), (5, 2), (5, 3), (4, 3), (3, 3), (2, 3)]  # cells walked round and round


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> Path:
    """Six episodes of a bright square walking a loop of 8 cells (16x16 frames), with Memory Maze
    positions: every dreamed frame after a 24-frame prefix revisits a place seen early in the prefix."""
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("data") / "eps.h5"
    result = []
    for e in range(6):
        start = int(rng.integers(len(LOOP)))
        cells = np.array([LOOP[(start + t) % len(LOOP)] for t in range(STEPS + 1)], np.float32)
        obs = np.zeros((STEPS + 1, 16, 16, 3), np.uint8)
        for t, (x, y) in enumerate(cells.astype(int)):
            obs[t, 2 * y:2 * y + 3, 2 * x:2 * x + 3] = 200
            obs[t, :, :, e % 3] += 20  # a tint per episode
        actions = rng.integers(0, 6, STEPS)
        result.append(Episode(obs=obs, action_id=actions, action=actions, reward=np.zeros(STEPS, np.float32),
                              terminated=np.zeros(STEPS, bool), truncated=np.eye(1, STEPS, STEPS - 1, dtype=bool)[0],
                              extras={"agent_pos": cells + 0.5,
                                      "agent_dir": np.tile([[1.0, 0.0]], (STEPS + 1, 1)).astype(np.float32)}))
    write_episodes(out, result, FileMeta("synthetic", "memory-maze", 6, (16, 16, 3)))
    return out


def test_quick_experiment_writes_retrieval_rollout_training_and_cost_tables(episodes: Path, tmp_path: Path,
                                                                           capsys) -> None:
    out = tmp_path / "exp"
    code = memory_experiment.main(["--quick", "--data", str(episodes), "--out", str(out), "--memories", "lstm,none",
                                   "--seeds", "0,1", "--device", "cpu", "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads((out / "results.json").read_text())
    assert len(result["runs"]) == 4 and {(r["memory"], r["seed"]) for r in result["runs"]} == \
        {("lstm", 0), ("lstm", 1), ("none", 0), ("none", 1)}
    for run in result["runs"]:
        assert "retrieval" in run, run.get("retrieval_skipped")
        assert run["train"]["step"] == 2
        assert any(p.endswith("memory_retrieval.png") for p in run["pictures"])
        assert all(Path(p).exists() for p in run["pictures"])
    for memory in ("lstm", "none"):
        r = result["retrieval"][memory]
        assert r["seeds"] == 2 and r["revisit frames"] > 0
        for key in ("revisit full prefix psnr", "revisit window only psnr", "gain on revisits"):
            assert np.isfinite(r[key]["mean"]) and r[key]["std"] is not None and r[key]["n"] == 2
    # identical noise: a model without memory dreams the same after the whole prefix as after its window
    assert result["retrieval"]["none"]["gain on revisits"]["mean"] == pytest.approx(0.0, abs=1e-6)

    headers = result["tables"]["retrieval"]["headers"]
    assert {"revisit: full prefix", "revisit: window only", "gain on revisits", "gain on new places"} <= set(headers)
    rows = {row[0]: dict(zip(headers, row)) for row in result["tables"]["retrieval"]["rows"]}
    assert set(rows) == {"lstm (RAD)", "none (window only)"}
    for row in rows.values():
        assert "±" in row["revisit: full prefix"] and "±" in row["gain on revisits"]
        float(row["revisit: full prefix"].split("±")[0])  # a number

    assert result["rollout_rows"][0] == "h=1" and result["tables"]["rollout"]["rows"]
    assert [r["memory"] for r in result["cost"]["results"]] == ["lstm", "none"]
    assert result["tables"]["training"]["rows"][0][0] == "lstm (RAD)"
    assert any(line.startswith("memory gain on revisits") for line in result["verdict"])
    assert any(line.startswith("revisits, full-prefix PSNR: lstm - none") for line in result["verdict"])
    assert "not judged, full not trained" in result["verdict"][-1]

    md = (out / "results.md").read_text()
    assert "| lstm (RAD) | 2 |" in md and "| none (window only) | 2 |" in md
    assert "gain on revisits" in md and "±" in md and "memory_retrieval.png" in md
    assert "Memory retrieval, PSNR dB" in printed and "numbers are meaningless" in printed


def test_one_line_errors(tmp_path: Path, capsys) -> None:
    assert memory_experiment.main(["--memories", "lstm,bogus", "--out", str(tmp_path)]) == 2
    assert memory_experiment.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "memory_experiment: error: unknown memory types ['bogus']" in err
    assert "no episode data at" in err


def test_verdict_says_plainly_whether_the_ordering_holds() -> None:
    def run(memory: str, seed: int, revisit: float) -> dict:
        table = [{"frames": "revisit", "full prefix psnr": revisit, "window only psnr": 10.0}]
        return {"memory": memory, "seed": seed, "retrieval": {"table": table}}

    def cost(time_ratio: float) -> dict:
        return {"near": 50, "far": 2000, "results": [
            {"memory": "lstm", "time_ratio_far_near": time_ratio, "state_ratio_far_near": 1.0},
            {"memory": "full", "time_ratio_far_near": 9.0, "state_ratio_far_near": 40.0}]}

    memories = ["lstm", "none", "full"]
    good = [run("lstm", s, 14.0) for s in (0, 1)] + [run("none", s, 12.0) for s in (0, 1)] + \
        [run("full", s, 14.5) for s in (0, 1)]
    line = memory_experiment.ordering(good, memories, cost(1.1))
    assert "HOLDS" in line and "NOT" not in line and "all 2 seed(s)" in line
    assert "DOES NOT HOLD" in memory_experiment.ordering(good, memories, cost(3.0))
    assert "holds on quality" in memory_experiment.ordering(good, memories, None)
    mixed = good[:1] + [run("lstm", 1, 11.0)] + good[2:]
    line = memory_experiment.ordering(mixed, memories, cost(1.1))
    assert "DOES NOT HOLD" in line and "only 1 of 2" in line
    far_from_full = [run(r["memory"], r["seed"], 20.0) if r["memory"] == "full" else r for r in good]
    assert "NOT within 1 dB" in memory_experiment.ordering(far_from_full, memories, cost(1.1))
    assert "not judged, full not trained" in memory_experiment.ordering(good, ["lstm", "none"], cost(1.1))


def test_init_gives_every_memory_type_the_same_window_only_start(tmp_path: Path) -> None:
    """--init: each memory type starts from the trained model's weights with its own memory fresh and its
    read closed: lstm and linear dream exactly what the memory-less model dreams, full attention (the same
    weights over every earlier frame) only while the frames fit the window."""
    import torch

    from rad_env.checkpoint import load_world_model, save_checkpoint
    from rad_env.model import RADConfig, WorldModel

    torch.manual_seed(0)
    cfg = RADConfig(image_size=16, patch_size=4, dim=32, depth=2, heads=2, memory="lstm", memory_slots=2,
                    memory_dim=16, window=2, seq_len=6, num_actions=6, sampling_steps=2)
    trained = WorldModel(cfg).eval()
    with torch.no_grad():
        for p in trained.parameters():  # every branch, the memory read included, contributes
            p.add_(torch.randn_like(p) * 0.05)
    source = save_checkpoint(tmp_path / "trained.pt", trained, train_config={},
                             data={"source": "synthetic", "action_set": "memory-maze", "num_actions": 6,
                                   "frame_shape": (16, 16, 3)}, step=1)
    frames = torch.randint(0, 256, (2, 3, 16, 16, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)

    def dream(model: WorldModel, observed: int = 3) -> torch.Tensor:
        torch.manual_seed(2)  # committing draws its context noise from the global generator
        state = model.init_state(2)
        for t in range(observed):
            state = model.observe(frames[:, t], torch.full((2,), 1 if t else cfg.null_action), state)
        out = []
        gens = [torch.Generator().manual_seed(i) for i in range(2)]
        for t in range(4):
            imagined = model.imagine(torch.tensor([2, 5]), state, generators=gens)
            state = imagined.state
            out.append(imagined.frames)
        return torch.stack(out)

    dreams = {}
    for memory in ("lstm", "linear", "none", "full"):
        path = memory_experiment.backbone_checkpoint(str(source), memory, {}, tmp_path / "init" / f"{memory}.pt")
        model, _ = load_world_model(path)
        assert model.config.memory == memory
        weights = model.state_dict()
        assert torch.equal(weights["dit.blocks.0.spatial_qkv.weight"], trained.state_dict()["dit.blocks.0.spatial_qkv.weight"])
        if memory in ("lstm", "linear"):
            assert not weights["dit.blocks.0.ada.weight"][9 * cfg.dim:].any()  # the read starts closed
        dreams[memory] = dream(model.eval())
        dreams[memory, 1] = dream(model, observed=1)
    for memory in ("lstm", "linear"):
        torch.testing.assert_close(dreams[memory].float(), dreams["none"].float(), atol=1, rtol=0, msg=memory)
    # full attention reads every earlier frame with the same weights: the same frame while all fit in the window
    torch.testing.assert_close(dreams["full", 1][0].float(), dreams["none", 1][0].float(), atol=1, rtol=0)
    assert not torch.equal(dreams["full"], dreams["none"])
    assert not torch.equal(dream(trained), dreams["none"])  # the trained model read its memory


def test_reuse_keeps_finished_runs_and_their_evaluations(episodes: Path, tmp_path: Path, capsys) -> None:
    """--reuse takes a finished run with equal settings and the evaluation it left, if made with equal
    settings; other evaluation settings evaluate it again."""
    out = tmp_path / "exp"
    argv = ["--quick", "--data", str(episodes), "--out", str(out), "--memories", "none", "--seeds", "0",
            "--device", "cpu", "--threads", "1", "--no-cost", "--reuse"]
    assert memory_experiment.main(argv) == 0
    first = json.loads((out / "results.json").read_text())["runs"][0]
    capsys.readouterr()
    assert memory_experiment.main(argv) == 0
    printed = capsys.readouterr().out
    assert "[none seed 0] reusing" in printed and "reusing its evaluation" in printed
    again = json.loads((out / "results.json").read_text())["runs"][0]
    assert again["reused"] and again["rollout"] == first["rollout"] and again["retrieval"] == first["retrieval"]
    assert memory_experiment.main(argv + ["--sampling-steps", "1"]) == 0
    printed = capsys.readouterr().out
    assert "reusing its evaluation" not in printed and "[none seed 0] evaluating" in printed
