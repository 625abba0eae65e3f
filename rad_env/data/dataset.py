"""Fixed-length training windows over stored episodes, as a torch Dataset."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .reader import EpisodeRef, EpisodeStore


class WindowDataset(Dataset):
    """Windows of ``length`` consecutive frames from every episode, starting every ``stride`` frames.

    Item ``i`` is a dict of tensors for frames ``j = s .. s + length - 1`` of one episode:

    - ``frames`` uint8 ``(L, H, W, 3)``
    - ``prev_actions`` int64 ``(L,)``: the action that led to frame ``j`` (``null_action`` at j = 0)
    - ``rewards`` float32 ``(L,)`` and ``terminals`` float32 ``(L,)``: what arrived with frame ``j``
    - ``is_first`` bool ``(L,)``: ``j == 0``
    - each name in ``extras`` with a leading frame axis, e.g. ``agent_pos`` ``(L, 2)``
    - ``episode`` (index into ``store.episodes``) and ``start`` (``s``)

    Only the window's rows are read from disk.
    """

    def __init__(self, store: EpisodeStore, length: int, stride: int | None = None,
                 extras: Sequence[str] = (), episodes: Sequence[int] | None = None) -> None:
        if length < 1:
            raise ValueError(f"window length must be >= 1, got {length}")
        self.store, self.length, self.stride = store, length, stride or length
        self.extras = tuple(extras)
        assert store.meta is not None
        self.null_action = store.meta.num_actions
        chosen = range(len(store.episodes)) if episodes is None else episodes
        self.index: list[tuple[int, int]] = []
        for e in chosen:
            frames = store.episodes[e].num_frames
            self.index += [(e, s) for s in range(0, frames - length + 1, self.stride)]
        if not self.index:
            longest = max(store.episodes[e].num_frames for e in chosen) if len(chosen) else 0
            raise ValueError(f"no window of {length} frames fits: the longest episode has {longest} frames")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, s = self.index[i]
        ref: EpisodeRef = self.store.episodes[e]
        stop = s + self.length
        lo = max(s - 1, 0)  # per-step arrays are shifted by one: step j-1 leads to frame j
        pad = 1 if s == 0 else 0

        def shifted(key: str, fill: float, dtype) -> np.ndarray:
            values = self.store.read(ref, key, lo, stop - 1).astype(dtype)
            return np.concatenate([np.full(pad, fill, dtype), values]) if pad else values

        item = {
            "frames": torch.from_numpy(self.store.read(ref, "obs", s, stop)),
            "prev_actions": torch.from_numpy(shifted("action_id", self.null_action, np.int64)),
            "rewards": torch.from_numpy(shifted("reward", 0.0, np.float32)),
            "terminals": torch.from_numpy(shifted("terminated", 0.0, np.float32)),
            "is_first": torch.arange(s, stop) == 0,
            "episode": torch.tensor(e),
            "start": torch.tensor(s),
        }
        for key in self.extras:
            item[key] = torch.from_numpy(np.asarray(self.store.read(ref, key, s, stop)))
        return item


def split_episodes(num_episodes: int, held_out: float | int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split episode indices into (train, held-out); ``held_out`` is a fraction or a count."""
    count = int(round(held_out * num_episodes)) if isinstance(held_out, float) else int(held_out)
    count = min(max(count, 1 if held_out else 0), max(num_episodes - 1, 0))
    order = np.random.default_rng(seed).permutation(num_episodes)
    return sorted(order[count:].tolist()), sorted(order[:count].tolist())
