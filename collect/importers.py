"""Import existing datasets into rad-env HDF5 episode files (the same schema as the recorders).

Usage (one CLI, reached through the recorder or directly)::

    python collect/record.py import memory-maze SRC --out DIR      # Memory Maze offline dataset (NPZ)
    python collect/record.py import teco SRC --out DIR --frame-size 64   # TECO Minecraft (npz / mp4+npz)
    python collect/record.py import minerl SRC --out DIR           # MineRL-v0 trajectory folders
    python collect/record.py import rad-minecraft SRC --out DIR    # the RAD authors' Minecraft (mp4 + npz)
    python -m collect.importers teco SRC --out DIR                 # same CLI

``SRC`` is one input (file or trajectory folder) or a directory searched recursively. Inputs are
imported in sorted path order, one episode each, to ``DIR/ep<seq>.h5`` (via
:class:`rad_env.data.EpisodeWriter`: atomic, one complete file per episode). ``DIR/imported.tsv``
maps each episode file to its input; ``--resume`` skips inputs already imported (and deletes
leftover ``*.tmp`` files). An input that cannot be converted stops the import with an error naming
the file; with ``--skip-bad`` the import goes on and every skipped input is listed at the end
(exit status 1). Formats and conversion rules are documented in :mod:`collect.import_memory_maze`,
:mod:`collect.import_teco`, :mod:`collect.import_minerl` and :mod:`collect.import_rad_minecraft`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import h5py

from rad_env.data import Episode, EpisodeWriter, FileMeta, SchemaError

INDEX_FILE = "imported.tsv"


@dataclass
class Importer:
    """How to find and convert one kind of input."""

    name: str
    find_inputs: Callable[[Path], list[Path]]
    convert: Callable[..., tuple[Episode, FileMeta]]  # (path, **options) -> (episode, meta)


@dataclass
class ImportSummary:
    out: str
    imported: list[tuple[str, str]] = field(default_factory=list)  # (episode file, input)
    skipped_done: int = 0
    bad: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    bytes: int = 0

    def format(self) -> str:
        frames = self.steps + len(self.imported)
        lines = [f"imported {len(self.imported)} episode(s), {self.steps} steps in {self.seconds:.1f} s into "
                 f"{self.out}" + (f" ({self.skipped_done} already imported)" if self.skipped_done else ""),
                 f"{self.bytes / 1e6:.2f} MB written" + (f", {1000 * self.bytes / frames / 1e6:.2f} MB per 1000 frames"
                                                         if frames else "")]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"PROBLEM: {b}" for b in self.bad]
        return "\n".join(lines)


def _importers() -> dict[str, Importer]:
    from collect import import_memory_maze, import_minerl, import_rad_minecraft, import_teco

    return {
        "memory-maze": Importer("memory-maze", import_memory_maze.find_inputs, import_memory_maze.convert),
        "teco": Importer("teco", import_teco.find_inputs, import_teco.convert),
        "minerl": Importer("minerl", import_minerl.find_inputs, import_minerl.convert),
        "rad-minecraft": Importer("rad-minecraft", import_rad_minecraft.find_inputs, import_rad_minecraft.convert),
    }


def _read_index(out: Path) -> dict[str, str]:
    """episode file name -> input path, for episodes that exist."""
    index: dict[str, str] = {}
    path = out / INDEX_FILE
    if path.exists():
        for line in path.read_text().splitlines():
            if "\t" in line:
                name, source = line.split("\t", 1)
                index[name] = source
    return index


def _existing_meta(out: Path) -> FileMeta | None:
    for path in sorted(out.glob("ep*.h5")):
        with h5py.File(path, "r") as f:
            return FileMeta.from_attrs(f.attrs, str(path))
    return None


def run_import(kind: str, src: str | os.PathLike, out: str | os.PathLike, *, resume: bool = False,
               skip_bad: bool = False, limit: int | None = None, compression_level: int = 4,
               progress: bool = False, **options: Any) -> ImportSummary:
    """Import every input under ``src`` with importer ``kind``; ``options`` go to its ``convert``."""
    importers = _importers()
    if kind not in importers:
        raise ValueError(f"unknown importer {kind!r}; choose one of {', '.join(importers)}")
    importer = importers[kind]
    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"import source {src} does not exist")
    inputs = importer.find_inputs(src)
    if not inputs:
        raise SchemaError(f"{src}: no {kind} inputs found (see `record.py import {kind} --help` for the layout)")
    summary = ImportSummary(out=str(out))

    existing = EpisodeWriter.completed_ids(out)
    if existing and not resume:
        raise FileExistsError(f"{out} already holds {len(existing)} episode(s); pass --resume to continue "
                              "that import or choose an empty --out")
    index = _read_index(out)
    on_disk = {f"ep{i:06d}.h5" for i in existing}
    for name in sorted(on_disk - set(index)):  # written but not indexed: the run died in between
        (out / name).unlink()
        summary.notes.append(f"removed {out / name}: not in {INDEX_FILE} (run died while indexing)")
    done_inputs = {index[name] for name in on_disk if name in index}
    meta = _existing_meta(out) if resume else None
    writer: EpisodeWriter | None = None
    todo = [p for p in inputs if str(p.resolve()) not in done_inputs]
    summary.skipped_done = len(inputs) - len(todo)
    if limit is not None:
        todo = todo[:limit]

    iterator: Iterable[Path] = todo
    if progress:
        from tqdm import tqdm

        iterator = tqdm(todo, unit="episode", desc=f"import {kind}", file=sys.stderr)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / INDEX_FILE, "a") as index_file:
        for path in iterator:
            try:
                episode, episode_meta = importer.convert(path, **options)
                if meta is None:
                    meta = episode_meta
                elif not (meta.compatible_with(episode_meta) and meta.source == episode_meta.source):
                    raise SchemaError(f"{path}: source/action set/frame shape {episode_meta.source}/"
                                      f"{episode_meta.action_set}/{episode_meta.frame_shape} differ from the other "
                                      f"episodes in {out} ({meta.source}/{meta.action_set}/{meta.frame_shape}); "
                                      "import them into another --out")
                if writer is None:
                    writer = EpisodeWriter(out, meta, resume=True, level=compression_level)
                    summary.notes += [f"removed partial episode {out / n}" for n in writer.removed_partial]
                written = writer.write(episode)
            except (SchemaError, ValueError, KeyError, OSError) as exc:
                message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                if not skip_bad:
                    raise SchemaError(message) from exc
                summary.bad.append(message)
                continue
            index_file.write(f"{written.name}\t{path.resolve()}\n")
            index_file.flush()
            summary.imported.append((str(written), str(path)))
            summary.steps += episode.length
            summary.bytes += written.stat().st_size
    summary.seconds = time.perf_counter() - start
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="record.py import",
        description=__doc__.split("\n\n")[0] + " Inputs are converted one episode each into DIR/ep<seq>.h5.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True, metavar="{memory-maze,teco,minerl,rad-minecraft}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("src", help="input file/folder, or a directory searched recursively")
        p.add_argument("--out", required=True, help="output directory (DIR/ep<seq>.h5)")
        p.add_argument("--resume", action="store_true", help="skip inputs already imported into --out")
        p.add_argument("--skip-bad", action="store_true", help="skip (and list) inputs that cannot be converted")
        p.add_argument("--limit", type=int, default=None, help="import at most this many new inputs")
        p.add_argument("--compression-level", type=int, default=4, help="gzip level of obs chunks")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    from collect import import_memory_maze, import_minerl, import_rad_minecraft, import_teco
    from collect.frames import SQUARE_RULES

    p = sub.add_parser("memory-maze", help="Memory Maze offline dataset: one NPZ per trajectory",
                       description=import_memory_maze.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--source", default=None, help="source name (default: memory-maze-<n>x<n> from maze_layout)")
    p = sub.add_parser("teco", help="TECO Minecraft: <name>.npz (video+actions) or <name>.mp4 + <name>.npz",
                       description=import_teco.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--frame-size", type=int, default=None, help="resize frames to this square size (e.g. 64)")
    p.add_argument("--source", default="teco-minecraft", help="source name stored in the files")
    p = sub.add_parser("minerl", help="MineRL-v0: folders with recording.mp4, rendered.npz, metadata.json",
                       description=import_minerl.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--frame-size", type=int, default=None, help="resize frames to this square size")
    p.add_argument("--yaw-threshold", type=float, default=import_minerl.DEFAULT_YAW_THRESHOLD,
                   help="|camera yaw| (degrees) above which a step maps to turn left/right")
    p.add_argument("--source", default=None, help="source name (default: minerl-v0/<env folder name>)")
    p.add_argument("--allow-pickle", action="store_true", help="allow object arrays in rendered.npz (trusted files)")
    p = sub.add_parser("rad-minecraft", help="the RAD authors' Minecraft: NNNNNN.mp4 + NNNNNN.npz (4 or 8 columns)",
                       description=import_rad_minecraft.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--frame-size", type=int, default=import_rad_minecraft.DEFAULT_FRAME_SIZE,
                   help="square frame size after --square (default: %(default)s)")
    p.add_argument("--square", choices=SQUARE_RULES, default="crop",
                   help="16:9 -> square: centre crop or letterbox (default: %(default)s)")
    p.add_argument("--source", default="rad-minecraft", help="source name stored in the files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    options: dict[str, Any] = {"source": args.source}
    if args.kind in ("teco", "minerl", "rad-minecraft"):
        options["frame_size"] = args.frame_size
    if args.kind == "rad-minecraft":
        options["square"] = args.square
    if args.kind == "minerl":
        options["yaw_threshold"] = args.yaw_threshold
        options["allow_pickle"] = args.allow_pickle
    try:
        summary = run_import(args.kind, args.src, args.out, resume=args.resume, skip_bad=args.skip_bad,
                             limit=args.limit, compression_level=args.compression_level,
                             progress=not args.no_progress, **options)
    except (SchemaError, FileExistsError, FileNotFoundError, ValueError, ImportError) as exc:
        print(f"record.py import: error: {exc}", file=sys.stderr)
        return 2
    print(summary.format())
    return 1 if summary.bad else 0


if __name__ == "__main__":
    sys.exit(main())
