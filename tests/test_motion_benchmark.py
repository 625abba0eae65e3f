"""benchmarks/motion_prior.py (--quick) on synthetic episodes whose camera pans with the actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import motion_prior
from rad_env.data import Episode, FileMeta, write_episodes

STEPS = 60
PAN = {2: -1, 3: 1}  # turn left / right: the view moves 1 pixel, 3 when the turn continues; others keep it


@pytest.fixture(scope="module")
def panning(tmp_path_factory) -> Path:
    """Four episodes: a 16x16 window onto a smooth wide panorama, moved by the actions (with momentum)."""
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("data") / "pan.h5"
    episodes = []
    for _ in range(4):
        coarse = rng.integers(0, 256, (4, 40, 3)).astype(np.float32)
        panorama = np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1)  # (16, 160, 3)
        panorama = (panorama + np.roll(panorama, 1, axis=1) + np.roll(panorama, 2, axis=1)) / 3  # soft edges
        actions = rng.choice([1, 2, 3], STEPS)
        x = 70
        obs = np.zeros((STEPS + 1, 16, 16, 3), np.uint8)
        for t in range(STEPS + 1):
            if t:
                momentum = 3 if t > 1 and actions[t - 2] == actions[t - 1] else 1
                x += PAN.get(int(actions[t - 1]), 0) * momentum
            obs[t] = panorama[:, x:x + 16].round().astype(np.uint8)
        episodes.append(Episode(obs=obs, action_id=actions, action=actions, reward=np.zeros(STEPS, np.float32),
                                terminated=np.zeros(STEPS, bool),
                                truncated=np.eye(1, STEPS, STEPS - 1, dtype=bool)[0]))
    write_episodes(out, episodes, FileMeta("synthetic", "memory-maze", 6, (16, 16, 3)))
    return out


def test_warp_beats_copy_on_turns_and_tables_print(panning: Path, capsys) -> None:
    assert motion_prior.main(["--quick", "--train", str(panning), "--test", str(panning), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for action in ("2", "3"):  # the turns: warping by the fitted flow predicts them far better than copying,
        copy_db, warp_db, pair_db = (float(v) for v in rows[action][2:5])  # and better still knowing the previous action
        assert warp_db > copy_db + 2 and pair_db > warp_db + 2, rows[action]
    assert "h=1" in rows and "h=2-16" in rows and "open loop" in out


def test_missing_data_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert motion_prior.main(["--quick", "--train", str(tmp_path / "nope"), "--test", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("motion_prior:") and "nope" in err and "\n" not in err


def test_content_flow_column(panning: Path, capsys) -> None:
    """--content-flow N adds the per-pair warp plus a fitted content flow to every table; starting at zero and
    fit for a few batches, it predicts the turns about as the per-pair warp does."""
    argv = ["--quick", "--train", str(panning), "--test", str(panning), "--threads", "1", "--content-flow", "4"]
    assert motion_prior.main(argv) == 0
    out = capsys.readouterr().out
    assert "warp per pair + content flow: fit in 20 batches" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for action in ("2", "3"):
        pair_db, content_db = float(rows[action][4]), float(rows[action][5])
        assert abs(content_db - pair_db) < 1.0, rows[action]
