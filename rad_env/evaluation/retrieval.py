"""Memory retrieval (the protocol of Po et al. 2025 and the RAD paper): does the dream bring back places
the model saw long ago?

Each clip is the first ``prefix + horizon`` frames of an evaluation episode. Two dreams imagine the
last ``horizon`` frames from the true actions:

- *full prefix* (A): the state observed all ``prefix`` real frames;
- *window only* (B, the memory ablation): a fresh state observed only the last ``window`` of them.

Both draw identical noise: every observed frame is committed with noise seeded by its row and frame
index only, and the dreams' per-row generators (``seed + i``) are created after observing. So a model
without memory dreams A and B identically, and any difference is what the state remembers.

``window`` defaults to :func:`memoryless_frames`, everything a memory-less state depends on: the
attention window stacked over the layers (``depth * (window - 1) + 1``; the model's ``window`` for
one layer). Dreamed frames are scored on *revisits* (the place matches a prefix frame before the last
``window``: seen only by dream A, and out of every dreamed frame's attention) and *new places* (it
matches no prefix frame); see
:func:`.places.prefix_revisit_masks`.

:func:`one_step_retrieval` asks the same question without the dream: every frame after the prefix is
predicted one step ahead from the real frames before it, by a state that observed all of them and by one
that observed only the last ``window``. A dream that loses the scene after a few frames hides any memory;
one step ahead, a memory that carries something useful beyond the window must show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.world_model import float_to_frames
from .clips import Clips
from .places import known_places, places, prefix_revisit_masks, same_place
from .report import frame_grid_png
from .rollout import Dream, RolloutScores, dream_from_state, psnr_and_ssim, rollout_table

FULL, WINDOW = "full prefix", "window only"


def memoryless_frames(config: Any) -> int:
    """Real frames a memory-less state depends on: each layer's attention reaches ``window - 1`` frames
    further back, and the stem also reads the frame before (``prev_frame_input``)."""
    return config.depth * (config.window - 1) + int(getattr(config, "prev_frame_input", True))


def frame_generators(model, batch: int, frame: int, seed: int) -> list[torch.Generator]:
    """Per-row generators for committing absolute frame ``frame``: row ``i`` is seeded from (seed, i, frame)
    only, so two states that observe the same frame commit it with the same noise."""
    def one(i: int) -> torch.Generator:
        state = np.random.SeedSequence([seed % 2**63, i, frame]).generate_state(1, np.uint64)[0]
        return torch.Generator(device=model.device).manual_seed(int(state))
    return [one(i) for i in range(batch)]


@torch.no_grad()
def observe_seeded(model, frames: torch.Tensor, prev_actions: torch.Tensor, first: int, seed: int, state=None):
    """Observe frames uint8 (B, T, H, W, 3) (absolute indices ``first ..``), each with its own
    :func:`frame_generators`; from ``state`` or an empty one. Returns the state."""
    device = model.device
    state = model.init_state(frames.shape[0], device=device) if state is None else state
    for t in range(frames.shape[1]):
        state = model.observe(frames[:, t].to(device), prev_actions[:, t].to(device), state,
                              generators=frame_generators(model, frames.shape[0], first + t, seed))
    return state


def retrieval_dreams(model, frames: np.ndarray, prev_actions: np.ndarray, prefix: int, window: int,
                     steps: int | None = None, seed: int = 0, sampler: str | None = None) -> tuple[Dream, Dream]:
    """Dreams A (all ``prefix`` frames observed) and B (only the last ``window``) of the frames after the
    prefix, from the true actions, with identical noise (module doc)."""
    frames_t = torch.as_tensor(np.asarray(frames))
    actions_t = torch.as_tensor(np.asarray(prev_actions), dtype=torch.long)
    first = max(0, prefix - window)
    full = observe_seeded(model, frames_t[:, :prefix], actions_t[:, :prefix], 0, seed)
    last = observe_seeded(model, frames_t[:, first:prefix], actions_t[:, first:prefix], first, seed)
    dreams = [dream_from_state(model, s, actions_t[:, prefix:], steps, seed, sampler) for s in (full, last)]
    return dreams[0], dreams[1]


RETENTION_LAGS = (1, 2, 4, 8, 16, 32, 64, 128)


@torch.no_grad()
def memory_retention(model, frames: np.ndarray, prev_actions: np.ndarray, swap: int = 8,
                     lags: tuple[int, ...] = RETENTION_LAGS, seed: int = 0) -> dict[str, Any] | None:
    """How long does the memory keep what it saw? The clips are observed twice, the second time with their
    first ``swap`` frames (and actions) taken from another clip (another maze); per layer, the relative
    difference ||h - h'|| / ||h|| of the memory's readable state ``lag`` frames after the last swapped
    frame. 0: nothing of those frames is left; a memory that helps beyond the window keeps it for tens
    of frames. None for models without a recurrent memory or fewer than 2 clips."""
    if not model.config.has_memory or len(frames) < 2:
        return None
    lags = tuple(l for l in lags if swap + l <= frames.shape[1])
    if not lags:
        return None
    n = swap + max(lags)
    real = torch.as_tensor(np.asarray(frames[:, :n]))
    acts = torch.as_tensor(np.asarray(prev_actions[:, :n]), dtype=torch.long)
    other, other_acts = real.clone(), acts.clone()
    other[:, :swap], other_acts[:, :swap] = real.roll(1, 0)[:, :swap], acts.roll(1, 0)[:, :swap]
    memories = []
    for fr, ac in ((real, acts), (other, other_acts)):
        state, hs = None, []
        for t in range(n):
            state = observe_seeded(model, fr[:, t:t + 1], ac[:, t:t + 1], t, seed, state)
            hs.append(torch.stack([layer[0].float() for layer in state.memory], 1).cpu())  # (B, layers, M, Dm)
        memories.append(torch.stack(hs, 1))  # (B, T, layers, M, Dm)
    a, b = memories
    rel = ((a - b).norm(dim=(-2, -1)) / a.norm(dim=(-2, -1)).clamp_min(1e-12)).mean(0)  # (T, layers)
    return {"swap": swap, "lags": list(lags),
            "layers": [[float(rel[swap - 1 + lag, i]) for lag in lags] for i in range(rel.shape[1])]}


@dataclass
class Retrieval:
    """Dreams, real frames and scores of the memory-retrieval protocol; :meth:`summary` for metrics.json."""

    prefix: int
    window: int
    episodes: list[int]
    real: np.ndarray  # uint8 (N, H, ...) the real frames after the prefix
    last_prefix: np.ndarray  # uint8 (N, ...)
    full: np.ndarray  # dream A, like real
    window_only: np.ndarray  # dream B, like real
    revisit: np.ndarray  # bool (N, H)
    new: np.ndarray  # bool (N, H)
    scores: RolloutScores  # keys FULL, WINDOW, "copy-last", "mean frame"

    @property
    def horizon(self) -> int:
        return self.real.shape[1]

    def gain(self, mask: np.ndarray) -> float | None:
        """Mean PSNR of dream A minus dream B over ``mask`` (None when empty)."""
        if not mask.any():
            return None
        return float(self.scores.psnr[FULL][mask].mean() - self.scores.psnr[WINDOW][mask].mean())

    def table(self) -> list[dict[str, float | str | int]]:
        masks = {"revisit": self.revisit, "new place": self.new, "all": np.ones_like(self.revisit)}
        return rollout_table(self.scores, masks)

    def summary(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "horizon": self.horizon, "window": self.window, "clips": len(self.real),
                "episodes": self.episodes, "revisit frames": int(self.revisit.sum()),
                "new place frames": int(self.new.sum()), "table": self.table(),
                "gain on revisits": self.gain(self.revisit), "gain on new places": self.gain(self.new)}

    def most_revisits(self, count: int = 2) -> list[int]:
        """The ``count`` clips with the most revisit frames."""
        return [int(i) for i in np.argsort(-self.revisit.sum(1), kind="stable")[:count]]


def memory_retrieval(model, clips: Clips, prefix: int, window: int, mean_frame: np.ndarray,
                     steps: int | None = None, seed: int = 0, sampler: str | None = None) -> Retrieval:
    """Run the protocol on ``clips`` (their frames after ``prefix`` are dreamed); ValueError when the clips
    record no places or the prefix does not exceed ``window``."""
    revisit, new = _place_masks(prefix_revisit_masks, clips, prefix, window)
    full, last = retrieval_dreams(model, clips.frames, clips.prev_actions, prefix, window, steps, seed, sampler)
    real, last_prefix = clips.frames[:, prefix:], clips.frames[:, prefix - 1]
    scores = _scores(full.frames, last.frames, real, np.broadcast_to(last_prefix[:, None], real.shape), mean_frame)
    return Retrieval(prefix, window, list(clips.episodes), real, last_prefix, full.frames, last.frames,
                     revisit, new, scores)


def _place_masks(masks, clips: Clips, prefix: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``masks(extras, prefix, window)`` of ``clips`` after checking the lengths; ValueError when the clips
    record no places or the prefix does not exceed ``window``."""
    if not 0 < window < prefix < clips.length:
        raise ValueError(f"need 0 < window ({window}) < prefix ({prefix}) < clip length ({clips.length})")
    found = masks(clips.extras, prefix, window)
    if found is None:
        raise ValueError("the episodes record no positions (agent_pos/agent_dir or x/z/yaw)")
    return found


def _scores(full: np.ndarray, last: np.ndarray, real: np.ndarray, copy: np.ndarray, mean_frame: np.ndarray
            ) -> RolloutScores:
    """Per-frame PSNR/SSIM (N, H) against ``real`` of the full-prefix and window-only predictions, the
    copy-last frames ``copy`` and the mean frame."""
    predictions = {FULL: full, WINDOW: last, "copy-last": copy, "mean frame": np.broadcast_to(mean_frame, real.shape)}
    scores = {k: psnr_and_ssim(v, real) for k, v in predictions.items()}
    return RolloutScores(psnr={k: v["psnr"] for k, v in scores.items()}, ssim={k: v["ssim"] for k, v in scores.items()})


@torch.no_grad()
def one_step_predictions(model, frames: np.ndarray, prev_actions: np.ndarray, prefix: int, window: int,
                         steps: int | None = None, seed: int = 0, sampler: str | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Each frame ``t >= prefix`` of clips uint8 (N, T, ...) predicted from the real frames before it, by a state
    that observed all of them (A) and by a fresh one that observed only ``frames[t - window:t]`` (B), with the
    same sampling noise (per row and frame) and the same observation noise (:func:`observe_seeded`).
    Returns uint8 (N, T - prefix, ...) twice. Costs ``window + 1`` commits per predicted frame for B."""
    frames_t = torch.as_tensor(np.asarray(frames))
    actions_t = torch.as_tensor(np.asarray(prev_actions), dtype=torch.long)
    n, length = frames_t.shape[:2]
    full = observe_seeded(model, frames_t[:, :prefix], actions_t[:, :prefix], 0, seed)
    predicted: tuple[list, list] = ([], [])
    for t in range(prefix, length):
        last = observe_seeded(model, frames_t[:, t - window:t], actions_t[:, t - window:t], t - window, seed)
        action = actions_t[:, t].to(model.device)
        for out, state in zip(predicted, (full, last)):
            noise = frame_generators(model, n, t, seed + 1)  # the sampling noise of frame t, the same for A and B
            out.append(float_to_frames(model.sample_next(action, state, steps, noise, sampler)).cpu().numpy())
        full = observe_seeded(model, frames_t[:, t:t + 1], actions_t[:, t:t + 1], t, seed, full)
    return np.stack(predicted[0], 1), np.stack(predicted[1], 1)


def one_step_masks(extras, prefix: int, window: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(revisit, new) masks (N, T - prefix) for one-step predictions: frame ``t`` *revisits* when its place
    matches a frame at least ``window`` frames earlier (seen by state A only), and is a *new place* when it
    matches no earlier frame. None without positions."""
    found = places(extras)
    if found is None:
        return None
    cells, headings, tolerance = found
    match = same_place(cells, headings, tolerance, slice(None), slice(None))  # (N, T, T): frame t matches frame j
    revisit = np.tril(match, -window).any(-1)  # a match at least ``window`` frames earlier
    new = known_places(cells, headings) & ~np.tril(match, -1).any(-1)
    return revisit[:, prefix:], new[:, prefix:]


def one_step_retrieval(model, clips: Clips, prefix: int, window: int, mean_frame: np.ndarray,
                       steps: int | None = None, seed: int = 0, sampler: str | None = None) -> Retrieval:
    """The memory check one step ahead (module doc) on ``clips``: :class:`Retrieval` whose "dreams" are the
    one-step predictions (:func:`one_step_predictions`) and whose copy-last baseline is the previous real
    frame; ValueError when the clips record no places or the prefix does not exceed ``window``."""
    revisit, new = _place_masks(one_step_masks, clips, prefix, window)
    full, last = one_step_predictions(model, clips.frames, clips.prev_actions, prefix, window, steps, seed, sampler)
    real = clips.frames[:, prefix:]
    scores = _scores(full, last, real, clips.frames[:, prefix - 1:-1], mean_frame)
    return Retrieval(prefix, window, list(clips.episodes), real, clips.frames[:, prefix - 1], full, last,
                     revisit, new, scores)


def retrieval_grid(path: str | Path, r: Retrieval, clips: list[int],
                   horizons: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256)) -> Path:
    """Real / full-prefix / window-only frames at a few horizons (columns) for ``clips`` (row triples)."""
    hs = [h for h in horizons if h <= r.horizon]
    rows, labels = [], []
    for n in clips:
        for label, frames in (("real", r.real), ("full", r.full), ("window", r.window_only)):
            rows.append(np.stack([r.last_prefix[n]] + [frames[n, h - 1] for h in hs]))
            labels.append(f"{label} #{n}")
    return frame_grid_png(path, rows, labels, ["prefix end"] + [f"h={h}" for h in hs],
                          title=f"after {r.prefix} real frames: full / last {r.window} observed")
