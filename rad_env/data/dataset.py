"""Fixed-length training windows over stored episodes, as a torch Dataset."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from .reader import EpisodeStore
from .segment import Segment, read_segment


class WindowDataset(Dataset):
    """Windows of ``length`` consecutive frames from every episode, starting every ``stride`` frames.

    Item ``i`` is a :class:`Segment` (read with :func:`read_segment`: only the window's rows are read
    from disk); batch them with ``DataLoader(..., collate_fn=Batch.collate)``. ``extras`` names
    per-frame datasets to include (e.g. ``agent_pos``).
    """

    def __init__(self, store: EpisodeStore, length: int, stride: int | None = None,
                 extras: Sequence[str] = (), episodes: Sequence[int] | None = None) -> None:
        if length < 1:
            raise ValueError(f"window length must be >= 1, got {length}")
        self.store, self.length, self.stride = store, length, stride or length
        self.extras = tuple(extras)
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

    def __getitem__(self, i: int) -> Segment:
        e, s = self.index[i]
        return read_segment(self.store, self.store.episodes[e], s, s + self.length, self.extras)


def split_episodes(num_episodes: int, held_out: float | int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split episode indices into (train, held-out); ``held_out`` is a fraction or a count."""
    count = int(round(held_out * num_episodes)) if isinstance(held_out, float) else int(held_out)
    count = min(max(count, 1 if held_out else 0), max(num_episodes - 1, 0))
    order = np.random.default_rng(seed).permutation(num_episodes)
    return sorted(order[count:].tolist()), sorted(order[:count].tolist())
