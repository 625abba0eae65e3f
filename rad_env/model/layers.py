"""Building blocks: RoPE over (time, y, x), AdaLN-Zero modulation, attention helpers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RoPE(nn.Module):
    """Rotary position embedding over three axes (time, y, x).

    The head dim is split in rotation pairs: about a third of them rotate with time, the
    rest with y and x. Spatial attention uses time 0 (the time pairs stay unrotated), so it
    is plain 2D RoPE. Rotations use the half-split layout: pair ``i`` is ``(x[i], x[i+d/2])``.
    """

    def __init__(self, head_dim: int, grid_size: int, base: float = 100.0):
        super().__init__()
        if head_dim % 2 or head_dim < 6:
            raise ValueError(f"RoPE needs an even head dim >= 6, got {head_dim}")
        n = head_dim // 2
        nt = n // 3
        ny = (n - nt) // 2
        nx = n - nt - ny
        freq = torch.zeros(3, n)
        start = 0
        for axis, count in enumerate((nt, ny, nx)):
            freq[axis, start:start + count] = base ** (-torch.arange(count, dtype=torch.float64) / count)
            start += count
        self.register_buffer("freq", freq, persistent=False)
        ys, xs = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
        self.register_buffer("grid", torch.stack([ys.flatten(), xs.flatten()], -1).float(),
                             persistent=False)

        self._tables: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def cos_sin(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for the tokens of frames at times ``start..start+count-1``:
        (count*N, head_dim/2) each. Token order is frame-major (all N tokens of a frame, then
        the next frame's)."""
        if torch.compiler.is_compiling():  # traced into the graph: no Python-side cache
            return self._make_tables(start, count)
        key = (start, count, str(self.freq.device))
        hit = self._tables.get(key)
        if hit is not None:
            return hit
        out = self._make_tables(start, count)
        # Cache unless made under inference_mode (such tensors cannot be saved for backward).
        if not torch.is_inference_mode_enabled():
            if len(self._tables) > 256:
                self._tables.clear()
            self._tables[key] = out
        return out

    def _make_tables(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_tok = self.grid.shape[0]
        t = torch.arange(start, start + count, device=self.freq.device, dtype=torch.float32)
        pos = torch.cat([t.repeat_interleave(n_tok)[:, None], self.grid.repeat(count, 1)], dim=1)
        with torch.autocast(self.freq.device.type, enabled=False):
            ang = pos.float() @ self.freq.float()  # (count*N, head_dim/2)
        return ang.cos(), ang.sin()

    def _apply(self, fn, recurse=True):  # .to()/.cuda()/.half(): drop cached tables
        self._tables = {}
        return super()._apply(fn, recurse)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., T, head_dim) with tables (T, head_dim/2); computed in float32."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN modulation ``x * (1 + scale) + shift``."""
    return x * (1 + scale) + shift


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention; q/k/v (B, heads, T, dh), boolean mask True = attend."""
    if q.dtype != v.dtype or k.dtype != v.dtype:  # e.g. after float32 RoPE under autocast
        q, k = q.to(v.dtype), k.to(v.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class RMSNorm(nn.Module):
    """RMS norm computed in float32 (robust under bfloat16 autocast); output in input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps)
        return y.to(x.dtype)


class QKNorm(nn.Module):
    """RMS normalisation of queries and keys per head (keeps attention logits bounded)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.q = RMSNorm(head_dim)
        self.k = RMSNorm(head_dim)


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(round(dim * ratio))
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class NoiseEmbedding(nn.Module):
    """c_noise (any shape) -> (..., dim): fixed Fourier features + MLP."""

    def __init__(self, dim: int, features: int):
        super().__init__()
        half = features // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs * 2 * math.pi, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        ang = c_noise.float()[..., None] * self.freqs
        return self.mlp(torch.cat([ang.cos(), ang.sin()], dim=-1))


def zero_(module: nn.Linear) -> nn.Linear:
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def blur_rows(frames: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Frames (N, C, H, W), each blurred by a Gaussian of its own standard deviation ``sigmas`` (N,) in
    pixels (0: unchanged), separably, with reflected borders."""
    n, c, h, w = frames.shape
    radius = max(1, math.ceil(3 * float(sigmas.max()))) if len(sigmas) else 1
    radius = min(radius, h - 1, w - 1)
    offsets = torch.arange(-radius, radius + 1, device=frames.device, dtype=torch.float32)
    s = sigmas.float().clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / s) ** 2)
    kernel = kernel / kernel.sum(-1, keepdim=True)
    kernel = torch.where(sigmas[:, None] > 0, kernel, (offsets == 0).float()[None])  # sigma 0: identity
    k = kernel.repeat_interleave(c, dim=0).to(frames.dtype)  # (N * C, 2r + 1)
    x = frames.reshape(1, n * c, h, w)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=n * c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=n * c)
    return x.reshape(n, c, h, w)
