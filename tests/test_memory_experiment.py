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
