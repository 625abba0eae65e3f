"""EDM (Karras et al. 2022) preconditioning, training noise levels and few-step samplers."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .config import RADConfig


def randn_rows(shape: Sequence[int], batch: int,
               generators: Sequence[torch.Generator] | None,
               device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of shape (batch, *shape).

    With ``generators`` (one per batch row), row ``i`` is drawn from ``generators[i]`` only, so
    a batched run equals per-row runs with the same seeds. Without, the global RNG is used."""
    shape = tuple(shape)
    if generators is None:
        return torch.randn((batch,) + shape, device=device, dtype=dtype)
    if len(generators) != batch:
        raise ValueError(f"need one generator per batch row: {len(generators)} for batch {batch}")
    rows = [torch.randn(shape, generator=g, device=g.device, dtype=torch.float32)
            for g in generators]
    return torch.stack(rows).to(device=device, dtype=dtype)


class EDM:
    """Noise-level utilities for the denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)``."""

    def __init__(self, cfg: RADConfig):
        self.cfg = cfg
        self.sigma_data = cfg.sigma_data
        self.sigma_skip = cfg.sigma_skip if cfg.sigma_skip is not None else cfg.sigma_data

    def precondition(self, sigma: torch.Tensor):
        """Returns (c_skip, c_out, c_in, c_noise), each shaped like ``sigma``.

        c_skip = sigma_skip^2 / (sigma^2 + sigma_skip^2); c_out makes the network's target
        (y - c_skip x) / c_out unit-variance for data of std sigma_data: c_out^2 = (1 - c_skip)^2
        sigma_data^2 + c_skip^2 sigma^2. With sigma_skip = sigma_data this is EDM's preconditioning."""
        sigma = sigma.float()
        sd2, sk2 = self.sigma_data**2, self.sigma_skip**2
        c_skip = sk2 / (sigma**2 + sk2)
        c_out = ((1 - c_skip) ** 2 * sd2 + c_skip**2 * sigma**2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """lambda(sigma) = 1 / c_out^2 (EDM: (sigma^2 + sd^2) / (sigma * sd)^2): unit weight on the network output."""
        return self.precondition(torch.as_tensor(sigma))[1] ** -2

    def sample_training_sigma(self, shape: Sequence[int], device: torch.device | str,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise level of each frame being denoised: ln(sigma) ~ N(mean, std) in [sigma_min, sigma_max]."""
        cfg = self.cfg
        z = torch.randn(tuple(shape), generator=generator, device=device)
        return (cfg.sigma_train_mean + cfg.sigma_train_std * z).exp().clamp(cfg.sigma_min, cfg.sigma_max)

    def sample_context_sigma(self, shape: Sequence[int], device: torch.device | str,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise level of each committed (context) frame in training: log-uniform in
        [context_sigma_train_min, context_sigma_train_max] (noise augmentation; inference commits at
        context_sigma)."""
        cfg = self.cfg
        u = torch.rand(tuple(shape), generator=generator, device=device)
        lo, hi = math.log(cfg.context_sigma_train_min), math.log(cfg.context_sigma_train_max)
        return (lo + u * (hi - lo)).exp()

    def karras_sigmas(self, steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Karras schedule sigma_max..sigma_min over ``steps`` levels, then 0: (steps + 1,)."""
        cfg = self.cfg
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if steps == 1:
            sig = torch.tensor([cfg.sigma_max], dtype=torch.float64)
        else:
            ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
            lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
            sig = (hi + ramp * (lo - hi)) ** cfg.rho
        return torch.cat([sig, sig.new_zeros(1)]).float().to(device)

    def sampling_sigmas(self, steps: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """The sampler's levels, then 0: the config's ``sampling_sigmas`` when set and ``steps`` is None or
        their count, else the Karras schedule of ``steps`` (default ``sampling_steps``) levels."""
        cfg = self.cfg
        levels = cfg.sampling_sigmas
        if levels is not None and steps in (None, len(levels)):
            return torch.tensor(list(levels) + [0.0], dtype=torch.float32, device=device)
        return self.karras_sigmas(cfg.sampling_steps if steps is None else steps, device)


def sample(denoise: Callable[[torch.Tensor, float], torch.Tensor], noise: torch.Tensor,
           sigmas: torch.Tensor, sampler: str = "euler") -> torch.Tensor:
    """Deterministic EDM sampler from ``noise`` (unit variance) along ``sigmas`` (ends at 0).

    ``denoise(x, sigma)`` returns the denoised estimate at noise level ``sigma`` (a float).
    ``euler``: one network call per level (DIAMOND's few-step default); ``heun``: second-order
    correction on every step but the last (2 calls per step)."""
    if sampler not in ("euler", "heun"):
        raise ValueError(f"unknown sampler {sampler!r}")
    levels = [float(s) for s in sigmas]
    x = noise.float() * levels[0]
    for s, s_next in zip(levels[:-1], levels[1:]):
        d = (x - denoise(x, s).float()) / s
        x_next = x + (s_next - s) * d
        if sampler == "heun" and s_next > 0:
            d2 = (x_next - denoise(x_next, s_next).float()) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d2)
        x = x_next
    return x

