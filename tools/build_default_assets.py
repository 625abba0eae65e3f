"""Build the embedded default: a tiny RAD checkpoint + real start frames shipped in rad_env/assets.

Exactly how the shipped files were made (see README "The embedded default"), on a 2-core CPU:

    # training data (~15 min with 2 workers): explore walks, and walks that sometimes look around
    python collect/record.py --env memory-maze-9x9 --policy explore --noise 0.25 --episodes 48 --steps 500 \
        --seed 0 --workers 2 --out data/mix/explore
    python collect/record.py --env memory-maze-9x9 --policy explore --noise 0.25 --look-around 0.03 \
        --episodes 24 --steps 500 --seed 2 --workers 2 --out data/mix/look
    # held-out test episodes, a seed never used for training (~4 min)
    python collect/record.py --env memory-maze-9x9 --policy explore --noise 0.25 --episodes 12 --steps 500 \
        --seed 1 --workers 2 --out data/mm9_test
    # stage 1, 77 min on 2 threads (2.9 s per step of 8 x 16 frames): teacher-forced training
    python -m rad_env.train --data data/mix --preset tiny --threads 2 --steps 1600 --out runs/default
    python tools/build_default_assets.py --checkpoint runs/default/model.pt --data data/mix \
        --set sampling_steps=3 context_sigma=0.1 --out runs/default/assets
    # stage 2, 36 min on 2 threads: fine-tune on the model's own rollouts (half of the steps dream the
    # context frames after the first window: 4-5 s per such step, 2.9 s per other step)
    python -m rad_env.train --data data/mix --init runs/default/assets/memory_maze_tiny.pt --rollout-prob 0.5 \
        --steps 500 --lr 3e-4 --warmup 20 --threads 2 --out runs/rollout
    python tools/build_default_assets.py --checkpoint runs/rollout/model.pt --data data/mix \
        --out runs/rollout/assets
    # stage 3, 81 min on 2 threads: clean-frame preconditioning (sigma_skip 0.1), chrono-initialised
    # memory gates and truncated backprop through whole episodes, with retrace walks added (~6 min)
    python collect/record.py --env memory-maze-9x9 --policy retrace --explore-steps 250 --episodes 24 \
        --steps 500 --seed 7 --workers 2 --out data/mix/retrace
    python -m rad_env.train --data data/mix --init runs/rollout/assets/memory_maze_tiny.pt --model sigma_skip=0.1 \
        --reset-memory-gates --tbptt --rollout-prob 0.5 --steps 900 --lr 3e-4 --warmup 20 --threads 2 --out runs/v2
    # stage 4, 58 min on 2 threads: target-seeking walks added (rewards: 18 per 1000 steps, ~10 min to
    # record) and rewarded frames weighted 10x in the reward head's loss, same fine-tuning otherwise
    python collect/record.py --env memory-maze-9x9 --policy target --episodes 40 --steps 500 --seed 8 \
        --workers 2 --out data/mix/target
    python -m rad_env.train --data data/mix --init runs/v2/model.pt --model guidance=1.0 reward_event_weight=10 \
        --tbptt --rollout-prob 0.5 --steps 800 --lr 3e-4 --warmup 20 --threads 2 --out runs/v3
    # stage 5, 60 min on 2 threads: a motion prior added (each action's flow fit to the data in 22 s, the
    # stem's read-out reset to zero: the denoiser predicts relative to the warped previous frame), the same
    # fine-tuning with rollouts sampled as shipped: 2 Euler steps at sigma 80 and 0.8, guidance 1 (one
    # network call per step)
    python -m rad_env.train --data data/mix --init runs/v3/model.pt --model motion_prior=true guidance=1.0 \
        sampling_steps=2 "sampling_sigmas=[80,0.8]" reward_event_weight=10 --tbptt --rollout-prob 0.5 \
        --steps 700 --lr 3e-4 --warmup 20 --threads 2 --ckpt-every 100 --out runs/v6
    # stage 6, 19 min on 1 thread: only the reward/termination heads (the rest frozen, no denoising pass), on
    # the model's own dreams of up to 8 chunks (124 frames) with the real rewards as labels, so a dream that
    # has lost the scene pays no reward (frames identical to stage 5)
    python -m rad_env.train --data data/mix --init runs/v6/model.pt --heads-only --tbptt --rollout-prob 0.75 \
        --rollout-chunks 8 --steps 300 --lr 1e-3 --warmup 20 --threads 1 --ckpt-every 100 --out runs/heads/h1
    python tools/build_default_assets.py --checkpoint runs/heads/h1/model.pt --data data/mix \
        --out runs/heads/h1/assets
    # stage 7, 28 min on 2 threads: a canvas (a panorama around the view that keeps what a turn moved out of
    # it, so turning back warps it in again) with Memory Maze's 2-pixel target-colour frame kept in place
    # and set to its mean colour, the same fine-tuning otherwise
    python -m rad_env.train --data data/mix --init runs/heads/h1/assets/memory_maze_tiny.pt \
        --model canvas_width=448 hud_border=2 "pan_actions=[0,2,3]" --tbptt --rollout-prob 0.5 --steps 300 \
        --lr 3e-4 --warmup 20 --threads 2 --ckpt-every 50 --time-limit 1700 --out runs/canvas3
    # stage 8, 13 min on 2 threads + 21 min on 1: the heads alone again, as in stage 6, twice 300 steps (frames
    # identical to stage 7)
    python -m rad_env.train --data data/mix --init runs/canvas3/model.pt --heads-only --tbptt --rollout-prob 0.75 \
        --rollout-chunks 8 --steps 300 --lr 1e-3 --warmup 20 --threads 2 --ckpt-every 100 --out runs/heads/h2
    python -m rad_env.train --data data/mix --init runs/heads/h2/model.pt --heads-only --tbptt --rollout-prob 0.75 \
        --rollout-chunks 8 --steps 300 --lr 1e-3 --warmup 20 --threads 1 --ckpt-every 100 --out runs/heads/h3
    python tools/build_default_assets.py --checkpoint runs/heads/h3/model.pt --data data/mix \
        --out runs/heads/h3/assets
    # stage 9, 43 min on 1 thread (beside a control run on the other core; about 28 min on 2 threads): one
    # flow per (previous action, action) pair, the agent's momentum (the per-action flows tiled over the
    # previous actions and refit to the data in 22 s), the same fine-tuning otherwise; its heads, trained
    # jointly, stayed calibrated (a random walk in its dream is paid 0.0 rewards per 1000 steps, real 0.1)
    python -m rad_env.train --data data/mix --init runs/heads/h3/assets/memory_maze_tiny.pt --model motion_pairs=true \
        --tbptt --rollout-prob 0.5 --steps 300 --lr 3e-4 --warmup 20 --threads 1 --ckpt-every 50 --out runs/pairs
    python tools/build_default_assets.py --checkpoint runs/pairs/model.pt --data data/mix --out runs/pairs/assets
    # stage 10, 20 min on 2 threads: the stem reads the denoiser's base (the previous clean frame warped through
    # the canvas) and where that warp only repeats the border (`prior_input`; the new input channel starts at
    # zero), the same fine-tuning otherwise; its jointly trained heads stayed calibrated (a random walk in its
    # dream is paid 0.0 rewards per 1000 steps)
    python -m rad_env.train --data data/mix --init runs/pairs/assets/memory_maze_tiny.pt --model prior_input=true \
        --tbptt --rollout-prob 0.5 --steps 300 --lr 3e-4 --warmup 20 --threads 2 --ckpt-every 50 --out runs/prior
    python tools/build_default_assets.py --checkpoint runs/prior/model.pt --data data/mix
    # stage 11, 10 min of walks that push into walls, then 1.5 min on 2 threads: the collision gate, fit to every
    # recorded step forward (44702, 1870 of them refused by a wall); the network's weights stay stage 10's, and
    # so do the start frames (the held-out episodes of data/mix before the bump walks joined it)
    python collect/record.py --env memory-maze-9x9 --policy explore --noise 0.25 --bump 0.05 --episodes 24 \
        --steps 500 --seed 9 --workers 2 --out data/mix/bump
    python collect/record.py --env memory-maze-9x9 --policy explore --noise 0.25 --bump 0.05 --episodes 6 \
        --steps 500 --seed 13 --workers 2 --out data/bump_test   # held out, for the wall probe
    python -m rad_env.train --data data/mix --init rad_env/assets/memory_maze_tiny.pt \
        --model "refused_actions=[0,0,2,3,2,3]" \
        --tbptt --steps 0 --threads 2 --out runs/gate_only
    python tools/build_default_assets.py --checkpoint runs/gate_only/model.pt --data data/mix --model-only
    # stage 12, 23 min on 2 threads (beside a PPO run on one): a press refused as a noop holds the last frame
    # (hold_refused_as=[0], no weight changed), then the gate fine-tuned on the presses of 600 16-step dreams
    # of the bump walks, half of each batch recorded presses (only the gate's weights change)
    python tools/build_default_assets.py --checkpoint rad_env/assets/memory_maze_tiny.pt --model-only \
        --set "hold_refused_as=[0]" --out runs/hold
    python -m rad_env.train --data data/mix/bump --init runs/hold/memory_maze_tiny.pt --tbptt --steps 0 \
        --gate-dreams 600 --threads 2 --out runs/gate_dreams
    python tools/build_default_assets.py --checkpoint runs/gate_dreams/model.pt --model-only
    # the start frames (2026-12-07, the model unchanged): 256 segments at random positions of the training walks,
    # where PPO in the dream learns to walk (starts facing walls, corridors and targets, not only episode starts)
    python tools/build_default_assets.py --checkpoint rad_env/assets/memory_maze_tiny.pt --data data/mix \
        --anywhere --segments 256 --starts-only
    # stage 13 (2026-12-08), 25 min on 1 thread + 24 min on 2 cores: only the heads, with a spatial reward head
    # added, trained on 768 16-step dream walks of a PPO agent trained in stage 12's dream, each labelled by the
    # real maze replaying its actions (frames identical to stage 12)
    python -m agents.train_ppo --train-env dream --train-max-steps 16 --wall-penalty 0.03 --forward-bonus 0.03 \
        --timesteps 1000000000 --time-limit 1500 --num-envs 16 --eval-episodes 0 --no-video --threads 1 --seed 1 \
        --device cpu --verbose 0 --out runs/s31/ppo_s1
    python -m agents.reward_loop --agent runs/s31/ppo_s1/ppo_dream.zip --data data/mix --starts 768 --workers 2 \
        --threads 2 --out runs/s32/loop1
    python tools/build_default_assets.py --checkpoint runs/s32/loop1/model.pt --model-only
    python -m rad_env.evaluate --checkpoint rad_env/assets/memory_maze_tiny.pt --data data/mm9_test \
        --episodes 12 --walls data/bump_test --threads 2 --out runs/v12_full --report

The checkpoint is stored with half-precision weights (loaded back as float32) to stay a few MB;
the start frames are ``window``-frame segments of the data: by default the first frames of the held-out episodes,
with ``--anywhere`` at random positions of all episodes (the shipped ones).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rad_env.checkpoint import load_checkpoint, save_checkpoint
from rad_env.data import Episode, EpisodeStore, write_episodes
from rad_env.defaults import default_assets_dir
from rad_env.model import RADConfig, WorldModel
from rad_env.train import parse_overrides


def export_checkpoint(ckpt: dict[str, Any], src: Path, dst: Path, overrides: dict[str, Any],
                      seeds: list[int]) -> Path:
    """Checkpoint ``ckpt`` (loaded from ``src``): its EMA weights in float16 with model config
    ``overrides`` (inference settings such as sampling_steps, context_sigma, guidance), without the
    build machine's paths, naming the recording ``seeds`` of its training data (so the evaluation can
    tell held-out recordings apart)."""
    model = WorldModel(RADConfig.from_dict({**ckpt["model_config"], **overrides}))
    model.load_state_dict(ckpt["model"])
    model.half()
    data = {**ckpt["data"], "path": "", "seeds": seeds}  # the data is not shipped: evaluation asks for --data
    train_config = {**ckpt["train_config"], "data": "", "out": ""}
    return save_checkpoint(dst, model, train_config=train_config, data=data, step=ckpt["step"],
                           extra={"exported_from": src.name, "weights_dtype": "float16",
                                  "inference_overrides": overrides})


def start_segments(store: EpisodeStore, episodes: list[int], frames: int, count: int, anywhere: bool,
                   seed: int = 0) -> list[tuple[int, int]]:
    """(episode, first frame) of ``count`` segments: the first frames of ``episodes``, or (``anywhere``)
    random positions in episodes drawn at random, so that dreams start in every kind of scene."""
    if not anywhere:
        return [(e, 0) for e in episodes[:count]]
    rng = np.random.default_rng(seed)
    long_enough = [e for e in episodes if store.episodes[e].num_frames >= frames]
    picks = rng.choice(long_enough, count, replace=count > len(long_enough))
    return [(int(e), int(rng.integers(0, store.episodes[e].num_frames - frames + 1))) for e in picks]


def segments_before_rewards(store: EpisodeStore, frames: int, count: int, within: int,
                            seed: int = 0) -> list[tuple[int, int]]:
    """(episode, first frame) of ``count`` segments whose last frame lies 1..``within`` steps before a real
    reward (events and offsets drawn at random), so that a dream started there has a target in reach."""
    ends = []  # (episode, last frame) of every candidate
    for e, ref in enumerate(store.episodes):
        reward = np.asarray(store.read(ref, "reward"))  # reward[t] arrives with frame t + 1
        for r in np.nonzero(reward > 0)[0] + 1:
            ends += [(e, int(r) - k) for k in range(1, within + 1) if int(r) - k >= frames - 1]
    if not ends:
        raise SystemExit(f"{store.path}: no reward with {frames + within} frames before it (record --policy target)")
    picks = np.random.default_rng(seed).choice(len(ends), count, replace=count > len(ends))
    return [(ends[i][0], ends[i][1] - frames + 1) for i in picks]


def export_start_frames(data: Path, segments: list[tuple[int, int]], frames: int, dst: Path) -> Path:
    """Each segment as a short episode (the first frame's previous action is lost: the dream sees the
    null action for it, as after a reset)."""
    store = EpisodeStore(data)
    assert store.meta is not None
    out = []
    for e, s in segments:
        ep = store.read_episode(store.episodes[e], ("obs", "action_id", "action", "reward", "terminated"))
        steps = frames - 1
        out.append(Episode(obs=ep["obs"][s:s + frames], action_id=ep["action_id"][s:s + steps],
                           action=ep["action"][s:s + steps], reward=ep["reward"][s:s + steps],
                           terminated=ep["terminated"][s:s + steps], truncated=np.zeros(steps, bool)))
    return write_episodes(dst, out, store.meta)


def write_starts(args: argparse.Namespace, ckpt: dict[str, Any], store: EpisodeStore, window: int) -> Path:
    """The start segments that ``args`` ask for, written to ``<out>/memory_maze_starts.h5``."""
    held = ckpt["data"].get("held_out_episodes") or list(range(len(store)))
    if args.before_rewards:
        segments = segments_before_rewards(store, window, args.segments, args.before_rewards)
    else:
        segments = start_segments(store, list(range(len(store))) if args.anywhere else held, window, args.segments,
                                  args.anywhere)
    return export_start_frames(args.data, segments, window, args.out / "memory_maze_starts.h5")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", type=Path,
                        help="the training data (required, except with --model-only: the checkpoint's seeds stay)")
    parser.add_argument("--out", type=Path, default=default_assets_dir())
    parser.add_argument("--segments", type=int, default=16, help="start segments shipped")
    parser.add_argument("--anywhere", action="store_true",
                        help="start segments at random positions of all episodes (default: the held-out "
                             "episodes' first frames)")
    parser.add_argument("--before-rewards", type=int, default=0, metavar="N",
                        help="start segments ending 1..N steps before a real reward of the data (PPO starts with "
                             "a target in reach; overrides --anywhere)")
    parser.add_argument("--model-only", action="store_true",
                        help="write only the model; the start frames already in --out stay (a model whose training "
                             "data grew after its starts were drawn)")
    parser.add_argument("--starts-only", action="store_true",
                        help="write only the start frames; the model already in --out stays (new starts for the same "
                             "model)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="inference settings of the shipped model, e.g. sampling_steps=3 context_sigma=0.1")
    args = parser.parse_args(argv)
    if args.model_only and args.starts_only:
        parser.error("--model-only and --starts-only exclude each other")
    if args.starts_only and args.data is None:
        parser.error("--starts-only needs --data (the episodes the start frames are cut from)")
    ckpt = load_checkpoint(args.checkpoint)
    window = int(ckpt["model_config"]["window"])
    if args.data is None and (not args.model_only or ckpt["data"].get("seeds") is None):
        parser.error("--data is required (without --model-only, or when the checkpoint names no training seeds)")
    store = EpisodeStore(args.data) if args.data is not None else None
    seeds = sorted(store.seeds) if store is not None else list(ckpt["data"]["seeds"])
    written = []
    if not args.starts_only:
        written.append(export_checkpoint(ckpt, args.checkpoint, args.out / "memory_maze_tiny.pt",
                                         parse_overrides(args.set, "--set"), seeds))
    if not args.model_only:
        written.append(write_starts(args, ckpt, store, window))
    for p in written:
        print(f"{p}: {p.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
