"""Soak test of the batched dream env: many steps, adversarial actions, memory growth.

    python -m benchmarks.soak                       # 5000 env steps, random tiny model, 4 envs
    python -m benchmarks.soak --checkpoint runs/tiny/model.pt --context data/mm9 --steps 20000
    python -m benchmarks.soak --quick               # 200 env steps, seconds

Steps a ``DreamVectorEnv`` with random valid actions and, every ``--bad-every`` batch steps, one
adversarial action batch (out of range, negative, huge, non-integral floats, NaN, wrong shape,
strings, None, objects). Each bad batch must raise ``ValueError``/``TypeError`` whose message names
the problem, must not change the env (frames, step counters, model state), and the next valid step
must work. Resident memory (``/proc/self/statm``), the Python heap (tracemalloc) and
``RADState.nbytes()`` are sampled every ``--sample-every`` batch steps; a leak is a sustained
upward slope of RSS or the Python heap. Exit status 0 when everything held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from benchmarks._common import benchmark_core, format_table, machine_description, rss_bytes, slope, write_json
from rad_env.runtime import set_cpu_threads


@dataclass(frozen=True)
class BadAction:
    """An invalid action batch for ``n`` envs with ``k`` actions and what its error must mention."""

    name: str
    make: Callable[[int, int], Any]  # (num_envs, num_actions) -> actions
    message: str  # regex the error message must match (case-insensitive)


RANGE = r"\[0, ?\d+\)|range|must lie|out of"
INTEGER = r"integer|\bint"
SHAPE = r"shape|expected \d+ action"

BAD_ACTIONS: tuple[BadAction, ...] = (
    BadAction("one id == num_actions", lambda n, k: np.r_[np.zeros(n - 1, np.int64), k], RANGE),
    BadAction("all ids == num_actions (NULL_ACTION)", lambda n, k: np.full(n, k), RANGE),
    BadAction("negative id", lambda n, k: np.r_[np.full(n - 1, 1), -1], RANGE),
    BadAction("huge id 2**40", lambda n, k: np.full(n, 2**40), RANGE),
    BadAction("python list out of range", lambda n, k: [k + 3] * n, RANGE),
    BadAction("non-integral floats", lambda n, k: np.full(n, 1.5), INTEGER),
    BadAction("NaN", lambda n, k: np.full(n, np.nan), INTEGER),
    BadAction("inf", lambda n, k: np.full(n, np.inf), INTEGER),
    BadAction("one action too many", lambda n, k: np.ones(n + 1, np.int64), SHAPE),
    BadAction("empty batch", lambda n, k: np.zeros(0, np.int64), SHAPE),
    BadAction("2-D batch (n, 1)", lambda n, k: np.ones((n, 1), np.int64), SHAPE),
    BadAction("2-D batch (n, 2)", lambda n, k: np.ones((n, 2), np.int64), SHAPE),
    BadAction("strings", lambda n, k: ["1"] * n, INTEGER),
    BadAction("one string", lambda n, k: "forward", f"{SHAPE}|{INTEGER}"),
    BadAction("None", lambda n, k: None, f"{SHAPE}|{INTEGER}"),
    BadAction("list of None", lambda n, k: [None] * n, INTEGER),
    BadAction("dict", lambda n, k: {"action": 1}, f"{SHAPE}|{INTEGER}"),
    BadAction("complex", lambda n, k: np.full(n, 1 + 1j), INTEGER),
)


def env_snapshot(env) -> dict[str, Any]:
    """What a rejected step must leave untouched."""
    core = env.core
    return {"frames": core.frames.copy(), "steps": core.steps.copy(), "needs_reset": env._needs_reset.copy(),
            "time": core.state.time.clone(), "state": [t.clone() for t in core.state.tensors()]}


def unchanged(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return (np.array_equal(before["frames"], after["frames"]) and np.array_equal(before["steps"], after["steps"])
            and np.array_equal(before["needs_reset"], after["needs_reset"])
            and len(before["state"]) == len(after["state"])
            and all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(before["state"], after["state"])))


def try_bad_action(env, bad: BadAction) -> str | None:
    """Step ``env`` with ``bad``; returns None when it was rejected cleanly, else what went wrong."""
    actions = bad.make(env.num_envs, env.single_action_space.n)
    before = env_snapshot(env)
    pending = np.flatnonzero(before["needs_reset"]).tolist()
    problem = _try(env, bad, actions, before)
    if problem and pending:
        problem += f" [env(s) {pending} were awaiting their autoreset]"
    return problem


def _try(env, bad: BadAction, actions: Any, before: dict[str, Any]) -> str | None:
    try:
        env.step(actions)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        if not re.search(bad.message, message, re.IGNORECASE):
            return f"{bad.name}: {type(exc).__name__} message does not name the problem: {message!r}"
    except Exception as exc:  # noqa: BLE001 - any other exception type is a finding
        return f"{bad.name}: raised {type(exc).__name__} (expected ValueError/TypeError): {exc}"
    else:
        return f"{bad.name}: accepted {actions!r} without an error"
    if not unchanged(before, env_snapshot(env)):
        return f"{bad.name}: the rejected step changed the env"
    return None


def soak(args) -> dict[str, Any]:
    from rad_env.envs.factory import make_dream_vector_env

    core, model_used = benchmark_core(args.num_envs, checkpoint=args.checkpoint, context=args.context,
                                       device=args.device, sampling_steps=args.sampling_steps or None)
    from gymnasium.vector import AutoresetMode

    mode = AutoresetMode.SAME_STEP if args.autoreset == "same_step" else AutoresetMode.NEXT_STEP
    env = make_dream_vector_env(core, args.max_episode_steps, autoreset_mode=mode)
    n, k = env.num_envs, env.single_action_space.n
    rng = np.random.default_rng(args.seed)
    batch_steps = max(1, -(-args.steps // n))
    failures: list[str] = []
    bad_counts: dict[str, int] = {}
    samples: list[tuple[int, int, int, int]] = []  # (env steps, rss, python heap, state bytes)
    episodes_ended = explicit_resets = 0
    if args.tracemalloc:
        tracemalloc.start()
    env.reset(seed=args.seed)
    start = time.perf_counter()
    last_report = start
    env_steps = 0
    for i in range(batch_steps):
        if args.bad_every and i % args.bad_every == args.bad_every - 1:
            bad = BAD_ACTIONS[(i // args.bad_every) % len(BAD_ACTIONS)]
            problem = try_bad_action(env, bad)
            bad_counts[bad.name] = bad_counts.get(bad.name, 0) + 1
            if problem:
                failures.append(f"batch step {i}: {problem}")
        if args.reset_every and i and i % args.reset_every == 0:
            env.reset(seed=args.seed + i)
            explicit_resets += 1
        try:
            obs, rewards, terminated, truncated, _ = env.step(rng.integers(0, k, n))
        except Exception as exc:  # noqa: BLE001 - a valid step must always work
            failures.append(f"batch step {i}: valid step failed: {type(exc).__name__}: {exc}")
            break
        env_steps += n
        if obs.shape != (n, *env.single_observation_space.shape) or obs.dtype != np.uint8:
            failures.append(f"batch step {i}: observation {obs.shape} {obs.dtype}")
        if not np.all(np.isfinite(rewards)):
            failures.append(f"batch step {i}: non-finite reward {rewards}")
        episodes_ended += int(np.sum(terminated | truncated))
        if i % args.sample_every == 0 or i == batch_steps - 1:
            heap = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
            samples.append((env_steps, rss_bytes(), heap, env.core.state.nbytes()))
        now = time.perf_counter()
        if now - last_report > args.report_seconds:
            print(f"  {env_steps}/{batch_steps * n} env steps, {env_steps / (now - start):.1f} steps/s, "
                  f"RSS {samples[-1][1] / 1e6:.1f} MB, {len(failures)} failure(s)", flush=True)
            last_report = now
        if len(failures) > args.max_failures:
            failures.append("too many failures, stopping early")
            break
    seconds = time.perf_counter() - start
    if args.tracemalloc:
        tracemalloc.stop()
    env.close()

    # leak check on the samples after the warm-up fraction (allocators and caches settle first)
    skip = int(len(samples) * args.warmup_fraction)
    steady = samples[skip:] if len(samples) - skip >= 3 else samples
    xs = [s[0] for s in steady]
    rss_slope = slope(xs, [s[1] for s in steady]) * 1000  # bytes per 1000 env steps
    heap_slope = slope(xs, [s[2] for s in steady]) * 1000
    rss_growth = steady[-1][1] - steady[0][1] if steady else 0
    heap_growth = steady[-1][2] - steady[0][2] if steady else 0
    state_sizes = sorted({s[3] for s in samples})
    memory = core.model.config.memory
    limit = args.max_leak_mb_per_1k * 1e6
    if memory != "full" and len(state_sizes) > 1:
        failures.append(f"state size changed during the soak: {state_sizes} bytes (memory={memory})")
    if rss_slope > limit and rss_growth > args.min_leak_mb * 1e6:
        failures.append(f"RSS grows {rss_slope / 1e6:.2f} MB per 1000 env steps ({rss_growth / 1e6:.1f} MB "
                        f"after warm-up): leak?")
    if heap_slope > limit and heap_growth > args.min_leak_mb * 1e6:
        failures.append(f"Python heap grows {heap_slope / 1e6:.2f} MB per 1000 env steps "
                        f"({heap_growth / 1e6:.1f} MB after warm-up): leak?")
    return {
        "model": model_used, "memory": memory, "num_envs": n, "env_steps": env_steps, "seconds": seconds,
        "env_steps_per_s": env_steps / seconds if seconds else 0.0, "episodes_ended": episodes_ended,
        "explicit_resets": explicit_resets, "bad_actions_tried": sum(bad_counts.values()),
        "bad_action_kinds": len(bad_counts), "bad_counts": bad_counts,
        "rss_mb_first_last": [samples[0][1] / 1e6, samples[-1][1] / 1e6],
        "rss_slope_mb_per_1k_steps": rss_slope / 1e6, "rss_growth_after_warmup_mb": rss_growth / 1e6,
        "heap_slope_mb_per_1k_steps": heap_slope / 1e6 if args.tracemalloc else None,
        "heap_growth_after_warmup_mb": heap_growth / 1e6 if args.tracemalloc else None,
        "state_bytes": state_sizes, "samples": samples, "failures": failures, "ok": not failures,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5000, help="total env steps over all envs (%(default)s)")
    p.add_argument("--num-envs", type=int, default=4, help="envs in the DreamVectorEnv (%(default)s)")
    p.add_argument("--checkpoint", default=None, help="RAD checkpoint (default: a random tiny model)")
    p.add_argument("--context", default=None, help="start-frame episodes for --checkpoint (default: shipped)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--sampling-steps", type=int, default=0, help="Euler steps per frame (0: model default)")
    p.add_argument("--max-episode-steps", type=int, default=100,
                   help="truncation length, short so that autoresets happen often (%(default)s)")
    p.add_argument("--autoreset", choices=("next_step", "same_step"), default="next_step")
    p.add_argument("--bad-every", type=int, default=5, help="an adversarial action batch every N batch steps")
    p.add_argument("--reset-every", type=int, default=300, help="explicit reset(seed) every N batch steps (0: never)")
    p.add_argument("--sample-every", type=int, default=10, help="memory sample every N batch steps")
    p.add_argument("--warmup-fraction", type=float, default=0.2, help="samples ignored by the leak fit")
    p.add_argument("--max-leak-mb-per-1k", type=float, default=2.0,
                   help="fail when RSS/heap grows faster than this per 1000 env steps ... (%(default)s)")
    p.add_argument("--min-leak-mb", type=float, default=16.0, help="... and by more than this in total (%(default)s)")
    p.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false", help="skip the Python heap trace")
    p.add_argument("--max-failures", type=int, default=20)
    p.add_argument("--report-seconds", type=float, default=30.0, help="progress line interval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help=f"{200} env steps (seconds)")
    p.add_argument("--out", default="", help="write the summary as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.steps, args.bad_every, args.reset_every, args.sample_every = 200, 2, 20, 2
        args.max_episode_steps = min(args.max_episode_steps, 15)
    if args.steps < 1 or args.num_envs < 1 or args.sample_every < 1:
        print("error: --steps, --num-envs and --sample-every must be >= 1", file=sys.stderr)
        return 2
    set_cpu_threads(args.threads or -1)  # 0: torch default
    print(f"rad-env dream env soak{' (--quick)' if args.quick else ''}: {args.steps} env steps, "
          f"{args.num_envs} envs, bad action every {args.bad_every} batch steps, autoreset {args.autoreset}, "
          f"episodes truncated at {args.max_episode_steps}")
    print(f"machine: {machine_description()}")
    r = soak(args)
    print(f"model: {r['model']}")
    rows = [
        ["env steps", r["env_steps"]], ["seconds", r["seconds"]], ["env steps/s", r["env_steps_per_s"]],
        ["episodes ended (autoreset)", r["episodes_ended"]], ["explicit resets", r["explicit_resets"]],
        ["bad action batches tried", f"{r['bad_actions_tried']} ({r['bad_action_kinds']} kinds)"],
        ["RSS first -> last (MB)", "{:.1f} -> {:.1f}".format(*r["rss_mb_first_last"])],
        ["RSS slope after warm-up (MB / 1000 env steps)", r["rss_slope_mb_per_1k_steps"]],
        ["RSS growth after warm-up (MB)", r["rss_growth_after_warmup_mb"]],
    ]
    if r["heap_slope_mb_per_1k_steps"] is not None:
        rows += [["Python heap slope (MB / 1000 env steps)", r["heap_slope_mb_per_1k_steps"]],
                 ["Python heap growth after warm-up (MB)", r["heap_growth_after_warmup_mb"]]]
    rows.append(["state bytes (distinct values seen)", ", ".join(map(str, r["state_bytes"]))])
    print(format_table(["soak", "value"], rows, floatfmt=".3f"))
    for failure in r["failures"]:
        print(f"FAIL: {failure}")
    print("OK: every bad action was rejected cleanly, the env kept working, no leak found" if r["ok"]
          else f"FAILED: {len(r['failures'])} problem(s)")
    if args.out:
        print(f"wrote {write_json(args.out, {'settings': vars(args), 'machine': machine_description(), **r})}")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
