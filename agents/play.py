"""Play the dream yourself, or drive it with a scripted list of actions and get a video.

    python -m agents.play                                   # a window (needs pygame and a display)
    python -m agents.play --actions "1,1,1,2,2,1,1,3" --out play.mp4   # headless, scripted
    python -m agents.play --actions-file actions.txt --headless        # video in outputs/play.mp4

Keys (window): up = forward, left/right = turn, up+left / up+right = forward while turning,
space = wait (noop), r = new episode, escape or q = quit. The dream advances ``--fps`` times per
second whether or not a key is held (like the real Memory Maze); ``--turn-based`` waits for a key.

Memory Maze action ids: 0 noop, 1 forward, 2 left, 3 right, 4 forward+left, 5 forward+right.
Without a display (or with ``--actions``/``--actions-file``/``--headless``) the actions are replayed
and ``--out`` gets ``len(actions) + 1`` frames (the first observation, then one per action; when an
episode ends the env resets and the next action continues the new episode).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rad_env.cli import UserError, run_cli
from rad_env.defaults import TRAIN_HINT
from rad_env.envs.rollout import play_actions, scripted_actions
from rad_env.envs.specs import ENV_SPECS
from rad_env.video import check_video_path, write_video

PROG = "python -m agents.play"
#: Where a headless run writes its video unless --out says otherwise (outputs/ is git-ignored).
DEFAULT_VIDEO = "outputs/play.mp4"


def parse_actions(text: str) -> list[int]:
    """Action ids separated by commas/whitespace; ``#`` starts a comment; ``3x1`` repeats 1 three times."""
    actions: list[int] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for token in re.split(r"[,\s]+", line.strip()):
            if not token:
                continue
            match = re.fullmatch(r"(?:(\d+)[x*])?(-?\d+)", token)
            if not match:
                raise ValueError(f"bad action {token!r}: expected an integer id (or NxID to repeat)")
            repeat = int(match.group(1) or 1)
            actions += [int(match.group(2))] * repeat
    return actions


def has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def keys_to_action(held: set[str], num_actions: int) -> int:
    up, left, right = "up" in held, "left" in held, "right" in held
    if left and right:
        left = right = False
    if up and left:
        return 4 if num_actions >= 6 else 1
    if up and right:
        return 5 if num_actions >= 6 else 1
    if up:
        return 1
    if left:
        return 2
    if right:
        return 3
    return 0


def run_interactive(env, seed: int, fps: float, turn_based: bool, max_steps: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    from rad_env.envs.viewer import FrameViewer

    viewer = FrameViewer(title="RAD dream (arrows: move, r: reset, q: quit)")
    n = int(env.action_space.n)
    obs, _ = env.reset(seed=seed)
    frames, total, resets, steps = [obs], 0.0, 0, 0
    try:
        viewer.show(obs)
        pygame = viewer.pygame
        while max_steps <= 0 or steps < max_steps:
            tick = time.perf_counter()
            pressed = viewer.pressed_keys()
            if pressed & {"escape", "q"}:
                break
            if "r" in pressed:
                obs, _ = env.reset()
                frames.append(obs)
                viewer.show(obs)
                continue
            state = pygame.key.get_pressed()
            held = {name for name, key in (("up", pygame.K_UP), ("left", pygame.K_LEFT), ("right", pygame.K_RIGHT))
                    if state[key]}
            held |= pressed & {"up", "left", "right"}
            if turn_based and not (held or "space" in pressed):
                time.sleep(0.01)
                continue
            action = keys_to_action(held, n)
            obs, reward, terminated, truncated, _ = env.step(action)
            steps += 1
            total += float(reward)
            frames.append(obs)
            viewer.show(obs)
            if reward:
                print(f"step {steps}: reward {reward:+.2f} (total {total:.2f})")
            if terminated or truncated:
                resets += 1
                print(f"episode ended after step {steps}; new episode")
                obs, _ = env.reset()
            if not turn_based:
                time.sleep(max(0.0, 1.0 / fps - (time.perf_counter() - tick)))
    finally:
        viewer.close()
    return frames, {"steps": steps, "total_reward": total, "episodes_ended": resets}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="RAD-MemoryMaze-v0", choices=sorted(ENV_SPECS))
    p.add_argument("--checkpoint", default=None, help="RAD checkpoint (default: the shipped model)")
    p.add_argument("--context", default=None, help="episodes the dream starts from (default: shipped)")
    p.add_argument("--actions", default=None, help='scripted action ids, e.g. "1,1,2,3" or "5x1 2 2"')
    p.add_argument("--actions-file", default=None, help="a text file of action ids")
    p.add_argument("--steps", type=int, default=100,
                   help="headless without actions: this many scripted actions; window: stop after this many "
                        "(0: no limit) (default: %(default)s)")
    p.add_argument("--headless", action="store_true", help="never open a window")
    p.add_argument("--turn-based", action="store_true", help="window: step only when a key is pressed")
    p.add_argument("--out", default=None,
                   help=f"video path (default: {DEFAULT_VIDEO} headless, none interactive)")
    p.add_argument("--fps", type=float, default=4.0, help="window: steps per second; also the video's fps "
                                                          "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda:0, ...")
    p.add_argument("--sampling-steps", type=int, default=None, help="Euler steps per frame (default: model's)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: half the cores, -1: torch's default)")
    return p


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, play (in a window or headless) and print the results; returns them."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.actions is not None and args.actions_file is not None:
        p.error("give --actions or --actions-file, not both")
    if args.fps <= 0:
        p.error("--fps must be > 0")

    actions: list[int] | None = None
    try:
        if args.actions is not None:
            actions = parse_actions(args.actions)
        elif args.actions_file is not None:
            actions = parse_actions(Path(args.actions_file).read_text())
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    if actions is not None and not actions:
        p.error("the action list is empty")

    interactive = actions is None and not args.headless and has_display()
    if interactive and importlib.util.find_spec("pygame") is None:
        print("pygame is not installed (pip install pygame): running headless with scripted actions",
              file=sys.stderr)
        interactive = False
    if not interactive and actions is None and args.steps < 1:
        p.error("--steps must be >= 1 to play headless without --actions")
    out = args.out or (None if interactive else DEFAULT_VIDEO)
    if out:
        check_video_path(out)

    import gymnasium as gym

    import rad_env  # noqa: F401 - registers the env ids
    from rad_env.runtime import set_cpu_threads

    set_cpu_threads(args.threads)
    try:
        env = gym.make(args.env, checkpoint=args.checkpoint, context=args.context, device=args.device,
                       sampling_steps=args.sampling_steps)
    except UserError as exc:
        if args.checkpoint is None and exc.hint is None:
            exc.hint = TRAIN_HINT
        raise
    try:
        if interactive:
            frames, stats = run_interactive(env, args.seed, args.fps, args.turn_based, args.steps)
        else:
            if actions is None:
                actions = scripted_actions(args.steps, int(env.action_space.n), args.seed).tolist()
                print(f"no display or action list: playing {len(actions)} scripted actions")
            try:
                frames, stats = play_actions(env, actions, args.seed)
            except ValueError as exc:  # an action id outside the env's action space
                p.error(str(exc))
    finally:
        env.close()

    if out:
        stats["video"] = str(write_video(out, frames, fps=max(1, int(round(args.fps)))))
    stats["frames"] = len(frames)
    rate = f" at {stats['steps_per_s']:.1f} steps/s" if "steps_per_s" in stats else ""
    print(f"{stats['steps']} steps{rate}, total reward {stats['total_reward']:.3f}, "
          f"episodes ended {stats['episodes_ended']}" + (f"; video: {stats['video']} ({len(frames)} frames)"
                                                          if out else ""))
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``rad-play``): 0 on success, 2 with a one-line error for a user mistake."""
    return run_cli(cli, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
