"""The frame critic of adversarial training (rad_env.model.critic) on sharp and blurred frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rad_env.evaluation.rollout import frame_detail
from rad_env.model.critic import CriticConfig, FrameCritic, critic_loss, generator_loss, separation_auc
from rad_env.model.world_model import float_to_frames


def sharp_frames(n: int, seed: int) -> torch.Tensor:
    """Frames (n, 3, 16, 16) in [-1, 1] of random 2x2-pixel blocks: fine structure everywhere."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return F.interpolate(blocks, scale_factor=2, mode="nearest")


def blur(frames: torch.Tensor) -> torch.Tensor:
    """What a denoiser that predicts the mean draws: the frames averaged over 4x4 pixels."""
    return F.interpolate(F.avg_pool2d(frames, 4), scale_factor=4, mode="bilinear", align_corners=False)


def trained_critic(steps: int = 150) -> FrameCritic:
    torch.manual_seed(0)
    critic = FrameCritic(CriticConfig(channels=(8, 16)))
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.5, 0.999))
    for step in range(steps):
        real = sharp_frames(16, seed=step)
        loss, _ = critic_loss(critic, real, blur(sharp_frames(16, seed=10_000 + step)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    critic.zero_grad(set_to_none=True)
    return critic


def test_critic_tells_sharp_frames_from_blurred_ones() -> None:
    critic = trained_critic()
    real = sharp_frames(32, seed=99_999)
    _, metrics = critic_loss(critic, real, blur(sharp_frames(32, seed=77_777)))
    assert metrics["critic_real_acc"] > 0.9 and metrics["critic_fake_acc"] > 0.9
    assert critic(real).shape == (32, 4, 4)  # one logit per 4x4-pixel patch of a 16x16 frame (2 strides)


def test_generator_loss_draws_detail_into_a_blurred_prediction() -> None:
    """Descending the generator loss on a blurred frame (the critic fixed) adds the fine structure the
    critic looks for, which a squared error to the mean would never add."""
    critic = trained_critic().requires_grad_(False)
    predicted = blur(sharp_frames(4, seed=5)).requires_grad_(True)
    before = frame_detail(float_to_frames(predicted.detach()).numpy()).mean()
    opt = torch.optim.Adam([predicted], lr=0.02)
    losses = []
    for _ in range(40):
        loss = generator_loss(critic, predicted)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    after = frame_detail(float_to_frames(predicted.detach()).numpy()).mean()
    assert losses[-1] < 0.5 * losses[0]
    assert after > 1.5 * before
    assert all(p.grad is None for p in critic.parameters())


def test_a_frame_critic_tells_frames_blurred_in_one_corner() -> None:
    """64x64 fakes blurred in one 16x16 corner only (walls dissolved, sky and floor intact): judged patch by
    patch (each logit sees ~38 pixels) most of a fake looks real; judged as whole frames (the mean of the
    patch scores) they are told apart."""
    def sharp(seed: int, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return F.interpolate(torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, scale_factor=2, mode="nearest")

    def corner_blurred(seed: int, n: int) -> torch.Tensor:
        frames = sharp(seed, n)
        frames[..., :16, :16] = blur(frames)[..., :16, :16]
        return frames

    separation = {}
    for pool in ("patch", "frame"):
        torch.manual_seed(0)
        critic = FrameCritic(CriticConfig(channels=(8, 16, 16), pool=pool))
        opt = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.5, 0.999))
        for step in range(150):
            loss, _ = critic_loss(critic, sharp(step, 8), corner_blurred(10_000 + step, 8))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            separation[pool] = separation_auc(critic(sharp(99_999, 32)), critic(corner_blurred(77_777, 32)))
        assert critic(sharp(1, 2)).shape == ((2,) if pool == "frame" else (2, 8, 8))
    assert separation["frame"] > 0.95 and separation["patch"] < 0.8, separation
