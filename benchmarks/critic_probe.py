"""Can the frame critic of ``--adversarial-weight`` tell a model's free-running dreams from real frames?

    python -m benchmarks.critic_probe --checkpoint rad_env/assets/memory_maze_tiny.pt --train data/mix/explore --test data/mm9_test   # ~3 min
    python -m benchmarks.critic_probe --quick --checkpoint CKPT --train D --test D                                                      # seconds

Dreams ``--horizon`` frames from ``--context`` real frames of each of ``--episodes`` episodes of both sets
(from frame ``--start`` on, the true actions), then trains a fresh :class:`rad_env.model.critic.FrameCritic`
for ``--steps`` Adam steps (as ``rad_env.train`` does: lr ``--critic-lr``, betas 0.5 / 0.999, 64 real and 64
dreamed frames per step) on the ``--train`` dreams of each depth bucket against the real frames at the same
positions, and scores it on the ``--test`` ones: its loss, its accuracy on each side and the AUC of its mean
logit per frame (1.0: every real frame scored above every dream). A critic that separates deep dreams (the
haze) here but stays at chance in training says the training batch, not the critic, is what is missing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np
import torch

from benchmarks._common import format_table
from rad_env.checkpoint import CheckpointError, load_world_model
from rad_env.data import EpisodeStore
from rad_env.evaluation.clips import load_clips
from rad_env.evaluation.rollout import dream_rollout
from rad_env.model import frames_to_float
from rad_env.model.critic import CriticConfig, FrameCritic, critic_loss, separation_auc
from rad_env.runtime import set_cpu_threads


def real_and_dreamed(model, path: str, episodes: int, start: int, context: int,
                     horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, horizon, H, W, 3) real frames and the model's dream of them, from ``context`` real frames."""
    store = EpisodeStore(path)
    clips = load_clips(store, list(range(min(episodes, len(store.episodes)))), context + horizon, start=start)
    dream = dream_rollout(model, clips.frames, clips.prev_actions, context, seed=0).frames
    return clips.frames[:, context:], dream


def depth_frames(frames: np.ndarray, first: int, last: int) -> torch.Tensor:
    """Float frames (N, C, H, W) of dream depths ``first..last`` (1-based, inclusive) of every clip."""
    return frames_to_float(np.ascontiguousarray(frames[:, first - 1:last]).reshape(-1, *frames.shape[-3:]))


def probe(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], pool: str, lr: float,
          steps: int, report_at: Sequence[int], seed: int = 0) -> list[list]:
    """Train a fresh critic on ``train`` (real, dreamed) and score it on ``test`` at each of ``report_at``."""
    torch.manual_seed(seed)
    critic = FrameCritic(CriticConfig(pool=pool))
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(seed)
    rows = []
    for step in range(steps + 1):
        if step in report_at:
            with torch.no_grad():
                _, m = critic_loss(critic, *test)
                scores = [critic(x).reshape(len(x), -1).mean(1) for x in test]
            rows.append([step, m["critic_loss"], m["critic_real_acc"], m["critic_fake_acc"],
                         separation_auc(*scores)])
        if step == steps:
            break
        i = torch.randint(len(train[0]), (64,), generator=rng)
        j = torch.randint(len(train[1]), (64,), generator=rng)
        optimizer.zero_grad(set_to_none=True)
        loss, _ = critic_loss(critic, train[0][i], train[1][j])
        loss.backward()
        optimizer.step()
    return rows


def parse_depths(text: str) -> list[tuple[int, int]]:
    try:
        depths = [tuple(int(v) for v in part.split("-")) for part in text.split(",")]
    except ValueError:
        depths = []
    if not depths or any(len(d) != 2 or not 1 <= d[0] <= d[1] for d in depths):
        raise argparse.ArgumentTypeError(f"--depths takes buckets like 1-8,17-64, got {text!r}")
    return depths  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the world model whose dreams are judged")
    parser.add_argument("--train", required=True, help="episodes whose dreams the critic learns from")
    parser.add_argument("--test", required=True, help="held-out episodes it is scored on")
    parser.add_argument("--episodes", type=int, default=12, help="episodes of each set")
    parser.add_argument("--start", type=int, default=100, help="first frame of each clip in its episode")
    parser.add_argument("--context", type=int, default=4, help="real frames before the dream")
    parser.add_argument("--horizon", type=int, default=64, help="dreamed frames per clip")
    parser.add_argument("--depths", type=parse_depths, default=parse_depths("1-8,17-64"),
                        help="dream depth buckets the critic is trained and scored on, separately")
    parser.add_argument("--steps", type=int, default=300, help="critic Adam steps per bucket and pool")
    parser.add_argument("--critic-lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 episodes, from frame 0, horizon 8, depths 1-4,5-8, "
                                                             "30 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.start, args.horizon, args.depths, args.steps = 2, 0, 8, [(1, 4), (5, 8)], 30
    if max(d[1] for d in args.depths) > args.horizon:
        parser.error(f"--depths reach {max(d[1] for d in args.depths)}, beyond --horizon {args.horizon}")
    set_cpu_threads(args.threads)
    try:
        model, _ = load_world_model(args.checkpoint)
        train = real_and_dreamed(model, args.train, args.episodes, args.start, args.context, args.horizon)
        test = real_and_dreamed(model, args.test, args.episodes, args.start, args.context, args.horizon)
    except (FileNotFoundError, OSError, ValueError, CheckpointError) as exc:
        print(f"critic_probe: error: {exc}", file=sys.stderr)
        return 2
    report_at = sorted({0, args.steps // 6, args.steps // 3, args.steps * 2 // 3, args.steps})
    rows = []
    for first, last in args.depths:
        train_set = tuple(depth_frames(x, first, last) for x in train)
        test_set = tuple(depth_frames(x, first, last) for x in test)
        for pool in ("patch", "frame"):
            for row in probe(train_set, test_set, pool, args.critic_lr, args.steps, report_at):
                rows.append([f"{first}-{last}", pool, *row])
    print(f"\na fresh critic on {args.checkpoint}'s dreams of {args.train}, scored on {args.test} "
          f"({len(test[0])} clips, {args.horizon} dreamed frames after {args.context} real)\n")
    print(format_table(["dream depth", "critic", "Adam steps", "held-out loss", "real acc", "dream acc",
                        "AUC (frames)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
