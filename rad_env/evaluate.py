"""Evaluate a RAD checkpoint on held-out episodes: condition on real frames, dream the rest.

    python -m rad_env.evaluate --checkpoint runs/tiny/model.pt --context 4 --horizon 64 --out runs/tiny/eval

For each episode the model observes ``context`` real frames, then generates ``horizon`` frames from
the true actions. PSNR/SSIM are reported per horizon bucket, for frames beyond the attention window
(no real frame left in the window) and, when the data has ``agent_pos``/``agent_dir``, for
*revisits*: frames beyond the window whose place and heading were seen earlier, outside the window.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_world_model
from .data import EpisodeStore
from .metrics import LPIPS_UNAVAILABLE, frame_metrics
from .runtime import resolve_device
from .video import write_side_by_side


@dataclass
class EvalConfig:
    checkpoint: str
    data: str = ""  # default: the checkpoint's training data (its held-out episodes)
    episodes: int = 8
    context: int = 4
    horizon: int = 64
    sampling_steps: int = 0  # 0: the model's default
    buckets: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)
    device: str = "auto"
    seed: int = 0
    out: str = ""  # where to write metrics.json and the side-by-side video
    video_episodes: int = 2


@torch.no_grad()
def dream_rollout(model, frames: torch.Tensor, prev_actions: torch.Tensor, context: int,
                  steps: int | None = None, seed: int = 0) -> torch.Tensor:
    """Observe ``frames[:, :context]``, then generate the rest from ``prev_actions``.

    frames: uint8 (B, T, H, W, 3); prev_actions: int64 (B, T). Returns uint8 (B, T - context, H, W, 3).
    """
    batch, total = prev_actions.shape
    device = next(model.parameters()).device
    generators = [torch.Generator(device=device).manual_seed(seed + i) for i in range(batch)]
    state = model.init_state(batch, device=device)
    for t in range(context):
        state = model.observe(frames[:, t].to(device), prev_actions[:, t].to(device), state)
    generated = []
    for t in range(context, total):
        frame, _, _, state = model.imagine(prev_actions[:, t].to(device), state, steps=steps, generators=generators)
        generated.append(frame.cpu())
    return torch.stack(generated, 1)


def revisit_mask(agent_pos: np.ndarray, agent_dir: np.ndarray, window: int, min_cos: float = 0.7) -> np.ndarray:
    """``mask[t]``: the agent's cell and heading at frame t were seen at some frame ``j <= t - window``."""
    cells = np.floor(agent_pos).astype(np.int64)
    direction = agent_dir / np.maximum(np.linalg.norm(agent_dir, axis=-1, keepdims=True), 1e-8)
    mask = np.zeros(len(cells), dtype=bool)
    for t in range(window, len(cells)):
        earlier = slice(0, t - window + 1)
        same_cell = np.all(cells[earlier] == cells[t], axis=-1)
        facing = direction[earlier] @ direction[t] >= min_cos
        mask[t] = bool(np.any(same_cell & facing))
    return mask


def _bucket_names(buckets: tuple[int, ...], horizon: int) -> list[tuple[str, int, int]]:
    names = []
    for lo, hi in zip(buckets, list(buckets[1:]) + [10**9]):
        if lo > horizon:
            break
        hi = min(hi - 1, horizon)
        names.append((f"{lo}-{hi}", lo, hi))
    return names


def summarise(per_frame: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean of each metric over the frames each mask selects (with the frame count)."""
    table = {}
    for name, mask in masks.items():
        if mask.any():
            table[name] = {"frames": int(mask.sum()), **{k: float(v[mask].mean()) for k, v in per_frame.items()}}
    return table


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    model, ckpt = load_world_model(cfg.checkpoint, device=device)
    model.eval()
    window = model.config.window
    data_path = cfg.data or ckpt["data"].get("path", "")
    store = EpisodeStore(data_path)
    chosen = list(range(len(store)))
    if not cfg.data or Path(cfg.data) == Path(ckpt["data"].get("path", "")):
        held = ckpt["data"].get("held_out_episodes") or []
        chosen = [e for e in held if e < len(store)] or chosen
    total = cfg.context + cfg.horizon
    chosen = [e for e in chosen if store.episodes[e].num_frames >= total][: cfg.episodes]
    if not chosen:
        raise ValueError(f"no episode in {data_path} has {total} frames (context {cfg.context} + horizon {cfg.horizon})")
    if store.meta.num_actions != model.config.num_actions:
        raise ValueError(f"data has {store.meta.num_actions} actions, the model {model.config.num_actions}")

    null = store.meta.num_actions
    frames, prev_actions, extras = [], [], {"agent_pos": [], "agent_dir": []}
    for e in chosen:
        ref = store.episodes[e]
        frames.append(store.read(ref, "obs", 0, total))
        ids = store.read(ref, "action_id", 0, total - 1)
        prev_actions.append(np.concatenate([[null], ids]))
        group = store.group(ref)
        for key in extras:
            if key in group:
                extras[key].append(group[key][:total])
    frames_t = torch.from_numpy(np.stack(frames))
    actions_t = torch.from_numpy(np.stack(prev_actions).astype(np.int64))
    dream = dream_rollout(model, frames_t, actions_t, cfg.context, cfg.sampling_steps or None, cfg.seed)
    real = frames_t[:, cfg.context:]
    b, h = real.shape[:2]
    metrics = frame_metrics(dream.reshape(b * h, *dream.shape[2:]), real.reshape(b * h, *real.shape[2:]))
    per_frame = {k: v.reshape(b, h).numpy() for k, v in metrics.items()}

    horizon_index = np.broadcast_to(np.arange(1, h + 1), (b, h))
    masks = {f"horizon {name}": (horizon_index >= lo) & (horizon_index <= hi)
             for name, lo, hi in _bucket_names(cfg.buckets, h)}
    masks["all"] = np.ones((b, h), bool)
    beyond = horizon_index >= window  # from here on the window holds no real frame
    masks[f"beyond window (h>={window})"] = beyond
    if len(extras["agent_pos"]) == b and len(extras["agent_dir"]) == b:
        revisit = np.stack([revisit_mask(p, d, window) for p, d in zip(extras["agent_pos"], extras["agent_dir"])])
        masks["beyond window, revisit"] = beyond & revisit[:, cfg.context:]
        masks["beyond window, new place"] = beyond & ~revisit[:, cfg.context:]
    table = summarise(per_frame, masks)
    result: dict[str, Any] = {"config": asdict(cfg), "episodes": chosen, "window": window,
                              "memory": model.config.memory, "table": table, "lpips": LPIPS_UNAVAILABLE}
    if cfg.out:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        videos = [str(write_side_by_side(out / f"real_vs_dream_{i}.mp4", real[i].numpy(), dream[i].numpy()))
                  for i in range(min(cfg.video_episodes, b))]
        result["videos"] = videos
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def format_table(table: dict[str, dict[str, float]]) -> str:
    lines = [f"{'frames':<34}{'n':>7}{'PSNR':>9}{'SSIM':>8}"]
    for name, row in table.items():
        lines.append(f"{name:<34}{row['frames']:>7}{row['psnr']:>9.2f}{row['ssim']:>8.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="rad-evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", default="", help="episodes (default: the checkpoint's held-out episodes)")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--context", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=64)
    parser.add_argument("--sampling-steps", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    result = evaluate(EvalConfig(checkpoint=args.checkpoint, data=args.data, episodes=args.episodes,
                                 context=args.context, horizon=args.horizon, sampling_steps=args.sampling_steps,
                                 device=args.device, seed=args.seed, out=args.out))
    print(f"memory={result['memory']} window={result['window']} episodes={len(result['episodes'])}")
    print(format_table(result["table"]))
    print(result["lpips"])
    return result


if __name__ == "__main__":
    main()
