"""How much of the next frame does each action's camera motion explain? A model-free check.

    python -m benchmarks.motion_prior --train data/mix/explore --test data/mm9_test   # ~1 min
    python -m benchmarks.motion_prior --train data/mix/explore --test data/mm9_test --content-flow 48   # ~4 min
    python -m benchmarks.motion_prior --quick --train D --test D                      # seconds

Fits fresh :class:`rad_env.model.motion.MotionPrior` s (one flow field per action, and one per (previous
action, action) pair: ``motion_pairs``, the agent's momentum) to the frame pairs of the ``--train``
episodes, then scores, on the ``--test`` episodes (record them with a seed never used
for training), the next frame predicted by warping the real previous frame against copying it, per
action; and open-loop from real frames: warping its own output for ``--horizon`` steps along the true
actions, beside copy-last-frame and the mean frame, per horizon bucket, with the fine detail each keeps
(bilinear resampling, as trained, blurs a little at every warp; the per-pair warp is also chained with
bicubic resampling). The warp alone is the floor a world model with ``motion_prior=true`` starts from.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Iterator, Sequence

import numpy as np
import torch

from benchmarks._common import format_table
from rad_env.data import EpisodeStore
from rad_env.evaluation.rollout import frame_detail, horizon_masks
from rad_env.metrics import frame_psnr
from rad_env.model import RADConfig, float_to_frames, frames_to_float
from rad_env.model.dit import previous_actions
from rad_env.model.motion import MotionPrior
from rad_env.runtime import set_cpu_threads


def load_episodes(path: str, episodes: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (N, T + 1, C, H, W) in [-1, 1] and actions (N, T) of the first ``episodes`` episodes, cut to
    their first ``steps`` steps (the shortest episode's length if shorter)."""
    store = EpisodeStore(path)
    refs = store.episodes[:episodes]
    steps = min([steps] + [ref.length for ref in refs])
    obs = np.stack([store.read(ref, "obs", 0, steps + 1) for ref in refs])
    actions = np.stack([store.read(ref, "action_id", 0, steps) for ref in refs])
    return frames_to_float(obs), torch.from_numpy(actions).long()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR (dB) of float frames (N, C, H, W) in [-1, 1], as the evaluation scores uint8 frames."""
    return frame_psnr(float_to_frames(a), float_to_frames(b))


def batches(frames: torch.Tensor, actions: torch.Tensor, size: int, seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    prev, nxt, act = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1), actions.flatten()
    gen = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(act), (size,), generator=gen)
        yield prev[idx], nxt[idx], act[idx]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="episodes the flows are fit to")
    parser.add_argument("--test", required=True, help="held-out episodes they are scored on")
    parser.add_argument("--episodes", type=int, default=24, help="episodes of each set used")
    parser.add_argument("--steps", type=int, default=500, help="steps of each episode used")
    parser.add_argument("--fit-steps", type=int, default=400)
    parser.add_argument("--horizon", type=int, default=64, help="open-loop steps from each start")
    parser.add_argument("--content-flow", type=int, default=0, metavar="N",
                        help="also fit a content flow of N channels (RADConfig.content_flow) on top of the per-pair "
                             "flows, --content-steps batches of 64 pairs (0: not)")
    parser.add_argument("--content-steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="4 episodes, 60 steps, 200 fit steps, horizon 16")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.steps, args.fit_steps, args.horizon, args.content_steps = 4, 60, 200, 16, 20
    set_cpu_threads(args.threads)
    try:
        train_frames, train_actions = load_episodes(args.train, args.episodes, args.steps)
        test_frames, test_actions = load_episodes(args.test, args.episodes, args.steps)
    except (FileNotFoundError, ValueError) as exc:
        print(f"motion_prior: {exc}", file=sys.stderr)
        return 2
    size = train_frames.shape[-1]
    num_actions = int(max(train_actions.max(), test_actions.max())) + 1
    priors = {}  # one flow per action, and one per (previous action, action) pair (the agent's momentum)
    for name, pairs in (("warp", False), ("warp per pair", True)):
        motion = MotionPrior(RADConfig.preset("tiny", image_size=size, num_actions=num_actions, motion_prior=True,
                                              motion_pairs=pairs))
        if pairs:  # as training adds them to a model: from each action's flow (rare pairs, e.g. after a start, keep it)
            motion.flow.data.copy_(motion.expand_to_pairs(priors["warp"].flow.detach()))
        keys = motion.key(train_actions, previous_actions(train_actions, None, None, num_actions))
        errors = motion.fit(batches(train_frames, keys, 256, seed=0), steps=args.fit_steps)
        print(f"{name}: fit on {train_actions.numel()} pairs of {args.train}: training MSE {errors['warp_mse']:.4f}, "
              f"copy {errors['copy_mse']:.4f}")
        priors[name] = motion
    if args.content_flow:  # a flow that reads the frame, on top of the pairs' (docs/experiments.md)
        name = "warp per pair + content flow"
        motion = MotionPrior(RADConfig.preset("tiny", image_size=size, num_actions=num_actions, motion_prior=True,
                                              motion_pairs=True, content_flow=args.content_flow))
        motion.flow.data.copy_(priors["warp per pair"].flow.detach())
        keys = motion.key(train_actions, previous_actions(train_actions, None, None, num_actions))
        errors = motion.fit_content(batches(train_frames, keys, 64, seed=1), steps=args.content_steps)
        print(f"{name}: fit in {args.content_steps} batches of 64 pairs: training MSE {errors['warp_mse']:.4f}")
        priors[name] = motion
    test_previous = previous_actions(test_actions, None, None, num_actions)

    with torch.no_grad():
        prev, nxt, act = test_frames[:, :-1].flatten(0, 1), test_frames[:, 1:].flatten(0, 1), test_actions.flatten()
        copy_db = psnr(prev, nxt)
        warp_db = {}
        for name, motion in priors.items():
            keys = motion.key(test_actions, test_previous).flatten()
            warped = torch.cat([motion(prev[i:i + 512], keys[i:i + 512]) for i in range(0, len(act), 512)])
            warp_db[name] = psnr(warped, nxt)
        shifts = priors["warp"].shift_pixels()
        rows = [[a, int((act == a).sum()), float(copy_db[act == a].mean())]
                + [float(v[act == a].mean()) for v in warp_db.values()]
                + ["({:+.1f}, {:+.1f})".format(*shifts[a].tolist())] for a in range(num_actions) if (act == a).any()]
        rows.append(["all", len(act), float(copy_db.mean())] + [float(v.mean()) for v in warp_db.values()] + [""])
        print(f"\nnext frame from the real previous frame, {args.test} (PSNR dB)\n")
        print(format_table(["action", "pairs", "copy last", *warp_db, "mean flow (x, y px)"], rows))

        h = min(args.horizon, test_frames.shape[1] - 1)
        mean_frame = train_frames.mean(dim=(0, 1))
        chains = dict(priors)
        chains["warp per pair, bicubic"] = copy.deepcopy(priors["warp per pair"])
        chains["warp per pair, bicubic"].interpolation = "bicubic"
        frames = {name: test_frames[:, 0] for name in chains}
        scores = {name: [] for name in (*chains, "copy last", "mean frame")}
        detail = {name: [] for name in (*chains, "real frames")}
        for t in range(h):
            real = test_frames[:, t + 1]
            for name, motion in chains.items():
                keys = motion.key(test_actions[:, t], test_previous[:, t])
                frames[name] = (motion(frames[name], keys) * 127.5).round() / 127.5  # committed as uint8, like a dream
                scores[name].append(psnr(frames[name], real))
                detail[name].append(frame_detail(float_to_frames(frames[name]).numpy()))
            scores["copy last"].append(psnr(test_frames[:, 0], real))
            scores["mean frame"].append(psnr(mean_frame.expand_as(real), real))
            detail["real frames"].append(frame_detail(float_to_frames(real).numpy()))
    masks = horizon_masks(len(test_frames), h)
    for title, table in (("PSNR dB", {name: torch.stack(v, dim=1).numpy() for name, v in scores.items()}),
                         ("fine detail, grey levels: evaluate's stability table", {
                             name: np.stack(v, axis=1) for name, v in detail.items()})):
        rows = [[bucket] + [float(v[mask].mean()) for v in table.values()] for bucket, mask in masks.items()]
        print(f"\nopen loop from the first real frame of {len(test_frames)} episodes, true actions ({title})\n")
        print(format_table(["frames"] + list(table), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
