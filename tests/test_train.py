"""Training CLI, resume, DDP (gloo, 2 processes) and evaluation on small synthetic episodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rad_env.checkpoint import load_checkpoint, load_world_model
from rad_env.data import Episode, FileMeta, write_episodes
from rad_env.evaluate import EvalConfig, evaluate, revisit_mask
from rad_env.train import main as train_main

MICRO = ["dim=32", "depth=1", "heads=2", "memory_slots=2", "memory_dim=16", "window=2", "seq_len=6"]



@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> Path:
    """Six 20-step episodes of a bright square moving with the actions (16x16 frames)."""
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("data") / "eps.h5"
    result = []
    for e in range(6):
        actions = rng.integers(0, 6, 20)
        pos = np.zeros((21, 2), np.float32)
        obs = np.zeros((21, 16, 16, 3), np.uint8)
        x = y = 8
        for t in range(21):
            if t:
                x = (x + (1 if actions[t - 1] in (1, 4) else -1 if actions[t - 1] == 2 else 0)) % 14
                y = (y + (1 if actions[t - 1] in (3, 5) else 0)) % 14
            obs[t, y:y + 3, x:x + 3] = 255
            pos[t] = (x, y)
        result.append(Episode(obs=obs, action_id=actions, action=actions, reward=(actions == 1).astype(np.float32),
                              terminated=np.zeros(20, bool), truncated=np.eye(1, 20, 19, dtype=bool)[0],
                              extras={"agent_pos": pos / 2, "agent_dir": np.tile([[1.0, 0.0]], (21, 1)).astype(np.float32)}))
    write_episodes(out, result, FileMeta("synthetic", "memory-maze", 6, (16, 16, 3)))
    return out


def run_train(data: Path, out: Path, *extra: str) -> dict:
    return train_main(["--data", str(data), "--out", str(out), "--batch-size", "4", "--log-every", "2",
                       "--ckpt-every", "3", "--warmup", "2", "--held-out", "0.34", "--no-tensorboard",
                       "--model", *MICRO, *extra])


def test_train_writes_checkpoints_logs_and_resumes(episodes: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run_train(episodes, out, "--steps", "4")
    assert summary["step"] == 4 and np.isfinite(summary["loss"]) and summary["frames_per_s"] > 0
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["step"] == 4 and ckpt["model_config"]["dim"] == 32 and "optimizer" not in ckpt
    assert ckpt["data"]["action_set"] == "memory-maze" and len(ckpt["data"]["held_out_episodes"]) == 2
    last = load_checkpoint(out / "last.pt")
    assert {"model_online", "optimizer"} <= set(last)
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 3  # header + steps 2 and 4
    resumed = run_train(episodes, out, "--steps", "6", "--resume")
    assert resumed["step"] == 6
    assert load_checkpoint(out / "last.pt")["step"] == 6
    model, _ = load_world_model(out / "model.pt")
    assert model.config.image_size == 16 and model.config.num_actions == 6


def test_bad_override_and_missing_data_give_clear_errors(episodes: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown RADConfig keys"):
        train_main(["--data", str(episodes), "--out", str(tmp_path), "--steps", "1", "--model", "colour=red"])
    with pytest.raises(FileNotFoundError, match="no episode data"):
        train_main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path), "--steps", "1"])


def test_ddp_two_processes_gloo(episodes: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rad_env.train", "--data", str(episodes), "--out", str(out), "--steps", "3", "--batch-size", "2",
           "--warmup", "1", "--no-tensorboard", "--threads", "1", "--model", *MICRO]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 3
    assert load_checkpoint(out / "model.pt")["train_config"]["batch_size"] == 2


def test_evaluate_reports_buckets_and_writes_video(episodes: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_train(episodes, out, "--steps", "2")
    result = evaluate(EvalConfig(checkpoint=str(out / "model.pt"), context=3, horizon=12, out=str(tmp_path / "eval"),
                                 video_episodes=1))
    table = result["table"]
    assert result["episodes"] == load_checkpoint(out / "model.pt")["data"]["held_out_episodes"]
    assert table["all"]["frames"] == 2 * 12
    assert table["horizon 1-3"]["frames"] == 2 * 3 and table["horizon 4-12"]["frames"] == 2 * 9
    assert table["beyond window (h>=2)"]["frames"] == 2 * 11
    for row in table.values():
        assert 0 < row["psnr"] < 100 and -1 <= row["ssim"] <= 1
    video = Path(result["videos"][0])
    assert video.exists() and video.stat().st_size > 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["table"]["all"]["frames"] == 24


def test_revisit_mask() -> None:
    pos = np.array([[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [1.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    east, west = [1.0, 0.0], [-1.0, 0.0]
    direction = np.array([east, east, east, west, west, east])
    # frame 4 is back in cell 0 but facing west (seen only facing east); frame 5 faces east again.
    assert revisit_mask(pos, direction, window=2).tolist() == [False, False, False, False, False, True]
    assert revisit_mask(pos, direction, window=1).tolist() == [False, False, False, False, False, True]
