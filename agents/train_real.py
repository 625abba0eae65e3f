"""Baseline: train PPO in the *real* Memory Maze (slow: ~30-40 env steps/s per CPU core) and evaluate
it exactly like a dream-trained agent (same options as ``agents.train_ppo``).

    python -m agents.train_real --num-envs 4 --timesteps 20000 --out runs/ppo_real
"""

from __future__ import annotations

from typing import Any

from .train_ppo import main as train_ppo_main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--train-env" not in argv and not any(a.startswith("--train-env=") for a in argv):
        argv = ["--train-env", "real", *argv]
    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv += ["--out", "runs/ppo_real"]
    return train_ppo_main(argv)


if __name__ == "__main__":
    main()
