"""The RAD diffusion transformer: frame-wise local temporal attention + per-layer memory.

Each block, per frame:
  1. spatial self-attention inside the frame (2D RoPE),
  2. causal temporal attention: the frame's tokens attend to all tokens of the last
     ``window`` frames, itself included (3D RoPE over time/y/x, relative time),
  3. memory read (tokens -> slots h_{t-1}) and write (pooled tokens -> recurrent cell -> h_t),
  4. MLP.
Each sub-block is AdaLN-Zero modulated by the per-frame conditioning (noise level + action).

Two code paths compute the same function:
  * :meth:`RADDiT.forward_sequence` (training): all frames in parallel; temporal attention
    is blockwise banded, the memory cell is scanned over time.
  * :meth:`RADDiT.forward_step` (inference): one frame with an explicit :class:`RADState`
    (K/V window cache + memory), constant cost per frame except for ``memory="full"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import RADConfig
from .layers import Mlp, NoiseEmbedding, QKNorm, RoPE, apply_rope, attend, modulate, zero_
from .memory import make_memory
from .state import RADState


# ----------------------------------------------------------------------------------------
# temporal attention
# ----------------------------------------------------------------------------------------
def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rope: RoPE,
                     window: int | None, chunk: int, seg: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Frame-causal sliding-window attention over a whole sequence.

    q, k, v: (B, L, N, H, dh) (no RoPE yet). Tokens of frame t attend to the tokens of frames
    t-window+1..t (all previous frames if ``window`` is None). ``seg`` (B, L) int: frames only
    see frames of the same segment (episode). Queries are processed in blocks of ``chunk``
    frames, each against the keys of its block plus the ``window-1`` frames before it, so cost
    and memory are O(L * chunk-ish) rather than O(L^2) (except for window=None).
    Time positions are relative: query frame offsets from its keys equal the frame distance.
    """
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


# ----------------------------------------------------------------------------------------
@dataclass
class _SeqContext:
    rope: RoPE
    window: int | None
    chunk: int
    seg: torch.Tensor | None
    is_first: torch.Tensor | None


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

    # -- training path ----------------------------------------------------------------------
    def forward_sequence(self, x, cond, act_e, noise_e, ctx: _SeqContext):
        """x (B, L, N, D), cond/act_e/noise_e (B, L, D).
        Returns x, h_new (B, L, M, Dm) or None, (k, v, final memory state)."""
        mods = self._mods(cond)
        x = x + mods[2] * self._spatial(modulate(self.norm_spatial(x), mods[0], mods[1]), ctx.rope)
        q, k, v = self._qkv(self.temporal_qkv, self.temporal_qk,
                            modulate(self.norm_temporal(x), mods[3], mods[4]))
        o = banded_attention(q, k, v, ctx.rope, ctx.window, ctx.chunk, ctx.seg)
        x = x + mods[5] * self.temporal_out(o.flatten(-2))
        h_new, mem_final = None, []
        if self.memory is not None:
            inp = self.memory.cell_inputs(self.memory.pool(x), act_e, noise_e)
            h_prev, h_new, mem_final = self.memory.scan(inp, ctx.is_first)
            x = x + mods[11] * self.memory.read(modulate(self.norm_read(x), mods[9], mods[10]), h_prev)
        x = x + mods[8] * self.mlp(modulate(self.norm_mlp(x), mods[6], mods[7]))
        return x, h_new, (k, v, mem_final)

    # -- inference path ---------------------------------------------------------------------
    def forward_step(self, x, cond, act_e, noise_e, rope: RoPE, mem: list[torch.Tensor],
                     k_cache: torch.Tensor, v_cache: torch.Tensor, valid_all: torch.Tensor,
                     want_state: bool):
        """x (B, 1, N, D), cond/act_e/noise_e (B, 1, D), caches (B, Wc, N, H, dh),
        valid_all (B, Wc + 1). Returns x, new memory (or None), new k/v cache (or None)."""
        mods = self._mods(cond)
        x = x + mods[2] * self._spatial(modulate(self.norm_spatial(x), mods[0], mods[1]), rope)
        q, k, v = self._qkv(self.temporal_qkv, self.temporal_qk,
                            modulate(self.norm_temporal(x), mods[3], mods[4]))
        k_all = torch.cat([k_cache.to(k.dtype), k], dim=1)
        v_all = torch.cat([v_cache.to(v.dtype), v], dim=1)
        o = cached_attention(q[:, 0], k_all, v_all, valid_all, rope)
        x = x + mods[5] * self.temporal_out(o.flatten(-2)).unsqueeze(1)
        new_mem = None
        if self.memory is not None:
            h_prev = self.memory.hidden(mem)
            if want_state:
                inp = self.memory.cell_inputs(self.memory.pool(x), act_e, noise_e)
                new_mem = self.memory.cell(inp[:, 0], mem)
            x = x + mods[11] * self.memory.read(modulate(self.norm_read(x), mods[9], mods[10]),
                                                h_prev.unsqueeze(1))
        x = x + mods[8] * self.mlp(modulate(self.norm_mlp(x), mods[6], mods[7]))
        new_k = new_v = None
        if want_state:
            keep = 0 if self.full else 1  # drop the oldest slot for bounded windows
            new_k = torch.cat([k_cache[:, keep:], k.to(k_cache.dtype)], dim=1)
            new_v = torch.cat([v_cache[:, keep:], v.to(v_cache.dtype)], dim=1)
        return x, new_mem, new_k, new_v


# ----------------------------------------------------------------------------------------
class RADDiT(nn.Module):
    """Pixel-space video DiT with a recurrent memory. Predicts the EDM network output F."""

    def __init__(self, cfg: RADConfig):
        super().__init__()
        self.cfg = cfg
        d, p, ch = cfg.dim, cfg.patch_size, cfg.channels
        self.patch_embed = nn.Linear(ch * p * p, d)
        self.pos_embed = nn.Parameter(torch.randn(cfg.tokens_per_frame, d) * 0.02)
        self.noise_embed = NoiseEmbedding(d, cfg.noise_features)
        self.action_embed = nn.Embedding(cfg.num_actions + 1, d)  # + NULL_ACTION
        self.rope = RoPE(cfg.head_dim, cfg.grid_size, cfg.rope_base)
        self.blocks = nn.ModuleList([RADBlock(cfg) for _ in range(cfg.depth)])
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(d, 2 * d)
        self.final_out = nn.Linear(d, ch * p * p)
        self.feature_norm = nn.LayerNorm(d, eps=1e-6)
        self.feature_dim = d + (cfg.memory_slots * cfg.memory_dim if cfg.has_memory else 0)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        nn.init.normal_(self.action_embed.weight, std=0.02)
        for blk in self.blocks:
            zero_(blk.ada)  # AdaLN-Zero: every residual branch starts closed
        zero_(self.final_ada)
        zero_(self.final_out)

    # -- helpers ----------------------------------------------------------------------------
    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, C*p*p)."""
        b, ch, hh, ww = x.shape
        p, g = self.cfg.patch_size, self.cfg.grid_size
        if (hh, ww, ch) != (self.cfg.image_size, self.cfg.image_size, self.cfg.channels):
            raise ValueError(f"expected frames ({self.cfg.channels}, {self.cfg.image_size}, "
                             f"{self.cfg.image_size}), got {tuple(x.shape[1:])}")
        x = x.reshape(b, ch, g, p, g, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, g * g, ch * p * p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C*p*p) -> (B, C, H, W)."""
        b = x.shape[0]
        p, g, ch = self.cfg.patch_size, self.cfg.grid_size, self.cfg.channels
        x = x.reshape(b, g, g, ch, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, ch, g * p, g * p)

    def _embed(self, frames: torch.Tensor, c_noise: torch.Tensor, actions: torch.Tensor):
        """frames (B', C, H, W) -> tokens (B', N, D); c_noise/actions (...) -> embeddings."""
        tok = self.patch_embed(self.patchify(frames)) + self.pos_embed
        noise_e = self.noise_embed(c_noise)
        act_e = self.action_embed(actions.long())
        return tok, noise_e, act_e, noise_e + act_e

    def _final(self, tok: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.final_ada(F.silu(cond)).unsqueeze(2).chunk(2, dim=-1)
        return self.final_out(modulate(self.final_norm(tok), shift, scale))

    def _features(self, tok: torch.Tensor, h_last: torch.Tensor | None) -> torch.Tensor:
        """Per-frame head features: [mean-pooled final tokens, flattened last memory h]."""
        f = self.feature_norm(tok).mean(dim=-2).float()
        if h_last is not None:
            f = torch.cat([f, h_last.flatten(-2).float()], dim=-1)
        return f

    # -- training path ----------------------------------------------------------------------
    def forward_sequence(self, x: torch.Tensor, c_noise: torch.Tensor, actions: torch.Tensor,
                         is_first: torch.Tensor | None = None, return_state: bool = False):
        """x (B, L, C, H, W) network input (c_in-scaled), c_noise (B, L), actions (B, L).

        ``is_first`` (B, L) bool marks frames that start an episode (memory reset, attention
        cut). Returns (F (B, L, C, H, W), features (B, L, feature_dim), state or None); the
        state equals the one :meth:`forward_step` would have after these L frames."""
        b, l = x.shape[:2]
        cfg = self.cfg
        tok, noise_e, act_e, cond = self._embed(x.flatten(0, 1), c_noise, actions)
        tok = tok.view(b, l, cfg.tokens_per_frame, cfg.dim)
        seg = None
        if is_first is not None:
            is_first = is_first.to(x.device).bool()
            seg = torch.cumsum(is_first.long(), dim=1)
        ctx = _SeqContext(self.rope, cfg.cache_frames + 1 if cfg.cache_frames is not None else None,
                          cfg.temporal_chunk or cfg.window, seg, is_first)
        h_last = None
        per_layer = []
        for blk in self.blocks:
            tok, h_new, layer_state = blk.forward_sequence(tok, cond, act_e, noise_e, ctx)
            h_last = h_new
            per_layer.append(layer_state)
        out = self.unpatchify(self._final(tok, cond).flatten(0, 1)).view_as(x)
        feats = self._features(tok, h_last)
        state = self._state_from_sequence(per_layer, seg, b, l, x.device) if return_state else None
        return out, feats, state

    def _state_from_sequence(self, per_layer, seg, b: int, l: int, device) -> RADState:
        wc = self.cfg.cache_frames
        if seg is None:
            seg = torch.zeros(b, l, dtype=torch.long, device=device)
        same = seg == seg[:, -1:]  # frames of the last episode in the sequence
        if wc is None:  # full: keep everything
            take, pad = l, 0
        else:
            take, pad = min(wc, l), max(0, wc - l)

        def cache(t: torch.Tensor) -> torch.Tensor:
            t = t[:, l - take:]
            if pad:
                t = torch.cat([t.new_zeros((b, pad) + tuple(t.shape[2:])), t], dim=1)
            return t.float().contiguous()

        valid = cache(same).bool() if take else same.new_zeros(b, pad)
        keep = valid[:, :, None, None, None]  # zero the slots of earlier episodes

        return RADState(
            memory=[[s.float().clone() for s in mem] for _, _, mem in per_layer],
            keys=[cache(k) * keep for k, _, _ in per_layer],
            values=[cache(v) * keep for _, v, _ in per_layer],
            valid=valid,
            time=same.long().sum(1),
        )

    # -- inference path ---------------------------------------------------------------------
    def forward_step(self, x: torch.Tensor, c_noise: torch.Tensor, actions: torch.Tensor,
                     state: RADState, want_state: bool = True):
        """x (B, C, H, W) network input, c_noise (B,), actions (B,), state (not mutated).

        Returns (F (B, C, H, W), features (B, feature_dim) or None, new state or None).
        With ``want_state=False`` (denoising steps) the memory write and cache update are
        skipped; features need the write, so they are None for memory models."""
        b = x.shape[0]
        if state.batch_size != b:
            raise ValueError(f"state has batch {state.batch_size}, input has {b}")
        tok, noise_e, act_e, cond = self._embed(x, c_noise.reshape(b), actions.reshape(b))
        tok, noise_e, act_e, cond = tok[:, None], noise_e[:, None], act_e[:, None], cond[:, None]
        valid_all = torch.cat([state.valid, state.valid.new_ones(b, 1)], dim=1)
        new_mem, new_k, new_v = [], [], []
        for i, blk in enumerate(self.blocks):
            tok, mem_i, k_i, v_i = blk.forward_step(tok, cond, act_e, noise_e, self.rope,
                                                    state.memory[i], state.keys[i],
                                                    state.values[i], valid_all, want_state)
            new_mem.append(mem_i if mem_i is not None else [])
            new_k.append(k_i)
            new_v.append(v_i)
        out = self.unpatchify(self._final(tok, cond)[:, 0])
        if not want_state:
            feats = None if self.cfg.has_memory else self._features(tok[:, 0], None)
            return out, feats, None
        h_last = self.blocks[-1].memory.hidden(new_mem[-1]) if self.cfg.has_memory else None
        feats = self._features(tok[:, 0], h_last)
        new_state = RADState(
            memory=new_mem, keys=new_k, values=new_v,
            valid=valid_all if self.cfg.memory == "full" else valid_all[:, 1:],
            time=state.time + 1,
        )
        return out, feats, new_state

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   cache_dtype: torch.dtype = torch.float32) -> RADState:
        """Empty state: learned initial memory (float32), empty K/V caches (``cache_dtype``;
        bfloat16 halves the cache of big models)."""
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
        )
