"""Train a RAD world model on recorded episodes.

    python -m rad_env.train --data data/mm9 --preset tiny --out runs/tiny
    torchrun --nproc_per_node 2 -m rad_env.train --data data/mm9 --preset small   # DDP (gloo on CPU)

Checkpoints hold the EMA weights for inference plus (in ``last.pt``) the raw weights and optimizer
state to resume from (``--resume``). Metrics go to ``<out>/metrics.csv`` and TensorBoard.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .data import EpisodeStore, WindowDataset, split_episodes
from .model import RADConfig, WorldModel
from .runtime import autocast_context, resolve_device, set_cpu_threads


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in every checkpoint)."""

    data: str = ""
    out: str = "runs/rad"
    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)  # RADConfig overrides
    batch_size: int = 8
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    held_out: float = 0.1
    window_stride: int = 0  # 0: half the sequence length
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 on CUDA), bf16, none
    compile: bool = False
    log_every: int = 20
    ckpt_every: int = 500
    resume: bool = False
    tensorboard: bool = True
    threads: int = -1  # CPU threads for torch: -1 torch's default, 0 half the cores, n exactly
    time_limit: float = 0.0  # seconds; 0 = none. Stops cleanly with a checkpoint.


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


def _forever(loader: DataLoader, sampler) -> Iterator[dict[str, torch.Tensor]]:
    epoch = 0
    while True:
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _lr_lambda(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))  # cosine to 10%
    return factor


def data_description(store: EpisodeStore, train_idx: list[int], held_idx: list[int], path: str) -> dict[str, Any]:
    meta = store.meta
    assert meta is not None
    return {
        "path": str(path), "source": meta.source, "action_set": meta.action_set,
        "num_actions": meta.num_actions, "frame_shape": list(meta.frame_shape),
        "episodes": len(store), "steps": store.num_steps,
        "train_episodes": train_idx, "held_out_episodes": held_idx,
    }


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training; returns a summary (final loss, throughput, checkpoint path)."""
    if not cfg.data:
        raise ValueError("TrainConfig.data is empty: pass the episode file or directory (--data)")
    device = resolve_device(cfg.device)
    set_cpu_threads(cfg.threads)
    ddp = setup_distributed(device)
    if ddp.enabled and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed + ddp.rank)
    out = Path(cfg.out)
    if ddp.is_main:
        out.mkdir(parents=True, exist_ok=True)

    store = EpisodeStore(cfg.data)
    train_idx, held_idx = split_episodes(len(store), cfg.held_out, cfg.seed)
    meta = store.meta
    assert meta is not None
    if meta.frame_shape[0] != meta.frame_shape[1]:
        raise ValueError(f"frames must be square, data has {meta.frame_shape}")
    model_cfg = RADConfig.preset(cfg.preset, **{"image_size": meta.frame_shape[0],
                                                "num_actions": meta.num_actions, **cfg.model})
    dataset = WindowDataset(store, model_cfg.seq_len, cfg.window_stride or max(1, model_cfg.seq_len // 2),
                            episodes=train_idx)
    if ddp.enabled:
        sampler = DistributedSampler(dataset, ddp.world_size, ddp.rank, shuffle=True, seed=cfg.seed)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        drop_last=len(dataset) >= cfg.batch_size * ddp.world_size,
                        persistent_workers=cfg.num_workers > 0, pin_memory=device.type == "cuda")

    model = WorldModel(model_cfg).to(device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    step = 0
    last_path = out / "last.pt"
    if cfg.resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        if "model_online" not in ckpt or "optimizer" not in ckpt:
            raise ValueError(f"{last_path} holds no training state to resume from")
        model.load_state_dict(ckpt["model_online"])
        ema.module.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["extra"]["scheduler"])
        ema.n_averaged.fill_(int(ckpt["extra"]["ema_n_averaged"]))
        step = int(ckpt["step"])
    train_model: torch.nn.Module = model
    if cfg.compile:
        train_model = torch.compile(model)
    if ddp.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)

    description = data_description(store, train_idx, held_idx, cfg.data)
    train_dict = asdict(cfg)

    def checkpoint(path: Path, with_train_state: bool) -> None:
        """EMA weights for inference; with the train state also raw weights + optimizer."""
        if with_train_state:
            save_checkpoint(path, model, train_config=train_dict, data=description, step=step,
                            optimizer_state=optimizer.state_dict(), ema_state=ema.module,
                            extra={"scheduler": scheduler.state_dict(), "ema_n_averaged": int(ema.n_averaged)})
        else:
            save_checkpoint(path, ema.module, train_config=train_dict, data=description, step=step)

    log_file = csv_writer = tb = None
    if ddp.is_main:
        log_file = open(out / "metrics.csv", "a", newline="")
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                tb = SummaryWriter(str(out / "tb"))
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                tb = None
        (out / "config.json").write_text(json.dumps({"train": train_dict, "model": model_cfg.to_dict(),
                                                     "data": {k: v for k, v in description.items()
                                                              if not k.endswith("_episodes")}}, indent=2))
    batches = _forever(loader, sampler)
    frames_per_step = cfg.batch_size * model_cfg.seq_len * ddp.world_size
    bar = tqdm(total=cfg.steps, initial=step, disable=not ddp.is_main, desc="train", dynamic_ncols=True)
    start = time.perf_counter()
    start_step, loss_value, metrics = step, float("nan"), {}
    amp = autocast_context(device, cfg.amp)
    model.train()
    while step < cfg.steps:
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with amp:
            loss, metrics = train_model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        ema.update_parameters(model)
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
            if step % cfg.ckpt_every == 0:
                checkpoint(last_path, with_train_state=True)
        if cfg.time_limit and elapsed > cfg.time_limit:
            break
    bar.close()
    summary = {"step": step, "loss": loss_value, "frames_per_s": fps if step > start_step else 0.0,
               "seconds": time.perf_counter() - start, "parameters": model.num_parameters(),
               "checkpoint": str(out / "model.pt"), **{f"final_{k}": v for k, v in metrics.items()}}
    if ddp.is_main:
        checkpoint(last_path, with_train_state=True)
        checkpoint(out / "model.pt", with_train_state=False)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if log_file:
            log_file.close()
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


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["dim=64", "memory=none"]`` -> ``{"dim": 64, "memory": "none"}``."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {pair!r}")
        result[key.strip()] = _parse_value(value)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rad-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="HDF5 episode file or directory")
    parser.add_argument("--preset", default="tiny", choices=sorted(TRAIN_PRESETS),
                        help="model and training preset (tiny: CPU minutes; small; paper: GPUs)")
    parser.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE",
                        help="model config overrides, e.g. memory=none window=4 dim=64")
    for f in fields(TrainConfig):
        if f.name in ("data", "preset", "model"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            caster = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=caster, default=None)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {**TRAIN_PRESETS[args.preset], "data": args.data, "preset": args.preset,
                              "model": parse_overrides(args.model)}
    for f in fields(TrainConfig):
        given = getattr(args, f.name, None)
        if f.name not in ("data", "preset", "model") and given is not None:
            values[f.name] = given
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    summary = train(config_from_args(args))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
