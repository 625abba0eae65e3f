"""RAD world model: DiT denoiser + EDM diffusion + reward/termination heads."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .collision import CollisionGate
from .config import RADConfig
from .diffusion import EDM, randn_rows, sample
from ..data.segment import Batch
from .dit import RADDiT, previous_frames
from .heads import RewardGridHead
from .layers import blur_rows
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


class Imagined(NamedTuple):
    """One imagined step of a batch."""

    frames: torch.Tensor  # uint8 (B, H, W, 3)
    reward: torch.Tensor  # (B,) expected reward sign in [-1, 1]
    terminated_prob: torch.Tensor  # (B,)
    state: RADState  # after committing the frames
    performed: torch.Tensor  # (B,) the actions as performed: a press the collision gate refused is relabelled
    features: torch.Tensor | None = None  # (B, F) what the heads read of the new frames (None: a stand-in model)


class Denoised(NamedTuple):
    """The target stream's predictions of a training batch: the denoised frames D (B, L, C, H, W) float in
    [-1, 1] as the sampler sees them (with gradient), and the noise level each was denoised from (B, L)."""

    frames: torch.Tensor
    sigma: torch.Tensor


class LossOutput(NamedTuple):
    """One training sequence's loss, its metrics, and the inference state after its committed frames
    (detached: what truncated backprop through time carries into the episode's next chunk); with
    ``keep_denoised`` also the denoised frames (for a loss on them, e.g. an adversarial one)."""

    loss: torch.Tensor
    metrics: dict[str, float]
    state: RADState
    denoised: Denoised | None = None


class WorldModel(nn.Module):
    """Action-conditioned video world model (Recurrent Autoregressive Diffusion).

    Frames are uint8 (H, W, 3) at the interface; internally float in [-1, 1], channels first.
    Inference: :meth:`observe` commits real frames to a :class:`RADState`, :meth:`imagine` samples
    the next frame from an action and commits it. Training (:meth:`loss`) computes the same thing
    for every frame of a sequence at once (teacher forcing, see :mod:`rad_env.model.dit`).
    """

    def __init__(self, config: RADConfig | None = None):
        super().__init__()
        cfg = config if config is not None else RADConfig()
        if not isinstance(cfg, RADConfig):
            raise TypeError(f"config must be a RADConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.dit = RADDiT(cfg)
        self.edm = EDM(cfg)
        fd = self.dit.pooled_feature_dim
        # outputs: 3 reward-sign logits (-1/0/+1) and 1 termination logit
        self.head = nn.Sequential(nn.LayerNorm(fd), nn.Linear(fd, cfg.dim), nn.SiLU(),
                                  nn.Linear(cfg.dim, cfg.reward_classes + 1))
        self.reward_grid = RewardGridHead(cfg, fd) if cfg.reward_grid_channels else None
        self.register_buffer("reward_values", torch.tensor([-1.0, 0.0, 1.0]), persistent=False)
        self.collision = CollisionGate(cfg) if cfg.refused_actions else None

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "WorldModel":
        return cls(RADConfig.preset(name, **overrides))

    @property
    def device(self) -> torch.device:
        return self.dit.pos_embed.device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _precondition(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in) shaped to broadcast over (..., C, H, W), and c_noise shaped like sigma."""
        c_skip, c_out, c_in, c_noise = self.edm.precondition(sigma)
        e = lambda c: c[..., None, None, None]  # noqa: E731
        return e(c_skip), e(c_out), e(c_in), c_noise

    # ------------------------------------------------------------------------------------
    # heads
    # ------------------------------------------------------------------------------------
    def heads(self) -> list[nn.Module]:
        """The modules that read the head features (what ``--heads-only`` trains)."""
        return [self.head] + ([self.reward_grid] if self.reward_grid is not None else [])

    def freeze_all_but_heads(self) -> list[nn.Parameter]:
        """Make only :meth:`heads` trainable; returns their parameters."""
        self.requires_grad_(False)
        for head in self.heads():
            head.requires_grad_(True)
        return [p for head in self.heads() for p in head.parameters()]

    def head_logits(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (..., F) -> (reward logits (..., 3), termination logit (...))."""
        feats = feats.float()
        out = self.head(feats[..., :self.dit.pooled_feature_dim]).float()
        r_logits = out[..., :3]
        if self.reward_grid is not None:
            r_logits = r_logits + self.reward_grid(feats).float()
        return r_logits, out[..., 3]

    def head_loss(self, feats: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The heads' training loss on features (..., F) of frames with ``rewards`` (...) (the reward that arrived
        with each frame) and ``terminated`` (...) (None: the termination head is not trained): reward-sign
        cross-entropy with ``reward_event_weight`` on rewarded frames, plus termination BCE. Returns the loss and
        its parts (``reward_loss``, ``termination_loss``, ``reward_acc``, ``termination_acc``)."""
        cfg = self.config
        r_logits, t_logit = self.head_logits(feats)
        r_class = (torch.sign(rewards.float()) + 1).long()
        class_weight = torch.tensor([cfg.reward_event_weight, 1.0, cfg.reward_event_weight], device=feats.device)
        r_loss = F.cross_entropy(r_logits.reshape(-1, 3), r_class.reshape(-1), weight=class_weight)
        loss = cfg.reward_loss_weight * r_loss
        parts = {"reward_loss": r_loss.detach(),
                 "reward_acc": (r_logits.argmax(-1) == r_class).float().mean().detach()}
        if terminated is not None:
            t_loss = F.binary_cross_entropy_with_logits(t_logit, terminated.float())
            loss = loss + cfg.termination_loss_weight * t_loss
            parts["termination_loss"] = t_loss.detach()
            parts["termination_acc"] = ((t_logit > 0) == (terminated > 0.5)).float().mean().detach()
        return loss, parts

    def predict_outcome(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features -> (expected reward in [-1, 1], termination probability)."""
        r_logits, t_logit = self.head_logits(feats)
        return r_logits.softmax(-1) @ self.reward_values, torch.sigmoid(t_logit)

    # ------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------
    def loss(self, batch: Batch, generator: torch.Generator | None = None,
             context_frames: torch.Tensor | None = None, state: RADState | None = None,
             heads_only: bool = False, keep_denoised: bool = False, diffusion_scale: float = 1.0) -> LossOutput:
        """Teacher-forced diffusion loss over a batch of sequences, plus the heads' losses.

        Every frame is (1) committed as context at a small noise level (what :meth:`observe` does),
        which writes the memory and gives the heads' features, and (2) denoised from its own
        training noise level, attending to the committed previous frames and reading the memory they
        left (what :meth:`imagine` does). The EDM-weighted loss covers every frame.
        ``context_frames`` (uint8, like ``batch.frames``) replaces the committed frames, e.g. by the
        model's own samples (:meth:`rollout_frames`); the targets stay ``batch.frames``.
        ``state`` (truncated backprop through time): the batch continues the sequences that left this
        state (its memory, window and last frame); rows whose first frame starts an episode ignore it.
        ``heads_only``: only the reward and termination losses, on features computed without gradient and
        without the denoising pass (recalibrates a trained model's heads, e.g. on its own long dreams).
        Returns the loss, metrics and the (detached) state after the batch's committed frames, and with
        ``keep_denoised`` the target stream's denoised frames and their noise levels. ``diffusion_scale``
        multiplies the diffusion loss of this batch (0: the heads' losses only, the denoised frames still kept)."""
        cfg, dev = self.config, self.device
        if not isinstance(batch, Batch):
            raise TypeError(f"loss expects a rad_env.data.Batch, got {type(batch).__name__}")
        y = frames_to_float(batch.frames, dev)  # (B, L, C, H, W)
        if y.dim() != 5:
            raise ValueError(f"batch.frames must be (B, L, H, W, 3), got {tuple(batch.frames.shape)}")
        if context_frames is not None and context_frames.shape != batch.frames.shape:
            raise ValueError(f"context_frames must have the shape of batch.frames {tuple(batch.frames.shape)}, "
                             f"got {tuple(context_frames.shape)}")
        committed = y if context_frames is None else frames_to_float(context_frames, dev)
        b, l = y.shape[:2]
        if cfg.context_blur and self.training and context_frames is None and not heads_only:
            # a dream conditions on its own blurred frames, teacher forcing on sharp ones: blur them here
            amount = (torch.rand((b * l,), generator=generator, device=dev) * 2 - 1) * cfg.context_blur
            committed = blur_rows(committed.flatten(0, 1), amount.clamp_min(0)).view(committed.shape)
        actions = batch.prev_actions.to(dev).long()
        rewards = batch.rewards.to(dev).float()
        terminals = batch.terminated.to(dev).float()
        is_first = batch.is_first.to(dev).bool()
        for name, t in (("prev_actions", actions), ("rewards", rewards), ("terminated", terminals),
                        ("is_first", is_first)):
            if t.shape != (b, l):
                raise ValueError(f"batch.{name} must be ({b}, {l}), got {tuple(t.shape)}")
        self._check_actions(actions)

        observed, denoised = None, None
        if context_frames is not None and cfg.canvas_width:
            # a dreamed context frame is never bit-identical to the real one (rollout_frames keeps the real ones)
            observed = (context_frames.to(dev) == batch.frames.to(dev)).flatten(2).all(-1)
        canvases = self._canvases(committed, actions, is_first, state, observed)
        ctx_sigma = self.edm.sample_context_sigma((b, l), dev, generator)
        ctx_noise = torch.randn(y.shape, generator=generator, device=dev)
        _, _, c_in, c_noise = self._precondition(ctx_sigma)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not heads_only):
            context = self.dit.forward_context(c_in * (committed + ctx_sigma[..., None, None, None] * ctx_noise),
                                               c_noise, actions, is_first, state, committed, canvases)
        diffusion_metrics = dict.fromkeys(("diffusion_loss", "diffusion_loss_high_sigma", "diffusion_loss_low_sigma"),
                                          float("nan"))
        if not heads_only:
            diffusion_loss, diffusion_metrics, denoised = self._diffusion_loss(
                y, committed, actions, is_first, context, state, canvases, generator)

        loss, head_metrics = self.head_loss(context.features, rewards, terminals)
        if not heads_only:
            loss = loss + diffusion_scale * cfg.diffusion_loss_weight * diffusion_loss

        with torch.no_grad():
            metrics = {
                "loss": float(loss.detach()),
                **diffusion_metrics,
                **{name: float(value) for name, value in head_metrics.items()},
            }
            final = self.dit.state_after(context, committed[:, -1],
                                         canvases[:, -1] if canvases is not None else None).detach()
        return LossOutput(loss, metrics, final, denoised if keep_denoised else None)

    @torch.no_grad()
    def _canvases(self, committed: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor,
                  state: RADState | None, observed: torch.Tensor | None = None) -> torch.Tensor | None:
        """The motion prior's canvas after each committed frame (B, L, C + 3, H, canvas_width), as
        committing them one by one builds it (from the carried state's, empty at episode starts);
        ``observed`` (B, L) bool marks the real frames (default: all). None without ``canvas_width``."""
        if not self.config.canvas_width:
            return None
        b, l = committed.shape[:2]
        canvas = state.canvas.to(self.device) if state is not None else self.dit.empty_canvas(b, self.device)
        if observed is None:
            observed = torch.ones(b, l, dtype=torch.bool, device=self.device)
        keys = self.dit.sequence_motion_keys(actions, is_first, state)
        out = []
        for t in range(l):
            canvas = canvas * (~is_first[:, t]).to(canvas.dtype)[:, None, None, None]
            canvas = self.dit.motion.update_canvas(canvas, committed[:, t].float(), keys[:, t], observed[:, t])
            out.append(canvas)
        return torch.stack(out, dim=1)

    def _diffusion_loss(self, y: torch.Tensor, committed: torch.Tensor, actions: torch.Tensor,
                        is_first: torch.Tensor, context, state: RADState | None, canvases: torch.Tensor | None,
                        generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float], Denoised]:
        """The target stream of :meth:`loss`: every frame denoised from its own training noise level against
        the context pass; returns the EDM loss, its metrics (overall, on frames at sigma >= 1 and below) and
        the denoised frames."""
        cfg, dev = self.config, self.device
        b, l = y.shape[:2]
        sigma = self.edm.sample_training_sigma((b, l), dev, generator)
        noise = torch.randn(y.shape, generator=generator, device=dev)
        x = y + sigma[..., None, None, None] * noise
        c_skip, c_out, c_in, c_noise = self._precondition(sigma)
        target_actions = actions
        if cfg.action_dropout:  # the unconditional denoiser of classifier-free guidance
            drop = torch.rand((b, l), generator=generator, device=dev) < cfg.action_dropout
            target_actions = torch.where(drop, torch.full_like(actions, cfg.null_action), actions)
        out, flow = self._split_output(self.dit.forward_targets(c_in * x, c_noise, target_actions, context))
        prev_frames = previous_frames(committed, is_first, state.prev_frame if state is not None else None)
        prev_canvases = None if canvases is None else previous_frames(
            canvases, is_first, state.canvas if state is not None else None)
        keys = self.dit.sequence_motion_keys(target_actions, is_first, state, committed=actions)
        prior = self.motion_prior(prev_frames, keys, flow, prev_canvases)
        # EDM loss lambda(sigma) |D - y|^2 = |(D - y) / c_out|^2, D as the sampler sees it (overlay flattened)
        denoised = self._flatten_hud(c_skip * x + (1 - c_skip) * prior + c_out * out)
        per_frame = (((denoised - y) / c_out) ** 2).mean(dim=(2, 3, 4))
        with torch.no_grad():
            high = sigma >= 1.0
            metrics = {"diffusion_loss": float(per_frame.mean()),
                       "diffusion_loss_high_sigma": float(per_frame[high].mean()) if high.any() else float("nan"),
                       "diffusion_loss_low_sigma": float(per_frame[~high].mean()) if (~high).any() else float("nan")}
        return per_frame.mean(), metrics, Denoised(denoised, sigma)

    def forward(self, batch: Batch, generator: torch.Generator | None = None,
                context_frames: torch.Tensor | None = None, state: RADState | None = None,
                heads_only: bool = False, keep_denoised: bool = False, diffusion_scale: float = 1.0) -> LossOutput:
        """Same as :meth:`loss` (so DDP / torch.compile wrappers can call the module)."""
        return self.loss(batch, generator, context_frames, state, heads_only, keep_denoised, diffusion_scale)

    @torch.no_grad()
    def rollout_frames(self, batch: Batch, start: int, steps: int | None = None,
                       state: RADState | None = None) -> torch.Tensor:
        """uint8 frames like ``batch.frames``: the real frames before ``start``, then the model's own
        samples from the true actions (what a dream commits). Training on them as context, with the
        real frames as targets (``loss(batch, context_frames=...)``), teaches the model to recover
        from its own errors instead of compounding them. Rows that cross an episode start keep
        their real frames. ``state``: the carried state the batch continues (rows starting an episode
        start from an empty one); with it, ``start`` 0 dreams every frame on from that state (a dream
        longer than one chunk), if no row starts an episode at frame 0. The batch's actions are taken as
        performed (with a collision gate the trainer relabelled the refused presses): the gate is not asked."""
        l = batch.frames.shape[1]
        lowest = 0 if state is not None else 1
        if not lowest <= start < l:
            raise ValueError(f"rollout start must be in [{lowest}, {l - 1}], got {start}")
        frames = batch.frames.to(self.device).clone()
        actions = batch.prev_actions.to(self.device).long()
        is_first = batch.is_first.to(self.device).bool()
        if start == 0 and is_first[:, 0].any():
            raise ValueError("a rollout from frame 0 continues the carried state; rows that start an episode "
                             "need start >= 1")
        dreamed = ~is_first[:, 1:].any(1)
        b = frames.shape[0]
        if state is None:
            state = self.init_state(b)
        else:
            state = state.to(self.device).clone()
            fresh = torch.nonzero(is_first[:, 0]).flatten()
            if len(fresh):
                state.index_copy_(fresh, self.init_state(len(fresh)))
        for t in range(start):
            state = self.observe(frames[:, t], actions[:, t], state, pressed=False)
        for t in range(start, l):
            step = self.imagine(actions[:, t], state, steps=steps, pressed=False)
            frames[dreamed, t] = step.frames[dreamed]
            state = step.state
        return frames

    # ------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   cache_dtype: torch.dtype = torch.float32) -> RADState:
        """Empty state (no context frames, learned initial memory). ``cache_dtype`` is the
        dtype of the K/V window cache (e.g. torch.bfloat16 on GPU to halve its size)."""
        return self.dit.init_state(batch_size, device, cache_dtype)

    def _actions(self, prev_actions: Any, state: RADState, pressed: bool = True) -> torch.Tensor:
        """The actions (B,) that lead from ``state`` to the next frame, as performed: with a collision gate
        and ``pressed``, the presses it finds refused from the state's last frame relabelled
        (:meth:`performed_actions`)."""
        b = state.batch_size
        a = torch.as_tensor(np.asarray(prev_actions) if not isinstance(prev_actions, torch.Tensor)
                            else prev_actions, device=self.device).long().reshape(-1)
        if a.numel() != b:
            raise ValueError(f"expected {b} prev_actions, got {a.numel()}")
        self._check_actions(a)
        return self.performed_actions(a, state) if pressed else a

    def performed_actions(self, actions: torch.Tensor, state: RADState) -> torch.Tensor:
        """Pressed actions (B,) -> the actions the camera performs from ``state``'s last frame: with a collision
        gate (``RADConfig.refused_actions``) the presses it finds refused are relabelled; else unchanged."""
        if self.collision is None:
            return actions
        return self.collision.performed(actions, state.prev_frame.to(self.device))

    def _check_actions(self, a: torch.Tensor) -> None:
        n = self.config.num_actions
        if a.numel() and (a.min() < 0 or a.max() > n):
            raise ValueError(f"action ids must be in [0, {n}] ({n} = NULL_ACTION), got "
                             f"[{int(a.min())}, {int(a.max())}]")

    def motion_prior(self, prev_frames: torch.Tensor, keys: torch.Tensor, flow: torch.Tensor | None = None,
                     canvas: torch.Tensor | None = None) -> torch.Tensor:
        """What the denoiser predicts relative to, w in D = w + c_skip (x - w) + c_out F: the previous
        clean frames (..., C, H, W) warped by the flow of their transitions' motion keys (...;
        :meth:`RADDiT.motion_keys`) with ``motion_prior`` (plus the
        network's ``flow`` correction (..., 2, H, W) with ``flow_correction``; what the warp brings in from
        outside the frame taken from ``canvas`` (..., C + 3, H, Wc) with ``canvas_width``), else zeros
        (EDM's plain denoiser)."""
        motion = self.dit.motion
        if motion is None:
            return torch.zeros_like(prev_frames)
        flat = lambda t: None if t is None else t.reshape((-1,) + t.shape[-3:])  # noqa: E731
        return motion(flat(prev_frames), keys.reshape(-1), flat(flow), flat(canvas)).view(prev_frames.shape)

    def _split_output(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network output (..., output_channels, H, W) -> F (..., C, H, W) (float) and the flow
        correction (..., 2, H, W) (None without ``flow_correction``)."""
        out = out.float()
        c = self.config.channels
        return (out, None) if out.shape[-3] == c else (out[..., :c, :, :], out[..., c:, :, :])

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, prev_actions: torch.Tensor,
                state: RADState, *, base: torch.Tensor | None = None,
                warp: torch.Tensor | None = None) -> torch.Tensor:
        """The denoiser D(x; sigma) for the next frame: x (B, C, H, W) noisy frame, sigma (B,), the
        action that leads to it (B,); reads ``state`` without changing it. Returns float (B, C, H, W).
        ``base`` (:meth:`RADDiT.step_base`) and ``warp`` (:meth:`predict_warp` without a flow correction):
        the same for every denoising step of a frame, passed when the caller computed them already."""
        c_skip, c_out, c_in, c_noise = self._precondition(sigma)
        out, flow = self._split_output(self.dit.denoise_step(c_in * x, c_noise, prev_actions, state, base))
        prior = warp if warp is not None and flow is None else self.predict_warp(prev_actions, state, flow)
        return self._flatten_hud(c_skip * x + (1 - c_skip) * prior + c_out * out)

    def predict_warp(self, prev_actions: torch.Tensor, state: RADState, flow: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """The motion prior's prediction of the next frame (B, C, H, W), w in :meth:`denoise`: the state's last
        frame warped by the flow of (its action, ``prev_actions``) (plus the network's ``flow`` correction),
        reading the canvas; zeros without a motion prior."""
        keys = self.dit.motion_keys(prev_actions, state.last_action)
        return self.motion_prior(state.prev_frame, keys, flow, state.canvas if self.config.canvas_width else None)

    def _flatten_hud(self, frames: torch.Tensor) -> torch.Tensor:
        """Denoised frames (..., C, H, W) with the ``hud_border`` overlay set to its mean colour
        (:meth:`MotionPrior.flatten_hud`); unchanged without one."""
        return self.dit.motion.flatten_hud(frames) if self.config.hud_border else frames

    def sample_next(self, prev_actions: torch.Tensor, state: RADState, steps: int | None = None,
                    generators: Sequence[torch.Generator] | None = None, sampler: str | None = None,
                    guidance: float | None = None, *, base: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the next frame (float (B, C, H, W) in about [-1, 1]) from pure noise; state unchanged.

        ``guidance`` (default: the config's) != 1 mixes in the action-free denoiser (classifier-free
        guidance on the action, two network calls per step). The stem's base and the motion prior's warp
        are computed once for all steps (``base``: :meth:`RADDiT.step_base`, if the caller has it)."""
        cfg = self.config
        b = state.batch_size
        w = cfg.guidance if guidance is None else guidance
        sigmas = self.edm.sampling_sigmas(steps, self.device)
        noise = randn_rows((cfg.channels, cfg.image_size, cfg.image_size), b, generators, self.device)
        if w != 1.0:  # the conditional and the action-free denoiser in one batch of 2B rows
            rows = torch.arange(b, device=self.device)
            pair_state = state.select(torch.cat([rows, rows]))
            pair_actions = torch.cat([prev_actions, torch.full_like(prev_actions, cfg.null_action)])
        else:
            base = self.dit.step_base(prev_actions, state) if base is None else base
            warp = None if cfg.flow_correction else self.predict_warp(prev_actions, state)

        def denoise(x: torch.Tensor, s: float) -> torch.Tensor:
            if w == 1.0:
                return self.denoise(x, torch.full((b,), s, device=x.device), prev_actions, state,
                                    base=base, warp=warp)
            d, d_null = self.denoise(torch.cat([x, x]), torch.full((2 * b,), s, device=x.device), pair_actions,
                                     pair_state).chunk(2)
            return d_null + w * (d - d_null)

        return sample(denoise, noise, sigmas, sampler or cfg.sampler)

    def _commit(self, y: torch.Tensor, prev_actions: torch.Tensor, state: RADState,
                generators: Sequence[torch.Generator] | None, observed: bool, base: torch.Tensor | None = None
                ) -> tuple[RADState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Push clean frames y (B, C, H, W) into the context at ``context_sigma`` (``observed``: real frames,
        else dreamed; ``base``: :meth:`RADDiT.step_base` if already computed). Returns the new state, the
        heads' outputs and their input features."""
        b = y.shape[0]
        cs = self.config.context_sigma
        noise = randn_rows(y.shape[1:], b, generators, y.device)
        _, _, c_in, c_noise = self._precondition(torch.full((b,), cs, device=y.device))
        feats, new_state = self.dit.commit_step(c_in * (y + cs * noise), c_noise, prev_actions, state, y, observed,
                                                base)
        reward, term = self.predict_outcome(feats)
        return new_state, reward, term, feats

    @torch.no_grad()
    def observe(self, frames: Any, prev_actions: Any, state: RADState,
                generators: Sequence[torch.Generator] | None = None, pressed: bool = True) -> RADState:
        """Commit real frames uint8 (B, H, W, 3) reached by ``prev_actions`` (B,) (NULL_ACTION =
        num_actions after a reset). Returns the new state; ``state`` is not modified. ``pressed``: the
        actions as pressed (a collision gate decides which were refused), else as performed."""
        y = frames_to_float(frames, self.device)
        if y.dim() != 4:
            raise ValueError(f"frames must be (B, H, W, 3), got {tuple(y.shape)}")
        if y.shape[0] != state.batch_size:
            raise ValueError(f"expected {state.batch_size} frames, got {y.shape[0]}")
        new_state, *_ = self._commit(y, self._actions(prev_actions, state, pressed), state, generators,
                                       observed=True)
        return new_state

    @torch.no_grad()
    def imagine(self, prev_actions: Any, state: RADState, steps: int | None = None,
                generators: Sequence[torch.Generator] | None = None, sampler: str | None = None,
                guidance: float | None = None, pressed: bool = True) -> Imagined:
        """Sample the frame that ``prev_actions`` (B,) lead to and commit it.

        ``state`` is not modified. The denoising steps read the state without writing it; the final
        frame (quantised to uint8, exactly like ``observe``) is then committed at ``context_sigma``,
        which also gives the heads' outputs. ``pressed``: the actions as pressed (a collision gate
        decides which the maze refuses, :meth:`performed_actions`), else as performed. A press the gate
        refuses as one of ``RADConfig.hold_refused_as`` repeats the last frame instead of sampling one."""
        a = self._actions(prev_actions, state, pressed=False)
        performed = self.performed_actions(a, state) if pressed else a
        base = self.dit.step_base(performed, state)  # one for the denoising steps and the commit
        frames = float_to_frames(self.sample_next(performed, state, steps, generators, sampler, guidance, base=base))
        held = self._held(a, performed)
        if held.any():  # the camera did not move: the view stays as it was
            frames[held] = float_to_frames(state.prev_frame[held].to(self.device))
        new_state, reward, term, feats = self._commit(frames_to_float(frames), performed, state, generators,
                                                      observed=False, base=base)
        return Imagined(frames, reward, term, new_state, performed, feats)

    def _held(self, pressed: torch.Tensor, performed: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the presses the collision gate refused as one of ``RADConfig.hold_refused_as``, after
        which a dream repeats the last frame."""
        hold = self.config.hold_refused_as
        if not hold:
            return torch.zeros_like(pressed, dtype=torch.bool)
        return (performed != pressed) & torch.isin(performed, torch.tensor(hold, device=performed.device))
