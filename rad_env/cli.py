"""What every rad-env command-line tool shares: clean user errors, dataclass options, output folders.

A tool module defines ``cli(argv) -> result`` (parses, runs, raises :class:`UserError` for user
mistakes) and a console-script entry point that returns an exit status::

    def main(argv: Sequence[str] | None = None) -> int:
        return run_cli(cli, argv, prog="rad-ppo")

Options come from a dataclass config, one flag per field, the help text from the field's
``metadata["help"]`` (:func:`option` writes that for you)::

    @dataclass
    class Config:
        steps: int = option(100, "training steps")
        fast: bool = option(False, "skip the slow checks")        # --fast / --no-fast

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Config)
    cfg = dataclass_from_args(Config, parser.parse_args(argv))   # or base=preset_config

Set ``RAD_ENV_TRACEBACK=1`` to get the full traceback of a user error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import UserError

__all__ = ["UserError", "USER_ERRORS", "run_cli", "error_message", "option", "add_dataclass_arguments",
           "dataclass_from_args", "removed_if_failed", "remove_empty_dirs", "missing_root"]

T = TypeVar("T")

#: Exceptions that mean "the user can fix this" (``CheckpointError`` and ``SchemaError`` are ``UserError``s).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, NotADirectoryError,
                                                IsADirectoryError, FileExistsError, PermissionError)


# -- running a tool ------------------------------------------------------------------------------
def error_message(exc: BaseException) -> str:
    """One line for a user error: OS errors as ``reason: path``, others as their message (lines joined
    with "; ")."""
    if isinstance(exc, OSError) and exc.strerror:
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        return f"{exc.strerror}: {' -> '.join(names)}" if names else exc.strerror
    text = ""
    for line in (line.strip() for line in str(exc).splitlines()):
        if line:
            text += line if not text else (" " if text.endswith(":") else "; ") + line
    return text or type(exc).__name__


def run_cli(func: Callable[[Sequence[str] | None], T], argv: Sequence[str] | None = None, *, prog: str,
            exit_status: Callable[[T], int] | None = None) -> int:
    """Run ``func(argv)`` as a command: returns ``exit_status(result)`` (default 0) on success.

    A user error (:data:`USER_ERRORS`) prints ``prog: error: message`` (and ``prog: hint: ...`` when the
    error has a hint) on stderr and returns 2; Ctrl-C returns 130. Anything else is a bug and keeps its
    traceback. ``argparse`` usage errors exit 2 by themselves."""
    try:
        result = func(argv)
    except USER_ERRORS as exc:
        if os.environ.get("RAD_ENV_TRACEBACK"):
            raise
        print(f"{prog}: error: {error_message(exc)}", file=sys.stderr)
        hint = getattr(exc, "hint", None)
        if hint:
            print(f"{prog}: hint: {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return exit_status(result) if exit_status is not None else 0


# -- dataclass options --------------------------------------------------------------------------
def option(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002 - argparse's word
           default_factory: Callable[[], Any] | Any = dataclasses.MISSING, **argparse_kwargs: Any) -> Any:
    """A dataclass field with its command-line help: ``metadata = {"help": help, **argparse_kwargs}``.

    Recognised extra keys: ``choices``, ``metavar``, ``flag`` (the flag's name instead of
    ``--field-name``) and ``type`` (a converter from the command-line string)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"help": help, **argparse_kwargs})


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _argparse_kwargs(name: str, tp: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """``type``/``choices``/``nargs``/``action`` for one field of type ``tp``."""
    tp = _unwrap_optional(tp)
    kwargs: dict[str, Any] = {}
    if "type" in meta:
        kwargs["type"] = meta["type"]
    elif tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(tp) is Literal:
        values = typing.get_args(tp)
        kwargs.update(type=type(values[0]), choices=values)
    elif typing.get_origin(tp) in (list, tuple) and typing.get_args(tp):
        item = typing.get_args(tp)[0]
        if item not in (int, float, str) or (typing.get_origin(tp) is tuple and typing.get_args(tp)[1:] != (...,)):
            raise TypeError(f"field {name!r}: only list[X] / tuple[X, ...] of int, float or str become flags")
        kwargs.update(type=item, nargs="+")
    elif tp in (int, float, str, Path):
        kwargs["type"] = tp
    else:
        raise TypeError(f"field {name!r} of type {tp!r} has no command-line form: skip it or give "
                        "metadata['type'] (a converter from str)")
    if "choices" in meta:
        kwargs["choices"] = meta["choices"]
    if "metavar" in meta:
        kwargs["metavar"] = meta["metavar"]
    return kwargs


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def add_dataclass_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                            skip: Iterable[str] = ()) -> None:
    """Add one flag per field of dataclass ``cls`` (except ``skip``): ``--field-name VALUE``.

    bool fields become ``--x/--no-x``, ``Literal`` fields get choices, ``list[X]``/``tuple[X, ...]``
    take one or more values, ``X | None`` takes an X. The help is ``metadata["help"]`` plus the
    default (omitted when it is None: say in the help what None means); a field without a default is
    a required flag. Flags left out of the command line are absent from the parsed namespace, so
    :func:`dataclass_from_args` can lay the given ones over a base config (a preset)."""
    skipped = set(skip)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skipped or not f.init:
            continue
        meta = dict(f.metadata)
        kwargs = _argparse_kwargs(f.name, hints[f.name], meta)
        default = _default_of(f)
        help_text = str(meta.get("help", ""))
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        elif default is not None:
            help_text = f"{help_text} (default: {_shown(default)})".strip()
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=help_text.replace("%", "%%") or None,
                            **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace | Mapping[str, Any],
                        base: T | Mapping[str, Any] | None = None) -> T:
    """Build ``cls`` from parsed flags: the fields given on the command line, laid over ``base``
    (an instance of ``cls`` or a dict of field values; default: the field defaults). Values of
    ``tuple`` fields are converted from argparse's lists. Other namespace entries are ignored."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    if base is not None:
        values.update({n: getattr(base, n) for n in names} if dataclasses.is_dataclass(base)
                      else {k: v for k, v in base.items() if k in names})
    for name in names & set(given):
        value = given[name]
        if isinstance(value, list) and typing.get_origin(_unwrap_optional(hints[name])) is tuple:
            value = tuple(value)
        values[name] = value
    return cls(**values)


def require_at_least(config: Any, names: Sequence[str], minimum: int) -> None:
    """Raise :class:`UserError` for the first of the flags ``names`` (config fields) below ``minimum``."""
    for name in names:
        if getattr(config, name) < minimum:
            raise UserError(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(config, name)}")


# -- output folders -----------------------------------------------------------------------------
def missing_root(path: str | os.PathLike) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet."""
    path = Path(path).absolute()
    if path.exists():
        return None
    missing = path
    for parent in path.parents:
        if parent.exists():
            return missing
        missing = parent
    return missing


def remove_empty_dirs(root: str | os.PathLike) -> bool:
    """Remove ``root`` and the folders under it that hold no file; returns True if ``root`` is gone."""
    root = Path(root)
    if not root.is_dir():
        return not root.exists()
    for directory, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):  # deepest first
        try:
            os.rmdir(directory)
        except OSError:  # holds a file (or a folder that does)
            pass
    return not root.exists()


@contextmanager
def removed_if_failed(path: str | os.PathLike) -> Iterator[Path]:
    """Run a block that writes into folder ``path``: if the block fails, the folders it created
    (``path`` and missing parents) are removed again when they hold no file. Files are never deleted."""
    path = Path(path)
    created = missing_root(path)
    try:
        yield path
    except BaseException:
        if created is not None:
            remove_empty_dirs(created)
        raise
