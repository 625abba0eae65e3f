"""Train a PPO agent inside the dream (a RAD world model of Memory Maze), then evaluate it in the
dream and in the real Memory Maze.

    python -m agents.train_ppo --timesteps 100000 --num-envs 16 --out runs/ppo
    python -m agents.train_ppo --checkpoint runs/tiny/model.pt --context data/mm9 --timesteps 20000
    python -m agents.train_ppo --policy random                   # baseline: random actions
    python -m agents.train_ppo --policy wallturn                 # reference: forward, turning at walls
    python -m agents.train_ppo --policy seeker                   # reference: the wall-turner, steering for a target
    python -m agents.train_ppo --wall-penalty 0.01               # shaping: a cost per press the dream's wall refuses
    python -m agents.train_ppo --wall-penalty 0.01 --forward-bonus 0.01   # ... and a bonus per step forward it performs
    python -m agents.train_ppo --frame-stack 4                   # the agent sees its last 4 frames
    python -m agents.train_ppo --view-pool 4                     # ... each 4x4 block's mean (dream and real alike)
    python -m agents.train_ppo --train-env real --num-envs 4     # baseline: PPO in the real maze (slow)
    python -m agents.train_ppo --load runs/ppo/ppo_dream.zip --timesteps 0   # evaluate a saved agent
    python -m agents.train_ppo --load runs/ppo/ppo_dream.zip --timesteps 0 --temperature 0.5   # ... sampling cooler

All dream envs advance in one batched model call per step (DreamSB3VecEnv). Writes to ``--out``:
the agent (``ppo_<train-env>.zip``), TensorBoard logs (``tb/``), the training episodes' returns
(``train_returns.csv``), ``eval.json`` and a video of one episode, real | dream side by side
(``episode_real_vs_dream.mp4``). ``--time-limit`` stops training after a wall-clock budget.
``python -m agents.compare`` runs PPO in the dream, PPO in the real maze for the same wall clock and a
random agent, and compares them in the real maze.

A real Memory Maze 9x9 episode is 1000 steps and the simulator runs at ~30-40 steps/s on a CPU:
``--eval-max-steps`` shortens evaluation episodes (dream and real alike) for quick runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from rad_env.cli import (UserError, add_dataclass_arguments, dataclass_from_args, option, removed_if_failed,
                          require_at_least, run_cli)
from rad_env.defaults import TRAIN_HINT
from rad_env.runtime import AMP_CHOICES
from rad_env.envs.factory import (make_dream_core, make_dream_env, make_dream_sb3_vec_env, make_real_env,
                                  make_real_vec_env, share_core)

from .callbacks import EpisodeReturnLog, WallClockLimit
from .common import (REAL_EPISODE_STEPS, EvalResult, RandomAgent, TargetSeekerAgent, WallTurnAgent, evaluate,
                     format_results, record_episode, write_comparison_video)
from .frame_stack import saved_frames, stack_frames
from .low_pass import view_pool_kwargs, view_pool_of
from .shaping import WallShaping
from .temperature import TemperedAgent

PROG = "python -m agents.train_ppo"
EVAL_ENVS = ("dream", "real")


@dataclass
class PPOConfig:
    """Everything a PPO run depends on (saved in ``eval.json``); one command-line flag per field."""

    checkpoint: str | None = option(None, "RAD checkpoint (default: the shipped tiny model)")
    context: str | None = option(None, "episodes the dream starts from (default: the shipped start frames)")
    policy: Literal["ppo", "random", "wallturn", "seeker"] = option(
        "ppo", "ppo: train (or --load) a PPO agent; random: evaluate uniformly random actions; wallturn: evaluate "
               "a scripted walker that sees only its frames (forward, and a few turns one way when a press "
               "leaves the view unchanged); seeker: the wall-turner that steers for a ball of the border's "
               "(the target's) colour when it sees one")
    train_env: Literal["dream", "real"] = option(
        "dream", "where PPO trains: the dream (fast, batched) or the real Memory Maze (slow baseline)")
    load: str | None = option(None, "start from a saved PPO agent (.zip) instead of a new one")
    num_envs: int = option(8, "parallel training envs")
    timesteps: int = option(50_000, "training env steps (0: evaluate only)")
    time_limit: float = option(0.0, "also stop training after this many seconds of wall clock (0: no limit)")
    n_steps: int = option(128, "PPO rollout steps per env per update")
    batch_size: int = option(256, "PPO minibatch size")
    n_epochs: int = option(4, "PPO epochs per update")
    learning_rate: float = option(2.5e-4, "PPO learning rate")
    gamma: float = option(0.99, "discount factor")
    ent_coef: float = option(0.01, "entropy bonus coefficient")
    wall_penalty: float = option(0.0, "training in the dream only: subtract this from the reward of every press the "
                                      "dream's wall refuses (its collision gate; 0: the dream's reward alone)")
    forward_bonus: float = option(0.0, "training in the dream only: add this to the reward of every press of forward "
                                       "that the dream's wall does not refuse (a step forward performed; 0: none)")
    frame_stack: int = option(1, "frames the PPO agent sees, the last N side by side (SB3's VecFrameStack; 1: the "
                                 "current frame only). A loaded agent is fed as many as it was trained on")
    view_pool: int = option(1, "the PPO agent sees each N x N block of its frame as the block's mean, in the dream and "
                               "in the real maze alike (a low-pass filter in its policy, saved with it; 1: every "
                               "pixel). A loaded agent sees as it was trained")
    train_max_steps: int = option(REAL_EPISODE_STEPS, "episode length during training (dream or real)")
    start_turns: int = option(0, "dream training episodes first turn in place 0..N steps one way, dreamed (0: "
                                 "none): the agent must find the target instead of facing where the recorded "
                                 "walk was heading")
    eval_episodes: int = option(5, "episodes per evaluation env (0: no evaluation)")
    eval_max_steps: int = option(REAL_EPISODE_STEPS,
                                 f"cut evaluation episodes to this many steps (the real task: {REAL_EPISODE_STEPS})")
    eval_envs: str = option("dream,real", "comma-separated evaluation envs: dream, real")
    eval_num_envs: int = option(0, "batched dream envs used for evaluation (0: min(num-envs, eval-episodes))")
    deterministic: bool = option(False, "evaluate the greedy action instead of sampling one")
    temperature: float = option(1.0, "evaluate actions sampled with the policy's logits divided by T (1: as trained; "
                                     "toward 0: nearer the greedy action); training is unchanged")
    video: bool = option(True, "record one episode as a video (real | dream side by side)")
    video_max_steps: int = option(0, "video episode cap (0: --eval-max-steps)")
    sampling_steps: int | None = option(None, "dream Euler steps per frame (default: the model's)")
    compile: bool = option(True, "compile the dream model's frame pass (torch.compile: ~1.6x faster dream "
                                 "steps on a CPU after ~25 s)")
    amp: str = option("auto", "the dream's precision: auto (bf16 where the device multiplies it natively: CUDA, CPUs "
                              "with AVX512-BF16 or AMX), bf16, none (float32)", choices=AMP_CHOICES)
    subprocess: bool = option(False, "real training envs in subprocesses (--train-env real)")
    out: str = option("runs/ppo", "output folder: agent, TensorBoard logs, eval.json, video")
    seed: int = option(0, "seed of the agent, the envs and the evaluation")
    device: str = option("auto", "auto (CUDA if available), cpu, cuda:0, ... (model and agent)")
    tensorboard: bool = option(True, "write TensorBoard logs to <out>/tb")
    threads: int = option(0, "torch CPU threads (0: half the cores, -1: torch's default)")
    verbose: int = option(1, "SB3 verbosity (0: quiet)")

    @property
    def eval_env_list(self) -> list[str]:
        return [e.strip() for e in self.eval_envs.split(",") if e.strip()]

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first unusable setting."""
        require_at_least(self, ("num_envs", "n_steps", "batch_size", "n_epochs", "train_max_steps",
                                "eval_max_steps", "frame_stack", "view_pool"), 1)
        require_at_least(self, ("timesteps", "time_limit", "eval_episodes", "eval_num_envs", "video_max_steps",
                                "start_turns", "wall_penalty", "forward_bonus"), 0)
        for name in ("wall_penalty", "forward_bonus"):
            if getattr(self, name) and self.train_env != "dream":
                raise UserError(f"--{name.replace('_', '-')} needs --train-env dream: the real maze does not report "
                                "refused presses")
        unknown = sorted(set(self.eval_env_list) - set(EVAL_ENVS))
        if unknown:
            raise UserError(f"--eval-envs: unknown env(s) {unknown}; choose from {', '.join(EVAL_ENVS)}")
        if self.policy != "ppo" and self.load:
            raise UserError(f"--load makes no sense with --policy {self.policy}")
        if self.policy != "ppo" and self.frame_stack > 1:
            raise UserError(f"--frame-stack is for PPO agents; --policy {self.policy} sees one frame")
        if self.policy != "ppo" and self.view_pool > 1:
            raise UserError(f"--view-pool is for PPO agents; --policy {self.policy} sees every pixel")
        if self.load and self.view_pool > 1:
            raise UserError("--view-pool with --load: a saved agent sees as it was trained; leave --view-pool out")
        if not self.temperature > 0:
            raise UserError(f"--temperature must be > 0, got {self.temperature}")
        if self.temperature != 1 and self.policy != "ppo":
            raise UserError(f"--temperature is for PPO agents; --policy {self.policy} has no logits to cool")
        if self.temperature != 1 and self.deterministic:
            raise UserError("--temperature with --deterministic: the greedy action has no temperature; leave one out")
        if self.policy == "ppo" and self.timesteps == 0 and not self.load:
            raise UserError("--timesteps 0 needs --load AGENT.zip (nothing to evaluate otherwise)")
        if self.load and not Path(self.load).is_file():
            raise UserError(f"--load: no saved agent at {self.load}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, PPOConfig)
    return parser


def parse_config(argv: Sequence[str] | None = None, base: PPOConfig | None = None) -> PPOConfig:
    """The config from command-line flags (over ``base``, default :class:`PPOConfig`'s defaults)."""
    return dataclass_from_args(PPOConfig, build_parser().parse_args(argv), base)


def agent_frames(cfg: PPOConfig) -> int:
    """Frames the agent sees: ``--frame-stack``, or for ``--load`` as many as the saved agent was trained on (a
    one-line error when it is unreadable or an explicit ``--frame-stack`` differs)."""
    if not cfg.load:
        return cfg.frame_stack
    try:
        frames = saved_frames(cfg.load)
    except (OSError, ValueError, KeyError) as exc:  # not a zip, not an SB3 save
        raise UserError(f"--load {cfg.load}: not a Stable-Baselines3 agent ({exc})") from None
    if cfg.frame_stack > 1 and cfg.frame_stack != frames:
        raise UserError(f"--frame-stack {cfg.frame_stack}: the agent {cfg.load} was trained on {frames} frame(s); "
                        "leave --frame-stack out to use its own")
    return frames


def make_ppo(cfg: PPOConfig, venv, device: str, tensorboard_log: str | None):
    """A new PPO agent for ``venv`` (frames already stacked), or the ``--load`` one bound to it."""
    from stable_baselines3 import PPO

    if cfg.load:
        return PPO.load(cfg.load, env=venv, device=device, tensorboard_log=tensorboard_log)
    try:
        return PPO("CnnPolicy", venv, policy_kwargs=view_pool_kwargs(cfg.view_pool), n_steps=cfg.n_steps,
                   batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, learning_rate=cfg.learning_rate,
                   gamma=cfg.gamma, ent_coef=cfg.ent_coef, seed=cfg.seed, device=device,
                   tensorboard_log=tensorboard_log, verbose=cfg.verbose)
    except ValueError as exc:  # a --view-pool that does not divide the frame
        raise UserError(f"--view-pool {cfg.view_pool}: {exc}") from None


def load_core(cfg: PPOConfig, device: str, need_dream: bool):
    """The dream batch for training/evaluation, or None when only the video would use it and it fails."""
    if not (need_dream or cfg.video):
        return None
    try:
        return make_dream_core(cfg.checkpoint, cfg.context, cfg.num_envs, device=device,
                               sampling_steps=cfg.sampling_steps, compile=cfg.compile and need_dream, amp=cfg.amp,
                               start_turns=cfg.start_turns if cfg.train_env == "dream" else 0)
    except UserError as exc:
        if cfg.checkpoint is None and exc.hint is None:
            exc.hint = TRAIN_HINT
        if need_dream:
            raise
        print(f"warning: no dream for the video ({exc}); recording the real episode only", file=sys.stderr)
        return None


def run(cfg: PPOConfig) -> dict[str, Any]:
    """Train (or load) the agent, evaluate it and record a video, as ``cfg`` says; returns the summary
    that is also written to ``<out>/eval.json``. Raises :class:`UserError` for unusable settings."""
    from rad_env.runtime import resolve_device, set_cpu_threads

    cfg.validate()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    set_cpu_threads(cfg.threads)
    device = str(resolve_device(cfg.device))
    eval_envs = cfg.eval_env_list
    need_dream = (cfg.eval_episodes > 0 and "dream" in eval_envs) or \
        (cfg.policy == "ppo" and cfg.train_env == "dream" and cfg.timesteps > 0)
    core = load_core(cfg, device, need_dream)
    with removed_if_failed(out):  # a run that fails before writing anything leaves no empty folder
        out.mkdir(parents=True, exist_ok=True)
        summary: dict[str, Any] = {"config": asdict(cfg), "device": device}
        agent, name = train_agent(cfg, core, device, out, summary)
        summary["view_pool"] = view_pool_of(agent)  # a loaded agent's own, whatever the flags say
        if cfg.temperature != 1:
            agent = TemperedAgent(agent, cfg.temperature, seed=cfg.seed)
        summary["eval"] = [r.to_dict() for r in evaluate_agent(cfg, agent, name, core)]
        if cfg.video:
            record_video(cfg, agent, core, out, summary)
        (out / "eval.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"results: {out / 'eval.json'}")
    return summary


def train_agent(cfg: PPOConfig, core, device: str, out: Path, summary: dict[str, Any]) -> tuple[Any, str]:
    """The agent to evaluate and its name: random actions, the scripted wall-turner, or PPO trained (or loaded)
    as ``cfg`` says."""
    if cfg.policy == "random":
        return RandomAgent(core.num_actions if core is not None else 6, seed=cfg.seed), "random"
    if cfg.policy == "wallturn":
        return WallTurnAgent(seed=cfg.seed), "wallturn"
    if cfg.policy == "seeker":
        return TargetSeekerAgent(seed=cfg.seed), "seeker"
    if cfg.timesteps == 0:  # evaluate a saved agent (validate() requires --load): no training env needed
        from stable_baselines3 import PPO

        agent_frames(cfg)  # a readable agent
        return PPO.load(cfg.load, device=device), "ppo"
    tb = str(out / "tb") if cfg.tensorboard else None
    if cfg.train_env == "dream":
        train_venv = make_dream_sb3_vec_env(core, cfg.train_max_steps)
        if cfg.wall_penalty or cfg.forward_bonus:
            if core.model.collision is None:
                checkpoint = cfg.checkpoint or "(the shipped default)"
                raise UserError(f"--wall-penalty / --forward-bonus: the checkpoint {checkpoint} has no collision gate, "
                                "so its dream refuses no press; fit one (rad_env.train --model refused_actions=...) "
                                "or leave both at 0")
            train_venv = WallShaping(train_venv, cfg.wall_penalty, cfg.forward_bonus)
    else:
        train_venv = make_real_vec_env(cfg.num_envs, cfg.train_max_steps, subprocess=cfg.subprocess)
    train_venv = stack_frames(train_venv, agent_frames(cfg))
    train_venv.seed(cfg.seed)
    agent = make_ppo(cfg, train_venv, device, tb)
    if cfg.timesteps > 0:
        budget = f"{cfg.timesteps} steps" + (
            f" or {cfg.time_limit:g} s, whichever ends first" if cfg.time_limit else "")
        print(f"training PPO in the {cfg.train_env} for {budget} "
              f"({cfg.num_envs} envs x {cfg.n_steps} steps per update, device {device})", flush=True)
        returns_csv = out / "train_returns.csv"
        start = time.perf_counter()
        agent.learn(total_timesteps=cfg.timesteps, tb_log_name=f"ppo_{cfg.train_env}",
                    reset_num_timesteps=not cfg.load, progress_bar=False,
                    callback=[WallClockLimit(cfg.time_limit), EpisodeReturnLog(returns_csv)])
        seconds = time.perf_counter() - start
        steps = int(agent.num_timesteps)
        summary["train"] = {"env": cfg.train_env, "timesteps": steps, "seconds": seconds,
                            "steps_per_s": steps / max(seconds, 1e-9), "returns_csv": str(returns_csv)}
        print(f"trained {steps} steps in {seconds:.1f} s ({steps / max(seconds, 1e-9):.1f} env steps/s)")
        path = out / f"ppo_{cfg.train_env}.zip"
        agent.save(path)
        summary["agent"] = str(path)
        print(f"saved agent: {path}")
    train_venv.close()
    return agent, "ppo"


def evaluate_agent(cfg: PPOConfig, agent, name: str, core) -> list[EvalResult]:
    """``cfg.eval_episodes`` episodes in each evaluation env; prints the table."""
    eval_envs = cfg.eval_env_list
    if cfg.eval_episodes == 0 or not eval_envs:
        return []
    if cfg.eval_max_steps < REAL_EPISODE_STEPS:
        print(f"note: evaluation episodes are cut to {cfg.eval_max_steps} steps (the real task has "
              f"{REAL_EPISODE_STEPS}): returns are not comparable to full-episode returns", flush=True)
    if "real" in eval_envs:
        minutes = cfg.eval_episodes * cfg.eval_max_steps / 35 / 60
        print(f"note: the real Memory Maze runs at ~30-40 steps/s on a CPU core: {cfg.eval_episodes} "
              f"episode(s) of up to {cfg.eval_max_steps} steps take about {minutes:.1f} min", flush=True)
    results = []
    for env_name in eval_envs:
        if env_name == "dream":
            n = cfg.eval_num_envs or min(cfg.num_envs, cfg.eval_episodes)
            venv = make_dream_sb3_vec_env(share_core(core, n), cfg.eval_max_steps)
        else:
            venv = make_real_vec_env(1, cfg.eval_max_steps)
        print(f"evaluating {name} in the {env_name}: {cfg.eval_episodes} episode(s)", flush=True)
        results.append(evaluate(agent, venv, cfg.eval_episodes, policy=name, env=env_name,
                                max_steps=cfg.eval_max_steps, seed=cfg.seed + 10_000,
                                deterministic=cfg.deterministic))
        venv.close()
    print(format_results(results))
    return results


def record_video(cfg: PPOConfig, agent, core, out: Path, summary: dict[str, Any]) -> None:
    """One episode in the dream and (when evaluated there, or without a dream) in the real maze."""
    cap = cfg.video_max_steps or cfg.eval_max_steps
    dream_frames = real_frames = None
    if core is not None:
        env = make_dream_env(core, cap)
        dream_frames, summary["video_dream_return"] = record_episode(agent, env, cfg.seed, cfg.deterministic)
        env.close()
    if "real" in cfg.eval_env_list or core is None:
        env = make_real_env(cap)
        real_frames, summary["video_real_return"] = record_episode(agent, env, cfg.seed, cfg.deterministic)
        env.close()
    stem = "episode_real_vs_dream" if real_frames is not None and dream_frames is not None else \
        ("episode_real" if real_frames is not None else "episode_dream")
    video = write_comparison_video(out / f"{stem}.mp4", real_frames, dream_frames)
    summary["video"] = str(video)
    print(f"video: {video}" + (" (real | dream)" if stem == "episode_real_vs_dream" else ""))


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` and :func:`run`; returns the summary."""
    return run(parse_config(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``rad-ppo``): 0 on success, 2 with a one-line error for a user mistake."""
    return run_cli(cli, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
