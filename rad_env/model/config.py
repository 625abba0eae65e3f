"""Configuration of the RAD (Recurrent Autoregressive Diffusion) world model."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

MEMORY_TYPES = ("lstm", "linear", "none", "full")
SAMPLERS = ("euler", "heun")
STEMS = ("patch", "conv")


@dataclass
class RADConfig:
    """All hyper-parameters of the world model (architecture, diffusion, losses).

    Values are plain JSON types so a config round-trips through ``to_dict``/``from_dict``
    (and checkpoints).
    """

    # --- frames / patches -------------------------------------------------------------
    image_size: int = 64
    channels: int = 3
    patch_size: int = 8  # pixels per token side: the transformer sees (image_size / patch_size)^2 tokens
    stem: str = "patch"  # "patch": linear pixel patches; "conv": conv U-Net levels around the transformer
    stem_channels: list[int] = dataclasses.field(default_factory=lambda: [16, 32, 64])  # conv: per level
    prev_frame_input: bool = True  # the stem also sees the previous committed frame (as channels)
    # patch stem: channels of a full-resolution conv head that refines the linear read-out (0: none).
    # A linear read-out of 8x8 patches hardly removes pixel noise (one-shot at sigma 0.05: 1.3 dB above
    # the noisy input), so low-noise sampling steps add grain. Measured: 32 channels fine-tuned 500 steps
    # onto stage 4 gave +0.2 / +0.6 dB one-shot at sigma 0.05 / 0.5 but worse dreams (docs/experiments.md).
    pixel_channels: int = 0
    # Motion prior (rad_env.model.motion): the denoiser predicts the next frame relative to the previous
    # frame warped by the action's learned flow field (motion_grid x motion_grid offsets), and the stem
    # reads that warped frame. A fixed per-action warp alone beats copying the last frame by 4 dB at h=1.
    motion_prior: bool = False
    motion_grid: int = 16
    # With the motion prior: one flow field per (previous action, action) pair instead of per action. The
    # agent has momentum: how far a step or a turn moves the camera depends on what it did the step before
    # (measured on held-out Memory Maze, benchmarks.motion_prior: the warp alone predicts the next frame at
    # 28.5 dB per pair against 26.2 dB per action; a longer action history adds nothing).
    motion_pairs: bool = False
    # With the motion prior: the network also predicts, per frame, a correction to the action's flow field
    # (motion_grid x motion_grid offsets, in pixels; zero at initialisation). A fixed flow per action
    # cannot know the agent's momentum or the depth of what it sees (measured: under noop, the real view
    # stays at 29 dB from the last frame while the stage-6 dream drifts to 19.6 dB by h=8); a predicted
    # flow moves the previous frame's pixels instead of regressing them, so uncertainty blurs the motion,
    # not the texture.
    flow_correction: bool = False
    # With the motion prior: channels of a small conv net that reads the previous frame and the motion key
    # and adds a per-frame flow to the action's (0: none; its output starts at zero, so --init ... --model
    # content_flow=48 starts from the trained model unchanged; it is fit to the warp's error before training).
    # A step forward moves a wall beside the agent more than one across the room, and the frame shows which
    # is which: model-free, it makes the warp of a step forward 1.8 dB better (docs/experiments.md).
    content_flow: int = 0
    # With the motion prior: a panorama canvas ``canvas_width`` pixels wide (0: none), centred on the view,
    # keeps what a turn moved out of the view, so turning back warps it in again instead of repeating the
    # frame's border. It is shifted by each action's mean horizontal flow and survives only the actions in
    # ``pan_actions`` (turning in place, standing still); any other action (a step changes what the sides
    # look like) clears it outside the view. A geometric memory of the view's surroundings, not a learned one.
    canvas_width: int = 0
    pan_actions: list[int] = dataclasses.field(default_factory=list)
    # With the motion prior: pixels at the frame's edge that are an overlay, not the scene (Memory Maze draws
    # a 2-pixel frame in the target's colour): the warp keeps them in place and moves only the scene inside.
    hud_border: int = 0
    # Teacher-forced training only: blur the committed (context) frames the model conditions on (Gaussian,
    # sigma drawn per frame uniformly from [-context_blur, context_blur] pixels, none below 0: half the frames
    # stay sharp); the targets stay sharp. A dream conditions on its own frames, blurred by every warp and
    # sampling step before, while teacher forcing conditions on sharp real ones; measured along free-running
    # dreams (`rad_env.evaluate`'s warp table) the embedded default's frames stay within ~31 dB of their own
    # warps: the network passes the blur on. With blurred context and sharp targets it learns to restore
    # detail (measured, docs/experiments.md "Context blur": more detail and contrast, -0.3 to -1.2 dB, same haze; not adopted).
    context_blur: float = 0.0
    # With the motion prior: the stem reads the denoiser's base itself (the previous clean frame warped
    # through the canvas, what the output is relative to; scaled by 1 / sigma_data like a clean frame's
    # network input) and one more channel, 1 where that base holds a pixel (from the view or the canvas), 0
    # where the warp only repeats the scene's border. Without it the stem reads the warp of the previous
    # network input without the canvas: where the canvas brings back a view the network sees the repeated
    # border, and it is never told which pixels the warp invented.
    prior_input: bool = False
    # Collision gate (rad_env.model.collision): for each action id, what the camera does when the maze refuses
    # the press (Memory Maze: [0, 0, 2, 3, 2, 3]: a refused step forward stands still, a refused forward-turn
    # only turns); [] = no gate. The model is trained on the actions as performed (the trainer relabels refused
    # presses from the episodes' ``agent_pos``); a dream asks the gate, from the last frame, whether a press is
    # refused. Without it the dream walks through walls (docs/experiments.md "Walking into walls").
    refused_actions: list[int] = dataclasses.field(default_factory=list)
    # The gate refuses a press when its probability of being refused (a calibrated classifier) exceeds this.
    collision_threshold: float = 0.3
    # With the gate: a dream repeats the last frame, instead of sampling one, after a press the gate refuses
    # as one of these actions (Memory Maze: [0], a refused step forward stands still): the camera did not
    # move, and a frame sampled for "stand still" drifts (docs/experiments.md "Holding the view at a wall").
    hold_refused_as: list[int] = dataclasses.field(default_factory=list)
    # --- transformer ------------------------------------------------------------------
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    rope_base: float = 100.0
    noise_features: int = 64  # Fourier features of c_noise fed to the embedding MLP
    # --- temporal context -------------------------------------------------------------
    window: int = 4  # frames seen by local temporal attention, current one included
    temporal_chunk: int | None = None  # query frames per block in the parallel banded attention (default: window)
    memory: str = "lstm"  # "lstm" | "linear" | "none" | "full"
    memory_slots: int = 4
    memory_dim: int | None = None  # default: dim
    # Longest initial time constant (frames) of the LSTM memory: its forget/input gate biases start
    # "chrono"-initialised (Tallec & Ollivier 2018), time constants spread over 1..memory_timescale.
    # With zero biases an LSTM forgets within a few frames (measured: nothing of a frame left after 8-16).
    memory_timescale: float = 256.0
    # --- actions / data ---------------------------------------------------------------
    num_actions: int = 6
    seq_len: int = 16  # training sequence length (about 4x window)
    # --- EDM diffusion ----------------------------------------------------------------
    sigma_data: float = 0.5
    # Up to which noise level the denoiser keeps the noisy input: c_skip = sigma_skip^2 / (sigma^2 +
    # sigma_skip^2). None = sigma_data (EDM). Below sigma_data the network predicts the clean frame (not
    # the noise) at mid levels: a token of 8x8x3 noisy pixels cannot carry the noise to cancel it.
    sigma_skip: float | None = None
    # Training noise of the frame being denoised: ln(sigma) ~ N(mean, std), clamped to
    # [sigma_min, sigma_max]. Pixel patches of 8x8x3 values still "see" a frame through sigma-5
    # noise (the patch mean's noise is sigma / sqrt(192)), so the range reaches sigma_max = 80,
    # where the input is uninformative and the first sampling step starts.
    sigma_train_mean: float = 1.0
    sigma_train_std: float = 1.6
    sigma_min: float = 2e-3
    sigma_max: float = 80.0
    rho: float = 7.0
    sampling_steps: int = 3
    # The sampler's noise levels, highest first (sampling starts from pure noise at the first), one per
    # network call; the last step goes to 0. None: the Karras schedule of sampling_steps levels from
    # sigma_max to sigma_min (rho); for 3 steps 80, 2.5 and 0.002 (below one grey level: 2/255 = 0.008).
    sampling_sigmas: list[float] | None = None
    sampler: str = "euler"  # "euler" | "heun"
    # Classifier-free guidance on the action: training replaces the action of a frame being denoised
    # by the null action with probability action_dropout; sampling uses D_null + guidance * (D_action
    # - D_null) (guidance 1: plain conditional sampling, one network call per step).
    action_dropout: float = 0.1
    guidance: float = 1.0
    # Committed (context) frames carry a little noise: context_sigma at inference; in training a
    # level drawn log-uniformly from [context_sigma_train_min, context_sigma_train_max] (noise
    # augmentation: the model learns to read imperfect frames, as its own are).
    context_sigma: float = 0.1
    context_sigma_train_min: float = 0.02
    context_sigma_train_max: float = 0.3
    # --- heads / losses ---------------------------------------------------------------
    reward_classes: int = 3
    diffusion_loss_weight: float = 1.0
    reward_loss_weight: float = 1.0
    # Cross-entropy weight of frames that carry a reward (class -1 or +1) against 1 for the rest. Rewards
    # are rare (under 2% of frames even with target-seeking data): with weight w the head reports about
    # w * p / (w * p + 1 - p) for an event of probability p, so the dream pays where a reward is likely
    # rather than only where it is certain (false rewards are measured by rad_env.evaluate).
    reward_event_weight: float = 1.0
    termination_loss_weight: float = 1.0
    # > 0: the reward head also reads every final token of the frame, each projected to this many channels
    # (where in the view a colour is: a ball of the target's colour ahead, not a wall of it), as a correction
    # to the pooled head's reward logits that starts at zero (rad_env.model.heads.RewardGridHead)
    reward_grid_channels: int = 0

    def __post_init__(self) -> None:
        if self.memory_dim is None:
            self.memory_dim = self.dim
        self.validate()

    # ------------------------------------------------------------------------------------
    def validate(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"invalid RADConfig: {msg}")

        for name in ("image_size", "channels", "patch_size", "dim", "depth", "heads", "window",
                     "memory_slots", "memory_dim", "num_actions", "seq_len", "sampling_steps",
                     "noise_features", "motion_grid"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(f"{name} must be a positive int, got {value!r}")
        if self.temporal_chunk is not None and (not isinstance(self.temporal_chunk, int)
                                                or self.temporal_chunk < 1):
            fail(f"temporal_chunk must be None or a positive int, got {self.temporal_chunk!r}")
        if self.image_size % self.patch_size:
            fail(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.stem not in STEMS:
            fail(f"stem must be one of {STEMS}, got {self.stem!r}")
        if not (isinstance(self.stem_channels, (list, tuple)) and self.stem_channels
                and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in self.stem_channels)):
            fail(f"stem_channels must be a non-empty list of positive ints, got {self.stem_channels!r}")
        self.stem_channels = list(self.stem_channels)
        if isinstance(self.pixel_channels, bool) or not isinstance(self.pixel_channels, int) or self.pixel_channels < 0:
            fail(f"pixel_channels must be an int >= 0, got {self.pixel_channels!r}")
        if not isinstance(self.motion_prior, bool):
            fail(f"motion_prior must be true or false, got {self.motion_prior!r}")
        if not isinstance(self.motion_pairs, bool):
            fail(f"motion_pairs must be true or false, got {self.motion_pairs!r}")
        if self.motion_pairs and not self.motion_prior:
            fail("motion_pairs gives the motion prior a flow per pair of actions: it needs motion_prior=true")
        if not isinstance(self.flow_correction, bool):
            fail(f"flow_correction must be true or false, got {self.flow_correction!r}")
        if self.flow_correction and not self.motion_prior:
            fail("flow_correction corrects the motion prior's flow: it needs motion_prior=true")
        if isinstance(self.content_flow, bool) or not isinstance(self.content_flow, int) or self.content_flow < 0:
            fail(f"content_flow must be an int >= 0 (channels), got {self.content_flow!r}")
        if self.content_flow and not self.motion_prior:
            fail("content_flow adds to the motion prior's flow: it needs motion_prior=true")
        if isinstance(self.canvas_width, bool) or not isinstance(self.canvas_width, int) or self.canvas_width < 0:
            fail(f"canvas_width must be an int >= 0, got {self.canvas_width!r}")
        if self.canvas_width:
            if not self.motion_prior:
                fail("canvas_width keeps what the motion prior's warp moves out of view: it needs motion_prior=true")
            if self.canvas_width < self.image_size or (self.canvas_width - self.image_size) % 2:
                fail(f"canvas_width must be 0 or the image size {self.image_size} plus an even number of pixels, "
                     f"got {self.canvas_width}")
        if isinstance(self.context_blur, bool) or not isinstance(self.context_blur, (int, float)) or not (
                0 <= self.context_blur <= 8):
            fail(f"context_blur must be a number of pixels in [0, 8], got {self.context_blur!r}")
        if isinstance(self.hud_border, bool) or not isinstance(self.hud_border, int) or not (
                0 <= self.hud_border < self.image_size // 2):
            fail(f"hud_border must be an int in [0, {self.image_size // 2 - 1}], got {self.hud_border!r}")
        if not isinstance(self.prior_input, bool):
            fail(f"prior_input must be true or false, got {self.prior_input!r}")
        if self.prior_input and not (self.motion_prior and self.prev_frame_input):
            fail("prior_input lets the stem read the motion prior's warp: it needs motion_prior=true and "
                 "prev_frame_input=true")
        if self.hud_border and not self.motion_prior:
            fail("hud_border is what the motion prior's warp leaves in place: it needs motion_prior=true")
        if not (isinstance(self.pan_actions, (list, tuple)) and all(
                isinstance(a, int) and not isinstance(a, bool) and 0 <= a < self.num_actions for a in self.pan_actions)):
            fail(f"pan_actions must be a list of action ids in [0, {self.num_actions - 1}], got {self.pan_actions!r}")
        self.pan_actions = list(self.pan_actions)
        if not (isinstance(self.refused_actions, (list, tuple)) and all(
                isinstance(a, int) and not isinstance(a, bool) and 0 <= a < self.num_actions
                for a in self.refused_actions) and len(self.refused_actions) in (0, self.num_actions)):
            fail(f"refused_actions must be [] or {self.num_actions} action ids in [0, {self.num_actions - 1}] "
                 f"(what each action becomes when refused), got {self.refused_actions!r}")
        self.refused_actions = list(self.refused_actions)
        if not (isinstance(self.hold_refused_as, (list, tuple)) and all(
                isinstance(a, int) and not isinstance(a, bool) and a in self.refused_actions
                for a in self.hold_refused_as)):
            fail(f"hold_refused_as must be a list of actions that refused_actions maps a press to "
                 f"({sorted(set(self.refused_actions))}), got {self.hold_refused_as!r}")
        self.hold_refused_as = list(self.hold_refused_as)
        if isinstance(self.collision_threshold, bool) or not isinstance(self.collision_threshold, (int, float)) \
                or not 0.0 < self.collision_threshold < 1.0:
            fail(f"collision_threshold must be in (0, 1), got {self.collision_threshold!r}")
        if self.flow_correction and self.motion_grid % self.grid_size:
            fail(f"flow_correction predicts motion_grid / grid_size offsets per token side: motion_grid "
                 f"{self.motion_grid} must be a multiple of the token grid {self.grid_size}")
        if self.pixel_channels and self.stem != "patch":
            fail(f"pixel_channels refines the patch stem's read-out; stem={self.stem!r} has its own conv levels")
        if self.stem == "conv" and (2 ** (len(self.stem_channels)) != self.patch_size):
            fail(f"stem='conv' halves the resolution once per level: patch_size {self.patch_size} needs "
                 f"log2({self.patch_size}) stem_channels, got {self.stem_channels}")
        patch_values = self.patch_size**2 * self.channels
        if self.stem == "patch" and self.dim < patch_values:
            warnings.warn(f"RADConfig: dim {self.dim} < {patch_values} pixel values per patch; tokens cannot "
                          "carry a patch's detail and sampled frames stay noisy (raise dim or lower patch_size)",
                          stacklevel=3)
        if self.dim % self.heads:
            fail(f"dim {self.dim} is not divisible by heads {self.heads}")
        head_dim = self.dim // self.heads
        if head_dim % 2 or head_dim < 6:
            fail(f"head dim dim/heads = {head_dim} must be even and >= 6 (RoPE over t/y/x)")
        if self.memory not in MEMORY_TYPES:
            fail(f"memory must be one of {MEMORY_TYPES}, got {self.memory!r}")
        if self.sampling_sigmas is not None:
            levels = self.sampling_sigmas
            if (not isinstance(levels, (list, tuple)) or not levels
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in levels)
                    or any(a <= b for a, b in zip(levels, levels[1:]))):
                fail(f"sampling_sigmas must be None or decreasing positive noise levels, got {levels!r}")
            if len(levels) != self.sampling_steps:
                fail(f"sampling_sigmas has {len(levels)} levels but sampling_steps is {self.sampling_steps} "
                     "(one network call per level: set both)")
            self.sampling_sigmas = [float(v) for v in levels]
        if self.sampler not in SAMPLERS:
            fail(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.noise_features % 2:
            fail(f"noise_features must be even, got {self.noise_features}")
        if not self.mlp_ratio > 0:
            fail(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not (isinstance(self.memory_timescale, (int, float)) and self.memory_timescale > 2):
            fail(f"memory_timescale must be > 2 frames, got {self.memory_timescale!r}")
        if not self.rope_base > 1:
            fail(f"rope_base must be > 1, got {self.rope_base}")
        if not 0.0 <= self.action_dropout < 1.0:
            fail(f"action_dropout must be in [0, 1), got {self.action_dropout}")
        if not self.guidance >= 0:
            fail(f"guidance must be >= 0, got {self.guidance}")
        if self.guidance != 1.0 and self.action_dropout == 0:
            warnings.warn("RADConfig: guidance != 1 needs a model trained with action_dropout > 0", stacklevel=3)
        if not 0 < self.sigma_min < self.sigma_max:
            fail(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.sigma_skip is not None and not (isinstance(self.sigma_skip, (int, float)) and self.sigma_skip > 0):
            fail(f"sigma_skip must be None or > 0, got {self.sigma_skip!r}")
        for name in ("sigma_data", "sigma_train_std", "rho", "context_sigma", "context_sigma_train_min"):
            if not getattr(self, name) > 0:
                fail(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.context_sigma_train_min <= self.context_sigma_train_max:
            fail(f"need context_sigma_train_min <= context_sigma_train_max, got {self.context_sigma_train_min}, "
                 f"{self.context_sigma_train_max}")
        if self.reward_classes != 3:
            fail(f"reward_classes must be 3 (sign of reward: -1/0/+1), got {self.reward_classes}")
        for name in ("diffusion_loss_weight", "reward_loss_weight", "termination_loss_weight"):
            if getattr(self, name) < 0:
                fail(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.reward_event_weight > 0:
            fail(f"reward_event_weight must be > 0, got {self.reward_event_weight}")
        if not isinstance(self.reward_grid_channels, int) or self.reward_grid_channels < 0:
            fail(f"reward_grid_channels must be an integer >= 0, got {self.reward_grid_channels!r}")

    # ------------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_size**2

    @property
    def output_channels(self) -> int:
        """Channels of the network output F: the frame's, plus the flow correction's (x, y) with
        ``flow_correction``."""
        return self.channels + (2 if self.flow_correction else 0)

    @property
    def stem_in_channels(self) -> int:
        """Channels the stem reads per frame: the noisy frame (+ the previous committed frame, warped with a
        motion prior; + where that warp holds pixels with ``prior_input``)."""
        return self.channels * (2 if self.prev_frame_input else 1) + (1 if self.prior_input else 0)

    @property
    def null_action(self) -> int:
        """Action id meaning "no action yet" (first frame after a reset)."""
        return self.num_actions

    @property
    def has_memory(self) -> bool:
        return self.memory in ("lstm", "linear")

    @property
    def cache_frames(self) -> int | None:
        """Previous frames kept in the K/V cache; None means unbounded ("full")."""
        return None if self.memory == "full" else self.window - 1

    # ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RADConfig":
        if not isinstance(d, dict):
            raise TypeError(f"RADConfig.from_dict expects a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown RADConfig keys: {unknown} (known: {sorted(known)})")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "RADConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        d = dict(PRESETS[name])
        d.update(overrides)
        return cls.from_dict(d)


# Every preset predicts relative to the motion prior (measured on the embedded default, a fine-tune; docs/experiments.md
# "Motion prior"); checkpoints without the key load with motion_prior=False, the dataclass default.
PRESETS: dict[str, dict[str, Any]] = {
    # ~4M parameters: trains on a CPU. dim >= the 8x8x3 = 192 pixel values of a patch: a narrower
    # token cannot carry a patch's detail, and the denoiser then cannot remove mid-level noise.
    "tiny": dict(image_size=64, patch_size=8, dim=192, depth=3, heads=4, mlp_ratio=3.0,
                 window=4, seq_len=16, memory_slots=4, memory_dim=64, motion_prior=True),
    # ~20M parameters: a single consumer GPU.
    "small": dict(image_size=64, patch_size=8, dim=256, depth=8, heads=8, mlp_ratio=4.0,
                  window=4, seq_len=16, memory_slots=8, memory_dim=256, motion_prior=True),
    # GPU-sized (A100/H100), close to the paper's scale.
    "paper": dict(image_size=64, patch_size=4, dim=768, depth=12, heads=12, mlp_ratio=4.0,
                  window=8, seq_len=32, memory_slots=16, memory_dim=512, motion_prior=True),
}
