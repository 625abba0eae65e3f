"""The shared command-line helpers (rad_env.cli) and clean user-facing errors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import torch

from rad_env.checkpoint import CheckpointError, load_checkpoint
from rad_env.cli import (UserError, add_dataclass_arguments, dataclass_from_args, option, remove_empty_dirs,
                         removed_if_failed, require_at_least, run_cli)
from rad_env.data import SchemaError


# ------------------------------------------------------------------------------------------ run_cli


def test_require_at_least_names_the_first_flag_below_its_minimum() -> None:
    @dataclass
    class Flags:
        num_envs: int = 2
        eval_max_steps: int = 0
        time_limit: float = -1.0

    require_at_least(Flags(), ("num_envs",), 1)
    require_at_least(Flags(), ("eval_max_steps",), 0)
    with pytest.raises(UserError, match=r"^--eval-max-steps must be >= 1, got 0$"):
        require_at_least(Flags(), ("num_envs", "eval_max_steps", "time_limit"), 1)
    with pytest.raises(UserError, match=r"^--time-limit must be >= 0, got -1.0$"):
        require_at_least(Flags(), ("eval_max_steps", "time_limit"), 0)


def test_success_returns_0_or_the_chosen_status(capsys) -> None:
    assert run_cli(lambda argv: {"done": argv}, ["x"], prog="tool") == 0
    status = run_cli(lambda argv: {"problems": ["p"]}, [], prog="tool", exit_status=lambda r: int(bool(r["problems"])))
    assert status == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("error, expected", [
    (UserError("bad --steps"), "tool: error: bad --steps\n"),
    (UserError("two problems:\n  first\n  second\n"), "tool: error: two problems: first; second\n"),
    (UserError(""), "tool: error: UserError\n"),
    (CheckpointError("x.pt is not a checkpoint"), "tool: error: x.pt is not a checkpoint\n"),
    (SchemaError("a.h5: missing datasets"), "tool: error: a.h5: missing datasets\n"),
    (FileNotFoundError(2, "No such file or directory", "data/mm9"),
     "tool: error: No such file or directory: data/mm9\n"),
    (FileNotFoundError("no episode data at data/mm9"), "tool: error: no episode data at data/mm9\n"),
    (IsADirectoryError(21, "Is a directory", "runs"), "tool: error: Is a directory: runs\n"),
    (NotADirectoryError(20, "Not a directory", "f/x"), "tool: error: Not a directory: f/x\n"),
])
def test_user_errors_are_one_line_and_exit_2(error, expected, capsys) -> None:
    def fail(argv):
        raise error

    assert run_cli(fail, [], prog="tool") == 2
    captured = capsys.readouterr()
    assert captured.err == expected and captured.out == ""


def test_hint_and_interrupt_and_bugs(capsys, monkeypatch) -> None:
    def hinted(argv):
        raise UserError("no checkpoint", hint="train one first")

    assert run_cli(hinted, [], prog="tool") == 2
    assert capsys.readouterr().err == "tool: error: no checkpoint\ntool: hint: train one first\n"

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_cli(interrupted, [], prog="tool") == 130

    def bug(argv):
        raise ZeroDivisionError("a bug keeps its traceback")

    with pytest.raises(ZeroDivisionError):
        run_cli(bug, [], prog="tool")
    monkeypatch.setenv("RAD_ENV_TRACEBACK", "1")
    with pytest.raises(UserError):
        run_cli(hinted, [], prog="tool")


# ------------------------------------------------------------------------------------------ dataclass options


@dataclass
class Config:
    data: str = option(help="episodes")
    steps: int = option(100, "training steps")
    lr: float = option(1e-3, "learning rate; 100% means 1.0")
    fast: bool = option(False, "skip the slow checks")
    tensorboard: bool = option(True, "write logs")
    memory: Literal["lstm", "none"] = option("lstm", "memory type")
    checkpoint: str | None = option(None, "a checkpoint (default: the shipped one)")
    buckets: tuple[int, ...] = option((1, 4, 16), "horizon buckets")
    out: Path = option(Path("runs/x"), "output folder")
    policy: str = option("random", "policy", choices=("random", "explore"))


def parse(argv: list[str], base=None) -> Config:
    parser = argparse.ArgumentParser(prog="t")
    add_dataclass_arguments(parser, Config)
    return dataclass_from_args(Config, parser.parse_args(argv), base)


def test_one_flag_per_field_with_types() -> None:
    cfg = parse(["--data", "d", "--steps", "5", "--lr", "0.5", "--fast", "--no-tensorboard", "--memory", "none",
                 "--checkpoint", "c.pt", "--buckets", "1", "2", "--out", "o", "--policy", "explore"])
    assert cfg == Config(data="d", steps=5, lr=0.5, fast=True, tensorboard=False, memory="none", checkpoint="c.pt",
                         buckets=(1, 2), out=Path("o"), policy="explore")
    assert parse(["--data", "d"]) == Config(data="d")


def test_required_fields_and_choices_are_enforced(capsys) -> None:
    for argv in (["--steps", "3"], ["--data", "d", "--memory", "full"], ["--data", "d", "--policy", "x"],
                 ["--data", "d", "--steps", "many"]):
        with pytest.raises(SystemExit) as exc:
            parse(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "the following arguments are required: --data" in err and "invalid choice: 'full'" in err


def test_flags_given_override_the_base_others_keep_it() -> None:
    preset = Config(data="preset-data", steps=2000, lr=1e-4, fast=True)
    cfg = parse(["--data", "d", "--steps", "7"], base=preset)
    assert (cfg.data, cfg.steps, cfg.lr, cfg.fast) == ("d", 7, 1e-4, True)
    cfg = parse(["--data", "d"], base={"steps": 50, "unrelated": 1})
    assert (cfg.steps, cfg.lr) == (50, 1e-3)


def test_help_shows_each_fields_help_and_default() -> None:
    parser = argparse.ArgumentParser(prog="t")
    add_dataclass_arguments(parser, Config, skip=("out",))
    text = " ".join(parser.format_help().split())
    assert "training steps (default: 100)" in text and "100% means 1.0 (default: 0.001)" in text
    assert "--fast, --no-fast skip the slow checks (default: False)" in text
    assert "horizon buckets (default: 1 4 16)" in text
    assert "a checkpoint (default: the shipped one)" in text and "(default: None)" not in text
    assert "--out" not in text


def test_unsupported_field_types_must_be_skipped() -> None:
    @dataclass
    class WithDict:
        model: dict = option(None, "overrides")

    with pytest.raises(TypeError, match="model"):
        add_dataclass_arguments(argparse.ArgumentParser(), WithDict)
    add_dataclass_arguments(argparse.ArgumentParser(), WithDict, skip=("model",))


# ------------------------------------------------------------------------------------------ output folders


def test_failed_block_removes_the_empty_folders_it_created(tmp_path) -> None:
    out = tmp_path / "a" / "b" / "run"
    with pytest.raises(RuntimeError):
        with removed_if_failed(out):
            (out / "tb" / "logs").mkdir(parents=True)
            raise RuntimeError("failed before writing anything")
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError):
        with removed_if_failed(out):
            (out / "tb").mkdir(parents=True)
            (out / "partial.csv").write_text("step\n")
            raise RuntimeError("failed after writing a file")
    assert (out / "partial.csv").exists() and not (out / "tb").exists()  # files are never deleted
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(RuntimeError):
        with removed_if_failed(existing):
            raise RuntimeError("x")
    assert existing.is_dir()  # a folder that was there before stays
    with removed_if_failed(tmp_path / "ok") as path:
        path.mkdir()
    assert (tmp_path / "ok").is_dir()  # success keeps everything
    assert remove_empty_dirs(tmp_path / "ok") and remove_empty_dirs(tmp_path / "never-made")


# ------------------------------------------------------------------------------------------ checkpoints


class NotAllowed:
    """A class torch's weights-only loader refuses."""


@pytest.mark.parametrize("content", ["object", "garbage", "numpy"])
def test_non_checkpoint_files_never_suggest_weights_only_false(tmp_path, content) -> None:
    path = tmp_path / "file.pt"
    if content == "object":
        torch.save({"model": NotAllowed()}, path)
    elif content == "garbage":
        path.write_bytes(b"not a checkpoint at all\x00" * 4)
    else:
        import numpy as np

        np.save(path.with_suffix(".npy"), np.zeros(3))
        path.with_suffix(".npy").rename(path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert str(path) in message and "not a readable torch checkpoint" in message
    assert "weights_only" not in message and "trust" not in message and "\n" not in message
    if content == "object":
        assert "NotAllowed" in message and "not a rad-env checkpoint" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
