"""Frame <-> token grid: how a frame enters the transformer and how its output becomes a frame.

The transformer sees ``grid x grid`` tokens per frame (``grid = image_size / patch_size``). A stem
``encode``s the network input of a frame (its noisy image, plus the previous committed frame when
``prev_frame_input``) into tokens and ``decode``s the final tokens into the EDM network output F.

* :class:`PatchStem` (``stem="patch"``): a linear embedding of pixel patches and a linear read-out,
  as in DiT. Cheapest; every patch is predicted from its own token only. With ``pixel_channels``
  a :class:`PixelHead` refines that read-out at full resolution from the network input itself, so
  pixel-level noise and edges inside a patch are handled by convolutions, not by a linear map.
* :class:`ConvStem` (``stem="conv"``): a small convolutional U-Net around the transformer: conv
  levels at full, 1/2, 1/4 resolution down to the token grid and back up with skip connections,
  each residual block modulated by the frame's conditioning (noise level + action). The
  transformer does the global and temporal work on the coarse grid, the convolutions the pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import RADConfig
from .layers import modulate, zero_


class PatchStem(nn.Module):
    def __init__(self, cfg: RADConfig):
        super().__init__()
        self.cfg = cfg
        p, d = cfg.patch_size, cfg.dim
        self.embed = nn.Linear(cfg.stem_in_channels * p * p, d)
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada = zero_(nn.Linear(d, 2 * d))
        self.out = zero_(nn.Linear(d, cfg.channels * p * p))
        self.pixel = PixelHead(cfg) if cfg.pixel_channels else None

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, C*p*p)."""
        b, ch = x.shape[:2]
        p, g = self.cfg.patch_size, self.cfg.grid_size
        return x.reshape(b, ch, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, ch * p * p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C*p*p) -> (B, C, H, W)."""
        b = x.shape[0]
        p, g, ch = self.cfg.patch_size, self.cfg.grid_size, self.cfg.channels
        return x.reshape(b, g, g, ch, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, ch, g * p, g * p)

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, C_in, H, W), cond (B, D) -> tokens (B, N, D), skips (the input, for the pixel head)."""
        return self.embed(self.patchify(x)), (x if self.pixel is not None else None)

    def decode(self, tok: torch.Tensor, skips: torch.Tensor | None, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(F.silu(cond)).unsqueeze(1).chunk(2, dim=-1)
        coarse = self.unpatchify(self.out(modulate(self.norm(tok), shift, scale)))
        return coarse if self.pixel is None else self.pixel(skips, coarse, cond)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv -> AdaGN(cond) -> SiLU -> conv, plus a (1x1 if needed) skip."""

    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(8, cout), cout, affine=False)
        self.ada = zero_(nn.Linear(cond_dim, 2 * cout))
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        shift, scale = self.ada(F.silu(cond))[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class PixelHead(nn.Module):
    """Full-resolution refinement of the patch stem's read-out: convolutions over [network input,
    coarse output] (one residual block modulated by the conditioning) add a correction to the coarse
    output. The correction starts at zero, so a trained patch model gains the head without changing
    what it computes (fine-tune with ``--init``)."""

    def __init__(self, cfg: RADConfig):
        super().__init__()
        c = cfg.pixel_channels
        self.inp = nn.Conv2d(cfg.stem_in_channels + cfg.channels, c, 3, padding=1)
        self.block = ResBlock(c, c, cfg.dim)
        self.out_norm = nn.GroupNorm(min(8, c), c)
        self.out = nn.Conv2d(c, cfg.channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, coarse: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W) network input, coarse (B, C, H, W), cond (B, D) -> refined (B, C, H, W)."""
        h = self.block(self.inp(torch.cat([x, coarse.to(x.dtype)], dim=1)), cond)
        return coarse + self.out(F.silu(self.out_norm(h)))


class ConvStem(nn.Module):
    def __init__(self, cfg: RADConfig):
        super().__init__()
        chans = list(cfg.stem_channels)
        levels = cfg.patch_size.bit_length() - 1  # 2x downsamplings from the image to the token grid
        if 2**levels != cfg.patch_size or len(chans) != levels:
            raise ValueError(f"stem='conv' needs a power-of-two patch_size and one channel count per level: "
                             f"patch_size {cfg.patch_size} -> {levels} levels, stem_channels {chans}")
        d = cfg.dim
        self.inp = nn.Conv2d(cfg.stem_in_channels, chans[0], 3, padding=1)
        self.enc = nn.ModuleList([ResBlock(c, c, d) for c in chans])
        self.down = nn.ModuleList([nn.Conv2d(c, c_next, 3, stride=2, padding=1)
                                   for c, c_next in zip(chans, chans[1:] + [d])])
        self.up = nn.ModuleList([nn.Conv2d(c_in, c, 3, padding=1) for c_in, c in zip([d] + chans[:0:-1], chans[::-1])])
        self.dec = nn.ModuleList([ResBlock(2 * c, c, d) for c in chans[::-1]])
        self.out_norm = nn.GroupNorm(min(8, chans[0]), chans[0])
        self.out = nn.Conv2d(chans[0], cfg.channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.inp(x)
        skips = []
        for block, down in zip(self.enc, self.down):
            h = block(h, cond)
            skips.append(h)
            h = down(h)
        return h.flatten(2).transpose(1, 2), skips  # (B, N, D) row-major like the patch grid

    def decode(self, tok: torch.Tensor, skips: list[torch.Tensor], cond: torch.Tensor) -> torch.Tensor:
        b, n, d = tok.shape
        g = int(round(n**0.5))
        h = tok.transpose(1, 2).reshape(b, d, g, g)
        for up, block, skip in zip(self.up, self.dec, skips[::-1]):
            h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = block(torch.cat([h, skip], dim=1), cond)
        return self.out(F.silu(self.out_norm(h)))


def make_stem(cfg: RADConfig) -> nn.Module:
    return ConvStem(cfg) if cfg.stem == "conv" else PatchStem(cfg)
