"""Training streams for truncated backprop through time: whole episodes, chunk after chunk."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from .reader import EpisodeStore
from .segment import Batch, read_segment


class EpisodeStreams:
    """``batch_size`` streams of consecutive ``length``-frame chunks, for truncated backprop through time.

    Row ``i`` of every batch walks through one episode from its first frame, chunk after chunk, in
    order (a tail shorter than ``length`` is skipped), then through another episode drawn at random
    from ``episodes``. So row ``i`` of a batch either continues row ``i`` of the previous batch (the
    trainer carries the model's state across) or starts an episode (``is_first`` on its first frame:
    the model resets its state there). An iterator of :class:`Batch`; it never ends.
    """

    def __init__(self, store: EpisodeStore, length: int, batch_size: int, episodes: Sequence[int] | None = None,
                 seed: int = 0, extras: Sequence[str] = ()) -> None:
        if length < 1 or batch_size < 1:
            raise ValueError(f"length and batch_size must be >= 1, got {length}, {batch_size}")
        chosen = list(range(len(store.episodes)) if episodes is None else episodes)
        self.episodes = [e for e in chosen if store.episodes[e].num_frames >= length]
        if not self.episodes:
            longest = max((store.episodes[e].num_frames for e in chosen), default=0)
            raise ValueError(f"no episode holds a chunk of {length} frames: the longest has {longest}")
        self.store, self.length, self.batch_size, self.extras = store, length, batch_size, tuple(extras)
        self.rng = np.random.default_rng(seed)
        self._rows: list[tuple[int, int]] = [self._new_episode() for _ in range(batch_size)]  # (episode, next start)

    def _new_episode(self) -> tuple[int, int]:
        return self.episodes[int(self.rng.integers(len(self.episodes)))], 0

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        segments = []
        for i, (e, start) in enumerate(self._rows):
            if start + self.length > self.store.episodes[e].num_frames:
                e, start = self._new_episode()
            segments.append(read_segment(self.store, self.store.episodes[e], start, start + self.length,
                                         self.extras))
            self._rows[i] = (e, start + self.length)
        return Batch.collate(segments)
