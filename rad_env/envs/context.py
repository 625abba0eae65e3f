"""Where dream episodes start: short segments of real recorded frames."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..data import EpisodeStore, read_segment
from ..defaults import default_assets_dir


@dataclass
class StartFrames:
    """``N`` real segments of ``C`` frames each that a dream episode starts from.

    frames: uint8 ``(N, C, H, W, 3)``; prev_actions: int64 ``(N, C)``, the action that led to each
    frame (the null action id ``num_actions`` for an episode's first frame), or None when unknown
    (frames given as arrays): the model then sees the null action for every frame.
    """

    frames: np.ndarray
    prev_actions: np.ndarray | None = None
    source: str = "arrays"

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames)
        if self.frames.dtype != np.uint8 or self.frames.ndim != 5 or self.frames.shape[-1] != 3:
            raise ValueError(f"start frames must be uint8 (N, C, H, W, 3), got {self.frames.shape} {self.frames.dtype}")
        if self.prev_actions is not None:
            self.prev_actions = np.asarray(self.prev_actions, dtype=np.int64)
            if self.prev_actions.shape != self.frames.shape[:2]:
                raise ValueError(f"prev_actions shape {self.prev_actions.shape} must be (N, C) = {self.frames.shape[:2]}")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def context(self) -> int:
        return self.frames.shape[1]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        i = int(rng.integers(len(self.frames)))
        return self.frames[i], None if self.prev_actions is None else self.prev_actions[i]

    @classmethod
    def from_episodes(cls, path: str | os.PathLike, context: int, max_segments: int = 256,
                      seed: int = 0, from_start: bool = True) -> "StartFrames":
        """Segments of ``context`` frames from recorded episodes (their first frames by default)."""
        store = EpisodeStore(path)
        rng = np.random.default_rng(seed)
        frames, actions = [], []
        order = rng.permutation(len(store))
        per_episode = max(1, -(-max_segments // len(store)))
        for e in order:
            ref = store.episodes[e]
            if ref.num_frames < context:
                continue
            starts = [0] if from_start else rng.integers(0, ref.num_frames - context + 1, per_episode)
            for s in starts:
                segment = read_segment(store, ref, int(s), int(s) + context)
                frames.append(segment.frames)
                actions.append(segment.prev_actions)
            if len(frames) >= max_segments:
                break
        if not frames:
            raise ValueError(f"{path}: no episode has {context} frames to start a dream from")
        return cls(np.stack(frames[:max_segments]), np.stack(actions[:max_segments]), source=str(path))


def resolve_start_frames(context, num_frames: int, default_file: str | None) -> StartFrames:
    """``context`` may be a StartFrames, a path to episodes, frames ``(N, C, H, W, 3)`` or
    ``(C, H, W, 3)`` (with no known previous actions), or None for the shipped default."""
    if isinstance(context, StartFrames):
        return context
    if context is None:
        if default_file is None:
            raise ValueError("this env has no shipped start frames: pass context= (episodes path or frames)")
        path = default_assets_dir() / default_file
        if not path.exists():
            raise FileNotFoundError(f"shipped start frames {path} are missing from the installation")
        return StartFrames.from_episodes(path, num_frames)
    if isinstance(context, (str, os.PathLike)):
        return StartFrames.from_episodes(context, num_frames)
    frames = np.asarray(context)
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5:
        raise ValueError(f"context frames must be (N, C, H, W, 3) or (C, H, W, 3), got {frames.shape}")
    return StartFrames(frames, None, source="arrays")
