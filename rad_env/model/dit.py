"""The RAD diffusion transformer: frame-wise local temporal attention + per-layer memory.

Each block, per frame:
  1. spatial self-attention inside the frame (2D RoPE),
  2. causal temporal attention: the frame's tokens attend to all tokens of the last
     ``window`` frames, itself included (3D RoPE over time/y/x, relative time),
  3. memory read (tokens -> slots h_{t-1}) and, for committed frames, write (pooled tokens ->
     recurrent cell -> h_t),
  4. MLP.
Each sub-block is AdaLN-Zero modulated by the per-frame conditioning (noise level + action).

Inference runs frame by frame from an explicit :class:`RADState` (K/V of the last ``window - 1``
committed frames + memory): :meth:`RADDiT.denoise_step` denoises the next frame reading the state,
:meth:`RADDiT.commit_step` commits a finished frame (writes memory, K/V). Training computes exactly
this for every frame of a sequence at once, in two streams:
  * :meth:`RADDiT.forward_context`: the committed frames (real frames at a small context noise
    level), all in parallel: banded causal window attention, memory scanned over time;
  * :meth:`RADDiT.forward_targets`: every frame again at its training noise level, each attending
    to the context stream's K/V of its ``window - 1`` previous frames and reading the memory those
    frames left, as :meth:`denoise_step` does at inference.
Per-frame cost is constant except for ``memory="full"`` (attention over all previous frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import RADConfig
from .layers import Mlp, NoiseEmbedding, QKNorm, RoPE, apply_rope, attend, modulate, zero_
from .memory import make_memory, reset_segments
from .motion import FlowCorrection, MotionPrior
from .state import RADState
from .stem import make_stem


#: Compiled frame-pass graphs one process may hold (torch._dynamo's recompile limit, 8 by default).
FRAME_PASS_GRAPHS = 64


# ----------------------------------------------------------------------------------------
# temporal attention
# ----------------------------------------------------------------------------------------
def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rope: RoPE,
                     window: int | None, chunk: int, seg: torch.Tensor | None = None,
                     prefix: "Prefix | None" = None, layer: int = 0) -> torch.Tensor:
    """Frame-causal sliding-window attention over a whole sequence.

    q, k, v: (B, L, N, H, dh) (no RoPE yet). Tokens of frame t attend to the tokens of frames
    t-window+1..t (all previous frames if ``window`` is None). ``seg`` (B, L) int: frames only
    see frames of the same segment (episode). Queries are processed in blocks of ``chunk``
    frames, each against the keys of its block plus the ``window-1`` frames before it, so cost
    and memory are O(L * chunk-ish) rather than O(L^2) (except for window=None).
    Time positions are relative: query frame offsets from its keys equal the frame distance.
    ``prefix`` (with ``seg``): K/V of the frames before the sequence (a carried state, layer ``layer``),
    which the first frames also attend to when their segments match.
    """
    if prefix is not None:
        if seg is None:
            raise ValueError("a prefix needs the sequence's segment ids")
        wp = prefix.seg.shape[1]
        pad = q.new_zeros((q.shape[0], wp) + tuple(q.shape[2:]))
        o = banded_attention(torch.cat([pad, q], 1), torch.cat([prefix.keys[layer].to(k.dtype), k], 1),
                             torch.cat([prefix.values[layer].to(v.dtype), v], 1), rope, window, chunk,
                             torch.cat([prefix.seg, seg], 1))
        return o[:, wp:]
    b, l, n, h, dh = q.shape
    w = l if window is None else min(window, l)
    qn = l if window is None else min(chunk, l)
    c = -(-l // qn)
    lp = c * qn
    p = min(w - 1, lp - qn)  # keys needed before a block's first frame
    s = qn + p
    dev = q.device

    def pad_frames(t: torch.Tensor, left: int, right: int) -> torch.Tensor:
        return F.pad(t, (0, 0, 0, 0, 0, 0, left, right))

    qc = pad_frames(q, 0, lp - l).reshape(b * c, qn * n, h, dh).transpose(1, 2)

    def blocks(t: torch.Tensor) -> torch.Tensor:
        tp = pad_frames(t, p, lp - l).unfold(1, s, qn)  # (B, C, N, H, dh, S)
        return tp.permute(0, 1, 5, 2, 3, 4).reshape(b * c, s * n, h, dh).transpose(1, 2)

    kc, vc = blocks(k), blocks(v)
    cos_q, sin_q = rope.cos_sin(p, qn)
    cos_k, sin_k = rope.cos_sin(0, s)
    qc, kc = apply_rope(qc, cos_q, sin_q), apply_rope(kc, cos_k, sin_k)

    ci = torch.arange(c, device=dev).view(c, 1, 1)
    qf = ci * qn + torch.arange(qn, device=dev).view(1, qn, 1)  # (C, Q, 1) query frame
    kf = ci * qn - p + torch.arange(s, device=dev).view(1, 1, s)  # (C, 1, S) key frame
    d = qf - kf
    m = (d >= 0) & (d < w) & (kf >= 0) & ((kf < l) | (d == 0))  # (C, Q, S); padded rows see themselves
    if seg is not None:
        segp = F.pad(seg.long(), (p, lp - l), value=-1)  # index = frame + p
        sq = segp[:, (qf + p).expand(c, qn, s)]
        sk = segp[:, (kf + p).expand(c, qn, s)]
        m = m.unsqueeze(0) & (sq == sk)  # (B, C, Q, S)
    else:
        m = m.unsqueeze(0).expand(b, c, qn, s)
    mask = m[:, :, :, None, :, None].expand(b, c, qn, n, s, n).reshape(b * c, 1, qn * n, s * n)

    o = attend(qc, kc, vc, mask)  # (B*C, H, Q*N, dh)
    return o.transpose(1, 2).reshape(b, lp, n, h, dh)[:, :l]


def cached_attention(q: torch.Tensor, k_all: torch.Tensor, v_all: torch.Tensor,
                     valid: torch.Tensor, rope: RoPE) -> torch.Tensor:
    """One frame's queries q (B, N, H, dh) against cached + current keys (B, S, N, H, dh)
    (current frame last) with slot validity (B, S). Returns (B, N, H, dh)."""
    b, s, n, h, dh = k_all.shape
    cos_q, sin_q = rope.cos_sin(s - 1, 1)
    cos_k, sin_k = rope.cos_sin(0, s)
    qh = apply_rope(q.transpose(1, 2), cos_q, sin_q)
    kh = apply_rope(k_all.reshape(b, s * n, h, dh).transpose(1, 2), cos_k, sin_k)
    vh = v_all.reshape(b, s * n, h, dh).transpose(1, 2)
    mask = valid[:, None, None, :, None].expand(b, 1, 1, s, n).reshape(b, 1, 1, s * n)
    return attend(qh, kh, vh, mask).transpose(1, 2)


def context_windows(t: torch.Tensor, wc: int, before: torch.Tensor | None = None) -> torch.Tensor:
    """Per frame, the ``wc`` frames before it: (B, L, ...) -> (B, L, wc, ...), oldest first; before the
    sequence start the frames ``before`` (B, wc, ...) (a carried state's cache), else zeros."""
    b, l = t.shape[:2]
    if before is None:
        before = t.new_zeros((b, wc) + tuple(t.shape[2:]))
    padded = torch.cat([before.to(t.dtype), t], dim=1)
    index = torch.arange(l, device=t.device)[:, None] + torch.arange(wc, device=t.device)[None]  # (L, wc)
    return padded[:, index]


def context_valid(seg: torch.Tensor | None, b: int, l: int, wc: int, device,
                  prefix_seg: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L, wc) bool: slot j of frame t (frame t - wc + j) exists and is in t's episode. Frames before
    the sequence exist only in a carried state (``prefix_seg`` (B, wc): their segment, -1 if empty)."""
    seg = torch.zeros(b, l, dtype=torch.long, device=device) if seg is None else seg.long()
    before = torch.full((b, wc), -1, dtype=torch.long, device=device) if prefix_seg is None else prefix_seg
    seg_ctx = context_windows(seg.unsqueeze(-1), wc, before.unsqueeze(-1)).squeeze(-1)  # (B, L, wc)
    return seg_ctx == seg.unsqueeze(-1)


def previous_actions(actions: torch.Tensor, is_first: torch.Tensor | None, first: torch.Tensor | None,
                     null: int) -> torch.Tensor:
    """(B, L) actions that led to each frame -> the action that led to each frame's previous frame (``first``
    (B,) before frame 0, e.g. a carried state's ``last_action``, else ``null``), ``null`` at episode starts."""
    head = torch.full_like(actions[:, :1], null) if first is None else first.to(actions).unsqueeze(1)
    prev = torch.cat([head, actions[:, :-1]], dim=1)
    if is_first is not None:
        prev = torch.where(is_first.to(actions.device).bool(), torch.full_like(prev, null), prev)
    return prev


def previous_frames(x: torch.Tensor, is_first: torch.Tensor | None, first: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """(B, L, ...) -> the previous frame's tensor for each frame (``first`` (B, ...) before frame 0, e.g. a
    carried state's last frame, else zeros), zeros at episode starts."""
    head = torch.zeros_like(x[:, :1]) if first is None else first.to(x.dtype).unsqueeze(1)
    prev = torch.cat([head, x[:, :-1]], dim=1)
    if is_first is not None:
        keep = ~is_first.to(x.device).bool()
        prev = prev * keep.view(keep.shape + (1,) * (x.dim() - 2)).to(x.dtype)
    return prev


# ----------------------------------------------------------------------------------------
@dataclass
class Prefix:
    """The frames before a training sequence: a carried :class:`RADState` (truncated backprop through
    time; its K/V cache per layer (B, Wc, N, heads, head_dim), memory and last frame) and the segment
    ids (B, Wc) of its cached frames: 0 for a frame of the episode the sequence continues, -1 for an
    empty slot (the sequence's own segments count from 0, +1 at every episode start)."""

    state: RADState
    seg: torch.Tensor

    @property
    def keys(self) -> list[torch.Tensor]:
        return self.state.keys

    @property
    def values(self) -> list[torch.Tensor]:
        return self.state.values


@dataclass
class _SeqContext:
    rope: RoPE
    window: int | None
    chunk: int
    seg: torch.Tensor | None
    is_first: torch.Tensor | None
    prefix: Prefix | None = None
    #: [t0, t1) stretches without an episode start, where the memory scans without a reset
    memory_segments: list[tuple[int, int]] | None = None


@dataclass
class ContextPass:
    """What the committed frames of a training sequence leave for the frames being denoised."""

    inputs: torch.Tensor  # (B, L, C, H, W) network inputs of the committed frames
    actions: torch.Tensor  # (B, L) the actions that led to them
    keys: list[torch.Tensor]  # per layer (B, L, N, heads, head_dim)
    values: list[torch.Tensor]
    memory_read: list[torch.Tensor | None]  # per layer (B, L, M, Dm): what frame t reads (before its write)
    final_memory: list[list[torch.Tensor]]  # per layer: the memory state after the last frame
    features: torch.Tensor  # (B, L, feature_dim) head features of each committed frame
    seg: torch.Tensor | None  # (B, L) episode index within the sequence
    is_first: torch.Tensor | None
    prefix: Prefix | None = None  # the carried state the sequence continues, if any
    # with ``prior_input``: the clean frame before each committed frame and the canvas before it (B, L, ...)
    prev_frames: torch.Tensor | None = None
    prev_canvases: torch.Tensor | None = None


class RADBlock(nn.Module):
    def __init__(self, cfg: RADConfig):
        super().__init__()
        d, self.heads, self.head_dim = cfg.dim, cfg.heads, cfg.head_dim
        self.full = cfg.memory == "full"
        norm = lambda: nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)  # noqa: E731
        self.norm_spatial, self.norm_temporal, self.norm_read, self.norm_mlp = (
            norm(), norm(), norm(), norm())
        self.spatial_qkv = nn.Linear(d, 3 * d)
        self.spatial_qk = QKNorm(cfg.head_dim)
        self.spatial_out = nn.Linear(d, d)
        self.temporal_qkv = nn.Linear(d, 3 * d)
        self.temporal_qk = QKNorm(cfg.head_dim)
        self.temporal_out = nn.Linear(d, d)
        self.memory = make_memory(cfg)
        self.mlp = Mlp(d, cfg.mlp_ratio)
        # AdaLN-Zero: (shift, scale, gate) for spatial, temporal, mlp [, read]
        self.n_mod = 12 if self.memory is not None else 9
        self.ada = nn.Linear(d, self.n_mod * d)

    def _qkv(self, linear: nn.Linear, qk: QKNorm, x: torch.Tensor):
        """x (..., N, D) -> q, k, v (..., N, H, dh), q/k RMS-normalised."""
        qkv = linear(x).unflatten(-1, (3, self.heads, self.head_dim))
        q, k, v = qkv.unbind(-3)
        return qk.q(q), qk.k(k), v

    def _spatial(self, x: torch.Tensor, rope: RoPE) -> torch.Tensor:
        b, l, n, d = x.shape
        q, k, v = self._qkv(self.spatial_qkv, self.spatial_qk, x.reshape(b * l, n, d))
        cos, sin = rope.cos_sin(0, 1)
        q = apply_rope(q.transpose(1, 2), cos, sin)
        k = apply_rope(k.transpose(1, 2), cos, sin)
        o = attend(q, k, v.transpose(1, 2)).transpose(1, 2).reshape(b, l, n, d)
        return self.spatial_out(o)

    def _mods(self, cond: torch.Tensor) -> list[torch.Tensor]:
        return list(self.ada(F.silu(cond)).unsqueeze(2).chunk(self.n_mod, dim=-1))

    def _read_and_mlp(self, x, mods, h_read: torch.Tensor | None) -> torch.Tensor:
        if self.memory is not None:
            x = x + mods[11] * self.memory.read(modulate(self.norm_read(x), mods[9], mods[10]), h_read)
        return x + mods[8] * self.mlp(modulate(self.norm_mlp(x), mods[6], mods[7]))

    # -- committed frames, whole sequence ----------------------------------------------------
    def forward_context(self, x, cond, act_e, noise_e, ctx: _SeqContext, layer: int = 0):
        """x (B, L, N, D), cond/act_e/noise_e (B, L, D); ``layer``: this block's index (for a prefix).
        Returns x, k, v (B, L, N, H, dh), h_read (B, L, M, Dm) or None, h_new or None, final memory."""
        mods = self._mods(cond)
        x = x + mods[2] * self._spatial(modulate(self.norm_spatial(x), mods[0], mods[1]), ctx.rope)
        q, k, v = self._qkv(self.temporal_qkv, self.temporal_qk,
                            modulate(self.norm_temporal(x), mods[3], mods[4]))
        o = banded_attention(q, k, v, ctx.rope, ctx.window, ctx.chunk, ctx.seg, ctx.prefix, layer)
        x = x + mods[5] * self.temporal_out(o.flatten(-2))
        h_read = h_new = None
        mem_final: list[torch.Tensor] = []
        if self.memory is not None:
            inp = self.memory.cell_inputs(self.memory.pool(x), act_e, noise_e)
            start = ctx.prefix.state.memory[layer] if ctx.prefix is not None else None
            h_read, h_new, mem_final = self.memory.scan(inp, ctx.is_first, start, ctx.memory_segments)
        return self._read_and_mlp(x, mods, h_read), k, v, h_read, h_new, mem_final

    # -- one frame against a cache (denoising, committing, and the training target stream) ----
    def forward_frame(self, x, cond, act_e, noise_e, rope: RoPE, k_ctx: torch.Tensor, v_ctx: torch.Tensor,
                      valid_all: torch.Tensor, h_read: torch.Tensor | None,
                      memory_state: list[torch.Tensor] | None = None):
        """x (B, 1, N, D), cond/act_e/noise_e (B, 1, D), k_ctx/v_ctx (B, Wc, N, H, dh) of the previous
        frames, valid_all (B, Wc + 1), h_read (B, M, Dm): the memory this frame reads.
        With ``memory_state`` the frame is committed: its write gives the new memory state.
        Returns x, k, v (B, 1, N, H, dh) of this frame, new memory state (or None)."""
        mods = self._mods(cond)
        x = x + mods[2] * self._spatial(modulate(self.norm_spatial(x), mods[0], mods[1]), rope)
        q, k, v = self._qkv(self.temporal_qkv, self.temporal_qk,
                            modulate(self.norm_temporal(x), mods[3], mods[4]))
        k_all = torch.cat([k_ctx.to(k.dtype), k], dim=1)
        v_all = torch.cat([v_ctx.to(v.dtype), v], dim=1)
        o = cached_attention(q[:, 0], k_all, v_all, valid_all, rope)
        x = x + mods[5] * self.temporal_out(o.flatten(-2)).unsqueeze(1)
        new_mem = None
        if self.memory is not None and memory_state is not None:
            inp = self.memory.cell_inputs(self.memory.pool(x), act_e, noise_e)
            new_mem = self.memory.cell(inp[:, 0], memory_state)
        x = self._read_and_mlp(x, mods, None if h_read is None else h_read.unsqueeze(1))
        return x, k, v, new_mem


# ----------------------------------------------------------------------------------------
class RADDiT(nn.Module):
    """Video DiT with a recurrent memory. Predicts the EDM network output F of one frame at a time."""

    def __init__(self, cfg: RADConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.stem = make_stem(cfg)
        self.motion = MotionPrior(cfg) if cfg.motion_prior else None
        self.flow = FlowCorrection(cfg) if cfg.flow_correction else None
        self.pos_embed = nn.Parameter(torch.randn(cfg.tokens_per_frame, d) * 0.02)
        self.noise_embed = NoiseEmbedding(d, cfg.noise_features)
        self.action_embed = nn.Embedding(cfg.num_actions + 1, d)  # + NULL_ACTION
        self.rope = RoPE(cfg.head_dim, cfg.grid_size, cfg.rope_base)
        self.blocks = nn.ModuleList([RADBlock(cfg) for _ in range(cfg.depth)])
        self.feature_norm = nn.LayerNorm(d, eps=1e-6)
        # the heads' input per frame: pooled tokens + memory, then with reward_grid_channels every normed token
        self.pooled_feature_dim = d + (cfg.memory_slots * cfg.memory_dim if cfg.has_memory else 0)
        self.feature_dim = self.pooled_feature_dim + (cfg.tokens_per_frame * d if cfg.reward_grid_channels else 0)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear) and not name.startswith(("stem.", "flow.")):  # these initialise themselves
                nn.init.xavier_uniform_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        # The action embedding enters the AdaLN conditioning next to the noise embedding (an MLP
        # output of unit scale): start it at the same scale, not 50x weaker.
        nn.init.normal_(self.action_embed.weight, std=1.0)
        for blk in self.blocks:
            zero_(blk.ada)  # AdaLN-Zero: every residual branch starts closed

    # -- helpers ----------------------------------------------------------------------------
    def _conditions(self, c_noise: torch.Tensor, actions: torch.Tensor):
        """c_noise, actions (...) -> noise, action and summed conditioning embeddings (..., D)."""
        noise_e = self.noise_embed(c_noise)
        act_e = self.action_embed(actions.long())
        return noise_e, act_e, noise_e + act_e

    def motion_keys(self, actions: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """The motion prior's flow row for each transition: ``actions`` led to the frames, ``previous`` to
        the frames before them (:meth:`MotionPrior.key`; zeros without a motion prior)."""
        return self.motion.key(actions, previous) if self.motion is not None else torch.zeros_like(actions)

    def sequence_motion_keys(self, actions: torch.Tensor, is_first: torch.Tensor | None,
                             state: RADState | None, committed: torch.Tensor | None = None) -> torch.Tensor:
        """Motion keys (B, L) of a training sequence's frames reached by ``actions`` (B, L); the previous
        actions are ``committed`` (B, L, default ``actions``) shifted by one, continuing ``state``."""
        committed = actions if committed is None else committed
        previous = previous_actions(committed, is_first, state.last_action if state is not None else None,
                                    self.cfg.null_action)
        return self.motion_keys(actions, previous)

    def stem_base(self, prev_input: torch.Tensor, keys: torch.Tensor, prev_frame: torch.Tensor | None = None,
                  canvas: torch.Tensor | None = None) -> torch.Tensor:
        """What the stem reads besides the frame (B', C(+1), H, W), for the motion keys (B') of the transitions
        to the frames: the previous network input ``prev_input`` (B', C, H, W), warped by the transition's
        flow with a motion prior (aligned with the frame it predicts); with ``prior_input`` instead the
        previous clean frame ``prev_frame`` warped through the ``canvas`` before it (the denoiser's base),
        scaled by 1 / sigma_data, and where that warp holds pixels (:meth:`MotionPrior.warp_with_known`)."""
        if self.cfg.prior_input:
            if prev_frame is None:
                raise ValueError("prior_input: the stem needs the previous clean frames")
            warped, known = self.motion.warp_with_known(prev_frame.float(), keys, canvas=canvas)
            return torch.cat([warped / self.cfg.sigma_data, known], dim=1)
        return self.motion(prev_input, keys) if self.motion is not None else prev_input

    def _tokens(self, x: torch.Tensor, base: torch.Tensor, cond: torch.Tensor):
        """Network inputs (B', C, H, W) of frames and what the stem reads besides them (:meth:`stem_base`)
        -> tokens (B', N, D), skips."""
        if x.shape[1:] != (self.cfg.channels, self.cfg.image_size, self.cfg.image_size):
            raise ValueError(f"expected frames ({self.cfg.channels}, {self.cfg.image_size}, "
                             f"{self.cfg.image_size}), got {tuple(x.shape[1:])}")
        inp = torch.cat([x, base.to(x.dtype)], dim=1) if self.cfg.prev_frame_input else x
        tok, skips = self.stem.encode(inp, cond)
        return tok + self.pos_embed, skips

    def _decode(self, tok: torch.Tensor, skips, cond: torch.Tensor) -> torch.Tensor:
        """Final tokens (B', N, D) -> the network output F (B', cfg.output_channels, H, W): the stem's
        read-out, then the flow correction's two channels with ``flow_correction``."""
        out = self.stem.decode(tok, skips, cond)
        return out if self.flow is None else torch.cat([out, self.flow(tok, cond).to(out.dtype)], dim=1)

    def _features(self, tok: torch.Tensor, h_last: torch.Tensor | None) -> torch.Tensor:
        """Per-frame head features: [mean-pooled final tokens, flattened last memory h], then with
        ``reward_grid_channels`` the normed final tokens, flattened (for :class:`RewardGridHead`)."""
        normed = self.feature_norm(tok)
        parts = [normed.mean(dim=-2).float()]
        if h_last is not None:
            parts.append(h_last.flatten(-2).float())
        if self.cfg.reward_grid_channels:
            parts.append(normed.flatten(-2).float())
        return torch.cat(parts, dim=-1)

    def _seq_context(self, b: int, l: int, is_first: torch.Tensor | None, device,
                     state: RADState | None = None) -> _SeqContext:
        cfg = self.cfg
        seg = prefix = None
        if is_first is not None:
            is_first = is_first.to(device).bool()
            seg = torch.cumsum(is_first.long(), dim=1)
        if state is not None:
            if cfg.cache_frames is None:
                raise ValueError("a training sequence can continue a state only with a bounded window "
                                 "(memory='full' keeps every frame)")
            if state.batch_size != b:
                raise ValueError(f"state has batch {state.batch_size}, the sequence {b}")
            if seg is None:
                seg = torch.zeros(b, l, dtype=torch.long, device=device)
            # carried frames belong to the episode the sequence continues (segment 0), unless it starts a new one
            prefix_seg = torch.where(state.valid.to(device), 0, -1)
            prefix = Prefix(state, prefix_seg)
        window = cfg.cache_frames + 1 if cfg.cache_frames is not None else None
        segments = reset_segments(is_first, l) if cfg.has_memory else None  # once, not per layer
        return _SeqContext(self.rope, window, cfg.temporal_chunk or cfg.window, seg, is_first, prefix, segments)

    # -- training: the two streams -----------------------------------------------------------
    def forward_context(self, x: torch.Tensor, c_noise: torch.Tensor, actions: torch.Tensor,
                        is_first: torch.Tensor | None = None, state: RADState | None = None,
                        frames: torch.Tensor | None = None, canvases: torch.Tensor | None = None) -> ContextPass:
        """Committed frames: x (B, L, C, H, W) network inputs (c_in-scaled), c_noise (B, L), actions
        (B, L) (the action that led to each frame). ``is_first`` (B, L) marks episode starts (memory
        reset, attention cut, no previous frame). ``state``: the sequence continues this state (its
        memory, window and last frame; truncated backprop through time), as if stepped from it.
        With ``prior_input``: ``frames`` (B, L, C, H, W) the clean committed frames, ``canvases`` the canvas
        after each (B, L, C + 3, H, Wc; with ``canvas_width``)."""
        b, l = x.shape[:2]
        cfg = self.cfg
        ctx = self._seq_context(b, l, is_first, x.device, state)
        noise_e, act_e, cond = self._conditions(c_noise, actions)
        prev = previous_frames(x, ctx.is_first, state.prev_input if state is not None else None)
        prev_frames = prev_canvases = None
        if cfg.prior_input:
            if frames is None or (cfg.canvas_width and canvases is None):
                raise ValueError("prior_input: forward_context needs the clean frames (and their canvases)")
            prev_frames = previous_frames(frames, ctx.is_first, state.prev_frame if state is not None else None)
            if cfg.canvas_width:
                prev_canvases = previous_frames(canvases, ctx.is_first, state.canvas if state is not None else None)
        motion = self.sequence_motion_keys(actions, ctx.is_first, state)
        tok, _ = self._tokens(x.flatten(0, 1), self._sequence_base(prev, motion, prev_frames, prev_canvases),
                              cond.flatten(0, 1))
        tok = tok.view(b, l, cfg.tokens_per_frame, cfg.dim)
        keys, values, reads, finals = [], [], [], []
        h_new = None
        for i, blk in enumerate(self.blocks):
            tok, k, v, h_read, h_new, mem_final = blk.forward_context(tok, cond, act_e, noise_e, ctx, i)
            keys.append(k)
            values.append(v)
            reads.append(h_read)
            finals.append(mem_final)
        return ContextPass(inputs=x, actions=actions, keys=keys, values=values, memory_read=reads,
                           final_memory=finals, features=self._features(tok, h_new), seg=ctx.seg,
                           is_first=ctx.is_first, prefix=ctx.prefix, prev_frames=prev_frames,
                           prev_canvases=prev_canvases)

    def _sequence_base(self, prev: torch.Tensor, motion: torch.Tensor, prev_frames: torch.Tensor | None,
                       prev_canvases: torch.Tensor | None) -> torch.Tensor:
        """:meth:`stem_base` of a sequence's frames (B, L, ...) -> (B * L, ...)."""
        flat = lambda t: None if t is None else t.flatten(0, 1)  # noqa: E731
        return self.stem_base(flat(prev), flat(motion), flat(prev_frames), flat(prev_canvases))

    def forward_targets(self, x: torch.Tensor, c_noise: torch.Tensor, actions: torch.Tensor,
                        context: ContextPass) -> torch.Tensor:
        """Frames being denoised: x (B, L, C, H, W) network inputs at their own noise levels c_noise
        (B, L). Frame t sees the context stream's previous ``window - 1`` frames (all previous frames
        for ``memory="full"``) and the memory they left, exactly as :meth:`denoise_step` sees a state.
        Returns F (B, L, cfg.output_channels, H, W)."""
        b, l = x.shape[:2]
        cfg = self.cfg
        wc = cfg.cache_frames if cfg.cache_frames is not None else l - 1
        noise_e, act_e, cond = self._conditions(c_noise, actions)
        flat = lambda t: t.flatten(0, 1)  # noqa: E731
        pre = context.prefix
        prev = previous_frames(context.inputs, context.is_first, pre.state.prev_input if pre is not None else None)
        noise_e, act_e, cond = flat(noise_e)[:, None], flat(act_e)[:, None], flat(cond)[:, None]
        motion = self.sequence_motion_keys(actions, context.is_first, pre.state if pre is not None else None,
                                           context.actions)
        tok, skips = self._tokens(flat(x), self._sequence_base(prev, motion, context.prev_frames,
                                                               context.prev_canvases), cond[:, 0])
        tok = tok[:, None]
        valid = flat(context_valid(context.seg, b, l, wc, x.device, pre.seg if pre is not None else None))
        valid_all = torch.cat([valid, valid.new_ones(b * l, 1)], dim=1)
        for i, blk in enumerate(self.blocks):
            k_ctx = flat(context_windows(context.keys[i], wc, pre.keys[i] if pre is not None else None))
            v_ctx = flat(context_windows(context.values[i], wc, pre.values[i] if pre is not None else None))
            h_read = context.memory_read[i]
            tok, _, _, _ = blk.forward_frame(tok, cond, act_e, noise_e, self.rope, k_ctx, v_ctx, valid_all,
                                             None if h_read is None else flat(h_read))
        return self._decode(tok[:, 0], skips, cond[:, 0]).view(b, l, -1, *x.shape[-2:])

    def state_after(self, context: ContextPass, last_frame: torch.Tensor, canvas: torch.Tensor | None = None
                    ) -> RADState:
        """The inference state after committing the sequence's frames (equals stepping through them,
        from the carried state if the sequence continued one); ``last_frame`` (B, C, H, W) is the clean
        last committed frame, ``canvas`` the motion prior's canvas after it (``canvas_width``)."""
        cfg = self.cfg
        b, l = context.inputs.shape[:2]
        dev = context.inputs.device
        seg = context.seg if context.seg is not None else torch.zeros(b, l, dtype=torch.long, device=dev)
        pre = context.prefix
        wc = cfg.cache_frames if cfg.cache_frames is not None else l
        if pre is not None:  # the carried frames come before the sequence's own
            seg = torch.cat([pre.seg, seg], dim=1)
            keys = [torch.cat([pk.to(k.dtype), k], 1) for pk, k in zip(pre.keys, context.keys)]
            values = [torch.cat([pv.to(v.dtype), v], 1) for pv, v in zip(pre.values, context.values)]
        else:
            keys, values = context.keys, context.values
        n = seg.shape[1]
        take, pad = min(wc, n), max(0, wc - n)

        def cache(t: torch.Tensor) -> torch.Tensor:
            t = t[:, n - take:]
            if pad:
                t = torch.cat([t.new_zeros((b, pad) + tuple(t.shape[2:])), t], dim=1)
            return t.float().contiguous()

        same = seg == seg[:, -1:]  # frames of the last episode in the sequence
        valid = cache(same).bool() if take else same.new_zeros(b, pad)
        keep = valid[:, :, None, None, None]  # zero the slots of earlier episodes
        own = (seg[:, n - l:] == seg[:, -1:]).long().sum(1)
        time = own if pre is None else torch.where(seg[:, -1] == 0, pre.state.time.to(dev) + l, own)
        return RADState(
            memory=[[s.float().clone() for s in mem] for mem in context.final_memory],
            keys=[cache(k) * keep for k in keys],
            values=[cache(v) * keep for v in values],
            valid=valid,
            time=time,
            prev_input=context.inputs[:, -1].float().clone(),
            prev_frame=last_frame.float().clone(),
            canvas=canvas.float().clone() if canvas is not None else self.empty_canvas(b, dev),
            last_action=context.actions[:, -1].long().clone(),
        )

    # -- inference: one frame ------------------------------------------------------------------
    def step_base(self, actions: torch.Tensor, state: RADState) -> torch.Tensor:
        """:meth:`stem_base` of the frame that ``actions`` (B,) lead to from ``state``: the same for every
        denoising step of that frame and for its commit, so a caller may compute it once and pass it as
        ``base`` to :meth:`denoise_step` and :meth:`commit_step`."""
        keys = self.motion_keys(actions.reshape(-1), state.last_action)
        return self.stem_base(state.prev_input, keys, state.prev_frame,
                              state.canvas if self.cfg.canvas_width else None)

    def _step(self, x: torch.Tensor, c_noise: torch.Tensor, actions: torch.Tensor, state: RADState,
              frame: torch.Tensor | None, observed: bool = True, base: torch.Tensor | None = None):
        b = x.shape[0]
        commit = frame is not None
        if state.batch_size != b:
            raise ValueError(f"state has batch {state.batch_size}, input has {b}")
        noise_e, act_e, cond = self._conditions(c_noise.reshape(b), actions.reshape(b))
        keys = self.motion_keys(actions.reshape(b), state.last_action)
        tok, skips = self._tokens(x, self.step_base(actions, state) if base is None else base, cond)
        tok, noise_e, act_e, cond = tok[:, None], noise_e[:, None], act_e[:, None], cond[:, None]
        valid_all = torch.cat([state.valid, state.valid.new_ones(b, 1)], dim=1)
        new_mem, new_k, new_v = [], [], []
        for i, blk in enumerate(self.blocks):
            mem = state.memory[i]
            h_read = blk.memory.hidden(mem) if blk.memory is not None else None
            tok, k, v, mem_i = blk.forward_frame(tok, cond, act_e, noise_e, self.rope, state.keys[i],
                                                 state.values[i], valid_all, h_read, mem if commit else None)
            if commit:
                keep = 0 if self.cfg.memory == "full" else 1  # bounded windows drop their oldest slot
                new_mem.append(mem_i if mem_i is not None else [])
                new_k.append(torch.cat([state.keys[i][:, keep:], k.to(state.keys[i].dtype)], dim=1))
                new_v.append(torch.cat([state.values[i][:, keep:], v.to(state.values[i].dtype)], dim=1))
        if not commit:
            return self._decode(tok[:, 0], skips, cond[:, 0])
        h_last = self.blocks[-1].memory.hidden(new_mem[-1]) if self.cfg.has_memory else None
        canvas = state.canvas
        if self.cfg.canvas_width:
            canvas = self.motion.update_canvas(canvas, frame.float(), keys,
                                               torch.full((b,), observed, device=frame.device))
        new_state = RADState(memory=new_mem, keys=new_k, values=new_v,
                             valid=valid_all if self.cfg.memory == "full" else valid_all[:, 1:],
                             time=state.time + 1, prev_input=x.float(), prev_frame=frame.float(), canvas=canvas,
                             last_action=actions.reshape(b).long().clone())
        return self._features(tok[:, 0], h_last), new_state

    def denoise_step(self, x: torch.Tensor, c_noise: torch.Tensor, actions: torch.Tensor,
                     state: RADState, base: torch.Tensor | None = None) -> torch.Tensor:
        """F for the next frame: x (B, C, H, W) network input, c_noise (B,), actions (B,); reads the state.
        ``base``: :meth:`step_base` of (actions, state) if already computed."""
        return self._step(x, c_noise, actions, state, frame=None, base=base)

    def commit_step(self, x: torch.Tensor, c_noise: torch.Tensor, actions: torch.Tensor,
                    state: RADState, frame: torch.Tensor, observed: bool = True,
                    base: torch.Tensor | None = None) -> tuple[torch.Tensor, RADState]:
        """Commit a frame (network input x at context level c_noise; ``frame`` (B, C, H, W) the clean
        frame, ``observed``: a real one, else dreamed): (head features (B, F), new state). ``base`` as in
        :meth:`denoise_step`."""
        return self._step(x, c_noise, actions, state, frame=frame, observed=observed, base=base)

    def compile_frame_pass(self) -> None:
        """Compile each block's one-frame pass (used by ``denoise_step`` and ``commit_step``, and by the
        training target stream) with ``torch.compile``. On a CPU a dream step of the tiny model becomes
        ~1.6x faster after ~25 s of compilation spread over the first calls (one graph per batch size
        and for denoising / committing; the blocks share it). Idempotent.

        Dynamo keeps its graphs per code object, so every model, batch size and precision compiled in one
        process adds to one count; at its default limit (8) a process that builds several dream batches (a
        benchmark over batch sizes and precisions) silently runs the later ones eager: the limit is raised."""
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, FRAME_PASS_GRAPHS)
        for blk in self.blocks:
            if not getattr(blk, "frame_pass_compiled", False):
                blk.forward_frame = torch.compile(blk.forward_frame, dynamic=False)
                blk.frame_pass_compiled = True

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   cache_dtype: torch.dtype = torch.float32) -> RADState:
        """Empty state: learned initial memory (float32), empty K/V caches (``cache_dtype``;
        bfloat16 halves the cache of big models), no previous frame."""
        cfg = self.cfg
        device = torch.device(device) if device is not None else self.pos_embed.device
        wc = cfg.cache_frames or 0
        shape = (batch_size, wc, cfg.tokens_per_frame, cfg.heads, cfg.head_dim)
        memory = []
        for blk in self.blocks:
            if blk.memory is None:
                memory.append([])
            else:
                memory.append([s.detach().float().to(device).clone()
                               for s in blk.memory.initial_state(batch_size)])
        return RADState(
            memory=memory,
            keys=[torch.zeros(shape, device=device, dtype=cache_dtype) for _ in self.blocks],
            values=[torch.zeros(shape, device=device, dtype=cache_dtype) for _ in self.blocks],
            valid=torch.zeros(batch_size, wc, dtype=torch.bool, device=device),
            time=torch.zeros(batch_size, dtype=torch.long, device=device),
            prev_input=torch.zeros(batch_size, cfg.channels, cfg.image_size, cfg.image_size, device=device),
            prev_frame=torch.zeros(batch_size, cfg.channels, cfg.image_size, cfg.image_size, device=device),
            canvas=self.empty_canvas(batch_size, device),
            last_action=torch.full((batch_size,), cfg.null_action, dtype=torch.long, device=device),
        )

    def empty_canvas(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The motion prior's canvas before any frame: (B, C + 3, H, canvas_width) zeros (holds nothing)."""
        cfg = self.cfg
        return torch.zeros(batch_size, cfg.channels + 3, cfg.image_size, cfg.canvas_width, device=device)
