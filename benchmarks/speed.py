"""Speed and memory benchmarks of rad-env, all on the machine it runs on.

    python -m benchmarks.speed --out speed.json          # everything (several minutes on a CPU)
    python -m benchmarks.speed --quick                   # a smoke run of every part in ~30 s, small sizes
    python -m benchmarks.speed --parts memory --far 4000 # one part, longer episode

Every timing follows untimed warm-up calls (first calls allocate and initialise).

Parts (``--parts``, comma separated; default all):

* ``dream``:   dream env steps/s, ``DreamVectorEnv`` with 1/4/16 envs (``--checkpoint``, or a randomly
               initialised tiny model), against the real Memory Maze (``MemoryMazeEnv``, random actions).
* ``memory``:  per-frame ``imagine()`` time and inference-state size at frame ``--near`` vs ``--far`` for
               each memory type, random tiny models. The state is filled to a frame with ``observe()``
               (one denoiser call per frame) and timed with ``imagine()``. RAD (lstm/linear) and the
               sliding window (none) must stay flat; full attention grows (filling its context to
               frame 2000 takes minutes on a CPU: every frame attends to, and copies, all earlier ones).
* ``train``:   training frames/s of a preset (``--train-preset``, tiny by default; ``small`` with
               ``--train-seq-len 64`` is the GPU comparison of issue 9): loss + backward + AdamW on a
               synthetic batch, one row per ``--train-memories`` type.
* ``collect``: recorder steps/s (``collect.record.record``, real Memory Maze) with 1 and 2 workers,
               against the bare env's steps/s from the ``dream`` part.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (benchmark_core, format_table, machine_description, random_model, rss_bytes,
                                write_json)
from rad_env.runtime import AMP_CHOICES, set_cpu_threads

PARTS = ("dream", "memory", "train", "collect")
#: Untimed calls before every timing.
WARMUP_CALLS = 2
MEMORIES = ("lstm", "linear", "none", "full")


# -- (a) dream env vs real env ----------------------------------------------------------------
def bench_dream(args) -> dict[str, Any]:
    from rad_env.envs.factory import make_dream_vector_env
    from rad_env.runtime import inference_precision, resolve_device

    rows, results, model_used = [], [], ""
    for amp, n in [(amp, n) for amp in args.amp for n in args.envs]:
        precision = inference_precision(resolve_device(args.device), amp)
        core, model_used = benchmark_core(n, checkpoint=args.checkpoint, context=args.context, device=args.device,
                                           sampling_steps=args.sampling_steps or None, compile=args.compile, amp=amp)
        env = make_dream_vector_env(core)
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        env.reset(seed=0)
        reset_s = time.perf_counter() - start
        for _ in range(WARMUP_CALLS):  # with --compile these calls compile the frame pass
            env.step(rng.integers(0, env.single_action_space.n, n))
        warmup_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.dream_steps):
            env.step(rng.integers(0, env.single_action_space.n, n))
        seconds = time.perf_counter() - start
        env.close()
        result = {"num_envs": n, "amp": amp, "precision": precision, "batch_steps": args.dream_steps,
                  "seconds": seconds,
                  "env_steps_per_s": n * args.dream_steps / seconds,
                  "ms_per_batch_step": 1000 * seconds / args.dream_steps, "reset_all_s": reset_s,
                  "reset_and_warmup_s": warmup_s}
        results.append(result)
        rows.append([f"dream x{n} ({precision})", result["env_steps_per_s"], result["ms_per_batch_step"],
                     n * args.dream_steps])
    real = bench_real_env(args.real_steps)
    rows.append(["real Memory Maze 9x9 x1", real["env_steps_per_s"], real["ms_per_step"], real["steps"]])
    table = format_table(["env", "env steps/s", "ms/step call", "steps timed"], rows)
    return {"model": model_used, "sampling_steps": args.sampling_steps or "model default", "compile": args.compile,
            "dream": results, "real": real, "table": table}


def bench_real_env(steps: int) -> dict[str, Any]:
    from rad_env.envs.memory_maze import MemoryMazeEnv

    start = time.perf_counter()
    env = MemoryMazeEnv(9)
    env.reset(seed=0)
    make_s = time.perf_counter() - start
    start = time.perf_counter()
    env.reset(seed=1)  # a new maze, as every recorded episode builds one
    new_maze_s = time.perf_counter() - start
    env.action_space.seed(0)
    for _ in range(WARMUP_CALLS):
        env.step(env.action_space.sample())
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return {"steps": steps, "seconds": seconds, "env_steps_per_s": steps / seconds,
            "ms_per_step": 1000 * seconds / steps, "first_make_and_reset_s": make_s, "new_maze_reset_s": new_maze_s}


# -- (b) constant cost per frame ----------------------------------------------------------------
def bench_memory(args) -> dict[str, Any]:
    from rad_env.runtime import resolve_device

    device = resolve_device(args.device)
    marks = sorted({args.near, args.far})
    results, rows = [], []
    for memory in args.memories:
        model = random_model(memory, device=device)
        cfg = model.config
        rng = np.random.default_rng(0)
        gens = [torch.Generator(device=device).manual_seed(0)]
        rss0 = rss_bytes()
        state = model.init_state(1, device=device)
        size = cfg.image_size
        frame = torch.from_numpy(rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)).to(device)
        at: dict[int, dict[str, float]] = {}
        committed, fill_start = 0, time.perf_counter()
        for mark in marks:
            while committed < mark:  # fill the context up to the mark with cheap observe() calls
                action = torch.tensor([cfg.null_action if committed == 0 else int(rng.integers(cfg.num_actions))],
                                      device=device)
                state = model.observe(frame, action, state, generators=gens)
                committed += 1
                if not args.quick and committed % 250 == 0:
                    print(f"  memory={memory}: context filled to frame {committed}/{marks[-1]} "
                          f"({time.perf_counter() - fill_start:.0f} s)", flush=True)
            probe = state
            for _ in range(WARMUP_CALLS):  # untimed: the first calls at a new context length allocate
                model.imagine(torch.tensor([1], device=device), probe, generators=gens)
            times = []
            for _ in range(args.probe_frames):  # imagine from the same state: time at exactly this frame
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                after = model.imagine(torch.tensor([1], device=device), probe, generators=gens).state
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            at[mark] = {"ms_per_frame": 1000 * float(np.median(times)), "state_bytes": after.nbytes(),
                        "rss_delta_bytes": rss_bytes() - rss0}
            if args.verbose or not args.quick:
                print(f"  memory={memory} frame {mark}: {at[mark]['ms_per_frame']:.1f} ms/frame, "
                      f"state {at[mark]['state_bytes'] / 1e6:.2f} MB", flush=True)
        near, far = at[marks[0]], at[marks[-1]]
        result = {"memory": memory, "parameters": model.num_parameters(), "window": cfg.window,
                  "frames": {str(k): v for k, v in at.items()},
                  "time_ratio_far_near": far["ms_per_frame"] / near["ms_per_frame"],
                  "state_ratio_far_near": far["state_bytes"] / near["state_bytes"],
                  "fill_seconds": time.perf_counter() - fill_start}
        results.append(result)
        rows.append([memory, near["ms_per_frame"], far["ms_per_frame"], result["time_ratio_far_near"],
                     near["state_bytes"] / 1e6, far["state_bytes"] / 1e6, result["state_ratio_far_near"],
                     far["rss_delta_bytes"] / 1e6])
        del model, state, probe, after
    n, f = marks[0], marks[-1]
    table = format_table(["memory", f"ms/frame @{n}", f"ms/frame @{f}", "time x", f"state MB @{n}",
                          f"state MB @{f}", "state x", "RSS growth MB"], rows)
    bounded = [r for r in results if r["memory"] != "full"]
    flat = all(r["state_ratio_far_near"] == 1.0 for r in bounded)
    return {"near": n, "far": f, "probe_frames": args.probe_frames, "results": results, "table": table,
            "bounded_state_constant": flat}


# -- (c) training throughput --------------------------------------------------------------------
def bench_train(args) -> dict[str, Any]:
    from rad_env.data import Batch
    from rad_env.runtime import autocast_context, resolve_device
    from rad_env.train import TRAIN_PRESETS, TrainConfig

    device = resolve_device(args.device)
    defaults = TrainConfig(**TRAIN_PRESETS[args.train_preset])
    batch_size = args.batch_size or defaults.batch_size
    overrides = {"seq_len": args.train_seq_len} if args.train_seq_len else {}
    rows, results = [], []
    for memory in args.train_memories:
        model = random_model(memory, preset=args.train_preset, device=device, **overrides).train()
        cfg = model.config
        optimizer = torch.optim.AdamW(model.parameters(), lr=defaults.lr, weight_decay=defaults.weight_decay,
                                      betas=(0.9, 0.99))
        g = torch.Generator().manual_seed(0)
        b, l = batch_size, cfg.seq_len
        batch = Batch(
            frames=torch.randint(0, 256, (b, l, cfg.image_size, cfg.image_size, 3), generator=g, dtype=torch.uint8),
            prev_actions=torch.randint(0, cfg.num_actions, (b, l), generator=g),
            rewards=torch.zeros(b, l), terminated=torch.zeros(b, l), is_first=torch.zeros(b, l, dtype=torch.bool))
        batch.prev_actions[:, 0] = cfg.null_action
        batch.is_first[:, 0] = True
        batch = batch.to(device)
        amp = autocast_context(device, "auto")

        def one_step(model=model, optimizer=optimizer) -> float:
            with amp:
                loss = model.loss(batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), defaults.grad_clip)
            optimizer.step()
            return float(loss.detach())

        for _ in range(WARMUP_CALLS):
            one_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.train_steps):
            loss = one_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        result = {"memory": memory, "preset": args.train_preset, "batch_size": b, "seq_len": l,
                  "steps": args.train_steps, "seconds": seconds,
                  "frames_per_s": b * l * args.train_steps / seconds, "s_per_step": seconds / args.train_steps,
                  "loss": loss, "parameters": model.num_parameters()}
        results.append(result)
        rows.append([f"{args.train_preset}, memory={memory}", f"{b}x{l}", result["s_per_step"], result["frames_per_s"],
                     result["frames_per_s"] / results[0]["frames_per_s"]])
        del model, optimizer
    table = format_table(["model", "batch (BxL)", "s/step", "train frames/s", f"vs {results[0]['memory']}"], rows)
    return {"device": str(device), "results": results, "table": table}


# -- (d) collector throughput -------------------------------------------------------------------
def bench_collect(args, bare: dict[str, Any] | None) -> dict[str, Any]:
    from collect.record import RecordConfig, record

    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="rad-speed-collect-") as tmp:
        for workers in args.collect_workers:
            episodes = max(args.collect_episodes, workers)
            cfg = RecordConfig(env="memory-maze-9x9", out=str(Path(tmp) / f"workers{workers}"), episodes=episodes,
                               steps=args.collect_steps, policy="random", workers=workers, seed=0, progress=False)
            summary = record(cfg)
            if summary["problems"]:
                raise RuntimeError(f"recording with {workers} worker(s) failed: {summary['problems']}")
            result = {"workers": workers, "episodes": episodes, "steps_per_episode": args.collect_steps,
                      "steps": summary["steps"], "seconds": summary["seconds"],
                      "steps_per_s": summary["steps_per_s"],
                      "steps_per_s_per_worker": summary["steps_per_s_per_worker"],
                      "bytes_per_1000_frames": summary["bytes_per_1000_frames"]}
            results.append(result)
            rows.append([f"record.py --workers {workers}", result["steps_per_s"], result["steps_per_s_per_worker"],
                         f"{episodes}x{args.collect_steps}"])
    if bare:
        rate = bare["env_steps_per_s"]
        rows.append(["bare MemoryMazeEnv steps", rate, rate, "-"])
        # what one worker could reach at best: a new maze per episode, then the bare env's step rate
        per_episode = args.collect_steps / (bare["new_maze_reset_s"] + args.collect_steps / rate)
        rows.append(["bare env incl. new maze per episode", per_episode, per_episode, f"1x{args.collect_steps}"])
    table = format_table(["collector", "steps/s overall", "steps/s per worker", "episodes x steps"], rows)
    return {"results": results, "bare_env": bare, "table": table,
            "note": "overall: wall time incl. worker start-up; per worker: time inside episodes (a new maze is "
                    "built for every episode, then steps and writing)"}


# -- main ----------------------------------------------------------------------------------------
def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", type=str_list, default=list(PARTS), help=f"comma list of {','.join(PARTS)}")
    p.add_argument("--quick", action="store_true",
                   help="a ~30 s smoke run of every part (small sizes, 1 thread unless --threads; rough numbers)")
    p.add_argument("--checkpoint", default=None, help="dream part: checkpoint (default: random tiny model)")
    p.add_argument("--context", default=None, help="dream part with --checkpoint: start-frame episodes")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0: torch's default, 1 with --quick)")
    p.add_argument("--sampling-steps", type=int, default=0, help="Euler steps per dream frame (0: model default)")
    p.add_argument("--compile", action="store_true",
                   help="dream part: compile the model's frame pass (torch.compile; the warm-up calls compile)")
    p.add_argument("--amp", type=str_list, default=["auto"],
                   help="dream part: precisions to time, comma list of auto (bf16 where the device multiplies it "
                        "natively), bf16, none (float32) (%(default)s)")
    p.add_argument("--envs", type=int_list, default=[1, 4, 16], help="dream env counts (%(default)s)")
    p.add_argument("--dream-steps", type=int, default=30, help="timed batch steps per env count (%(default)s)")
    p.add_argument("--real-steps", type=int, default=200, help="timed real Memory Maze steps (%(default)s)")
    p.add_argument("--memories", type=str_list, default=list(MEMORIES), help="memory part: types (%(default)s)")
    p.add_argument("--near", type=int, default=50, help="memory part: first frame index (%(default)s)")
    p.add_argument("--far", type=int, default=2000, help="memory part: second frame index (%(default)s)")
    p.add_argument("--probe-frames", type=int, default=5, help="memory part: imagine() calls timed per mark (median)")
    p.add_argument("--train-memories", type=str_list, default=["lstm"], help="train part: memory types (%(default)s)")
    p.add_argument("--train-preset", default="tiny", choices=("tiny", "small", "paper"),
                   help="train part: model and batch preset (%(default)s)")
    p.add_argument("--train-seq-len", type=int, default=0, help="train part: frames per sequence (0: the preset's)")
    p.add_argument("--train-steps", type=int, default=5, help="train part: timed optimizer steps (%(default)s)")
    p.add_argument("--batch-size", type=int, default=0, help="train part: batch (0: the tiny train preset's)")
    p.add_argument("--collect-workers", type=int_list, default=[1, 2], help="collect part: worker counts")
    p.add_argument("--collect-episodes", type=int, default=4, help="collect part: episodes per run (%(default)s)")
    p.add_argument("--collect-steps", type=int, default=100, help="collect part: steps per episode (%(default)s)")
    p.add_argument("--out", default="", help="write all results as JSON here")
    p.add_argument("--verbose", action="store_true")
    return p


def timed(part, *args) -> dict[str, Any]:
    """Run one benchmark part; its result gets ``part_seconds`` (wall time, warm-ups included)."""
    start = time.perf_counter()
    result = part(*args)
    result["part_seconds"] = time.perf_counter() - start
    return result


def apply_quick(args: argparse.Namespace) -> None:
    """Small sizes that still time enough calls (after the warm-up) to mean something: ~30 s in all."""
    args.dream_steps, args.real_steps = 10, 40
    args.envs = [n for n in args.envs if n <= 4] or [1]
    args.near, args.far, args.probe_frames = 8, 64, 5
    args.train_steps, args.batch_size = 3, args.batch_size or 2
    args.collect_workers, args.collect_episodes, args.collect_steps = [1], 1, 20


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = [p for p in args.parts if p not in PARTS]
    bad_memory = [m for m in args.memories + args.train_memories if m not in MEMORIES]
    bad_amp = [a for a in args.amp if a not in AMP_CHOICES]
    if unknown or bad_memory or bad_amp:
        print(f"error: unknown parts {unknown} (choose from {PARTS}) / memory types {bad_memory} "
              f"(choose from {MEMORIES}) / --amp {bad_amp} (choose from {AMP_CHOICES})", file=sys.stderr)
        return 2
    if args.quick:
        apply_quick(args)
    # 0: torch's default threads; --quick: 1 (on a busy machine extra threads make torch's pool spin)
    set_cpu_threads(args.threads or (1 if args.quick else -1))
    results: dict[str, Any] = {"settings": vars(args).copy(), "machine": machine_description()}
    print(f"rad-env speed benchmark{' (--quick: small sizes, rough numbers)' if args.quick else ''}")
    print(f"machine: {results['machine']}\n")
    started = time.perf_counter()
    if "dream" in args.parts:
        r = results["dream"] = timed(bench_dream, args)
        print(f"(a) dream env vs real env; dream model: {r['model']}, sampling steps: {r['sampling_steps']}, "
              f"compiled: {r['compile']} "
              f"({r['part_seconds']:.0f} s)")
        print(r["table"] + "\n")
    if "memory" in args.parts:
        r = results["memory"] = timed(bench_memory, args)
        print(f"(b) per-frame imagine() cost and state size at frame {r['near']} vs {r['far']} "
              f"(random tiny models, batch 1, median of {r['probe_frames']} calls; {r['part_seconds']:.0f} s)")
        print(r["table"])
        print("state MB is exact (RADState.nbytes()); RSS growth is the process's resident memory after the far "
              "mark minus before the model, blurred by allocator reuse")
        print("bounded memories (lstm/linear/none) keep a constant state: "
              + ("yes" if r["bounded_state_constant"] else "NO") + "\n")
    if "train" in args.parts:
        r = results["train"] = timed(bench_train, args)
        print(f"(c) training throughput, {args.train_preset} preset, synthetic batch, device {r['device']} "
              f"({r['part_seconds']:.0f} s)")
        print(r["table"] + "\n")
    if "collect" in args.parts:
        bare = results.get("dream", {}).get("real") or bench_real_env(args.real_steps)
        r = results["collect"] = timed(bench_collect, args, bare)
        print(f"(d) collector throughput (real Memory Maze 9x9, random policy; {r['part_seconds']:.0f} s)")
        print(r["table"])
        print(r["note"] + "\n")
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.out:
        print(f"wrote {write_json(args.out, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
