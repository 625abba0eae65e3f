"""Does RAD's recurrent memory help beyond the attention window? The paper's central claim, small scale.

Trains one world model per memory type and seed with identical settings (preset, data, steps or wall
clock, batch) through ``rad_env.train.train``: ``lstm`` (RAD: sliding window + recurrent memory),
``linear`` (the same window + a linear recurrence), ``none`` (the sliding window alone) and ``full``
(attention over every past frame). Each model is then evaluated by ``rad_env.evaluate.evaluate`` on
the same held-out episodes:

* memory retrieval (Po et al. 2025, the RAD paper): after the first ``--retrieval-prefix`` real frames
  of an episode, dream ``--retrieval-horizon`` frames from the true actions, once from a state that
  observed the whole prefix (*full prefix*) and once from a fresh state that observed only its last
  window (*window only*), with identical noise. Scored on *revisits* (places seen in the prefix, out of
  every window: only memory can bring them back) and *new places*. The gain (full - window) is the
  memory's measured effect; a memory-less model (``none``) has a gain of 0 by construction.
* the open-loop rollout: ``--context`` real frames, then ``--horizon`` dreamed; PSNR/SSIM per horizon
  bucket beside the copy-last-frame and mean-frame baselines.
* cost: per-frame ``imagine()`` time and state size at frame ``--cost-near`` vs ``--cost-far`` per memory
  type (``benchmarks.speed.bench_memory``, randomly initialised tiny models: the cost of the
  architecture, not of the trained weights).

Results: ``<out>/results.md`` and ``results.json`` (mean±std over seeds), each model's evaluation
(``metrics.json``, PNG grids, real | dream videos) under ``<out>/eval/<memory>_seed<k>/``, its training
run under ``<out>/runs/<memory>_seed<k>/``.

Data. Train on Memory Maze episodes that revisit places (explore policy); evaluate on episodes recorded
with another seed, ideally with the retrace policy (explore, then walk the explored cells again),
at least prefix + horizon frames long::

    python -m collect.record --env memory-maze-9x9 --episodes 64 --steps 500 --policy explore --seed 0 \\
        --workers 2 --out data/mm9
    python -m collect.record --env memory-maze-9x9 --episodes 16 --steps 400 --policy retrace \\
        --explore-steps 256 --seed 1 --workers 2 --out data/mm9_retrace

Without ``--eval-data`` the training data's held-out episodes are used. A recording still in
progress is fine: the complete episode files present at the start are hard-linked into
``<out>/data`` (``<out>/eval_data``) and every model uses that frozen snapshot (``--reuse`` keeps it and
any finished run with equal settings, and that run's evaluation if it was made with equal settings).

CPU (hours; 2 seeds x 4 memories, 30 min of training each, one thread per process)::

    python -m benchmarks.memory_experiment --data data/mm9 --eval-data data/mm9_retrace \\
        --memories lstm,linear,none,full --seeds 0,1 --time-limit 1800 --steps 2000 --threads 1 \\
        --out runs/memory_experiment

GPU (one H100/H200: the small preset, 3 seeds, 20 min each, truncated backprop through time for
the bounded memories so the memory learns over whole episodes)::

    python -m benchmarks.memory_experiment --data data/mm9 --eval-data data/mm9_retrace --device cuda \\
        --preset small --memories lstm,linear,none,full --seeds 0,1,2 --time-limit 1200 --steps 20000 \\
        --tbptt --retrieval-prefix 256 --retrieval-horizon 128 --episodes 16 --out runs/memory_experiment_gpu

From a trained model (CPU hours are too few to train four models to quality from scratch): ``--init CKPT``
starts every memory type from that checkpoint's transformer, stem and motion prior, with its own memory
(cells and read branch) fresh and the read closed, and fresh reward/termination heads, so all start as
the same window-only model and differ only in what their memory learns in the same fine-tuning::

    python -m benchmarks.memory_experiment --data data/mix --eval-data data/mm9_retrace \\
        --init rad_env/assets/memory_maze_tiny.pt --memories lstm,linear,none,full --seeds 0,1 \\
        --time-limit 600 --steps 300 --lr 3e-4 --warmup 20 --rollout-prob 0.5 --tbptt --threads 1 \\
        --out runs/memory_experiment_init

    python -m benchmarks.memory_experiment --quick    # pipeline check, numbers meaningless (~1.5 min on
                                                      # 2 busy CPU cores for 4 memories x 2 seeds)

``--tbptt`` trains lstm/linear/none on consecutive chunks of whole episodes (state carried, detached);
full attention cannot carry a bounded window and always trains on plain windows (the output says so).
With ``--time-limit`` every model gets the same wall clock and stops at ``--steps`` or the limit,
whichever comes first; the learning-rate schedule is planned for ``--steps``. A seed fixes the model
initialisation, the batch order and the train/held-out split: all memory types of one seed see the
same episodes. The cost of full attention at frame 2000 takes minutes on a CPU (it attends to, and
copies, every earlier frame); ``--cost-far`` or ``--no-cost`` shorten it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks._common import format_table, machine_description, markdown_table, write_json
from rad_env.cli import UserError, run_cli
from rad_env.runtime import set_cpu_threads

PROG = "memory_experiment"
MEMORIES = ("lstm", "linear", "none", "full")
BOUNDED = ("lstm", "linear", "none")  # what --tbptt applies to
LABELS = {"lstm": "lstm (RAD)", "linear": "linear memory", "none": "none (window only)", "full": "full attention"}
#: TrainConfig fields that must match for --reuse to take an existing run.
REUSE_KEYS = ("data", "preset", "model", "steps", "time_limit", "batch_size", "seed", "held_out", "lr", "warmup",
              "tbptt", "init", "rollout_prob")
#: lstm "close to full attention" on revisits: at most this many dB below it.
CLOSE_DB = 1.0
#: "constant cost": per-frame time at the far frame at most this multiple of the near frame's.
FLAT_TIME = 1.5
#: PSNR differences smaller than this (dB) count as ties, neither better nor worse.
TIE_DB = 0.01
#: --quick's recording: retrace-policy steps of exploring before retracing.
QUICK_EXPLORE_STEPS = 12


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
        raise UserError(f"no complete episode files (*.h5) under {source}")
    for file in files:
        target = dest / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)
    return dest


def record_quick_data(out: Path) -> Path:
    """--quick without data: record three short retrace episodes of the real Memory Maze (12 steps of
    exploring, then the explored cells again: revisits within the quick retrieval prefix + horizon)."""
    from collect.record import PolicyOptions, RecordConfig, record

    path = out / "quick_data"
    if not (path.is_dir() and any(path.rglob("*.h5"))):
        print(f"--quick: no data given/found, recording 3 short Memory Maze episodes into {path}", flush=True)
        kwargs = PolicyOptions(explore_steps=QUICK_EXPLORE_STEPS).kwargs_for("retrace")
        summary = record(RecordConfig(env="memory-maze-9x9", out=str(path), episodes=3, steps=40, policy="retrace",
                                      policy_kwargs=kwargs, resume=path.exists(), progress=False))
        if summary["problems"]:
            raise UserError(f"recording failed: {summary['problems']}")
    return path


def describe_store(path: Path) -> dict[str, Any]:
    """Episode count, shortest/longest episode and whether places are recorded (revisits need them)."""
    from rad_env.data import EpisodeStore

    store = EpisodeStore(path)
    try:
        lengths = [ref.num_frames for ref in store.episodes]
        if not lengths:
            raise UserError(f"{path} holds no episodes")
        first = store.group(store.episodes[0])
        positions = ("agent_pos" in first and "agent_dir" in first) or all(k in first for k in ("x", "z", "yaw"))
        return {"episodes": len(lengths), "shortest": min(lengths), "longest": max(lengths),
                "positions": bool(positions), "seed": store.meta.seed if store.meta is not None else None}
    finally:
        store.close()


# -- train / evaluate ---------------------------------------------------------------------------
def backbone_checkpoint(source: str, memory: str, overrides: dict[str, Any], dest: Path) -> Path:
    """Write ``dest``: a ``memory`` model holding ``source``'s weights (transformer, stem, motion prior)
    except its memory, whose cells start fresh and whose read starts closed (the AdaLN rows of the read
    branch zeroed), and its reward/termination heads, which start fresh (their input depends on the
    memory). Every memory type made from one source computes the same window-only dream at first."""
    import torch

    from rad_env.checkpoint import CheckpointError, load_world_model, save_checkpoint
    from rad_env.model import RADConfig, WorldModel

    try:
        trained, ckpt = load_world_model(source)
    except CheckpointError as exc:
        raise UserError(f"--init: {exc}") from None
    cfg = RADConfig.from_dict({**trained.config.to_dict(), **overrides, "memory": memory})
    model = WorldModel(cfg)
    weights = trained.state_dict()
    fresh = model.state_dict()
    d = cfg.dim
    for name, value in fresh.items():
        if name.startswith("head.") or ".memory." in name or name not in weights:
            continue
        if name.endswith((".ada.weight", ".ada.bias")):
            value.zero_()
            value[:9 * d] = weights[name][:9 * d]  # spatial, temporal, MLP modulation; the read stays closed
        elif weights[name].shape == value.shape:
            value.copy_(weights[name])
        else:
            raise UserError(f"--init {source}: {name} has shape {tuple(weights[name].shape)}, a {memory} model "
                            f"needs {tuple(value.shape)}", hint="--model may not resize the network with --init")
    model.load_state_dict(fresh)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        save_checkpoint(dest, model, train_config={"init_from": str(source), "memory": memory},
                        data=ckpt["data"], step=0)
    return dest


def train_config(args, data: Path, memory: str, seed: int):
    from rad_env.train import TRAIN_PRESETS, TrainConfig

    values = {**TRAIN_PRESETS[args.preset]}
    values.update(data=str(data), out=str(Path(args.out) / "runs" / f"{memory}_seed{seed}"), preset=args.preset,
                  model={**args.model_overrides, "memory": memory}, steps=args.steps,
                  time_limit=float(args.time_limit), seed=seed, held_out=args.held_out, device=args.device,
                  tensorboard=False, log_every=max(1, min(50, args.steps)), ckpt_every=max(args.steps, 1),
                  tbptt=bool(args.tbptt and memory in BOUNDED), threads=-1, overwrite=True,
                  rollout_prob=args.rollout_prob)
    if args.batch_size:
        values["batch_size"] = args.batch_size
    if args.lr:
        values["lr"] = args.lr
    if args.warmup >= 0:
        values["warmup"] = args.warmup
    if args.init:
        values["init"] = str(Path(args.out) / "init" / f"{memory}.pt")
    return TrainConfig(**values)


def reusable(cfg, args) -> dict[str, Any] | None:
    """The summary of an earlier run with the same settings, if --reuse and it finished."""
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
    defaults = asdict(type(cfg)())  # runs saved before a setting existed had its default
    differ = [k for k in REUSE_KEYS if saved.get(k, defaults[k]) != wanted[k]]
    if differ:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted[k]!r}" for k in differ)
        print(f"  not reusing {run}: settings differ ({changes})")
        return None
    return json.loads((run / "summary.json").read_text())


def eval_config(args, checkpoint: str, memory: str, seed: int):
    from rad_env.evaluate import EvalConfig

    return EvalConfig(checkpoint=checkpoint, data=str(args.eval_snapshot or ""), episodes=args.episodes,
                      context=args.context, horizon=args.horizon, sampling_steps=args.sampling_steps,
                      retrieval=True, retrieval_prefix=args.retrieval_prefix,
                      retrieval_horizon=args.retrieval_horizon, denoiser=False, probes=args.probes, rewards=False,
                      device=args.device, threads=-1, seed=seed,
                      out=str(Path(args.out) / "eval" / f"{memory}_seed{seed}"))


def earlier_evaluation(ecfg) -> dict[str, Any] | None:
    """The result an evaluation with exactly these settings left in its folder (a reused run's), if any."""
    path = Path(ecfg.out) / "metrics.json"
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if result.get("config") == json.loads(json.dumps(asdict(ecfg))) else None


def run_one(args, data: Path, memory: str, seed: int) -> dict[str, Any]:
    """Train (or reuse) and evaluate one model; the parts of evaluate()'s result the tables need."""
    from rad_env.evaluate import evaluate
    from rad_env.train import train

    cfg = train_config(args, data, memory, seed)
    summary = reusable(cfg, args)
    tag = f"[{memory} seed {seed}]"
    if summary is not None:
        print(f"{tag} reusing {cfg.out} ({summary['step']} steps)", flush=True)
        reused = True
    else:
        if Path(cfg.out).exists():
            shutil.rmtree(cfg.out)  # this script's own run folder: start clean
        limit = f", time limit {args.time_limit:.0f} s" if args.time_limit else ""
        mode = ", tbptt" if cfg.tbptt else (", plain windows (no tbptt for full attention)"
                                            if args.tbptt else "")
        print(f"{tag} training {args.steps} steps{limit}{mode} -> {cfg.out}", flush=True)
        summary = train(cfg)
        reused = False
    ecfg = eval_config(args, summary["checkpoint"], memory, seed)
    start = time.perf_counter()
    result = earlier_evaluation(ecfg) if reused else None
    if result is not None:
        print(f"{tag} reusing its evaluation in {ecfg.out}", flush=True)
    else:
        print(f"{tag} evaluating: rollout context {args.context} + horizon {args.horizon}, retrieval prefix "
              f"{args.retrieval_prefix} + horizon {args.retrieval_horizon}", flush=True)
        result = evaluate(ecfg)
    run = {"memory": memory, "seed": seed, "reused": reused, "train": summary, "batch_size": cfg.batch_size,
           "tbptt": cfg.tbptt, "eval_seconds": time.perf_counter() - start, "episodes": result["episodes"],
           "provenance": result["provenance"], "window": result["model"]["window"],
           "parameters": result["model"]["parameters"], "rollout": result["rollout"],
           "pictures": result["pictures"], "videos": result.get("videos", []), "lpips": result["lpips"],
           "eval_dir": str(Path(args.out) / "eval" / f"{memory}_seed{seed}")}
    if "retrieval" in result:
        run["retrieval"] = result["retrieval"]
    else:
        run["retrieval_skipped"] = result.get("retrieval_skipped", "not run")
    for key in ("memory_retention", "action_probe", "loop_closure", "probes_skipped"):
        if key in result:
            run[key] = result[key]
    return run


def measure_cost(args, memories: list[str]) -> dict[str, Any]:
    """Per-frame imagine() time and state size at two frames per memory type (benchmarks.speed)."""
    from benchmarks.speed import bench_memory
    from rad_env.runtime import resolve_device

    speed_args = argparse.Namespace(device=args.device, memories=memories, near=args.cost_near, far=args.cost_far,
                                    probe_frames=args.cost_probes, quick=args.quick, verbose=False)
    print(f"cost: imagine() time and state size at frame {args.cost_near} vs {args.cost_far} "
          f"(random tiny models)", flush=True)
    start = time.perf_counter()
    result = bench_memory(speed_args)
    result["device"] = str(resolve_device(args.device))
    result["seconds"] = time.perf_counter() - start
    result.pop("table", None)
    return result


# -- aggregation ----------------------------------------------------------------------------------
def mean_std(values: Sequence[float | None]) -> dict[str, Any] | None:
    """{mean, std (None with one value), n} over the values that are not None; None if there are none."""
    found = np.array([v for v in values if v is not None], dtype=float)
    if not len(found):
        return None
    return {"mean": float(found.mean()), "std": float(found.std(ddof=1)) if len(found) > 1 else None,
            "n": int(len(found))}


def fmt(entry: dict[str, Any] | None, digits: int = 2, signed: bool = False) -> str:
    """``mean±std`` (``mean`` with one value, ``-`` with none)."""
    if entry is None:
        return "-"
    text = f"{entry['mean']:{'+' if signed else ''}.{digits}f}"
    if entry.get("std") is not None:
        text += f"±{entry['std']:.{digits}f}"
    return text


def _row(table: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((r for r in table if r["frames"] == name), None)


def aggregate_retrieval(runs: list[dict[str, Any]], memories: list[str]) -> dict[str, dict[str, Any]]:
    """Per memory: frame counts, full-prefix / window-only PSNR and SSIM on revisits and new places, and
    the gains (full - window), each mean±std over the seeds that had such frames."""
    agg: dict[str, dict[str, Any]] = {}
    for memory in memories:
        mine = [r for r in runs if r["memory"] == memory]
        done = [r["retrieval"] for r in mine if "retrieval" in r]
        entry: dict[str, Any] = {"seeds": len(done), "skipped": [f"seed {r['seed']}: {r['retrieval_skipped']}"
                                                                   for r in mine if "retrieval" not in r]}
        for split, key in (("revisit", "revisit frames"), ("new place", "new place frames")):
            entry[f"{split} frames"] = int(sum(d[key] for d in done))
            for who in ("full prefix", "window only", "copy-last", "mean frame"):
                for metric in ("psnr", "ssim"):
                    values = [(_row(d["table"], split) or {}).get(f"{who} {metric}") for d in done]
                    entry[f"{split} {who} {metric}"] = mean_std(values)
        entry["gain on revisits"] = mean_std([d["gain on revisits"] for d in done])
        entry["gain on new places"] = mean_std([d["gain on new places"] for d in done])
        agg[memory] = entry
    return agg


def paired(runs: list[dict[str, Any]], a: str, b: str, split: str = "revisit",
           who: str = "full prefix") -> list[float]:
    """Per seed: ``a``'s minus ``b``'s ``who`` PSNR on ``split`` frames of the retrieval (same clips)."""
    diffs = []
    for seed in sorted({r["seed"] for r in runs}):
        values = []
        for memory in (a, b):
            run = next((r for r in runs if r["memory"] == memory and r["seed"] == seed and "retrieval" in r), None)
            row = _row(run["retrieval"]["table"], split) if run else None
            values.append(row[f"{who} psnr"] if row else None)
        if None not in values:
            diffs.append(values[0] - values[1])
    return diffs


def aggregate_rollout(runs: list[dict[str, Any]], memories: list[str]) -> tuple[list[str], dict[str, dict]]:
    """Rollout rows (evaluate's order) and ``agg[row]``: n (frames over all seeds), the baselines (one value per seed:
    every memory of a seed sees the same clips) and each memory's model PSNR/SSIM, mean±std over seeds."""
    rows: list[str] = []
    for run in runs:
        rows += [r["frames"] for r in run["rollout"] if r["frames"] not in rows]
    agg: dict[str, dict] = {}
    seeds = sorted({r["seed"] for r in runs})
    for name in rows:
        entry: dict[str, Any] = {}
        per_seed = []
        for seed in seeds:
            found = [_row(r["rollout"], name) for r in runs if r["seed"] == seed]
            found = [f for f in found if f is not None]
            if found:
                per_seed.append(found[0])
        entry["n"] = int(sum(f["n"] for f in per_seed))
        entry["seeds"] = len(per_seed)
        for who in ("copy-last", "mean frame"):
            for metric in ("psnr", "ssim"):
                entry[f"{who} {metric}"] = mean_std([f[f"{who} {metric}"] for f in per_seed])
        for memory in memories:
            found = [_row(r["rollout"], name) for r in runs if r["memory"] == memory]
            found = [f for f in found if f is not None]
            for metric in ("psnr", "ssim"):
                entry[f"{memory} {metric}"] = mean_std([f[f"model {metric}"] for f in found])
        agg[name] = entry
    return rows, agg


def aggregate_training(runs: list[dict[str, Any]], memories: list[str]) -> dict[str, dict[str, Any]]:
    agg = {}
    for memory in memories:
        mine = [r for r in runs if r["memory"] == memory]
        agg[memory] = {"parameters": mine[0]["parameters"], "tbptt": mine[0]["tbptt"],
                       "steps": mean_std([r["train"]["step"] for r in mine]),
                       "seconds": mean_std([r["train"]["seconds"] for r in mine]),
                       "frames_per_s": mean_std([r["train"]["frames_per_s"] for r in mine]),
                       "loss": mean_std([r["train"]["loss"] for r in mine]),
                       "eval_seconds": mean_std([r["eval_seconds"] for r in mine]),
                       "reused": sum(r["reused"] for r in mine)}
    return agg


# -- tables -------------------------------------------------------------------------------------------
def retrieval_table(agg: dict[str, dict[str, Any]], memories: list[str]) -> tuple[list[str], list[list[Any]]]:
    headers = ["memory", "seeds", "revisit n", "revisit: full prefix", "revisit: window only", "gain on revisits",
               "new n", "new: full prefix", "new: window only", "gain on new places", "copy-last (revisit)"]
    rows = []
    for memory in memories:
        a = agg[memory]
        rows.append([LABELS[memory], a["seeds"], a["revisit frames"], fmt(a["revisit full prefix psnr"]),
                     fmt(a["revisit window only psnr"]), fmt(a["gain on revisits"], signed=True),
                     a["new place frames"], fmt(a["new place full prefix psnr"]),
                     fmt(a["new place window only psnr"]), fmt(a["gain on new places"], signed=True),
                     fmt(a["revisit copy-last psnr"])])
    return headers, rows


def rollout_table(rows: list[str], agg: dict[str, dict], memories: list[str]) -> tuple[list[str], list[list[Any]]]:
    headers = ["frames", "n", "seeds", "copy-last", "mean frame"] + [LABELS[m] for m in memories]

    def both(entry: dict, key: str) -> str:
        return f"{fmt(entry[f'{key} psnr'])} / {fmt(entry[f'{key} ssim'], 3)}"

    table = []
    for name in rows:
        e = agg[name]
        table.append([name, e["n"], e["seeds"], both(e, "copy-last"), both(e, "mean frame")]
                     + [both(e, m) for m in memories])
    return headers, table


def training_table(agg: dict[str, dict[str, Any]], memories: list[str]) -> tuple[list[str], list[list[Any]]]:
    headers = ["memory", "params (M)", "training", "steps", "train s", "train frames/s", "final loss", "eval s",
               "reused"]
    rows = [[LABELS[m], f"{agg[m]['parameters'] / 1e6:.2f}", "tbptt" if agg[m]["tbptt"] else "windows",
             fmt(agg[m]["steps"], 0), fmt(agg[m]["seconds"], 0), fmt(agg[m]["frames_per_s"], 1),
             fmt(agg[m]["loss"], 4), fmt(agg[m]["eval_seconds"], 0), agg[m]["reused"]] for m in memories]
    return headers, rows


def cost_table(cost: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    n, f = cost["near"], cost["far"]
    headers = ["memory", f"ms/frame @{n}", f"ms/frame @{f}", "time x", f"state MB @{n}", f"state MB @{f}", "state x"]
    rows = []
    for r in cost["results"]:
        near, far = r["frames"][str(n)], r["frames"][str(f)]
        rows.append([LABELS[r["memory"]], f"{near['ms_per_frame']:.1f}", f"{far['ms_per_frame']:.1f}",
                     f"{r['time_ratio_far_near']:.2f}", f"{near['state_bytes'] / 1e6:.3f}",
                     f"{far['state_bytes'] / 1e6:.3f}", f"{r['state_ratio_far_near']:.2f}"])
    return headers, rows


# -- verdict ------------------------------------------------------------------------------------------
def _diff_text(diffs: list[float]) -> str:
    m = mean_std(diffs)
    if m is None:
        return "n/a"
    up, down = sum(d > TIE_DB for d in diffs), sum(d < -TIE_DB for d in diffs)
    return (f"{fmt(m, signed=True)} dB (higher in {up}, lower in {down}, tied (within {TIE_DB:g} dB) in "
            f"{len(diffs) - up - down} of {len(diffs)} seed{'s' if len(diffs) > 1 else ''})")


def verdict(runs: list[dict[str, Any]], agg: dict[str, dict[str, Any]], memories: list[str],
            cost: dict[str, Any] | None, has_positions: bool = True) -> list[str]:
    """Plain-language lines: the memory's measured effect, model-vs-model differences on revisits, and
    whether RAD's expected ordering holds (or why it cannot be judged)."""
    lines = []
    if not has_positions:
        lines.append("no revisit split: the evaluation data has no positions (agent_pos/agent_dir or x/z/yaw "
                     "extras)")
    for memory in memories:
        for reason in agg.get(memory, {}).get("skipped", []):
            lines.append(f"{memory}: memory retrieval skipped ({reason})")
    gains = [f"{m} {fmt(agg[m]['gain on revisits'], signed=True)}" for m in memories
             if m in agg and agg[m]["gain on revisits"] is not None]
    if gains:
        lines.append("memory gain on revisits (full prefix - window only, dB): " + ", ".join(gains)
                     + ("; none is 0 by construction (no state beyond the window)" if "none" in memories else ""))
    elif has_positions and any(agg[m]["seeds"] for m in memories if m in agg):
        lines.append("no revisit frames: no dreamed frame after the prefix revisits a place seen before the "
                     "window-only dream's frames (longer prefix/horizon, or retrace-policy evaluation data)")
    for other in ("lstm", "linear", "full"):
        if other in memories and "none" in memories:
            for split in ("revisit", "new place"):
                diffs = paired(runs, other, "none", split)
                if diffs:
                    lines.append(f"{split}s, full-prefix PSNR: {other} - none = {_diff_text(diffs)}")
    lines.append(ordering(runs, memories, cost))
    return lines


def ordering(runs: list[dict[str, Any]], memories: list[str], cost: dict[str, Any] | None) -> str:
    """Does RAD's expected ordering hold: lstm > none on revisits, close to full, at constant cost?"""
    claim = (f"RAD's expected ordering (lstm > none on revisits, within {CLOSE_DB:g} dB of full attention, "
             f"constant cost per frame)")
    missing = [m for m in ("lstm", "none", "full") if m not in memories]
    if missing:
        return f"{claim}: not judged, {', '.join(missing)} not trained (--memories)"
    over_none, vs_full = paired(runs, "lstm", "none"), paired(runs, "lstm", "full")
    if not over_none or not vs_full:
        return f"{claim}: not judged, no revisit frames scored for every model"
    parts, holds = [], True
    up = sum(d > TIE_DB for d in over_none)
    if up == len(over_none):
        parts.append(f"lstm > none on revisits in all {len(over_none)} seed(s) (mean "
                     f"{float(np.mean(over_none)):+.2f} dB)")
    else:
        holds = False
        parts.append(f"lstm > none on revisits in only {up} of {len(over_none)} seed(s) "
                     f"(mean {float(np.mean(over_none)):+.2f} dB)")
    gap = float(np.mean(vs_full))
    close = gap >= -CLOSE_DB
    holds &= close
    parts.append(f"lstm {'within' if close else 'NOT within'} {CLOSE_DB:g} dB of full ({gap:+.2f} dB)")
    lstm_cost = next((r for r in (cost or {}).get("results", []) if r["memory"] == "lstm"), None)
    if lstm_cost is None:
        parts.append("cost not measured (--no-cost)")
    else:
        flat = lstm_cost["state_ratio_far_near"] == 1.0 and lstm_cost["time_ratio_far_near"] <= FLAT_TIME
        holds &= flat
        full_cost = next((r for r in cost["results"] if r["memory"] == "full"), None)
        parts.append(f"lstm cost {'constant' if flat else 'NOT constant'} "
                     f"(time x{lstm_cost['time_ratio_far_near']:.2f}, "
                     f"state x{lstm_cost['state_ratio_far_near']:.2f} from frame {cost['near']} to {cost['far']}"
                     + (f"; full: time x{full_cost['time_ratio_far_near']:.2f}, state "
                        f"x{full_cost['state_ratio_far_near']:.2f}" if full_cost else "") + ")")
    word = "DOES NOT HOLD" if not holds else "HOLDS" if lstm_cost is not None else "holds on quality"
    return f"{claim}: {word}: " + "; ".join(parts)


# -- main ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/mm9", help="training episodes, directory or file (%(default)s)")
    p.add_argument("--eval-data", default="", help="held-out episodes, ideally recorded with --policy retrace and "
                                                   "another --seed (default: the training data's held-out episodes)")
    p.add_argument("--out", default="runs/memory_experiment", help="runs, evaluations, results.json/.md (%(default)s)")
    p.add_argument("--memories", default="lstm,linear,none,full", help=f"comma list of {','.join(MEMORIES)} "
                                                                        "(%(default)s)")
    p.add_argument("--seeds", default="0,1", help="comma list of seeds; >1 reports mean±std (%(default)s)")
    p.add_argument("--preset", default="tiny", choices=("tiny", "small", "paper"))
    p.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE",
                   help="RADConfig overrides for every model, e.g. window=8 (memory is set per run)")
    p.add_argument("--steps", type=int, default=2000, help="training steps per model (%(default)s)")
    p.add_argument("--time-limit", type=float, default=0.0,
                   help="seconds of training per model, 0 = none (each model stops at --steps or here)")
    p.add_argument("--tbptt", action="store_true",
                   help="truncated backprop through time for lstm/linear/none (full attention: plain windows)")
    p.add_argument("--batch-size", type=int, default=0, help="0: the preset's")
    p.add_argument("--lr", type=float, default=0.0, help="peak learning rate (0: the preset's)")
    p.add_argument("--warmup", type=int, default=-1, help="learning-rate warm-up steps (-1: the preset's)")
    p.add_argument("--rollout-prob", type=float, default=0.0,
                   help="fraction of training steps on the model's own dreamed context (rad_env.train)")
    p.add_argument("--init", default="", help="start every memory type from this trained checkpoint (its own memory "
                                              "and heads fresh, the read closed): see above")
    p.add_argument("--held-out", type=int, default=-1,
                   help="episodes held out of training (-1: --episodes without --eval-data, 0 with it)")
    p.add_argument("--episodes", type=int, default=8, help="evaluation clips, one per episode (%(default)s)")
    p.add_argument("--context", type=int, default=4, help="rollout: real frames observed before dreaming (%(default)s)")
    p.add_argument("--horizon", type=int, default=128, help="rollout: dreamed frames (%(default)s)")
    p.add_argument("--retrieval-prefix", type=int, default=256,
                   help="retrieval: real frames observed from each episode's start (%(default)s)")
    p.add_argument("--retrieval-horizon", type=int, default=128,
                   help="retrieval: frames dreamed after the prefix (%(default)s)")
    p.add_argument("--sampling-steps", type=int, default=0, help="sampler steps per dreamed frame (0: model default)")
    p.add_argument("--probes", action="store_true", help="also the action probe and loop closure (real Memory Maze)")
    p.add_argument("--cost-near", type=int, default=50, help="cost: first frame (%(default)s)")
    p.add_argument("--cost-far", type=int, default=2000, help="cost: second frame (%(default)s)")
    p.add_argument("--cost-probes", type=int, default=5, help="cost: imagine() calls timed per frame (median)")
    p.add_argument("--no-cost", action="store_true", help="skip the cost table")
    p.add_argument("--max-episode-files", type=int, default=0, help="use only the first N episode files (0: all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default; 1 with --quick)")
    p.add_argument("--reuse", action="store_true", help="keep the data snapshots and finished runs with equal settings")
    p.add_argument("--quick", action="store_true",
                   help="pipeline check (numbers meaningless): 2 steps per model, batch 2, rollout 4 + 8, retrieval "
                        "24 + 16, cost at frames 8/32; without --data it records 3 short Memory Maze episodes")
    return p


def apply_quick(args: argparse.Namespace) -> None:
    args.steps, args.batch_size = min(args.steps, 2), args.batch_size or 2
    args.context, args.horizon, args.episodes = 4, 8, 2
    args.retrieval_prefix, args.retrieval_horizon = 24, 16
    args.cost_near, args.cost_far, args.cost_probes = 8, 32, 3
    args.max_episode_files = args.max_episode_files or 6
    args.time_limit = 0.0


def parse_lists(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    from rad_env.train import parse_overrides

    memories = [m.strip() for m in args.memories.split(",") if m.strip()]
    bad = [m for m in memories if m not in MEMORIES]
    if bad or not memories:
        raise UserError(f"unknown memory types {bad}; choose from {', '.join(MEMORIES)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be a comma list of ints, got {args.seeds!r}") from None
    if not seeds:
        raise UserError("--seeds is empty")
    args.model_overrides = parse_overrides(args.model)
    if "memory" in args.model_overrides:
        raise UserError("--model memory=... is set per run; use --memories")
    return memories, seeds


def experiment(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    memories, seeds = parse_lists(args)
    if args.quick:
        apply_quick(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    set_cpu_threads(args.threads or (1 if args.quick else -1))

    source = Path(args.data)
    if not source.exists():
        if not args.quick:
            raise UserError(f"no episode data at {source}",
                            hint="record some first, e.g. python -m collect.record --env memory-maze-9x9 "
                                 f"--episodes 64 --steps 500 --policy explore --workers 2 --out {source}")
        source = record_quick_data(out)
        args.data = str(source)
    data = snapshot_data(source, out / "data", args.max_episode_files, args.reuse) if source.is_dir() else source
    data = data.resolve()
    train_info = describe_store(data)
    args.eval_snapshot = None
    if args.eval_data:
        eval_source = Path(args.eval_data)
        if not eval_source.exists():
            raise UserError(f"no evaluation episodes at {eval_source}")
        args.eval_snapshot = (snapshot_data(eval_source, out / "eval_data", 0, args.reuse)
                              if eval_source.is_dir() else eval_source).resolve()
    eval_info = describe_store(args.eval_snapshot) if args.eval_snapshot else train_info
    n_episodes = train_info["episodes"]
    if args.held_out < 0:
        args.held_out = 0 if args.eval_snapshot else args.episodes
    if not args.eval_snapshot and (n_episodes < 2 or args.held_out < 1):
        raise UserError(f"without --eval-data the evaluation uses held-out training episodes: {data} holds "
                        f"{n_episodes} episode(s), --held-out {args.held_out}; need at least 2 and 1")
    if args.held_out > n_episodes // 2:
        args.held_out = n_episodes // 2 if args.eval_snapshot else max(1, n_episodes // 2)
        print(f"note: only {n_episodes} episodes: holding out {args.held_out} (at least half are kept for training)")
    if args.context + args.horizon > eval_info["shortest"]:
        horizon = eval_info["shortest"] - args.context
        if horizon < 1:
            raise UserError(f"the shortest evaluation episode has {eval_info['shortest']} frames: no room after "
                            f"--context {args.context}")
        print(f"note: rollout context {args.context} + horizon {args.horizon} exceeds the shortest evaluation "
              f"episode ({eval_info['shortest']} frames): horizon set to {horizon}")
        args.horizon = horizon
    if args.retrieval_prefix + args.retrieval_horizon > eval_info["longest"]:
        print(f"note: no evaluation episode has retrieval prefix {args.retrieval_prefix} + horizon "
              f"{args.retrieval_horizon} frames (longest: {eval_info['longest']}): the retrieval will be skipped")

    settings = {"data_source": str(Path(args.data)), "data_snapshot": str(data), "train_data": train_info,
                "eval_data_snapshot": str(args.eval_snapshot) if args.eval_snapshot else None,
                "eval_data": eval_info, "memories": memories, "seeds": seeds,
                **{k: v for k, v in vars(args).items()
                   if k not in ("memories", "seeds", "data", "out", "eval_snapshot")},
                "out": str(out)}
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)

    if args.init:
        for memory in memories:
            path = backbone_checkpoint(args.init, memory, args.model_overrides, out / "init" / f"{memory}.pt")
            start = {"none": "no memory", "full": "attention over every earlier frame"}.get(
                memory, f"{memory} memory fresh, its read closed")
            print(f"--init: {path} ({start}; reward/termination heads fresh)", flush=True)
    runs = [run_one(args, data, memory, seed) for seed in seeds for memory in memories]
    cost = None if args.no_cost else measure_cost(args, memories)

    r_agg = aggregate_retrieval(runs, memories)
    rows, o_agg = aggregate_rollout(runs, memories)
    t_agg = aggregate_training(runs, memories)
    lines = verdict(runs, r_agg, memories, cost, eval_info["positions"])
    tables = {"retrieval": retrieval_table(r_agg, memories), "rollout": rollout_table(rows, o_agg, memories),
              "training": training_table(t_agg, memories)}
    if cost is not None:
        tables["cost"] = cost_table(cost)

    window = runs[0]["window"]
    reach = next((r["retrieval"]["window"] for r in runs if "retrieval" in r), None)
    training = (f"steps {args.steps}" + (f" or {args.time_limit:.0f} s wall clock per model" if args.time_limit else "")
                + f", batch {runs[0]['batch_size']}"
                + (", tbptt for " + "/".join(m for m in memories if m in BOUNDED)
                   + (" and plain windows for full attention (tbptt cannot carry its unbounded context)"
                      if "full" in memories else "") if args.tbptt else ", plain windows"))
    provenance = "; ".join(sorted({f"seed {r['seed']}: {r['provenance']}, episodes {r['episodes']}" for r in runs
                                   if r["memory"] == memories[0]}))
    setting_line = (f"preset {args.preset}{' ' + ' '.join(args.model) if args.model else ''}"
                    + (f", every model from {args.init} (own memory and heads fresh)" if args.init else "")
                    + f", {training}; "
                    f"seeds {seeds}; training data {n_episodes} episodes ({args.held_out} held out); "
                    f"evaluation: {provenance}; attention window {window}")
    captions = {
        "retrieval": (f"Memory retrieval, PSNR dB (mean±std over seeds): the first {args.retrieval_prefix} real "
                      f"frames, then {args.retrieval_horizon} dreamed from the true actions by a state that saw the "
                      f"whole prefix (full prefix) and by one that saw only its last {reach or '(window)'} frames "
                      "(window only), "
                      "identical noise. Gain = full - window: what the state remembers. A revisit's place was seen "
                      "only before those last frames; n: frames over all seeds."),
        "rollout": (f"Open-loop rollout, PSNR dB / SSIM (mean±std over seeds): {args.context} real frames, then "
                    f"{args.horizon} dreamed; n: frames over all seeds, seeds: how many had such frames."),
        "training": "Training (mean±std over seeds)." + (" Full attention trains on plain windows: --tbptt is "
                                                        "refused for memory=full." if args.tbptt and "full" in memories
                                                        else ""),
        "cost": ("Cost per imagined frame (batch 1, median of " + str(args.cost_probes) + " imagine() calls) and "
                 "inference-state size, randomly initialised tiny models on "
                 + str((cost or {}).get("device", args.device))
                 + ": the architecture's cost, not the trained weights'." if cost else ""),
    }

    quick_note = "(--quick: pipeline check only, numbers are meaningless) " if args.quick else ""
    print(f"\n== memory experiment {quick_note}==")
    print(setting_line)
    for name, (headers, table) in tables.items():
        print(f"\n{captions[name]}")
        print(format_table(headers, table))
    print()
    for line in lines:
        print(line)
    print(runs[0]["lpips"])

    pictures = {f"{r['memory']} seed {r['seed']}": r["pictures"] for r in runs}
    result = {"settings": settings, "machine": machine_description(), "window": window, "retrieval_window": reach,
              "runs": runs, "retrieval": r_agg, "rollout_rows": rows, "rollout": o_agg, "training": t_agg,
              "cost": cost, "tables": {k: {"headers": h, "rows": t} for k, (h, t) in tables.items()},
              "verdict": lines, "pictures": pictures, "lpips": runs[0]["lpips"]}
    write_json(out / "results.json", result)
    md = [f"# Memory experiment{' (--quick: numbers meaningless)' if args.quick else ''}", "", setting_line, ""]
    for name, (headers, table) in tables.items():
        md += [captions[name], "", markdown_table(headers, table), ""]
    md += ["## Verdict", ""] + [f"- {line}" for line in lines] + [f"- {runs[0]['lpips']}", "", "## Pictures", ""]
    for run in runs:
        links = [f"[{Path(p).name}]({os.path.relpath(p, out)})" for p in run["pictures"] + run["videos"]]
        md.append(f"- {LABELS[run['memory']]}, seed {run['seed']}: " + (", ".join(links) or "none"))
    md.append("")
    for run in runs:  # the retrieval grids of the first seed inline: real / full prefix / window only
        grid = [p for p in run["pictures"] if p.endswith("memory_retrieval.png")]
        if run["seed"] == seeds[0] and grid:
            md += [f"![memory retrieval, {LABELS[run['memory']]}, seed {run['seed']}]({os.path.relpath(grid[0], out)})",
                   ""]
    (out / "results.md").write_text("\n".join(md))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """0 on success, 2 with a one-line ``memory_experiment: error: ...`` for a user mistake."""
    return run_cli(experiment, argv, prog=PROG, exit_status=lambda code: code)


if __name__ == "__main__":
    sys.exit(main())
