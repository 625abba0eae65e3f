"""Recurrent memory blocks (one per DiT layer).

A memory is ``M`` slots of width ``Dm``. For frame ``t`` of a layer:

* READ: the frame's tokens cross-attend to the slot states ``h_{t-1}`` (before this frame's
  write). The block adds the result residually (AdaLN-modulated input, gated output).
* WRITE: learned (static) slot queries pool the frame's tokens by attention; the pooled
  vector of each slot, concatenated with the action and noise-level embeddings, drives a
  recurrent cell shared by all slots -> ``h_t``.

Because the slot queries are static and pooling reads the tokens *before* the read, pooling
is computed for all frames in parallel; so is the cell's input projection (:meth:`MemoryBlock.project`,
one matrix product for the whole sequence). Only the recurrent part (:meth:`MemoryBlock.step`: the
LSTM's ``h W_hh`` and gates, the linear memory's elementwise decay) is scanned over time.

The scan is cut at episode starts (the state resets there); each stretch between them runs in one call
where the cell has a fused kernel: the LSTM uses torch's own multi-step LSTM (cuDNN on a GPU), with
``nn.LSTMCell``'s arithmetic, instead of a Python loop of small kernels per frame.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .config import RADConfig
from .layers import QKNorm, attend


class MemoryBlock(nn.Module):
    """Shared read/write machinery; subclasses define the recurrent cell and its state."""

    def __init__(self, cfg: RADConfig):
        super().__init__()
        d, dm, m = cfg.dim, cfg.memory_dim, cfg.memory_slots
        self.heads, self.head_dim, self.slots, self.memory_dim = cfg.heads, cfg.head_dim, m, dm
        # write: attention pooling with static slot queries
        self.pool_norm = nn.LayerNorm(d, eps=1e-6)
        self.pool_query = nn.Parameter(torch.randn(m, d) * 0.02)
        self.pool_kv = nn.Linear(d, 2 * d)
        self.pool_qk = QKNorm(cfg.head_dim)
        self.pool_out = nn.Linear(d, dm)
        # read: cross-attention of tokens to the slots
        self.read_norm = nn.LayerNorm(dm, eps=1e-6)
        self.read_q = nn.Linear(d, d)
        self.read_kv = nn.Linear(dm, 2 * d)
        self.read_qk = QKNorm(cfg.head_dim)
        self.read_out = nn.Linear(d, d)
        # learned initial slot contents
        self.h0 = nn.Parameter(torch.randn(m, dm) * 0.02)
        self.cell_input_dim = dm + 2 * d

    # -- state ------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> list[torch.Tensor]:
        """Learned initial state, expanded to the batch (shares storage with the params)."""
        raise NotImplementedError

    @staticmethod
    def hidden(state: list[torch.Tensor]) -> torch.Tensor:
        """The readable part of the state, (B, M, Dm)."""
        return state[0]

    def project(self, inp: torch.Tensor) -> torch.Tensor:
        """The input-only part of the cell, for any leading shape: (..., M, cell_input_dim) -> (..., M, P)."""
        raise NotImplementedError

    def step(self, projected: torch.Tensor, state: list[torch.Tensor]) -> list[torch.Tensor]:
        """The recurrent part of one update: projected (B, M, P) -> new state."""
        raise NotImplementedError

    def cell(self, inp: torch.Tensor, state: list[torch.Tensor]) -> list[torch.Tensor]:
        """One recurrent update; inp (B, M, cell_input_dim)."""
        return self.step(self.project(inp), state)

    # -- write ------------------------------------------------------------------------------
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Attention pooling: tokens (B, L, N, D) -> per-slot vectors (B, L, M, Dm)."""
        b, l, n, d = x.shape
        h, dh = self.heads, self.head_dim
        kv = self.pool_kv(self.pool_norm(x)).view(b * l, n, 2, h, dh)
        k = self.pool_qk.k(kv[:, :, 0]).transpose(1, 2)  # (BL, h, N, dh)
        v = kv[:, :, 1].transpose(1, 2)
        q = self.pool_qk.q(self.pool_query.view(self.slots, h, dh)).transpose(0, 1)  # (h, M, dh)
        q = q.unsqueeze(0).expand(b * l, -1, -1, -1).to(v.dtype)
        o = attend(q, k, v).transpose(1, 2).reshape(b, l, self.slots, d)
        return self.pool_out(o)

    def cell_inputs(self, pooled: torch.Tensor, act_e: torch.Tensor,
                    noise_e: torch.Tensor) -> torch.Tensor:
        """pooled (B, L, M, Dm), embeddings (B, L, D) -> (B, L, M, Dm + 2D)."""
        m = pooled.shape[2]
        extra = torch.cat([act_e, noise_e], dim=-1).to(pooled.dtype)
        return torch.cat([pooled, extra.unsqueeze(2).expand(-1, -1, m, -1)], dim=-1)

    def scan(self, inp: torch.Tensor, is_first: torch.Tensor | None = None,
             start: list[torch.Tensor] | None = None, segments: list[tuple[int, int]] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Run the cell over time from ``start`` (a carried memory state; default the learned initial one).

        inp (B, L, M, Din); is_first (B, L) bool resets the memory to the learned initial state before
        frame t; ``segments``: :func:`reset_segments` of ``is_first``, if already known. Returns (h_prev
        (B, L, M, Dm): state each frame reads, h_new (B, L, M, Dm): state after each frame's write, final
        state)."""
        b, l = inp.shape[:2]
        init = [s.to(inp.device) for s in self.initial_state(b)]
        state = init if start is None else [s.to(inp.device) for s in start]
        h_prev, h_new = [], []
        for t0, t1 in segments if segments is not None else reset_segments(is_first, l):
            if is_first is not None and (t0 > 0 or start is not None):
                reset = is_first[:, t0].view(b, 1, 1)
                state = [torch.where(reset, s0.to(s.dtype), s) for s, s0 in zip(state, init)]
            h_prev.append(self.hidden(state).unsqueeze(1))
            hidden, state = self.scan_segment(inp[:, t0:t1], state)
            h_prev.append(hidden[:, :-1])
            h_new.append(hidden)
        return torch.cat(h_prev, 1), torch.cat(h_new, 1), state

    def scan_segment(self, inp: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The recurrence over frames without a reset: inp (B, T, M, Din) -> (hidden state after each
        frame (B, T, M, Dm), final state). This default loops :meth:`step` over frames."""
        projected = self.project(inp)  # every frame at once; the loop only runs the recurrence
        hidden = []
        for t in range(inp.shape[1]):
            state = self.step(projected[:, t], state)
            hidden.append(self.hidden(state))
        return torch.stack(hidden, 1), state

    # -- read -------------------------------------------------------------------------------
    def read(self, x: torch.Tensor, mem_h: torch.Tensor) -> torch.Tensor:
        """Tokens (B, L, N, D) (already modulated) attend to slots mem_h (B, L, M, Dm)."""
        b, l, n, d = x.shape
        h, dh = self.heads, self.head_dim
        q = self.read_qk.q(self.read_q(x).view(b * l, n, h, dh)).transpose(1, 2)
        kv = self.read_kv(self.read_norm(mem_h)).view(b * l, self.slots, 2, h, dh)
        k = self.read_qk.k(kv[:, :, 0]).transpose(1, 2)
        v = kv[:, :, 1].transpose(1, 2)
        o = attend(q, k, v).transpose(1, 2).reshape(b, l, n, d)
        return self.read_out(o)


class LSTMMemory(MemoryBlock):
    """Slots updated by one LSTM cell shared across slots (``nn.LSTMCell``'s parameters and gate order
    i, f, g, o); state = (h, c)."""

    def __init__(self, cfg: RADConfig):
        super().__init__(cfg)
        self.lstm = nn.LSTMCell(self.cell_input_dim, self.memory_dim)
        self.c0 = nn.Parameter(torch.zeros(self.slots, self.memory_dim))
        self.timescale = float(cfg.memory_timescale)
        self.reset_gates()

    @torch.no_grad()
    def reset_gates(self, generator: torch.Generator | None = None) -> None:
        """Chrono initialisation (Tallec & Ollivier 2018) of the gate biases: forget bias log(u), input
        bias -log(u), u ~ U(1, timescale - 1) per unit, so the cells start with time constants spread up
        to ``timescale`` frames (zero biases give about 2 frames)."""
        dm = self.memory_dim
        u = torch.rand(dm, generator=generator) * (self.timescale - 2) + 1
        self.lstm.bias_hh[: 2 * dm].zero_()
        self.lstm.bias_ih[dm: 2 * dm] = u.log()  # gate order i, f, g, o
        self.lstm.bias_ih[:dm] = -u.log()

    def initial_state(self, batch_size: int) -> list[torch.Tensor]:
        return [self.h0.unsqueeze(0).expand(batch_size, -1, -1),
                self.c0.unsqueeze(0).expand(batch_size, -1, -1)]

    def project(self, inp: torch.Tensor) -> torch.Tensor:
        return F.linear(inp, self.lstm.weight_ih, self.lstm.bias_ih + self.lstm.bias_hh)

    def scan_segment(self, inp: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """All frames in one call of torch's multi-step LSTM (cuDNN on a GPU; the slots are batch rows),
        in float32 whatever the autocast: the same arithmetic as :meth:`step` frame by frame."""
        b, t, m, _ = inp.shape
        h, c = state
        x = inp.transpose(1, 2).reshape(b * m, t, -1).float()
        hx = (h.reshape(1, b * m, -1).float(), c.reshape(1, b * m, -1).float())
        weights = [self.lstm.weight_ih, self.lstm.weight_hh, self.lstm.bias_ih, self.lstm.bias_hh]
        with torch.autocast(x.device.type, enabled=False), warnings.catch_warnings():
            # cuDNN would like one flat weight buffer (nn.LSTM's); copying these small weights costs little
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            out, h_n, c_n = torch.lstm(x, hx, weights, True, 1, 0.0, torch.is_grad_enabled(), False, True)
        hidden = out.view(b, m, t, -1).transpose(1, 2).to(h.dtype)
        return hidden, [h_n.view(b, m, -1).to(h.dtype), c_n.view(b, m, -1).to(c.dtype)]

    def step(self, projected: torch.Tensor, state: list[torch.Tensor]) -> list[torch.Tensor]:
        h, c = state
        dtype = h.dtype
        gates = projected + F.linear(h.to(projected.dtype), self.lstm.weight_hh.to(projected.dtype))
        i, f, g, o = gates.chunk(4, dim=-1)
        c2 = torch.sigmoid(f) * c.to(gates.dtype) + torch.sigmoid(i) * torch.tanh(g)
        h2 = torch.sigmoid(o) * torch.tanh(c2)
        return [h2.to(dtype), c2.to(dtype)]


class LinearMemory(MemoryBlock):
    """Mamba-style gated diagonal linear recurrence ``h_t = a_t * h_{t-1} + (1 - a_t) * u_t``
    with input-dependent decay ``a_t = exp(-softplus(dt_t) * A)``; state = (h,)."""

    def __init__(self, cfg: RADConfig):
        super().__init__(cfg)
        dm = self.memory_dim
        self.in_proj = nn.Linear(self.cell_input_dim, 2 * dm)
        self.A_log = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, dm)))
        # dt initialised log-uniformly in [1e-3, 1e-1] (inverse softplus in the bias)
        dt = torch.exp(torch.rand(dm) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))

    def initial_state(self, batch_size: int) -> list[torch.Tensor]:
        return [self.h0.unsqueeze(0).expand(batch_size, -1, -1)]

    def project(self, inp: torch.Tensor) -> torch.Tensor:
        return self.in_proj(inp)

    def step(self, projected: torch.Tensor, state: list[torch.Tensor]) -> list[torch.Tensor]:
        (h,) = state
        u, dt = projected.chunk(2, dim=-1)
        a = torch.exp(-F.softplus(dt.float() + self.dt_bias) * torch.exp(self.A_log))
        h_new = a * h.float() + (1 - a) * u.float()
        return [h_new.to(h.dtype)]


def reset_segments(is_first: torch.Tensor | None, length: int) -> list[tuple[int, int]]:
    """[t0, t1) stretches of ``length`` frames cut where any row starts an episode (is_first (B, L))."""
    if is_first is None:
        return [(0, length)]
    cuts = (torch.nonzero(is_first[:, 1:].any(0)).flatten() + 1).tolist()
    starts = [0, *cuts]
    return list(zip(starts, [*cuts, length]))


def make_memory(cfg: RADConfig) -> MemoryBlock | None:
    if cfg.memory == "lstm":
        return LSTMMemory(cfg)
    if cfg.memory == "linear":
        return LinearMemory(cfg)
    return None
