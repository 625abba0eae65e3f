"""Motion prior: the camera motion of each action as a learned flow field.

In a first-person maze an action moves the camera the same way whatever the scene: a turn shifts the
view sideways by a fixed angle, a step forward zooms it. Warping the previous frame by the action's mean
flow predicts the next frame far better than copying it (held-out Memory Maze, one step: 26.2 dB vs
22.2 dB) and keeps its texture sharp, which a network that regresses the frame through 8x8 patch tokens
does not (its conditional mean is blurred). With ``RADConfig.motion_prior`` the denoiser predicts the
next frame relative to this warp (:meth:`rad_env.model.world_model.WorldModel.denoise`) and the stem
reads the warped previous frame, so the network only has to add what the warp gets wrong: new content
at the borders, parallax, collisions.

The flow of each action (and of the null action, used by the action-free denoiser of classifier-free
guidance) is a ``motion_grid x motion_grid`` field of (x, y) offsets in normalised image coordinates,
upsampled bilinearly. With ``RADConfig.motion_pairs`` there is one per (previous action, action) pair: the
agent has momentum, so a step after a step moves the camera further than a step after a turn. The table's
row for a frame is its motion key (:meth:`MotionPrior.key`). :meth:`MotionPrior.fit` fits the table to
recorded frame pairs before training (least squares, seconds on a CPU); training then refines it with the
rest of the model.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .config import RADConfig
from .layers import modulate, zero_


class MotionPrior(nn.Module):
    def __init__(self, cfg: RADConfig):
        super().__init__()
        self.image_size = cfg.image_size
        self.pairs = cfg.motion_pairs
        self.num_ids = cfg.num_actions + 1  # action ids, the null action included
        self.num_keys = self.num_ids ** 2 if self.pairs else self.num_ids
        self.flow = nn.Parameter(torch.zeros(self.num_keys, 2, cfg.motion_grid, cfg.motion_grid))
        self.content = ContentFlow(cfg, self.num_keys) if cfg.content_flow else None
        # False until fit (or loaded from a checkpoint that was): training fits a fresh prior first
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        axis = torch.linspace(-1.0, 1.0, cfg.image_size)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("identity", torch.stack([xs, ys], dim=-1), persistent=False)  # (H, W, 2)
        pans = torch.zeros(cfg.num_actions + 1, dtype=torch.bool)
        pans[cfg.pan_actions] = True
        # per motion key: the canvas survives the pan actions (whatever came before them)
        self.register_buffer("pans", pans.repeat(self.num_ids) if self.pairs else pans, persistent=False)
        self.hud_border = cfg.hud_border
        hud = torch.ones(cfg.image_size, cfg.image_size, dtype=torch.bool)
        hud[cfg.hud_border:cfg.image_size - cfg.hud_border, cfg.hud_border:cfg.image_size - cfg.hud_border] = False
        self.register_buffer("hud", hud, persistent=False)  # (H, W): the overlay's pixels

    def key(self, actions: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """The flow table's row (motion key) of each transition: the action that leads to the next frame
        (any shape), with ``motion_pairs`` paired with ``previous``, the action that led to the frame being
        warped (same shape; the null action at an episode's start)."""
        if not self.pairs:
            return actions.long()
        if previous is None:
            raise ValueError("motion_pairs: the motion key needs the previous action too")
        return previous.long() * self.num_ids + actions.long()

    @property
    def needs_fit(self) -> bool:
        """The flows, or the content flow it has, are not fit to data yet (training fits them first)."""
        return not bool(self.fitted) or (self.content is not None and not bool(self.content.fitted))

    #: how the frame warp resamples (``grid_sample``'s mode). Trained and shipped with bilinear, which blurs a
    #: little at every warp; ``benchmarks.motion_prior`` compares bicubic (docs/experiments.md "Resampling blur of the warp").
    interpolation: str = "bilinear"

    def forward(self, frames: torch.Tensor, keys: torch.Tensor, correction: torch.Tensor | None = None,
                canvas: torch.Tensor | None = None) -> torch.Tensor:
        """Warp frames (B, C, H, W) by the flow of the transition that follows each (motion keys (B,),
        :meth:`key`) -> (B, C, H, W), plus ``correction`` (B, 2, H, W), a per-frame flow in the same units
        (:class:`FlowCorrection`).

        Pixels come from ``canvas`` (B, C + 3, H, Wc) wherever it holds them (:meth:`update_canvas`; for the
        ``pan_actions`` the flow's outer cells, which only ever saw the repeated border, then take the nearest
        inner cell's x-offset), else from the frame, whose scene's border repeats outside. The ``hud_border``
        pixels at the frame's edge (an overlay, not the scene) stay where they are."""
        return self.warp_with_known(frames, keys, correction, canvas)[0]

    def warp_with_known(self, frames: torch.Tensor, keys: torch.Tensor, correction: torch.Tensor | None = None,
                        canvas: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward`'s warp (B, C, H, W) and where it holds pixels (B, 1, H, W): 1 where it reads the
        frame's scene inside its bounds, the canvas or the overlay, 0 where it only repeats the scene's
        border (fractions where a pixel mixes both)."""
        size, hud = self.image_size, self.hud_border
        keys = keys.long()
        if self.content is not None:
            content = self.content(frames, keys)
            correction = content if correction is None else correction + content.to(correction.dtype)
        cells = self.flow[keys]
        if canvas is not None:  # pans read the canvas with their inner cells' offsets (a zoom keeps its field)
            cells = torch.where(self.pans[keys][:, None, None, None], self._inner_pan(cells), cells)
        flow = F.interpolate(cells, size=size, mode="bilinear", align_corners=True)
        if correction is not None:
            flow = flow + correction.to(flow.dtype)
        grid = (self.identity + flow.permute(0, 2, 3, 1)).to(frames.dtype)
        edge = 1 - 2 * hud / (size - 1)  # the scene's last pixel in normalised coordinates
        warped = F.grid_sample(frames, grid.clamp(-edge, edge), mode=self.interpolation, padding_mode="border",
                               align_corners=True)
        # how far (in pixels, up to 1) each sample lies outside the scene: 0 inside, 1 a pixel or more beyond
        beyond = ((grid.abs() - edge) * (size - 1) / 2).clamp(0, 1).amax(dim=-1)
        known = (1 - beyond)[:, None].to(frames.dtype)
        if canvas is not None:
            # view coordinates -> the canvas's (the view sits in its middle columns, pixel for pixel)
            width, c = canvas.shape[-1], frames.shape[1]
            offset = canvas[:, -1, :1, :1].to(frames.dtype)  # (B, 1, 1): where the view sits
            x = ((grid[..., 0] + 1) * (size - 1) / 2 + (width - size) / 2 + offset) * (2 / (width - 1)) - 1
            sampled = F.grid_sample(canvas[:, :c + 1].to(frames.dtype), torch.stack([x, grid[..., 1]], dim=-1),
                                    mode="bilinear", padding_mode="zeros", align_corners=True)
            held = sampled[:, c:c + 1]  # how much of each pixel the canvas holds (its colours are premultiplied)
            warped = sampled[:, :c] + (1 - held) * warped
            known = held + (1 - held) * known
        if hud:
            return torch.where(self.hud, frames, warped), torch.where(self.hud, torch.ones_like(known), known)
        return warped, known

    def flatten_hud(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (..., C, H, W) with the ``hud_border`` pixels replaced by their mean colour. The overlay is
        one colour (Memory Maze's frame in the target's colour), and the warp copies it from frame to frame:
        left per-pixel, the denoiser's small errors there add up over a long dream into coloured speckle
        (measured: multicoloured by h=128); averaged over the ring they cancel, and a change of target
        still changes its colour."""
        if not self.hud_border:
            return frames
        ring = frames.masked_select(self.hud).view(*frames.shape[:-2], -1).mean(-1)
        return torch.where(self.hud, ring[..., None, None], frames)

    def _inner_pan(self, cells: torch.Tensor) -> torch.Tensor:
        """Flow cells (B, 2, g, g) with the x-offsets of the outer quarter of columns on each side replaced by
        the nearest middle column's: with the repeated border as the only thing to fit, training leaves those
        cells near zero, which would never read the canvas."""
        g = cells.shape[-1]
        q = g // 4
        x = cells[:, :1]
        x = torch.cat([x[..., q:q + 1].expand(-1, -1, -1, q), x[..., q:g - q], x[..., g - q - 1:g - q].expand(-1, -1, -1, q)],
                      dim=-1)
        return torch.cat([x, cells[:, 1:]], dim=1)

    def pan_pixels(self) -> torch.Tensor:
        """Each motion key's horizontal camera pan in pixels (num_keys,): the median x-offset of its flow
        over the middle half of the field (the border cells only see the clamped edge)."""
        g = self.flow.shape[-1]
        middle = self.flow.detach()[:, 0, g // 4: g - g // 4, g // 4: g - g // 4].flatten(1)
        return middle.median(dim=1).values * (self.image_size - 1) / 2

    def update_canvas(self, canvas: torch.Tensor, frames: torch.Tensor, keys: torch.Tensor,
                      observed: torch.Tensor) -> torch.Tensor:
        """The canvas after committing frames (B, C, H, W) reached by transitions of motion keys (B,)
        (:meth:`key`); ``observed`` (B,) bool:
        real frames (else dreamed ones). Channels: the colours premultiplied by the next channel, which is
        1 where the canvas holds a pixel; 1 where that pixel was observed; the view's sub-pixel offset from
        the middle columns (the same everywhere). The canvas moves by the action's pan in whole pixels (no
        resampling, so what it keeps stays sharp; the fraction accumulates in the offset, so opposite turns
        cancel), is cleared unless the action is one of ``RADConfig.pan_actions``, then the frame's scene
        (without the ``hud_border``) is written into its middle columns, except that a dreamed frame does
        not overwrite an observed pixel: while the camera only turns or stands, the scene is what was seen,
        and the dream reads that back instead of its own degrading copy."""
        b, n, h, width = canvas.shape
        c, size = n - 3, self.image_size
        keys = keys.long()
        pan = self.pans[keys]
        total = canvas[:, -1, 0, 0] + self.pan_pixels().to(canvas.device)[keys]
        shift = total.round()
        offset = (total - shift) * pan.to(canvas.dtype)
        src = torch.arange(width, device=canvas.device) + shift.long()[:, None]  # new column j = old j + shift
        keep = ((src >= 0) & (src < width) & pan[:, None]).to(canvas.dtype)
        index = src.clamp(0, width - 1)[:, None, None, :].expand(b, n - 1, h, width)
        moved = canvas[:, :-1].gather(-1, index) * keep[:, None, None, :]
        left = (width - size) // 2
        old = moved[..., left:left + size]
        flags = observed.to(canvas.dtype)[:, None, None, None].expand(b, 1, h, size)
        new = torch.cat([frames.to(canvas.dtype), torch.ones_like(flags), flags], dim=1)
        kept = (old[:, c + 1:] > 0.5) & ~observed.bool()[:, None, None, None]  # observed pixels a dream keeps
        view = torch.where(self.hud | kept, old, new)  # the overlay is not the scene
        moved = torch.cat([moved[..., :left], view, moved[..., left + size:]], dim=-1)
        return torch.cat([moved, offset[:, None, None, None].expand(b, 1, h, width)], dim=1)

    def shift_pixels(self) -> torch.Tensor:
        """Mean horizontal and vertical flow of each action in pixels (num_actions + 1, 2) (with ``motion_pairs``
        averaged over the previous actions)."""
        shifts = self.flow.detach().mean(dim=(2, 3)) * (self.image_size - 1) / 2
        return shifts.view(self.num_ids, self.num_ids, 2).mean(0) if self.pairs else shifts

    def expand_to_pairs(self, flow: torch.Tensor) -> torch.Tensor:
        """A per-action flow table (num_actions + 1, 2, g, g) as a per-pair one (every previous action starts
        from the action's flow): how a trained model without ``motion_pairs`` gains them (then refit)."""
        if not self.pairs or flow.shape[0] != self.num_ids:
            raise ValueError(f"expand_to_pairs: a table of {self.num_ids} flows for a motion_pairs prior, "
                             f"got {tuple(flow.shape)}")
        return flow.repeat(self.num_ids, 1, 1, 1)

    def fit_content(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], steps: int = 1000,
                    lr: float = 1e-3) -> dict[str, float]:
        """:meth:`fit` for the :class:`ContentFlow` net (the flows fixed): least squares of the warp on frame pairs,
        from its current weights. Marks it fitted; returns the warp's and copying's mean squared errors."""
        if self.content is None:
            raise ValueError("fit_content: this motion prior has no content flow (RADConfig.content_flow)")
        errors = self._fit(pairs, list(self.content.parameters()), steps, lr)
        self.content.fitted.fill_(True)
        return errors

    def fit(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], steps: int = 300,
            lr: float = 3e-3) -> dict[str, float]:
        """Least-squares fit of every motion key's flow to frame pairs (previous (B, C, H, W), next
        (B, C, H, W), motion key (B,) (:meth:`key`), floats in [-1, 1]); ``pairs`` yields at least ``steps``
        batches. Starts from the current flows.
        Marks the prior fitted. Returns the mean squared error of the warp and of copying the
        previous frame over the last batches seen."""
        errors = self._fit(pairs, [self.flow], steps, lr)
        self.fitted.fill_(True)
        return errors

    def _fit(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], params: list[nn.Parameter],
             steps: int, lr: float) -> dict[str, float]:
        opt = torch.optim.Adam(params, lr=lr)
        tail = max(1, steps // 10)
        warp_err = copy_err = 0.0
        it = iter(pairs)
        with torch.enable_grad():
            for step in range(steps):
                try:
                    prev, nxt, keys = next(it)
                except StopIteration as exc:
                    raise ValueError(f"MotionPrior.fit needs {steps} batches of frame pairs, got {step}") from exc
                loss = (self(prev, keys) - nxt).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step >= steps - tail:
                    warp_err += float(loss.detach()) / tail
                    copy_err += float((prev - nxt).pow(2).mean()) / tail
        for p in params:
            p.grad = None
        return {"warp_mse": warp_err, "copy_mse": copy_err}


class ContentFlow(nn.Module):
    """A per-frame flow that reads the frame being warped (``RADConfig.content_flow`` channels): the motion key's
    embedding as extra input channels, three stride-2 3x3 convolutions down to ``image_size / 8``, one step up
    to ``image_size / 4`` with a skip, and a zero-initialised read-out of (x, y) offsets in pixels, upsampled
    bilinearly like the prior's flow. A fixed flow per key cannot know the depth of what it moves; a maze frame
    shows it (a wall's height in a column gives its distance). :meth:`MotionPrior.fit_content` fits it to the
    warp's error before training (``fitted``)."""

    embed_channels = 16

    def __init__(self, cfg: RADConfig, num_keys: int):
        super().__init__()
        c, e = cfg.content_flow, self.embed_channels
        self.image_size = cfg.image_size
        self.embed = nn.Embedding(num_keys, e)
        self.down = nn.ModuleList([nn.Conv2d(cfg.channels + e, c, 3, 2, 1), nn.Conv2d(c, c, 3, 2, 1),
                                   nn.Conv2d(c, c, 3, 2, 1), nn.Conv2d(c, c, 3, 1, 1)])
        self.up = nn.Conv2d(2 * c, c, 3, 1, 1)
        self.out = zero_(nn.Conv2d(c, 2, 3, 1, 1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, frames: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Frames (B, C, H, W) in [-1, 1], motion keys (B,) -> flow (B, 2, H, W) in normalised image units."""
        b, _, h, w = frames.shape
        x = torch.cat([frames, self.embed(keys)[:, :, None, None].expand(b, -1, h, w).to(frames.dtype)], dim=1)
        x = F.gelu(self.down[0](x))
        skip = F.gelu(self.down[1](x))
        x = F.gelu(self.down[3](F.gelu(self.down[2](skip))))
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        pixels = self.out(F.gelu(self.up(torch.cat([x, skip], dim=1))))
        field = F.interpolate(pixels.float(), size=self.image_size, mode="bilinear", align_corners=True)
        return field * (2.0 / (self.image_size - 1))


class FlowCorrection(nn.Module):
    """The network's per-frame correction to the action's flow (``RADConfig.flow_correction``): each final
    token reads out the (x, y) offsets, in pixels, of its ``motion_grid / grid`` squared cells of the flow
    grid, modulated by the frame's conditioning like the stem's read-out; the field is upsampled like the
    prior's. The read-out starts at zero, so a trained model gains it without changing what it computes.
    Its raw output is scaled by ``pixels_per_unit``: Adam moves a zero-initialised read-out by about the
    learning rate per step, which unscaled was hundredths of a pixel after 300 steps (measured: 0.04 px
    mean correction, the dream unchanged)."""

    pixels_per_unit = 8.0

    def __init__(self, cfg: RADConfig):
        super().__init__()
        self.grid, self.image_size = cfg.grid_size, cfg.image_size
        self.cells = cfg.motion_grid // cfg.grid_size
        d = cfg.dim
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada = zero_(nn.Linear(d, 2 * d))
        self.out = zero_(nn.Linear(d, 2 * self.cells**2))

    def forward(self, tok: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Final tokens (B, N, D), conditioning (B, D) -> flow (B, 2, H, W) in normalised image units."""
        b, g, k = tok.shape[0], self.grid, self.cells
        shift, scale = self.ada(F.silu(cond)).unsqueeze(1).chunk(2, dim=-1)
        cells = self.out(modulate(self.norm(tok), shift, scale)).float() * self.pixels_per_unit  # (B, N, 2 k k) px
        field = cells.reshape(b, g, g, 2, k, k).permute(0, 3, 1, 4, 2, 5).reshape(b, 2, g * k, g * k)
        field = F.interpolate(field, size=self.image_size, mode="bilinear", align_corners=True)
        return field * (2.0 / (self.image_size - 1))
