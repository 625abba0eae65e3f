"""Frame metrics are computed in float32 even inside the evaluation's bf16 autocast."""

from __future__ import annotations

import torch

from rad_env.metrics import frame_metrics, frame_psnr


def test_frame_metrics_ignore_an_enclosing_bf16_autocast() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 256, (4, 64, 64, 3), generator=gen, dtype=torch.uint8)
    noise = torch.randint(-20, 21, target.shape, generator=gen)
    pred = (target.int() + noise).clamp(0, 255).to(torch.uint8)
    plain = frame_metrics(pred, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = frame_metrics(pred, target)
        psnr_under = frame_psnr(pred, target)
    assert under["ssim"].dtype == torch.float32 and 0 < float(plain["ssim"].mean()) < 1
    torch.testing.assert_close(under["ssim"], plain["ssim"])
    torch.testing.assert_close(under["psnr"], plain["psnr"])
    torch.testing.assert_close(psnr_under, plain["psnr"])
