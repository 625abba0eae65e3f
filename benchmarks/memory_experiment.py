"""Does RAD's recurrent memory help beyond the attention window? The paper's central claim, small scale.

    python -m benchmarks.memory_experiment --data data/mm9 --time-limit 1800 --out runs/memory_experiment
    python -m benchmarks.memory_experiment --data data/mm9 --steps 2000 --seeds 0,1,2 --horizon 256
    python -m benchmarks.memory_experiment --quick          # seconds: pipeline check, numbers meaningless

Trains one world model per memory type with identical settings (preset, seed, data, steps or time
limit, batch): ``lstm`` (RAD: sliding window + recurrent memory), ``none`` (the same sliding window
without memory) and ``full`` (attention over every past frame), through ``rad_env.train.train``. Each is
then evaluated by ``rad_env.evaluate.evaluate`` on the same held-out episodes: it observes ``--context``
real frames and dreams ``--horizon`` more from the true actions. PSNR/SSIM are reported per horizon
bucket, for frames beyond the window, and split into *revisits* (the agent's cell and heading were seen
earlier, outside the window: memory should help) and *new places* (nothing to remember).

A seed fixes the model initialisation, the batch order and the train/held-out split (``TrainConfig.seed``):
all memory types of one seed see the same training and held-out episodes; other seeds use other splits,
so ``--seeds 0,1,2`` averages over initialisations and held-out sets. Parameter counts differ by memory
type (the memory modules), the transformer's width/depth/window do not; the table prints both.

Use Memory Maze episodes recorded with the explore policy (they revisit places), e.g.
``python -m collect.record --env memory-maze-9x9 --episodes 40 --steps 500 --policy explore --out data/mm9``.
A recording still in progress is fine: the complete episode files present at the start are
hard-linked into ``<out>/data`` and every model uses that frozen snapshot (``--reuse`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import format_table, machine_description, markdown_table, write_json
from rad_env.runtime import set_cpu_threads

MEMORIES = ("lstm", "linear", "none", "full")
LABELS = {"lstm": "lstm (RAD)", "linear": "linear memory", "none": "none (window only)", "full": "full attention"}
#: TrainConfig fields that must match for --reuse to take an existing run.
REUSE_KEYS = ("data", "preset", "model", "steps", "time_limit", "batch_size", "seed", "held_out", "lr", "warmup")


# -- data --------------------------------------------------------------------------------------
def snapshot_data(source: Path, dest: Path, max_episode_files: int, reuse: bool) -> Path:
    """Freeze the complete episode files of ``source`` (a directory) into ``dest`` as hard links
    (copies across file systems). An existing snapshot is kept with ``reuse``."""
    if reuse and dest.is_dir() and any(dest.rglob("*.h5")):
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    files = sorted(source.rglob("*.h5"))  # only complete files: writers rename *.h5.tmp when done
    if max_episode_files:
        files = files[:max_episode_files]
    if not files:
        raise SystemExit(f"error: no complete episode files (*.h5) under {source}")
    for file in files:
        target = dest / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)
    return dest


def record_quick_data(out: Path) -> Path:
    """--quick without data: record three short explore episodes of the real Memory Maze."""
    from collect.record import RecordConfig, record

    path = out / "quick_data"
    if not (path.is_dir() and any(path.rglob("*.h5"))):
        print(f"--quick: no data given/found, recording 3 short Memory Maze episodes into {path}", flush=True)
        summary = record(RecordConfig(env="memory-maze-9x9", out=str(path), episodes=3, steps=40, policy="explore",
                                      resume=path.exists(), progress=False))
        if summary["problems"]:
            raise SystemExit(f"error: recording failed: {summary['problems']}")
    return path


# -- train / evaluate ---------------------------------------------------------------------------
def train_config(args, data: Path, memory: str, seed: int):
    from rad_env.train import TRAIN_PRESETS, TrainConfig

    values = {**TRAIN_PRESETS[args.preset]}
    values.update(data=str(data), out=str(Path(args.out) / "runs" / f"{memory}_seed{seed}"), preset=args.preset,
                  model={"memory": memory}, steps=args.steps, time_limit=float(args.time_limit), seed=seed,
                  held_out=args.held_out, device=args.device, tensorboard=False, log_every=50,
                  ckpt_every=max(args.steps, 1))
    if args.batch_size:
        values["batch_size"] = args.batch_size
    return TrainConfig(**values)


def reusable(cfg, args) -> dict[str, Any] | None:
    """The summary of an earlier run with the same settings, if --reuse and it finished."""
    import json

    from rad_env.checkpoint import CheckpointError, load_checkpoint

    run = Path(cfg.out)
    if not args.reuse or not (run / "model.pt").exists() or not (run / "summary.json").exists():
        return None
    try:
        saved = load_checkpoint(run / "model.pt")["train_config"]
    except CheckpointError as exc:
        print(f"  not reusing {run}: {exc}")
        return None
    wanted = asdict(cfg)
    differ = [k for k in REUSE_KEYS if saved.get(k) != wanted[k]]
    if differ:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted[k]!r}" for k in differ)
        print(f"  not reusing {run}: settings differ ({changes})")
        return None
    return json.loads((run / "summary.json").read_text())


def run_one(args, data: Path, memory: str, seed: int) -> dict[str, Any]:
    from rad_env.evaluate import EvalConfig, evaluate
    from rad_env.train import train

    cfg = train_config(args, data, memory, seed)
    summary = reusable(cfg, args)
    if summary is not None:
        print(f"[{memory} seed {seed}] reusing {cfg.out} ({summary['step']} steps)", flush=True)
        reused = True
    else:
        if Path(cfg.out).exists():
            shutil.rmtree(cfg.out)  # this script's own run folder: start clean (metrics.csv appends)
        limit = f", time limit {args.time_limit:.0f} s" if args.time_limit else ""
        print(f"[{memory} seed {seed}] training {args.steps} steps{limit} -> {cfg.out}", flush=True)
        summary = train(cfg)
        reused = False
    print(f"[{memory} seed {seed}] evaluating: context {args.context}, horizon {args.horizon}", flush=True)
    start = time.perf_counter()
    result = evaluate(EvalConfig(checkpoint=summary["checkpoint"], episodes=args.episodes, context=args.context,
                                 horizon=args.horizon, sampling_steps=args.sampling_steps, device=args.device,
                                 seed=seed, out=str(Path(args.out) / "eval" / f"{memory}_seed{seed}"),
                                 video_episodes=args.videos))
    return {"memory": memory, "seed": seed, "reused": reused, "train": summary, "batch_size": cfg.batch_size,
            "eval_seconds": time.perf_counter() - start, "episodes": result["episodes"],
            "window": result["window"], "table": result["table"], "lpips": result["lpips"]}


# -- aggregation / output -----------------------------------------------------------------------
def aggregate(runs: list[dict[str, Any]], memories: list[str]) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """rows (frame groups, in evaluate's order) and ``agg[row][memory] = {frames, psnr, psnr_std, ...}``."""
    rows: list[str] = []
    for run in runs:
        rows += [name for name in run["table"] if name not in rows]
    agg: dict[str, dict[str, dict]] = {}
    for row in rows:
        agg[row] = {}
        for memory in memories:
            found = [r["table"][row] for r in runs if r["memory"] == memory and row in r["table"]]
            if not found:
                continue
            entry = {"frames": int(sum(f["frames"] for f in found)), "seeds": len(found)}
            for metric in ("psnr", "ssim"):
                values = np.array([f[metric] for f in found], dtype=float)
                entry[metric] = float(values.mean())
                entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
            agg[row][memory] = entry
    return rows, agg


def cell(entry: dict | None, metric: str, digits: int) -> str:
    if entry is None:
        return "-"
    text = f"{entry[metric]:.{digits}f}"
    if entry.get(f"{metric}_std") is not None:
        text += f"±{entry[f'{metric}_std']:.{digits}f}"
    return text


def result_rows(rows: list[str], agg: dict, memories: list[str], seeds: int) -> tuple[list[str], list[list[Any]]]:
    headers = ["frames", "n" if seeds == 1 else "n (all seeds)"]
    for memory in memories:
        headers += [f"{memory} PSNR", f"{memory} SSIM"]
    table = []
    for row in rows:
        first = next(iter(agg[row].values()))
        line: list[Any] = [row, first["frames"]]
        for memory in memories:
            entry = agg[row].get(memory)
            line += [cell(entry, "psnr", 2), cell(entry, "ssim", 3)]
        table.append(line)
    return headers, table


def train_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    headers = ["model", "seed", "params (M)", "steps", "train s", "train frames/s", "final loss", "eval s", "reused"]
    rows = [[LABELS.get(r["memory"], r["memory"]), r["seed"], r["train"]["parameters"] / 1e6, r["train"]["step"],
             r["train"]["seconds"], r["train"]["frames_per_s"], r["train"]["loss"], r["eval_seconds"],
             "yes" if r["reused"] else "no"] for r in runs]
    return headers, rows


def verdict(agg: dict, memories: list[str], has_positions: bool, horizon: int, window: int) -> list[str]:
    """Plain-language comparison on the frames where memory matters, and why a split is missing."""
    lines = []
    for row in ("beyond window, revisit", "beyond window, new place"):
        if row not in agg or "lstm" not in agg[row] or "none" not in agg[row]:
            continue
        gain = agg[row]["lstm"]["psnr"] - agg[row]["none"]["psnr"]
        lines.append(f"{row}: lstm - none = {gain:+.2f} dB PSNR"
                     + (f", full - none = {agg[row]['full']['psnr'] - agg[row]['none']['psnr']:+.2f} dB"
                        if "full" in agg[row] else ""))
    if not any("revisit" in r for r in agg):
        if not has_positions:
            reason = "the data has no positions (agent_pos/agent_dir or x/z/yaw extras)"
        elif horizon < window:
            reason = f"no dreamed frame lies beyond the window (horizon {horizon} < window {window})"
        else:
            reason = "no dreamed frame beyond the window revisits a place seen earlier"
        lines.append(f"no revisit split: {reason}")
    return lines


# -- main ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/mm9", help="episode directory or file (%(default)s)")
    p.add_argument("--out", default="runs/memory_experiment", help="runs, evaluations, results.json/.md (%(default)s)")
    p.add_argument("--memories", default="lstm,none,full", help=f"comma list of {','.join(MEMORIES)} (%(default)s)")
    p.add_argument("--preset", default="tiny", choices=("tiny", "small", "paper"))
    p.add_argument("--steps", type=int, default=2000, help="training steps per model (%(default)s)")
    p.add_argument("--time-limit", type=float, default=0.0,
                   help="seconds of training per model, 0 = none (each model stops at --steps or here)")
    p.add_argument("--batch-size", type=int, default=0, help="0: the preset's")
    p.add_argument("--context", type=int, default=4, help="real frames observed before dreaming (%(default)s)")
    p.add_argument("--horizon", type=int, default=128, help="dreamed frames per episode (%(default)s)")
    p.add_argument("--episodes", type=int, default=8, help="held-out episodes evaluated (%(default)s)")
    p.add_argument("--held-out", type=int, default=0, help="episodes held out of training (0: --episodes)")
    p.add_argument("--seeds", default="0", help="comma list of seeds; >1 reports mean±std (%(default)s)")
    p.add_argument("--sampling-steps", type=int, default=0, help="Euler steps per dreamed frame (0: model default)")
    p.add_argument("--max-episode-files", type=int, default=0, help="use only the first N episode files (0: all)")
    p.add_argument("--videos", type=int, default=1, help="real|dream videos written per model (%(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--reuse", action="store_true", help="keep the data snapshot and finished runs with equal settings")
    p.add_argument("--quick", action="store_true", help="seconds-long pipeline check (2 steps, horizon 8)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    memories = [m.strip() for m in args.memories.split(",") if m.strip()]
    bad = [m for m in memories if m not in MEMORIES]
    if bad or not memories:
        print(f"error: unknown memory types {bad}; choose from {MEMORIES}", file=sys.stderr)
        return 2
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        print(f"error: --seeds must be a comma list of ints, got {args.seeds!r}", file=sys.stderr)
        return 2
    if args.quick:
        args.steps, args.batch_size, args.horizon, args.episodes = 2, args.batch_size or 2, 8, 2
        args.max_episode_files = args.max_episode_files or 5
        args.videos = 0
    args.held_out = args.held_out or args.episodes
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    set_cpu_threads(args.threads or -1)  # 0: torch default

    source = Path(args.data)
    if not source.exists():
        if not args.quick:
            print(f"error: no episode data at {source}; record some first, e.g.\n  python -m collect.record "
                  f"--env memory-maze-9x9 --episodes 40 --steps 500 --policy explore --workers 2 --out {source}",
                  file=sys.stderr)
            return 2
        source = record_quick_data(out)
    data = snapshot_data(source, out / "data", args.max_episode_files, args.reuse) if source.is_dir() else source
    data = data.resolve()

    from rad_env.data import EpisodeStore

    store = EpisodeStore(data)
    n_episodes = len(store)
    if n_episodes < 2:
        print(f"error: {data} holds {n_episodes} episode(s); need at least 2 (train + held out)", file=sys.stderr)
        return 2
    if args.held_out > n_episodes // 2:
        args.held_out = max(1, n_episodes // 2)
        print(f"note: only {n_episodes} episodes: holding out {args.held_out} (at least half are kept for training)")
    shortest = min(ref.num_frames for ref in store.episodes)
    if args.context + args.horizon > shortest:
        horizon = shortest - args.context
        print(f"note: horizon {args.horizon} + context {args.context} exceeds the shortest episode "
              f"({shortest} frames): horizon set to {horizon}")
        args.horizon = horizon
    first = store.group(store.episodes[0])
    has_positions = "agent_pos" in first or all(k in first for k in ("x", "z", "yaw"))
    store.close()

    settings = {"data_source": str(Path(args.data)), "data_snapshot": str(data), "episodes_in_data": n_episodes,
                "memories": memories, "seeds": seeds, **{k: v for k, v in vars(args).items()
                                                         if k not in ("memories", "seeds", "data", "out")},
                "out": str(out), "agent_positions_in_data": has_positions}
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)

    runs = []
    for seed in seeds:
        for memory in memories:
            runs.append(run_one(args, data, memory, seed))
    rows, agg = aggregate(runs, memories)
    window = runs[0]["window"]
    headers, table = result_rows(rows, agg, memories, len(seeds))
    t_headers, t_rows = train_rows(runs)
    lpips = runs[0]["lpips"]
    summary_lines = verdict(agg, memories, has_positions, args.horizon, window)
    setting_line = (f"preset {args.preset}, steps {args.steps}"
                    + (f" (time limit {args.time_limit:.0f} s per model)" if args.time_limit else "")
                    + f", batch {runs[0]['batch_size']}, seeds {seeds}, "
                    f"data {n_episodes} episodes ({args.held_out} held out), context {args.context}, "
                    f"horizon {args.horizon}, window {window}, evaluated held-out episodes "
                    + ", ".join(f"seed {s}: {next(r['episodes'] for r in runs if r['seed'] == s)}" for s in seeds))

    print("\n== memory experiment " + ("(--quick: pipeline check only, numbers are meaningless) " if args.quick else "")
          + "==")
    print(setting_line)
    print(format_table(t_headers, t_rows))
    print()
    print(format_table(headers, table))
    for line in summary_lines:
        print(line)
    print(lpips)

    result = {"settings": settings, "machine": machine_description(), "window": window, "runs": runs,
              "aggregate": agg, "rows": rows, "verdict": summary_lines, "lpips": lpips}
    write_json(out / "results.json", result)
    md = [f"# Memory experiment{' (--quick)' if args.quick else ''}", "", setting_line, "",
          markdown_table(t_headers, t_rows), "",
          "PSNR (dB) / SSIM on dreamed frames" + (" (mean±std over seeds; a row without ± had frames "
                                                  "in one seed only)" if len(seeds) > 1 else "") + ":", "",
          markdown_table(headers, table), ""]
    md += [f"- {line}" for line in summary_lines] + [f"- {lpips}", ""]
    (out / "results.md").write_text("\n".join(md))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
