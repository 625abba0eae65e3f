"""The one contract between stored episodes and the model: a :class:`Segment` of consecutive
frames with the action that led to each, and a :class:`Batch` of them.

Frame ``j`` of an episode comes with ``prev_action[j] = action_id[j - 1]`` (the action that led to
it) and the reward/termination that arrived with it (``reward[j - 1]``). Frame 0 has no previous
action: its ``prev_action`` is the model's null action id, ``num_actions`` (the only spelling of
"no action yet" in rad-env), and reward 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np
import torch

from .reader import EpisodeRef, EpisodeStore


@dataclass
class Segment:
    """Frames ``start .. start + L - 1`` of one episode (numpy arrays, leading axis L)."""

    frames: np.ndarray  # uint8 (L, H, W, 3)
    prev_actions: np.ndarray  # int64 (L,): action id that led to each frame; num_actions at an episode start
    rewards: np.ndarray  # float32 (L,): reward that arrived with each frame
    terminated: np.ndarray  # float32 (L,): 1 where the frame ended the episode (terminal state)
    is_first: np.ndarray  # bool (L,): the frame is its episode's first
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. agent_pos (L, 2)

    def __len__(self) -> int:
        return len(self.frames)


#: An extra named ``PREVIOUS + key`` holds ``key``'s value at the frame before each frame (the frame's own at
#: an episode's start): e.g. where the agent was before the step that led to each frame.
PREVIOUS = "previous:"


def read_segment(store: EpisodeStore, ref: EpisodeRef, start: int, stop: int,
                 extras: Sequence[str] = ()) -> Segment:
    """Frames ``start:stop`` of episode ``ref`` with the one-step shift of per-step arrays.

    Only these rows are read from disk. ``extras`` names per-frame datasets (``agent_pos``, ...), or
    :data:`PREVIOUS` + a name for the value at the frame before each frame."""
    if not 0 <= start < stop <= ref.num_frames:
        raise ValueError(f"{ref.file}:{ref.key}: frames {start}:{stop} outside the episode's {ref.num_frames} frames")
    assert store.meta is not None
    null_action = store.meta.num_actions
    lo = max(start - 1, 0)  # per-step row j - 1 belongs to frame j
    pad = 1 if start == 0 else 0

    def shifted(key: str, fill: float, dtype) -> np.ndarray:
        values = store.read(ref, key, lo, stop - 1).astype(dtype)
        return np.concatenate([np.full(pad, fill, dtype), values]) if pad else values

    def extra(key: str) -> np.ndarray:
        if not key.startswith(PREVIOUS):
            return np.asarray(store.read(ref, key, start, stop))
        name = key[len(PREVIOUS):]
        values = np.asarray(store.read(ref, name, lo, stop - 1))
        return np.concatenate([np.asarray(store.read(ref, name, 0, 1)), values]) if pad else values

    return Segment(
        frames=store.read(ref, "obs", start, stop),
        prev_actions=shifted("action_id", null_action, np.int64),
        rewards=shifted("reward", 0.0, np.float32),
        terminated=shifted("terminated", 0.0, np.float32),
        is_first=np.arange(start, stop) == 0,
        extras={key: extra(key) for key in extras},
    )


@dataclass
class Batch:
    """``B`` segments of ``L`` frames as tensors with leading axes (B, L); what the model trains on."""

    frames: torch.Tensor  # uint8 (B, L, H, W, 3)
    prev_actions: torch.Tensor  # int64 (B, L)
    rewards: torch.Tensor  # float32 (B, L)
    terminated: torch.Tensor  # float32 (B, L)
    is_first: torch.Tensor  # bool (B, L)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def collate(cls, segments: Sequence[Segment]) -> "Batch":
        """Stack segments (a DataLoader ``collate_fn``)."""
        if not segments:
            raise ValueError("cannot collate an empty list of segments")
        tensors = {f.name: torch.from_numpy(np.stack([getattr(s, f.name) for s in segments]))
                   for f in fields(Segment) if f.name != "extras"}
        extras = {k: torch.from_numpy(np.stack([s.extras[k] for s in segments])) for k in segments[0].extras}
        return cls(**tensors, extras=extras)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(**{f.name: move(getattr(self, f.name)) for f in fields(self) if f.name != "extras"},
                     extras={k: move(v) for k, v in self.extras.items()})
