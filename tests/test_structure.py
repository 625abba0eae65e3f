"""How the parts join: no sys.path tricks, one place for MUJOCO_GL and for building dream envs,
scripts runnable as files, quick benchmarks that time after a warm-up."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((REPO / folder).rglob("*.py"))]


def test_no_sys_path_insert_in_scripts() -> None:
    offenders = [str(p.relative_to(REPO)) for p in python_files("collect", "benchmarks", "agents", "rad_env")
                 if "sys.path.insert" in p.read_text()]
    assert offenders == []


def test_mujoco_gl_is_set_in_one_place() -> None:
    setters = [str(p.relative_to(REPO)) for p in python_files("collect", "benchmarks", "agents", "rad_env")
               if '"MUJOCO_GL"' in p.read_text()]
    assert setters == ["rad_env/__init__.py"]


def test_dream_envs_are_built_only_by_the_factory() -> None:
    """agents/, benchmarks/ and the vector env call rad_env.envs.factory instead of building cores."""
    for path in python_files("agents", "benchmarks") + [REPO / "rad_env/envs/vector.py"]:
        text = path.read_text()
        assert "build_core" not in text and "DreamCore(" not in text, path
        assert "from .dream import" not in text and "envs.dream import" not in text, path


def test_benchmarks_are_packaged() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "benchmarks*" in config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert config["project"]["scripts"]["rad-demo"] == "rad_env.demo:main"


@pytest.mark.parametrize("script", ["collect/record.py", "collect/importers.py", "benchmarks/speed.py",
                                    "benchmarks/soak.py", "benchmarks/memory_experiment.py"])
def test_scripts_run_as_files(script: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_quick_speed_benchmark_times_after_a_warm_up() -> None:
    from benchmarks import speed

    args = speed.build_parser().parse_args(["--quick"])
    speed.apply_quick(args)
    assert speed.WARMUP_CALLS >= 1
    assert args.dream_steps >= 10 and args.probe_frames >= 5 and args.train_steps >= 3
    assert args.far <= 64 and args.collect_workers == [1]  # seconds, not minutes


def test_memory_experiment_explains_a_missing_revisit_split() -> None:
    from benchmarks.memory_experiment import verdict

    lines = verdict([], {}, ["lstm"], None, has_positions=False)
    assert lines[0] == "no revisit split: the evaluation data has no positions (agent_pos/agent_dir or x/z/yaw extras)"
    skipped = {"lstm": {"seeds": 0, "skipped": ["seed 0: no evaluation episode has 384 frames"],
                        "gain on revisits": None}}
    lines = verdict([], skipped, ["lstm"], None)
    assert lines[0] == "lstm: memory retrieval skipped (seed 0: no evaluation episode has 384 frames)"
    assert "not judged" in lines[-1]


def test_gpu_session_script_parses() -> None:
    """tools/gpu_session.sh runs on a lent GPU machine only (its SCALE=dry mode runs it on a CPU in
    about a minute); here bash checks its syntax."""
    done = subprocess.run(["bash", "-n", str(REPO / "tools" / "gpu_session.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
