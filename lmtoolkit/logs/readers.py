"""Real migration logs -> one :func:`MigrationLog` ``xarray.Dataset``.

Formats (:func:`read_log` detects them from the content):

* **QMP** ``query-migrate`` replies (QEMU's ``MigrationInfo``), each with an added ``_t``
  (seconds since the ``migrate`` command): a JSON list, or JSON lines.  A line may also be
  the raw QMP response ``{"return": {...}, "_t": ...}``; event lines (``{"event": ...}``)
  are kept when they are ``MIGRATION_PASS`` (``pass_time``/``pass_number``) and otherwise
  skipped.  Fields older or newer QEMUs lack are NaN (``dirty-sync-count`` needs QEMU 2.1,
  ``precopy-bytes``/``downtime-bytes`` 7.0); ``skipped`` and unknown keys are ignored.
* **libvirt** job statistics: ``virsh domjobinfo`` text (one block per poll, each starting
  with ``Job type:``; the last one ``--completed``) and the ``virDomainGetJobStats``
  key/value form (``key=value`` or ``key: value`` lines, blocks separated by blank lines, or
  JSON objects as Python's ``dom.jobStats()`` returns, one per line or in a JSON list): ``time_elapsed``,
  ``memory_processed``, ``memory_remaining``, ``memory_iteration``, ``memory_dirty_rate``,
  ``downtime`` … (libvirt maps them from the same QMP fields: ``memory_processed`` =
  ``ram.transferred``, ``memory_iteration`` = ``ram.dirty-sync-count``).
* **testbed records** (``lmtk testbed run``, :mod:`lmtoolkit.testbed.record`): netCDF files
  with the QMP series (``sample_*``) and the final statistics; they also state the run's
  settings (cap, downtime limit, capabilities: attribute ``lmt_settings``) and what the
  guest reported (``lmt_guest``: the write rate it achieved).  A saved MigrationLog (the
  Dataset below as netCDF) is checked as the log it came from (:func:`_check_saved`).

The Dataset (``lmt_kind = "migration_log"``): per poll on dim ``sample`` —
``sample_time`` (s), ``sample_status``, ``sample_transferred`` and ``sample_remaining``
(bytes), ``sample_dirty_sync_count``, ``sample_dirty_pages_rate`` (1/s), ``sample_throttle``
(0..1); ``MIGRATION_PASS`` events on dim ``pass``; final statistics as scalars
(``total_time``, ``downtime``, ``setup_time`` in s; ``transferred``, ``ram_total``,
``ram_normal_bytes``, ``precopy_bytes``, ``downtime_bytes``, ``postcopy_bytes`` in bytes;
``ram_normal``, ``ram_duplicate`` pages; ``dirty_sync_count``; ``page_size``; ``completed``,
``postcopy``); attributes ``source`` (the file), ``lmt_log_format``, ``lmt_status``.

Bad or truncated input raises one :class:`~lmtoolkit.errors.ConfigError` naming the file and
the line: text that is not the format, a reply without status or time, time running backwards,
a log that ends mid-migration, numbers that cannot be what they count (negative, infinite,
a throttle above 100 %), final statistics and clocks that contradict each other
(:func:`_check_clock`, :func:`_check_final`, :func:`_check_same_end`) and a libvirt completed
block cut off (:func:`_check_complete_block`).  A key given twice in one reply or block (a JSON object's key, a virsh
label, a job-statistics key) is refused, whether its values differ or not: QEMU and libvirt
write each once, and ``json.loads`` would silently keep the last.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import ConfigError
from ..model.vm import BASE_PAGE_MAX_KIB

MIB = 1024**2
#: statuses after which a migration is over
FINAL = ("completed", "failed", "cancelled")
#: statuses of a migration in progress (QEMU MigrationStatus)
RUNNING = (
    "setup",
    "active",
    "pre-switchover",
    "device",
    "postcopy-active",
    "postcopy-paused",
    "postcopy-recover-setup",
    "postcopy-recover",
    "colo",
    "wait-unplug",
    "cancelling",
)
KNOWN_STATUS = FINAL + RUNNING + ("none",)
#: the order of QEMU's migration states (``MigrationStatus``, ``migration/migration.c``): a
#: migration never goes back to a lower stage (``setup`` -> pre-copy -> ``colo`` or post-copy ->
#: ``cancelling`` -> an end), and nothing follows an end but the same end polled again
STAGE = {
    "none": 0,
    "setup": 0,
    "active": 1,
    "pre-switchover": 1,
    "device": 1,
    "wait-unplug": 1,
    "colo": 2,
    "postcopy-active": 2,
    "postcopy-paused": 2,
    "postcopy-recover-setup": 2,
    "postcopy-recover": 2,
    "cancelling": 3,
    "completed": 4,
    "failed": 4,
    "cancelled": 4,
}
#: counters that only grow during one migration (a failed or cancelled reply carries none)
CUMULATIVE = {"transferred": "ram.transferred", "dirty_sync_count": "ram.dirty-sync-count"}
#: sizes that stay the same during one migration
CONSTANT = {"ram_total": "ram.total", "page_size": "ram.page-size"}

SAMPLE_VARS = {
    "time": ("s", "time since the migrate command"),
    "transferred": ("bytes", "bytes on the migration stream so far (ram.transferred)"),
    "remaining": ("bytes", "dirty bytes still to send (ram.remaining)"),
    "dirty_sync_count": ("1", "dirty-bitmap syncs so far (ram.dirty-sync-count)"),
    "dirty_pages_rate": ("s-1", "pages dirtied per second, QEMU's estimate (ram.dirty-pages-rate)"),
    "throttle": ("1", "guest CPU throttle (cpu-throttle-percentage / 100)"),
}
#: the polls' variables every log and testbed record holds (the checks read them)
POLL_VARS = (
    "sample_time",
    "sample_status",
    "sample_transferred",
    "sample_remaining",
    "sample_dirty_sync_count",
)

FINAL_VARS = {
    "total_time": ("s", "migrate command to VM running on the destination (total-time)"),
    "downtime": ("s", "VM paused (downtime)"),
    "setup_time": ("s", "migration setup (setup-time)"),
    "transferred": ("bytes", "bytes on the migration stream (ram.transferred)"),
    "ram_total": ("bytes", "guest RAM migrated (ram.total)"),
    "ram_normal": ("1", "pages sent as normal pages (ram.normal)"),
    "ram_duplicate": ("1", "pages sent as zero pages (ram.duplicate)"),
    "ram_normal_bytes": ("bytes", "bytes of normal pages (ram.normal-bytes)"),
    "precopy_bytes": ("bytes", "bytes sent while the VM ran at the source (ram.precopy-bytes)"),
    "downtime_bytes": ("bytes", "bytes sent while the VM was paused (ram.downtime-bytes)"),
    "postcopy_bytes": ("bytes", "bytes sent after the switch to post-copy (ram.postcopy-bytes)"),
    "dirty_sync_count": ("1", "dirty-bitmap syncs, setup and final ones included"),
    "page_size": ("bytes", "guest page size (ram.page-size)"),
    "xbzrle_bytes": ("bytes", "XBZRLE-encoded bytes sent (xbzrle-cache.bytes)"),
    "xbzrle_pages": ("1", "pages sent XBZRLE-encoded (xbzrle-cache.pages)"),
    "throttle_max": ("1", "highest guest CPU throttle seen"),
    "completed": ("1", "the VM runs on the destination"),
    "postcopy": ("1", "the migration switched to post-copy"),
}
#: numbers a reply gives that the Dataset does not keep (checked, then dropped)
CHECKED_VARS = {"elapsed": ("s", "time since the migrate command, QEMU's clock (total-time)")}


def _err(path, line, what: str) -> ConfigError:
    where = f"{path} line {line}" if line else f"{path}"
    return ConfigError("LOG", str(path), "", message=f"{where}: {what}")


# -- QMP query-migrate --------------------------------------------------------------------------
def _num(v):
    if v is None:
        return math.nan
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:  # an integer beyond any double
            raise TypeError(
                f"not a number a migration can have: {str(v)[:20]}… ({len(str(v))} digits)"
            ) from None
    raise TypeError(f"not a number: {v!r}")


def _qmp_sample(obj: dict, path, line: int):
    """One query-migrate reply -> (sample dict, final-stats dict)."""
    if "return" in obj and isinstance(obj["return"], dict):
        obj = {**obj["return"], "_t": obj.get("_t", obj["return"].get("_t"))}
    status = obj.get("status")
    if not isinstance(status, str):
        raise _err(path, line, "a query-migrate reply needs a 'status' (e.g. active, completed)")
    if status not in KNOWN_STATUS:
        raise _err(
            path, line, f"unknown migration status {status!r} (expected one of {', '.join(KNOWN_STATUS)})"
        )
    t = obj.get("_t")
    if t is None and status not in FINAL and isinstance(obj.get("total-time"), (int, float)):
        t = obj["total-time"] / 1000.0  # elapsed so far, while running
    if t is None and status == "completed" and isinstance(obj.get("total-time"), (int, float)):
        t = obj["total-time"] / 1000.0
    ram = obj.get("ram") or {}
    if not isinstance(ram, dict):
        raise _err(path, line, "'ram' must be an object")
    try:
        t = _num(t)
        if not np.isfinite(t):
            raise TypeError("missing")
        s = {
            "time": t,
            "status": status,
            "transferred": _num(ram.get("transferred")),
            "remaining": _num(ram.get("remaining")),
            "dirty_sync_count": _num(ram.get("dirty-sync-count")),
            "dirty_pages_rate": _num(ram.get("dirty-pages-rate")),
            "throttle": _num(obj.get("cpu-throttle-percentage", 0)) / 100.0,
            # QEMU's own clock while running (total-time: ms since the migrate command), to
            # check the poller's _t against; NaN where the reply gives only one of them
            "elapsed": _num(obj.get("total-time")) / 1000.0
            if status not in FINAL and obj.get("_t") is not None
            else math.nan,
        }
        xb = obj.get("xbzrle-cache") or {}
        if not isinstance(xb, dict):
            raise _err(path, line, "'xbzrle-cache' must be an object")
        f = {
            "total_time": _num(obj.get("total-time")) / 1000.0,
            "downtime": _num(obj.get("downtime")) / 1000.0,
            "setup_time": _num(obj.get("setup-time")) / 1000.0,
            "transferred": s["transferred"],
            "ram_total": _num(ram.get("total")),
            "ram_normal": _num(ram.get("normal")),
            "ram_duplicate": _num(ram.get("duplicate")),
            "ram_normal_bytes": _num(ram.get("normal-bytes")),
            "precopy_bytes": _num(ram.get("precopy-bytes")),
            "downtime_bytes": _num(ram.get("downtime-bytes")),
            "postcopy_bytes": _num(ram.get("postcopy-bytes")),
            "dirty_sync_count": s["dirty_sync_count"],
            "page_size": _num(ram.get("page-size")),
            "xbzrle_bytes": _num(xb.get("bytes")),
            "xbzrle_pages": _num(xb.get("pages")),
        }
    except TypeError as e:
        if "missing" in str(e):
            raise _err(
                path, line, "a query-migrate reply needs '_t' (seconds since the migrate command)"
            ) from None
        raise _err(path, line, f"{e} (query-migrate fields are numbers)") from None
    return s, f


class _DuplicateKey(ValueError):
    def __init__(self, key, first, second):
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


def _unique_keys(pairs):
    """``object_pairs_hook``: a JSON object with a key given twice is refused, not resolved
    to its last value (``json.loads``' default)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k, out[k], v)
        out[k] = v
    return out


def _shown(v) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _duplicate_err(path, line, e: _DuplicateKey) -> ConfigError:
    same = "the same value twice" if e.first == e.second else f"{_shown(e.first)}, then {_shown(e.second)}"
    return _err(
        path,
        line,
        f"{e.key!r} is given twice in one JSON object ({same}): QEMU and libvirt write each field "
        "once, so the object was edited or two replies were joined; which is the run's value "
        "cannot be told (keep the right one)",
    )


def _json_items(text: str, path):
    """(line, object) for a JSON list or JSON lines; errors name the line.  A key given twice
    in one object is refused (:func:`_unique_keys`)."""
    stripped = text.lstrip()
    if not stripped:
        raise _err(path, 0, "the log is empty")
    dec = json.JSONDecoder(object_pairs_hook=_unique_keys)
    out = []
    if stripped[0] == "[":
        pos = len(text) - len(stripped) + 1
        n = len(text)
        while True:
            while pos < n and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= n:
                raise _err(path, text.count("\n", 0, n) + 1, "the JSON list is not closed (truncated log?)")
            if text[pos] == "]":
                break
            line = text.count("\n", 0, pos) + 1
            try:
                obj, end = dec.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise _err(
                    path, e.lineno, f"not valid JSON ({e.msg}, column {e.colno}; truncated log?)"
                ) from None
            except _DuplicateKey as e:
                raise _duplicate_err(path, line, e) from None
            out.append((line, obj))
            pos = end
        rest = text[pos + 1 :].strip()
        if rest:
            raise _err(path, text.count("\n", 0, pos) + 1, "text after the end of the JSON list")
        return out
    for i, ln in enumerate(text.splitlines(), 1):
        if not ln.strip() or ln.lstrip().startswith("#"):
            continue
        try:
            out.append((i, json.loads(ln, object_pairs_hook=_unique_keys)))
        except json.JSONDecodeError as e:
            raise _err(path, i, f"not valid JSON ({e.msg}, column {e.colno}; truncated log?)") from None
        except _DuplicateKey as e:
            raise _duplicate_err(path, i, e) from None
    return out


def read_qmp(path, text: str | None = None) -> xr.Dataset:
    """A QMP ``query-migrate`` series (JSON list or JSON lines, each reply with ``_t``)."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    items = _json_items(text, path)
    samples, finals, passes, lines = [], [], [], []
    fmt = "qmp-json" if text.lstrip().startswith("[") else "qmp-jsonl"
    for line, obj in items:
        if not isinstance(obj, dict):
            raise _err(
                path, line, f"expected a query-migrate reply (a JSON object), got {type(obj).__name__}"
            )
        if "event" in obj:
            if obj.get("event") == "MIGRATION_PASS":
                try:
                    passes.append((_num(obj.get("_t")), int(obj["data"]["pass"])))
                except (KeyError, TypeError, ValueError):
                    raise _err(path, line, "a MIGRATION_PASS event needs data.pass and _t") from None
            continue
        if _is_libvirt(obj):
            return read_jobstats(path, text)
        s, f = _qmp_sample(obj, path, line)
        samples.append(s)
        finals.append(f)
        lines.append(line)
    return _assemble(path, fmt, samples, finals, lines, passes)


# -- libvirt ----------------------------------------------------------------------------------------
#: virsh domjobinfo label -> (key, scale to SI) ; sizes are parsed with their unit
DOMJOBINFO = {
    "time elapsed": "time_elapsed",
    "data processed": "data_processed",
    "data remaining": "data_remaining",
    "data total": "data_total",
    "memory processed": "memory_processed",
    "memory remaining": "memory_remaining",
    "memory total": "memory_total",
    "memory bandwidth": "memory_bps",
    "dirty rate": "memory_dirty_rate",
    "page size": "memory_page_size",
    "iteration": "memory_iteration",
    "postcopy requests": "memory_postcopy_requests",
    "constant pages": "memory_constant",
    "normal pages": "memory_normal",
    "normal data": "memory_normal_bytes",
    "total downtime": "downtime",
    "setup time": "setup_time",
    "auto converge throttle": "auto_converge_throttle",
    "job type": "type",
}
JOB_TYPES = {"none": 0, "bounded": 1, "unbounded": 2, "completed": 3, "failed": 4, "cancelled": 5}
TYPE_STATUS = {0: "none", 1: "active", 2: "active", 3: "completed", 4: "failed", 5: "cancelled"}
LIBVIRT_KEYS = (
    "time_elapsed",
    "memory_processed",
    "memory_remaining",
    "memory_iteration",
    "memory_total",
    "data_processed",
)
_UNITS = {
    "b": 1,
    "bytes": 1,
    "kib": 1024,
    "mib": MIB,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
    "eib": 1024**6,
}


def _is_libvirt(obj: dict) -> bool:
    return any(k in obj for k in LIBVIRT_KEYS)


#: the units a virsh domjobinfo value may carry, by key (value in the reader's unit: bytes, ms,
#: bytes/s, pages/s, counts); a value without a unit is taken in that unit
_TIME_UNITS = {"": 1.0, "ms": 1.0, "s": 1000.0}
_KEY_UNITS = {
    **{k: _TIME_UNITS for k in ("time_elapsed", "downtime", "setup_time")},
    **{
        k: {"": 1, **_UNITS}
        for k in (
            "data_processed",
            "data_remaining",
            "data_total",
            "memory_processed",
            "memory_remaining",
            "memory_total",
            "memory_normal_bytes",
            "memory_page_size",
        )
    },
    "memory_bps": {"": 1, **{f"{u}/s": m for u, m in _UNITS.items()}},
    "memory_dirty_rate": {"": 1, "pages/s": 1},
    "auto_converge_throttle": {"": 1, "%": 1},
}


def _parse_value(raw: str, path, line: int, label: str, key: str = "") -> float:
    parts = raw.split()
    if not parts:
        raise _err(path, line, f"'{label}' has no value")
    try:
        v = float(parts[0])
    except ValueError:
        raise _err(path, line, f"'{label}': {parts[0]!r} is not a number") from None
    if not (math.isfinite(v) and v >= 0):
        raise _err(path, line, f"'{label}': {raw.strip()!r} is not allowed: {NONNEGATIVE}")
    unit = " ".join(parts[1:])
    units = _KEY_UNITS.get(key, {"": 1})  # counts (iteration, pages) carry none
    scale = units.get(unit.lower())
    if scale is None:
        shown = {"b": "B", "kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB", "pib": "PiB", "eib": "EiB"}
        allowed = (
            ", ".join(repr("/".join(shown.get(p, p) for p in u.split("/"))) for u in units if u) or "none"
        )
        raise _err(path, line, f"'{label}': unit {unit!r} is not allowed (allowed: {allowed}, or no unit)")
    return v * scale


def _domjobinfo_blocks(text: str, path):
    """``virsh domjobinfo`` text -> list of (line, {key: value}).  A label the reader uses
    given twice in one block is refused (virsh prints each once)."""
    blocks, cur, seen = [], None, {}
    for i, ln in enumerate(text.splitlines(), 1):
        if not ln.strip() or ln.lstrip().startswith("#"):
            continue
        if ":" not in ln:
            raise _err(path, i, f"not a 'Label: value' line of virsh domjobinfo: {ln.strip()[:60]!r}")
        label, raw = ln.split(":", 1)
        key = DOMJOBINFO.get(label.strip().lower())
        if key == "type":
            jt = raw.strip().lower()
            if jt not in JOB_TYPES:
                raise _err(path, i, f"unknown job type {raw.strip()!r}")
            cur, seen = {"type": float(JOB_TYPES[jt])}, {"type": i}
            blocks.append((i, cur))
            continue
        if cur is None:
            raise _err(path, i, "expected 'Job type:' first (the start of a virsh domjobinfo block)")
        if key is None:
            continue  # Operation, Expected downtime, compression, disk … are not used
        if key in seen:
            raise _err(
                path,
                i,
                f"'{label.strip()}' is given twice in the block that starts on line {blocks[-1][0]} "
                f"(also line {seen[key]}): virsh prints each once, so the text was edited or two "
                "blocks were joined; which is the run's value cannot be told (keep the right one)",
            )
        seen[key] = i
        cur[key] = _parse_value(raw, path, i, label.strip(), key)  # times in ms, sizes in bytes
    return blocks


def _jobstats_blocks(text: str, path):
    """``key=value`` / ``key: value`` blocks or JSON lines.  Blocks are separated by blank
    lines; in a file without blank lines between blocks, each block starts where its first key
    (``type=``) comes again.  Any other key given twice in one block is refused (libvirt gives
    each once), as is a key given twice in a JSON object."""
    blocks, cur = [], None
    if text.lstrip().startswith(("{", "[")):  # JSON lines, or a JSON list of dom.jobStats() dicts
        for line, obj in _json_items(text, path):
            if not isinstance(obj, dict):
                raise _err(path, line, f"expected a JSON object of job statistics, got {type(obj).__name__}")
            blocks.append((line, {k: obj[k] for k in obj}))
        return blocks
    lines = text.splitlines()
    keyed = [bool(ln.strip()) and not ln.strip().startswith("#") for ln in lines]
    at = [i for i, k in enumerate(keyed) if k]
    # blank-line separated: a blank (or comment) line between two key lines
    blank_separated = bool(at) and not all(keyed[at[0] : at[-1] + 1])
    seen: dict = {}
    for i, ln in enumerate(lines, 1):
        s = ln.strip()
        if not s or s.startswith("#"):
            cur = None
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_.]*)\s*[=:]\s*(.*)", s)
        if not m:
            raise _err(path, i, f"not a 'key=value' line of virDomainGetJobStats: {s[:60]!r}")
        key, raw = m.group(1), m.group(2).strip()
        if cur is not None and key in cur and not blank_separated and key == next(iter(cur)):
            cur = None  # no blank lines: the block's first key again starts the next block
        if cur is None:
            cur, seen = {}, {}
            blocks.append((i, cur))
        elif key in cur:
            raise _err(
                path,
                i,
                f"{key!r} is given twice in the job statistics that start on line {blocks[-1][0]} "
                f"(also line {seen[key]}): libvirt gives each once, so the text was edited or two "
                "blocks were joined; which is the run's value cannot be told (keep the right one)",
            )
        seen[key] = i
        cur[key] = raw
    return blocks


def _libvirt_to_qmp(blk: dict, path, line: int):
    """One libvirt job-stats block -> (sample, final) as the QMP reader gives them."""

    def g(k):
        v = blk.get(k)
        if v is None or v == "":
            return math.nan
        try:
            out = (
                float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float(str(v).strip())
            )
        except (ValueError, OverflowError):
            raise _err(
                path,
                line,
                f"{k}={v!r} is not a number (virDomainGetJobStats values are bare numbers: bytes, "
                "ms, pages, bytes/s)",
            ) from None
        return out  # the range: _check_values, which names the query-migrate field

    typ = g("type")
    if not np.isfinite(typ):
        typ = 3.0 if np.isfinite(g("downtime")) else 2.0
    status = TYPE_STATUS.get(int(typ))
    if status is None:
        raise _err(path, line, f"unknown job type {int(typ)} (0-5)")
    t = g("time_elapsed")
    if not np.isfinite(t):
        raise _err(path, line, "job statistics need time_elapsed (ms) to place them in time")
    if t < 0:
        raise _err(path, line, f"time_elapsed={t:g} ms is not allowed: {NONNEGATIVE}")
    s = {
        "time": t / 1000.0,
        "status": status,
        "transferred": g("memory_processed"),
        "remaining": g("memory_remaining"),
        "dirty_sync_count": g("memory_iteration"),
        "dirty_pages_rate": g("memory_dirty_rate"),
        "throttle": (g("auto_converge_throttle") if np.isfinite(g("auto_converge_throttle")) else 0.0) / 100,
    }
    if status == "completed":
        s["remaining"] = 0.0 if not np.isfinite(s["remaining"]) else s["remaining"]
    f = {
        "total_time": t / 1000.0 if status == "completed" else math.nan,
        "downtime": g("downtime") / 1000.0,
        "setup_time": g("setup_time") / 1000.0,
        "transferred": s["transferred"],
        "ram_total": g("memory_total"),
        "ram_normal": g("memory_normal"),
        "ram_duplicate": g("memory_constant"),
        "ram_normal_bytes": g("memory_normal_bytes"),
        "precopy_bytes": math.nan,
        "downtime_bytes": math.nan,
        "postcopy_bytes": math.nan,
        "dirty_sync_count": s["dirty_sync_count"],
        "page_size": g("memory_page_size"),
        "xbzrle_bytes": math.nan,
        "xbzrle_pages": math.nan,
    }
    return s, f


def read_domjobinfo(path, text: str | None = None) -> xr.Dataset:
    """``virsh domjobinfo`` text: one block per poll (``Job type:`` first), ``--completed`` last."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    blocks = _domjobinfo_blocks(text, path)
    return _from_libvirt_blocks(path, "libvirt-domjobinfo", blocks)


def read_jobstats(path, text: str | None = None) -> xr.Dataset:
    """``virDomainGetJobStats`` key/value blocks (``key=value``, ``key: value`` or JSON lines)."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    blocks = _jobstats_blocks(text, path)
    return _from_libvirt_blocks(path, "libvirt-jobstats", blocks)


#: what libvirt gives for every completed migration of a QEMU that counts dirty-bitmap syncs
#: (``memory_iteration`` >= 1, "Iteration": libvirt >= 1.3.1 gives the key always, 0 unless
#: QEMU >= 2.1 reports ``dirty-sync-count``): the downtime (QEMU >= 1.3 reports it; libvirt also
#: measures it from the guest's stop, qemuDomainJobDataUpdateDowntime), the setup time (QEMU
#: >= 1.6, libvirt >= 1.2.9) and the page counts (``ram_duplicate_set``: QEMU >= 1.5)
COMPLETED_KEYS = ("downtime", "setup_time", "memory_constant", "memory_normal", "memory_normal_bytes")


def _check_complete_block(path, fmt, line: int, blk: dict) -> None:
    """A completed block cut off before its last lines (a truncated ``virsh domjobinfo
    --completed`` text) was read with the downtime and zero pages it lost as unknown, and the
    fitted rate moved by 4 %.  Refused where the block shows a libvirt and QEMU that report them
    (:data:`COMPLETED_KEYS`); from older ones their absence is accepted."""
    try:
        syncs = float(blk.get("memory_iteration"))
    except (TypeError, ValueError):
        return  # no dirty-sync count (an older libvirt or QEMU): their absence is no truncation
    missing = [k for k in COMPLETED_KEYS if blk.get(k) in (None, "")]
    if not missing or not syncs >= 1:
        return
    if fmt == "libvirt-domjobinfo":
        label = {v: k for k, v in DOMJOBINFO.items()}
        names = ", ".join(f"'{label[k][0].upper()}{label[k][1:]}'" for k in missing)
        it = "'Iteration'"
    else:
        names, it = ", ".join(missing), "memory_iteration"
    raise _err(
        path,
        line,
        f"the completed job statistics that start on this line have no {names}: a libvirt and "
        f"QEMU that count the dirty-bitmap syncs ({it} {syncs:g}; libvirt >= 1.3.1, QEMU >= 2.1) "
        "give these for every completed migration, so the block was cut off (truncated log?)",
    )


def _from_libvirt_blocks(path, fmt, blocks):
    if not blocks:
        raise _err(path, 0, "no job statistics in the file")
    samples, finals, lines, ends = [], [], [], []
    for line, blk in blocks:
        s, f = _libvirt_to_qmp(blk, path, line)
        if s["status"] == "none":
            continue
        if s["status"] == "completed":
            ends.append((line, blk))
        samples.append(s)
        finals.append(f)
        lines.append(line)
    ds = _assemble(path, fmt, samples, finals, lines, [])
    for line, blk in ends:  # after the order: a 'Completed' mid-log is a log out of order
        _check_complete_block(path, fmt, line, blk)
    return ds


# -- testbed records ----------------------------------------------------------------------------------
def read_testbed(path) -> xr.Dataset:
    """A testbed run (``lmtk testbed run``, netCDF) as a MigrationLog (plus the run's settings)."""
    from ..io import read_input_dataset

    path = Path(path)
    ds = read_input_dataset(path, "LOG", "netCDF testbed record")
    if ds.attrs.get("lmt_kind") == "migration_log":
        return _check_saved(ds, path)
    if ds.attrs.get("lmt_kind") != "testbed_run":
        raise _err(
            path, 0, f"not a testbed record (lmt_kind={ds.attrs.get('lmt_kind')!r}; expected testbed_run)"
        )
    need = (*POLL_VARS, "total_time", "transferred", "ram_total", "completed")
    missing = [k for k in need if k not in ds]
    if missing:
        raise _err(path, 0, f"testbed record without {', '.join(missing)} (truncated?)")

    def v(k, default=math.nan):
        return float(ds[k].item()) if k in ds else default

    n = ds.sizes["sample"]
    thr = ds["sample_throttle"].values if "sample_throttle" in ds else np.zeros(n)
    rate = ds["sample_dirty_pages_rate"].values if "sample_dirty_pages_rate" in ds else np.full(n, np.nan)
    samples = [
        {
            "time": float(ds.sample_time[i]),
            "status": str(ds.sample_status.values[i]),
            "transferred": float(ds.sample_transferred[i]),
            "remaining": float(ds.sample_remaining[i]),
            "dirty_sync_count": float(ds.sample_dirty_sync_count[i]),
            "dirty_pages_rate": float(rate[i]),
            "throttle": float(thr[i]),
        }
        for i in range(n)
    ]
    completed = bool(ds.completed.item())
    final = {
        "total_time": v("total_time"),
        "downtime": v("downtime"),
        "setup_time": v("setup_time"),
        "transferred": v("transferred"),
        "ram_total": v("ram_total"),
        "ram_normal": v("ram_normal"),
        "ram_duplicate": v("ram_duplicate"),
        "ram_normal_bytes": v("ram_normal_bytes"),
        "precopy_bytes": v("precopy_bytes"),
        "downtime_bytes": v("downtime_bytes"),
        "postcopy_bytes": v("postcopy_bytes"),
        "dirty_sync_count": v("dirty_sync_count"),
        "page_size": 4096.0,
        "xbzrle_bytes": v("xbzrle_bytes"),
        "xbzrle_pages": v("xbzrle_pages"),
    }
    status = str(ds.attrs.get("lmt_status") or ("completed" if completed else "cancelled"))
    # the record keeps the final statistics even for a cancelled run (the last active reply)
    if samples and samples[-1]["status"] not in FINAL:
        samples[-1]["status"] = status
    finals = [dict.fromkeys(final, math.nan) for _ in samples]
    if finals:
        finals[-1] = final
    passes = (
        list(zip(ds.pass_time.values.tolist(), ds.pass_number.values.tolist())) if "pass_time" in ds else []
    )
    out = _assemble(path, "testbed", samples, finals, list(range(1, n + 1)), passes, final_status=status)
    out.attrs["lmt_settings"] = json.dumps(testbed_settings(ds))
    out.attrs["lmt_guest"] = json.dumps(testbed_guest(ds))
    out.attrs["lmt_writer"] = json.dumps(testbed_writer(ds))
    out.attrs["lmt_label"] = str(ds.attrs.get("lmt_label", path.stem))
    out.attrs["title"] = f"migration log: testbed run {out.attrs['lmt_label']}"
    for k in ("lmt_qemu", "lmt_kernel", "lmt_testbed_guest", "lmt_testbed_run", "lmt_pass_clock"):
        if k in ds.attrs:
            out.attrs[k] = ds.attrs[k]
    return out


#: what a saved MigrationLog's final statistics are recomputed from (the rest it states)
_DERIVED = ("completed", "postcopy", "throttle_max")


def _check_saved(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """A MigrationLog saved as netCDF (``read_log(…).to_netcdf(…)``) was returned as it was,
    past every check the readers make: a file with time running backwards, a downtime of -5 s
    and 10^9 zero pages was fitted.  Its polls and final statistics go through the same checks
    as a log's (errors name the file and the line of the log it was read from), and what it
    states must be what they give (``completed``, ``postcopy``, the filled-in counts)."""
    missing = [k for k in (*POLL_VARS, *FINAL_VARS) if k not in ds]
    if missing:
        raise _err(path, 0, f"a saved MigrationLog without {', '.join(missing)} (truncated?)")
    source = ds.attrs.get("source", "")
    where = f"{path} (a saved MigrationLog of {source}: lines are that log's)" if source else str(path)
    n = ds.sizes["sample"]
    lines = [int(x) for x in ds.sample_line.values] if "sample_line" in ds else list(range(1, n + 1))

    def col(k):
        return np.asarray(ds[k].values, float) if k in ds else np.full(n, np.nan)

    cols = {k: col(f"sample_{k}") for k in SAMPLE_VARS}
    status = [str(x) for x in ds.sample_status.values]
    samples = [{"status": status[i], **{k: float(cols[k][i]) for k in SAMPLE_VARS}} for i in range(n)]
    for i in range(n):
        if not np.isfinite(samples[i]["throttle"]):
            samples[i]["throttle"] = 0.0
    final = {k: float(ds[k].item()) for k in FINAL_VARS if k not in _DERIVED}
    finals = [dict.fromkeys(final, math.nan) for _ in samples]
    if finals:
        finals[-1] = final
    passes = (
        list(zip(ds.pass_time.values.tolist(), ds.pass_number.values.tolist())) if "pass_time" in ds else []
    )
    fmt = str(ds.attrs.get("lmt_log_format", "saved"))
    again = _assemble(where, fmt, samples, finals, lines, passes, final_status=ds.attrs.get("lmt_status"))
    for k in FINAL_VARS:
        a, b = ds[k].item(), again[k].item()
        if k in ("completed", "postcopy"):
            same = bool(a) == bool(b)
        else:
            a, b = float(a), float(b)
            same = (np.isnan(a) and np.isnan(b)) or bool(np.isclose(a, b, rtol=1e-9, atol=0.0))
        if not same:
            raise _err(
                where,
                lines[-1] if lines else 0,
                f"{k} = {a!r} in the file, but its polls and final statistics give {b!r}: the file "
                "was edited after it was saved (read the log it came from again)",
            )
    return ds


def _tb(ds, k, default=math.nan):
    return ds[k].item() if k in ds else default


def testbed_settings(ds) -> list[str]:
    """Overrides a testbed record states about its run (what an operator knows of it): the
    QEMU-like policy with the run's cap, downtime limit, capabilities and cancel timeout, and
    ``policy.dirty_clear=sync`` (the testbed's guest runs under TCG); and where its sequential
    writer stood in its hot set at ``migrate`` (``workload.sweep_start``) when recorded."""
    postcopy = bool(_tb(ds, "postcopy", False))
    o = [
        "policy=hybrid" if postcopy else "policy=qemu",
        f"policy.max_bandwidth_mib_s={float(_tb(ds, 'max_bandwidth_mib_s'))!r}",
        f"policy.downtime_limit_ms={float(_tb(ds, 'downtime_limit_ms'))!r}",
        f"policy.auto_converge={str(bool(_tb(ds, 'auto_converge', False))).lower()}",
        f"policy.xbzrle={str(bool(_tb(ds, 'xbzrle', False))).lower()}",
        f"policy.xbzrle_cache_mib={float(_tb(ds, 'xbzrle_cache_mib', 64.0))!r}",
        f"policy.multifd_channels={int(_tb(ds, 'multifd_channels', 0))}",
        f"policy.timeout_s={float(_tb(ds, 'timeout_s', 600.0))!r}",
        "policy.dirty_clear=sync",
        "vm.vcpus=1",
        "network.latency_ms=0.0",
        "workload.pacing=wall",
    ]
    if postcopy:
        after_s = float(_tb(ds, "postcopy_after_s", math.nan) or math.nan)
        if np.isfinite(after_s):
            o.append(f"policy.postcopy_after_s={after_s!r}")
        else:
            o.append(f"policy.precopy_passes={int(_tb(ds, 'postcopy_after_passes', 1))}")
    start = float(_tb(ds, "sweep_start", math.nan))
    if np.isfinite(start):  # the guest's cursor when migrate came (a sequential writer)
        o.append(f"workload.sweep_start={start!r}")
    return o


#: How much a throttled vCPU's writer on the testbed (QEMU 10.0, TCG) keeps of its rate, as
#: the headroom of a clock-paced writer (``workload.pacing=wall``): it writes at ``rate x min(1,
#: headroom x (1 - throttle))``.  Measured, not derived: the dirtier makes up 2 ms, 20 ms or 10 s
#: of missed writes after a stall (``pacing`` guest, default, wall; testbed/driver.py CATCHUP_MS)
#: and a vCPU throttled at ``pct`` runs 10 ms and sleeps ``pct / (1 - pct)`` x 10 ms
#: (system/cpu-throttle.c: cpu_throttle_thread), which predicts headrooms 1.2, 3 and the flat-out
#: rate; but the recorded pairs differ by < 1 % in time, throttle steps and QEMU's
#: dirty-pages-rate (r10000-h192 ac-pg 47.1 s, ac-pw 46.9 s, default 48.8 s; r30000-h064 ac-pg
#: 27.6 s, ac-pw 27.7 s) — under TCG the catch-up setting changes nothing.  The testbed's
#: validation fits the headroom on its fit runs (:func:`lmtoolkit.testbed.validate.fit`: 3 on the
#: reference set; a test keeps this constant equal to it).
TESTBED_THROTTLE_HEADROOM = 3.0


def testbed_writer(ds, headroom: float = TESTBED_THROTTLE_HEADROOM) -> dict:
    """How the testbed guest's writer (``testbed/guest/dirtier.c``) answers a throttle: a writer
    paced by the clock with a peak rate of ``headroom x rate`` (:data:`TESTBED_THROTTLE_HEADROOM`)
    and at most its measured flat-out rate (``max_rate``, pages/s; NaN when not measured)."""
    pacing = str(ds.attrs.get("lmt_pacing", "") or "")
    flat = float(_tb(ds, "max_rate_measured", math.nan) or math.nan)
    return {"pacing": pacing, "headroom": float(headroom), "max_rate": flat if flat > 0 else math.nan}


def writer_peak_rate(writer: dict, rate):
    """The peak rate (pages/s) of the writer ``writer`` (:func:`testbed_writer`) whose target is
    ``rate``: ``headroom x rate``, at most its flat-out rate."""
    peak = np.asarray(rate, float) * float(writer["headroom"])
    flat = float(writer.get("max_rate", math.nan))
    return np.minimum(peak, flat) if np.isfinite(flat) else peak


def testbed_guest(ds) -> dict:
    """What the testbed guest reported and was asked for (for validation, not for the fit)."""
    hot = float(_tb(ds, "hot_mib"))
    return {
        "dirty_rate_measured": float(_tb(ds, "dirty_rate_measured")),
        "dirty_rate_during": float(_tb(ds, "dirty_rate_during")),
        "dirty_rate_pages_s": float(_tb(ds, "dirty_rate_pages_s")),
        "hot_mib": hot if np.isfinite(hot) else None,
        "buffer_mib": float(_tb(ds, "buffer_mib")),
        "pattern": str(ds.attrs.get("lmt_pattern", "random")),
        "wbytes": float(_tb(ds, "wbytes", 64)),
    }


# -- assembly ---------------------------------------------------------------------------------------
#: what a number in a migration log may be (the throttle excepted)
NONNEGATIVE = "a count, size, time or rate: a finite number >= 0"


def _check_values(path, fmt, samples, finals, lines) -> None:
    """Every number a log gives is a count, size, time or rate (finite, >= 0) or the throttle
    (a share in [0, 1]); an absent one is NaN.  The first that is not: one error naming the
    line (a libvirt block's first line), the field (with its query-migrate name) and the value."""
    block = " (in the job statistics that start on this line)" if fmt.startswith("libvirt") else ""
    for s, f, line in zip(samples, finals, lines):
        for k, v in (*s.items(), *f.items()):
            if k in ("status", "time") or not isinstance(v, float) or math.isnan(v):
                continue
            hi = 1.0 if k == "throttle" else math.inf
            if 0.0 <= v <= hi and math.isfinite(v):
                continue
            unit, long_name = SAMPLE_VARS.get(k) or FINAL_VARS.get(k) or CHECKED_VARS.get(k) or ("1", k)
            qmp = long_name.rpartition("(")[2].rstrip(")") if long_name.endswith(")") else k
            allowed = "a share in [0, 1] (cpu-throttle-percentage / 100)" if k == "throttle" else NONNEGATIVE
            value = f"{v:g}" if unit == "1" else f"{v:g} {unit}"
            raise _err(path, line, f"{k} ({qmp}) = {value} is not allowed{block}: {allowed}")


def _check_sequence(path, samples, finals, lines) -> None:
    """One migration, in order: its states never go back (:data:`STAGE`), nothing but the same
    end follows its end, its counters never go down (:data:`CUMULATIVE`) and its sizes never
    change (:data:`CONSTANT`).  Two logs joined in one file, replies out of order or a corrupt
    reply are one error naming the line, rather than a fit to numbers no migration made."""
    prev: dict = {}
    last: dict = {}
    for i, (s, f, line) in enumerate(zip(samples, finals, lines)):
        st = s["status"]
        if i:
            p = samples[i - 1]["status"]
            if STAGE[p] == STAGE["completed"] and st != p:
                raise _err(
                    path,
                    line,
                    f"status '{st}' after the migration ended ('{p}' on line {lines[i - 1]}): "
                    "a log holds one migration",
                )
            if STAGE[p] == STAGE["completed"]:
                _check_same_end(path, (samples[i - 1], finals[i - 1], lines[i - 1]), (s, f, line))
            if STAGE[st] < STAGE[p]:
                raise _err(
                    path,
                    line,
                    f"status '{st}' after '{p}' (line {lines[i - 1]}): a migration does not go "
                    "back a stage (setup, pre-copy, post-copy, cancelling, end); a log holds one migration",
                )
        if st in ("failed", "cancelled"):
            continue
        for k, name in CUMULATIVE.items():
            v = s[k]
            if math.isfinite(v):
                if k in prev and v < prev[k][0]:
                    raise _err(
                        path,
                        line,
                        f"{name} goes down ({v:g} after {prev[k][0]:g} on line {prev[k][1]}): "
                        "it counts up during a migration; a log holds one migration, in order",
                    )
                prev[k] = (v, line)
        for k, name in CONSTANT.items():
            v = f[k]
            if math.isfinite(v):
                if k in last and v != last[k][0]:
                    raise _err(
                        path,
                        line,
                        f"{name} changes ({v:g} bytes after {last[k][0]:g} on line {last[k][1]}): "
                        "a log holds the migration of one guest",
                    )
                last[k] = (v, line)


def _check_same_end(path, a, b) -> None:
    """The end of a migration polled again is the same reply: QEMU freezes a completed run's
    statistics (``total_time``, ``downtime``, the RAM counters: ``migration_completion_end``)
    and libvirt keeps its completed job's.  A second ``completed`` reply with other numbers is
    another run's (or an edited one): which is this run's cannot be told."""
    (sa, fa, la), (sb, fb, lb) = a, b
    for k in [*fa, "remaining"]:
        va = sa.get(k, math.nan) if k == "remaining" else fa.get(k, math.nan)
        vb = sb.get(k, math.nan) if k == "remaining" else fb.get(k, math.nan)
        if va == vb or (np.isnan(va) and np.isnan(vb)):
            continue
        unit, long_name = FINAL_VARS.get(k) or SAMPLE_VARS.get(k) or ("1", k)
        qmp = long_name.rpartition("(")[2].rstrip(")") if long_name.endswith(")") else k.replace("_", "-")
        u = "" if unit == "1" else f" {unit}"
        a_, b_ = ("absent" if np.isnan(v) else f"{v:g}{u}" for v in (va, vb))
        raise _err(
            path,
            lb,
            f"a second '{sb['status']}' reply with other final statistics ({qmp} {b_}; "
            f"{a_} on line {la}): a migration's end is polled again with the same numbers, "
            "so these are two runs or an edited reply; which is the run's cannot be told",
        )


#: the clocks a log's times come from (the poller's ``_t``; QEMU's ``total-time``,
#: ``setup-time``, ``downtime``, in ms) agree to a QMP round trip (ms; a loaded host or a remote
#: poller: tenths of a second) and, over a long run, to their rates (NTP slews a clock by at most
#: 500 ppm): a disagreement beyond this many seconds ...
CLOCK_SLACK_S = 1.0
#: ... plus this share of the time compared is a contradiction, not clock noise
CLOCK_SLACK_REL = 0.01
#: a time since the migrate command this large (over 3 years) is a clock's absolute time
EPOCH_S = 1e8


def _slack(t: float) -> float:
    return CLOCK_SLACK_S + CLOCK_SLACK_REL * abs(t)


def _time_name(fmt: str) -> str:
    if fmt.startswith("qmp"):
        return "_t"
    if fmt.startswith("libvirt"):
        return "time_elapsed (Time elapsed)"
    return "sample_time"


def _check_clock(path, fmt, samples, finals, lines) -> None:
    """The log's clock is the migration's: ``_t`` counts seconds since the migrate command, as
    QEMU's ``total-time`` does (``migrate_init`` starts it and puts the migration in ``setup``).
    Refused, beyond :func:`_slack` (1 s + 1 %): a Unix time for ``_t``; a running reply whose
    ``_t`` and ``total-time`` disagree (a clock started before ``migrate``, or ``_t`` in ms);
    a completed reply whose ``total-time`` is longer than its own ``_t`` (the reply was taken
    after the end); a ``setup`` poll later than ``setup-time`` allows.  Each was fitted: the fit
    starts the migration at 0 and was 80 % off, with only a warning."""
    name = _time_name(fmt)
    t0 = samples[0]["time"]
    if t0 >= EPOCH_S:
        import datetime as _dt

        when = _dt.datetime.fromtimestamp(t0, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        since = (
            "seconds since the migrate command" if fmt.startswith("qmp") else "the time since the job started"
        )
        raise _err(
            path,
            lines[0],
            f"{name} = {t0:.6g} s ({t0 / 3.15576e7:.0f} years) is a clock's absolute time (as a Unix "
            f"time: {when}), not the {since} that {name} counts: subtract the time the "
            "migration started",
        )
    for s, f, line in zip(samples, finals, lines):
        t, el = s["time"], s.get("elapsed", math.nan)
        if np.isfinite(el) and abs(t - el) > _slack(max(t, el)):
            hint = ""
            if el > 0 and 0.95 < t / el / 1000.0 < 1.05:
                hint = f" ({name} looks like milliseconds: it is seconds)"
            elif t > el:
                hint = f" (a clock started {t - el:.3g} s before the migrate command?)"
            raise _err(
                path,
                line,
                f"{name} = {t:g} s but the reply's total-time = {el:g} s: both count from the "
                f"migrate command, so they differ by at most {_slack(max(t, el)):.3g} s "
                f"(1 s + 1 %){hint}",
            )
        tot = f.get("total_time", math.nan)
        if s["status"] == "completed" and np.isfinite(tot) and tot > t + _slack(t):
            raise _err(
                path,
                line,
                f"the completed reply's total-time {tot:g} s is longer than its own {name} "
                f"({t:g} s since the migrate command): a reply that says completed is taken after "
                "the end (1 s + 1 % allowed for the clocks)",
            )
    setup = finals[-1].get("setup_time", math.nan)
    polls = [(s["time"], ln) for s, ln in zip(samples, lines) if s["status"] == "setup"]
    if polls and np.isfinite(setup):
        ts, ln = polls[-1]
        if ts > setup + _slack(ts):
            raise _err(
                path,
                ln,
                f"the migration is still in 'setup' at {name} = {ts:g} s, but its setup-time is "
                f"{setup * 1000:g} ms (line {lines[-1]}): QEMU enters 'setup' at the migrate "
                f"command and leaves it setup-time after connecting, so {ts - setup:.3g} s went "
                f"before — {name} does not count from the migrate command (it must; subtract the "
                "offset), or connecting to the destination took that long, which the fit cannot "
                "model (1 s + 1 % allowed for the clocks)",
            )


def _check_final(path, samples, lines, final, page_given: bool) -> None:
    """What QEMU's final statistics cannot be: setup and downtime longer than the run; a
    completed run with dirty pages left (QEMU reports ``remaining`` 0 once completed:
    ``populate_ram_info``); ``normal-bytes`` other than ``normal`` x ``page-size`` (QEMU computes
    it so; compared where the log gives the page size, to virsh's 3 printed decimals); more
    pages sent than ``dirty-sync-count`` x the guest's pages (each sync's bitmap holds each page
    at most once, and a page is sent at most once per bitmap)."""
    s_end, line = samples[-1], lines[-1]
    completed = s_end["status"] == "completed"
    total, down, setup = final["total_time"], final["downtime"], final["setup_time"]
    if completed and np.isfinite(setup) and np.isfinite(total):
        d = down if np.isfinite(down) else 0.0
        if setup + d > total + _slack(total):
            with_down = f" plus downtime {d * 1000:g} ms" if d else ""
            raise _err(
                path,
                line,
                f"setup-time {setup:g} s{with_down} is longer than the whole migration (total-time "
                f"{total:g} s): both lie inside it (1 s + 1 % allowed for the clocks)",
            )
    if completed and np.isfinite(s_end["remaining"]) and s_end["remaining"] > 0:
        raise _err(
            path,
            line,
            f"ram.remaining (memory_remaining) = {s_end['remaining']:g} bytes in the completed reply: a "
            "completed migration has sent every dirty page (QEMU reports 0)",
        )
    ps, ram = final["page_size"], final["ram_total"]
    normal, dup, nb = final["ram_normal"], final["ram_duplicate"], final["ram_normal_bytes"]
    if page_given and np.isfinite(ps) and ps > 0 and np.isfinite(normal) and np.isfinite(nb):
        if abs(nb - normal * ps) > 1e-3 * max(nb, normal * ps):
            raise _err(
                path,
                line,
                f"ram.normal-bytes (memory_normal_bytes) = {nb:g} bytes is not ram.normal "
                f"({normal:g} pages) x ram.page-size ({ps:g} bytes) = {normal * ps:g}: QEMU "
                "computes it so",
            )
    k = final["dirty_sync_count"]
    if not np.isfinite(k):
        counts = np.array([s["dirty_sync_count"] for s in samples], float)
        k = float(np.nanmax(counts)) if np.isfinite(counts).any() else math.nan
    sent = {n: v for n, v in (("ram.normal", normal), ("ram.duplicate", dup)) if np.isfinite(v)}
    xp = final.get("xbzrle_pages", math.nan)
    if np.isfinite(xp):
        sent["xbzrle-cache.pages"] = xp
    page = ps if np.isfinite(ps) and ps > 0 else 4096.0
    if sent and np.isfinite(k) and k >= 1 and np.isfinite(ram) and ram > 0:
        most = max(k, 1.0) * ram / page
        if sum(sent.values()) > most:
            parts = " + ".join(f"{n} {v:g}" for n, v in sent.items())
            raise _err(
                path,
                line,
                f"{parts} pages sent is more than dirty-sync-count ({k:g}) x the guest's "
                f"{ram / page:g} pages (ram.total / page size) = {most:g}: a page is sent at most "
                "once per dirty-bitmap sync",
            )


def _check_consistent(path, samples, lines, final, completed) -> None:
    """What no migration logs: a completed run's total time shorter than its own polls (by
    more than a second of polling slack), a downtime longer than the run, a dirty remainder
    larger than the guest's RAM.  Each was fitted with only a 'does not reproduce' warning."""
    running = [(s["time"], ln) for s, ln in zip(samples, lines) if s["status"] not in FINAL]
    total, down = final["total_time"], final["downtime"]
    if completed and running and total + 1.0 < running[-1][0]:
        raise _err(
            path,
            lines[-1],
            f"total-time {total:g} s is shorter than the polls of the running migration (the last "
            f"at {running[-1][0]:g} s, line {running[-1][1]})",
        )
    if completed and np.isfinite(down) and down > total:
        raise _err(path, lines[-1], f"downtime {down:g} s is longer than the whole migration ({total:g} s)")
    for s, ln in zip(samples, lines):
        if np.isfinite(s["remaining"]) and s["remaining"] > 1.01 * final["ram_total"]:
            raise _err(
                path,
                ln,
                f"ram.remaining = {s['remaining']:g} bytes is more than the guest's RAM "
                f"({final['ram_total']:g} bytes, ram.total)",
            )


def _assemble(path, fmt, samples, finals, lines, passes, final_status=None) -> xr.Dataset:
    if not samples:
        raise _err(path, 0, "no query-migrate replies in the log")
    _check_values(path, fmt, samples, finals, lines)
    times = np.array([s["time"] for s in samples])
    if times[0] < 0:
        raise _err(
            path, lines[0], f"time {times[0]:g} s is not allowed: the time since the migrate command, >= 0"
        )
    if len(times) > 1 and times[-1] == times[0]:
        raise _err(
            path, lines[-1], f"every reply has the time {times[0]:g} s: a log is a series of polls in time"
        )
    bad = np.flatnonzero(np.diff(times) < 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise _err(path, lines[i], f"time goes backwards ({times[i]:.3f} s after {times[i - 1]:.3f} s)")
    _check_sequence(path, samples, finals, lines)
    _check_clock(path, fmt, samples, finals, lines)
    last = samples[-1]["status"]
    if last not in FINAL:
        raise _err(
            path,
            lines[-1],
            f"the log ends while the migration is '{last}' (truncated? the "
            f"last reply must say completed, failed or cancelled)",
        )
    final = dict(finals[-1])
    completed = last == "completed"
    if completed and not np.isfinite(final["transferred"]):
        raise _err(path, lines[-1], "the completed reply has no ram.transferred")
    # a cancelled/failed reply carries no RAM statistics: keep the last ones seen running; a
    # completed one only its sizes (a running poll's counts are not the run's: a completed
    # reply without them was fitted to an earlier poll's bytes and syncs)
    for k, v in final.items():
        if not np.isfinite(v) and (not completed or k in CONSTANT):
            for f in reversed(finals[:-1]):
                if np.isfinite(f.get(k, math.nan)) and k not in ("total_time", "downtime"):
                    final[k] = f[k]
                    break
    if completed and not np.isfinite(final["total_time"]):
        final["total_time"] = float(times[-1])
    if not completed:
        final["total_time"] = float(times[-1])
        final["downtime"] = math.nan
    if not np.isfinite(final["ram_total"]):
        raise _err(path, lines[-1], "no guest RAM size (ram.total / memory_total) in the log")
    if not final["ram_total"] > 0:
        raise _err(
            path, lines[-1], f"ram.total (memory_total) = {final['ram_total']:g} bytes: a guest has RAM"
        )
    _check_consistent(path, samples, lines, final, completed)
    page_given = bool(np.isfinite(final["page_size"]))
    if not page_given:
        final["page_size"] = 4096.0
    ps = final["page_size"]
    if not (
        512 <= ps <= BASE_PAGE_MAX_KIB * 1024 and float(ps).is_integer() and int(ps) & (int(ps) - 1) == 0
    ):
        # QEMU reports the page it counts and sends, its target page (migration.c:
        # populate_ram_info, qemu_target_page_size()): 4096 on x86 also for a guest backed by
        # huge pages, never a huge page (the model tracks 4 KiB pages for those: VM.page_bytes)
        raise _err(
            path,
            lines[-1],
            f"ram.page-size (memory_page_size) = {ps:g} bytes: a page is a power of two from 512 bytes "
            f"to {BASE_PAGE_MAX_KIB} KiB (QEMU reports its target page, 4096 on x86 also for a guest "
            "backed by huge pages)",
        )
    _check_final(path, samples, lines, final, page_given)
    sts = [s["status"] for s in samples]
    final["postcopy"] = any(s.startswith("postcopy") for s in sts)
    final["completed"] = completed
    thr = np.array([s["throttle"] for s in samples], float)
    final["throttle_max"] = float(np.nanmax(thr)) if np.isfinite(thr).any() else 0.0
    if not np.isfinite(final["dirty_sync_count"]):
        counts = np.array([s["dirty_sync_count"] for s in samples])
        final["dirty_sync_count"] = float(np.nanmax(counts)) if np.isfinite(counts).any() else math.nan
    data = {}
    for k, (u, ln) in SAMPLE_VARS.items():
        data[f"sample_{k}"] = (
            "sample",
            np.array([s[k] for s in samples], float),
            {"units": u, "long_name": ln},
        )
    data["sample_status"] = ("sample", np.array(sts, dtype=object), {"long_name": "migration status"})
    data["sample_line"] = (
        "sample",
        np.array(lines, np.int64),
        {"units": "1", "long_name": "line in the log"},
    )
    for k, (u, ln) in FINAL_VARS.items():
        val = final.get(k, math.nan)
        arr = np.bool_(val) if k in ("completed", "postcopy") else np.float64(val)
        data[k] = ((), arr, {"units": u, "long_name": ln})
    data["pass_time"] = (
        "pass",
        np.array([p[0] for p in passes], float),
        {"units": "s", "long_name": "MIGRATION_PASS event time"},
    )
    data["pass_number"] = (
        "pass",
        np.array([p[1] for p in passes], np.int64),
        {"units": "1", "long_name": "MIGRATION_PASS pass number"},
    )
    ds = xr.Dataset(data)
    from .. import provenance

    status = final_status or last
    ds.attrs.update(
        {
            "title": f"migration log {Path(path).name}",
            "source": str(path),
            "lmt_kind": "migration_log",
            "lmt_log_format": fmt,
            "lmt_status": status,
            "lmt_settings": "[]",
            "lmt_guest": "{}",
            "lmt_label": Path(path).stem,
            "history": f"{provenance.now()} lmtoolkit.logs.read_log({str(path)!r})",
        }
    )
    return ds


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _err(path, 0, "no such file") from None
    except IsADirectoryError:
        raise _err(path, 0, "is a directory, not a log file") from None
    except OSError as e:
        raise _err(path, 0, f"cannot read it ({e.strerror})") from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise _err(path, line, "not a text log (not UTF-8); a testbed record is a .nc file") from None


def _is_netcdf(path: Path) -> bool:
    if not path.is_file():  # a pipe (lmtk fit <(...)) is read once, as text
        return False
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head.startswith(b"\x89HDF") or head.startswith(b"CDF")


def detect_format(path, text: str | None = None) -> str:
    """``testbed``, ``qmp``, ``libvirt-domjobinfo`` or ``libvirt-jobstats`` (of ``text``, the
    file's content, where already read)."""
    path = Path(path)
    if text is None and _is_netcdf(path):
        return "testbed"
    text = _read_text(path) if text is None else text
    s = text.lstrip()
    if not s:
        raise _err(path, 0, "the log is empty")
    if s.startswith("["):
        return "qmp"
    if s.startswith("{"):
        first = s.split("\n", 1)[0]
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:
            return "qmp"
        return "libvirt-jobstats" if isinstance(obj, dict) and _is_libvirt(obj) else "qmp"
    first = next((ln.strip() for ln in s.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    if first.lower().startswith("job type"):
        return "libvirt-domjobinfo"
    if re.match(r"[A-Za-z_][A-Za-z0-9_.]*\s*[=:]", first):
        return "libvirt-jobstats"
    raise _err(
        path,
        1,
        "unknown log format (expected QMP query-migrate JSON, virsh domjobinfo "
        "text, virDomainGetJobStats key=value lines or a testbed record .nc)",
    )


def read_log(path) -> xr.Dataset:
    """Read any supported migration log (see the module doc) into a MigrationLog Dataset."""
    path = Path(path)
    if not path.exists():
        raise _err(path, 0, "no such file")
    if path.is_dir():
        raise _err(path, 0, "is a directory, not a log file")
    if _is_netcdf(path):
        return read_testbed(path)
    text = _read_text(path)  # once: a pipe has nothing left to read a second time
    fmt = detect_format(path, text)
    if fmt == "qmp":
        return read_qmp(path, text)
    if fmt == "libvirt-domjobinfo":
        return read_domjobinfo(path, text)
    return read_jobstats(path, text)


def MigrationLog(path) -> xr.Dataset:  # noqa: N802 - the name the docs use for the Dataset
    """Alias of :func:`read_log`: the ``MigrationLog`` Dataset of a file."""
    return read_log(path)
