"""Teach the dream's reward head what the real maze pays an agent: its dream walks, labelled by the real maze.

PPO learns from the rewards the dream pays under the agent's own play, from random training states. There
four of five were false (docs/agents.md, session 30): the head had learned from the dreams of recorded walks
labelled with the recorded rewards, and paid what the dream draws near a reward (a wall of the target's
colour close up, a ball passed by). This tool closes the loop on the reward model, as Dreamer and DIAMOND do
on the whole world model, with the one label that is exact here:

1. the agent walks ``--steps`` steps in the dream from ``--starts`` seeded random frames of the training
   episodes (each env started from the real frames before it);
2. the real Memory Maze replays each walk: the episode's seed and actions put it in the start's state exactly,
   then the walk's actions are pressed; the step where the real maze pays labels the dreamed frame of that step;
3. the heads are trained on what they read of the dreamed frames (the world model itself is frozen), with a
   spatial head added (``--grid-channels``, :class:`rad_env.model.heads.RewardGridHead`) that sees where in
   the view a colour is;
4. the model is written as a checkpoint; PPO trains in its dream (``agents.train_ppo --checkpoint``), and the
   loop can be run again with the new agent.

Judge the result on held-out episodes with ``agents.approach_probe --at anywhere --checkpoint OUT/model.pt``
(of the rewards the dream pays the agent, how many the real maze pays too) and ``rad_env.evaluate`` (the reward
replay of issue 10).

    python -m agents.reward_loop --agent runs/ppo/ppo_dream.zip --data data/mix --starts 512 --out runs/loop1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rad_env.cli import UserError, add_dataclass_arguments, dataclass_from_args, option, removed_if_failed, \
    require_at_least, run_cli
from rad_env.runtime import AMP_CHOICES

from .approach_probe import (Start, Walks, dream_rewards_in_the_real_maze, first_rewards, random_starts,
                             run_dream, run_real)

PROG = "python -m agents.reward_loop"


@dataclass
class LoopConfig:
    """Everything one turn of the loop depends on (saved in ``loop.json`` and the checkpoint); one flag per field."""

    agent: str = option(None, "the PPO agent (.zip) whose dream walks are labelled")
    data: str = option(None, "training episodes with env seeds (collect/record.py output), never the held-out ones")
    checkpoint: str | None = option(None, "the RAD checkpoint whose heads are trained (default: the shipped tiny model)")
    grid_channels: int = option(16, "give the model a spatial reward head (every token projected to this many "
                                    "channels) if it has none; 0: train the pooled head only")
    starts: int = option(512, "dream walks, from this many seeded random frames of --data")
    steps: int = option(16, "steps of each walk (PPO's --train-max-steps)")
    dream_batch: int = option(128, "walks dreamed together")
    head_steps: int = option(4000, "optimizer steps of the heads")
    batch_size: int = option(256, "dreamed frames per optimizer step")
    lr: float = option(1e-3, "AdamW learning rate of the heads")
    weight_decay: float = option(1e-4, "AdamW weight decay of the heads")
    workers: int = option(1, "processes replaying the walks in the real maze")
    seed: int = option(0, "seed of the starts, the agent's sampling, the dream's noise and the heads' batches")
    amp: str = option("auto", "the dream's precision (auto, bf16, none)", choices=AMP_CHOICES)
    device: str = option("cpu", "device of the dream, the agent and the heads")
    threads: int = option(0, "torch CPU threads (0: half the cores, -1: torch's default)")
    out: str = option(None, "folder for model.pt (the model with its trained heads) and loop.json")

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first unusable setting."""
        for name, what in (("agent", "a saved PPO agent (.zip)"), ("data", "training episodes"), ("out", "a folder")):
            if not getattr(self, name):
                raise UserError(f"--{name} is required: {what}")
        if not Path(self.agent).is_file():
            raise UserError(f"--agent: no saved agent at {self.agent}")
        if not Path(self.data).exists():
            raise UserError(f"--data: no episodes at {self.data}")
        if self.checkpoint and not Path(self.checkpoint).is_file():
            raise UserError(f"--checkpoint: no checkpoint at {self.checkpoint}")
        if (Path(self.out) / "model.pt").exists():
            raise UserError(f"--out: {self.out} already holds a model.pt", hint="choose an empty --out")
        require_at_least(self, ("starts", "steps", "dream_batch", "head_steps", "batch_size", "workers"), 1)
        require_at_least(self, ("grid_channels",), 0)
        if not self.lr > 0:
            raise UserError(f"--lr must be > 0, got {self.lr}")


def with_grid_head(model, channels: int):
    """``model`` with a :class:`RewardGridHead` of ``channels`` channels (a new model sharing nothing with
    ``model``; its grid head starts as a zero correction, so it computes what ``model`` does). Unchanged when
    ``channels`` is 0 or the model has a grid head already."""
    from rad_env.model import WorldModel
    from rad_env.train import load_init_weights

    if channels == 0 or model.reward_grid is not None:
        return model
    grown = WorldModel(dataclasses.replace(model.config, reward_grid_channels=channels)).to(model.device)
    load_init_weights(grown, model.state_dict(), "the model to grow", verbose=False)
    return grown.eval()


def label_walks(features: np.ndarray, real_first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training frames of dream walks: ``features`` (N, steps, F) of the dreamed frames 1..steps, ``real_first``
    (N,) the step at which the real maze paid the same actions (0: never). Step k is labelled 1 where the real
    maze paid at k; a walk's steps after the real maze's reward are left out (the real target moved on, the
    dream knows nothing of it). Returns (features (M, F), rewards (M,) in {0, 1})."""
    steps = features.shape[1]
    k = np.arange(1, steps + 1)[None]
    first = np.asarray(real_first)[:, None]
    keep = (first == 0) | (k <= first)
    return features[keep], (k == first)[keep].astype(np.float32)


def train_heads(model, features: np.ndarray, rewards: np.ndarray, steps: int, batch_size: int, lr: float,
                weight_decay: float, seed: int) -> dict[str, float]:
    """Train ``model.heads()`` on head features (M, F) and rewards (M,) (the world model stays frozen). The
    frames come from walks whose real episodes did not terminate, so the termination head learns 0 there.
    Returns the first and last eighth's mean reward loss."""
    import torch

    device = model.device
    gen = torch.Generator().manual_seed(seed)
    feats = torch.from_numpy(features)
    labels = torch.from_numpy(rewards)
    params = model.freeze_all_but_heads()
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses = []
    model.train()
    try:
        for _ in range(steps):
            idx = torch.randint(len(labels), (batch_size,), generator=gen)
            f = feats[idx].to(device).float()
            r = labels[idx].to(device)
            loss, parts = model.head_loss(f, r, torch.zeros_like(r))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(parts["reward_loss"]))
    finally:
        model.requires_grad_(False)
        model.eval()
    eighth = max(1, steps // 8)
    return {"reward loss, first eighth": float(np.mean(losses[:eighth])),
            "reward loss, last eighth": float(np.mean(losses[-eighth:]))}


def head_first_rewards(model, features: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(N, steps, F) dreamed-frame features -> the step (1-based) at which ``model``'s head first pays (its
    expected reward >= ``threshold``, as the dream env pays), 0 where never."""
    import torch

    with torch.no_grad():
        expected, _ = model.predict_outcome(torch.from_numpy(features).to(model.device).float())
    return first_rewards(expected.cpu().numpy() >= threshold)


def _replay(data: str, starts: list[Start], steps: int, actions: np.ndarray, seed: int) -> np.ndarray:
    """One worker's real-maze replays: the step of each walk's first real reward (0: none)."""
    from rad_env.data import EpisodeStore

    return run_real("recorded", None, EpisodeStore(data), starts, steps, seed, actions=actions).first


def replay_in_real_maze(data: str, starts: list[Start], actions: np.ndarray, workers: int, seed: int) -> np.ndarray:
    """``actions`` (N, steps) pressed in the real maze from each start: the step of each walk's first real reward.
    Starts are split by episode between ``workers`` processes (each episode is replayed once, in order)."""
    steps = actions.shape[1]
    if workers == 1:
        return _replay(data, starts, steps, actions, seed)
    episodes = sorted({s.episode for s in starts})
    groups = [set(episodes[w::workers]) for w in range(workers)]
    parts = [[i for i, s in enumerate(starts) if s.episode in g] for g in groups]
    first = np.zeros(len(starts), np.int64)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [(idx, pool.submit(_replay, data, [starts[i] for i in idx], steps, actions[idx], seed))
                   for idx in parts if idx]
        for idx, future in futures:
            first[idx] = future.result()
    return first


def dream_walks(model, agent, store, starts: list[Start], cfg: LoopConfig) -> Walks:
    """The agent's walks in ``model``'s dream from ``starts``, ``cfg.dream_batch`` at a time (frames not kept)."""
    from rad_env.envs.context import StartFrames
    from rad_env.envs.factory import make_dream_core

    window, size = model.config.window, model.config.image_size
    blank = StartFrames(np.zeros((1, window, size, size, 3), np.uint8))
    parts = []
    for b in range(0, len(starts), cfg.dream_batch):
        chunk = starts[b:b + cfg.dream_batch]
        core = make_dream_core(model, blank, len(chunk), device=cfg.device, amp=cfg.amp)
        walks = run_dream("ppo", agent, core, store, chunk, cfg.steps, cfg.seed + b)
        parts.append(Walks(walks.first, walks.actions, walks.frames[:, :0], walks.features))
    return Walks(*(np.concatenate([getattr(w, f.name) for w in parts]) for f in dataclasses.fields(Walks)))


def run(cfg: LoopConfig) -> dict[str, Any]:
    """One turn of the loop as ``cfg`` says; writes ``OUT/model.pt`` and ``OUT/loop.json``; returns the summary."""
    from stable_baselines3 import PPO

    from rad_env.checkpoint import save_checkpoint
    from rad_env.data import EpisodeStore
    from rad_env.envs.core import load_dream_model
    from rad_env.envs.specs import MEMORY_MAZE_SPEC
    from rad_env.runtime import resolve_device, set_cpu_threads

    cfg.validate()
    set_cpu_threads(cfg.threads)
    device = resolve_device(cfg.device)
    base, ckpt = load_dream_model(cfg.checkpoint, MEMORY_MAZE_SPEC, device)
    model = with_grid_head(base, cfg.grid_channels)
    store = EpisodeStore(cfg.data)
    starts = random_starts(store, model.config.window, cfg.starts, cfg.seed)
    if not starts:
        raise UserError(f"{cfg.data}: no episode has more than {model.config.window} frames",
                        hint="record longer episodes")
    agent = PPO.load(cfg.agent, device=cfg.device)
    out = Path(cfg.out)
    timings: dict[str, float] = {}
    with removed_if_failed(out):
        begin = time.perf_counter()
        walks = dream_walks(model, agent, store, starts, cfg)
        timings["dream walks"] = time.perf_counter() - begin
        print(f"{len(starts)} dream walks of {cfg.steps} steps from {len({s.episode for s in starts})} episodes of "
              f"{cfg.data} ({timings['dream walks']:.0f} s)", flush=True)
        begin = time.perf_counter()
        real_first = replay_in_real_maze(cfg.data, starts, walks.actions, cfg.workers, cfg.seed)
        timings["real replays"] = time.perf_counter() - begin
        before = dream_rewards_in_the_real_maze(walks.first, real_first)
        print(f"the same actions in the real maze ({timings['real replays']:.0f} s): {before}", flush=True)
        features, rewards = label_walks(walks.features, real_first)
        if not rewards.any():
            raise UserError(f"the real maze paid none of the {len(starts)} walks: nothing to learn a reward from",
                            hint="more --starts, or --data with target-seeking walks (collect/record.py --policy target)")
        begin = time.perf_counter()
        losses = train_heads(model, features, rewards, cfg.head_steps, cfg.batch_size, cfg.lr, cfg.weight_decay,
                             cfg.seed)
        timings["heads"] = time.perf_counter() - begin
        after = dream_rewards_in_the_real_maze(head_first_rewards(model, walks.features), real_first)
        print(f"heads trained on {len(rewards)} dreamed frames, {int(rewards.sum())} paid by the real maze "
              f"({timings['heads']:.0f} s); on the same walks now: {after}", flush=True)
        summary = {"config": asdict(cfg), "walks": len(starts), "training frames": int(len(rewards)),
                   "rewarded frames": int(rewards.sum()), "before": before, "after (in sample)": after,
                   "losses": losses, "seconds": timings}
        out.mkdir(parents=True, exist_ok=True)
        data = ckpt.get("data") or {}
        save_checkpoint(out / "model.pt", model, train_config={**ckpt.get("train_config", {}), "reward_loop": asdict(cfg)},
                        data=data, step=int(ckpt.get("step", 0)), extra={"reward_loop": summary})
        (out / "loop.json").write_text(json.dumps(summary, indent=2))
        print(f"model: {out / 'model.pt'}  (PPO in its dream: python -m agents.train_ppo --checkpoint "
              f"{out / 'model.pt'} ...)")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, LoopConfig)
    return parser


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run(dataclass_from_args(LoopConfig, build_parser().parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 2 with a one-line error for a user mistake."""
    return run_cli(cli, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
