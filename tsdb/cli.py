"""The ``tsdb`` command: ``serve`` the HTTP API, ``query`` a running server, ``import`` files into it.

    tsdb serve [--host H] [--port P] [--chunk-size N] ...   settings also from the environment
    tsdb query 'cpu{host="a"}' --start -1h --agg avg --downsample 1m [--json]
    tsdb import data.csv [--metric NAME] [--batch-size N]

``query`` and ``import`` talk HTTP to a running server (``--url``, env ``TSDB_URL``, default
``http://$TSDB_HOST:$TSDB_PORT``) and send ``--token`` / ``TSDB_AUTH_TOKEN`` as a bearer token.

CSV import format: a header row naming the columns; ``timestamp`` (epoch seconds or RFC 3339)
and ``value`` are required, ``metric`` is optional (else ``--metric``), and every other column is
a label (an empty cell means the row's series lacks that label). Rows are sent in columnar
batches to ``POST /api/native/write``; each batch is atomic, and the first refused batch stops
the import with the server's reason and the line numbers it covered.

InfluxDB line protocol files (``.lp``, ``.line``, ``.influx``, or ``--format line``): lines are
sent as they are, ``--batch-size`` lines per request, to ``POST /api/v2/write`` with
``precision`` from ``--unit`` (default ``ns``, line protocol's own default). The server stores
the valid lines of a batch (InfluxDB's partial writes); the first batch with a bad line stops
the import with the server's message, which names the bad line (its number counted from the
batch's first line).

Other formats plug in through ``IMPORTERS`` (format name -> importer factory) and
``EXTENSIONS`` (file suffix -> format name); see ``Importer``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol

from tsdb.settings import SPECS, ServerSettings, SettingsError, load_settings

__all__ = ["EXTENSIONS", "IMPORTERS", "ImportOptions", "Importer", "Upload", "main"]

PROG: Final = "tsdb"


def _fail(command: str, message: str, code: int = 1) -> int:
    """Print one error line on stderr and return the exit code."""
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------------------- serve


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    defaults = ServerSettings()
    for spec in SPECS:
        default = getattr(defaults, spec.field)
        shown = "unset" if default is None else ("''" if default == "" else default)
        if spec.field == "auth_token":
            shown = "unset"
        text = f"{spec.help} [env {spec.env}; default {shown}; {spec.accepted()}]".replace("%", "%%")
        if spec.kind is bool:
            parser.add_argument(spec.flag, dest=spec.field, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(spec.flag, dest=spec.field, metavar=spec.field.upper(), help=text)


def _overrides(args: argparse.Namespace) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for spec in SPECS:
        value = getattr(args, spec.field, None)
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[spec.field] = value
    return out


class _Signals:
    """Keep SIGINT/SIGTERM from killing the process after uvicorn's graceful shutdown.

    uvicorn handles both signals itself (stop accepting, finish requests, run the lifespan
    shutdown) and then re-raises the signal to the handler that was installed before it. With
    this no-op handler in place, ``serve`` returns normally, closes the database and exits 0.
    """

    def __enter__(self) -> _Signals:
        self._saved = {sig: signal.signal(sig, self._note) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.received: list[int] = []
        return self

    def _note(self, sig: int, frame: Any) -> None:
        self.received.append(sig)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(os.environ, _overrides(args))
    except SettingsError as exc:
        return _fail("serve", exc.message, 2)
    import logging

    import uvicorn

    from tsdb.errors import InvalidInputError, TSDBError
    from tsdb.server.app import create_app, open_db

    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    try:
        db = open_db(settings)  # opened here, not in the lifespan, so a failure is one line, not a traceback
    except InvalidInputError as exc:
        return _fail("serve", exc.message, 2)
    except (TSDBError, OSError) as exc:
        return _fail("serve", f"cannot open the database: {exc}", 1)
    log = logging.getLogger("tsdb.server")
    try:
        config = uvicorn.Config(
            create_app(settings, db=db),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=settings.access_log,
            lifespan="on",
            server_header=False,
            timeout_graceful_shutdown=10,
        )
        server = uvicorn.Server(config)
        # Everything alive now lives as long as the process: keep it out of the cyclic GC's
        # full collections, which a JSON array of 10,000 points (20,000 new dicts) triggers.
        gc.collect()
        gc.freeze()
        with _Signals() as signals:
            server.run()
        if not server.started:
            return 1
        if signals.received:
            log.info("stopped by %s", signal.Signals(signals.received[0]).name)
    finally:
        db.close()
    log.info("database closed; bye")
    return 0


# --------------------------------------------------------------------------------------- client


def _client_args(parser: argparse.ArgumentParser) -> None:
    host = os.environ.get("TSDB_HOST", "127.0.0.1")
    port = os.environ.get("TSDB_PORT", "8000")
    parser.add_argument(
        "--url",
        default=os.environ.get("TSDB_URL", f"http://{host}:{port}"),
        help="server base URL [env TSDB_URL; default http://$TSDB_HOST:$TSDB_PORT]",
    )
    parser.add_argument(
        "--token", default=os.environ.get("TSDB_AUTH_TOKEN") or None, help="bearer token [env TSDB_AUTH_TOKEN]"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (default 60)")


def _client(args: argparse.Namespace) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    return httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=args.timeout)


def _error_text(response: Any) -> str:
    try:
        doc = response.json()
        if not isinstance(doc, dict):
            return str(doc)[:300]
        return str(doc.get("error") or doc.get("message") or doc)  # InfluxDB 2 errors carry "message"
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase


def _cli_time(text: str | None) -> str | None:
    """``-1h``-style times (relative to now) become epoch seconds; anything else is sent as is."""
    if text is None or not (text.startswith("-") and text[1:2].isdigit()):
        return text
    from tsdb.errors import InvalidQueryError
    from tsdb.timeutil import parse_duration_ns

    try:
        return f"{time.time() - parse_duration_ns(text[1:], field='time') / 1e9:.3f}"
    except InvalidQueryError:
        return text  # not a duration: let the server read it


def _series_name(metric: str | None, labels: dict[str, str]) -> str:
    from tsdb.labels import canonical_key

    key = canonical_key(metric or "", tuple(sorted(labels.items())))
    return key or "{}"


def _format_time(seconds: float) -> str:
    dt = datetime.fromtimestamp(seconds, tz=UTC)
    text = dt.isoformat(timespec="milliseconds" if seconds % 1 else "seconds")
    return text.replace("+00:00", "Z")


def _format_value(value: float | None) -> str:
    if value is None:
        return "null"
    return repr(float(value)) if not float(value).is_integer() or abs(value) >= 1e16 else str(int(value))


def _print_table(doc: dict[str, Any], out: IO[str]) -> None:
    rows = [("SERIES", "TIME", "VALUE")]
    for s in doc["series"]:
        name = _series_name(s.get("metric"), s.get("labels", {}))
        for t, v in zip(s["timestamps"], s["values"], strict=True):
            rows.append((name, _format_time(t), _format_value(v)))
    if len(rows) == 1:
        print("(no data)", file=out)
        return
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}", file=out)
    print(f"({sum(len(s['timestamps']) for s in doc['series'])} points, resolution {doc['resolution']})", file=out)


def _query(args: argparse.Namespace) -> int:
    import httpx

    params: dict[str, Any] = {"match": args.selector}
    for name in ("agg", "q", "downsample", "fill"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    for name in ("start", "end"):
        value = _cli_time(getattr(args, name))
        if value is not None:
            params[name] = value
    if args.group_by is not None:
        params["group_by"] = args.group_by
    try:
        with _client(args) as client:
            response = client.get("/api/native/query", params=params)
    except httpx.HTTPError as exc:
        return _fail("query", f"cannot reach {args.url}: {exc}")
    if response.status_code != 200:
        return _fail("query", f"{response.status_code}: {_error_text(response)}")
    if args.json:
        sys.stdout.write(response.text + "\n")
    else:
        _print_table(response.json(), sys.stdout)
    return 0


# --------------------------------------------------------------------------------------- import


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """What every importer may need: a default metric, rows per batch, timestamp unit
    (None: the format's default, seconds for CSV and nanoseconds for line protocol)."""

    metric: str | None
    batch_size: int
    unit: str | None


@dataclass(frozen=True, slots=True)
class Upload:
    """One HTTP request of an import: where to POST what, and what it covers.

    ``position`` is how far into the file (bytes) this batch reaches, for the progress bar;
    ``lines`` the first and last line numbers it covers, for error messages.
    """

    path: str
    body: bytes
    content_type: str
    samples: int
    position: int
    lines: tuple[int, int]


class Importer(Protocol):
    """Turns an open binary file into Uploads; raises ValueError naming the line on bad input.

    ``Upload.samples`` counts what the importer can count client-side; ``counts`` names it
    ("samples", or "lines" for line protocol, whose lines may hold several samples)."""

    counts: str

    def uploads(self, stream: IO[bytes]) -> Iterator[Upload]: ...


class CsvImporter:
    """CSV with a header row; see the module docstring for the columns."""

    counts = "samples"

    def __init__(self, options: ImportOptions) -> None:
        self.options = options

    def uploads(self, stream: IO[bytes]) -> Iterator[Upload]:
        """Columnar batches of ``batch_size`` rows for ``POST /api/native/write``."""
        import orjson

        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        cols = [h.strip() for h in header]
        for required in ("timestamp", "value"):
            if required not in cols:
                raise ValueError(f"line 1: the header has no {required!r} column (got {', '.join(cols)})")
        if "metric" not in cols and not self.options.metric:
            raise ValueError("the CSV has no 'metric' column: pass --metric NAME")
        t_i, v_i = cols.index("timestamp"), cols.index("value")
        m_i = cols.index("metric") if "metric" in cols else None
        label_cols = [(i, name) for i, name in enumerate(cols) if name not in ("timestamp", "value", "metric")]
        blocks: dict[tuple[str, tuple[str, ...]], tuple[list[Any], list[float]]] = {}
        rows, first = 0, 2
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(cols):
                raise ValueError(f"line {line}: {len(row)} fields but the header has {len(cols)}")
            metric = row[m_i] if m_i is not None and row[m_i] else self.options.metric
            key = (str(metric), tuple(row[i] for i, _ in label_cols))
            ts, vals = blocks.setdefault(key, ([], []))
            ts.append(_csv_timestamp(row[t_i]))
            vals.append(_csv_value(row[v_i], line))
            rows += 1
            if rows >= self.options.batch_size:
                yield self._upload(orjson, blocks, label_cols, rows, stream.tell(), (first, line))
                blocks, rows, first = {}, 0, line + 1
        if rows:
            yield self._upload(orjson, blocks, label_cols, rows, stream.tell(), (first, line))

    def _upload(
        self,
        orjson: Any,
        blocks: dict[tuple[str, tuple[str, ...]], tuple[list[Any], list[float]]],
        label_cols: list[tuple[int, str]],
        rows: int,
        position: int,
        lines: tuple[int, int],
    ) -> Upload:
        body = [
            {
                "metric": metric,
                "labels": {name: v for (_, name), v in zip(label_cols, values, strict=True) if v != ""},
                "timestamps": ts,
                "values": vals,
            }
            for (metric, values), (ts, vals) in blocks.items()
        ]
        return Upload(
            f"/api/native/write?unit={self.options.unit or 's'}",
            orjson.dumps(body),
            "application/json",
            rows,
            position,
            lines,
        )


def _csv_timestamp(cell: str) -> int | float | str:
    text = cell.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # RFC 3339: the server parses and validates it


def _csv_value(cell: str, line: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"line {line}: value {cell!r:.40} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"line {line}: value {cell!r:.40} is not finite")
    return value


class LineProtocolImporter:
    """InfluxDB line protocol, sent as is in batches of ``batch_size`` lines (blank lines and
    comments are sent too: the server skips them, and line numbers stay true)."""

    counts = "lines"

    def __init__(self, options: ImportOptions) -> None:
        self.options = options
        self.path = f"/api/v2/write?precision={options.unit or 'ns'}"

    def uploads(self, stream: IO[bytes]) -> Iterator[Upload]:
        """One Upload per ``batch_size`` physical lines; ``samples`` counts the point lines."""
        batch: list[bytes] = []
        points = 0
        first = 1
        line = 0
        for line, raw in enumerate(stream, start=1):
            batch.append(raw)
            stripped = raw.strip()
            if stripped and not stripped.startswith(b"#"):
                points += 1
            if len(batch) >= self.options.batch_size:
                yield Upload(
                    self.path, b"".join(batch), "text/plain; charset=utf-8", points, stream.tell(), (first, line)
                )
                batch, points, first = [], 0, line + 1
        if points:
            yield Upload(self.path, b"".join(batch), "text/plain; charset=utf-8", points, stream.tell(), (first, line))


#: Format name -> importer factory.
IMPORTERS: dict[str, Callable[[ImportOptions], Importer]] = {"csv": CsvImporter, "line": LineProtocolImporter}
#: File suffix -> format name, for --format auto.
EXTENSIONS: dict[str, str] = {".csv": "csv", ".lp": "line", ".line": "line", ".influx": "line"}


def _import(args: argparse.Namespace) -> int:
    import httpx
    from tqdm import tqdm

    path = Path(args.file)
    fmt = args.format if args.format != "auto" else EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        return _fail("import", f"cannot tell the format of {path.name!r}: pass --format {'|'.join(IMPORTERS)}", 2)
    if fmt not in IMPORTERS:
        return _fail("import", f"format {fmt!r} is not available (known: {', '.join(IMPORTERS)})", 2)
    if args.batch_size < 1:
        return _fail("import", f"--batch-size must be at least 1, got {args.batch_size}", 2)
    importer = IMPORTERS[fmt](ImportOptions(args.metric, args.batch_size, args.unit))
    try:
        stream = path.open("rb")
    except OSError as exc:
        return _fail("import", f"cannot open {path}: {exc.strerror}")
    sent = 0
    began = time.perf_counter()
    with stream, _client(args) as client:
        size = os.fstat(stream.fileno()).st_size
        bar = tqdm(total=size, unit="B", unit_scale=True, file=sys.stderr, disable=args.no_progress, desc=path.name)
        try:
            for upload in importer.uploads(stream):
                response = client.post(upload.path, content=upload.body, headers={"Content-Type": upload.content_type})
                if response.status_code >= 300:
                    lines = f"lines {upload.lines[0]}-{upload.lines[1]}"
                    return _fail(
                        "import",
                        f"{lines} refused ({response.status_code}): {_error_text(response)}; "
                        f"{sent} {importer.counts} imported before them",
                    )
                sent += upload.samples
                bar.update(upload.position - bar.n)
                bar.set_postfix(samples=sent, refresh=False)
        except ValueError as exc:
            return _fail("import", f"{path.name}: {exc}; {sent} {importer.counts} imported before it")
        except httpx.HTTPError as exc:
            return _fail("import", f"cannot reach {args.url}: {exc}; {sent} {importer.counts} imported")
        finally:
            bar.close()
    elapsed = time.perf_counter() - began
    print(f"imported {sent} {importer.counts} from {path.name} in {elapsed:.2f} s", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tsdb`` command."""
    parser = argparse.ArgumentParser(prog=PROG, description="tsdb: a fast, lightweight time series database.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run the HTTP server (FastAPI under uvicorn, one process). Every setting is read from "
        "its environment variable and can be overridden by its flag; an invalid value stops start-up.",
    )
    _add_setting_flags(serve)
    serve.set_defaults(func=_serve)

    query = sub.add_parser("query", help="query a running server", description="Query a running server.")
    query.add_argument("selector", help='series selector, e.g. cpu{host="a"}')
    query.add_argument("--start", help="start: epoch seconds, RFC 3339, now, or relative like -1h")
    query.add_argument("--end", help="end: epoch seconds, RFC 3339, now, or relative like -5m")
    query.add_argument("--agg", help="sum avg min max count first last stddev stdvar quantile rate increase")
    query.add_argument("--q", type=float, help="quantile for --agg quantile")
    query.add_argument("--downsample", help="bucket width: 30s, 5m, 1h or seconds")
    query.add_argument("--group-by", help="comma-separated labels to group by ('' = all series together)")
    query.add_argument("--fill", help="empty buckets: null, zero, previous or a number")
    query.add_argument("--json", action="store_true", help="print the server's JSON instead of a table")
    _client_args(query)
    query.set_defaults(func=_query)

    imp = sub.add_parser(
        "import",
        help="import a file into a running server",
        description="Import a file into a running server, in batches. CSV: a header row with "
        "timestamp (epoch seconds or RFC 3339) and value columns, an optional metric column, and any "
        "other columns as labels; each batch is atomic. InfluxDB line protocol (.lp, .line, .influx): "
        "sent to /api/v2/write; the valid lines of a batch are stored, a bad line stops the import.",
    )
    imp.add_argument("file", help="file to import")
    imp.add_argument("--format", default="auto", help="csv or line (InfluxDB line protocol); default: from the suffix")
    imp.add_argument("--metric", help="metric name for rows without a metric column")
    imp.add_argument("--batch-size", type=int, default=50_000, help="rows or lines per request (default 50000)")
    imp.add_argument(
        "--unit",
        default=None,
        choices=("s", "ms", "us", "ns"),
        help="unit of numeric timestamps (default: s for CSV, ns for line protocol)",
    )
    imp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _client_args(imp)
    imp.set_defaults(func=_import)
    sub.add_parser(
        "repair",
        help="cut damaged write-ahead logs so the database can start (see 'tsdb repair --help')",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tsdb`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["repair"]:
        # The repair command owns its arguments (tsdb/wal/repair_cli.py documents them).
        from tsdb.wal import repair_cli

        return repair_cli.main(argv[1:])
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
