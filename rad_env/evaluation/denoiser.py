"""Separate the denoiser from the sampler on real next frames.

From real context, the true next frame ``y`` is (a) corrupted at noise level sigma and denoised in
one call (teacher forced: how good is the denoiser at that level?) and (b) sampled from pure noise
with the sampler (Euler/Heun, several step counts). If (a) is good at the highest sampling sigma but
(b) is bad, the sampler or the noise range is at fault, not the network.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.diffusion import sample
from ..model.world_model import float_to_frames, frames_to_float
from .rollout import observe_frames, psnr

ONE_SHOT_SIGMAS = (0.05, 0.5, 2.0, 5.0, 20.0, 80.0)
SAMPLERS = (("euler", 1), ("euler", 3), ("euler", 10), ("heun", 3), ("heun", 10))


@torch.no_grad()
def denoiser_diagnostics(model, frames: np.ndarray, prev_actions: np.ndarray, context: int,
                         positions: list[int], seed: int = 0,
                         sigmas: tuple[float, ...] = ONE_SHOT_SIGMAS,
                         samplers: tuple[tuple[str, int], ...] = SAMPLERS) -> list[dict[str, float | str]]:
    """Mean PSNR (dB) against the true frame over every clip x position.

    For position ``t`` the model observes real frames ``t - context .. t - 1`` and predicts frame ``t``.
    Rows: ``one-shot sigma=s`` for each sigma, ``<sampler> <n> steps`` for each sampler, the copy-last
    baseline at the same frames and, with a motion prior, its warp alone (what the network corrects)."""
    device = model.device
    ctx, acts, target = [], [], []
    for t in positions:
        ctx.append(frames[:, t - context:t])
        acts.append(prev_actions[:, t - context:t + 1])
        target.append(frames[:, t])
    ctx_t = torch.from_numpy(np.concatenate(ctx))
    acts_t = torch.from_numpy(np.concatenate(acts)).long()
    real = np.concatenate(target)
    b = len(real)
    gens = lambda: [torch.Generator(device=device).manual_seed(seed + i) for i in range(b)]  # noqa: E731
    state = observe_frames(model, ctx_t, acts_t[:, :context], generators=gens())
    action = acts_t[:, context].to(device)
    y = frames_to_float(torch.from_numpy(real), device)
    rows: list[dict[str, float | str]] = [{"method": "copy-last frame", "psnr": float(psnr(ctx_t[:, -1].numpy(), real).mean())}]
    if model.dit.motion is not None:  # what the denoiser predicts relative to: how much does the network add?
        warp = float_to_frames(model.predict_warp(action, state)).cpu().numpy()
        rows.append({"method": "motion prior's warp alone", "psnr": float(psnr(warp, real).mean())})

    def denoise(x: torch.Tensor, s: float) -> torch.Tensor:
        return model.denoise(x, torch.full((b,), s, device=device), action, state)

    noise = torch.stack([torch.randn(y.shape[1:], generator=g, device=device) for g in gens()])
    for s in sigmas:
        pred = float_to_frames(denoise(y + s * noise, s)).cpu().numpy()
        rows.append({"method": f"one-shot denoise, sigma={s:g}", "psnr": float(psnr(pred, real).mean())})
    for name, steps in samplers:
        x = sample(denoise, noise, model.edm.karras_sigmas(steps, device), name)
        pred = float_to_frames(x).cpu().numpy()
        rows.append({"method": f"sample from noise, {name} {steps} step{'s' * (steps > 1)}",
                     "psnr": float(psnr(pred, real).mean())})
    levels = model.config.sampling_sigmas
    if levels is not None:  # the model's own levels (not a Karras schedule)
        x = sample(denoise, noise, model.edm.sampling_sigmas(None, device), model.config.sampler)
        method = f"sample from noise, {model.config.sampler} at sigma {'/'.join(f'{v:g}' for v in levels)}"
        rows.append({"method": method, "psnr": float(psnr(float_to_frames(x).cpu().numpy(), real).mean())})
    return rows
