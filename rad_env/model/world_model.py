"""RAD world model: DiT denoiser + EDM diffusion + reward/termination heads."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import RADConfig
from .diffusion import EDM, randn_rows, sample
from .dit import RADDiT
from .state import RADState


def frames_to_float(frames: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 frames (..., H, W, C) -> float32 (..., C, H, W) in [-1, 1]."""
    t = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if t.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8 (H, W, 3) images, got dtype {t.dtype}")
    t = t.to(device) if device is not None else t
    return t.movedim(-1, -3).float() / 127.5 - 1.0


def float_to_frames(x: torch.Tensor) -> torch.Tensor:
    """float (..., C, H, W) in [-1, 1] -> uint8 (..., H, W, C) (clipped, rounded)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).contiguous()


class WorldModel(nn.Module):
    """Action-conditioned video world model (Recurrent Autoregressive Diffusion).

    Frames are uint8 (H, W, 3) at the interface; internally float in [-1, 1], channels first.
    """

    def __init__(self, config: RADConfig | None = None):
        super().__init__()
        cfg = config if config is not None else RADConfig()
        if not isinstance(cfg, RADConfig):
            raise TypeError(f"config must be a RADConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.dit = RADDiT(cfg)
        self.edm = EDM(cfg)
        fd = self.dit.feature_dim
        # outputs: 3 reward-sign logits (-1/0/+1) and 1 termination logit
        self.head = nn.Sequential(nn.LayerNorm(fd), nn.Linear(fd, cfg.dim), nn.SiLU(),
                                  nn.Linear(cfg.dim, cfg.reward_classes + 1))
        self.register_buffer("reward_values", torch.tensor([-1.0, 0.0, 1.0]), persistent=False)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "WorldModel":
        return cls(RADConfig.preset(name, **overrides))

    @property
    def device(self) -> torch.device:
        return self.dit.pos_embed.device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------------------------
    # denoiser
    # ------------------------------------------------------------------------------------
    def denoise_sequence(self, noisy: torch.Tensor, sigma: torch.Tensor, prev_actions: torch.Tensor,
                         is_first: torch.Tensor | None = None, return_state: bool = False):
        """Parallel (training) path. noisy (B, L, C, H, W), sigma (B, L), prev_actions (B, L).
        Returns (denoised (B, L, C, H, W) float32, features (B, L, F), state or None)."""
        c_skip, c_out, c_in, c_noise = (c[..., None, None, None] if i < 3 else c
                                        for i, c in enumerate(self.edm.precondition(sigma)))
        out, feats, state = self.dit.forward_sequence(c_in * noisy, c_noise, prev_actions,
                                                      is_first, return_state)
        return c_skip * noisy + c_out * out.float(), feats, state

    def denoise_step(self, noisy: torch.Tensor, sigma: torch.Tensor, prev_actions: torch.Tensor,
                     state: RADState, want_state: bool = True):
        """Frame-by-frame (inference) path. noisy (B, C, H, W), sigma (B,), prev_actions (B,).
        ``state`` is not modified. Returns (denoised, features or None, new state or None)."""
        c_skip, c_out, c_in, c_noise = (c[..., None, None, None] if i < 3 else c
                                        for i, c in enumerate(self.edm.precondition(sigma)))
        out, feats, new_state = self.dit.forward_step(c_in * noisy, c_noise, prev_actions, state,
                                                      want_state)
        return c_skip * noisy + c_out * out.float(), feats, new_state

    def head_logits(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (..., F) -> (reward logits (..., 3), termination logit (...))."""
        out = self.head(feats.float()).float()
        return out[..., :3], out[..., 3]

    def predict_outcome(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features -> (expected reward in [-1, 1], termination probability)."""
        r_logits, t_logit = self.head_logits(feats)
        return r_logits.softmax(-1) @ self.reward_values, torch.sigmoid(t_logit)

    # ------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------
    def loss(self, batch: dict[str, Any], generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Diffusion-forcing loss over a batch of sequences.

        batch: ``frames`` uint8 (B, L, H, W, 3), ``prev_actions`` int64 (B, L),
        ``rewards`` float32 (B, L), ``terminals`` float32 (B, L), optional ``is_first`` bool
        (B, L) (frames that start an episode: memory reset and attention cut).
        Every frame gets its own sigma; the EDM-weighted denoising loss covers all frames.
        The heads are trained on the features of context-level frames (``heads_on_context_only``).
        """
        cfg, dev = self.config, self.device
        y = frames_to_float(batch["frames"], dev)  # (B, L, C, H, W)
        if y.dim() != 5:
            raise ValueError(f"batch['frames'] must be (B, L, H, W, 3), got {tuple(batch['frames'].shape)}")
        b, l = y.shape[:2]
        actions = torch.as_tensor(batch["prev_actions"], device=dev).long()
        rewards = torch.as_tensor(batch["rewards"], device=dev).float()
        terminals = torch.as_tensor(batch["terminals"], device=dev).float()
        is_first = batch.get("is_first")
        if is_first is not None:
            is_first = torch.as_tensor(is_first, device=dev).bool()
        for name, t in (("prev_actions", actions), ("rewards", rewards), ("terminals", terminals)):
            if t.shape != (b, l):
                raise ValueError(f"batch['{name}'] must be ({b}, {l}), got {tuple(t.shape)}")
        self._check_actions(actions)

        sigma, is_ctx = self.edm.sample_training_sigma((b, l), dev, generator)
        noise = torch.randn(y.shape, generator=generator, device=dev)
        x = y + sigma[..., None, None, None] * noise
        c_skip, c_out, c_in, c_noise = self.edm.precondition(sigma)
        e = lambda c: c[..., None, None, None]  # noqa: E731
        out, feats, _ = self.dit.forward_sequence(e(c_in) * x, c_noise, actions, is_first)
        # EDM loss lambda(sigma) * |D - y|^2 == |F - (y - c_skip x) / c_out|^2
        target = (y - e(c_skip) * x) / e(c_out)
        per_frame = ((out.float() - target) ** 2).mean(dim=(2, 3, 4))  # (B, L)
        # Frames at context_sigma only serve as context: denoising them means predicting the noise
        # itself (c_out ~ sigma), a loss of ~1 that carries no signal, so they are left out.
        generated = (~is_ctx).float()
        diffusion_loss = (per_frame * generated).sum() / generated.sum().clamp(min=1.0)

        r_logits, t_logit = self.head_logits(feats)
        r_class = (torch.sign(rewards) + 1).long()
        if cfg.heads_on_context_only and bool(is_ctx.any()):
            mask = is_ctx.float()
        else:
            mask = torch.ones_like(rewards)
        denom = mask.sum().clamp(min=1.0)
        r_loss = (F.cross_entropy(r_logits.reshape(-1, 3), r_class.reshape(-1), reduction="none")
                  .view(b, l) * mask).sum() / denom
        t_loss = (F.binary_cross_entropy_with_logits(t_logit, terminals, reduction="none")
                  * mask).sum() / denom
        loss = (cfg.diffusion_loss_weight * diffusion_loss + cfg.reward_loss_weight * r_loss
                + cfg.termination_loss_weight * t_loss)

        with torch.no_grad():
            r_acc = ((r_logits.argmax(-1) == r_class).float() * mask).sum() / denom
            t_acc = (((t_logit > 0).float() == (terminals > 0.5).float()).float() * mask).sum() / denom
            ctx_loss = (per_frame * is_ctx).sum() / is_ctx.sum().clamp(min=1)
        metrics = {
            "loss": float(loss.detach()),
            "diffusion_loss": float(diffusion_loss.detach()),
            "diffusion_loss_context": float(ctx_loss),
            "reward_loss": float(r_loss.detach()),
            "termination_loss": float(t_loss.detach()),
            "reward_acc": float(r_acc),
            "termination_acc": float(t_acc),
        }
        return loss, metrics

    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """Same as :meth:`loss` (so DDP / torch.compile wrappers can call the module)."""
        return self.loss(batch, generator)

    # ------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   cache_dtype: torch.dtype = torch.float32) -> RADState:
        """Empty state (no context frames, learned initial memory). ``cache_dtype`` is the
        dtype of the K/V window cache (e.g. torch.bfloat16 on GPU to halve its size)."""
        return self.dit.init_state(batch_size, device, cache_dtype)

    def _actions(self, prev_actions: Any, b: int) -> torch.Tensor:
        a = torch.as_tensor(np.asarray(prev_actions) if not isinstance(prev_actions, torch.Tensor)
                            else prev_actions, device=self.device).long().reshape(-1)
        if a.numel() != b:
            raise ValueError(f"expected {b} prev_actions, got {a.numel()}")
        self._check_actions(a)
        return a

    def _check_actions(self, a: torch.Tensor) -> None:
        n = self.config.num_actions
        if a.numel() and (a.min() < 0 or a.max() > n):
            raise ValueError(f"action ids must be in [0, {n}] ({n} = NULL_ACTION), got "
                             f"[{int(a.min())}, {int(a.max())}]")

    def _commit(self, y: torch.Tensor, prev_actions: torch.Tensor, state: RADState,
                generators: Sequence[torch.Generator] | None):
        """Push clean frames y (B, C, H, W) into the context at ``context_sigma``."""
        b = y.shape[0]
        cs = self.config.context_sigma
        noise = randn_rows(y.shape[1:], b, generators, y.device)
        sigma = torch.full((b,), cs, device=y.device)
        _, feats, new_state = self.denoise_step(y + cs * noise, sigma, prev_actions, state, True)
        reward, term = self.predict_outcome(feats)
        return new_state, reward, term

    @torch.no_grad()
    def observe(self, frames: Any, prev_actions: Any, state: RADState,
                generators: Sequence[torch.Generator] | None = None) -> RADState:
        """Commit real frames uint8 (B, H, W, 3) reached by ``prev_actions`` (B,) (NULL_ACTION =
        num_actions after a reset). Returns the new state; ``state`` is not modified."""
        y = frames_to_float(frames, self.device)
        if y.dim() != 4:
            raise ValueError(f"frames must be (B, H, W, 3), got {tuple(y.shape)}")
        new_state, _, _ = self._commit(y, self._actions(prev_actions, y.shape[0]), state, generators)
        return new_state

    @torch.no_grad()
    def imagine(self, prev_actions: Any, state: RADState, steps: int | None = None,
                generators: Sequence[torch.Generator] | None = None, sampler: str | None = None):
        """Sample the frame that ``prev_actions`` (B,) lead to and commit it.

        Returns (frames uint8 (B, H, W, 3), reward (B,) float (expected sign in [-1, 1]),
        terminated_prob (B,), new state). ``state`` is not modified. The denoising steps read
        the state without writing it; the final frame (quantised to uint8, exactly like
        ``observe``) is then committed at ``context_sigma``, which also gives the heads' outputs.
        """
        cfg = self.config
        b = state.batch_size
        a = self._actions(prev_actions, b)
        steps = cfg.sampling_steps if steps is None else steps
        sigmas = self.edm.karras_sigmas(steps, self.device)
        shape = (cfg.channels, cfg.image_size, cfg.image_size)
        noise = randn_rows(shape, b, generators, self.device)

        def denoise(x: torch.Tensor, s: float) -> torch.Tensor:
            sig = torch.full((b,), s, device=x.device)
            d, _, _ = self.denoise_step(x, sig, a, state, want_state=False)
            return d

        x = sample(denoise, noise, sigmas, sampler or cfg.sampler)
        frames = float_to_frames(x)
        new_state, reward, term = self._commit(frames_to_float(frames), a, state, generators)
        return frames, reward, term, new_state
