"""Stable-Baselines3 callbacks of the agent scripts: a wall-clock budget and a log of training returns."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback

#: Columns of the training-returns CSV (one row per finished training episode; ``refused`` and ``forward``: the
#: presses the dream's wall refused and the steps forward it performed, written when the run counts them
#: (``--wall-penalty`` or ``--forward-bonus``), else empty).
RETURN_COLUMNS = ("seconds", "timesteps", "return", "length", "refused", "forward")


class WallClockLimit(BaseCallback):
    """Stop ``learn`` once ``seconds`` of wall clock have passed since training started (0: no limit)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.start = 0.0

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()

    def _on_step(self) -> bool:
        return not self.seconds or time.perf_counter() - self.start < self.seconds


class EpisodeReturnLog(BaseCallback):
    """Append every finished training episode (from the ``Monitor``/``VecMonitor`` ``episode`` info) to a
    CSV: wall-clock seconds since training started, env steps so far, return, length, refused presses, steps
    forward."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.start = 0.0

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()
        self.file = self.path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(RETURN_COLUMNS)

    def _on_step(self) -> bool:
        episodes = [info["episode"] for info in self.locals.get("infos", ()) if "episode" in info]
        if episodes:
            seconds = time.perf_counter() - self.start
            for episode in episodes:
                self.writer.writerow((f"{seconds:.2f}", self.num_timesteps, episode["r"], episode["l"],
                                      episode.get("refused", ""), episode.get("forward", "")))
            self.file.flush()
        return True

    def _on_training_end(self) -> None:
        self.file.close()
