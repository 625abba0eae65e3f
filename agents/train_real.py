"""Baseline: train PPO in the *real* Memory Maze (slow: ~30-40 env steps/s per CPU core) and evaluate
it exactly like a dream-trained agent (same options as ``agents.train_ppo``).

    python -m agents.train_real --num-envs 4 --timesteps 20000 --out runs/ppo_real
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from rad_env.cli import run_cli

from . import train_ppo

PROG = "python -m agents.train_real"


def with_real_defaults(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--train-env real`` and ``--out runs/ppo_real`` unless they are given."""
    argv = list(argv)
    if not any(a == "--train-env" or a.startswith("--train-env=") for a in argv):
        argv = ["--train-env", "real", *argv]
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        argv += ["--out", "runs/ppo_real"]
    return argv


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """:func:`agents.train_ppo.cli` with the real Memory Maze as the training env; returns the summary."""
    return train_ppo.cli(with_real_defaults(sys.argv[1:] if argv is None else argv))


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(cli, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
