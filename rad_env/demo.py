"""Drive the dream Memory Maze for ~100 steps and write a video: the first thing to run after install.

    python -m rad_env.demo                                     # the shipped tiny model
    python -m rad_env.demo --checkpoint runs/tiny/model.pt --context data/mm9 --out demo.mp4

Prints the dream's speed (steps/s) and the total reward, and writes ``dream_demo.mp4``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

from .cli import UserError, run_cli
from .defaults import TRAIN_HINT, missing_default_message
from .envs.rollout import play_actions, scripted_actions
from .envs.specs import ENV_SPECS
from .runtime import set_cpu_threads
from .video import check_video_path, write_video

PROG = "python -m rad_env.demo"


def run_demo(checkpoint: str | None = None, context: str | None = None, *, env_id: str = "RAD-MemoryMaze-v0",
             steps: int = 100, out: str | Path = "dream_demo.mp4", seed: int = 0, device: str = "auto",
             sampling_steps: int | None = None, fps: int = 8) -> dict[str, Any]:
    """Play ``steps`` scripted dream steps and write them as a video; returns the stats."""
    import gymnasium as gym

    import rad_env  # noqa: F401 - registers the env ids

    t0 = time.perf_counter()
    env = gym.make(env_id, checkpoint=checkpoint, context=context, device=device, sampling_steps=sampling_steps)
    load_s = time.perf_counter() - t0
    try:
        frames, stats = play_actions(env, scripted_actions(steps, int(env.action_space.n), seed).tolist(), seed)
    finally:
        env.close()
    video = write_video(out, frames, fps=fps)
    return {**stats, "load_s": load_s, "video": str(video), "frames": len(frames)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="RAD checkpoint (default: the shipped tiny model)")
    parser.add_argument("--context", default=None, help="episodes the dream starts from (default: shipped)")
    parser.add_argument("--env", default="RAD-MemoryMaze-v0", choices=sorted(ENV_SPECS))
    parser.add_argument("--steps", type=int, default=100, help="dream steps (default: %(default)s)")
    parser.add_argument("--out", default="dream_demo.mp4", help="video path (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda:0, ...")
    parser.add_argument("--sampling-steps", type=int, default=None, help="Euler steps per frame (default: model's)")
    parser.add_argument("--fps", type=int, default=8, help="video frames per second (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: half the cores, -1: torch's default)")
    return parser


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, run the demo and print its results; returns them. Raises UserError."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    message = missing_default_message(args.env, checkpoint=args.checkpoint is None, context=args.context is None)
    if message:
        raise UserError(message, hint=TRAIN_HINT if args.checkpoint is None else None)
    check_video_path(args.out)
    set_cpu_threads(args.threads)
    result = run_demo(args.checkpoint, args.context, env_id=args.env, steps=args.steps, out=args.out,
                      seed=args.seed, device=args.device, sampling_steps=args.sampling_steps, fps=args.fps)
    print(f"{args.env}: {result['steps']} dream steps at {result['steps_per_s']:.1f} steps/s "
          f"(model loaded in {result['load_s']:.1f} s)")
    print(f"total reward {result['total_reward']:.3f}, episodes ended {result['episodes_ended']}")
    print(f"video: {result['video']} ({result['frames']} frames)")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``rad-demo``): 0 on success, 2 with a one-line error for a user mistake."""
    return run_cli(cli, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
