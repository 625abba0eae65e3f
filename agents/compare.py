"""Does training in the dream pay off in the real Memory Maze? One command, three agents:

* PPO trained only in the dream (the world model's recorded data is all the real experience it used),
* PPO trained in the real Memory Maze for the same wall clock,
* uniformly random actions,

each evaluated on full real episodes (and the dream agent also in the dream). Prints and writes a table
(``results.md``, ``results.json``: real return mean and std, env steps trained, real env steps used
including the world model's data, return per 1000 real steps used, and whether the dream agent beats random by
more than both standard deviations added) and ``curves.png`` (training returns over wall clock, final real
returns).

    python -m agents.compare --minutes 10 --eval-episodes 10 --out runs/compare

The three runs are ``agents.train_ppo`` processes (their folders hold the agents, TensorBoard logs, videos
and ``train_returns.csv``), ``--jobs`` at a time, each with ``--threads`` torch threads: with the default
2 x 1 the two trainings run side by side, one CPU core each, so both get the same wall clock and compute.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rad_env.cli import UserError, add_dataclass_arguments, dataclass_from_args, option, require_at_least, run_cli
from rad_env.runtime import AMP_CHOICES

PROG = "python -m agents.compare"
#: The compared agents: name -> (train_ppo flags, where it is evaluated).
AGENTS = {
    "ppo-dream": (["--train-env", "dream"], "dream,real"),
    "ppo-real": (["--train-env", "real"], "real"),
    "random": (["--policy", "random"], "real"),
}


@dataclass
class CompareConfig:
    """What the comparison depends on (saved in ``results.json``)."""

    checkpoint: str | None = option(None, "RAD checkpoint of the dream (default: the shipped tiny model)")
    context: str | None = option(None, "episodes the dream starts from (default: the shipped start frames)")
    minutes: float = option(10.0, "wall-clock training budget of each PPO agent, in minutes")
    num_envs: int = option(8, "parallel training envs of each PPO agent (dream batch / real envs)")
    n_steps: int = option(128, "PPO rollout steps per env per update")
    dream_horizon: int = option(1000, "dream training episodes end (truncated, value bootstrapped) after this many "
                                      "steps from a real start (1000: the real task's length)")
    wall_penalty: float = option(0.0, "the dream agent's training cost per press the dream's wall refuses "
                                      "(agents.train_ppo --wall-penalty)")
    forward_bonus: float = option(0.0, "the dream agent's training bonus per step forward the dream performs "
                                       "(agents.train_ppo --forward-bonus)")
    batch_size: int = option(256, "PPO minibatch size")
    frame_stack: int = option(1, "frames both PPO agents see, the last N side by side (agents.train_ppo --frame-stack)")
    view_pool: int = option(1, "both PPO agents see each N x N block of their frame as its mean "
                               "(agents.train_ppo --view-pool; 1: every pixel)")
    eval_episodes: int = option(10, "real evaluation episodes per agent")
    eval_max_steps: int = option(1000, "evaluation episode cap (the real task: 1000)")
    compile: bool = option(True, "compile the dream model's frame pass (torch.compile, in the dream agent's "
                                 "budget: ~25 s, then ~1.6x faster dream steps on a CPU)")
    amp: str = option("auto", "the dream's precision: auto (bf16 where the device multiplies it natively), bf16, "
                              "none (float32)", choices=AMP_CHOICES)
    jobs: int = option(2, "runs at a time (each its own process)")
    threads: int = option(1, "torch CPU threads per run")
    seed: int = option(0, "seed of the agents, envs and evaluations")
    device: str = option("cpu", "device of the model and agents (cpu, cuda, auto)")
    out: str = option("runs/compare", "output folder")

    def validate(self) -> None:
        if not self.minutes > 0:
            raise UserError(f"--minutes must be > 0, got {self.minutes}")
        require_at_least(self, ("num_envs", "n_steps", "dream_horizon", "batch_size", "frame_stack", "view_pool",
                                "eval_episodes", "eval_max_steps", "jobs", "threads"), 1)
        require_at_least(self, ("wall_penalty", "forward_bonus"), 0)
        if self.checkpoint and not Path(self.checkpoint).is_file():
            raise UserError(f"--checkpoint: no file at {self.checkpoint}")
        if Path(self.out).exists() and any(Path(self.out).iterdir()):
            raise UserError(f"--out {self.out} exists and is not empty; choose another folder")


def run_command(cfg: CompareConfig, name: str) -> list[str]:
    """The ``agents.train_ppo`` command line of one agent."""
    flags, eval_envs = AGENTS[name]
    cmd = [sys.executable, "-m", "agents.train_ppo", *flags, "--timesteps", "1000000000",
           "--time-limit", f"{cfg.minutes * 60:g}", "--num-envs", str(cfg.num_envs), "--n-steps", str(cfg.n_steps),
           "--batch-size", str(cfg.batch_size), "--eval-episodes", str(cfg.eval_episodes),
           "--eval-max-steps", str(cfg.eval_max_steps), "--eval-envs", eval_envs, "--no-video",
           "--threads", str(cfg.threads), "--seed", str(cfg.seed), "--device", cfg.device, "--verbose", "0",
           "--out", str(Path(cfg.out) / name)]
    if cfg.checkpoint:
        cmd += ["--checkpoint", cfg.checkpoint]
    if cfg.context:
        cmd += ["--context", cfg.context]
    if name == "ppo-dream":
        cmd += ["--train-max-steps", str(cfg.dream_horizon), "--compile" if cfg.compile else "--no-compile",
                "--amp", cfg.amp, "--wall-penalty", f"{cfg.wall_penalty:g}",
                "--forward-bonus", f"{cfg.forward_bonus:g}"]
    if name.startswith("ppo-"):
        cmd += ["--frame-stack", str(cfg.frame_stack), "--view-pool", str(cfg.view_pool)]
    if name == "random":  # evaluation only; the dream is not needed
        cmd[cmd.index("--timesteps") + 1] = "0"
    return cmd


def run_agent(cfg: CompareConfig, name: str) -> dict[str, Any]:
    """Run one agent's process (log in ``<out>/<name>.log``); its ``eval.json``. Raises UserError naming the log."""
    log = Path(cfg.out) / f"{name}.log"
    start = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run(run_command(cfg, name), stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"the {name} run failed (exit {done.returncode}): {tail[0]} - see {log}")
    print(f"{name}: done in {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads((Path(cfg.out) / name / "eval.json").read_text())


def world_model_steps(checkpoint: str | None) -> int | None:
    """Real env steps recorded in the world model's training data over all its training stages (from the
    checkpoint; older checkpoints record only their last stage's data), or None."""
    from rad_env.checkpoint import load_checkpoint
    from rad_env.defaults import default_assets_dir
    from rad_env.envs.specs import MEMORY_MAZE_SPEC

    path = checkpoint or default_assets_dir() / MEMORY_MAZE_SPEC.default_checkpoint
    data = load_checkpoint(path).get("data") or {}
    steps = data.get("real_steps") or data.get("steps")
    return int(steps) if steps else None


def summarise(runs: dict[str, dict[str, Any]], model_steps: int | None) -> list[dict[str, Any]]:
    """One row per agent: where it trained, for how long, real and dream returns, real steps used."""
    rows = []
    for name, run in runs.items():
        train = run.get("train", {})
        evals = {e["env"]: e for e in run["eval"]}
        real = evals["real"]
        if name == "ppo-dream":
            used = model_steps
        elif name == "ppo-real":
            used = int(train.get("timesteps", 0))
        else:
            used = 0
        per_1000 = real["mean_return"] / used * 1000 if used else None
        dream = evals.get("dream", {})
        rows.append({"agent": name, "trained in": train.get("env", "-"), "train seconds": train.get("seconds", 0.0),
                     "train env steps": int(train.get("timesteps", 0)), "real steps used": used,
                     "real return": real["mean_return"], "real std": real["std_return"],
                     "real episodes": real["episodes"], "dream return": dream.get("mean_return"),
                     "dream std": dream.get("std_return"), "return per 1000 real steps used": per_1000})
    return rows


def _num(value: Any, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table."""
    lines = ["| agent | trained in | training wall clock | env steps trained | real env steps used "
             "(world-model data included) | real return | dream return | real return per 1000 real steps used |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dream = "-" if r["dream return"] is None else f"{r['dream return']:.2f} +- {r['dream std']:.2f}"
        used = "unknown" if r["real steps used"] is None else f"{r['real steps used']}"
        lines.append(f"| {r['agent']} | {r['trained in']} | {r['train seconds'] / 60:.1f} min | {r['train env steps']} "
                     f"| {used} | {r['real return']:.2f} +- {r['real std']:.2f} (n={r['real episodes']}) "
                     f"| {dream} | {_num(r['return per 1000 real steps used'], 3)} |")
    return "\n".join(lines)


def margin_over_random(rows: list[dict[str, Any]], agent: str = "ppo-dream") -> dict[str, Any]:
    """How far ``agent`` beats the random agent in the real maze, against both standard deviations added
    (issue 10's line: the gap larger than the two spreads, >= 10 real episodes each)."""
    by_name = {r["agent"]: r for r in rows}
    a, r = by_name[agent], by_name["random"]
    gap = a["real return"] - r["real return"]
    spread = a["real std"] + r["real std"]
    episodes = min(a["real episodes"], r["real episodes"])
    return {"agent": agent, "gap": gap, "std sum": spread, "episodes": episodes,
            "beats random by both stds": bool(gap > spread and episodes >= 10)}


def margin_line(margin: dict[str, Any]) -> str:
    """The margin as one sentence for ``results.md``."""
    verdict = "yes" if margin["beats random by both stds"] else "no"
    n = margin["episodes"]
    few = "" if n >= 10 else f" (only {n} episode{'' if n == 1 else 's'} each; the line asks >= 10)"
    return (f"{margin['agent']} - random in the real maze: {margin['gap']:.2f}, both standard deviations added: "
            f"{margin['std sum']:.2f}; beats random by more than both: {verdict}{few}")


def read_returns(path: Path) -> list[dict[str, float]]:
    """The rows of a ``train_returns.csv`` (empty when the run wrote none)."""
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def plot_curves(path: Path, curves: dict[str, tuple[str, list[dict[str, float]]]],
                rows: list[dict[str, Any]], bins: int = 20) -> Path:
    """Left: each PPO agent's training return per 1000 steps (in the env it trains in, so that 16-step dreams and
    1000-step real episodes share one axis) over wall clock, pooled over the episodes ending in each of ``bins``
    stretches of the run. Right: final real returns (mean and std) of every agent, and the dream agent's return in
    the dream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (env, returns) in curves.items():
        if returns:
            seconds = np.array([r["seconds"] for r in returns])
            edges = np.linspace(0.0, seconds.max(), bins + 1)
            ret, _ = np.histogram(seconds, edges, weights=[r["return"] for r in returns])
            steps, _ = np.histogram(seconds, edges, weights=[r["length"] for r in returns])
            kept = steps > 0
            left.plot(edges[1:][kept] / 60, 1000 * ret[kept] / steps[kept], "o-",
                      label=f"{name} (in the {env})")
    left.set(xlabel="training wall clock (min)", ylabel="return per 1000 env steps",
             title=f"training returns (episodes pooled in {bins} stretches)")
    if left.lines:
        left.legend(fontsize=7)
    labels, means, stds = [], [], []
    for r in rows:
        labels.append(f"{r['agent']}\nreal")
        means.append(r["real return"])
        stds.append(r["real std"])
        if r["dream return"] is not None:
            labels.append(f"{r['agent']}\ndream")
            means.append(r["dream return"])
            stds.append(r["dream std"])
    right.bar(range(len(means)), means, yerr=stds, capsize=4,
              color=["tab:blue" if label.endswith("real") else "tab:orange" for label in labels])
    right.set_xticks(range(len(means)), labels, fontsize=8)
    right.set(ylabel="return per episode (mean +- std)", title="evaluation (real maze in blue)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(cfg: CompareConfig) -> dict[str, Any]:
    """Run the three agents, then write ``results.md``, ``results.json`` and ``curves.png``; returns the summary."""
    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model_steps = world_model_steps(cfg.checkpoint)
    print(f"{PROG}: PPO in the dream and in the real maze ({cfg.minutes:g} min of training each), random; "
          f"{cfg.eval_episodes} real evaluation episodes each; {cfg.jobs} run(s) at a time; logs in {out}/*.log",
          flush=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(cfg.jobs) as pool:
        futures = {name: pool.submit(run_agent, cfg, name) for name in AGENTS}
        runs = {name: future.result() for name, future in futures.items()}
    rows = summarise(runs, model_steps)
    curves = {name: (AGENTS[name][0][1], read_returns(out / name / "train_returns.csv"))
              for name in ("ppo-dream", "ppo-real")}
    plot = plot_curves(out / "curves.png", curves, rows)
    margin = margin_over_random(rows)
    table = markdown_table(rows) + "\n\n" + margin_line(margin)
    (out / "results.md").write_text(table + "\n")
    summary = {"config": asdict(cfg), "seconds": time.perf_counter() - start, "world_model_steps": model_steps,
               "rows": rows, "margin": margin, "curves": str(plot)}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(table)
    print(f"curves: {plot}; results: {out / 'results.json'} ({summary['seconds'] / 60:.1f} min in all)")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, CompareConfig)
    return parser


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run(dataclass_from_args(CompareConfig, build_parser().parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(cli, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
