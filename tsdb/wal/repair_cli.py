"""``tsdb repair``: cut damaged write-ahead logs so that the database can start again.

    tsdb repair --data-dir DIR [--dry-run] [--no-backup]
    python -m tsdb.wal.repair_cli --data-dir DIR ...        (the same, without the tsdb command)

When start-up stops with "WAL segment ... is corrupt at offset N" (damage that is not a torn
tail: intact records follow it, or it sits in an older segment), stop every process using the
directory and run this. For each shard it cuts the log at the start of the first damaged write
(a write is all-or-nothing), removes the later segments, and keeps every removed byte in
``*.seg.damaged`` backups beside the log (``--no-backup`` deletes them instead). Everything
before the damage is kept. It also verifies every snapshot and lists the ones that fail (start-up
skips a corrupt newest snapshot by itself; if none is usable it stops, and such a file must be
restored from a backup or moved away by hand). ``--dry-run`` only reports.

``--data-dir`` defaults to the ``DATA_DIR`` environment variable. Exit status: 0 when every
log is intact or was repaired, 1 on an error (the directory is in use, is not a tsdb data
directory, or cannot be read or written), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tsdb.errors import CorruptionError, StorageError
from tsdb.wal.repair import repair_data_dir
from tsdb.wal.snapshot import read_snapshot

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "tsdb repair") -> argparse.ArgumentParser:
    """The argument parser of the command (``prog`` as it appears in usage messages)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Cut damaged write-ahead logs at their first damage, keeping everything before it.",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("DATA_DIR") or None,
        help="the data directory to repair [env DATA_DIR]",
    )
    parser.add_argument("--dry-run", action="store_true", help="report what would be cut; change nothing")
    parser.add_argument(
        "--no-backup", action="store_true", help="delete the removed bytes instead of keeping *.seg.damaged copies"
    )
    return parser


def _bad_snapshots(root: Path) -> list[tuple[Path, str]]:
    """Snapshot files under ``root/snapshots`` that fail verification, with the reason."""
    bad = []
    for path in sorted((root / "snapshots").glob("shard-*/*.snap")):
        try:
            read_snapshot(path)
        except CorruptionError as exc:
            bad.append((path, exc.message))
    return bad


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run the command with ``argv`` (the arguments after ``repair``); returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return int(exc.code or 0)
    if not args.data_dir:
        parser.print_usage(err)
        print("tsdb repair: error: --data-dir is required (or set DATA_DIR)", file=err)
        return 2
    try:
        reports = repair_data_dir(args.data_dir, backup=not args.no_backup, dry_run=args.dry_run)
        bad = _bad_snapshots(Path(args.data_dir))
    except StorageError as exc:
        print(f"tsdb repair: error: {exc.message}", file=err)
        return 1
    prefix = "(dry run) " if args.dry_run else ""
    for shard, report in enumerate(reports):
        print(f"{prefix}shard {shard}: {report}", file=out)
    for path, why in bad:
        print(f"snapshot {path}: fails verification ({why})", file=out)
    damaged = sum(r.damage is not None for r in reports)
    if args.dry_run:
        print(f"dry run: {damaged} damaged log(s) found, nothing changed", file=out)
    else:
        print(f"repaired {damaged} log(s); {len(reports) - damaged} intact", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
