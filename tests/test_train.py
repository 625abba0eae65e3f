"""Training CLI, resume, refusals, corrupt data, DDP (gloo, 2 processes) and evaluation on small
synthetic episodes."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rad_env.checkpoint import load_checkpoint, load_world_model
from rad_env.data import Episode, EpisodeStore, FileMeta, write_episodes
from rad_env.evaluate import EvalConfig, evaluate, format_report, targets
from rad_env.evaluate import main as evaluate_main
from rad_env.evaluation.probes import action_probe_scores, loop_closure_scores
from rad_env.evaluation.places import revisit_masks
from rad_env.model import frames_to_float
from rad_env.model.critic import FrameBuffer
from rad_env.train import Adversary
from rad_env.train import cli as train_cli
from rad_env.train import main as train_main
from rad_env.runtime import inference_dtype
from test_data_integrity import flip_chunk_bytes

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
    return train_cli(["--data", str(data), "--out", str(out), "--batch-size", "4", "--log-every", "2",
                       "--ckpt-every", "3", "--warmup", "2", "--held-out", "0.34", "--no-tensorboard",
                       "--model", *MICRO, *extra])


def test_train_writes_checkpoints_logs_curves_and_resumes(episodes: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run_train(episodes, out, "--steps", "4")
    assert summary["step"] == 4 and np.isfinite(summary["loss"]) and summary["frames_per_s"] > 0
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["step"] == 4 and ckpt["model_config"]["dim"] == 32 and "optimizer" not in ckpt
    assert ckpt["data"]["action_set"] == "memory-maze" and len(ckpt["data"]["held_out_episodes"]) == 2
    assert ckpt["data"]["path"] == str(episodes) and ckpt["data"]["seed"] == -1
    last = load_checkpoint(out / "last.pt")
    assert {"model_online", "optimizer"} <= set(last)
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 3  # header + steps 2 and 4
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resumed = run_train(episodes, out, "--steps", "6", "--resume")
    assert resumed["step"] == 6
    assert load_checkpoint(out / "last.pt")["step"] == 6
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 4  # + step 6
    model, _ = load_world_model(out / "model.pt")
    assert model.config.image_size == 16 and model.config.num_actions == 6


@pytest.mark.parametrize("part, added, removed", [("dit.stem.pixel.", "pixel_channels=4", "pixel_channels=0"),
                                                   ("dit.flow.", "flow_correction=true", "flow_correction=false")])
def test_fine_tune_adds_a_part_to_a_trained_model(episodes: Path, tmp_path: Path, capsys, part: str, added: str,
                                                  removed: str) -> None:
    """--init with --model pixel_channels=N (a pixel head) or flow_correction=true keeps every trained weight
    and starts the new part fresh (its read-out at zero, so the denoiser is the base model's); removing a
    part the checkpoint has is refused."""
    base = run_train(episodes, tmp_path / "base", "--steps", "2")
    common = ["--data", str(episodes), "--steps", "1", "--batch-size", "4", "--held-out", "0.34", "--no-tensorboard"]
    tuned = train_cli(common + ["--out", str(tmp_path / "tuned"), "--init", base["checkpoint"], "--lr", "1e-12",
                                "--warmup", "1", "--model", added])
    assert f"new tensors start fresh ({part}" in capsys.readouterr().out
    first, _ = load_world_model(base["checkpoint"])
    second, _ = load_world_model(tuned["checkpoint"])
    assert any(name.startswith(part) for name in second.state_dict())
    for name, weight in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], weight, atol=1e-6, rtol=0, msg=name)
    state = first.init_state(2)
    x, sigma, actions = torch.randn(2, 3, 16, 16), torch.tensor([0.5, 5.0]), torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(second.denoise(x, sigma, actions, state), first.denoise(x, sigma, actions, state),
                                   atol=1e-5, rtol=0)
    code = train_main(common + ["--out", str(tmp_path / "bad"), "--init", tuned["checkpoint"], "--model", removed])
    assert code == 2 and "has weights the new model lacks" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_fine_tune_adds_a_motion_prior_fit_to_the_data(episodes: Path, tmp_path: Path, capsys) -> None:
    """--init with --model motion_prior=true fits the flow of each action to the training data first
    (the synthetic square moves right with action 1, left with action 2), zeroes the stem's read-out (the
    network now predicts the correction to the warp) and keeps every other weight; a resumed run does not
    fit again."""
    base = run_train(episodes, tmp_path / "base", "motion_prior=false", "--steps", "2")
    common = ["--data", str(episodes), "--batch-size", "4", "--held-out", "0.34", "--no-tensorboard", "--lr", "1e-12",
              "--warmup", "1", "--ckpt-every", "1"]
    tuned = train_cli(common + ["--out", str(tmp_path / "tuned"), "--init", base["checkpoint"], "--steps", "1",
                                "--model", "motion_prior=true", "motion_grid=4"])
    out = capsys.readouterr().out
    assert "motion prior added; the stem's read-out starts at zero" in out and "motion prior fit in" in out
    first, _ = load_world_model(base["checkpoint"])
    second, _ = load_world_model(tuned["checkpoint"])
    assert second.config.motion_prior and bool(second.dit.motion.fitted)
    shift = second.dit.motion.shift_pixels()[:, 0]
    # forward moves the square right (the next frame samples the previous one further left), turn left moves it left
    assert shift[1] < -0.3 and shift[2] > 0.3, shift
    assert second.dit.stem.out.weight.abs().max() < 1e-6
    kept = {k: v for k, v in first.state_dict().items() if not k.startswith("dit.stem.out.")}
    for name, weight in kept.items():
        torch.testing.assert_close(second.state_dict()[name], weight, atol=1e-6, rtol=0, msg=name)
    train_cli(common + ["--out", str(tmp_path / "tuned"), "--init", base["checkpoint"], "--steps", "2",
                        "--model", "motion_prior=true", "motion_grid=4", "--resume"])
    assert "motion prior fit in" not in capsys.readouterr().out
    paired = train_cli(common + ["--out", str(tmp_path / "paired"), "--init", tuned["checkpoint"], "--steps", "1",
                                 "--model", "motion_pairs=true"])
    out = capsys.readouterr().out
    assert "motion_pairs added; each pair's flow starts from its action's" in out and "motion prior fit in" in out
    third, _ = load_world_model(paired["checkpoint"])
    motion = third.dit.motion
    assert motion.flow.shape[0] == 7 * 7 and bool(motion.fitted)
    shift = motion.shift_pixels()[:, 0]  # the square's moves do not depend on the previous action
    assert shift[1] < -0.3 and shift[2] > 0.3, shift
    for name, weight in second.state_dict().items():  # the rest, the network's read-out included, is kept
        if not name.startswith("dit.motion."):
            torch.testing.assert_close(third.state_dict()[name], weight, atol=1e-6, rtol=0, msg=name)


def test_fine_tune_from_a_checkpoint_with_rollout_training(episodes: Path, tmp_path: Path, capsys) -> None:
    """--init starts from a checkpoint's weights and config (new schedule); --rollout-prob 1 trains
    every step on the model's own samples as context (logged as own_context)."""
    base = run_train(episodes, tmp_path / "base", "--steps", "2")
    tuned = train_cli(["--data", str(episodes), "--out", str(tmp_path / "tuned"), "--init", base["checkpoint"],
                       "--steps", "2", "--batch-size", "4", "--log-every", "1", "--lr", "1e-12", "--warmup", "1",
                       "--held-out", "0.34", "--no-tensorboard", "--rollout-prob", "1"])
    assert tuned["step"] == 2 and np.isfinite(tuned["loss"]) and tuned["final_own_context"] == 1.0
    first, _ = load_world_model(base["checkpoint"])
    second, ckpt = load_world_model(tuned["checkpoint"])
    assert ckpt["model_config"] == first.config.to_dict()  # MICRO config from the checkpoint, not the preset
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)  # lr 1e-12: the weights it started from
    with open(tmp_path / "tuned" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["own_context"]) == 1.0 and float(r["dreamed_chunks"]) == 1.0 for r in rows)
    capsys.readouterr()
    assert train_main(["--data", str(episodes), "--out", str(tmp_path / "bad"), "--rollout-prob", "2"]) == 2
    assert "--rollout-prob must be in [0, 1]" in capsys.readouterr().err


def test_truncated_backprop_through_time_carries_the_state(episodes: Path, tmp_path: Path, capsys) -> None:
    """--tbptt trains on consecutive chunks of whole episodes (with rollouts continuing the carried state
    too); memory=full, whose window is unbounded, is refused with a one-line error."""
    summary = run_train(episodes, tmp_path / "tbptt", "--steps", "4", "--tbptt", "--rollout-prob", "0.5")
    assert summary["step"] == 4 and np.isfinite(summary["loss"])
    assert json.loads((tmp_path / "tbptt" / "config.json").read_text())["train"]["tbptt"] is True
    capsys.readouterr()
    assert train_main(["--data", str(episodes), "--out", str(tmp_path / "full"), "--tbptt", "--steps", "1",
                       "--no-tensorboard", "--model", *MICRO, "memory=full"]) == 2
    err = capsys.readouterr().err
    assert "--tbptt carries a bounded window" in err and "Traceback" not in err


def test_rollouts_chained_across_chunks(episodes: Path, tmp_path: Path, capsys) -> None:
    """--rollout-chunks N: consecutive rollout steps dream on from the carried dream (up to N chunks in a
    row, restarting at episode starts); it needs --tbptt and rollouts."""
    run_train(episodes, tmp_path / "chain", "--steps", "8", "--tbptt", "--rollout-prob", "1",
              "--rollout-chunks", "2", "--log-every", "1")
    with open(tmp_path / "chain" / "metrics.csv") as f:
        chained = [int(float(row["dreamed_chunks"])) for row in csv.DictReader(f)]
    assert set(chained) == {1, 2} and all(c == 1 for c, prev in zip(chained[1:], chained) if prev == 2)
    capsys.readouterr()
    assert train_main(["--data", str(episodes), "--out", str(tmp_path / "bad"), "--rollout-chunks", "2",
                       "--steps", "1", "--no-tensorboard", "--model", *MICRO]) == 2
    err = capsys.readouterr().err
    assert "--rollout-chunks > 1 continues dreams across chunks" in err and "Traceback" not in err


def test_chained_chunks_left_to_the_critic(episodes: Path, tmp_path: Path, capsys) -> None:
    """--chained-diffusion-weight 0: a chunk that continues a dream is trained by the adversarial term alone
    (its loss holds no diffusion term); it needs chained rollouts and a critic (one-line errors)."""
    out = tmp_path / "advonly"
    run_train(episodes, out, "--steps", "8", "--tbptt", "--rollout-prob", "1", "--rollout-chunks", "2",
              "--chained-diffusion-weight", "0", "--adversarial-weight", "0.5", "--adversarial-min-sigma", "0.002",
              "--critic-dreams", "--log-every", "1")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        heads = float(row["reward_loss"]) + float(row["termination_loss"])
        rest = float(row["loss"]) - heads  # the logged loss is the world model's, before the adversarial term
        if int(float(row["dreamed_chunks"])) == 2:  # no diffusion term in a chained chunk's loss
            assert rest == pytest.approx(0.0, abs=1e-4)
        else:
            assert rest == pytest.approx(float(row["diffusion_loss"]), rel=1e-3)
    assert {int(float(r["dreamed_chunks"])) for r in rows} == {1, 2}
    for row in rows:  # --critic-dreams: every rollout step shows the critic the frames it dreamed
        dreamed = float(row["critic_dreamed"])
        assert dreamed > 0 and 0 <= float(row["critic_dream_acc"]) <= 1, row
        assert float(row["critic_predicted"]) >= 0
    common = ["--data", str(episodes), "--out", str(tmp_path / "bad"), "--steps", "1", "--no-tensorboard",
              "--model", *MICRO]
    capsys.readouterr()
    assert train_main(common + ["--chained-diffusion-weight", "0"]) == 2
    assert "needs --rollout-chunks >= 2" in capsys.readouterr().err
    assert train_main(common + ["--tbptt", "--rollout-prob", "1", "--rollout-chunks", "2",
                                "--chained-diffusion-weight", "0"]) == 2
    assert "set --adversarial-weight > 0" in capsys.readouterr().err
    assert train_main(common + ["--chained-diffusion-weight", "-1"]) == 2
    assert "--chained-diffusion-weight must be >= 0" in capsys.readouterr().err
    assert train_main(common + ["--adversarial-weight", "0.5", "--critic-dreams"]) == 2
    err = capsys.readouterr().err
    assert "--critic-dreams shows the critic the frames rollouts dream" in err and "Traceback" not in err


def test_fine_tune_adds_a_content_flow_fit_to_the_data(episodes: Path, tmp_path: Path, capsys) -> None:
    """--init with --model content_flow=N keeps every trained weight (the stem's read-out too: the motion prior
    was there already) and fits the new net to the warp's error before training; a resumed run does not."""
    base = run_train(episodes, tmp_path / "base", "motion_prior=true", "motion_grid=4", "--steps", "2")
    common = ["--data", str(episodes), "--batch-size", "4", "--held-out", "0.34", "--no-tensorboard", "--lr", "1e-12",
              "--warmup", "1", "--ckpt-every", "1"]
    capsys.readouterr()
    tuned = train_cli(common + ["--out", str(tmp_path / "tuned"), "--init", base["checkpoint"], "--steps", "1",
                                "--model", "content_flow=4"])
    out = capsys.readouterr().out
    assert "content flow fit in" in out and "motion prior fit in" not in out and "read-out starts at zero" not in out
    first, _ = load_world_model(base["checkpoint"])
    second, _ = load_world_model(tuned["checkpoint"])
    assert bool(second.dit.motion.content.fitted) and second.dit.motion.content.out.weight.abs().max() > 0
    for name, weight in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], weight, atol=1e-6, rtol=0, msg=name)
    train_cli(common + ["--out", str(tmp_path / "tuned"), "--init", base["checkpoint"], "--steps", "2",
                        "--model", "content_flow=4", "--resume"])
    assert "content flow fit in" not in capsys.readouterr().out


def test_critic_buffer_judges_deep_dreams_in_balanced_batches(episodes: Path, tmp_path: Path, capsys) -> None:
    """--critic-buffer: only chunks that continue a dream feed the critic and get the adversarial term; the
    critic trains --critic-steps times a step once the buffer holds frames (one-line errors otherwise)."""
    out = tmp_path / "buffer"
    run_train(episodes, out, "--steps", "8", "--tbptt", "--rollout-prob", "1", "--rollout-chunks", "2",
              "--adversarial-weight", "0.5", "--adversarial-min-sigma", "0.002", "--critic-buffer", "40",
              "--critic-steps", "3", "--log-every", "1")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    sizes = [float(r["critic_buffer"]) for r in rows]
    assert sizes == sorted(sizes) and sizes[-1] == 40  # filled by the deep chunks, then a ring of 40
    for row in rows:
        deep = int(float(row["dreamed_chunks"])) >= 2
        assert math.isfinite(float(row["adversarial_loss"])) == deep, row  # the term acts on deep dreams only
        assert math.isfinite(float(row["critic_loss"])) == (float(row["critic_buffer"]) > 0), row
        if deep:
            assert 0 <= float(row["critic_dream_acc"]) <= 1
    common = ["--data", str(episodes), "--out", str(tmp_path / "bad"), "--steps", "1", "--no-tensorboard",
              "--model", *MICRO]
    capsys.readouterr()
    assert train_main(common + ["--critic-buffer", "10"]) == 2
    assert "needs --adversarial-weight > 0 and --rollout-chunks >= 2" in capsys.readouterr().err
    assert train_main(common + ["--critic-steps", "2"]) == 2
    assert "set --critic-buffer N too" in capsys.readouterr().err
    assert train_main(common + ["--tbptt", "--rollout-prob", "1", "--rollout-chunks", "2", "--adversarial-weight", "0.5",
                                "--critic-buffer", "10", "--critic-dreams"]) == 2
    assert "drop --critic-dreams" in capsys.readouterr().err
    assert train_main(common + ["--critic-buffer", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--critic-buffer must be >= 0" in err and "Traceback" not in err


def test_frame_buffer_keeps_the_last_frames() -> None:
    """FrameBuffer: a ring of the last `capacity` frames, stored as uint8, sampled back as floats."""
    buffer = FrameBuffer(3)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1)
    frames = torch.linspace(-1, 1, 5)[:, None, None, None].expand(5, 3, 2, 2)
    buffer.push(frames[:2])
    buffer.push(frames[2:])
    assert len(buffer) == 3
    kept = {round(float(v), 2) for v in buffer.sample(64, torch.Generator().manual_seed(0))[:, 0, 0, 0]}
    assert kept == {0.0, 0.5, 1.0}  # the first two were overwritten


def test_critic_dreams_are_the_context_frames_a_rollout_dreamed() -> None:
    """Adversary.dreamed: the context frames that differ from the real ones, beside the real frames there."""
    real = torch.zeros(2, 3, 4, 4, 3, dtype=torch.uint8)
    context = real.clone()
    context[0, 2] = 9
    context[1, 1, 0, 0, 0] = 1
    dreamed, at = Adversary.dreamed(context, real)
    assert dreamed.shape == at.shape == (2, 3, 4, 4)
    assert torch.equal(at, frames_to_float(real[:1, 0].expand(2, 4, 4, 3)))
    assert torch.equal(dreamed[0], frames_to_float(context[0, 2:3])[0])
    empty, empty_real = Adversary.dreamed(None, real)
    assert empty.shape == empty_real.shape == (0, 3, 4, 4)


def test_heads_only_fine_tune_changes_only_the_heads(episodes: Path, tmp_path: Path, capsys) -> None:
    """--heads-only (with --init) trains the reward/termination heads on the model's own dreams and leaves
    every other weight as it was, a spatial reward head added by --model included; without --init it is a
    one-line error."""
    base = run_train(episodes, tmp_path / "base", "--steps", "2")
    tuned = train_cli(["--data", str(episodes), "--out", str(tmp_path / "heads"), "--init", base["checkpoint"],
                       "--heads-only", "--tbptt", "--rollout-prob", "1", "--rollout-chunks", "2", "--steps", "3",
                       "--batch-size", "4", "--log-every", "1", "--lr", "1e-2", "--warmup", "1", "--held-out", "0.34",
                       "--no-tensorboard", "--model", "reward_grid_channels=2"])
    first, _ = load_world_model(base["checkpoint"])
    second, _ = load_world_model(tuned["checkpoint"])
    before, after = first.state_dict(), second.state_dict()
    changed = {name for name, a in before.items() if not torch.equal(a, after[name])}
    assert changed and all(name.startswith("head.") for name in changed)
    added = set(after) - set(before)
    assert added and all(name.startswith("reward_grid.") for name in added)
    assert second.reward_grid.mlp[-1].weight.abs().sum() > 0  # it started at zero and was trained
    with open(tmp_path / "heads" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(np.isnan(float(r["diffusion_loss"])) and float(r["reward_loss"]) > 0 for r in rows)
    capsys.readouterr()
    assert train_main(["--data", str(episodes), "--out", str(tmp_path / "bad"), "--heads-only", "--steps", "1",
                       "--no-tensorboard", "--model", *MICRO]) == 2
    err = capsys.readouterr().err
    assert "--heads-only trains the heads of a trained model" in err and "Traceback" not in err


def test_adversarial_fine_tune_trains_a_critic_beside_the_model(episodes: Path, tmp_path: Path, capsys) -> None:
    """--adversarial-weight trains a frame critic on the denoiser's predictions (its own term only after
    --critic-warmup steps); the critic lives in last.pt and resumes with the run, never in model.pt."""
    out = tmp_path / "adv"
    adversarial = ["--adversarial-weight", "0.5", "--adversarial-min-sigma", "0.002", "--critic-warmup", "2",
                   "--log-every", "1"]
    run_train(episodes, out, "--steps", "4", *adversarial)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(np.isfinite(float(r["critic_loss"])) for r in rows)
    assert [np.isnan(float(r["adversarial_loss"])) for r in rows] == [True, True, False, False]
    critic = load_checkpoint(out / "last.pt")["extra"]["critic"]
    assert "net.0.weight" in critic
    assert not any("critic" in name or name.startswith("net.") for name in load_checkpoint(out / "model.pt")["model"])
    assert run_train(episodes, out, "--steps", "6", "--resume", *adversarial)["step"] == 6
    resumed = load_checkpoint(out / "last.pt")["extra"]
    assert not torch.equal(resumed["critic"]["net.0.weight"], critic["net.0.weight"])  # it kept learning
    assert "critic_optimizer" in resumed
    capsys.readouterr()
    plain = tmp_path / "plain"
    run_train(episodes, plain, "--steps", "2")
    common = ["--data", str(episodes), "--steps", "3", "--no-tensorboard", "--model", *MICRO]
    assert train_main(common + ["--out", str(plain), "--resume", "--adversarial-weight", "0.5"]) == 2
    assert "holds no critic to resume" in capsys.readouterr().err
    assert train_main(common + ["--out", str(tmp_path / "bad"), "--init", str(plain / "model.pt"), "--heads-only",
                                "--adversarial-weight", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "use one or the other" in err and "Traceback" not in err


def test_rollout_steps_keep_the_clock(episodes: Path, tmp_path: Path) -> None:
    """Rollout steps do not disturb the run's clock: its time, throughput and --time-limit stay true."""
    import time

    began = time.perf_counter()
    summary = run_train(episodes, tmp_path / "clock", "--steps", "3", "--rollout-prob", "1", "--time-limit", "600")
    wall = time.perf_counter() - began
    assert summary["step"] == 3 and 0 < summary["seconds"] <= wall
    assert summary["frames_per_s"] >= 3 * 4 * 6 / wall


def test_existing_run_is_refused_unless_resume_or_overwrite(episodes: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    run_train(episodes, out, "--steps", "2")
    before = (out / "model.pt").read_bytes()
    args = ["--data", str(episodes), "--out", str(out), "--steps", "2", "--no-tensorboard", "--model", *MICRO]
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "model.pt").read_bytes() == before  # nothing was touched
    assert train_main(args + ["--overwrite", "--steps", "3"]) == 0
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["3"]  # a new log (old rows: step 2), not appended


def test_user_mistakes_are_one_line_errors(episodes: Path, tmp_path: Path, capsys) -> None:
    cases = [
        (["--data", str(episodes), "--out", str(tmp_path / "a"), "--model", "colour=red"], "unknown RADConfig keys"),
        (["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "b")], "no episode data"),
        (["--data", str(episodes), "--out", str(episodes)], "is a file"),
        (["--data", str(episodes), "--out", str(tmp_path / "c"), "--model", "motion_prior=true", "seq_len=1"],
         "seq_len must be >= 2"),
    ]
    for argv, message in cases:
        assert train_main(argv + ["--steps", "1", "--no-tensorboard"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) <= 2 and "Traceback" not in err
    assert not any((tmp_path / name).exists() for name in "abc")  # failed runs leave no folders
    assert evaluate_main(["--checkpoint", str(episodes)]) == 2
    err = capsys.readouterr().err
    assert "not a readable torch checkpoint" in err and "weights_only" not in err


def test_corrupt_episode_is_skipped_with_a_warning_or_fatal(episodes: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(episodes, data / "a.h5")
    shutil.copy(episodes, data / "b.h5")
    flip_chunk_bytes(data / "b.h5", "episodes/000003/obs", chunk=5)
    with pytest.warns(UserWarning, match=r"skipping 1 corrupt episode.*b\.h5"):
        summary = run_train(data, tmp_path / "run", "--steps", "2")
    assert summary["step"] == 2
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    used = ckpt["data"]["train_episodes"] + ckpt["data"]["held_out_episodes"]
    assert len(used) == 11 and 9 not in used  # b.h5's episode 3 is the 10th of 12
    with pytest.raises(Exception, match=r"b\.h5.*000003"):
        run_train(data, tmp_path / "run2", "--steps", "2", "--corrupt", "fail")


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


def test_evaluate_reports_model_beside_baselines(episodes: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_train(episodes, out, "--steps", "2")
    result = evaluate(EvalConfig(checkpoint=str(out / "model.pt"), context=3, horizon=17, probe_steps=3,
                                 out=str(tmp_path / "eval"), report=True))
    assert result["episodes"] == load_checkpoint(out / "model.pt")["data"]["held_out_episodes"]
    assert "held-out episodes of the training recording" in result["provenance"]
    rows = {r["frames"]: r for r in result["rollout"]}
    assert rows["all"]["n"] == 2 * 17 and rows["h=1"]["n"] == 2 and rows["h=2-16"]["n"] == 2 * 15
    assert rows["h=17"]["n"] == 2
    for row in rows.values():
        for who in ("model", "copy-last", "mean frame"):
            assert 0 < row[f"{who} psnr"] <= 100 and -1 <= row[f"{who} ssim"] <= 1
    # copy-last repeats the last context frame: at h=1 its score is that of the real step
    assert {r["method"] for r in result["denoiser"]} >= {"copy-last frame", "one-shot denoise, sigma=80",
                                                          "sample from noise, euler 1 step", "motion prior's warp alone"}
    assert "no recorded env seeds" in result["probes_skipped"]  # synthetic data: no real env to replay
    # evaluated in the dream env's default precision (bf16 on a CPU with AVX512-BF16), and the report says which
    assert result["model"]["precision"] == str(inference_dtype(torch.device("cpu"), "auto")).removeprefix("torch.")
    assert f"{result['model']['precision']} matrix products" in (tmp_path / "eval" / "report.md").read_text()
    assert {t["target"] for t in result["targets"]} >= {"h=1 PSNR - copy-last", "h=2-16 PSNR - copy-last",
                                                        "h=17 PSNR - best baseline"}
    replay = result["reward_replay"]  # the synthetic episodes pay for action 1
    assert replay["events"] > 0 and 0 <= replay["paid"] <= replay["events"] and replay["lead"] == 6
    assert "reward events paid" in {t["target"] for t in result["targets"]}
    paid = {r["frames"]: r for r in result["rollout_rewards"]}  # open-loop dreams vs the real rewards
    assert set(paid) == {"h=1-8", "h=9-17", "all"} and paid["all"]["n"] == 2 * 17
    assert paid["all"]["real rewards"] == paid["h=1-8"]["real rewards"] + paid["h=9-17"]["real rewards"] > 0
    grid = tmp_path / "eval" / "rollout_grid.png"
    assert grid.read_bytes()[:4] == b"\x89PNG" and str(grid) in result["pictures"]
    # the model predicts relative to a motion prior: how far each dreamed frame is from its warp, per horizon
    edit = {r["frames"]: r for r in result["warp_edit"]}
    assert set(edit) == set(rows) - {"beyond window, revisit", "beyond window, new place"}
    assert edit["all"]["dream PSNR"] == pytest.approx(rows["all"]["model psnr"], abs=1e-4)
    assert 0 < edit["all"]["edit (dream vs warp) PSNR"] <= 100 and 0 < edit["all"]["warp PSNR"] <= 100
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "copy-last" in report and "rollout_grid.png" in report and "## Reward replay" in report
    assert "## What the network adds to its warp" in report
    assert (tmp_path / "eval" / "warp_grid.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["rollout"][0]["n"] == rows["h=1"]["n"]


def test_evaluate_with_explicit_sampling_levels(episodes: Path, tmp_path: Path, capsys) -> None:
    """--sampling-sigmas samples at the given levels (dream, report, denoiser diagnostics); a bad list or
    one given with --sampling-steps is a one-line error."""
    out = tmp_path / "run"
    run_train(episodes, out, "--steps", "1")
    result = evaluate(EvalConfig(checkpoint=str(out / "model.pt"), context=3, horizon=4, sampling_sigmas="8,0.5",
                                 retrieval=False, probes=False, rewards=False))
    assert result["model"]["sampling_sigmas"] == [8.0, 0.5] and result["model"]["sampling_steps"] == 2
    assert "sample from noise, euler at sigma 8/0.5" in {r["method"] for r in result["denoiser"]}
    assert "sampler euler at sigma 8/0.5" in format_report(result)
    base = ["--checkpoint", str(out / "model.pt"), "--horizon", "2", "--no-retrieval", "--no-probes", "--no-rewards",
            "--no-denoiser"]
    for extra, message in ((["--sampling-sigmas", "0.5,8"], "decreasing positive"),
                           (["--sampling-sigmas", "8,x"], "--sampling-sigmas '8,x'"),
                           (["--sampling-sigmas", "8,0.5", "--sampling-steps", "3"], "not both")):
        assert evaluate_main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "Traceback" not in err


def test_reward_rate_table_counts_paid_rewards_as_the_env_pays() -> None:
    from rad_env.evaluation.rollout import horizon_masks, reward_rate_table

    dreamed = np.array([[0.9, 0.4, -0.6, 0.0], [0.0, 0.0, 0.5, 0.1]])  # expected rewards; paid: |r| >= 0.5
    real = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    rows = {r["frames"]: r for r in reward_rate_table(dreamed, real, horizon_masks(2, 4, starts=(1, 3)))}
    assert (rows["h=1-2"]["dream rewards"], rows["h=1-2"]["real rewards"]) == (1, 1)
    assert (rows["h=3-4"]["dream rewards"], rows["h=3-4"]["real rewards"]) == (2, 1)
    assert rows["all"]["dream per 1000"] == 1000 * 3 / 8 and rows["all"]["real per 1000"] == 1000 * 2 / 8


def test_stability_table_tells_haze_from_detail() -> None:
    from rad_env.evaluation.rollout import frame_contrast, frame_detail, horizon_masks, stability_table

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (3, 4, 16, 16, 3)).astype(np.uint8)  # 3 clips, 4 frames of noise
    haze = np.full_like(real, 120)  # every clip one flat grey: no detail, identical across clips
    stripes = np.zeros((1, 1, 4, 4, 3), np.uint8)
    stripes[..., ::2, :] = 100  # alternate columns 0 / 100: horizontal neighbours differ by 100
    assert frame_detail(stripes)[0, 0] == pytest.approx(50.0)  # (100 + 0) / 2
    halves = np.zeros((1, 16, 16, 3), np.uint8)
    halves[:, :8] = 200  # top half bright, bottom dark: block means 200 and 0
    assert frame_contrast(halves)[0] == pytest.approx(100.0) and frame_contrast(stripes[0], block=2)[0] == 0
    rows = {r["frames"]: r for r in stability_table(haze, real, real[:, 0], horizon_masks(3, 4, starts=(1, 2)))}
    assert rows["all"]["dream detail"] == 0 and rows["all"]["real detail"] > 50
    assert rows["all"]["dream contrast"] == 0 < rows["all"]["real contrast"]
    assert rows["all"]["dream cross-clip PSNR"] == 100 and rows["all"]["real cross-clip PSNR"] < 15
    assert rows["h=2-4"]["dream change"] == 0 and rows["h=1"]["dream change"] > 0


def test_warp_edit_table_measures_the_network_against_its_warp() -> None:
    from rad_env.evaluation.rollout import horizon_masks, warp_edit_table

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (2, 3, 16, 16, 3)).astype(np.uint8)
    blurred = np.repeat(np.repeat(real[..., ::4, ::4, :], 4, axis=-3), 4, axis=-2)  # 4x4 blocks: less detail
    masks = horizon_masks(2, 3, starts=(1, 2))
    kept = {r["frames"]: r for r in warp_edit_table(blurred, blurred, real, masks)}  # the network left the warp
    assert kept["all"]["edit (dream vs warp) PSNR"] == 100 and kept["all"]["dream PSNR"] == kept["all"]["warp PSNR"]
    redrawn = {r["frames"]: r for r in warp_edit_table(real, blurred, real, masks)}  # it drew the real frame
    assert redrawn["all"]["dream PSNR"] == 100 > redrawn["all"]["warp PSNR"]
    assert redrawn["all"]["edit (dream vs warp) PSNR"] == pytest.approx(redrawn["all"]["warp PSNR"])
    assert redrawn["all"]["dream detail"] > redrawn["all"]["warp detail"]


def test_action_probe_and_loop_closure_scores() -> None:
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (4, 3, 5, 8, 8, 3)).astype(np.uint8)  # 4 states, 3 actions, start + 4 steps
    names = ["left", "right", "forward"]
    perfect = action_probe_scores(real[:, :, 1:], real, names)
    assert perfect["accuracy"] == 1.0 and perfect["left-vs-right ratio"] == pytest.approx(1.0)
    swapped = action_probe_scores(real[:, [1, 0, 2], 1:], real, names)  # left and right exchanged
    assert swapped["accuracy"] == pytest.approx(1 / 3) and swapped["confusion"]["left->right"] == 4
    frozen = action_probe_scores(np.repeat(real[:, :1, 1:], 3, axis=1), real, names)  # ignores the action
    assert frozen["left-vs-right ratio"] == 0.0
    loop = rng.integers(0, 256, (2, 7, 8, 8, 3)).astype(np.uint8)
    loop[:, -1] = loop[:, 0]
    scores = loop_closure_scores(loop[:, 1:], loop, unrelated=10.0)
    assert scores["real psnr(last, first)"] == 100.0 and scores["dream psnr(last, first)"] == 100.0
    table = targets({"action_probe": perfect, "loop_closure": scores})
    assert [row["met"] for row in table] == ["yes", "yes", "yes"]


def test_revisit_mask() -> None:
    pos = np.array([[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [1.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    east, west = [1.0, 0.0], [-1.0, 0.0]
    direction = np.array([east, east, east, west, west, east])
    # frame 4 is back in cell 0 but facing west (seen only facing east); frame 5 faces east again.
    for window in (1, 2):
        mask = revisit_masks({"agent_pos": pos[None], "agent_dir": direction[None]}, window)
        assert mask.tolist() == [[False, False, False, False, False, True]]
    # 30 degrees off east is the same heading (tolerance 45), 90 degrees is not
    tilted = np.array([east, east, east, west, west, [np.cos(0.5), np.sin(0.5)]])
    assert revisit_masks({"agent_pos": pos[None], "agent_dir": tilted[None]}, 2)[0, -1]
    assert not revisit_masks({"agent_pos": pos[None], "agent_dir": np.array([east] * 5 + [[0.0, 1.0]])[None]}, 2)[0, -1]


def test_minecraft_revisit_mask() -> None:
    """Minecraft places: 2x2-block cells over (x, z), yaw within 30 degrees (wrapping at 360);
    unrecorded positions (NaN, frame 0 of imported episodes) never count."""
    x = np.array([np.nan, 0.5, 4.5, 8.5, 1.5, 0.2, 1.9, 0.5])
    z = np.array([np.nan, 0.5, 0.5, 0.5, 0.5, 0.7, 1.2, 0.5])
    yaw = np.array([np.nan, 170.0, 0.0, 0.0, -175.0, 90.0, 160.0, 170.0])
    mask = revisit_masks({"x": x[None], "z": z[None], "yaw": yaw[None]}, window=2)[0]
    # 4: cell (0,0) like frame 1, yaw -175 vs 170 is 15 degrees apart (wraps); 5: same cell, 80 degrees off;
    # 6: same cell, 10 degrees off frame 1 (4 is too recent for window 2); 7: same as 1
    assert mask.tolist() == [False, False, False, False, True, False, True, True]
    assert revisit_masks({"x": x[None]}, 2) is None  # no yaw/z: no places


def test_evaluation_names_every_training_seed(tmp_path: Path) -> None:
    """A checkpoint trained on recordings with seeds 0 and 2 (one directory) calls a seed-2 recording not held
    out, and a seed-1 recording held out, naming both training seeds."""
    from rad_env.data import EpisodeStore
    from rad_env.evaluate import _held_out
    from rad_env.train import data_description

    def record(path: Path, seed: int) -> Path:
        rng = np.random.default_rng(seed)
        eps = [Episode(obs=rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), action_id=np.zeros(3, np.int64),
                       action=np.zeros(3, np.int32), reward=np.zeros(3, np.float32), terminated=np.zeros(3, bool),
                       truncated=np.zeros(3, bool))]
        meta = FileMeta(source="test", action_set="memory-maze", num_actions=6, frame_shape=(8, 8, 3), seed=seed)
        return write_episodes(path, eps, meta)

    record(tmp_path / "train" / "a" / "ep.h5", 0)
    record(tmp_path / "train" / "b" / "ep.h5", 2)
    train = EpisodeStore(tmp_path / "train")
    assert train.seeds == {0, 2}
    ckpt = {"data": data_description(train, [0], [1], str(tmp_path / "train"))}
    seen = EpisodeStore(record(tmp_path / "seen.h5", 2))
    new = EpisodeStore(record(tmp_path / "new.h5", 1))
    assert "not held out" in _held_out(ckpt, seen, str(tmp_path / "seen.h5"), True)[1]
    assert _held_out(ckpt, new, str(tmp_path / "new.h5"), True)[1] == (
        "episodes recorded with seed 1, never used for training (training data: seeds 0 and 2)")
    older = {"data": {**ckpt["data"], "seeds": None}}  # checkpoints before the field: the first file's seed
    assert "training data: seed 0)" in _held_out(older, new, str(tmp_path / "new.h5"), True)[1]


def test_a_fine_tuned_model_names_the_seeds_of_its_init_models_data_too(episodes: Path, tmp_path: Path) -> None:
    """The held-out check (rad_env.evaluate) must know every recording a model's weights have seen."""
    base = run_train(episodes, tmp_path / "base", "--steps", "1")
    ckpt = load_checkpoint(base["checkpoint"])
    own = list(ckpt["data"]["seeds"])
    ckpt["data"]["seeds"] = [4242]  # as if trained on another recording
    torch.save(ckpt, tmp_path / "other.pt")
    tuned = train_cli(["--data", str(episodes), "--steps", "0", "--held-out", "0.34", "--no-tensorboard",
                       "--init", str(tmp_path / "other.pt"), "--out", str(tmp_path / "tuned")])
    assert load_checkpoint(tuned["checkpoint"])["data"]["seeds"] == sorted(set(own) | {4242})


def test_a_fine_tuned_model_counts_the_real_steps_of_every_stage_once(episodes: Path, tmp_path: Path) -> None:
    """The world model's real-experience cost (agents.compare's "real steps used"): the steps of every recording
    any stage trained on, a recording trained on again counted once."""
    base = run_train(episodes, tmp_path / "base", "--steps", "1")
    data = load_checkpoint(base["checkpoint"])["data"]
    (seed, steps), = data["steps_by_seed"].items()
    assert steps == EpisodeStore(episodes).num_steps == data["real_steps"] == data["steps"]
    ckpt = load_checkpoint(base["checkpoint"])
    ckpt["data"]["steps_by_seed"] = {4242: 1000, seed: 1}  # an earlier stage on another recording, and on less of it
    torch.save(ckpt, tmp_path / "other.pt")
    tuned = train_cli(["--data", str(episodes), "--steps", "0", "--held-out", "0.34", "--no-tensorboard",
                       "--init", str(tmp_path / "other.pt"), "--out", str(tmp_path / "tuned")])
    data = load_checkpoint(tuned["checkpoint"])["data"]
    assert data["steps_by_seed"] == {seed: steps, 4242: 1000} and data["real_steps"] == steps + 1000
