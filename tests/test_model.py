"""Tests of the RAD world model (rad_env.model). Tiny configs: the whole file runs in seconds."""

from __future__ import annotations

import pytest
import torch

from rad_env.data import Batch
from rad_env.model import PRESETS, RADConfig, RADState, WorldModel
from rad_env.model.diffusion import EDM, randn_rows
from rad_env.model.layers import zero_
from rad_env.model.motion import MotionPrior
from rad_env.model.world_model import float_to_frames, frames_to_float

MEMORIES = ["lstm", "linear", "none", "full"]
STEMS = {"patch": {}, "conv": {"stem": "conv", "stem_channels": [8, 8]}, "patch+pixel": {"pixel_channels": 8},
         "patch+motion": {"motion_prior": True, "motion_grid": 4},
         "patch+motion+flow": {"motion_prior": True, "motion_grid": 8, "flow_correction": True},
         "patch+motion+pairs": {"motion_prior": True, "motion_grid": 4, "motion_pairs": True}}
# the stem reads the warp of the previous clean frame through the canvas: the streams need the clean frames
PRIOR_INPUT = {"motion_prior": True, "motion_grid": 4, "canvas_width": 40, "pan_actions": [0, 1, 2],
               "prior_input": True}



def micro_config(memory: str = "lstm", **kw) -> RADConfig:
    base = dict(image_size=16, patch_size=4, dim=48, depth=2, heads=2, mlp_ratio=2.0, window=3,
                seq_len=10, memory=memory, memory_slots=3, memory_dim=32, num_actions=4,
                noise_features=16)
    base.update(kw)
    return RADConfig(**base)


def micro_model(memory: str = "lstm", seed: int = 0, perturb: float = 0.05, **kw) -> WorldModel:
    """A micro model; zero-initialised (AdaLN-Zero) weights are perturbed so that every
    branch (attention, memory read, ...) contributes to the output."""
    torch.manual_seed(seed)
    model = WorldModel(micro_config(memory, **kw)).eval()
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * perturb)
    return model


def make_batch(cfg: RADConfig, b: int = 2, l: int | None = None, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    l = l or cfg.seq_len
    s = cfg.image_size
    prev = torch.randint(0, cfg.num_actions, (b, l), generator=g)
    prev[:, 0] = cfg.null_action
    rewards = torch.randint(-1, 2, (b, l), generator=g).float()
    rewards[:, 0] = 0
    is_first = torch.zeros(b, l, dtype=torch.bool)
    is_first[:, 0] = True
    return Batch(frames=torch.randint(0, 256, (b, l, s, s, 3), generator=g, dtype=torch.uint8),
                 prev_actions=prev, rewards=rewards, terminated=(torch.rand(b, l, generator=g) < 0.2).float(),
                 is_first=is_first)


def _batch_with_cut(cfg: RADConfig, l: int, cut: int, seed: int) -> Batch:
    """A batch of 2 sequences of ``l`` frames whose second starts a new episode at frame ``cut``."""
    batch = make_batch(cfg, b=2, l=l, seed=seed)
    batch.is_first[1, cut] = True
    batch.prev_actions[1, cut] = cfg.null_action
    return batch


def _observe_one_by_one(model: WorldModel, batch: Batch, cut: int) -> list[tuple[RADState, RADState]]:
    """(state before, state after) committing each frame of a 2-row ``batch`` with ``observe``, env 1 reset at
    frame ``cut``."""
    state, out = model.init_state(2), []
    for t in range(batch.frames.shape[1]):
        if t == cut:
            state = state.clone()
            state.index_copy_([1], model.init_state(1))
        after = model.observe(batch.frames[:, t], batch.prev_actions[:, t], state)
        out.append((state, after))
        state = after
    return out


def random_frames(cfg: RADConfig, b: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, cfg.image_size, cfg.image_size, 3), generator=g,
                         dtype=torch.uint8)


def assert_states_close(a: RADState, b: RADState, atol: float = 1e-5) -> None:
    ta, tb = a.tensors(), b.tensors()
    assert len(ta) == len(tb)
    for x, y in zip(ta, tb):
        assert x.shape == y.shape and x.dtype == y.dtype
        if x.dtype in (torch.bool, torch.long):
            assert torch.equal(x, y)
        else:
            torch.testing.assert_close(x, y, atol=atol, rtol=0)


# ----------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------
def test_presets_and_dict_roundtrip():
    for name in PRESETS:
        cfg = RADConfig.preset(name)
        assert RADConfig.from_dict(cfg.to_dict()) == cfg
        assert cfg.memory_dim is not None
    tiny = RADConfig.preset("tiny", memory="full", window=2)
    assert tiny.memory == "full" and tiny.window == 2
    assert 3_000_000 <= WorldModel(RADConfig.preset("tiny")).num_parameters() <= 6_000_000
    for name in PRESETS:  # no preset squeezes a patch's pixel values through a narrower token
        cfg = RADConfig.preset(name)
        assert cfg.dim >= cfg.patch_size**2 * cfg.channels
    with pytest.warns(UserWarning, match="pixel values per patch"):
        RADConfig.preset("tiny", dim=96)
    paper = RADConfig.preset("paper")
    assert paper.seq_len == 4 * paper.window and paper.patch_size == 4


def test_config_validation_errors():
    with pytest.raises(ValueError, match="divisible by patch_size"):
        RADConfig(image_size=64, patch_size=7)
    with pytest.raises(ValueError, match="memory must be one of"):
        RADConfig(memory="gru")
    with pytest.raises(ValueError, match="window"):
        RADConfig(window=0)
    with pytest.raises(ValueError, match="unknown RADConfig keys.*bogus"):
        RADConfig.from_dict({**RADConfig().to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        RADConfig.preset("huge")
    with pytest.raises(ValueError, match="context_sigma_train_min <= context_sigma_train_max"):
        RADConfig(context_sigma_train_min=0.2, context_sigma_train_max=0.1)
    with pytest.raises(ValueError, match="stem must be one of"):
        RADConfig(stem="vae")
    with pytest.raises(ValueError, match="log2"):
        RADConfig(stem="conv", patch_size=8, stem_channels=[16, 32])
    with pytest.raises(ValueError, match="pixel_channels must be an int >= 0"):
        RADConfig(pixel_channels=-1)
    with pytest.raises(ValueError, match="pixel_channels refines the patch stem"):
        RADConfig(stem="conv", pixel_channels=8)


def test_pixel_head_refines_the_patch_read_out_from_the_full_resolution_input():
    """The pixel head adds a correction computed by convolutions over the network input: a change of one
    input pixel changes the output most around that pixel (3x3 convs; the group norms add a small global
    term), not uniformly over a patch as a linear patch map does, and a fresh head (zero output conv) leaves
    the patch model's output unchanged."""
    torch.manual_seed(0)
    model = micro_model("none", pixel_channels=8)
    stem = model.dit.stem
    cond = torch.randn(1, model.config.dim)
    x = torch.randn(1, model.config.stem_in_channels, 16, 16)
    coarse = torch.randn(1, 3, 16, 16)
    bumped = x.clone()
    bumped[0, 0, 5, 6] += 1.0
    with torch.no_grad():
        delta = (stem.pixel(bumped, coarse, cond) - stem.pixel(x, coarse, cond)).abs().amax(dim=(0, 1))
    near = torch.zeros_like(delta, dtype=torch.bool)
    near[5 - 4: 5 + 5, 6 - 4: 6 + 5] = True  # four 3x3 convs: radius 4
    assert float(delta[near].max()) > 5 * float(delta[~near].max())
    fresh = WorldModel(micro_config("none", pixel_channels=8)).dit.stem.pixel
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, coarse, cond), coarse)


# ----------------------------------------------------------------------------------------
# shapes and training
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("memory", MEMORIES)
def test_shapes_and_loss(memory):
    model = micro_model(memory, perturb=0.0).train()
    cfg = model.config
    batch = make_batch(cfg, b=2)
    out = model.loss(batch)
    loss, metrics = out.loss, out.metrics
    assert loss.dim() == 0 and torch.isfinite(loss)
    for key in ("loss", "diffusion_loss", "reward_loss", "termination_loss", "reward_acc"):
        assert isinstance(metrics[key], float)
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())

    b, l, s = 2, cfg.seq_len, cfg.image_size
    x = torch.randn(b, l, 3, s, s)
    context = model.dit.forward_context(x, torch.zeros(b, l), batch.prev_actions, batch.is_first)
    out = model.dit.forward_targets(x, torch.ones(b, l), batch.prev_actions, context)
    assert out.shape == (b, l, 3, s, s)
    extra = cfg.memory_slots * cfg.memory_dim if memory in ("lstm", "linear") else 0
    assert context.features.shape == (b, l, cfg.dim + extra)
    state = model.dit.state_after(context, x[:, -1])
    assert state.batch_size == b
    assert state.cache_len == (l if memory == "full" else cfg.window - 1)


def test_loss_keeps_the_denoised_frames_it_scores():
    """keep_denoised returns the target stream's predictions D and their noise levels, with gradient: the
    frames whose EDM error is the diffusion loss (what an adversarial term judges)."""
    model = micro_model("lstm", motion_prior=True, motion_grid=4).train()
    batch = make_batch(model.config, b=2)
    out = model.loss(batch, generator=torch.Generator().manual_seed(0), keep_denoised=True)
    d = out.denoised
    b, l, s = 2, model.config.seq_len, model.config.image_size
    assert d.frames.shape == (b, l, 3, s, s) and d.sigma.shape == (b, l) and d.frames.requires_grad
    _, c_out, _, _ = model._precondition(d.sigma)
    scored = (((d.frames - frames_to_float(batch.frames)) / c_out) ** 2).mean()
    assert float(scored) == pytest.approx(out.metrics["diffusion_loss"], rel=1e-5)
    assert model.loss(batch, generator=torch.Generator().manual_seed(0)).denoised is None


def test_diffusion_scale_weighs_only_the_diffusion_loss():
    """diffusion_scale s: the loss is the heads' losses plus s times the diffusion loss (0: the heads alone),
    and the denoised frames are kept either way (an adversarial term can still judge them)."""
    model = micro_model("lstm", motion_prior=True, motion_grid=4).train()
    batch = make_batch(model.config, b=2)
    cfg = model.config
    full = model.loss(batch, generator=torch.Generator().manual_seed(0))
    scaled = model.loss(batch, generator=torch.Generator().manual_seed(0), diffusion_scale=0.25, keep_denoised=True)
    heads = cfg.reward_loss_weight * full.metrics["reward_loss"] + cfg.termination_loss_weight * full.metrics[
        "termination_loss"]
    diffusion = cfg.diffusion_loss_weight * full.metrics["diffusion_loss"]
    assert float(full.loss) == pytest.approx(heads + diffusion, rel=1e-5)
    assert float(scaled.loss) == pytest.approx(heads + 0.25 * diffusion, rel=1e-5)
    off = model.loss(batch, generator=torch.Generator().manual_seed(0), diffusion_scale=0.0, keep_denoised=True)
    assert float(off.loss) == pytest.approx(heads, rel=1e-5) and off.denoised.frames.requires_grad


def test_reward_event_weight_weighs_rewarded_frames():
    """reward_event_weight w: the reward loss is the cross-entropy averaged with weight w on frames
    that carry a reward and 1 on the rest (the head then pays where a reward is likely)."""
    losses = {}
    for w in (1.0, 10.0):
        model = micro_model(perturb=0.0, reward_event_weight=w).train()
        last = model.head[-1]
        with torch.no_grad():  # the head says "no reward" with confidence, whatever the frame
            last.weight.zero_()
            last.bias.copy_(torch.tensor([0.0, 4.0, 0.0, 0.0]))
        batch = make_batch(model.config, b=2, seed=3)
        losses[w] = model.loss(batch, generator=torch.Generator().manual_seed(0)).metrics["reward_loss"]
        events = int((batch.rewards != 0).sum())
        quiet = batch.rewards.numel() - events
        ce_event = -torch.log_softmax(torch.tensor([0.0, 4.0, 0.0]), 0)[0].item()
        ce_quiet = -torch.log_softmax(torch.tensor([0.0, 4.0, 0.0]), 0)[1].item()
        assert 0 < events < batch.rewards.numel()
        assert losses[w] == pytest.approx((w * events * ce_event + quiet * ce_quiet) / (w * events + quiet), rel=1e-5)
    assert losses[10.0] > losses[1.0]
    with pytest.raises(ValueError, match="reward_event_weight"):
        micro_config(reward_event_weight=0.0)


def test_optimisation_reduces_loss():
    model = micro_model("lstm", perturb=0.0).train()
    batch = make_batch(model.config, b=2, l=8)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def fixed_loss():
        return model.loss(batch, generator=torch.Generator().manual_seed(123))

    first = fixed_loss().loss
    again = model(batch, generator=torch.Generator().manual_seed(123)).loss  # forward == loss
    assert again.item() == first.item()
    for _ in range(6):
        loss = fixed_loss().loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = fixed_loss().loss
    assert last.item() < 0.9 * first.item(), (first.item(), last.item())


# ----------------------------------------------------------------------------------------
# train/inference consistency
# ----------------------------------------------------------------------------------------
def _stream_inputs(model: WorldModel, b: int, l: int, seed: int, cut: int | None = None):
    """Random network inputs for both training streams; with ``cut``, env 1 starts an episode there."""
    cfg = model.config
    s = cfg.image_size
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(b, l, 3, s, s, generator=g)
    noisy = torch.randn(b, l, 3, s, s, generator=g)
    ctx_noise = torch.rand(b, l, generator=g) - 1.0
    noise = torch.rand(b, l, generator=g) * 2 - 0.5
    actions = torch.randint(0, cfg.num_actions, (b, l), generator=g)
    is_first = torch.zeros(b, l, dtype=torch.bool)
    is_first[:, 0] = True
    if cut is not None:
        is_first[1, cut] = True
    actions[is_first] = cfg.null_action
    return ctx, ctx_noise, noisy, noise, actions, is_first


@pytest.mark.parametrize("stem", [*STEMS, "patch+motion+canvas+prior_input"])
@pytest.mark.parametrize("memory", MEMORIES)
def test_training_streams_equal_inference_steps(memory, stem):
    """Training computes, for every frame at once, what inference computes frame by frame: the context
    stream == commit_step (features, state), the target stream == denoise_step reading that state,
    also across an episode start inside the sequence (== resetting that env's state). With
    ``prior_input`` the stem's warp of the previous clean frame through the canvas too."""
    model = micro_model(memory, **{**STEMS, "patch+motion+canvas+prior_input": PRIOR_INPUT}[stem])
    b, l, cut = 2, 10, 6  # l > 3 * window
    ctx, ctx_noise, noisy, noise, actions, is_first = _stream_inputs(model, b, l, 1, cut)
    frames = ctx.clamp(-1, 1)  # the clean committed frames (the canvas and the prior_input stem read them)
    with torch.no_grad():
        canvases = model._canvases(frames, actions, is_first, None)
        context = model.dit.forward_context(ctx, ctx_noise, actions, is_first, None, frames, canvases)
        out = model.dit.forward_targets(noisy, noise, actions, context)
        state = model.init_state(b)
        outs, feats = [], []
        for t in range(l):
            if t == cut:
                state.index_copy_([1], model.init_state(1))
            outs.append(model.dit.denoise_step(noisy[:, t], noise[:, t], actions[:, t], state))
            f, state = model.dit.commit_step(ctx[:, t], ctx_noise[:, t], actions[:, t], state, frames[:, t])
            feats.append(f)
    torch.testing.assert_close(torch.stack(outs, 1), out, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.stack(feats, 1), context.features, atol=1e-4, rtol=0)
    last_canvas = canvases[:, -1] if canvases is not None else None
    assert_states_close(model.dit.state_after(context, frames[:, -1], last_canvas), state, atol=1e-4)
    assert state.time.tolist() == [l, l - cut]


@pytest.mark.parametrize("stem", list(STEMS))
@pytest.mark.parametrize("memory", ["lstm", "linear", "none"])
def test_chunks_continuing_a_state_equal_the_whole_sequence(memory, stem):
    """Truncated backprop through time: a sequence cut into chunks, each continuing the state the
    previous chunk left (memory, window K/V, last frame), gives the whole sequence's context stream,
    target stream and final state; also with a chunk shorter than the window, an episode starting at a
    chunk's first frame (the carried state is ignored) and one starting inside a chunk."""
    model = micro_model(memory, **STEMS[stem])
    b, l = 2, 12
    ctx, ctx_noise, noisy, noise, actions, is_first = _stream_inputs(model, b, l, 5, cut=5)
    is_first[0, 9] = True
    actions[0, 9] = model.config.null_action
    with torch.no_grad():
        whole = model.dit.forward_context(ctx, ctx_noise, actions, is_first)
        out = model.dit.forward_targets(noisy, noise, actions, whole)
        state, outs, feats = None, [], []
        for a, z in ((0, 4), (4, 5), (5, 12)):
            part = model.dit.forward_context(ctx[:, a:z], ctx_noise[:, a:z], actions[:, a:z], is_first[:, a:z], state)
            outs.append(model.dit.forward_targets(noisy[:, a:z], noise[:, a:z], actions[:, a:z], part))
            feats.append(part.features)
            state = model.dit.state_after(part, ctx[:, z - 1])
    torch.testing.assert_close(torch.cat(outs, 1), out, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cat(feats, 1), whole.features, atol=1e-4, rtol=0)
    assert_states_close(state, model.dit.state_after(whole, ctx[:, -1]), atol=1e-4)
    assert state.time.tolist() == [l - 9, l - 5]


def test_carried_state_brings_earlier_chunks_through_memory_only():
    """A chunk continuing a state sees what came before the window only through the memory: changing
    the first chunk's first frame changes the last frame of the second chunk (out of reach of the
    stacked windows) with memory, not without."""
    for memory, changes in (("lstm", True), ("none", False)):
        model = micro_model(memory)
        ctx, ctx_noise, noisy, noise, actions, is_first = _stream_inputs(model, 1, 10, 7)
        other = ctx.clone()
        other[:, 0] = torch.randn(other.shape[2:], generator=torch.Generator().manual_seed(8))
        with torch.no_grad():
            outs = []
            for first in (ctx, other):
                state = model.dit.state_after(model.dit.forward_context(first[:, :5], ctx_noise[:, :5], actions[:, :5],
                                                                        is_first[:, :5]), first[:, 4])
                part = model.dit.forward_context(ctx[:, 5:], ctx_noise[:, 5:], actions[:, 5:], is_first[:, 5:], state)
                outs.append(model.dit.forward_targets(noisy[:, 5:], noise[:, 5:], actions[:, 5:], part)[:, -1])
        assert (not torch.allclose(outs[0], outs[1], atol=1e-6)) == changes, memory
    with pytest.raises(ValueError, match="bounded window"):
        full = micro_model("full")
        c = full.dit.forward_context(ctx[:, :5], ctx_noise[:, :5], actions[:, :5], is_first[:, :5])
        full.dit.forward_context(ctx[:, 5:], ctx_noise[:, 5:], actions[:, 5:], is_first[:, 5:], full.dit.state_after(c, ctx[:, 4]))


def test_lstm_memory_starts_with_long_time_constants():
    """Chrono-initialised gates: 30 frames after a different first frame the LSTM memory still differs
    clearly; with zero gate biases (nn.LSTMCell's default) it has forgotten the frame ~100x more."""
    def retention(model: WorldModel) -> float:
        ctx, ctx_noise, _, _, actions, is_first = _stream_inputs(model, 1, 31, 9)
        other = ctx.clone()
        other[:, 0] = torch.randn(other.shape[2:], generator=torch.Generator().manual_seed(10))
        with torch.no_grad():
            h = [model.dit.forward_context(x, ctx_noise, actions, is_first).final_memory[-1][0] for x in (ctx, other)]
        return float((h[0] - h[1]).norm() / h[0].norm())

    model = micro_model("lstm", perturb=0.0)
    chrono = retention(model)
    with torch.no_grad():
        for blk in model.dit.blocks:
            blk.memory.lstm.bias_ih.zero_()
            blk.memory.lstm.bias_hh.zero_()
    assert chrono > 1e-3 and chrono > 30 * retention(model), (chrono, retention(model))
    f = model.config.memory_dim
    fresh = micro_model("lstm", perturb=0.0)
    bias = fresh.dit.blocks[0].memory.lstm.bias_ih
    assert (bias[f:2 * f] >= 0).all() and bias[f:2 * f].max() > 3.0 and torch.equal(bias[:f], -bias[f:2 * f])
    with pytest.raises(ValueError, match="memory_timescale"):
        micro_config(memory_timescale=1)


@pytest.mark.parametrize("memory", MEMORIES)
def test_history_beyond_window_reaches_only_through_memory(memory):
    model = micro_model(memory)
    b, l = 1, 8  # frame 0 is outside the window of frame 7 (and not its previous frame)
    ctx, ctx_noise, noisy, noise, actions, is_first = _stream_inputs(model, b, l, 3)
    other = ctx.clone()
    other[:, 0] = torch.randn(other.shape[2:], generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        d1 = model.dit.forward_targets(noisy, noise, actions, model.dit.forward_context(ctx, ctx_noise, actions))
        d2 = model.dit.forward_targets(noisy, noise, actions, model.dit.forward_context(other, ctx_noise, actions))
    diff = (d1[:, -1] - d2[:, -1]).abs().max().item()
    if memory == "none":
        assert diff == 0.0
    else:
        assert diff > 1e-4
    assert (d1[:, 1] - d2[:, 1]).abs().max().item() > 1e-4  # frame 0 is frame 1's window and previous frame


# ----------------------------------------------------------------------------------------
# inference
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("memory", MEMORIES)
def test_state_size_constant_except_full(memory):
    model = micro_model(memory, perturb=0.0)
    cfg = model.config
    state = model.init_state(2)
    frames = random_frames(cfg, 2, 0)
    sizes = {}
    for t in range(1, 51):
        state = model.observe(frames, torch.tensor([cfg.null_action, 1]), state)
        if t in (5, 50):
            sizes[t] = state.nbytes()
    if memory == "full":
        assert sizes[50] > sizes[5]
        assert state.cache_len == 50
    else:
        assert sizes[50] == sizes[5]
        assert state.cache_len == cfg.window - 1
    assert state.time.tolist() == [50, 50]


@pytest.mark.parametrize("memory", ["lstm", "full"])
def test_imagine_outputs(memory):
    model = micro_model(memory)
    cfg = model.config
    state = model.observe(random_frames(cfg, 3, 0), torch.full((3,), cfg.null_action),
                          model.init_state(3))
    before = state.clone()
    imagined = model.imagine(torch.tensor([0, 1, 2]), state, steps=3)
    frames, reward, term, new_state, performed, features = imagined
    assert features.shape == (3, model.dit.feature_dim)  # what the heads read of the new frames
    assert imagined.frames is frames and imagined.state is new_state
    assert performed.tolist() == [0, 1, 2]  # no collision gate: every press performed as pressed
    assert frames.dtype == torch.uint8 and frames.shape == (3, cfg.image_size, cfg.image_size, 3)
    assert reward.shape == (3,) and term.shape == (3,)
    assert ((reward >= -1) & (reward <= 1)).all() and ((term >= 0) & (term <= 1)).all()
    assert new_state.time.tolist() == [2, 2, 2]
    assert_states_close(state, before, atol=0)  # input state not mutated
    frames2, *_ = model.imagine(torch.tensor([0, 1, 2]), new_state, steps=2, sampler="heun")
    assert frames2.shape == frames.shape


def test_rollout_frames_are_own_samples_after_start():
    """Rollout training's context: real frames before ``start``, then exactly what a dream from the same
    real frames commits (imagine, frame by frame); rows crossing an episode start stay real."""
    model = micro_model("lstm")
    cfg = model.config
    batch = make_batch(cfg, b=3, l=6)
    batch.is_first[2, 3] = True  # row 2 crosses an episode start: keeps its real frames
    torch.manual_seed(5)
    frames = model.rollout_frames(batch, start=2, steps=2)
    assert frames.dtype == torch.uint8 and frames.shape == batch.frames.shape
    assert torch.equal(frames[:, :2], batch.frames[:, :2]) and torch.equal(frames[2], batch.frames[2])
    assert not torch.equal(frames[:2, 2:], batch.frames[:2, 2:])
    torch.manual_seed(5)  # the same global noise: a dream from the first two real frames
    state = model.init_state(3)
    for t in range(2):
        state = model.observe(batch.frames[:, t], batch.prev_actions[:, t], state)
    for t in range(2, 6):
        step = model.imagine(batch.prev_actions[:, t], state, steps=2)
        assert torch.equal(step.frames[:2], frames[:2, t])
        state = step.state
    # the loss reads the given context frames, and targets stay the batch's frames
    loss_own = model.loss(batch, torch.Generator().manual_seed(0), context_frames=frames).loss
    loss_real = model.loss(batch, torch.Generator().manual_seed(0)).loss
    assert torch.isfinite(loss_own) and float(loss_own.detach()) != float(loss_real.detach())
    assert float(model.loss(batch, torch.Generator().manual_seed(0), context_frames=batch.frames)[0].detach()) == \
        float(loss_real.detach())
    with pytest.raises(ValueError, match="rollout start"):
        model.rollout_frames(batch, start=6)
    with pytest.raises(ValueError, match="context_frames must have the shape"):
        model.loss(batch, context_frames=frames[:, :3])


def test_rollout_from_frame_zero_continues_the_carried_dream():
    """start=0 with a carried state dreams every frame on from that state (frame by frame, as imagine);
    without a state, or with a row starting an episode at frame 0, it is refused."""
    model = micro_model("lstm")
    cfg = model.config
    batch = make_batch(cfg, b=2, l=5)
    batch.is_first[:] = False  # both rows continue their episodes
    carried = model.init_state(2)
    for t in range(3):
        carried = model.observe(batch.frames[:, t], batch.prev_actions[:, t], carried)
    torch.manual_seed(3)
    frames = model.rollout_frames(batch, start=0, steps=2, state=carried)
    torch.manual_seed(3)
    state = carried
    for t in range(5):
        step = model.imagine(batch.prev_actions[:, t], state, steps=2)
        assert torch.equal(step.frames, frames[:, t])  # no real frame observed first
        state = step.state
    with pytest.raises(ValueError, match=r"rollout start must be in \[1"):
        model.rollout_frames(batch, start=0)
    batch.is_first[1, 0] = True
    with pytest.raises(ValueError, match="rows that start an episode need start >= 1"):
        model.rollout_frames(batch, start=0, state=carried)


def test_motion_prior_fit_recovers_each_actions_camera_shift():
    """Frame pairs whose next frame is the previous one seen k pixels further right (action 1: k = 2,
    action 2: k = -3, action 3: still): the fit finds each action's shift and its warp predicts the next
    frame far better than copying the previous one."""
    cfg = micro_config(motion_prior=True, motion_grid=4)
    motion = MotionPrior(cfg)
    gen = torch.Generator().manual_seed(0)
    shifts = {1: 2, 2: -3, 3: 0}

    def pairs():
        while True:
            scenes = torch.nn.functional.interpolate(torch.rand(12, 3, 6, 8, generator=gen) * 2 - 1, size=(16, 24),
                                                     mode="bilinear", align_corners=True)  # smooth, wider than a frame
            actions = torch.tensor([1, 2, 3] * 4)
            k = torch.tensor([shifts[int(a)] for a in actions])
            prev = scenes[:, :, :, 4:20]
            nxt = torch.stack([s[:, :, 4 + int(d):20 + int(d)] for s, d in zip(scenes, k)])
            yield prev, nxt, actions

    assert not bool(motion.fitted)
    errors = motion.fit(pairs(), steps=200, lr=1e-2)
    assert bool(motion.fitted) and errors["warp_mse"] < errors["copy_mse"] / 10
    found = motion.shift_pixels()
    for action, k in shifts.items():
        assert abs(float(found[action, 0]) - k) < 0.3 and abs(float(found[action, 1])) < 0.3, (action, found)
    with pytest.raises(ValueError, match="needs 5 batches"):
        MotionPrior(cfg).fit(iter([next(pairs())]), steps=5)


def test_motion_pairs_fit_the_shift_that_depends_on_the_previous_action():
    """Momentum: the camera moves 3 pixels when the action repeats the previous one and 1 when it follows
    another. One flow per action can only fit the average; one per (previous, action) pair finds both."""
    gen = torch.Generator().manual_seed(0)

    def pairs(motion: MotionPrior):
        while True:
            scenes = torch.nn.functional.interpolate(torch.rand(12, 3, 6, 8, generator=gen) * 2 - 1, size=(16, 24),
                                                     mode="bilinear", align_corners=True)
            actions, previous = torch.tensor([1] * 12), torch.tensor([1, 2] * 6)
            shift = torch.where(previous == actions, 3, 1)
            nxt = torch.stack([s[:, :, 4 + int(d):20 + int(d)] for s, d in zip(scenes, shift)])
            yield scenes[:, :, :, 4:20], nxt, motion.key(actions, previous)

    errors = {}
    for name, extra in (("action", {}), ("pairs", {"motion_pairs": True})):
        motion = MotionPrior(micro_config(motion_prior=True, motion_grid=4, **extra))
        errors[name] = motion.fit(pairs(motion), steps=200, lr=1e-2)["warp_mse"]
    assert errors["pairs"] < errors["action"] / 4, errors
    x = motion.flow.detach().mean(dim=(2, 3))[:, 0] * 15 / 2
    assert abs(float(x[motion.key(torch.tensor(1), torch.tensor(1))]) - 3) < 0.3
    assert abs(float(x[motion.key(torch.tensor(1), torch.tensor(2))]) - 1) < 0.3
    assert motion.shift_pixels().shape == (5, 2)  # per action, averaged over the previous actions
    with pytest.raises(ValueError, match="needs the previous action"):
        motion.key(torch.tensor([1]))


def test_motion_pairs_follow_the_last_committed_action():
    """With ``motion_pairs`` the state keeps the action that led to its last frame: the denoiser warps by the
    flow of (that action, the next one), at an episode start by (null, next); the training keys of a
    sequence (across an episode start and a carried chunk) equal the keys stepping reads."""
    model = micro_model("lstm", motion_prior=True, motion_grid=4, motion_pairs=True)
    cfg, motion = model.config, model.dit.motion
    zero_(model.dit.stem.out)
    frames = random_frames(cfg, 2, 3)
    sigma = torch.tensor([1e4])
    x = sigma * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        state = model.observe(frames[:1], torch.tensor([cfg.null_action]), model.init_state(1))
        assert state.last_action.tolist() == [cfg.null_action]
        outs = {}
        for before in (1, 2):
            after = model.observe(frames[1:], torch.tensor([before]), state)
            assert after.last_action.tolist() == [before]
            clean = frames_to_float(frames[1:])
            warp = motion(clean, motion.key(torch.tensor([3]), torch.tensor([before])))
            outs[before] = model.denoise(x, sigma, torch.tensor([3]), after)
            torch.testing.assert_close(outs[before], warp, atol=2e-3, rtol=0)
        assert (outs[1] - outs[2]).abs().max() > 1e-3
    batch = _batch_with_cut(cfg, 8, 5, seed=4)
    stepped = torch.stack([model.dit.motion_keys(batch.prev_actions[:, t], before.last_action)
                           for t, (before, _) in enumerate(_observe_one_by_one(model, batch, 5))], 1)
    assert torch.equal(model.dit.sequence_motion_keys(batch.prev_actions, batch.is_first, None), stepped)
    carried = model.loss(Batch(batch.frames[:, :3], batch.prev_actions[:, :3], batch.rewards[:, :3],
                               batch.terminated[:, :3], batch.is_first[:, :3])).state
    assert torch.equal(carried.last_action, batch.prev_actions[:, 2])
    assert torch.equal(model.dit.sequence_motion_keys(batch.prev_actions[:, 3:], batch.is_first[:, 3:], carried),
                       stepped[:, 3:])


def test_motion_prior_denoiser_predicts_relative_to_the_warped_previous_frame():
    """D = w + c_skip (x - w) + c_out F with w the committed previous frame warped by the action's flow:
    with the network's read-out at zero, denoising from pure noise returns that warp, and it follows
    the state's previous frame and the action; at the first frame of an episode (no previous frame) it
    is EDM's plain denoiser."""
    model = micro_model("lstm", motion_prior=True, motion_grid=4)
    cfg = model.config
    zero_(model.dit.stem.out)
    frame = random_frames(cfg, 1, 3)
    state = model.observe(frame, torch.tensor([cfg.null_action]), model.init_state(1))
    clean = frames_to_float(frame)
    torch.testing.assert_close(state.prev_frame, clean)
    sigma = torch.tensor([1e4])
    x = sigma * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for action in (1, 2):
            warped = model.dit.motion(clean, torch.tensor([action]))
            torch.testing.assert_close(model.denoise(x, sigma, torch.tensor([action]), state), warped,
                                       atol=2e-3, rtol=0)
        left, right = (model.dit.motion(clean, torch.tensor([a])) for a in (1, 2))
        assert (left - right).abs().max() > 1e-3
        fresh = model.denoise(x, sigma, torch.tensor([1]), model.init_state(1))
    assert fresh.abs().max() < 2e-3


def test_flow_correction_moves_the_warp_and_learns():
    """With ``flow_correction`` the network's two extra output channels shift the motion prior's warp:
    a read-out of +1 pixel in x everywhere warps the previous frame as the action's flow plus one pixel.
    At initialisation the correction is zero (an added head changes nothing), and the diffusion loss
    trains it through the warp."""
    model = micro_model("lstm", motion_prior=True, motion_grid=8, flow_correction=True, perturb=0.0)
    cfg = model.config
    assert cfg.output_channels == 5
    zero_(model.dit.stem.out)
    frame = random_frames(cfg, 1, 3)
    state = model.observe(frame, torch.tensor([cfg.null_action]), model.init_state(1))
    clean, action = frames_to_float(frame), torch.tensor([2])
    sigma = torch.tensor([1e4])
    x = sigma * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    pixel = 2.0 / (cfg.image_size - 1)
    with torch.no_grad():
        torch.testing.assert_close(model.denoise(x, sigma, action, state), model.dit.motion(clean, action),
                                   atol=2e-3, rtol=0)
        # per token: (x, y) x 2 x 2 cells; x = +1 px
        model.dit.flow.out.bias.view(-1, 2, 2, 2)[:, 0] = 1.0 / model.dit.flow.pixels_per_unit
        shifted = model.dit.motion(clean, action, torch.full((1, 2, 16, 16), pixel) * torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
        torch.testing.assert_close(model.denoise(x, sigma, action, state), shifted, atol=2e-3, rtol=0)
        assert (shifted - model.dit.motion(clean, action)).abs().max() > 0.05
    model.train()
    loss = model.loss(make_batch(cfg, b=2, l=6)).loss
    loss.backward()
    assert model.dit.flow.out.weight.grad.abs().sum() > 0


def test_content_flow_starts_at_zero_and_learns_a_shift_the_frame_shows():
    """``content_flow``: a net that reads the frame adds to the key's flow. At initialisation it adds nothing
    (the warp is the prior's alone); fit to pairs whose shift one key cannot know (right 2 pixels where the
    scene is bright, left 2 where it is dark), it lowers the warp's error well below the key's flow alone."""
    cfg = micro_config(motion_prior=True, motion_grid=4, content_flow=8)
    motion = MotionPrior(cfg)
    plain = MotionPrior(micro_config(motion_prior=True, motion_grid=4))
    plain.flow.data.copy_(motion.flow.data)
    gen = torch.Generator().manual_seed(0)

    def pairs():
        while True:
            scenes = torch.nn.functional.interpolate(torch.rand(16, 3, 6, 8, generator=gen) * 2 - 1, size=(16, 24),
                                                     mode="bilinear", align_corners=True) * 0.5
            bright = torch.arange(16) % 2 == 0
            scenes = scenes + torch.where(bright, 0.5, -0.5).view(16, 1, 1, 1)
            prev = scenes[:, :, :, 4:20]
            nxt = torch.stack([s[:, :, 6:22] if b else s[:, :, 2:18] for s, b in zip(scenes, bright)])
            yield prev, nxt, torch.ones(16, dtype=torch.long)

    prev, _, keys = next(pairs())
    torch.testing.assert_close(motion(prev, keys), plain(prev, keys))
    key_only = motion.fit(pairs(), steps=100, lr=1e-2)["warp_mse"]
    assert bool(motion.fitted) and not bool(motion.content.fitted)
    fitted = motion.fit_content(pairs(), steps=150, lr=3e-3)
    assert bool(motion.content.fitted) and fitted["warp_mse"] < key_only / 3, (fitted, key_only)
    with pytest.raises(ValueError, match="has no content flow"):
        plain.fit_content(pairs(), steps=1)
    with pytest.raises(ValueError, match="content_flow adds to the motion prior's flow"):
        micro_config(content_flow=8)


def test_flow_correction_needs_the_motion_prior():
    with pytest.raises(ValueError, match="needs motion_prior=true"):
        micro_config(flow_correction=True)
    with pytest.raises(ValueError, match="multiple of the token grid"):
        micro_config(motion_prior=True, motion_grid=6, flow_correction=True)


def _canvas_model(canvas_width: int = 40) -> WorldModel:
    """A micro model whose motion prior pans 4 pixels right (action 1) or left (action 2), steps (action 3:
    a vertical flow, not a pan) or stands still (action 0), with the network's read-out at zero."""
    model = micro_model("lstm", motion_prior=True, motion_grid=4, canvas_width=canvas_width,
                        pan_actions=[0, 1, 2], perturb=0.0)
    px = 2.0 / (model.config.image_size - 1)
    with torch.no_grad():
        model.dit.motion.flow.zero_()
        model.dit.motion.flow[1, 0] = 4 * px
        model.dit.motion.flow[2, 0] = -4 * px
        model.dit.motion.flow[3, 1] = 2 * px
    zero_(model.dit.stem.out)
    return model


def test_canvas_brings_back_what_a_turn_moved_out_of_view():
    """Panning right twice moves 8 columns out of the 16-pixel view; panning back left, the motion prior's
    warp (what the denoiser predicts relative to) shows them again from the canvas, exactly, where the
    plain warp repeats the border. A step (not a pan action) clears the canvas outside the view."""
    model, plain = _canvas_model(), _canvas_model(canvas_width=0)
    g = torch.Generator().manual_seed(0)
    scene = torch.randint(0, 256, (1, 16, 40, 3), generator=g, dtype=torch.uint8)
    view = lambda left: scene[:, :, left:left + 16]  # noqa: E731
    sigma = torch.tensor([1e4])
    x = sigma * torch.randn(1, 3, 16, 16, generator=g)
    states = [m.init_state(1) for m in (model, plain)]
    for left, action in ((12, model.config.null_action), (16, 1), (20, 1)):
        states = [m.observe(view(left), torch.tensor([action]), s) for m, s in zip((model, plain), states)]
    back = frames_to_float(view(16))
    with torch.no_grad():
        warped = model.denoise(x, sigma, torch.tensor([2]), states[0])
        torch.testing.assert_close(warped, back, atol=2e-3, rtol=0)
        repeated = plain.denoise(x, sigma, torch.tensor([2]), states[1])
    torch.testing.assert_close(repeated[..., 4:], back[..., 4:], atol=2e-3, rtol=0)
    assert (repeated[..., :4] - back[..., :4]).abs().mean() > 0.2  # the border column, repeated
    held = states[0].canvas[:, 3]
    assert held[0, 0].tolist() == [0.0] * 4 + [1.0] * 24 + [0.0] * 12  # columns 8..35 of the scene seen
    stepped = model.observe(view(20), torch.tensor([3]), states[0])
    assert stepped.canvas[:, 3].sum() == 16 * 16  # only the view is left
    with torch.no_grad():
        torch.testing.assert_close(model.denoise(x, sigma, torch.tensor([2]), stepped),
                                   model.dit.motion(frames_to_float(view(20)), torch.tensor([2])), atol=2e-3, rtol=0)


def test_training_canvases_equal_committing_frames_one_by_one():
    """The loss builds the canvas the denoiser of every frame reads as committing the frames one by one
    does, across an episode start inside the sequence and across chunks continuing a carried state."""
    model = _canvas_model()
    cfg = model.config
    batch = _batch_with_cut(cfg, 10, 6, seed=3)
    observed = _observe_one_by_one(model, batch, 6)
    steps, state = [after.canvas for _, after in observed], observed[-1][1]
    committed = frames_to_float(batch.frames)
    torch.testing.assert_close(model._canvases(committed, batch.prev_actions, batch.is_first, None),
                               torch.stack(steps, 1), atol=1e-6, rtol=0)
    whole = model.loss(batch).state
    torch.testing.assert_close(whole.canvas, state.canvas, atol=1e-6, rtol=0)
    part = lambda a, z: Batch(batch.frames[:, a:z], batch.prev_actions[:, a:z], batch.rewards[:, a:z],  # noqa: E731
                              batch.terminated[:, a:z], batch.is_first[:, a:z])
    first = model.loss(part(0, 4)).state
    second = model.loss(part(4, 10), state=first).state
    torch.testing.assert_close(second.canvas, state.canvas, atol=1e-6, rtol=0)
    assert steps[2][:, 3].sum() > 2 * 16 * 16  # the pans kept something outside the view


def test_hud_border_stays_in_place_and_is_not_the_scene():
    """With ``hud_border`` the warp keeps the overlay at the frame's edge where it is and moves only the scene
    inside (the scene's border, not the overlay, is what a pan repeats), and the canvas keeps the scene
    only. Flows whose outer cells stayed at zero (as training leaves them) still read the canvas."""
    model = micro_model("lstm", motion_prior=True, motion_grid=4, canvas_width=40, pan_actions=[0, 1, 2],
                        hud_border=1, perturb=0.0)
    px = 2.0 / (model.config.image_size - 1)
    with torch.no_grad():
        model.dit.motion.flow.zero_()
        model.dit.motion.flow[1, 0, :, 1:3] = 4 * px  # outer columns of cells at zero
        model.dit.motion.flow[2, 0, :, 1:3] = -4 * px
    g = torch.Generator().manual_seed(0)
    scene = torch.randint(0, 256, (1, 16, 40, 3), generator=g, dtype=torch.uint8)
    scene[:, 0] = scene[:, -1] = 0  # the overlay: black rows and columns around every view
    view = lambda left: torch.cat([torch.zeros(1, 16, 1, 3, dtype=torch.uint8), scene[:, :, left + 1:left + 15],  # noqa: E731
                                   torch.zeros(1, 16, 1, 3, dtype=torch.uint8)], dim=2)
    state = model.init_state(1)
    for left, action in ((12, model.config.null_action), (16, 1), (20, 1)):
        state = model.observe(view(left), torch.tensor([action]), state)
    held = state.canvas[0, 3]
    assert held[0].sum() == 0 and held[:, :5].sum() == 0  # no overlay kept: top row, the first view's left edge
    with torch.no_grad():
        back = model.dit.motion(state.prev_frame, torch.tensor([2]), canvas=state.canvas)
        plain = model.dit.motion(state.prev_frame, torch.tensor([2]))
    want = frames_to_float(view(16))
    torch.testing.assert_close(back, want, atol=2e-3, rtol=0)  # the scene columns 17..20 from the canvas
    torch.testing.assert_close(plain[..., 0], want[..., 0])  # the overlay column stays put
    torch.testing.assert_close(plain[..., 1:5], frames_to_float(view(20))[..., 1:2].expand(-1, -1, -1, 4),
                               atol=2e-3, rtol=0)  # without the canvas: the scene's edge column, repeated


def test_dreamed_hud_stays_one_colour():
    """The denoiser sets the ``hud_border`` overlay to its mean colour: over a long dream the warp copies it
    frame to frame, and per-pixel errors there would pile up into speckle. A network with random weights
    still dreams a one-colour ring (whose colour it may change) around a scene that varies."""
    model = micro_model("lstm", motion_prior=True, motion_grid=4, hud_border=1, perturb=0.05)
    cfg = model.config
    frame = random_frames(cfg, 1, 0)
    frame[:, 0] = frame[:, -1] = frame[:, :, 0] = frame[:, :, -1] = torch.tensor([200, 40, 30], dtype=torch.uint8)
    state = model.observe(frame, torch.tensor([cfg.null_action]), model.init_state(1))
    g = torch.Generator().manual_seed(0)
    ring = model.dit.motion.hud
    colours = []
    for _ in range(12):
        out = model.imagine(torch.randint(0, cfg.num_actions, (1,), generator=g), state, steps=2)
        state = out.state
        pixels = out.frames[0][ring]  # (ring pixels, 3)
        assert (pixels == pixels[0]).all(), "the overlay is one colour"
        assert out.frames[0][~ring].float().std() > 5  # the scene is not
        colours.append(pixels[0])
    assert len({tuple(c.tolist()) for c in colours}) > 1  # the network still sets the colour
    x = torch.randn(2, 3, 16, 16)
    flat = model.dit.motion.flatten_hud(x)
    torch.testing.assert_close(flat[..., ~ring], x[..., ~ring])
    torch.testing.assert_close(flat[..., 0, 0], x[..., ring].mean(-1))


def test_canvas_keeps_what_was_seen_and_sub_pixel_pans_cancel():
    """Pans of 2.5 pixels: the canvas moves by whole pixels and carries the fraction, so two turns one way
    and two back bring the first view back to the middle exactly. Dreamed frames do not overwrite what was
    observed (a turn in place shows the scene as seen), observed frames do."""
    model = _canvas_model()
    motion, cfg = model.dit.motion, model.config
    px = 2.0 / (cfg.image_size - 1)
    with torch.no_grad():
        motion.flow[1, 0] = 2.5 * px
        motion.flow[2, 0] = -2.5 * px
    seen = frames_to_float(random_frames(cfg, 1, 1))
    dreamed = frames_to_float(random_frames(cfg, 1, 2))
    yes, no = torch.tensor([True]), torch.tensor([False])
    canvas = motion.update_canvas(model.dit.empty_canvas(1), seen, torch.tensor([cfg.null_action]), yes)
    shifts = []
    for action in (1, 1, 2, 2):
        canvas = motion.update_canvas(canvas, dreamed, torch.tensor([action]), no)
        shifts.append(float(canvas[0, -1, 0, 0]))
    assert shifts == [0.5, 0.0, -0.5, 0.0]  # round half to even: 2.5 -> 2, 3.0 -> 3, -2.5 -> -2
    torch.testing.assert_close(canvas[:, :3, :, 12:28], seen)  # the view in the middle: what was seen
    assert canvas[0, 4, :, 12:28].min() == 1  # and it is marked observed
    canvas = motion.update_canvas(canvas, dreamed, torch.tensor([0]), yes)
    torch.testing.assert_close(canvas[:, :3, :, 12:28], dreamed)  # a real frame replaces it


def test_canvas_leaves_a_zoom_alone():
    """Only the pan actions read the canvas with their inner cells' offsets: a step's zoom-like field (x-offsets
    growing towards the edges) warps as without a canvas when the canvas holds only the view."""
    model = _canvas_model()
    cfg = model.config
    px = 2.0 / (cfg.image_size - 1)
    with torch.no_grad():
        model.dit.motion.flow[3, 0] = torch.linspace(-3, 3, 4) * px  # x-offset by column of cells
    frame = frames_to_float(random_frames(cfg, 1, 5))
    canvas = model.dit.motion.update_canvas(model.dit.empty_canvas(1), frame, torch.tensor([cfg.null_action]),
                                            torch.tensor([True]))
    step = torch.tensor([3])
    torch.testing.assert_close(model.dit.motion(frame, step, canvas=canvas), model.dit.motion(frame, step),
                               atol=1e-5, rtol=0)


def test_canvas_config_errors():
    with pytest.raises(ValueError, match="needs motion_prior=true"):
        micro_config(canvas_width=40)
    with pytest.raises(ValueError, match="canvas_width must be 0 or"):
        micro_config(motion_prior=True, canvas_width=21)
    with pytest.raises(ValueError, match="pan_actions must be"):
        micro_config(motion_prior=True, canvas_width=40, pan_actions=[4])
    with pytest.raises(ValueError, match="hud_border must be"):
        micro_config(motion_prior=True, hud_border=8)
    with pytest.raises(ValueError, match="needs motion_prior=true"):
        micro_config(hud_border=2)


def _prior_input_model(perturb: float = 0.05) -> WorldModel:
    """A micro model with the canvas whose stem reads the denoiser's base (``prior_input``)."""
    return micro_model("lstm", perturb=perturb, **PRIOR_INPUT)


def test_prior_input_marks_the_pixels_the_warp_invents():
    """The stem's extra channel is 1 where the warp reads the view or the canvas and 0 where it repeats the
    border: a pan right leaves its last 4 columns unknown; after panning right and back left the canvas
    holds the columns the plain warp would repeat."""
    model = _prior_input_model(perturb=0.0)
    px = 2.0 / (model.config.image_size - 1)
    with torch.no_grad():
        model.dit.motion.flow.zero_()
        model.dit.motion.flow[1, 0] = 4 * px
        model.dit.motion.flow[2, 0] = -4 * px
    g = torch.Generator().manual_seed(0)
    scene = torch.randint(0, 256, (1, 16, 40, 3), generator=g, dtype=torch.uint8)
    state = model.observe(scene[:, :, 12:28], torch.tensor([model.config.null_action]), model.init_state(1))
    first = model.dit.stem_base(state.prev_input, torch.tensor([1]), state.prev_frame, state.canvas)
    known = first[0, 3]
    assert known[:, :12].min() == 1 and known[:, 12:].max() < 1e-6  # 4 new columns on the right
    torch.testing.assert_close(first[:, :3, :, :12], frames_to_float(scene[:, :, 16:28]) / 0.5, atol=2e-3, rtol=0)
    state = model.observe(scene[:, :, 16:32], torch.tensor([1]), state)
    back = model.dit.stem_base(state.prev_input, torch.tensor([2]), state.prev_frame, state.canvas)
    assert back[0, 3].min() > 1 - 1e-6  # the canvas holds what panning back shows
    torch.testing.assert_close(back[:, :3], frames_to_float(scene[:, :, 12:28]) / 0.5, atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="needs the clean frames"):
        model.dit.forward_context(torch.zeros(1, 2, 3, 16, 16), torch.zeros(1, 2), torch.zeros(1, 2))
    assert torch.isfinite(model.loss(make_batch(model.config, b=1, l=4)).loss)
    with pytest.raises(ValueError, match="needs motion_prior=true and prev_frame_input=true"):
        micro_config(prior_input=True)


def test_init_widens_the_stem_for_prior_input(tmp_path):
    """--init from a model whose stem reads 6 channels into one with ``prior_input`` (7): the old input
    weights are kept, the new channel's start at zero."""
    from rad_env.train import load_init_weights

    old = micro_model("lstm", motion_prior=True, motion_grid=4, canvas_width=40, pan_actions=[0, 1, 2])
    new = _prior_input_model(perturb=0.0)
    load_init_weights(new, old.state_dict(), "old.pt", verbose=False)
    weight, before = new.dit.stem.embed.weight, old.dit.stem.embed.weight
    per_channel = new.config.patch_size ** 2
    assert weight.shape[1] == before.shape[1] + per_channel
    torch.testing.assert_close(weight[:, :before.shape[1]], before)
    assert weight[:, before.shape[1]:].abs().max() == 0


def test_guidance_weighs_the_action():
    """guidance 0 samples from the action-free denoiser (the action cannot matter), 1 is plain
    conditional sampling, and the weight moves the sample along D_action - D_null."""
    model = micro_model("lstm")
    cfg = model.config
    state = model.observe(random_frames(cfg, 1, 0), torch.tensor([cfg.null_action]), model.init_state(1))

    def sample(action: int, w: float) -> torch.Tensor:
        gen = [torch.Generator().manual_seed(7)]
        return model.sample_next(torch.tensor([action]), state, steps=1, generators=gen, guidance=w)

    torch.testing.assert_close(sample(1, 0.0), sample(2, 0.0), atol=0, rtol=0)
    assert (sample(1, 1.0) - sample(2, 1.0)).abs().max() > 1e-4
    d1, d2 = sample(1, 1.0) - sample(1, 0.0), sample(1, 3.0) - sample(1, 0.0)
    torch.testing.assert_close(d2, 3.0 * d1, atol=1e-3, rtol=1e-3)  # one Euler step is linear in D
    # the two denoisers run as one batch: the same as two calls (one Euler step from sigma_max returns D)
    x = cfg.sigma_max * torch.randn((3, 16, 16), generator=torch.Generator().manual_seed(7))[None]
    sigma, null = torch.tensor([cfg.sigma_max]), torch.tensor([cfg.null_action])
    with torch.no_grad():
        d_act, d_null = model.denoise(x, sigma, torch.tensor([1]), state), model.denoise(x, sigma, null, state)
    torch.testing.assert_close(sample(1, 2.5), d_null + 2.5 * (d_act - d_null), atol=1e-4, rtol=0)


@pytest.mark.parametrize("stem", ["patch", "patch+motion+pairs", "patch+motion+flow", "prior_input"])
def test_imagine_computes_the_frames_base_once(stem, monkeypatch):
    """The stem's base and the motion prior's warp depend only on the state and the action, so ``imagine``
    computes them once per frame for all its denoising steps and the commit: passing them gives exactly
    what recomputing them gives (with a flow correction the warp still follows the network's flow)."""
    model = micro_model("lstm", **{**STEMS, "prior_input": PRIOR_INPUT}[stem], sampling_steps=3)
    cfg = model.config
    state = model.init_state(2)
    for t in range(3):
        state = model.observe(random_frames(cfg, 2, t), torch.tensor([cfg.null_action if t == 0 else 1, 2]), state)
    a = torch.tensor([2, 1])
    x = cfg.sigma_max * torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(3))
    sigma = torch.full((2,), 2.0)
    with torch.no_grad():
        base = model.dit.step_base(a, state)
        warp = model.predict_warp(a, state)
        torch.testing.assert_close(model.denoise(x, sigma, a, state, base=base, warp=warp),
                                   model.denoise(x, sigma, a, state), atol=0, rtol=0)
        y = x.clamp(-1, 1)
        f_cached, s_cached = model.dit.commit_step(y, sigma, a, state, y, base=base)
        f_fresh, s_fresh = model.dit.commit_step(y, sigma, a, state, y)
    torch.testing.assert_close(f_cached, f_fresh, atol=0, rtol=0)
    assert_states_close(s_cached, s_fresh, atol=0)
    calls = []
    stem_base = model.dit.stem_base
    monkeypatch.setattr(model.dit, "stem_base", lambda *args, **kw: calls.append(1) or stem_base(*args, **kw))
    model.imagine(a, state)
    assert len(calls) == 1  # 3 denoising steps and the commit


@pytest.mark.parametrize("memory", ["lstm", "none", "full"])
def test_batched_imagine_equals_single_runs(memory):
    model = micro_model(memory)
    cfg = model.config
    seeds, n = [11, 22, 33], 3
    # per-env histories of different lengths
    lengths = [1, 3, 2]
    obs = [[random_frames(cfg, 1, 100 * i + t) for t in range(lengths[i])] for i in range(n)]
    actions = [[cfg.null_action] + [1 + (t % 3) for t in range(lengths[i] - 1)] for i in range(n)]

    singles = []
    for i in range(n):
        gen = [torch.Generator().manual_seed(seeds[i])]
        st = model.init_state(1)
        for t in range(lengths[i]):
            st = model.observe(obs[i][t], torch.tensor([actions[i][t]]), st, gen)
        out1 = model.imagine(torch.tensor([1]), st, generators=gen)
        out2 = model.imagine(torch.tensor([2]), out1[3], generators=gen)
        singles.append((out1, out2))

    # batched: envs start together; shorter histories are reset at the right time
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    st = model.init_state(n)
    maxlen = max(lengths)
    for t in range(maxlen):
        frames = torch.cat([obs[i][t - (maxlen - lengths[i])] if t >= maxlen - lengths[i]
                            else random_frames(cfg, 1, 999) for i in range(n)])
        acts = torch.tensor([actions[i][t - (maxlen - lengths[i])] if t >= maxlen - lengths[i]
                             else 0 for i in range(n)])
        start = [i for i in range(n) if t == maxlen - lengths[i]]
        if start:
            st.index_copy_(start, model.init_state(len(start)))
        # envs that have not started yet use a throwaway generator
        step_gens = [gens[i] if t >= maxlen - lengths[i] else torch.Generator().manual_seed(0)
                     for i in range(n)]
        st = model.observe(frames, acts, st, step_gens)
    f1, r1, p1, st, *_ = model.imagine(torch.tensor([1, 1, 1]), st, generators=gens)
    f2, r2, p2, st, *_ = model.imagine(torch.tensor([2, 2, 2]), st, generators=gens)
    for i in range(n):
        (sf1, sr1, sp1, *_), (sf2, sr2, sp2, sst, *_) = singles[i]
        for bf, sf in ((f1[i], sf1[0]), (f2[i], sf2[0])):
            assert (bf.int() - sf.int()).abs().max() <= 1
        torch.testing.assert_close(r2[i], sr2[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(p2[i], sp2[0], atol=1e-4, rtol=0)
        # memory/time rows agree; caches agree on their valid slots
        row = st.select([i])
        for a, b in zip([t for m in row.memory for t in m], [t for m in sst.memory for t in m]):
            torch.testing.assert_close(a, b, atol=3e-4, rtol=0)  # uint8 frames may round apart by 1
        assert row.time.tolist() == sst.time.tolist()


def test_state_select_and_index_copy():
    model = micro_model("lstm")
    cfg = model.config
    state = model.init_state(3)
    for t in range(4):
        state = model.observe(random_frames(cfg, 3, t), torch.tensor([1, 2, 3]), state)
    sub = state.select([2, 0])
    assert sub.batch_size == 2
    assert torch.equal(sub.keys[0][0], state.keys[0][2])
    assert torch.equal(sub.memory[0][0][1], state.memory[0][0][0])
    assert torch.equal(state.select(torch.tensor([False, True, False])).time, state.time[1:2])

    fresh = model.init_state(1)
    copy = state.clone()
    copy.index_copy_([1], fresh)
    assert copy.time.tolist() == [4, 0, 4]
    assert not copy.valid[1].any() and copy.valid[0].all()
    assert torch.equal(copy.memory[0][0][1], fresh.memory[0][0][0])
    assert torch.equal(copy.keys[1][2], state.keys[1][2])  # other rows untouched
    assert state.time.tolist() == [4, 4, 4]  # clone is independent
    with pytest.raises(ValueError):
        copy.index_copy_([0, 1], fresh)
    assert state.to("cpu").nbytes() == state.nbytes()


def test_index_copy_pads_growing_full_cache():
    model = micro_model("full")
    cfg = model.config
    state = model.init_state(2)
    for t in range(3):
        state = model.observe(random_frames(cfg, 2, t), torch.tensor([1, 1]), state)
    other = model.observe(random_frames(cfg, 1, 9), torch.tensor([cfg.null_action]),
                          model.init_state(1))
    state.index_copy_([0], other)
    assert state.cache_len == 3
    assert state.valid.tolist() == [[False, False, True], [True, True, True]]
    longer = model.init_state(1)
    for t in range(5):
        longer = model.observe(random_frames(cfg, 1, t), torch.tensor([1]), longer)
    state.index_copy_([1], longer)
    assert state.cache_len == 5 and state.valid[1].all()
    assert state.valid[0].tolist() == [False, False, False, False, True]


def test_generators_make_noise_reproducible():
    g1 = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    g2 = [torch.Generator().manual_seed(6)]
    a = randn_rows((2, 3), 2, g1, "cpu")
    b = randn_rows((2, 3), 1, g2, "cpu")
    assert torch.equal(a[1], b[0])
    with pytest.raises(ValueError):
        randn_rows((2,), 3, g2, "cpu")


def test_edm_schedule_and_preconditioning():
    cfg = micro_config()
    edm = EDM(cfg)
    sig = edm.karras_sigmas(3)
    assert sig.shape == (4,)
    assert sig[0].item() == pytest.approx(cfg.sigma_max)
    assert sig[2].item() == pytest.approx(cfg.sigma_min, rel=1e-4)
    assert sig[3].item() == 0 and (sig[:-1] > sig[1:]).all()
    c_skip, c_out, c_in, _ = edm.precondition(torch.tensor([1e-4, 1.0, 50.0]))
    assert c_skip[0] == pytest.approx(1.0, abs=1e-6) and c_out[0] < 1e-3
    assert c_in[2] * 50 == pytest.approx(1.0, rel=1e-3)
    torch.testing.assert_close(edm.loss_weight(torch.tensor([0.7])), 1 / c_out.new_tensor(
        [0.7 * 0.5 / (0.7**2 + 0.25) ** 0.5]) ** 2)
    sigma = edm.sample_training_sigma((4000,), "cpu", torch.Generator().manual_seed(0))
    assert sigma.min() >= cfg.sigma_min and sigma.max() <= cfg.sigma_max
    assert abs(sigma.log().median().item() - cfg.sigma_train_mean) < 0.1
    assert (sigma >= cfg.sigma_max).float().mean() > 0.001  # the first sampling level is trained
    ctx = edm.sample_context_sigma((4000,), "cpu", torch.Generator().manual_seed(0))
    assert ctx.min() >= cfg.context_sigma_train_min * 0.999 and ctx.max() <= cfg.context_sigma_train_max * 1.001


def test_explicit_sampling_levels_are_what_the_sampler_calls_the_denoiser_at():
    """sampling_sigmas replaces the Karras schedule (one network call per level, then 0); another step
    count asked for explicitly falls back to Karras; bad level lists are refused."""
    model = micro_model("lstm", sampling_steps=2, sampling_sigmas=[80, 0.5])
    torch.testing.assert_close(model.edm.sampling_sigmas(), torch.tensor([80.0, 0.5, 0.0]))
    torch.testing.assert_close(model.edm.sampling_sigmas(3), model.edm.karras_sigmas(3))
    called = []
    real_denoise = model.denoise
    model.denoise = lambda x, sigma, a, st, **kw: called.append(round(float(sigma[0]), 4)) or real_denoise(x, sigma, a, st, **kw)
    with torch.no_grad():
        model.sample_next(torch.tensor([1, 2]), model.init_state(2))
    assert called == [80.0, 0.5]
    for bad, match in (([0.5, 80], "decreasing"), ([80, -1], "decreasing"), ([80], "has 1 levels but sampling_steps is 2")):
        with pytest.raises(ValueError, match=match):
            micro_config(sampling_steps=2, sampling_sigmas=bad)


@pytest.mark.parametrize("sigma_skip", [None, 0.1])
def test_preconditioning_targets_have_unit_variance(sigma_skip):
    """For data of std sigma_data, the network's target (y - c_skip x) / c_out has unit variance at every
    level, whatever sigma_skip; a small sigma_skip makes mid levels predict the clean frame (c_skip ~ 0)
    and keeps the input at low levels; None is EDM."""
    cfg = micro_config(sigma_skip=sigma_skip)
    edm = EDM(cfg)
    g = torch.Generator().manual_seed(0)
    sigmas = torch.tensor([0.01, 0.1, 0.5, 2.0, 20.0])
    y = torch.randn(200_000, 1, generator=g) * cfg.sigma_data
    x = y + sigmas * torch.randn(200_000, 5, generator=g)
    c_skip, c_out, _, _ = edm.precondition(sigmas)
    target = (y - c_skip * x) / c_out
    torch.testing.assert_close(target.std(0), torch.ones(5), atol=0.02, rtol=0)
    if sigma_skip is None:
        torch.testing.assert_close(c_skip, 0.25 / (sigmas**2 + 0.25))
    else:
        assert c_skip[2] < 0.05 and c_skip[0] > 0.95  # sigma 0.5: clean-frame prediction; 0.01: keeps the input
    with pytest.raises(ValueError, match="sigma_skip"):
        micro_config(sigma_skip=0)


def test_bad_inputs_raise():
    model = micro_model("lstm")
    cfg = model.config
    state = model.init_state(2)
    with pytest.raises(ValueError, match="action ids"):
        model.observe(random_frames(cfg, 2, 0), torch.tensor([0, cfg.num_actions + 1]), state)
    with pytest.raises(TypeError, match="uint8"):
        model.observe(torch.zeros(2, 16, 16, 3), torch.tensor([0, 0]), state)
    with pytest.raises(ValueError, match="prev_actions"):
        model.imagine(torch.tensor([0, 0, 0]), state)
    batch = make_batch(cfg, b=1, l=4)
    batch.prev_actions[0, 1] = -1
    with pytest.raises(ValueError, match="action ids"):
        model.loss(batch)
    with pytest.raises(TypeError, match="Batch"):
        model.loss({"frames": batch.frames})


def test_autocast_bfloat16_runs():
    model = micro_model("lstm")
    batch = make_batch(model.config, b=1, l=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(batch).loss
        state = model.observe(random_frames(model.config, 1, 0), torch.tensor([4]),
                              model.init_state(1))
        frames, reward, term, state, *_ = model.imagine(torch.tensor([1]), state)
    assert torch.isfinite(loss)
    assert frames.dtype == torch.uint8 and torch.isfinite(reward).all()
    assert all(t.dtype in (torch.float32, torch.bool, torch.long) for t in state.tensors())


def test_bfloat16_cache_state():
    model = micro_model("lstm")
    cfg = model.config
    s32 = model.init_state(2)
    s16 = model.init_state(2, cache_dtype=torch.bfloat16)
    for t in range(3):
        frames = random_frames(cfg, 2, t)
        s32 = model.observe(frames, torch.tensor([1, 2]), s32)
        s16 = model.observe(frames, torch.tensor([1, 2]), s16)
    assert s16.keys[0].dtype == torch.bfloat16 and s16.memory[0][0].dtype == torch.float32
    assert s16.nbytes() < s32.nbytes()
    s16.index_copy_([0], model.init_state(1))
    f32, *_ = model.imagine(torch.tensor([1, 1]), s32, generators=[torch.Generator().manual_seed(0)] * 2)
    f16, *_ = model.imagine(torch.tensor([1, 1]), s16, generators=[torch.Generator().manual_seed(0)] * 2)
    assert f16.shape == f32.shape


def test_lstm_memory_is_torch_lstm_cell():
    """The scan's split LSTM (input projection for all frames, recurrence per frame) computes exactly
    ``nn.LSTMCell`` with the same parameters, so checkpoints keep their meaning."""
    from rad_env.model.memory import LSTMMemory

    torch.manual_seed(0)
    memory = LSTMMemory(micro_config())
    b, l, m = 2, 5, memory.slots
    inp = torch.randn(b, l, m, memory.cell_input_dim)
    _, h_new, (h, c) = memory.scan(inp)
    hx = memory.initial_state(b)
    hx = [s.reshape(b * m, -1) for s in hx]
    for t in range(l):
        hx = list(memory.lstm(inp[:, t].reshape(b * m, -1), tuple(hx)))
        torch.testing.assert_close(h_new[:, t].reshape(b * m, -1), hx[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c.reshape(b * m, -1), hx[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("carried", [False, True])
def test_fused_lstm_scan_equals_the_frame_loop_across_episode_starts(carried):
    """The fused scan (one multi-step LSTM call per stretch between episode starts) gives the per-frame
    loop's read states, written states, final state and gradients, with resets in the middle of rows."""
    from rad_env.model.memory import LSTMMemory, MemoryBlock, reset_segments

    torch.manual_seed(0)
    memory = LSTMMemory(micro_config())
    b, l, m = 3, 9, memory.slots
    inp = torch.randn(b, l, m, memory.cell_input_dim, requires_grad=True)
    is_first = torch.zeros(b, l, dtype=torch.bool)
    is_first[:, 0], is_first[1, 4], is_first[2, 6] = True, True, True
    assert reset_segments(is_first, l) == [(0, 4), (4, 6), (6, 9)]
    assert reset_segments(None, l) == [(0, l)]
    start = [torch.randn(b, m, memory.memory_dim) for _ in range(2)] if carried else None

    def run(scan_segment):
        memory.zero_grad()
        inp.grad = None
        memory.scan_segment = scan_segment.__get__(memory)
        try:
            h_read, h_new, (h, c) = memory.scan(inp, is_first, start)
        finally:
            del memory.scan_segment
        (h_read.sin().sum() + (h_new ** 2).sum() + c.sum()).backward()
        return [h_read, h_new, h, c, inp.grad, memory.lstm.weight_hh.grad, memory.h0.grad, memory.c0.grad]

    fused, loop = run(LSTMMemory.scan_segment), run(MemoryBlock.scan_segment)
    for a, e in zip(fused, loop):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-4)
    # a reset row reads the learned initial state at its episode start
    torch.testing.assert_close(fused[0][1, 4], memory.h0.detach())


def test_warp_interpolation_sets_how_the_warp_resamples():
    """Chained sub-pixel shifts: bilinear resampling (as trained) averages neighbours at every warp and
    blurs the frame; nearest moves whole pixels without mixing them."""
    from rad_env.evaluation.rollout import frame_detail

    cfg = micro_config(motion_prior=True, motion_grid=4)
    motion = MotionPrior(cfg)
    assert motion.interpolation == "bilinear"
    with torch.no_grad():
        motion.flow[1, 0] = 0.4 * 2 / (cfg.image_size - 1)  # key 1: 0.4 pixels to the right
    frames = torch.rand(2, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    detail = {}
    for mode in ("bilinear", "nearest"):
        motion.interpolation = mode
        x = frames
        with torch.no_grad():
            for _ in range(4):
                x = motion(x, torch.tensor([1, 1]))
        detail[mode] = frame_detail(float_to_frames(x).numpy()).mean()
    assert detail["bilinear"] < 0.7 * detail["nearest"]
    assert detail["nearest"] > 0.95 * frame_detail(float_to_frames(frames).numpy()).mean()


def test_blur_rows_blurs_each_frame_by_its_own_amount():
    from rad_env.model.layers import blur_rows

    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 3, 16, 16, generator=g)
    out = blur_rows(frames, torch.tensor([0.0, 0.7, 2.0]))
    assert torch.equal(out[0], frames[0])  # sigma 0: unchanged
    detail = (out[..., 1:] - out[..., :-1]).abs().mean(dim=(1, 2, 3))
    assert detail[0] > detail[1] > detail[2]  # more blur, less difference between neighbours
    assert torch.allclose(out.mean(dim=(2, 3)), frames.mean(dim=(2, 3)), atol=0.02)  # colour kept
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[..., 7, 7] = 1
    spread = blur_rows(impulse, torch.tensor([1.0]))
    assert spread.sum().item() == pytest.approx(1.0) and spread[0, 0, 7, 7].item() == pytest.approx(1 / (2 * torch.pi), rel=0.01)


def test_context_blur_blurs_the_conditioning_frames_in_teacher_forced_training_only():
    """With ``context_blur`` the teacher-forced loss conditions on blurred frames (about half of them), as a
    dream conditions on its own blurred ones; evaluation and rollout steps (own dreams as context) are unchanged."""
    model = micro_model("lstm", motion_prior=True, motion_grid=4, context_blur=3.0)
    batch = make_batch(model.config, b=16, l=4)
    sharp = frames_to_float(batch.frames[:, -1])

    def last_frame(**kw) -> torch.Tensor:  # the last committed frame, as the state carries it on
        return model.loss(batch, generator=torch.Generator().manual_seed(1), **kw).state.prev_frame

    model.train()
    blurred = (last_frame() - sharp).abs().flatten(1).amax(1) > 1e-3
    assert 3 <= int(blurred.sum()) <= 13  # sigma drawn from [-3, 3] per frame: none below 0
    assert torch.equal(last_frame(context_frames=batch.frames), sharp)  # rollout steps: the dream is the context
    model.eval()
    assert torch.equal(last_frame(), sharp)
    with pytest.raises(ValueError, match="context_blur"):
        micro_config(context_blur=-1.0)
