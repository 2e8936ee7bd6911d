"""Server settings: one frozen ``ServerSettings`` read from the environment and CLI flags.

Every setting has one row in ``SPECS``: its field name, environment variable, CLI flag, type,
accepted range and help text. ``tsdb serve --help`` is generated from the same table, so the
documentation cannot drift from what is parsed. Precedence: CLI flag > environment > default.

The spec fixes three variables and their server defaults: ``CHUNK_SIZE`` (500),
``RETENTION_SECONDS`` (60) and ``NUM_SHARDS`` (4). The rest are ours, prefixed ``TSDB_`` except
``DATA_DIR`` and ``ROLLUPS``, which the Compose file and the durability/rollup issues name so.

An invalid value raises ``SettingsError`` whose message is one line naming the variable (and
flag), the offending value and the accepted range; ``tsdb serve`` prints it and exits with 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

from tsdb.errors import InvalidInputError
from tsdb.labels import DEFAULT_LIMITS, Limits, validate_metric_name
from tsdb.storage.rollup import parse_rollups

if TYPE_CHECKING:
    from tsdb.engine import EngineSettings

__all__ = ["SPECS", "ServerSettings", "SettingSpec", "SettingsError", "load_settings"]

MiB: Final = 1024 * 1024


class SettingsError(InvalidInputError):
    """A setting has an invalid value; ``field`` is its environment variable name."""


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """How one setting is named, parsed and documented.

    ``kind`` is int, float, str or bool. ``lo``/``hi`` bound numbers (inclusive). ``none_word``
    is the string (and, for numbers, ``none_number``) meaning "no limit"/"disabled" -> None.
    """

    field: str
    env: str
    kind: type
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    none_word: str | None = None
    none_number: float | None = None

    @property
    def flag(self) -> str:
        """The CLI flag, ``--chunk-size`` for field ``chunk_size``."""
        return "--" + self.field.replace("_", "-")

    def accepted(self) -> str:
        """The accepted range in words, used by error messages and --help."""
        if self.kind is bool:
            return "true or false (also 1/0, yes/no, on/off)"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind in (int, float):
            noun = "an integer" if self.kind is int else "a number"
            lo = "" if self.lo is None else _fmt(self.lo)
            hi = "" if self.hi is None else _fmt(self.hi)
            rng = f" from {lo} to {hi}" if lo and hi else f" >= {lo}" if lo else f" <= {hi}" if hi else ""
            extra = ""
            if self.none_number is not None:
                extra = f" ({_fmt(self.none_number)} = no limit)"
            elif self.none_word is not None:
                extra = f" or {self.none_word!r}"
            return noun + rng + extra
        if self.none_word is not None:
            return f"a string ('{self.none_word}' = disabled)"
        return "a string"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _truthy(text: str) -> bool | None:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    return None


# One row per setting, in --help order. Defaults live on the dataclass below.
SPECS: Final[tuple[SettingSpec, ...]] = (
    SettingSpec("host", "TSDB_HOST", str, "interface to listen on"),
    SettingSpec("port", "TSDB_PORT", int, "TCP port to listen on", lo=1, hi=65535),
    SettingSpec(
        "chunk_size", "CHUNK_SIZE", int, "samples per chunk before it is sealed and compressed", lo=2, hi=1_000_000
    ),
    SettingSpec(
        "retention_seconds",
        "RETENTION_SECONDS",
        float,
        "keep raw samples this many seconds behind the newest one (0 = forever)",
        lo=0,
        hi=100 * 365 * 86400,
    ),
    SettingSpec("num_shards", "NUM_SHARDS", int, "number of shards the series space is split into", lo=1, hi=1024),
    SettingSpec(
        "future_tolerance_seconds",
        "TSDB_FUTURE_TOLERANCE_SECONDS",
        float,
        "reject samples more than this many seconds ahead of the clock ('off' = accept any)",
        lo=0,
        hi=100 * 365 * 86400,
        none_word="off",
    ),
    SettingSpec(
        "max_series",
        "TSDB_MAX_SERIES",
        int,
        "refuse new series beyond this many (existing ones keep working)",
        lo=0,
        hi=2**40,
        none_number=0,
    ),
    SettingSpec(
        "max_points",
        "TSDB_MAX_POINTS",
        int,
        "largest number of points one query may return",
        lo=0,
        hi=2**40,
        none_number=0,
    ),
    SettingSpec(
        "page_size", "TSDB_PAGE_SIZE", int, "default number of points per page of GET /metrics", lo=1, hi=2**40
    ),
    SettingSpec("max_labels", "TSDB_MAX_LABELS", int, "most labels one series may have", lo=1, hi=1000),
    SettingSpec(
        "max_name_length", "TSDB_MAX_NAME_LENGTH", int, "longest metric or label name in characters", lo=1, hi=65536
    ),
    SettingSpec(
        "max_label_value_length",
        "TSDB_MAX_LABEL_VALUE_LENGTH",
        int,
        "longest label value in characters",
        lo=1,
        hi=1_048_576,
    ),
    SettingSpec(
        "max_body_bytes",
        "TSDB_MAX_BODY_BYTES",
        int,
        "largest request body in bytes; larger ones get 413",
        lo=1024,
        hi=2**34,
    ),
    SettingSpec(
        "auth_token",
        "TSDB_AUTH_TOKEN",
        str,
        "when set, every route except /-/healthy and /-/ready needs 'Authorization: Bearer <token>'",
        none_word="",
    ),
    SettingSpec("default_metric", "TSDB_DEFAULT_METRIC", str, "metric name for POST /data points that name none"),
    SettingSpec(
        "data_dir",
        "DATA_DIR",
        str,
        "directory for the write-ahead log and snapshots ('' = memory only); "
        "one process per directory (a lock file refuses a second)",
        none_word="",
    ),
    SettingSpec("fsync", "TSDB_FSYNC", str, "when the write-ahead log is fsynced (passed to the engine)"),
    SettingSpec(
        "rollups",
        "ROLLUPS",
        str,
        "rollup tiers resolution:retention, comma-separated (units s m h d w y); '' disables. "
        "Downsampled history that outlives RETENTION_SECONDS",
    ),
    SettingSpec(
        "maintenance_interval_seconds",
        "TSDB_MAINTENANCE_INTERVAL",
        float,
        "seconds between background maintenance runs (retention, recompression)",
        lo=0.1,
        hi=86400,
    ),
    SettingSpec(
        "snapshot_interval_seconds",
        "TSDB_SNAPSHOT_INTERVAL_SECONDS",
        float,
        "seconds between snapshots of changed shards (the WAL they cover is then dropped)",
        lo=1,
        hi=86400 * 7,
    ),
    SettingSpec(
        "decoded_cache_mb",
        "TSDB_DECODED_CACHE_MB",
        int,
        "MiB of decoded chunks kept for repeated reads such as dashboard refreshes (0 = off)",
        lo=0,
        hi=1024 * 1024,
    ),
    SettingSpec(
        "log_level",
        "TSDB_LOG_LEVEL",
        str,
        "server log level",
        choices=("critical", "error", "warning", "info", "debug"),
    ),
    SettingSpec("access_log", "TSDB_ACCESS_LOG", bool, "log every request (costs ingest throughput)"),
)

_SPEC_BY_FIELD: Final = {s.field: s for s in SPECS}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything ``tsdb serve`` can be configured with; immutable and validated on creation.

    Units: seconds for ``*_seconds``, bytes for ``max_body_bytes``, characters for name and value
    lengths. ``None`` means "no limit" (``max_series``, ``max_points``), "disabled"
    (``future_tolerance_seconds``, ``auth_token``) or "memory only" (``data_dir``).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    chunk_size: int = 500
    retention_seconds: float = 60.0
    num_shards: int = 4
    future_tolerance_seconds: float | None = 600.0
    max_series: int | None = None
    # A million points is ~30 MB of JSON: big enough for any dashboard, small enough that one
    # careless query cannot take the server's memory with it.
    max_points: int | None = 1_000_000
    page_size: int = 10_000
    max_labels: int = DEFAULT_LIMITS.max_labels
    max_name_length: int = DEFAULT_LIMITS.max_name_length
    max_label_value_length: int = DEFAULT_LIMITS.max_label_value_length
    # 32 MiB holds a columnar batch of ~1.5M samples or a JSON array of ~400k points.
    max_body_bytes: int = 32 * MiB
    auth_token: str | None = None
    default_metric: str = "m1"
    data_dir: str | None = "./data"
    fsync: str = "always"
    # One-minute buckets for a month and hourly ones for five years: with the spec's 60 s raw
    # retention this keeps useful history at ~1 KiB per series per day (see README).
    rollups: str = "1m:30d,1h:5y"
    maintenance_interval_seconds: float = 10.0
    snapshot_interval_seconds: float = 300.0
    decoded_cache_mb: int = 256
    log_level: str = "info"
    access_log: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            spec = _SPEC_BY_FIELD[f.name]
            value = getattr(self, f.name)
            _check(spec, value)
            if value is not None and spec.none_number is not None and value == spec.none_number:
                object.__setattr__(self, f.name, None)  # 0 = no limit, stored as None
            elif spec.none_word == "" and value == "":
                object.__setattr__(self, f.name, None)  # "" = disabled / memory only
        try:
            validate_metric_name(self.default_metric, self.limits)
        except InvalidInputError as exc:
            raise SettingsError(f"invalid TSDB_DEFAULT_METRIC: {exc.message}", field="TSDB_DEFAULT_METRIC") from exc
        try:
            parse_rollups(self.rollups or "")
        except InvalidInputError as exc:
            raise SettingsError(
                f"invalid ROLLUPS (--rollups) = {self.rollups!r}: {exc.message}", field="ROLLUPS"
            ) from exc

    @property
    def limits(self) -> Limits:
        """The name/label size limits as the engine's ``Limits``."""
        return Limits(
            max_name_length=self.max_name_length,
            max_label_value_length=self.max_label_value_length,
            max_labels=self.max_labels,
        )

    def engine_settings(self) -> EngineSettings:
        """The ``EngineSettings`` the server opens its ``TSDB`` with."""
        from tsdb.engine import EngineSettings  # the engine is a lower layer; imported lazily

        return EngineSettings(
            chunk_size=self.chunk_size,
            retention_seconds=self.retention_seconds,
            num_shards=self.num_shards,
            future_tolerance_seconds=self.future_tolerance_seconds,
            max_series=self.max_series,
            limits=self.limits,
            max_points=self.max_points,
            data_dir=self.data_dir,
            fsync=self.fsync,
            rollups=self.rollups,
            snapshot_interval_seconds=self.snapshot_interval_seconds,
            decoded_cache_bytes=self.decoded_cache_mb * 1024 * 1024,
        )

    def public_dict(self) -> dict[str, Any]:
        """The settings as a dict with the auth token masked (for logs and status pages)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["auth_token"]:
            out["auth_token"] = "***"
        return out


def _fail(spec: SettingSpec, value: Any) -> SettingsError:
    return SettingsError(
        f"invalid {spec.env} ({spec.flag}) = {value!r:.60}: expected {spec.accepted()}", field=spec.env
    )


def _check(spec: SettingSpec, value: Any) -> None:
    """Raise SettingsError unless ``value`` is a valid typed value for ``spec``."""
    if value is None:
        if spec.none_word is None and spec.none_number is None:
            raise _fail(spec, value)
        return
    if spec.kind is bool:
        ok = isinstance(value, bool)
    elif spec.kind is int:
        ok = type(value) is int and _in_range(spec, value)
    elif spec.kind is float:
        ok = (
            type(value) in (int, float)
            and math.isfinite(value)
            and _in_range(spec, value)
            and not isinstance(value, bool)
        )
    else:
        ok = isinstance(value, str) and (not spec.choices or value in spec.choices)
    if not ok:
        raise _fail(spec, value)


def _in_range(spec: SettingSpec, value: float) -> bool:
    return (spec.lo is None or value >= spec.lo) and (spec.hi is None or value <= spec.hi)


def _parse(spec: SettingSpec, text: str) -> Any:
    """Parse the string form of a setting (env var or CLI flag) into its typed value."""
    raw = text.strip() if spec.kind is not str else text
    if spec.none_word is not None and raw.lower() == spec.none_word:
        return None
    converters: dict[type, Callable[[str], Any]] = {int: int, float: float}
    if spec.kind is bool:
        parsed = _truthy(raw)
        if parsed is None:
            raise _fail(spec, text)
        return parsed
    if spec.kind in converters:
        try:
            value = converters[spec.kind](raw.replace("_", ""))
        except ValueError:
            raise _fail(spec, text) from None
        if spec.kind is float and not math.isfinite(value):
            raise _fail(spec, text)
        _check(spec, value)
        if spec.none_number is not None and value == spec.none_number:
            return None
        return value
    if spec.kind is str and spec.choices:
        raw = raw.strip().lower()
    return raw


def load_settings(env: Mapping[str, str], overrides: Mapping[str, str | None] | None = None) -> ServerSettings:
    """Build ServerSettings from environment variables and CLI overrides (field -> string).

    Overrides that are None are ignored (the flag was not given). Raises SettingsError.
    """
    values: dict[str, Any] = {}
    for spec in SPECS:
        text = (overrides or {}).get(spec.field)
        if text is None:
            text = env.get(spec.env)
        if text is not None:
            values[spec.field] = _parse(spec, text)
    return ServerSettings(**values)
