"""A frame critic for adversarial training of the denoiser (`rad_env.train --adversarial-weight`).

At a high noise level the denoiser's squared-error target makes it predict the *mean* of every frame
the context allows: where a step or a turn reveals what the context cannot tell (new walls), that mean
is a blurred haze, and a dream that commits it frame after frame turns into haze. Adversarial diffusion
distillation (Sauer et al. 2023, ADD) pushes the same prediction towards *one* plausible frame instead:
a critic learns to tell the denoiser's high-noise predictions from real frames, and the denoiser is
also trained to fool it. The critic here is a small PatchGAN (Isola et al. 2017): strided convolutions,
one real-vs-predicted logit per 8x8-pixel patch of a 64x64 frame. Spectral normalisation (Miyato et al.
2018) is optional and off: on the embedded default's predictions from its own rollouts, a critic with it
had not begun to separate them from real frames after 200 Adam steps of 64 pairs (loss 1.37, chance
1.386), one without it had (1.18). It only exists in training; checkpoints for inference do not hold it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .world_model import float_to_frames, frames_to_float


@dataclass
class CriticConfig:
    """channels: of each stride-2 convolution (a 64x64 frame ends as a grid of 64 / 2**len patches);
    pool: "patch" judges every patch on its own, "frame" the whole frame (the mean of its patch scores: a
    frame whose walls dissolved is fake even where its sky and floor look real)."""

    channels: tuple[int, ...] = (32, 64, 128)
    image_channels: int = 3
    spectral_norm: bool = False
    pool: str = "patch"

    def __post_init__(self) -> None:
        if self.pool not in ("patch", "frame"):
            raise ValueError(f"critic pool must be 'patch' or 'frame', got {self.pool!r}")


class FrameCritic(nn.Module):
    """float frames (N, 3, H, W) in [-1, 1] -> real-vs-predicted logits (N, H / 2**k, W / 2**k), or (N,) with
    ``pool="frame"``."""

    def __init__(self, config: CriticConfig | None = None):
        super().__init__()
        cfg = config if config is not None else CriticConfig()
        norm = spectral_norm if cfg.spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        c_in = cfg.image_channels
        for c in cfg.channels:
            layers += [norm(nn.Conv2d(c_in, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c_in = c
        layers.append(norm(nn.Conv2d(c_in, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)
        self.pool = cfg.pool

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 4:
            raise ValueError(f"the critic reads frames (N, C, H, W), got {tuple(frames.shape)}")
        logits = self.net(frames.float()).squeeze(1)
        return logits.mean(dim=(-2, -1)) if self.pool == "frame" else logits


def generator_loss(critic: nn.Module, predicted: torch.Tensor) -> torch.Tensor:
    """Non-saturating loss of the denoiser: -log sigmoid(critic(predicted)), per patch, averaged."""
    return F.softplus(-critic(predicted)).mean()


def critic_loss(critic: nn.Module, real: torch.Tensor,
                predicted: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The critic's logistic loss on real frames and (detached) predictions; returns it and its accuracy
    on each side (the fraction of patches, or frames, it classifies right)."""
    real_logits, fake_logits = critic(real), critic(predicted.detach())
    loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    with torch.no_grad():
        metrics = {"critic_loss": float(loss), "critic_real_acc": float((real_logits > 0).float().mean()),
                   "critic_fake_acc": float((fake_logits < 0).float().mean())}
    return loss, metrics


def separation_auc(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> float:
    """The ROC AUC of critic scores: how often a real frame's (or patch's) score beats a fake one's, ties
    counted half; 1 separates them, 0.5 is chance."""
    real, fake = real_scores.flatten()[:, None], fake_scores.flatten()[None, :]
    return float((real > fake).float().mean() + 0.5 * (real == fake).float().mean())


class FrameBuffer:
    """The last ``capacity`` frames pushed (a ring, stored as uint8 on the frames' device), sampled uniformly:
    the critic's fakes with ``rad_env.train --critic-buffer``, so that each of its batches holds as many frames
    from past dreams as real ones whatever the current step dreamed."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"a frame buffer needs capacity >= 1, got {capacity}")
        self.capacity = capacity
        self.frames: torch.Tensor | None = None
        self.size = self.next = 0

    def __len__(self) -> int:
        return self.size

    def push(self, frames: torch.Tensor) -> None:
        """Add float frames (N, C, H, W) in [-1, 1] (only the last ``capacity`` of them when N is larger)."""
        frames = frames.detach()[-self.capacity:]
        if not len(frames):
            return
        stored = float_to_frames(frames)
        if self.frames is None:
            self.frames = stored.new_zeros((self.capacity,) + tuple(stored.shape[1:]))
        index = (self.next + torch.arange(len(stored), device=stored.device)) % self.capacity
        self.frames[index.to(self.frames.device)] = stored.to(self.frames.device)
        self.next = (self.next + len(stored)) % self.capacity
        self.size = min(self.capacity, self.size + len(stored))

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` frames drawn uniformly with replacement, float in [-1, 1] (N, C, H, W)."""
        if not self.size or self.frames is None:
            raise ValueError("sample: the frame buffer is empty")
        index = torch.randint(0, self.size, (count,), generator=generator)
        return frames_to_float(self.frames[index.to(self.frames.device)])
