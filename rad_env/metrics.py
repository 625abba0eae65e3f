"""Frame quality metrics (torchmetrics implementations) on uint8 frames."""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

#: LPIPS needs pretrained VGG/AlexNet weights that torchvision downloads at run time; this project
#: never downloads at run time, so LPIPS is reported as unavailable.
LPIPS_UNAVAILABLE = "LPIPS not computed: its backbone weights would have to be downloaded"


def _to_float(frames: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (N, H, W, 3), got {tuple(frames.shape)} {frames.dtype}")
    return frames.permute(0, 3, 1, 2).float() / 255.0


def _pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return _to_float(pred), _to_float(target)


def _psnr(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3)).clamp(max=100.0)


def frame_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR (dB, capped at 100) for matching uint8 frame batches ``(N, H, W, 3)``."""
    with torch.autocast(pred.device.type, enabled=False):
        return _psnr(*_pair(pred, target))


def frame_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame PSNR (dB) and SSIM for matching uint8 frame batches ``(N, H, W, 3)``, in float32 whatever the
    caller's autocast (the evaluation dreams in bf16: SSIM's local variances, E[x^2] - E[x]^2 over a Gaussian
    window, lose most of their digits in bf16)."""
    p, t = _pair(pred, target)
    with torch.autocast(p.device.type, enabled=False):
        return {"psnr": _psnr(p, t),
                "ssim": structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")}
