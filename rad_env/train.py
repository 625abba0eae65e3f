"""Train a RAD world model on recorded episodes.

    python -m rad_env.train --data data/mm9 --preset tiny --out runs/tiny
    torchrun --nproc_per_node 2 -m rad_env.train --data data/mm9 --preset small   # DDP (gloo on CPU)

Writes to ``--out``: ``model.pt`` (EMA weights, for inference), ``last.pt`` (also the raw weights and
optimizer state, to ``--resume``), ``metrics.csv`` and ``curves.png`` (loss curves), ``config.json``,
``summary.json`` and TensorBoard logs. An ``--out`` that already holds a run is refused unless
``--resume`` (continue it) or ``--overwrite`` (replace it). Episodes whose stored checksums fail are
skipped with a warning naming them (``--corrupt fail`` stops instead).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, load_world_model, save_checkpoint
from .cli import UserError, add_dataclass_arguments, dataclass_from_args, option, removed_if_failed, run_cli
from .data import Batch, EpisodeStore, EpisodeStreams, WindowDataset, split_episodes
from .model import RADConfig, RADState, WorldModel, frames_to_float
from .model.world_model import Denoised
from .model.critic import CriticConfig, FrameBuffer, FrameCritic, critic_loss, generator_loss
from .model.collision import (GATE_DREAM_BUCKETS, GATE_DREAM_HORIZON, POSITION_EXTRAS, CollisionGate,
                              dreamed_presses, performed_batch, recorded_presses)
from .model.layers import zero_
from .model.motion import MotionPrior
from .runtime import autocast_context, resolve_device, set_cpu_threads

PROG = "rad-train"
#: Files of a training run in ``--out`` (what ``--overwrite`` replaces).
RUN_FILES = ("model.pt", "last.pt", "metrics.csv", "curves.png", "config.json", "summary.json", "tb")


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in every checkpoint)."""

    data: str = option("", "HDF5 episode file or directory of them", flag="--data")
    out: str = option("runs/rad", "output directory")
    preset: str = option("tiny", "model and training preset: tiny (CPU), small (one GPU), paper (GPUs)",
                         choices=("tiny", "small", "paper"))
    model: dict[str, Any] = option(default_factory=dict, help="RADConfig overrides, e.g. memory=none window=8")
    batch_size: int = option(8, "sequences per step (per process under torchrun)")
    steps: int = option(2000, "optimisation steps (the cosine schedule's length)")
    lr: float = option(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = option(0.01, "AdamW weight decay")
    warmup: int = option(100, "linear learning-rate warm-up steps")
    grad_clip: float = option(1.0, "gradient norm clip")
    init: str = option("", "start from this checkpoint's weights and model config (fine-tuning; new schedule)")
    rollout_prob: float = option(0.0, "fraction of steps whose context frames after the first window are the "
                                      "model's own samples (teaches recovery from its own errors)")
    rollout_chunks: int = option(1, "with --tbptt: a rollout step right after a rollout step continues the "
                                    "previous chunk's dream (no real window first), up to this many chunks in a "
                                    "row, so the model learns to recover from dreams longer than one chunk")
    chained_diffusion_weight: float = option(1.0, "with --rollout-chunks > 1: weight of the diffusion (squared-error) "
                                                  "loss on a chunk that continues a dream. Tens of frames into a "
                                                  "dream the real frame cannot be inferred, so squared error teaches "
                                                  "the blurred mean; 0 leaves those frames to --adversarial-weight "
                                                  "alone (measured: docs/experiments.md)")
    heads_only: bool = option(False, "with --init: train only the reward and termination heads, the rest frozen and "
                                     "no denoising pass (with --rollout-prob / --rollout-chunks: heads that judge "
                                     "the model's own long dreams, e.g. so a dream that lost the scene pays no reward)")
    reset_memory_gates: bool = option(False, "with --init: chrono-initialise the LSTM memory's gate biases again (long "
                                             "time constants) before fine-tuning a model whose memory forgets fast")
    tbptt: bool = option(False, "truncated backprop through time: each batch row walks through whole episodes in "
                                "consecutive seq_len chunks, the memory and window carried from chunk to chunk "
                                "(detached) and reset at episode starts, so the memory learns over hundreds of "
                                "frames at the cost of one chunk per step")
    ema_decay: float = option(0.995, "EMA decay of the inference weights (ramped up as (1+n)/(10+n))")
    held_out: float = option(0.1, "fraction of episodes held out from training (kept in the checkpoint)")
    window_stride: int = option(0, "frames between training windows of an episode (0: half a window)")
    num_workers: int = option(0, "DataLoader worker processes")
    seed: int = option(0, "seed of the split, the model and the data order")
    device: str = option("auto", "auto (CUDA if available), cpu, cuda:0, ...")
    amp: str = option("auto", "mixed precision: auto (bf16 on CUDA), bf16, none", choices=("auto", "bf16", "none"))
    compile: bool = option(False, "torch.compile the model")
    log_every: int = option(20, "steps between metrics rows (and curve updates)")
    ckpt_every: int = option(500, "steps between last.pt checkpoints")
    resume: bool = option(False, "continue the run in --out from last.pt")
    overwrite: bool = option(False, "replace a run already in --out")
    corrupt: Literal["skip", "fail"] = option("skip", "episodes whose checksums fail: skip with a warning, or fail")
    tensorboard: bool = option(True, "write TensorBoard logs to <out>/tb")
    threads: int = option(-1, "torch CPU threads: -1 torch's default, 0 half the cores, n exactly")
    time_limit: float = option(0.0, "stop cleanly (with checkpoints) after this many seconds; 0: none")
    adversarial_weight: float = option(0.0, "weight of an adversarial loss on the denoiser's predictions at high "
                                            "noise levels (a frame critic trained alongside, rad_env.model.critic): "
                                            "where the context cannot tell what a frame shows, it draws one plausible "
                                            "frame instead of the blurred mean (0: off; measured, not adopted: docs/experiments.md)")
    adversarial_min_sigma: float = option(1.0, "the adversarial loss covers predictions from this noise level up")
    critic_lr: float = option(2e-4, "the frame critic's learning rate (Adam, betas 0.5 / 0.999)")
    critic_pool: str = option("patch", "the critic judges each 8x8 patch, or the whole frame (its patches' mean)",
                              choices=("patch", "frame"))
    critic_dreams: bool = option(False, "the critic also learns that a rollout step's dreamed context frames are not "
                                        "real (deep in a chained dream they are the haze a dream turns into, which "
                                        "the denoiser's predictions from a short context rarely show)")
    critic_warmup: int = option(0, "steps in which only the critic learns from the adversarial loss (the world "
                                   "model's term starts once the critic tells predictions from real frames)")
    critic_buffer: int = option(0, "with --rollout-chunks >= 2: the critic judges only deep dreams, the frames of chunks "
                                   "that continue a dream (dreamed context and predictions), kept in a buffer of this "
                                   "many frames and drawn in balanced batches against real frames; the adversarial "
                                   "term then acts only on those chunks' predictions (0: off, the critic judges each "
                                   "step's predictions)")
    critic_steps: int = option(1, "with --critic-buffer: critic Adam steps per training step")
    collision_fit_steps: int = option(1200, "batches of 128 presses that fit a new collision gate "
                                             "(--model refused_actions=...) before training")
    gate_dreams: int = option(0, "fine-tune the collision gate, before training, on the presses of this many "
                                 "16-step dreams of the training episodes (the frames it judges in a dream), "
                                 "mixed with recorded ones; 0: off (docs/experiments.md \"The gate fit to dreamed frames\")")
    gate_dream_steps: int = option(600, "batches of 128 presses (half dreamed, half recorded) of --gate-dreams")


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(batch_size=8, steps=2000, lr=1e-3, warmup=100),
    "small": dict(batch_size=16, steps=50_000, lr=4e-4, warmup=1000, ema_decay=0.999),
    "paper": dict(batch_size=32, steps=300_000, lr=1e-4, warmup=5000, ema_decay=0.9999, compile=True),
}


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def ema_with_warmup(decay: float):
    """EMA update for ``AveragedModel(multi_avg_fn=...)`` whose decay ramps up as (1 + n) / (10 + n) to
    ``decay``: a constant 0.999 would still hold 30% of the random initial weights after 1200 steps.
    Tensors that are not floating point (flags such as a motion prior's ``fitted``) are copied."""
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        floats = [i for i, p in enumerate(params) if p.is_floating_point()]
        if floats:
            torch._foreach_lerp_([ema_params[i] for i in floats], [params[i] for i in floats], 1.0 - d)
        for e, p in zip(ema_params, params):
            if not p.is_floating_point():
                e.copy_(p)
    return update


def _forever(loader: DataLoader, sampler) -> Iterator[Batch]:
    epoch = 0
    while True:
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def training_batches(cfg: TrainConfig, store: EpisodeStore, train_idx: list[int], seq_len: int, ddp: Distributed,
                     device: torch.device, extras: Sequence[str] = ()) -> Iterator[Batch]:
    """Endless training batches: with ``--tbptt`` consecutive chunks of whole episodes (row i of a batch
    continues row i of the previous one; each rank its own streams), else shuffled windows. ``extras``:
    per-frame datasets to include (:func:`rad_env.data.segment.read_segment`)."""
    if cfg.tbptt:
        return EpisodeStreams(store, seq_len, cfg.batch_size, train_idx, seed=cfg.seed + 1009 * ddp.rank,
                              extras=extras)
    dataset = WindowDataset(store, seq_len, cfg.window_stride or max(1, seq_len // 2), extras=extras,
                            episodes=train_idx)
    if ddp.enabled:
        sampler = DistributedSampler(dataset, ddp.world_size, ddp.rank, shuffle=True, seed=cfg.seed)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        collate_fn=Batch.collate, drop_last=len(dataset) >= cfg.batch_size * ddp.world_size,
                        persistent_workers=cfg.num_workers > 0, pin_memory=device.type == "cuda")
    return _forever(loader, sampler)


def frame_pairs(batches: Iterator[Batch], motion: MotionPrior, device: torch.device
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(previous frame, next frame, motion key of the transition) of every consecutive pair within an
    episode of each batch, frames as floats in [-1, 1] (what :meth:`MotionPrior.fit` takes)."""
    for batch in batches:
        y = frames_to_float(batch.frames, device)
        keep = ~batch.is_first[:, 1:].to(device).bool()
        actions = batch.prev_actions.to(device)
        keys = motion.key(actions[:, 1:], actions[:, :-1])  # an episode's first frame has the null action
        if keep.any():
            yield y[:, :-1][keep], y[:, 1:][keep], keys[keep]


def fit_motion_prior(model: WorldModel, batches: Iterator[Batch], device: torch.device, verbose: bool) -> None:
    """Fit a motion prior's flow fields to the training data, from its current flows, then its content flow if
    it has one that is not fitted yet (seconds to minutes; training refines both)."""
    motion = model.dit.motion
    db = lambda mse: 10 * math.log10(4 / max(mse, 1e-12))  # noqa: E731
    if not bool(motion.fitted):
        start = time.perf_counter()
        errors = motion.fit(frame_pairs(batches, motion, device))
        if verbose:
            shifts = ", ".join(f"{dx:+.1f}" for dx in motion.shift_pixels()[:, 0].tolist())
            print(f"motion prior fit in {time.perf_counter() - start:.0f} s: next frame {db(errors['warp_mse']):.2f} dB "
                  f"(copy the last frame: {db(errors['copy_mse']):.2f} dB); mean horizontal shift per action (px): "
                  f"{shifts}")
    if motion.content is not None and not bool(motion.content.fitted):
        start = time.perf_counter()
        errors = motion.fit_content(frame_pairs(batches, motion, device))
        if verbose:
            print(f"content flow fit in {time.perf_counter() - start:.0f} s: next frame {db(errors['warp_mse']):.2f} dB")


def fit_collision_gate(gate: CollisionGate, store: EpisodeStore, episodes: Sequence[int], steps: int,
                       device: torch.device, seed: int, verbose: bool, batch_size: int = 128) -> None:
    """Fit a collision gate to the training episodes' presses (shuffled batches of ``batch_size``)."""
    start = time.perf_counter()
    try:
        frames, actions, refused = recorded_presses(store, episodes, gate, seed=seed)
    except ValueError as exc:
        raise UserError(str(exc), hint="train on walks that step forward, or with refused_actions=[]") from exc
    rng = torch.Generator().manual_seed(seed)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        while True:
            for idx in torch.randperm(len(frames), generator=rng).split(batch_size):
                yield frames_to_float(frames[idx], device), actions[idx].to(device), refused[idx].to(device)

    result = gate.fit(batches(), steps)
    if verbose:
        print(f"collision gate fit in {time.perf_counter() - start:.0f} s to {len(frames)} presses "
              f"({int(refused.sum())} refused): over its last batches it caught {result['refused_caught']:.0%} of "
              f"the refused presses and passed {result['free_passed']:.0%} of the free ones")


def fit_collision_gate_on_dreams(model: WorldModel, store: EpisodeStore, episodes: Sequence[int], dreams: int,
                                 steps: int, device: torch.device, seed: int, verbose: bool,
                                 batch_size: int = 128) -> None:
    """Fine-tune a fitted collision gate on the presses of ``dreams`` dreams of ``episodes``
    (:func:`rad_env.model.collision.dreamed_presses`), each batch half dreamed presses, half recorded ones."""
    gate = model.collision
    assert gate is not None
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    dreamed = dreamed_presses(model, store, episodes, dreams, model.config.window, GATE_DREAM_HORIZON, seed=seed)
    model.train(was_training)
    if not len(dreamed.actions):
        raise UserError(f"--gate-dreams: the {dreams} dreams press no action the gate can refuse",
                        hint="dream walks that step forward (collect/record.py --bump P)")
    frames, actions, refused = recorded_presses(store, episodes, gate, seed=seed)
    before = dreamed.caught(gate, GATE_DREAM_BUCKETS)
    rng = torch.Generator().manual_seed(seed)
    half = batch_size // 2

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        while True:
            d = torch.randint(len(dreamed.actions), (half,), generator=rng)
            r = torch.randint(len(actions), (half,), generator=rng)
            yield (frames_to_float(torch.cat([dreamed.frames[d], frames[r]]), device),
                   torch.cat([dreamed.actions[d], actions[r]]).to(device),
                   torch.cat([dreamed.refused[d], refused[r]]).to(device))

    gate.fit(batches(), steps, lr=3e-4)
    if verbose:
        after = dreamed.caught(gate, GATE_DREAM_BUCKETS)
        print(f"collision gate fine-tuned in {time.perf_counter() - start:.0f} s on {len(dreamed.actions)} presses of "
              f"{dreams} dreams ({int(dreamed.refused.sum())} refused) and recorded ones; on those dreams "
              "(refused presses caught / free ones passed, before -> after):")
        for b, a in zip(before, after):
            print(f"  presses {b['presses']} of a dream: {b['refused caught']:.0%} -> {a['refused caught']:.0%} "
                  f"of {b['refused']} / {b['free passed']:.0%} -> {a['free passed']:.0%} of {b['free']}")


def continues_dream(batch: Batch, carried: RADState | None, dreamed_chunks: int, max_chunks: int) -> bool:
    """Whether a rollout step may dream its whole chunk on from the carried (dreamed) state: the previous
    step dreamed, the chain is shorter than ``max_chunks`` and no row starts a new episode here."""
    return (carried is not None and 1 <= dreamed_chunks < max_chunks
            and not bool(batch.is_first[:, 0].any()))


class Adversary:
    """The frame critic of ``--adversarial-weight`` and its optimiser (it exists only in training).

    Each step the denoiser's predictions from noise levels >= ``adversarial_min_sigma`` and the real
    frames they predict are the critic's batch: :meth:`generator_loss` is the term added to the world
    model's loss (gradient into the model only), :meth:`critic_step` then trains the critic on them. With
    ``--critic-buffer`` only chunks that continue a dream get the term, and the critic learns from a buffer of
    their frames instead (:meth:`buffered_steps`; the buffer is not saved: a resumed run refills it)."""

    #: frames of each side in a ``--critic-buffer`` critic batch (as ``benchmarks.critic_probe``'s)
    batch = 64

    def __init__(self, cfg: TrainConfig, device: torch.device, ddp: "Distributed"):
        self.weight, self.min_sigma = cfg.adversarial_weight, cfg.adversarial_min_sigma
        self.critic = FrameCritic(CriticConfig(pool=cfg.critic_pool)).to(device)
        self.trained: torch.nn.Module = self.critic
        if ddp.enabled:
            self.trained = torch.nn.parallel.DistributedDataParallel(
                self.critic, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, betas=(0.5, 0.999))
        self.buffer = FrameBuffer(cfg.critic_buffer) if cfg.critic_buffer else None
        self.steps = cfg.critic_steps
        self.rng = torch.Generator().manual_seed(cfg.seed + 104729 * ddp.rank)

    def select(self, denoised: Denoised, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted, real) float frames (N, C, H, W) at the positions denoised from sigma >= min_sigma."""
        chosen = denoised.sigma >= self.min_sigma
        return denoised.frames[chosen], frames_to_float(frames.to(chosen.device))[chosen]

    def generator_loss(self, predicted: torch.Tensor) -> torch.Tensor:
        self.critic.requires_grad_(False)
        try:
            return generator_loss(self.critic, predicted)
        finally:
            self.critic.requires_grad_(True)

    @staticmethod
    def dreamed(context_frames: torch.Tensor | None, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dreamed, real) float frames (N, C, H, W): the context frames a rollout step dreamed (those that differ
        from the real ones) and the real frames at their positions; empty without a rollout."""
        if context_frames is None:
            empty = frames.new_zeros((0,) + frames.shape[-1:] + frames.shape[-3:-1], dtype=torch.float32)
            return empty, empty
        frames = frames.to(context_frames.device)
        chosen = (context_frames != frames).flatten(2).any(-1)
        return frames_to_float(context_frames[chosen]), frames_to_float(frames[chosen])

    @torch.no_grad()
    def fake_accuracy(self, frames: torch.Tensor) -> float:
        """The fraction of ``frames``' patches (or frames) the critic now judges not real (NaN for none)."""
        if not len(frames):
            return float("nan")
        return float((self.critic(frames) < 0).float().mean())

    def critic_step(self, real: torch.Tensor, predicted: torch.Tensor) -> dict[str, float]:
        """One Adam step of the critic on real frames against predicted (or dreamed) ones; its metrics (NaN when
        there was nothing to judge)."""
        if not len(predicted):
            return dict.fromkeys(("critic_loss", "critic_real_acc", "critic_fake_acc"), float("nan"))
        self.optimizer.zero_grad(set_to_none=True)
        loss, metrics = critic_loss(self.trained, real, predicted)
        loss.backward()
        self.optimizer.step()
        return metrics

    def buffered_steps(self, real: torch.Tensor, fakes: torch.Tensor) -> dict[str, float]:
        """``--critic-buffer``: push ``fakes`` (N, C, H, W), then :attr:`steps` critic steps, each on up to
        :attr:`batch` frames drawn from the buffer against as many drawn from ``real``; the last step's metrics
        and the buffer's size (NaN metrics while it is empty)."""
        assert self.buffer is not None
        self.buffer.push(fakes)
        metrics = self.critic_step(real[:0], real[:0])
        n = min(self.batch, len(self.buffer))
        for _ in range(self.steps if n else 0):
            chosen = torch.randint(0, len(real), (n,), generator=self.rng).to(real.device)
            metrics = self.critic_step(real[chosen], self.buffer.sample(n, self.rng).to(real.device))
        return {**metrics, "critic_buffer": float(len(self.buffer))}

    def state_dict(self) -> dict[str, Any]:
        return {"critic": self.critic.state_dict(), "critic_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["critic_optimizer"])


def _lr_lambda(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))  # cosine to 10%
    return factor


def data_description(store: EpisodeStore, train_idx: list[int], held_idx: list[int], path: str,
                     init_seeds: Sequence[int] = (), init_steps: dict[int, int] | None = None) -> dict[str, Any]:
    """What the checkpoint says about its data. ``path`` is kept as the user gave it (a relative path
    stays relative); the recording seeds tell held-out recordings apart: those of ``store`` and
    ``init_seeds``, the seeds of the data the ``--init`` model was trained on (its weights have seen it).
    ``steps_by_seed`` counts the real env steps recorded per seed over every stage (``init_steps``: the
    ``--init`` model's; a recording seen again counts once, at its largest), the real experience the world model
    cost: ``real_steps`` is their sum."""
    meta = store.meta
    assert meta is not None
    steps_by_seed = {int(k): int(v) for k, v in (init_steps or {}).items()}
    for seed, steps in store.steps_by_seed.items():
        steps_by_seed[seed] = max(steps, steps_by_seed.get(seed, 0))
    return {
        "steps_by_seed": dict(sorted(steps_by_seed.items())), "real_steps": sum(steps_by_seed.values()),
        "path": str(path), "source": meta.source, "action_set": meta.action_set,
        "num_actions": meta.num_actions, "frame_shape": list(meta.frame_shape), "seed": meta.seed,
        "seeds": sorted(set(store.seeds) | set(init_seeds)),
        "episodes": len(store), "steps": store.num_steps,
        "train_episodes": train_idx, "held_out_episodes": held_idx,
    }


def prepare_output(cfg: TrainConfig) -> None:
    """Refuse to mix two runs in one ``--out``: an existing run needs ``--resume`` or ``--overwrite``."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if not existing or cfg.resume:
        return
    if not cfg.overwrite:
        raise UserError(f"{out} already holds a training run ({', '.join(existing)})",
                        hint="pass --resume to continue it, --overwrite to replace it, or another --out")
    for name in existing:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def load_init_weights(model: WorldModel, weights: dict[str, torch.Tensor], path: str, verbose: bool) -> list[str]:
    """Load ``--init`` weights into ``model``. Parts the new config adds keep their fresh initialisation
    (``pixel_channels``' head starts as a zero correction, so the model computes what it did); weights
    the new model has no place for are a user error. Returns the names left fresh."""
    motion = model.dit.motion
    flow = weights.get("dit.motion.flow")
    if motion is not None and motion.pairs and flow is not None and flow.shape[0] == motion.num_ids:
        # a model without motion_pairs: each pair starts from its action's flow, then all are refit to the data
        weights = {**weights, "dit.motion.flow": motion.expand_to_pairs(flow),
                   "dit.motion.fitted": torch.zeros((), dtype=torch.bool)}
        if verbose:
            print(f"--init {path}: motion_pairs added; each pair's flow starts from its action's and is refit")
    weights = _widen_stem_input(model, weights, path, verbose)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        raise UserError(f"--init {path} does not fit the model --model describes: {str(exc).splitlines()[-1].strip()}",
                        hint="--model may change training settings or add parts, not resize the network") from exc
    def first_names(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

    if unexpected:
        raise UserError(f"--init {path} has weights the new model lacks ({first_names(unexpected)})",
                        hint="--model can add parts to a fine-tuned model, not remove them")
    if missing and verbose:
        print(f"--init {path}: {len(missing)} new tensors start fresh ({first_names(missing)})")
    if "dit.motion.flow" in missing:
        # The network predicted the frame; with a motion prior it predicts the correction to the warped
        # previous frame. Its read-out starts at zero (the model dreams the warp alone, then learns the rest)
        # rather than adding the whole frame to the warp.
        zero_(model.dit.stem.out)
        if verbose:
            print(f"--init {path}: motion prior added; the stem's read-out starts at zero")
    return list(missing)


def _widen_stem_input(model: WorldModel, weights: dict[str, torch.Tensor], path: str, verbose: bool
                      ) -> dict[str, torch.Tensor]:
    """``--init`` weights whose stem reads one input channel fewer than the model's (``prior_input`` adds the
    last, where the warp holds pixels): its input weights start at zero. The channels before it change
    meaning a little (the warp now of the clean frame, through the canvas), so the fine-tune starts close
    to, not exactly at, what the loaded model computed."""
    cfg = model.config
    name = "dit.stem.embed.weight" if cfg.stem == "patch" else "dit.stem.inp.weight"
    weight = weights.get(name)
    if not cfg.prior_input or weight is None:
        return weights
    old_channels = cfg.stem_in_channels - 1
    per_channel = cfg.patch_size ** 2 if cfg.stem == "patch" else 1
    if weight.shape[1] != old_channels * per_channel:
        return weights  # already wide (or another shape: load_state_dict names the mismatch)
    pad = weight.new_zeros(weight.shape[0], per_channel, *weight.shape[2:])
    if verbose:
        print(f"--init {path}: prior_input added; the stem's new input channel starts at zero")
    return {**weights, name: torch.cat([weight, pad], dim=1)}


def split_without_corrupt(store: EpisodeStore, cfg: TrainConfig, is_main: bool) -> tuple[list[int], list[int]]:
    """Train/held-out episode indices, without episodes whose stored checksums fail."""
    train_idx, held_idx = split_episodes(len(store), cfg.held_out, cfg.seed)
    bad = store.find_corrupt()
    if not bad:
        return train_idx, held_idx
    if cfg.corrupt == "fail":
        raise next(iter(bad.values()))
    if is_main:
        listed = "; ".join(str(exc) for exc in bad.values())
        warnings.warn(f"skipping {len(bad)} corrupt episode(s): {listed}", stacklevel=2)
    train_idx = [i for i in train_idx if i not in bad]
    held_idx = [i for i in held_idx if i not in bad]
    if not train_idx:
        raise UserError(f"{cfg.data}: every training episode is corrupt")
    return train_idx, held_idx


def training_curves_png(csv_path: Path, png_path: Path) -> Path | None:
    """Plot the losses of ``metrics.csv`` against the step (log scale); None if there are no rows."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in rows]
    keys = [k for k in rows[0] if k.endswith("loss") or "loss_" in k]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in keys:
        values = [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in rows]
        ax.plot(steps, values, label=key, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("losses")
    ax.legend(fontsize=7)
    for key in ("lr", "grad_norm"):
        if key in rows[0]:
            ax2.plot(steps, [float(r[key]) for r in rows], label=key, linewidth=1)
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_title("learning rate, gradient norm")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training; returns a summary (final loss, throughput, checkpoint path)."""
    if not cfg.data:
        raise UserError("no training data: pass the episode file or directory with --data")
    device = resolve_device(cfg.device)
    set_cpu_threads(cfg.threads)
    ddp = setup_distributed(device)
    if ddp.enabled and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed + ddp.rank)
    out = Path(cfg.out)
    if ddp.is_main:
        prepare_output(cfg)

    store = EpisodeStore(cfg.data)
    train_idx, held_idx = split_without_corrupt(store, cfg, ddp.is_main)
    meta = store.meta
    assert meta is not None
    if meta.frame_shape[0] != meta.frame_shape[1]:
        raise UserError(f"{cfg.data}: frames must be square, the data has {meta.frame_shape}")
    if not 0.0 <= cfg.rollout_prob <= 1.0:
        raise UserError(f"--rollout-prob must be in [0, 1], got {cfg.rollout_prob}")
    if cfg.rollout_chunks < 1:
        raise UserError(f"--rollout-chunks must be >= 1, got {cfg.rollout_chunks}")
    if cfg.rollout_chunks > 1 and not (cfg.tbptt and cfg.rollout_prob):
        raise UserError("--rollout-chunks > 1 continues dreams across chunks: it needs --tbptt and --rollout-prob > 0")
    if not cfg.chained_diffusion_weight >= 0:
        raise UserError(f"--chained-diffusion-weight must be >= 0, got {cfg.chained_diffusion_weight}")
    if cfg.chained_diffusion_weight != 1 and cfg.rollout_chunks < 2:
        raise UserError("--chained-diffusion-weight weighs chunks that continue a dream: it needs --rollout-chunks >= 2")
    if cfg.chained_diffusion_weight == 0 and not cfg.adversarial_weight:
        raise UserError("--chained-diffusion-weight 0 leaves chained chunks to the adversarial loss alone: "
                        "set --adversarial-weight > 0")
    if cfg.heads_only and not cfg.init:
        raise UserError("--heads-only trains the heads of a trained model: pass its checkpoint with --init")
    if not cfg.adversarial_weight >= 0:
        raise UserError(f"--adversarial-weight must be >= 0, got {cfg.adversarial_weight}")
    if cfg.critic_dreams and not (cfg.adversarial_weight and cfg.rollout_prob):
        raise UserError("--critic-dreams shows the critic the frames rollouts dream: it needs --adversarial-weight > 0 "
                        "and --rollout-prob > 0")
    if cfg.adversarial_weight and cfg.heads_only:
        raise UserError("--adversarial-weight trains the denoiser; --heads-only freezes it: use one or the other")
    if cfg.critic_buffer < 0 or cfg.critic_steps < 1:
        raise UserError(f"--critic-buffer must be >= 0 and --critic-steps >= 1, got {cfg.critic_buffer} and "
                        f"{cfg.critic_steps}")
    if cfg.critic_buffer and not (cfg.adversarial_weight and cfg.rollout_chunks >= 2):
        raise UserError("--critic-buffer keeps the frames of chained dreams for the critic: it needs "
                        "--adversarial-weight > 0 and --rollout-chunks >= 2")
    if cfg.critic_buffer and cfg.critic_dreams:
        raise UserError("--critic-buffer already shows the critic the dreamed frames of chained chunks: drop --critic-dreams")
    if cfg.critic_steps != 1 and not cfg.critic_buffer:
        raise UserError("--critic-steps draws balanced batches from --critic-buffer: set --critic-buffer N too")
    init_weights, init_seeds, init_steps = None, [], None
    try:
        if cfg.init:
            init_model, init_ckpt = load_world_model(cfg.init)
            init_seeds = list(init_ckpt.get("data", {}).get("seeds") or [])
            init_steps = init_ckpt.get("data", {}).get("steps_by_seed")
            model_cfg = RADConfig.from_dict({**init_model.config.to_dict(), **cfg.model})
            init_weights = init_model.state_dict()
        else:
            model_cfg = RADConfig.preset(cfg.preset, **{"image_size": meta.frame_shape[0],
                                                        "num_actions": meta.num_actions, **cfg.model})
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad model settings {cfg.model}: {exc}") from exc
    if cfg.gate_dreams < 0 or cfg.gate_dream_steps < 1:
        raise UserError(f"--gate-dreams must be >= 0 and --gate-dream-steps >= 1, got {cfg.gate_dreams} and "
                        f"{cfg.gate_dream_steps}")
    if cfg.gate_dreams and not model_cfg.refused_actions:
        raise UserError("--gate-dreams fine-tunes the collision gate: the model has none",
                        hint="add --model refused_actions=...")
    if cfg.init and (model_cfg.image_size, model_cfg.num_actions) != (meta.frame_shape[0], meta.num_actions):
        raise UserError(f"--init {cfg.init} is a model of {model_cfg.image_size}px frames and "
                        f"{model_cfg.num_actions} actions; {cfg.data} has {meta.frame_shape[0]}px and "
                        f"{meta.num_actions}", hint="fine-tune on data of the same environment")
    if model_cfg.motion_prior and model_cfg.seq_len < 2:
        raise UserError(f"motion_prior=true is fit to consecutive frames: seq_len must be >= 2, "
                        f"got {model_cfg.seq_len}")
    if cfg.tbptt and model_cfg.cache_frames is None:
        raise UserError("--tbptt carries a bounded window from chunk to chunk; memory=full keeps every frame",
                        hint="use memory=lstm, linear or none, or train full attention without --tbptt")
    extras: tuple[str, ...] = ()
    if model_cfg.refused_actions:
        lacking = [store.episodes[e] for e in train_idx if "agent_pos" not in store.group(store.episodes[e])]
        if lacking:
            raise UserError(f"{lacking[0].file}:{lacking[0].key} has no agent_pos: the collision gate "
                            "(refused_actions) learns which presses the maze refused from the agent's positions",
                            hint="record Memory Maze with collect/record.py, or train with refused_actions=[]")
        extras = POSITION_EXTRAS
    batches = training_batches(cfg, store, train_idx, model_cfg.seq_len, ddp, device, extras)

    model = WorldModel(model_cfg)
    if init_weights is not None:
        load_init_weights(model, init_weights, cfg.init, ddp.is_main)
    if cfg.reset_memory_gates:
        if model_cfg.memory != "lstm":
            raise UserError(f"--reset-memory-gates needs memory=lstm, the model has memory={model_cfg.memory}")
        gen = torch.Generator().manual_seed(cfg.seed)
        for blk in model.dit.blocks:
            blk.memory.reset_gates(gen)
    model = model.to(device)
    last_path = out / "last.pt"
    resuming = cfg.resume and last_path.exists()
    if model.dit.motion is not None and model.dit.motion.needs_fit and not resuming:
        fit_motion_prior(model, training_batches(cfg, store, train_idx, model_cfg.seq_len, ddp, device), device,
                         ddp.is_main)
    if model.collision is not None and not bool(model.collision.fitted) and not resuming:
        fit_collision_gate(model.collision, store, train_idx, cfg.collision_fit_steps, device, cfg.seed, ddp.is_main)
    if cfg.gate_dreams and not resuming:
        fit_collision_gate_on_dreams(model, store, train_idx, cfg.gate_dreams, cfg.gate_dream_steps, device,
                                     cfg.seed, ddp.is_main)
    if model.collision is not None:
        model.collision.requires_grad_(False)  # fit to the presses before training, not by the world model's loss
    if cfg.heads_only:
        model.freeze_all_but_heads()
    trained = [p for p in model.parameters() if p.requires_grad]
    ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(cfg.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    adversary = Adversary(cfg, device, ddp) if cfg.adversarial_weight else None
    step = 0
    if resuming:
        ckpt = load_checkpoint(last_path)
        if "model_online" not in ckpt or "optimizer" not in ckpt:
            raise UserError(f"{last_path} holds no training state to resume from")
        model.load_state_dict(ckpt["model_online"])
        ema.module.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["extra"]["scheduler"])
        ema.n_averaged.fill_(int(ckpt["extra"]["ema_n_averaged"]))
        if adversary is not None:
            if "critic" not in ckpt["extra"]:
                raise UserError(f"{last_path} was trained without --adversarial-weight: it holds no critic to resume")
            adversary.load_state_dict(ckpt["extra"])
        step = int(ckpt["step"])
    train_model: torch.nn.Module = model
    if cfg.compile:
        train_model = torch.compile(model)
    if ddp.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)

    description = data_description(store, train_idx, held_idx, cfg.data, init_seeds, init_steps)
    train_dict = asdict(cfg)

    def checkpoint(path: Path, with_train_state: bool) -> None:
        """EMA weights for inference; with the train state also raw weights + optimizer."""
        if with_train_state:
            extra = {"scheduler": scheduler.state_dict(), "ema_n_averaged": int(ema.n_averaged)}
            if adversary is not None:
                extra.update(adversary.state_dict())
            save_checkpoint(path, model, train_config=train_dict, data=description, step=step,
                            optimizer_state=optimizer.state_dict(), ema_state=ema.module, extra=extra)
        else:
            save_checkpoint(path, ema.module, train_config=train_dict, data=description, step=step)

    log_file = csv_writer = tb = None
    if ddp.is_main:
        out.mkdir(parents=True, exist_ok=True)
        log_file = open(out / "metrics.csv", "a", newline="")
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(out / "tb"))
        (out / "config.json").write_text(json.dumps({"train": train_dict, "model": model_cfg.to_dict(),
                                                     "data": {k: v for k, v in description.items()
                                                              if not k.endswith("_episodes")}}, indent=2))
    carried = None  # the state the next batch continues (tbptt)
    frames_per_step = cfg.batch_size * model_cfg.seq_len * ddp.world_size
    bar = tqdm(total=cfg.steps, initial=step, disable=not ddp.is_main, desc="train", dynamic_ncols=True)
    start = time.perf_counter()
    start_step, loss_value, metrics, fps = step, float("nan"), {}, 0.0
    amp = autocast_context(device, cfg.amp)
    rollout_rng = torch.Generator().manual_seed(cfg.seed + 7919 * ddp.rank)
    dreamed_chunks = 0  # consecutive chunks the carried state has dreamed (--rollout-chunks)
    model.train()
    while step < cfg.steps:
        batch = next(batches).to(device, non_blocking=True)
        if model.collision is not None:  # trained on the actions as performed
            batch = performed_batch(batch, model.collision)
        context_frames = None
        if cfg.rollout_prob and float(torch.rand((), generator=rollout_rng)) < cfg.rollout_prob:
            first_dreamed = min(model_cfg.window, model_cfg.seq_len - 1)
            if continues_dream(batch, carried, dreamed_chunks, cfg.rollout_chunks):
                first_dreamed, dreamed_chunks = 0, dreamed_chunks + 1
            else:
                dreamed_chunks = 1
            with amp:
                context_frames = model.rollout_frames(batch, start=first_dreamed, state=carried)
        else:
            dreamed_chunks = 0
        with amp:
            loss, metrics, after, denoised = train_model(
                batch, context_frames=context_frames, state=carried, heads_only=cfg.heads_only,
                keep_denoised=adversary is not None,
                diffusion_scale=cfg.chained_diffusion_weight if dreamed_chunks >= 2 else 1.0)
        if cfg.tbptt:
            carried = after
        if adversary is not None:
            predicted, real = adversary.select(denoised, batch.frames)
            deep = dreamed_chunks >= 2  # this chunk continues a dream: its frames are the critic's fakes
            if adversary.buffer is not None and not deep:  # --critic-buffer: the term acts on deep dreams only
                predicted = predicted[:0]
            metrics["adversarial_loss"] = float("nan")
            if len(predicted) and step >= cfg.critic_warmup:
                adversarial = adversary.generator_loss(predicted)
                loss = loss + adversary.weight * adversarial
                metrics["adversarial_loss"] = float(adversarial.detach())
        metrics["own_context"] = float(context_frames is not None)
        metrics["dreamed_chunks"] = float(dreamed_chunks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        ema.update_parameters(model)
        if adversary is not None and adversary.buffer is not None:
            dreamed = adversary.dreamed(context_frames if deep else None, batch.frames)[0].to(predicted.device)
            fakes = torch.cat([predicted.detach().float(), dreamed])
            metrics.update(adversary.buffered_steps(frames_to_float(batch.frames.flatten(0, 1)).to(predicted.device),
                                                    fakes))
            metrics["critic_dream_acc"] = adversary.fake_accuracy(fakes)
        elif adversary is not None:
            dreamed = None
            if cfg.critic_dreams:
                dreamed, dreamed_real = adversary.dreamed(context_frames, batch.frames)
                dreamed = dreamed.to(predicted.device)
                metrics["critic_predicted"], metrics["critic_dreamed"] = float(len(predicted)), float(len(dreamed))
                real, predicted = torch.cat([real, dreamed_real.to(real.device)]), torch.cat([predicted, dreamed])
            metrics.update(adversary.critic_step(real, predicted))
            if dreamed is not None:
                metrics["critic_dream_acc"] = adversary.fake_accuracy(dreamed)
        step += 1
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss became {loss_value} at step {step}; lower --lr or check the data")
        elapsed = time.perf_counter() - start
        fps = (step - start_step) * frames_per_step / max(elapsed, 1e-9)
        if ddp.is_main:
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                row = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                       "grad_norm": float(grad_norm), "frames_per_s": fps, **metrics}
                bar.set_postfix(loss=f"{loss_value:.4f}", fps=f"{fps:.0f}")
                if csv_writer is None:
                    csv_writer = csv.DictWriter(log_file, fieldnames=list(row), extrasaction="ignore")
                    if log_file.tell() == 0:
                        csv_writer.writeheader()
                csv_writer.writerow(row)
                log_file.flush()
                if tb is not None:
                    for key, value in row.items():
                        if key != "step":
                            tb.add_scalar(f"train/{key}", value, step)
            if step % cfg.ckpt_every == 0 and step < cfg.steps:  # the last step is saved below
                checkpoint(last_path, with_train_state=True)
                training_curves_png(out / "metrics.csv", out / "curves.png")
        if cfg.time_limit and elapsed > cfg.time_limit:
            break
    bar.close()
    summary = {"step": step, "loss": loss_value, "frames_per_s": fps,
               "seconds": time.perf_counter() - start, "parameters": model.num_parameters(),
               "checkpoint": str(out / "model.pt"), **{f"final_{k}": v for k, v in metrics.items()}}
    if ddp.is_main:
        checkpoint(last_path, with_train_state=True)
        checkpoint(out / "model.pt", with_train_state=False)
        log_file.close()
        curves = training_curves_png(out / "metrics.csv", out / "curves.png")
        if curves:
            summary["curves"] = str(curves)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if tb is not None:
            tb.close()
    if ddp.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(pairs: Sequence[str], flag: str = "--model") -> dict[str, Any]:
    """``["dim=64", "memory=none"]`` -> ``{"dim": 64, "memory": "none"}``; errors name ``flag``."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"{flag} expects KEY=VALUE pairs, got {pair!r}")
        result[key.strip()] = _parse_value(value)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, TrainConfig, skip=("model",))
    parser.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE",
                        help="model config overrides (RADConfig fields), e.g. memory=none window=8 stem=conv")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = dict(vars(args))
    overrides = parse_overrides(given.pop("model"))
    base = {**TRAIN_PRESETS[given.get("preset", TrainConfig.preset)], "model": overrides}
    return dataclass_from_args(TrainConfig, given, base=base)


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, train, print the summary (rank 0); returns it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "data", ""):
        parser.error("the following arguments are required: --data")
    cfg = config_from_args(args)
    with removed_if_failed(cfg.out):
        summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``rad-train``): 0 on success, 2 with a one-line error for a user mistake."""
    return run_cli(cli, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
