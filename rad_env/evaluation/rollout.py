"""Open-loop rollouts from real context, the two baselines every number is shown beside, and tables.

Baselines: *copy-last* repeats the last real context frame at every horizon; *mean frame* is the
per-pixel mean of the evaluation frames. A useful world model beats both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..metrics import frame_metrics, frame_psnr
from ..model.world_model import float_to_frames

#: Horizon buckets (first frame of each; the last runs to the end of the rollout).
BUCKET_STARTS = (1, 2, 17, 33, 65, 129, 257)


@torch.no_grad()
def observe_frames(model, frames: torch.Tensor, prev_actions: torch.Tensor, state=None, generators=None):
    """Commit real frames uint8 (B, T, H, W, 3) reached by ``prev_actions`` (B, T); returns the state."""
    device = model.device
    state = model.init_state(frames.shape[0], device=device) if state is None else state
    for t in range(frames.shape[1]):
        state = model.observe(frames[:, t].to(device), prev_actions[:, t].to(device), state, generators=generators)
    return state


class Dream(NamedTuple):
    """An open-loop dream: frames uint8 (B, T', H, W, 3) and the reward head's expected reward (B, T');
    with a motion prior, ``warps`` uint8 (B, T', H, W, 3): the prior's prediction of each dreamed frame (the
    previous frame warped by the action's flow), which the denoiser then edits."""

    frames: np.ndarray
    rewards: np.ndarray
    warps: np.ndarray | None = None


def row_generators(model, batch: int, seed: int) -> list[torch.Generator]:
    """One generator per batch row on the model's device, row ``i`` seeded ``seed + i``."""
    return [torch.Generator(device=model.device).manual_seed(seed + i) for i in range(batch)]


@torch.no_grad()
def imagine_frames(model, state, prev_actions: torch.Tensor, steps: int | None = None,
                   generators: list[torch.Generator] | None = None, sampler: str | None = None,
                   keep_warps: bool = False) -> Dream:
    """From an observed ``state``, imagine one frame per action of ``prev_actions`` (B, T') (the true
    actions that lead to the dreamed frames); returns the dreamed frames and rewards, and with
    ``keep_warps`` (a model with a motion prior) the warp each dreamed frame was denoised relative to."""
    device = model.device
    out, rewards, warps = [], [], []
    for t in range(prev_actions.shape[1]):
        action = prev_actions[:, t].to(device)
        if keep_warps:
            warps.append(float_to_frames(model.predict_warp(action, state)).cpu().numpy())
        step = model.imagine(action, state, steps=steps, generators=generators, sampler=sampler)
        out.append(step.frames.cpu().numpy())
        rewards.append(step.reward.float().cpu().numpy())
        state = step.state
    return Dream(np.stack(out, 1), np.stack(rewards, 1), np.stack(warps, 1) if warps else None)


def dream_from_state(model, state, prev_actions: np.ndarray | torch.Tensor, steps: int | None = None,
                     seed: int = 0, sampler: str | None = None) -> Dream:
    """Dream from an already-observed ``state`` with fresh generators (row ``i`` seeded ``seed + i``),
    so dreams from different states of the same rows draw identical sampling noise."""
    actions = torch.as_tensor(np.asarray(prev_actions), dtype=torch.long)
    return imagine_frames(model, state, actions, steps, row_generators(model, len(actions), seed), sampler)


@torch.no_grad()
def dream_rollout(model, frames: np.ndarray | torch.Tensor, prev_actions: np.ndarray | torch.Tensor, context: int,
                  steps: int | None = None, seed: int = 0, sampler: str | None = None,
                  keep_warps: bool = False) -> Dream:
    """Observe ``frames[:, :context]``, then imagine the rest from the true ``prev_actions``.

    frames uint8 (B, T, H, W, 3) (only the first ``context`` are read), prev_actions int64 (B, T). Row
    ``i`` samples with its own generator seeded ``seed + i`` (shared by observing and dreaming). Returns
    the ``T - context`` dreamed frames and rewards (and their warps: :func:`imagine_frames`)."""
    frames_t = torch.as_tensor(np.asarray(frames))
    actions_t = torch.as_tensor(np.asarray(prev_actions), dtype=torch.long)
    generators = row_generators(model, len(frames_t), seed)
    state = observe_frames(model, frames_t[:, :context], actions_t[:, :context], generators=generators)
    return imagine_frames(model, state, actions_t[:, context:], steps, generators, sampler, keep_warps)


def _frames(x: np.ndarray) -> torch.Tensor:
    """uint8 frames (..., H, W, 3) as one torch batch (N, H, W, 3) (no copy when contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(x).reshape(-1, *x.shape[-3:]))


def psnr(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame PSNR (dB, capped at 100) of uint8 frames (..., H, W, 3)."""
    return frame_psnr(_frames(pred), _frames(target)).numpy().reshape(pred.shape[:-3])


def psnr_and_ssim(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame PSNR and SSIM of uint8 frames (..., H, W, 3), in one pass."""
    return {k: v.numpy().reshape(pred.shape[:-3]) for k, v in frame_metrics(_frames(pred), _frames(target)).items()}


@dataclass
class RolloutScores:
    """Per-frame scores (N, H) of the model and the baselines against the real frames."""

    psnr: dict[str, np.ndarray]  # "model", "copy-last", "mean frame"
    ssim: dict[str, np.ndarray]


def score_rollout(dream: np.ndarray, real: np.ndarray, last_context: np.ndarray, mean_frame: np.ndarray
                  ) -> RolloutScores:
    """dream/real uint8 (N, H, ...); last_context (N, ...) the last real frame; mean_frame (...)."""
    copy = np.broadcast_to(last_context[:, None], real.shape)
    mean = np.broadcast_to(mean_frame, real.shape)
    scores = {k: psnr_and_ssim(v, real) for k, v in {"model": dream, "copy-last": copy, "mean frame": mean}.items()}
    return RolloutScores(psnr={k: v["psnr"] for k, v in scores.items()},
                         ssim={k: v["ssim"] for k, v in scores.items()})


def mean_image(frames: np.ndarray) -> np.ndarray:
    """Per-pixel mean frame (uint8) of frames (..., H, W, 3)."""
    return np.round(frames.reshape(-1, *frames.shape[-3:]).mean(0, dtype=np.float64)).astype(np.uint8)


def horizon_masks(num_clips: int, horizon: int, starts: tuple[int, ...] = BUCKET_STARTS) -> dict[str, np.ndarray]:
    """Boolean masks (N, H) selecting each horizon bucket ``h = a-b`` (h counts from 1) and ``all``."""
    h = np.broadcast_to(np.arange(1, horizon + 1), (num_clips, horizon))
    masks = {}
    bounds = [s for s in starts if s <= horizon]
    for lo, hi in zip(bounds, bounds[1:] + [horizon + 1]):
        masks[f"h={lo}" if hi - 1 == lo else f"h={lo}-{hi - 1}"] = (h >= lo) & (h < hi)
    masks["all"] = np.ones((num_clips, horizon), bool)
    return masks


def rollout_table(scores: RolloutScores, masks: dict[str, np.ndarray]) -> list[dict[str, float | str | int]]:
    """One row per mask: frame count and mean PSNR/SSIM of model and baselines."""
    rows = []
    for name, mask in masks.items():
        if not mask.any():
            continue
        row: dict[str, float | str | int] = {"frames": name, "n": int(mask.sum())}
        for metric, values in (("psnr", scores.psnr), ("ssim", scores.ssim)):
            for who, v in values.items():
                row[f"{who} {metric}"] = float(v[mask].mean())
        rows.append(row)
    return rows


def reward_rate_table(dreamed: np.ndarray, real: np.ndarray, masks: dict[str, np.ndarray],
                      threshold: float = 0.5) -> list[dict[str, float | str | int]]:
    """Rewards per 1000 frames of the open-loop dreams (the head's expected reward paid as the dream env
    pays it: its sign where at least ``threshold`` in size) beside the real rewards of the same frames, per
    mask: a dream that lost the scene should pay no more than the real walk it follows."""
    paid = np.sign(dreamed) * (np.abs(dreamed) >= threshold)
    rows = []
    for name, mask in masks.items():
        if not mask.any():
            continue
        n = int(mask.sum())
        dream_count, real_count = int(np.abs(paid[mask]).sum()), int(np.abs(np.sign(real[mask])).sum())
        rows.append({"frames": name, "n": n, "dream rewards": dream_count, "real rewards": real_count,
                     "dream per 1000": 1000.0 * dream_count / n, "real per 1000": 1000.0 * real_count / n})
    return rows


def frame_detail(frames: np.ndarray) -> np.ndarray:
    """Per-frame mean absolute difference between horizontally and vertically neighbouring pixels
    (grey levels) of uint8 frames (..., H, W, 3): the fine structure a frame holds."""
    x = frames.astype(np.int16)
    dx = np.abs(np.diff(x, axis=-2)).mean(axis=(-3, -2, -1))
    dy = np.abs(np.diff(x, axis=-3)).mean(axis=(-3, -2, -1))
    return (dx + dy) / 2


def frame_contrast(frames: np.ndarray, block: int = 8) -> np.ndarray:
    """Per-frame standard deviation (grey levels) of the ``block`` x ``block`` pixel means of uint8 frames
    (..., H, W, 3), per channel, averaged over channels: how much large structure a frame holds."""
    *lead, h, w, c = frames.shape
    means = frames.reshape(*lead, h // block, block, w // block, block, c).mean(axis=(-4, -2), dtype=np.float64)
    return means.std(axis=(-3, -2)).mean(axis=-1)


def stability_table(dream: np.ndarray, real: np.ndarray, last_context: np.ndarray, masks: dict[str, np.ndarray]
                    ) -> list[dict]:
    """Does the dream keep changing like the real video, and stay different across clips?

    ``change``: mean absolute difference between consecutive frames (grey levels of 255; at h=1 from the
    last real context frame);
    ``cross-clip PSNR``: mean PSNR between different clips at the same horizon (a dream collapsed to one
    texture scores far higher than the real frames do);
    ``detail``: mean absolute difference between neighbouring pixels within a frame (grey levels; a
    blurred dream has less than the real frames, a grainy or blocky one more);
    ``contrast``: standard deviation of the frame's 8x8-pixel block means (grey levels): the large
    structure (walls against sky and floor) that a dream fading into haze loses."""
    def change(v: np.ndarray) -> np.ndarray:
        seq = np.concatenate([last_context[:, None], v], axis=1).astype(np.int16)
        return np.abs(np.diff(seq, axis=1)).mean(axis=(-3, -2, -1))

    def cross(v: np.ndarray) -> np.ndarray:
        n = len(v)
        if n < 2:
            return np.full(v.shape[:2], np.nan)
        pairs = [psnr(v[i], v[j]) for i in range(n) for j in range(i + 1, n)]
        return np.broadcast_to(np.mean(pairs, axis=0), v.shape[:2])

    values = {"dream change": change(dream), "real change": change(real),
              "dream cross-clip PSNR": cross(dream), "real cross-clip PSNR": cross(real),
              "dream detail": frame_detail(dream), "real detail": frame_detail(real),
              "dream contrast": frame_contrast(dream), "real contrast": frame_contrast(real)}
    rows = []
    for name, mask in masks.items():
        if mask.any():
            rows.append({"frames": name, **{k: float(v[mask].mean()) for k, v in values.items()}})
    return rows


def warp_edit_table(dream: np.ndarray, warps: np.ndarray, real: np.ndarray, masks: dict[str, np.ndarray]
                    ) -> list[dict]:
    """What the network adds to the motion prior along a free-running dream.

    Each dreamed frame is the denoiser's edit of ``warps`` (the previous dreamed frame warped by the action's
    flow). ``warp PSNR`` / ``dream PSNR``: each against the real frame; ``edit``: PSNR between the dream and its
    own warp (high: the network leaves the warp as it is, so a long dream is a chain of warps); ``detail`` and
    ``contrast`` of the warp (:func:`frame_detail`, :func:`frame_contrast`) beside the dream's."""
    values = {"warp PSNR": psnr(warps, real), "dream PSNR": psnr(dream, real), "edit (dream vs warp) PSNR":
              psnr(dream, warps), "warp detail": frame_detail(warps), "dream detail": frame_detail(dream),
              "warp contrast": frame_contrast(warps), "dream contrast": frame_contrast(dream)}
    return [{"frames": name, **{k: float(v[mask].mean()) for k, v in values.items()}}
            for name, mask in masks.items() if mask.any()]
