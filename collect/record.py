"""Record episodes from real environments into rad-env HDF5 episode files, or import datasets.

Recording (the default command)::

    python collect/record.py --env memory-maze-9x9 --episodes 100 --policy explore \\
        --workers 2 --seed 0 --out data/mm9
    rad-record --env memory-maze-9x9 --episodes 100 --out data/mm9 --resume   # continue after a kill
    python collect/record.py --env minerl-navigate --episodes 10 --steps 500 --out data/nav

Each worker ``k`` writes its own shard ``<out>/w<k>/ep<seq>.h5`` (one complete file per episode,
written atomically by :class:`rad_env.data.EpisodeWriter`). Episodes are divided among workers
(worker ``k`` records ``episodes // K`` plus one of the remainder); episode ``i`` of worker ``k``
uses env seed and policy seed derived from ``(--seed, k, i)``, so the same command gives the same
data. ``<out>/record.json`` keeps the run settings; ``--resume`` checks that they match, deletes
leftover ``*.tmp`` files (episodes in flight when a run died) and records only the missing
episodes (``--episodes`` may be raised on resume). Without ``--resume`` an output that already holds
data is an error.

Importing existing datasets (same schema, see :mod:`collect.importers`)::

    python collect/record.py import memory-maze SRC --out DIR
    python collect/record.py import teco SRC --out DIR --frame-size 64
    python collect/record.py import minerl SRC --out DIR
    python collect/record.py import rad-minecraft SRC --out DIR --frame-size 64
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue as queue_module
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from collect.sources import SOURCE_NAMES, make_source
from rad_env.cli import (UserError, add_dataclass_arguments, dataclass_from_args, missing_root, option,
                         remove_empty_dirs, run_cli)
from rad_env.data import EpisodeWriter
from rad_env.data.writer import TMP_SUFFIX

PROG = "record.py"
CONFIG_FILE = "record.json"
#: Settings that must match on --resume (everything that changes the recorded data).
RESUME_KEYS = ("env", "steps", "policy", "policy_kwargs", "workers", "seed", "frame_size", "minerl_env_id",
               "minerl_actions")
_STEP_REPORT_EVERY = 10


class RecordError(UserError, RuntimeError):
    """A recording run cannot start or did not finish cleanly (message says why)."""


@dataclass
class RecordConfig:
    """A recording run (``record.json`` keeps the settings that define the data); one flag per field."""

    env: str = option(help="source to record", choices=SOURCE_NAMES)
    out: str = option(help="output directory")
    episodes: int = option(help="total episodes (over all workers)")
    steps: int | None = option(None, "steps per episode (default: the env's own length, e.g. 1000 for "
                                     "memory-maze-9x9, 6000 for minerl-navigate)")
    policy: str = option("random", "random: uniform actions; explore: BFS walks to random maze cells with "
                                   "action noise (Memory Maze only); target: walks to the current target (rewards; "
                                   "Memory Maze only); retrace: explore for --explore-steps, then walk the "
                                   "explored cells again in the same order and direction (held-out sets for "
                                   "memory evaluation; Memory Maze only); walker: the RAD authors' Minecraft walker "
                                   "(minerl-navigate with --minerl-actions minecraft-walk); agent: a trained "
                                   "PPO agent's actions (--agent; Memory Maze only)",
                         choices=("random", "explore", "target", "retrace", "walker", "agent"))
    policy_kwargs: dict[str, Any] = field(default_factory=dict)  # from PolicyOptions on the command line
    workers: int = option(1, "parallel worker processes, shards <out>/w<k>/")
    seed: int = option(0, "base seed; episode seeds derive from (seed, worker, index)")
    frame_size: int | None = option(None, "square frame size (Memory Maze renders at it; MineRL pov is "
                                          "resized); default 64")
    minerl_env_id: str = option("MineRLNavigate-v0", "gym id for minerl-navigate")
    minerl_actions: str = option("minecraft", "action set of minerl-navigate: minecraft (TECO's 4 ids) or "
                                              "minecraft-walk (the RAD authors' forward/back/jump x +-20 degree "
                                              "turns, 18 ids)", choices=("minecraft", "minecraft-walk"))
    resume: bool = option(False, "continue a killed or shorter run in --out")
    compression_level: int = option(4, "gzip level of obs chunks")
    progress: bool = option(True, "show a progress bar")


@dataclass
class PolicyOptions:
    """Command-line settings of the recording policies (stored as ``RecordConfig.policy_kwargs``)."""

    noise: float = option(0.15, "explore/target/retrace: probability of a random action")
    stuck_steps: int = option(40, "explore/target/retrace: new goal after this many steps without entering a "
                                  "new cell")
    look_around: float = option(0.0, "explore/target/retrace: probability per step of looking around: 3-10 turns "
                                      "one way, then as many back (data to learn to remember a view)")
    bump: float = option(0.0, "explore/target/retrace: probability per step of walking straight ahead until 2-8 "
                              "forward presses were refused by a wall (data where forward does not move: what an "
                              "agent does)")
    wander: float = option(0.2, "target: probability that a goal is a random cell instead of the target")
    explore_steps: int = option(250, "retrace: steps of exploring before the agent walks back to the first "
                                     "explored cell and retraces the explored cells in order (looping)")
    retrace_noise: float = option(0.05, "retrace: probability of a random action while retracing (no "
                                        "look-arounds then)")
    action_repeat: int = option(1, "random: hold each action this many steps")
    sticky: float = option(0.0, "random: probability of repeating the last action")
    agent: str = option("", "agent: the saved Stable-Baselines3 PPO agent (.zip, e.g. from agents.train_ppo) "
                            "whose sampled actions are recorded")
    greedy: bool = option(False, "agent: record its greedy actions instead of sampled ones")

    def kwargs_for(self, policy: str) -> dict[str, Any]:
        if policy in ("explore", "target", "retrace"):
            kwargs: dict[str, Any] = {"noise": self.noise, "stuck_steps": self.stuck_steps}
            if self.look_around:  # only when used: older record.json files stay resumable
                kwargs["look_around"] = self.look_around
            if self.bump:
                kwargs["bump"] = self.bump
            if policy == "target":
                kwargs["wander"] = self.wander
            if policy == "retrace":  # only for retrace: explore/target record.json files stay resumable
                kwargs.update(explore_steps=self.explore_steps, retrace_noise=self.retrace_noise)
            return kwargs
        if policy == "walker":  # the RAD authors' settings (collect_mc's SimpleAgent)
            return {}
        if policy == "agent":
            return {"agent": self.agent, "deterministic": self.greedy}
        return {"repeat": self.action_repeat, "sticky": self.sticky}


@dataclass
class WorkerJob:
    config: RecordConfig
    worker: int
    episodes: int  # how many complete episodes this worker's shard should hold
    steps: int
    env_factory: Callable[[], Any] | None = None


def split_episodes(episodes: int, workers: int) -> list[int]:
    """Episodes per worker: ``episodes // workers``, the first ``episodes % workers`` get one more."""
    return [episodes // workers + (k < episodes % workers) for k in range(workers)]


def episode_seeds(seed: int, worker: int, index: int) -> tuple[int, int]:
    """(env seed, policy seed) of episode ``index`` of worker ``worker``."""
    state = np.random.SeedSequence([seed, worker, index]).generate_state(2)
    return int(state[0] % (2**31 - 1)), int(state[1])


def worker_dir(out: str | os.PathLike, worker: int) -> Path:
    return Path(out) / f"w{worker}"


# -- worker --------------------------------------------------------------------------------
def run_worker(job: WorkerJob, report: Callable[[tuple], None]) -> None:
    """Record the missing episodes of one shard; ``report`` receives progress messages."""
    cfg, k = job.config, job.worker
    directory = worker_dir(cfg.out, k)
    done = EpisodeWriter.completed_ids(directory)
    todo = job.episodes - len(done)
    if todo <= 0:
        report(("done", k, None))
        return
    source = make_source(cfg.env, frame_size=cfg.frame_size, env_factory=job.env_factory,
                         minerl_env_id=cfg.minerl_env_id, minerl_actions=cfg.minerl_actions)
    try:
        source.open()
        meta = source.file_meta(seed=cfg.seed)
        writer = EpisodeWriter(directory, meta, resume=cfg.resume, level=cfg.compression_level)
        for name in writer.removed_partial:
            report(("note", k, f"removed partial episode {directory / name}"))
        policy = source.make_policy(cfg.policy, **cfg.policy_kwargs)
        pending = [0]

        def on_step(n: int) -> None:
            pending[0] += n
            if pending[0] >= _STEP_REPORT_EVERY:
                report(("steps", k, pending[0]))
                pending[0] = 0

        for _ in range(todo):
            index = writer.next_id
            env_seed, policy_seed = episode_seeds(cfg.seed, k, index)
            start = time.perf_counter()
            episode = source.record(policy, job.steps, env_seed, policy_seed=policy_seed, on_step=on_step)
            seconds = time.perf_counter() - start
            path = writer.write(episode)
            if pending[0]:
                report(("steps", k, pending[0]))
                pending[0] = 0
            report(("episode", k, {"file": str(path), "steps": episode.length, "seconds": seconds,
                                   "bytes": path.stat().st_size, "seed": env_seed,
                                   "short": episode.length < job.steps}))
    finally:
        source.close()
    report(("done", k, None))


def _process_entry(job: WorkerJob, queue) -> None:
    try:
        run_worker(job, queue.put)
    except BaseException:  # report everything, including KeyboardInterrupt, then exit non-zero
        queue.put(("error", job.worker, traceback.format_exc()))
        queue.put(("done", job.worker, None))
        raise SystemExit(1)


# -- driver ---------------------------------------------------------------------------------
def _existing_files(out: Path) -> tuple[list[Path], list[Path]]:
    complete = sorted(out.glob("w*/ep*.h5"))
    partial = sorted(out.glob("w*/*" + TMP_SUFFIX))
    return complete, partial


def _saved_settings(cfg: RecordConfig) -> dict[str, Any]:
    data = asdict(cfg)
    return {key: data[key] for key in RESUME_KEYS}


def _check_output(cfg: RecordConfig) -> list[str]:
    out = Path(cfg.out)
    notes: list[str] = []
    if out.exists() and not out.is_dir():
        raise RecordError(f"--out {out} exists and is not a directory")
    complete, partial = _existing_files(out) if out.is_dir() else ([], [])
    config_path = out / CONFIG_FILE
    if not cfg.resume:
        if complete or partial or config_path.exists():
            raise RecordError(f"{out} already holds recorded data ({len(complete)} episode file(s), "
                              f"{len(partial)} partial); pass --resume to continue that run or choose an empty --out")
        return notes
    if config_path.exists():
        saved = json.loads(config_path.read_text()).get("settings", {})
        now = _saved_settings(cfg)
        defaults = {f.name: f.default for f in fields(RecordConfig)}  # keys newer than the saved run
        differ = [f"{key}: {saved.get(key, defaults[key])!r} -> {now[key]!r}" for key in RESUME_KEYS
                  if saved.get(key, defaults[key]) != now[key]]
        if differ:
            raise RecordError(f"--resume: settings differ from the run recorded in {config_path} "
                              f"({'; '.join(differ)}); use the same settings or another --out")
    elif complete:
        notes.append(f"{config_path} missing: cannot check that --resume uses the original settings")
    extra = [p for p in complete if not p.parent.name[1:].isdigit() or int(p.parent.name[1:]) >= cfg.workers]
    if extra:
        raise RecordError(f"--resume: {extra[0]} belongs to a worker >= --workers {cfg.workers}")
    for path in partial:  # episodes in flight when the earlier run died
        path.unlink()
        notes.append(f"removed partial episode {path}")
    return notes


def _write_config(cfg: RecordConfig, summary: dict[str, Any] | None = None) -> None:
    path = Path(cfg.out) / CONFIG_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    data["settings"] = _saved_settings(cfg)
    data["episodes"] = max(cfg.episodes, int(data.get("episodes", 0)))
    if summary is not None:
        data.setdefault("runs", []).append(summary)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _disk_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def record(cfg: RecordConfig, *, env_factory: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Run a recording; returns the summary dict (also printed by :func:`main`).

    ``env_factory`` (MineRL source only) builds the env; with ``workers > 1`` it must be picklable.
    Raises :class:`RecordError` when the output or settings are unusable.
    """
    if cfg.episodes < 1:
        raise RecordError(f"--episodes must be >= 1, got {cfg.episodes}")
    if cfg.workers < 1:
        raise RecordError(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.seed < 0:
        raise RecordError(f"--seed must be >= 0, got {cfg.seed}")
    try:  # validate source/policy names early, in this process (no env is started)
        source = make_source(cfg.env, frame_size=cfg.frame_size, env_factory=env_factory,
                             minerl_env_id=cfg.minerl_env_id, minerl_actions=cfg.minerl_actions)
    except (ValueError, ImportError) as exc:
        raise RecordError(str(exc)) from exc
    if cfg.minerl_actions != "minecraft" and cfg.env != "minerl-navigate":
        raise RecordError(f"--minerl-actions applies to --env minerl-navigate only (got --env {cfg.env})")
    if cfg.policy not in source.policies:
        raise RecordError(f"policy {cfg.policy!r} is not available for {cfg.env}"
                          + (f" with --minerl-actions {cfg.minerl_actions}" if cfg.env == "minerl-navigate" else "")
                          + f"; choose {', '.join(source.policies)}")
    if cfg.policy == "agent":
        agent = cfg.policy_kwargs.get("agent", "")
        if not agent or not Path(agent).is_file():
            raise RecordError(f"--policy agent records a trained agent's actions: --agent {agent or '(not given)'} "
                              "is not a file; pass the .zip that agents.train_ppo saved")
        try:  # load it once here: a bad file is a one-line error before any worker starts
            source.make_policy("agent", **cfg.policy_kwargs)
        except ValueError as exc:
            raise RecordError(str(exc)) from None
    steps = cfg.steps if cfg.steps is not None else source.default_steps
    if steps < 1:
        raise RecordError(f"--steps must be >= 1, got {steps}")
    explore_steps = cfg.policy_kwargs.get("explore_steps", 0) if cfg.policy == "retrace" else 0
    if explore_steps >= steps:
        raise RecordError(f"--policy retrace: --explore-steps ({explore_steps}) must be below --steps ({steps}), "
                          "or the episodes never retrace")
    cfg.steps = steps
    notes = _check_output(cfg)
    out = Path(cfg.out)
    created = missing_root(out)
    had_config = (out / CONFIG_FILE).exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        summary = _record(cfg, out, steps, notes, env_factory)
    except BaseException:
        _discard_if_empty(cfg, created, had_config)
        raise
    if summary["episodes_on_disk"] == 0:
        _discard_if_empty(cfg, created, had_config)
    return summary


def _discard_if_empty(cfg: RecordConfig, created: Path | None, had_config: bool) -> None:
    """After a run that left no episode: remove its ``record.json`` (unless an earlier run wrote it), its
    empty shard folders and the folders it created, so a failed run leaves no empty output behind."""
    out = Path(cfg.out)
    if any(EpisodeWriter.completed_ids(worker_dir(out, k)) for k in range(cfg.workers)):
        return
    if not had_config:
        (out / CONFIG_FILE).unlink(missing_ok=True)
    for k in range(cfg.workers):
        remove_empty_dirs(worker_dir(out, k))
    if created is not None:
        remove_empty_dirs(created)


def _record(cfg: RecordConfig, out: Path, steps: int, notes: list[str],
            env_factory: Callable[[], Any] | None) -> dict[str, Any]:
    """Run the workers and summarise (``record`` checked the settings and the output)."""
    _write_config(cfg)

    shares = split_episodes(cfg.episodes, cfg.workers)
    jobs = []
    for k, share in enumerate(shares):
        have = len(EpisodeWriter.completed_ids(worker_dir(out, k)))
        if share - have > 0:
            jobs.append(WorkerJob(cfg, k, share, steps, env_factory))
    todo_episodes = sum(job.episodes - len(EpisodeWriter.completed_ids(worker_dir(out, job.worker))) for job in jobs)

    problems: list[str] = []
    episodes: list[dict[str, Any]] = []
    busy_seconds = [0.0] * cfg.workers
    bar = None
    if cfg.progress and todo_episodes:
        from tqdm import tqdm

        bar = tqdm(total=todo_episodes * steps, unit="step", desc=f"{cfg.env} x{len(jobs)} workers",
                   dynamic_ncols=True, file=sys.stderr)
    finished: set[int] = set()

    def handle(message: tuple) -> None:
        kind, k, payload = message
        if kind == "steps":
            if bar is not None:
                bar.update(payload)
        elif kind == "episode":
            episodes.append(payload)
            busy_seconds[k] += payload["seconds"]
            if bar is not None and payload["steps"] < steps:
                bar.total -= steps - payload["steps"]
                bar.refresh()
            if payload["short"]:
                notes.append(f"{payload['file']}: ended after {payload['steps']} < {steps} steps (env episode end)")
        elif kind == "note":
            notes.append(f"w{k}: {payload}")
        elif kind == "error":
            problems.append(f"worker {k} failed:\n{payload}")
        elif kind == "done":
            finished.add(k)

    start = time.perf_counter()
    if len(jobs) == 1 and cfg.workers == 1:
        try:
            run_worker(jobs[0], handle)
        except Exception:
            problems.append(f"worker 0 failed:\n{traceback.format_exc()}")
    elif jobs:
        ctx = mp.get_context("spawn")
        messages = ctx.Queue()
        procs = {job.worker: ctx.Process(target=_process_entry, args=(job, messages), name=f"record-w{job.worker}")
                 for job in jobs}
        for proc in procs.values():
            proc.start()
        try:
            idle_polls = 0
            while len(finished) < len(procs):
                try:
                    handle(messages.get(timeout=0.5))
                    idle_polls = 0
                except queue_module.Empty:
                    idle_polls += 1
                    for k, proc in procs.items():
                        if k not in finished and not proc.is_alive() and idle_polls >= 2:
                            problems.append(f"worker {k} died (exit code {proc.exitcode}) without reporting")
                            finished.add(k)
        except KeyboardInterrupt:
            for proc in procs.values():
                proc.terminate()
            raise
        finally:
            for proc in procs.values():
                proc.join(timeout=30)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()

    new_steps = sum(e["steps"] for e in episodes)
    new_bytes = sum(e["bytes"] for e in episodes)
    new_frames = sum(e["steps"] + 1 for e in episodes)
    on_disk = sum(len(EpisodeWriter.completed_ids(worker_dir(out, k))) for k in range(cfg.workers))
    summary = {
        "env": cfg.env, "out": str(out), "policy": cfg.policy, "workers": cfg.workers,
        "episodes_recorded": len(episodes), "episodes_on_disk": on_disk, "episodes_requested": cfg.episodes,
        "steps": new_steps, "seconds": round(seconds, 3),
        "steps_per_s": round(new_steps / seconds, 2) if seconds > 0 and new_steps else 0.0,
        "steps_per_s_per_worker": round(new_steps / sum(busy_seconds), 2) if sum(busy_seconds) > 0 else 0.0,
        "bytes_on_disk": _disk_bytes(out),
        "bytes_per_1000_frames": round(1000 * new_bytes / new_frames) if new_frames else None,
        "notes": notes, "problems": problems,
    }
    if on_disk < cfg.episodes and not problems:
        problems.append(f"only {on_disk} of {cfg.episodes} episodes on disk")
    _write_config(cfg, {k: v for k, v in summary.items() if k not in ("notes",)})
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    per_k = summary["bytes_per_1000_frames"]
    lines = [
        f"recorded {summary['episodes_recorded']} episode(s), {summary['steps']} steps in {summary['seconds']:.1f} s "
        f"({summary['steps_per_s']:.1f} steps/s overall, {summary['steps_per_s_per_worker']:.1f} steps/s per worker "
        f"while recording, {summary['workers']} worker(s))",
        f"{summary['episodes_on_disk']}/{summary['episodes_requested']} episodes in {summary['out']}: "
        f"{summary['bytes_on_disk'] / 1e6:.2f} MB on disk"
        + (f", {per_k / 1e6:.2f} MB per 1000 frames" if per_k else ""),
    ]
    lines += [f"note: {n}" for n in summary["notes"]]
    lines += [f"PROBLEM: {p}" for p in summary["problems"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Record episodes from a real env into rad-env HDF5 files "
                    "(see also: 'record.py import {memory-maze,teco,minerl,rad-minecraft} SRC --out DIR --help').",
        epilog="Import existing datasets instead: record.py import memory-maze|teco|minerl|rad-minecraft SRC --out DIR")
    add_dataclass_arguments(parser, RecordConfig, skip=("policy_kwargs",))
    add_dataclass_arguments(parser.add_argument_group("policy options"), PolicyOptions)
    return parser


def config_from_args(args: argparse.Namespace) -> RecordConfig:
    cfg = dataclass_from_args(RecordConfig, args)
    cfg.policy_kwargs = dataclass_from_args(PolicyOptions, args).kwargs_for(cfg.policy)
    return cfg


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, record and print the summary; returns it. Raises :class:`RecordError`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "record":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        summary = record(config_from_args(args))
    except KeyboardInterrupt:
        print(f"{PROG}: completed episodes are kept, continue with --resume", file=sys.stderr)
        raise
    print(format_summary(summary))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``rad-record``); returns the exit status (0 ok, 1 problems, 2 usage error,
    130 interrupted). ``record.py import KIND ...`` runs :mod:`collect.importers`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "import":
        from collect.importers import main as import_main

        return import_main(argv[1:])
    return run_cli(cli, argv, prog=PROG, exit_status=lambda summary: 1 if summary["problems"] else 0)


if __name__ == "__main__":
    sys.exit(main())
