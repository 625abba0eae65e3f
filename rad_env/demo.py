"""Drive the dream Memory Maze for ~100 steps and write a video: the first thing to run after install.

    python -m rad_env.demo                                     # the shipped tiny model
    python -m rad_env.demo --checkpoint runs/tiny/model.pt --context data/mm9 --out demo.mp4

Prints the dream's speed (steps/s) and the total reward, and writes ``dream_demo.mp4``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .envs.context import default_assets_dir
from .runtime import set_cpu_threads
from .video import write_video
from .envs.specs import ENV_SPECS

TRAIN_HINT = ("Train one: record episodes with `python -m collect.record` (see README), then\n"
              "  python -m rad_env.train --data DATA --preset tiny --out runs/tiny\n"
              "and run the demo with `--checkpoint runs/tiny/model.pt --context DATA`.")


def scripted_actions(steps: int, num_actions: int, seed: int = 0) -> np.ndarray:
    """A wandering walk: runs of forward moves broken by short turns (random, seeded)."""
    rng = np.random.default_rng(seed)
    actions: list[int] = []
    while len(actions) < steps:
        actions += [1] * int(rng.integers(3, 9))  # forward
        turn = int(rng.choice([2, 3]))  # left / right
        actions += [turn] * int(rng.integers(1, 5))
        if num_actions >= 6 and rng.random() < 0.5:
            actions += [int(rng.choice([4, 5]))] * int(rng.integers(1, 4))  # forward + turn
    return np.asarray(actions[:steps], dtype=np.int64)


def missing_default_message(env_id: str) -> str | None:
    """A message saying how to get a checkpoint if ``env_id``'s shipped default is not installed."""
    spec = ENV_SPECS[env_id]
    if spec.default_checkpoint is None:
        return f"{env_id} ships no default checkpoint: pass --checkpoint PATH and --context EPISODES.\n{TRAIN_HINT}"
    path = default_assets_dir() / spec.default_checkpoint
    if not path.exists():
        return f"the shipped default checkpoint {path} is missing from this installation.\n{TRAIN_HINT}"
    return None


def play_actions(env, actions: Sequence[int], seed: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Reset with ``seed``, step through ``actions`` (resetting when an episode ends); returns the frames
    (reset frame first) and stats: steps, total_reward, episodes_ended, steps_per_s."""
    n = int(env.action_space.n)
    bad = [a for a in actions if not 0 <= a < n]
    if bad:
        raise ValueError(f"actions must be ids in [0, {n}), got {sorted(set(bad))}")
    obs, _ = env.reset(seed=seed)
    frames, total, resets = [obs], 0.0, 0
    start = time.perf_counter()
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        frames.append(obs)
        total += float(reward)
        if terminated or truncated:
            resets += 1
            obs, _ = env.reset()
    seconds = time.perf_counter() - start
    return frames, {"steps": len(actions), "total_reward": total, "episodes_ended": resets,
                    "steps_per_s": len(actions) / max(seconds, 1e-9)}


def run_demo(checkpoint: str | None = None, context: str | None = None, *, env_id: str = "RAD-MemoryMaze-v0",
             steps: int = 100, out: str | Path = "dream_demo.mp4", seed: int = 0, device: str = "auto",
             sampling_steps: int | None = None, fps: int = 8) -> dict[str, Any]:
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m rad_env.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="RAD checkpoint (default: the shipped tiny model)")
    parser.add_argument("--context", default=None, help="episodes the dream starts from (default: shipped)")
    parser.add_argument("--env", default="RAD-MemoryMaze-v0", choices=sorted(ENV_SPECS))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default="dream_demo.mp4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda:0, ...")
    parser.add_argument("--sampling-steps", type=int, default=None, help="Euler steps per frame (default: model's)")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: half the cores, -1: torch's default)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    message = None
    if args.checkpoint is None:
        message = missing_default_message(args.env)
    if message is None and args.context is None:
        default = ENV_SPECS[args.env].default_context
        if default is None or not (default_assets_dir() / default).exists():
            message = (f"no shipped start frames for {args.env} in {default_assets_dir()}: pass --context "
                       "EPISODES (recorded episodes, a .h5 file or a directory of them)")
    if message:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)
    set_cpu_threads(args.threads)
    result = run_demo(args.checkpoint, args.context, env_id=args.env, steps=args.steps, out=args.out,
                      seed=args.seed, device=args.device, sampling_steps=args.sampling_steps, fps=args.fps)
    print(f"{args.env}: {result['steps']} dream steps at {result['steps_per_s']:.1f} steps/s "
          f"(model loaded in {result['load_s']:.1f} s)")
    print(f"total reward {result['total_reward']:.3f}, episodes ended {result['episodes_ended']}")
    print(f"video: {result['video']} ({result['frames']} frames)")
    return result


if __name__ == "__main__":
    main()
