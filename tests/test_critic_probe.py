"""benchmarks/critic_probe.py (--quick): a fresh critic learns to tell a model's dreams from real frames."""

from __future__ import annotations

from pathlib import Path

from benchmarks import critic_probe


def test_critic_separates_dreams_of_noise_frames(dream_files: dict[str, str], random_episodes, tmp_path: Path,
                                                 capsys) -> None:
    """Real frames of uniform noise against a random tiny model's dreams of them: by the last step the
    critic scores every real frame above every dream (AUC 1; scored on the same file here) in both buckets and both pools."""
    data = random_episodes(tmp_path / "noise.h5", [16, 16])
    argv = ["--quick", "--checkpoint", dream_files["checkpoint"], "--train", str(data), "--test", str(data),
            "--threads", "1"]
    assert critic_probe.main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line[:1].isdigit()]
    last = [r for r in rows if r[2] == "30"]
    assert [(r[0], r[1]) for r in last] == [("1-4", "patch"), ("1-4", "frame"), ("5-8", "patch"), ("5-8", "frame")]
    assert all(float(r[6]) == 1.0 for r in last), last
    assert any(float(r[6]) < 1.0 for r in rows if r[2] == "0")  # a fresh critic does not (the test can fail)


def test_missing_checkpoint_is_one_line(dream_files: dict[str, str], capsys) -> None:
    assert critic_probe.main(["--quick", "--checkpoint", "missing.pt", "--train", dream_files["context"],
                              "--test", dream_files["context"]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("critic_probe: error:") and "missing.pt" in err and err.count("\n") == 1
