"""Train a PPO agent inside the dream (a RAD world model of Memory Maze), then evaluate it in the
dream and in the real Memory Maze.

    python -m agents.train_ppo --timesteps 100000 --num-envs 16 --out runs/ppo
    python -m agents.train_ppo --checkpoint runs/tiny/model.pt --context data/mm9 --timesteps 20000
    python -m agents.train_ppo --policy random                   # baseline: random actions
    python -m agents.train_ppo --train-env real --num-envs 4     # baseline: PPO in the real maze (slow)
    python -m agents.train_ppo --load runs/ppo/ppo_dream.zip --timesteps 0   # evaluate a saved agent

All dream envs advance in one batched model call per step (DreamSB3VecEnv). Writes to ``--out``:
the agent (``ppo_<train-env>.zip``), TensorBoard logs (``tb/``), ``eval.json`` and a video of one
episode, real | dream side by side (``episode_real_vs_dream.mp4``).

A real Memory Maze 9x9 episode is 1000 steps and the simulator runs at ~30-40 steps/s on a CPU:
``--eval-max-steps`` shortens evaluation episodes (dream and real alike) for quick runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .common import (REAL_EPISODE_STEPS, EvalResult, RandomAgent, dream_env, dream_vec_env, evaluate,
                     format_results, load_dream, real_env, real_vec_env, record_episode, share_core,
                     write_comparison_video)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agents.train_ppo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="RAD checkpoint (default: the shipped tiny model)")
    p.add_argument("--context", default=None, help="episodes the dream starts from (default: shipped)")
    p.add_argument("--policy", choices=("ppo", "random"), default="ppo",
                   help="ppo: train (or --load) a PPO agent; random: evaluate uniformly random actions")
    p.add_argument("--train-env", choices=("dream", "real"), default="dream",
                   help="where PPO trains: the dream (fast, batched) or the real Memory Maze (slow baseline)")
    p.add_argument("--load", default=None, help="start from a saved PPO agent (.zip) instead of a new one")
    p.add_argument("--num-envs", type=int, default=8, help="parallel training envs")
    p.add_argument("--timesteps", type=int, default=50_000, help="training env steps (0: evaluate only)")
    p.add_argument("--n-steps", type=int, default=128, help="PPO rollout steps per env per update")
    p.add_argument("--batch-size", type=int, default=256, help="PPO minibatch size")
    p.add_argument("--n-epochs", type=int, default=4, help="PPO epochs per update")
    p.add_argument("--learning-rate", type=float, default=2.5e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--train-max-steps", type=int, default=REAL_EPISODE_STEPS,
                   help="episode length during training (dream or real)")
    p.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation env (0: no evaluation)")
    p.add_argument("--eval-max-steps", type=int, default=REAL_EPISODE_STEPS,
                   help=f"cut evaluation episodes to this many steps (the real task: {REAL_EPISODE_STEPS})")
    p.add_argument("--eval-envs", default="dream,real", help="comma-separated: dream, real")
    p.add_argument("--eval-num-envs", type=int, default=0,
                   help="batched dream envs used for evaluation (0: min(num-envs, eval-episodes))")
    p.add_argument("--deterministic", action="store_true", help="evaluate the greedy action (default: sample)")
    p.add_argument("--video", dest="video", action="store_true", default=True)
    p.add_argument("--no-video", dest="video", action="store_false", help="skip the episode video")
    p.add_argument("--video-max-steps", type=int, default=0, help="video episode cap (0: --eval-max-steps)")
    p.add_argument("--sampling-steps", type=int, default=None, help="dream Euler steps per frame (default: model's)")
    p.add_argument("--subprocess", action="store_true", help="real envs in subprocesses (--train-env real)")
    p.add_argument("--out", default="runs/ppo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda:0, ... (model and agent)")
    p.add_argument("--tensorboard", dest="tensorboard", action="store_true", default=True)
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: half the cores, -1: torch's default)")
    p.add_argument("--verbose", type=int, default=1, help="SB3 verbosity")
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    for name in ("num_envs", "n_steps", "batch_size", "n_epochs", "train_max_steps", "eval_max_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("timesteps", "eval_episodes", "eval_num_envs", "video_max_steps"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    eval_envs = [e.strip() for e in args.eval_envs.split(",") if e.strip()]
    unknown = sorted(set(eval_envs) - {"dream", "real"})
    if unknown:
        p.error(f"--eval-envs: unknown env(s) {unknown}; choose from dream, real")
    if args.policy == "random" and args.load:
        p.error("--load makes no sense with --policy random")
    if args.policy == "ppo" and args.timesteps == 0 and not args.load:
        p.error("--timesteps 0 needs --load AGENT.zip (nothing to evaluate otherwise)")
    return eval_envs


def make_ppo(args: argparse.Namespace, venv, device: str, tensorboard_log: str | None):
    from stable_baselines3 import PPO

    if args.load:
        agent = PPO.load(args.load, env=venv, device=device, tensorboard_log=tensorboard_log)
        return agent
    return PPO("CnnPolicy", venv, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs,
               learning_rate=args.learning_rate, gamma=args.gamma, ent_coef=args.ent_coef, seed=args.seed,
               device=device, tensorboard_log=tensorboard_log, verbose=args.verbose)


def run(args: argparse.Namespace, eval_envs: list[str]) -> dict[str, Any]:
    from rad_env.runtime import resolve_device

    from rad_env.runtime import set_cpu_threads

    set_cpu_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(args.device))
    need_dream = (args.eval_episodes > 0 and "dream" in eval_envs) or \
        (args.policy == "ppo" and args.train_env == "dream" and args.timesteps > 0)
    core = None
    if need_dream or args.video:
        try:
            core = load_dream(args.checkpoint, args.context, args.num_envs, device, args.sampling_steps)
        except Exception as exc:  # noqa: BLE001 - the dream is only needed for the video here
            if need_dream:
                raise
            print(f"warning: no dream for the video ({exc}); recording the real episode only", file=sys.stderr)
            core = None
    summary: dict[str, Any] = {"args": vars(args), "device": device}

    # ------------------------------------------------------------------ agent
    if args.policy == "random":
        num_actions = core.num_actions if core is not None else 6
        agent: Any = RandomAgent(num_actions, seed=args.seed)
        name = "random"
    else:
        name = "ppo"
        tb = str(out / "tb") if args.tensorboard else None
        if args.train_env == "dream":
            train_venv = dream_vec_env(core, args.train_max_steps)
        else:
            train_venv = real_vec_env(args.num_envs, args.train_max_steps, subprocess=args.subprocess)
        train_venv.seed(args.seed)
        agent = make_ppo(args, train_venv, device, tb)
        if args.timesteps > 0:
            print(f"training PPO in the {args.train_env} for {args.timesteps} steps "
                  f"({args.num_envs} envs x {args.n_steps} steps per update, device {device})", flush=True)
            start = time.perf_counter()
            agent.learn(total_timesteps=args.timesteps, tb_log_name=f"ppo_{args.train_env}",
                        reset_num_timesteps=not args.load, progress_bar=False)
            seconds = time.perf_counter() - start
            steps = int(agent.num_timesteps)
            summary["train"] = {"env": args.train_env, "timesteps": steps, "seconds": seconds,
                                "steps_per_s": steps / max(seconds, 1e-9)}
            print(f"trained {steps} steps in {seconds:.1f} s ({steps / max(seconds, 1e-9):.1f} env steps/s)")
            path = out / f"ppo_{args.train_env}.zip"
            agent.save(path)
            summary["agent"] = str(path)
            print(f"saved agent: {path}")
        train_venv.close()

    # ------------------------------------------------------------------ evaluation
    results: list[EvalResult] = []
    if args.eval_episodes > 0 and eval_envs:
        if args.eval_max_steps < REAL_EPISODE_STEPS:
            print(f"note: evaluation episodes are cut to {args.eval_max_steps} steps (the real task has "
                  f"{REAL_EPISODE_STEPS}): returns are not comparable to full-episode returns", flush=True)
        if "real" in eval_envs:
            minutes = args.eval_episodes * args.eval_max_steps / 35 / 60
            print(f"note: the real Memory Maze runs at ~30-40 steps/s on a CPU core: {args.eval_episodes} "
                  f"episode(s) of up to {args.eval_max_steps} steps take about {minutes:.1f} min", flush=True)
        for env_name in eval_envs:
            if env_name == "dream":
                n = args.eval_num_envs or min(args.num_envs, args.eval_episodes)
                venv = dream_vec_env(share_core(core, n), args.eval_max_steps)
            else:
                venv = real_vec_env(1, args.eval_max_steps)
            print(f"evaluating {name} in the {env_name}: {args.eval_episodes} episode(s)", flush=True)
            result = evaluate(agent, venv, args.eval_episodes, policy=name, env=env_name,
                              max_steps=args.eval_max_steps, seed=args.seed + 10_000,
                              deterministic=args.deterministic)
            venv.close()
            results.append(result)
        print(format_results(results))
    summary["eval"] = [r.to_dict() for r in results]

    # ------------------------------------------------------------------ video
    if args.video:
        cap = args.video_max_steps or args.eval_max_steps
        dream_frames = real_frames = None
        if core is not None:
            env = dream_env(core, cap)
            dream_frames, dream_return = record_episode(agent, env, args.seed, args.deterministic)
            env.close()
            summary["video_dream_return"] = dream_return
        if "real" in eval_envs or core is None:
            env = real_env(cap)
            real_frames, real_return = record_episode(agent, env, args.seed, args.deterministic)
            env.close()
            summary["video_real_return"] = real_return
        stem = "episode_real_vs_dream" if real_frames is not None and dream_frames is not None else \
            ("episode_real" if real_frames is not None else "episode_dream")
        video = write_comparison_video(out / f"{stem}.mp4", real_frames, dream_frames)
        summary["video"] = str(video)
        print(f"video: {video}" + (" (real | dream)" if stem == "episode_real_vs_dream" else ""))

    (out / "eval.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"results: {out / 'eval.json'}")
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    eval_envs = check_args(parser, args)
    from rad_env.checkpoint import CheckpointError

    try:
        return run(args, eval_envs)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.checkpoint is None:
            from rad_env.demo import TRAIN_HINT

            print(TRAIN_HINT, file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
