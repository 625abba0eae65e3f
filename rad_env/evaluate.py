"""Evaluate a RAD checkpoint on held-out episodes, always beside the copy-last-frame and mean-frame
baselines, and write a report a person can read.

    python -m rad_env.evaluate --checkpoint runs/tiny/model.pt --data data/mm9_test --out runs/tiny/eval

Sections (each can be switched off):
  rollout    observe ``--context`` real frames, dream ``--horizon`` frames from the true actions; PSNR/SSIM
             per horizon bucket for the model, copy-last and mean frame; whether the dream keeps moving
             and stays different across clips (no collapse to one texture); a dream-vs-real PNG grid.
  retrieval  memory retrieval (Po et al. 2025, the RAD paper): observe the first ``--retrieval-prefix``
             real frames of each episode, dream ``--retrieval-horizon`` frames; the same with only the last
             window of the prefix observed, identical noise: PSNR/SSIM on revisited and new places, and the
             gain of remembering (:mod:`rad_env.evaluation.retrieval`); the same one step ahead (each
             frame after the prefix predicted from the real frames before it, all vs the last window).
  denoiser   one-shot denoising of the true next frame at several noise levels vs sampling it from
             pure noise (Euler/Heun, 1-10 steps): is the network or the sampler at fault?
  probes     (Memory Maze with recorded seeds) from real states, 8 steps of left / right / forward in the
             real env (replayed) and in the dream: is each dream closest to its own real continuation?
             Loop closure: N left then N right, last frame vs first. Standing still: 2N noop steps (the
             real view stays put), last dreamed frame vs the real one.
  rewards    every real reward event of the evaluation episodes replayed into the model (real frames until
             6 frames before it, then the true actions): paid within 2 frames? False rewards in quiet
             stretches? (:mod:`rad_env.evaluation.rewards`)
  walls      (``--walls EPISODES``: walks into walls, ``collect/record.py --bump P``) real frames up to a wall,
             then forward presses the real maze refused: does the dream stop too? Beside forward presses
             that moved (:mod:`rad_env.evaluation.walls`).
With ``--out`` it writes metrics.json, PNG grids and two real | dream videos, with ``--report`` a markdown
report.
"""

from __future__ import annotations

import argparse
import json
import time
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .checkpoint import load_world_model
from .cli import UserError, add_dataclass_arguments, dataclass_from_args, option, require_at_least, run_cli
from .data import EpisodeStore
from .evaluation import load_clips
from .evaluation.denoiser import denoiser_diagnostics
from .evaluation.probes import (NOOP, PROBE_ACTIONS, TURN_LEFT, TURN_RIGHT, MemoryMazeReplay, ReplayError,
                                action_probe_scores, dream_continuations, loop_closure_scores, probe_states,
                                real_continuations, unrelated_first_frames_psnr)
from .evaluation.report import markdown_table, rollout_grid, sequence_grid, text_table
from .evaluation.places import revisit_masks
from .evaluation.retrieval import (memory_retention, memory_retrieval, memoryless_frames, one_step_retrieval,
                                  retrieval_grid)
from .evaluation.rewards import reward_replay
from .evaluation.walls import dream_runs, find_forward_runs, gate_scores, run_scores, wall_table
from .evaluation.rollout import (dream_rollout, horizon_masks, mean_image, reward_rate_table, rollout_table,
                                 score_rollout, stability_table, warp_edit_table)
from .metrics import LPIPS_UNAVAILABLE
from .model.collision import GATE_DREAM_BUCKETS, GATE_DREAM_HORIZON, dreamed_presses
from .runtime import AMP_CHOICES, inference_autocast, inference_precision, resolve_device, set_cpu_threads
from .video import write_side_by_side


@dataclass
class EvalConfig:
    """What to evaluate and how much of it."""

    checkpoint: str = option(help="RAD checkpoint (model.pt)")
    data: str = option("", "held-out episodes, ideally recorded with a seed never used for training (default: "
                           "the checkpoint's training data, its held-out episodes)")
    episodes: int = option(8, "clips to evaluate, one per episode (0: all)")
    context: int = option(4, "real frames observed before dreaming")
    horizon: int = option(300, "frames dreamed from the true actions")
    sampling_steps: int = option(0, "sampler steps (0: the checkpoint's)")
    sampling_sigmas: str = option("", "the sampler's noise levels, highest first, comma-separated (e.g. 80,0.5; "
                                      "empty: the checkpoint's)")
    sampler: str = option("", "euler or heun (default: the checkpoint's)")
    context_sigma: float = option(0.0, "noise level frames are committed at (0: the checkpoint's)")
    guidance: float = option(-1.0, "classifier-free guidance on the action (negative: the checkpoint's)")
    warp_interpolation: str = option("", "how the motion prior's warp resamples the previous frame: bilinear (as "
                                         "trained; empty), bicubic or nearest", choices=("", "bilinear", "bicubic",
                                                                                         "nearest"))
    retrieval: bool = option(True, "memory retrieval: dreams after a long real prefix vs after its last window only")
    retrieval_prefix: int = option(256, "memory retrieval: real frames observed from each episode's start")
    retrieval_horizon: int = option(128, "memory retrieval: frames dreamed after the prefix")
    retrieval_window: int = option(0, "memory retrieval: frames the window-only dream observes, also the distance a "
                                      "revisit must reach back (0: all a memory-less state sees, depth x "
                                      "(window - 1) + 1)")
    denoiser: bool = option(True, "one-shot denoising vs sampling diagnostics")
    probes: bool = option(True, "action probe, loop closure and standing still against the real env (Memory Maze)")
    rewards: bool = option(True, "reward replay: real reward events of all evaluation episodes replayed into the "
                                 "model (paid within 2 frames?) and quiet stretches (false rewards?)")
    walls: str = option("", "episodes with walks into walls (collect/record.py --bump P, held out) for the wall "
                            "probe: does forward stop at a wall in the dream as in the real maze? (default: skip)")
    wall_presses: int = option(6, "wall probe: forward presses dreamed after the real frames up to the wall")
    wall_runs: int = option(24, "wall probe: runs into walls (and as many moving forward runs)")
    wall_dreams: int = option(96, "wall probe: 16-step dreams of the wall episodes, whose presses the collision gate "
                                  "judges on the dreamed frames (0: skip)")
    probe_states: int = option(2, "probe states per clip")
    probe_steps: int = option(8, "steps of each probe action")
    loop_turns: int = option(10, "loop closure: N left then N right")
    device: str = option("auto", "auto (CUDA if available), cpu, cuda:0, ...")
    amp: str = option("auto", "the model's precision, as in the dream env: auto (bf16 where the device multiplies it "
                              "natively: CUDA, CPUs with AVX512-BF16 or AMX), bf16, none (float32)", choices=AMP_CHOICES)
    threads: int = option(0, "torch CPU threads (0: half the cores, -1: torch's default)")
    seed: int = option(0, "noise seed of the dreams")
    out: str = option("", "directory for metrics.json and the PNG grids")
    report: bool = option(False, "also write <out>/report.md")


#: Targets of the dream-quality and agents issues, checked on every evaluation.
def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    table = {r["frames"]: r for r in result.get("rollout", [])}

    def add(name: str, value: float | None, goal: float, text: str, at_most: bool = False) -> None:
        if value is not None:
            met = value <= goal if at_most else value >= goal
            rows.append({"target": name, "measured": value, "goal": goal, "met": "yes" if met else "NO",
                         "meaning": text})

    def bucket(first: int) -> tuple[str, dict[str, Any]] | None:
        """The horizon bucket starting at frame ``first`` (its name depends on the horizon)."""
        for name, row in table.items():
            if name == f"h={first}" or name.startswith(f"h={first}-"):
                return name, row
        return None

    if found := bucket(1):
        name, r = found
        add(f"{name} PSNR - copy-last", r["model psnr"] - r["copy-last psnr"], 1.5, "dB above repeating the last frame")
    if found := bucket(2):
        name, r = found
        add(f"{name} PSNR - copy-last", r["model psnr"] - r["copy-last psnr"], 0.0, "dB")
    if found := bucket(17):
        name, r = found
        add(f"{name} PSNR - best baseline", r["model psnr"] - max(r["copy-last psnr"], r["mean frame psnr"]), 0.0, "dB")
    retrieval = result.get("retrieval")
    if retrieval:
        add("memory gain on revisits (full prefix - last window)", retrieval["gain on revisits"], 1.0,
            f"dB PSNR on {retrieval['revisit frames']} dreamed frames revisiting the prefix")
        add("memory gain on new places", retrieval["gain on new places"], 0.0,
            f"dB PSNR on {retrieval['new place frames']} dreamed frames of places not in the prefix")
    probe = result.get("action_probe")
    if probe:
        add("action probe accuracy", probe["accuracy"], 0.8, "dreams closest to their own real continuation")
        if "left-vs-right ratio" in probe:
            add("left-vs-right ratio", probe["left-vs-right ratio"], 0.5, "dream / real difference")
    loop = result.get("loop_closure")
    if loop:
        add("loop closure PSNR", loop["dream psnr(last, first)"], 20.0, "dB, last vs first frame")
    replay = result.get("reward_replay")
    if replay:
        add("reward events paid", replay["paid fraction"], 0.5, f"of {replay['events']} real rewards, within "
            f"{replay['tolerance']} frames")
        if replay["quiet stretches"]:
            add("false reward stretches", replay["false fraction"], 0.1,
                f"of {replay['quiet stretches']} stretches without reward", at_most=True)
    return rows


def _held_out(ckpt: dict[str, Any], store: EpisodeStore, data_path: str, given: bool) -> tuple[list[int], str]:
    """Episodes to evaluate and a sentence saying how they relate to the training data (the recording
    seeds of all its files; older checkpoints name only the first file's)."""
    trained = ckpt["data"]
    train_seeds = sorted(set(trained.get("seeds") or ([trained["seed"]] if trained.get("seed") is not None else [])))
    all_episodes = list(range(len(store)))
    same_path = Path(data_path).resolve() == Path(str(trained.get("path", ""))).resolve() if trained.get("path") else False
    if not given or same_path:
        held = [e for e in (trained.get("held_out_episodes") or []) if e < len(store)]
        return (held or all_episodes), "held-out episodes of the training recording (same recording seed)"
    seeds = sorted(store.seeds)
    shared = [s for s in seeds if s >= 0 and s in train_seeds]
    if shared:
        return all_episodes, (f"WARNING: recorded with {_seed_list(shared)}, also the training data's: not held out")
    return all_episodes, (f"episodes recorded with {_seed_list(seeds)}, never used for training"
                          + (f" (training data: {_seed_list(train_seeds)})" if train_seeds else ""))


def _seed_list(seeds: list[int]) -> str:
    """[1] -> "seed 1"; [0, 2, 7] -> "seeds 0, 2 and 7"."""
    text = [str(s) for s in seeds]
    return "seed " + text[0] if len(text) == 1 else "seeds " + ", ".join(text[:-1]) + " and " + text[-1]


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Every section of the evaluation that ``cfg`` asks for, in the precision the dream env uses."""
    device = resolve_device(cfg.device)
    set_cpu_threads(cfg.threads)
    with inference_autocast(device, cfg.amp):
        return _evaluate(cfg, device)


def _evaluate(cfg: EvalConfig, device: torch.device) -> dict[str, Any]:
    model, ckpt = load_world_model(cfg.checkpoint, device=device)
    model.eval()
    mcfg = model.config
    if cfg.context_sigma:
        mcfg.context_sigma = cfg.context_sigma
    if cfg.guidance >= 0:
        mcfg.guidance = cfg.guidance
    if cfg.warp_interpolation:
        if model.dit.motion is None:
            raise UserError(f"--warp-interpolation: {cfg.checkpoint} has no motion prior (motion_prior=false)")
        model.dit.motion.interpolation = cfg.warp_interpolation
    if cfg.sampling_sigmas:
        if cfg.sampling_steps:
            raise UserError("give --sampling-sigmas (one level per step) or --sampling-steps, not both")
        try:
            levels = [float(v) for v in cfg.sampling_sigmas.split(",")]
            mcfg.sampling_steps, mcfg.sampling_sigmas = len(levels), levels
            mcfg.validate()
        except ValueError as exc:
            raise UserError(f"--sampling-sigmas {cfg.sampling_sigmas!r}: {exc}",
                            hint="decreasing positive levels, e.g. 80,0.5") from exc
    data_path = cfg.data or str(ckpt["data"].get("path", ""))
    if not data_path:
        raise UserError(f"{cfg.checkpoint} names no training data", hint="pass --data EPISODES (held-out episodes)")
    if not cfg.data and not Path(data_path).exists():
        raise UserError(f"{cfg.checkpoint} was trained on {data_path}, which is not on this machine",
                        hint="pass --data EPISODES (held-out episodes, e.g. recorded with another --seed)")
    store = EpisodeStore(data_path)
    if store.meta.num_actions != mcfg.num_actions:
        raise UserError(f"{data_path} has {store.meta.num_actions} actions, the model {mcfg.num_actions}: "
                        "another action set")
    if cfg.sampler not in ("", "euler", "heun"):
        raise UserError(f"--sampler must be euler or heun, got {cfg.sampler!r}")
    require_at_least(cfg, ("context", "horizon", "retrieval_prefix", "retrieval_horizon", "wall_presses", "wall_runs"), 1)
    require_at_least(cfg, ("retrieval_window", "wall_dreams"), 0)
    episodes, provenance = _held_out(ckpt, store, data_path, bool(cfg.data))
    steps = cfg.sampling_steps or None
    sampler = cfg.sampler or None
    clips = load_clips(store, episodes[: cfg.episodes] if cfg.episodes else episodes, cfg.context + cfg.horizon)
    out = Path(cfg.out) if cfg.out else None
    result: dict[str, Any] = {
        "config": asdict(cfg), "data": data_path, "provenance": provenance, "episodes": clips.episodes,
        "model": {"memory": mcfg.memory, "window": mcfg.window, "sampling_steps": steps or mcfg.sampling_steps,
                  "sampling_sigmas": [round(float(v), 4) for v in model.edm.sampling_sigmas(steps)[:-1]],
                  "sampler": sampler or mcfg.sampler, "sigma_max": mcfg.sigma_max,
                  "context_sigma": mcfg.context_sigma, "guidance": mcfg.guidance,
                  "precision": inference_precision(device, cfg.amp),
                  "warp_interpolation": model.dit.motion.interpolation if model.dit.motion is not None else None,
                  "parameters": model.num_parameters(), "trained_steps": ckpt.get("step")},
        "lpips": LPIPS_UNAVAILABLE, "pictures": [], "seconds": {},
    }
    mean_frame = mean_image(clips.frames)

    # -- open-loop rollout -------------------------------------------------------------------------
    t0 = time.perf_counter()
    dreamed = dream_rollout(model, clips.frames, clips.prev_actions, cfg.context, steps, cfg.seed, sampler,
                            keep_warps=mcfg.motion_prior)
    dream = dreamed.frames
    result["seconds"]["rollout"] = time.perf_counter() - t0
    result["dream_frames_per_s"] = dream.shape[0] * dream.shape[1] / result["seconds"]["rollout"]
    real = clips.frames[:, cfg.context:]
    last_context = clips.frames[:, cfg.context - 1]
    scores = score_rollout(dream, real, last_context, mean_frame)
    masks = horizon_masks(len(clips), cfg.horizon)
    revisit = revisit_masks(clips.extras, mcfg.window)
    if revisit is not None:
        revisit = revisit[:, cfg.context:]
        beyond = np.arange(1, cfg.horizon + 1)[None] >= mcfg.window
        masks["beyond window, revisit"] = beyond & revisit
        masks["beyond window, new place"] = beyond & ~revisit
    result["rollout"] = rollout_table(scores, masks)
    result["stability"] = stability_table(dream, real, last_context, horizon_masks(len(clips), cfg.horizon))
    if dreamed.warps is not None:
        result["warp_edit"] = warp_edit_table(dream, dreamed.warps, real, horizon_masks(len(clips), cfg.horizon))
    if clips.rewards is not None:
        result["rollout_rewards"] = reward_rate_table(dreamed.rewards, clips.rewards[:, cfg.context:],
                                                      horizon_masks(len(clips), cfg.horizon, starts=(1, 9)))
    if out:
        shown = list(range(min(4, len(clips))))
        result["pictures"].append(str(rollout_grid(out / "rollout_grid.png", real, dream, last_context, shown)))
        if dreamed.warps is not None:
            result["pictures"].append(str(rollout_grid(out / "warp_grid.png", real, dream, last_context, shown[:3],
                                                       (1, 2, 3, 4, 6, 8, 12, 16, 24, 32), dreamed.warps)))
        result["videos"] = [str(write_side_by_side(out / f"real_vs_dream_{i}.mp4", real[i], dream[i]))
                            for i in shown[:2]]

    # -- memory retrieval ----------------------------------------------------------------------------
    if cfg.retrieval:
        t0 = time.perf_counter()
        result.update(_retrieval(model, store, episodes, cfg, steps, sampler, out, result["pictures"]))
        result["seconds"]["retrieval"] = time.perf_counter() - t0

    # -- denoiser vs sampler ---------------------------------------------------------------------
    if cfg.denoiser:
        t0 = time.perf_counter()
        positions = sorted({min(p, clips.length - 1) for p in (cfg.context, cfg.context + 16, cfg.context + 48)})
        result["denoiser"] = denoiser_diagnostics(model, clips.frames, clips.prev_actions, cfg.context, positions,
                                                  seed=cfg.seed)
        result["seconds"]["denoiser"] = time.perf_counter() - t0

    # -- action probe and loop closure (real env replays) -------------------------------------------
    if cfg.probes:
        t0 = time.perf_counter()
        result.update(_probes(model, clips, cfg, steps, out, result["pictures"]))
        result["seconds"]["probes"] = time.perf_counter() - t0

    # -- reward replay ------------------------------------------------------------------------------
    if cfg.rewards:
        t0 = time.perf_counter()
        replay = reward_replay(model, store, episodes, cfg.context, steps=steps, seed=cfg.seed)
        if replay is None:
            result["reward_replay_skipped"] = "no real reward event in the evaluation episodes"
        else:
            result["reward_replay"] = replay
        result["seconds"]["reward_replay"] = time.perf_counter() - t0

    # -- walking into walls -------------------------------------------------------------------------
    if cfg.walls:
        t0 = time.perf_counter()
        result.update(_walls(model, cfg, steps, out, result["pictures"]))
        result["seconds"]["walls"] = time.perf_counter() - t0

    result["targets"] = targets(result)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        if cfg.report:
            (out / "report.md").write_text(format_report(result))
    return result


def _walls(model, cfg: EvalConfig, steps, out: Path | None, pictures: list[str]) -> dict[str, Any]:
    """The wall probe's table (and picture), or a note saying why it was skipped."""
    if not Path(cfg.walls).exists():
        raise UserError(f"--walls {cfg.walls}: no such episodes",
                        hint="record some: python collect/record.py --env memory-maze-9x9 --policy explore --bump 0.05 "
                             "--seed 13 --out data/bump_test")
    store = EpisodeStore(cfg.walls)
    window = model.config.window
    if "agent_pos" not in store.group(store.episodes[0]):
        return {"walls_skipped": f"{cfg.walls} has no agent_pos (Memory Maze recordings have it): blocked presses "
                                 "are found from the agent's position"}
    blocked = find_forward_runs(store, window, cfg.wall_presses, cfg.wall_runs, blocked=True)
    if not blocked:
        return {"walls_skipped": f"{cfg.walls} has no {cfg.wall_presses} blocked forward presses in a row "
                                 "(record with collect/record.py --bump P)"}
    moving = find_forward_runs(store, window, cfg.wall_presses, len(blocked), blocked=False)
    b_dream, b_real, b_last = dream_runs(model, store, blocked, window, cfg.wall_presses, steps, cfg.seed)
    scores = {"blocked": run_scores(b_dream, b_real, b_last)}
    if moving:
        scores["moving"] = run_scores(*dream_runs(model, store, moving, window, cfg.wall_presses, steps, cfg.seed))
    if out:
        pairs = [(f"wall #{i}", np.concatenate([b_last[i:i + 1], b_real[i]]), b_dream[i])
                 for i in range(min(4, len(blocked)))]
        pictures.append(str(sequence_grid(out / "walls.png", pairs,
                                          f"{cfg.wall_presses} forward presses into a wall after real frames")))
    walls = {"runs": len(blocked), "presses": cfg.wall_presses, "per press": scores,
             "table": wall_table(scores["blocked"], scores.get("moving"))}
    gate = gate_scores(model, store)
    if gate is not None:
        walls["collision gate"] = gate
        if cfg.wall_dreams:
            try:
                dreamed = dreamed_presses(model, store, range(len(store.episodes)), cfg.wall_dreams, window,
                                          GATE_DREAM_HORIZON, seed=cfg.seed)
                walls["gate on dreamed frames"] = dreamed.caught(model.collision, GATE_DREAM_BUCKETS)
            except ValueError as exc:  # episodes too short for a dream
                walls["gate on dreamed frames skipped"] = str(exc)
    return {"walls": walls}


def _retrieval(model, store: EpisodeStore, episodes: list[int], cfg: EvalConfig, steps, sampler,
               out: Path | None, pictures: list[str]) -> dict[str, Any]:
    """The memory-retrieval section, or a note saying why it was skipped."""
    length = cfg.retrieval_prefix + cfg.retrieval_horizon
    window = cfg.retrieval_window or memoryless_frames(model.config)
    if window >= cfg.retrieval_prefix:
        return {"retrieval_skipped": f"the prefix ({cfg.retrieval_prefix} frames) must be longer than the window-only "
                                     f"dream's {window} observed frames"}
    long_enough = [e for e in episodes if store.episodes[e].num_frames >= length]
    if not long_enough:
        longest = max((store.episodes[e].num_frames for e in episodes), default=0)
        return {"retrieval_skipped": f"no evaluation episode has {length} frames (prefix {cfg.retrieval_prefix} + "
                                     f"horizon {cfg.retrieval_horizon}; longest: {longest})"}
    clips = load_clips(store, long_enough[: cfg.episodes] if cfg.episodes else long_enough, length)
    try:
        r = memory_retrieval(model, clips, cfg.retrieval_prefix, window, mean_image(clips.frames), steps, cfg.seed,
                             sampler)
    except ValueError as exc:
        return {"retrieval_skipped": str(exc)}
    if out:
        pictures.append(str(retrieval_grid(out / "memory_retrieval.png", r, r.most_revisits(2))))
    one_step = one_step_retrieval(model, clips, cfg.retrieval_prefix, window, mean_image(clips.frames), steps,
                                  cfg.seed, sampler)
    retention = memory_retention(model, clips.frames[:, :cfg.retrieval_prefix],
                                 clips.prev_actions[:, :cfg.retrieval_prefix], seed=cfg.seed)
    return {"retrieval": r.summary(), "retrieval_one_step": one_step.summary(),
            **({"memory_retention": retention} if retention else {})}


def _probes(model, clips, cfg: EvalConfig, steps, out: Path | None, pictures: list[str]) -> dict[str, Any]:
    """Action probe and loop closure, or a note saying why they were skipped."""
    if not clips.env_seeds or min(clips.env_seeds) < 0:
        return {"probes_skipped": "the episodes have no recorded env seeds to replay"}
    rng = np.random.default_rng(cfg.seed)
    clip_len = min(clips.length, cfg.context + 16)  # states early in each episode: short real-env replays
    states = probe_states(clips.head(clip_len), cfg.context, cfg.probe_states, rng)
    names = list(PROBE_ACTIONS)
    probe_seqs = [[PROBE_ACTIONS[n]] * cfg.probe_steps for n in names]
    # loop closure and standing still have the same length: one replay and one dream batch for both
    loop_and_hold = [[TURN_LEFT] * cfg.loop_turns + [TURN_RIGHT] * cfg.loop_turns, [NOOP] * (2 * cfg.loop_turns)]
    try:
        replay = MemoryMazeReplay()
    except Exception as exc:  # the real env is an optional capability of this evaluation
        return {"probes_skipped": f"the real Memory Maze is not available: {exc}"}
    try:
        real = real_continuations(replay, clips, states, probe_seqs)
        loop_real, hold_real = real_continuations(replay, clips, states, loop_and_hold).swapaxes(0, 1)
    except ReplayError as exc:
        return {"probes_skipped": str(exc)}
    finally:
        replay.close()
    dream = dream_continuations(model, clips, states, probe_seqs, cfg.context, steps, cfg.seed)
    loop_dream, hold_dream = dream_continuations(model, clips, states, loop_and_hold, cfg.context, steps,
                                                 cfg.seed).swapaxes(0, 1)
    unrelated = unrelated_first_frames_psnr(clips)
    result = {"action_probe": action_probe_scores(dream, real, names),
              "loop_closure": loop_closure_scores(loop_dream, loop_real, unrelated),
              "standing_still": loop_closure_scores(hold_dream, hold_real, unrelated)}
    if out:
        pairs = [(n, real[0, i], dream[0, i]) for i, n in enumerate(names)]
        if len(states) > 1:
            pairs += [(f"{n} (2)", real[1, i], dream[1, i]) for i, n in enumerate(names)]
        pictures.append(str(sequence_grid(out / "action_probe.png", pairs,
                                          f"{cfg.probe_steps} steps of each action from one real state")))
        loops = [(f"#{s}", loop_real[s], loop_dream[s]) for s in range(min(3, len(states)))]
        pictures.append(str(sequence_grid(out / "loop_closure.png", loops,
                                          f"{cfg.loop_turns} x left then {cfg.loop_turns} x right")))
    return result


def format_report(result: dict[str, Any], markdown: bool = True) -> str:
    """The whole evaluation as markdown (or fixed-width text for the terminal)."""
    table = markdown_table if markdown else text_table
    m = result["model"]
    lines = [f"# Evaluation of {result['config']['checkpoint']}" if markdown else f"checkpoint {result['config']['checkpoint']}",
             "",
             f"- data: {result['data']} ({len(result['episodes'])} clips): {result['provenance']}",
             f"- model: memory={m['memory']}, window={m['window']}, {m['parameters'] / 1e6:.2f}M parameters, "
             f"{m['trained_steps']} training steps; sampler {m['sampler']} at sigma "
             f"{'/'.join(f'{v:g}' for v in m.get('sampling_sigmas', [m['sigma_max']]))}, guidance "
             f"{m['guidance']:g}, frames committed at sigma {m['context_sigma']:g}, "
             f"{m.get('precision', 'float32')} matrix products",
             f"- context {result['config']['context']} real frames, then {result['config']['horizon']} dreamed "
             f"from the true actions ({result['dream_frames_per_s']:.1f} dreamed frames/s in a batch of "
             f"{len(result['episodes'])})", ""]
    if result.get("targets"):
        lines += ["## Targets" if markdown else "targets", "", table(result["targets"]), ""]
    lines += ["## Rollout vs baselines (PSNR dB / SSIM)" if markdown else "rollout vs baselines", "",
              table(result["rollout"], ".3f"), "",
              "## Stability (grey levels / dB)" if markdown else "stability", "", table(result["stability"]), ""]
    if result.get("warp_edit"):
        lines += ["## What the network adds to its warp (dB / grey levels)" if markdown else
                  "what the network adds to its warp", "",
                  "Each dreamed frame is the denoiser's edit of the motion prior's warp of the previous dreamed frame; "
                  "an edit PSNR far above the dream's own PSNR means the network leaves the warp nearly as it is.", "",
                  table(result["warp_edit"]), ""]
    if result.get("rollout_rewards"):
        lines += ["## Rewards in the open-loop dreams" if markdown else "rewards in the open-loop dreams", "",
                  "Rewards the dream pays (expected reward >= 0.5, as the env pays) beside the real rewards of the "
                  "same frames; a dream that lost the scene should pay no more than the walk it follows.", "",
                  table(result["rollout_rewards"]), ""]
    def memory_section(title: str, r: dict[str, Any], intro: str, gain_name: str) -> list[str]:
        gain = lambda v: "n/a (no such frames)" if v is None else f"{v:+.2f} dB"  # noqa: E731
        return ["## " + title if markdown else title.lower(), "", intro, "", table(r["table"], ".3f"), "",
                f"{gain_name}: {gain(r['gain on revisits'])} on revisits, {gain(r['gain on new places'])} on new "
                f"places", ""]

    if "retrieval" in result:
        r = result["retrieval"]
        lines += memory_section(
            "Memory retrieval", r,
            f"{r['clips']} clips: the first {r['prefix']} real frames of each episode, then {r['horizon']} frames "
            f"dreamed from the true actions by a state that observed the whole prefix (full prefix) and by a fresh "
            f"one that observed only its last {r['window']} frames (window only: all a memory-less model of window "
            f"{m['window']} sees), with identical noise; a dreamed frame revisits when its cell and heading match a "
            f"prefix frame before the last {r['window']} (one only the full-prefix dream saw), and is a new place "
            f"when they match no prefix frame. PSNR dB / SSIM:",
            "memory gain (full prefix - window only PSNR)")
    elif "retrieval_skipped" in result:
        lines += [f"memory retrieval skipped: {result['retrieval_skipped']}", ""]
    if "retrieval_one_step" in result:
        r = result["retrieval_one_step"]
        lines += memory_section(
            "Memory one step ahead", r,
            f"The same clips without the dream: each of the {r['horizon']} frames after the prefix predicted from "
            f"the real frames before it, by a state that observed all of them (full prefix) and by one that "
            f"observed only the last {r['window']} (window only), with identical noise; a frame revisits when its "
            f"cell and heading match a frame at least {r['window']} frames earlier, and is a new place when they "
            f"match no earlier frame; copy-last is the previous real frame. PSNR dB / SSIM:",
            "memory gain one step ahead")
    if "memory_retention" in result:
        r = result["memory_retention"]
        rows = [{"layer": i, **{f"+{lag}": v for lag, v in zip(r["lags"], values)}}
                for i, values in enumerate(r["layers"])]
        lines += ["## Memory retention" if markdown else "memory retention", "",
                  f"relative change of each layer's memory state ||h - h'|| / ||h||, the given number of frames after "
                  f"the first {r['swap']} frames of each clip were replaced by another clip's (0: nothing of them is "
                  f"left):", "", table(rows, ".4f"), ""]
    if "denoiser" in result:
        lines += ["## Denoiser vs sampler (PSNR of the next frame, dB)" if markdown else "denoiser vs sampler", "",
                  table(result["denoiser"]), ""]
    if "action_probe" in result:
        p = result["action_probe"]
        rows = [{"action": a, "accuracy": p["accuracy per action"][a], "psnr to own real": p["psnr to own real"][a]}
                for a in p["accuracy per action"]]
        lines += ["## Action probe" if markdown else "action probe", "",
                  f"{p['cases']} cases, accuracy {p['accuracy']:.2f}; left-vs-right difference: dream "
                  f"{p.get('dream left-vs-right', float('nan')):.1f}, real {p.get('real left-vs-right', float('nan')):.1f} "
                  f"grey levels (ratio {p.get('left-vs-right ratio', float('nan')):.2f})", "", table(rows), "",
                  "confusion (dream -> closest real): " + ", ".join(f"{k} {v}" for k, v in p["confusion"].items()), ""]
        lc = result["loop_closure"]
        lines += ["## Loop closure" if markdown else "loop closure", "", table([lc]), ""]
        if "standing_still" in result:
            lines += ["## Standing still (noop steps, as many as the loop's)" if markdown else "standing still", "",
                      table([result["standing_still"]]), ""]
    elif "probes_skipped" in result:
        lines += [f"probes skipped: {result['probes_skipped']}", ""]
    if "walls" in result:
        w = result["walls"]
        lines += ["## Walking into walls" if markdown else "walking into walls", "",
                  f"{w['runs']} runs of {w['presses']} forward presses that the real maze refused (the agent stays put; "
                  "its view changes only with what is left of a turn's momentum), dreamed after the real frames up to "
                  "the wall, beside as many runs that moved; PSNR dB to the real frames, mean change per press in grey "
                  "levels:", "", table(w["table"]), ""]
        if "collision gate" in w:
            g = w["collision gate"]
            lines += [f"The collision gate on every press of these episodes it could refuse: it refuses "
                      f"{g['refused ones it refuses']:.0%} of the {g['refused presses']} the maze refused and lets "
                      f"{g['free ones it lets through']:.0%} of the {g['free presses']} free ones through.", ""]
        if "gate on dreamed frames" in w:
            lines += ["The gate in a dream: the presses of 16-step dreams of these episodes (4 real frames, then the "
                      "recorded presses, as the env dreams them), each judged on the frame the dream presses it from "
                      "against the real maze's answer:", "",
                      table([{"presses of the dream": r["presses"], "refused presses": r["refused"],
                              "refused ones refused": f"{r['refused caught']:.0%}", "free presses": r["free"],
                              "free ones let through": f"{r['free passed']:.0%}"}
                             for r in w["gate on dreamed frames"]]), ""]
        elif "gate on dreamed frames skipped" in w:
            lines += [f"gate on dreamed frames skipped: {w['gate on dreamed frames skipped']}", ""]
    elif "walls_skipped" in result:
        lines += [f"wall probe skipped: {result['walls_skipped']}", ""]
    if "reward_replay" in result:
        r = result["reward_replay"]
        lines += ["## Reward replay" if markdown else "reward replay", "",
                  f"{r['paid']} of {r['events']} real reward events paid by the dream within {r['tolerance']} frames "
                  f"({r['context']} real frames observed until {r['lead']} frames before each reward, then the true "
                  f"actions); false rewards in {r['false rewards']} of {r['quiet stretches']} stretches without one", ""]
    elif "reward_replay_skipped" in result:
        lines += [f"reward replay skipped: {result['reward_replay_skipped']}", ""]
    if result.get("pictures"):
        lines += ["## Pictures" if markdown else "pictures", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" if markdown else p for p in result["pictures"]]
        lines += [f"[{Path(v).name}]({Path(v).name})" if markdown else v for v in result.get("videos", [])]
        lines.append("")
    lines.append(result["lpips"])
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rad-evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, EvalConfig)
    return parser


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, evaluate, print the report; returns the result."""
    parser = build_parser()
    cfg = dataclass_from_args(EvalConfig, parser.parse_args(argv))
    if cfg.report and not cfg.out:
        parser.error("--report needs --out")
    result = evaluate(cfg)
    print(format_report(result, markdown=False))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``rad-evaluate``): 0 on success, 2 with a one-line error for a user mistake."""
    return run_cli(cli, argv, prog="rad-evaluate")


if __name__ == "__main__":
    sys.exit(main())
