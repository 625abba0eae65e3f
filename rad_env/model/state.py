"""Explicit recurrent inference state of the RAD model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

Index = torch.Tensor | Sequence[int] | int | slice


@dataclass
class RADState:
    """Per-env state carried from frame to frame (batch dimension first everywhere).

    * ``memory[layer]``: the layer's recurrent memory, a list of (B, M, Dm) tensors
      (``[h, c]`` for "lstm", ``[h]`` for "linear", ``[]`` for "none"/"full").
    * ``keys[layer]``, ``values[layer]``: K/V of the previous frames for temporal attention,
      (B, Wc, N, heads, head_dim), oldest first, right-aligned (slot Wc-1 is the newest).
      Wc = window - 1 for bounded memories; for "full" it grows with every frame.
    * ``valid``: (B, Wc) bool, which cache slots hold a frame of the current episode.
    * ``time``: (B,) int64, frames committed since the env's reset.
    * ``prev_input``: (B, C, H, W), the network input of the last committed frame (zeros before the
      first), which the stem of the next frame reads when ``prev_frame_input``.
    * ``prev_frame``: (B, C, H, W), the last committed frame itself, clean, in [-1, 1] (zeros before the
      first): what the motion prior warps into the next frame's prediction.
    * ``canvas``: (B, C + 3, H, canvas_width), the motion prior's panorama around that frame
      (:meth:`rad_env.model.motion.MotionPrior.update_canvas`; zero width without one).
    * ``last_action``: (B,) int64, the action that led to that frame (the null action before the first and
      at an episode's start): with ``motion_pairs`` it selects the next transition's flow with the action.
    """

    memory: list[list[torch.Tensor]]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor
    time: torch.Tensor
    prev_input: torch.Tensor
    prev_frame: torch.Tensor
    canvas: torch.Tensor
    last_action: torch.Tensor

    # ------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.time.shape[0]

    @property
    def cache_len(self) -> int:
        return self.valid.shape[1]

    @property
    def device(self) -> torch.device:
        return self.time.device

    def tensors(self) -> list[torch.Tensor]:
        out = [t for layer in self.memory for t in layer]
        return out + list(self.keys) + list(self.values) + [self.valid, self.time, self.prev_input, self.prev_frame,
                                                          self.canvas, self.last_action]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "RADState":
        """New state with ``fn`` applied to every tensor."""
        return RADState(
            memory=[[fn(t) for t in layer] for layer in self.memory],
            keys=[fn(t) for t in self.keys],
            values=[fn(t) for t in self.values],
            valid=fn(self.valid),
            time=fn(self.time),
            prev_input=fn(self.prev_input),
            prev_frame=fn(self.prev_frame),
            canvas=fn(self.canvas),
            last_action=fn(self.last_action),
        )

    def clone(self) -> "RADState":
        return self.map(lambda t: t.clone())

    def detach(self) -> "RADState":
        return self.map(lambda t: t.detach())

    def to(self, device: torch.device | str) -> "RADState":
        return self.map(lambda t: t.to(device))

    def nbytes(self) -> int:
        """Bytes held by the state's tensors."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    # ------------------------------------------------------------------------------------
    def _index(self, idx: Index) -> torch.Tensor:
        if isinstance(idx, slice):
            idx = range(self.batch_size)[idx]
        if isinstance(idx, int):
            idx = [idx]
        idx = torch.as_tensor(idx, device=self.device)
        if idx.dtype == torch.bool:
            if idx.shape != (self.batch_size,):
                raise ValueError(f"boolean index of shape {tuple(idx.shape)} for batch {self.batch_size}")
            idx = idx.nonzero().flatten()
        idx = idx.long().flatten()
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.batch_size):
            raise IndexError(f"state index out of range for batch size {self.batch_size}: {idx.tolist()}")
        return idx

    def select(self, idx: Index) -> "RADState":
        """New state made of the batch rows ``idx`` (ints, list, tensor, bool mask or slice)."""
        i = self._index(idx)
        return self.map(lambda t: t.index_select(0, i))

    def index_copy_(self, idx: Index, other: "RADState") -> "RADState":
        """Write ``other``'s rows into rows ``idx`` of this state (in place; returns self).

        Used by batched envs to reset single envs: ``state.index_copy_([3], model.init_state(1))``.
        Caches of different lengths ("full" memory) are left-padded with invalid slots."""
        i = self._index(idx)
        if other.batch_size != i.numel():
            raise ValueError(f"index_copy_: {i.numel()} rows selected but other has batch "
                             f"{other.batch_size}")
        if len(other.memory) != len(self.memory) or any(
                len(a) != len(b) for a, b in zip(self.memory, other.memory)):
            raise ValueError("index_copy_: states come from different model configurations")
        other = other.to(self.device)
        n_self, n_other = self.cache_len, other.cache_len
        if n_other > n_self:
            self._pad_cache(n_other - n_self)
        elif n_self > n_other:
            other = other.clone()
            other._pad_cache(n_self - n_other)
        for mine, theirs in zip(self.memory, other.memory):
            for a, b in zip(mine, theirs):
                a.index_copy_(0, i, b.to(a.dtype))
        for a, b in zip(self.keys + self.values, other.keys + other.values):
            a.index_copy_(0, i, b.to(a.dtype))
        self.valid.index_copy_(0, i, other.valid)
        self.time.index_copy_(0, i, other.time.to(self.time.dtype))
        self.prev_input.index_copy_(0, i, other.prev_input.to(self.prev_input.dtype))
        self.prev_frame.index_copy_(0, i, other.prev_frame.to(self.prev_frame.dtype))
        if other.canvas.shape[1:] != self.canvas.shape[1:]:
            raise ValueError("index_copy_: states come from different model configurations (canvas "
                             f"{tuple(other.canvas.shape[1:])} vs {tuple(self.canvas.shape[1:])})")
        self.canvas.index_copy_(0, i, other.canvas.to(self.canvas.dtype))
        self.last_action.index_copy_(0, i, other.last_action.to(self.last_action.dtype))
        return self

    def _pad_cache(self, n: int) -> None:
        """Prepend ``n`` invalid (zero) slots to every cache."""
        def pad(t: torch.Tensor) -> torch.Tensor:
            zeros = t.new_zeros((t.shape[0], n) + tuple(t.shape[2:]))
            return torch.cat([zeros, t], dim=1)

        self.keys = [pad(t) for t in self.keys]
        self.values = [pad(t) for t in self.values]
        self.valid = pad(self.valid)
