"""Measurements of one real migration → a small ``xarray.Dataset`` (one netCDF file per run).

Scalar variables use the simulator's names where they mean the same thing:

* ``total_time`` (s, QMP ``total-time``), ``downtime`` (s), ``transferred`` (bytes, ``ram.transferred``:
  everything on the migration stream, device state included), ``converged`` (pre-copy reached
  QEMU's switchover test; false when cancelled at ``timeout_s`` or switched to post-copy),
  ``completed``, ``rounds`` (pre-copy phases = bitmap syncs between the setup sync and the
  switchover sync: ``dirty_sync_count − 2`` for a completed migration, ``− 1`` for a cancelled
  one), ``throttle_max``;
* measured extras: ``setup_time``, ``ram_total``/``ram_normal``/``ram_duplicate`` (pages sent
  as normal / as zero pages), ``dirty_sync_count`` (as QEMU counts it: the setup sync and the
  final sync included), ``dirty_pages_rate`` (QEMU's estimate, max over the run),
  ``dirty_rate_measured`` (page writes/s the guest achieved before the migration),
  ``dirty_rate_during``, ``verify_bad_pages`` (guest pages whose content was wrong on the
  destination: must be 0), ``zero_fraction`` (``ram_duplicate / ram_total pages``: the guest's
  zero share, for ``vm.zero_fraction``);
* time series on dim ``sample`` (QMP polls every 100 ms) and ``pass`` (MIGRATION_PASS events).

The inputs (workload, caps, capabilities) are scalar variables too, named like the
simulator's config keys (``dirty_rate_pages_s``, ``hot_mib``, ``max_bandwidth_mib_s``,
``downtime_limit_ms``, ``auto_converge``, ``xbzrle``, ``multifd_channels``, ``postcopy``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from .. import provenance
from ..logs.readers import FINAL_VARS, SAMPLE_VARS
from ..units import unit_of_key

PAGE = 4096


def _key(name: str, long_name: str) -> tuple[str, str]:
    """(CF units, long_name) of an input named like a config key (``hot_mib`` -> ``2^20 bytes``)."""
    return unit_of_key(name), long_name


#: (CF units, long_name) of every numeric variable a record holds (CF-1.10 §3.1, the rule
#: :func:`lmtoolkit.dataset.units_problems` checks): inputs named like config keys take their
#: key's unit (:func:`lmtoolkit.units.unit_of_key`), QEMU's ram/xbzrle counters and the polls
#: the log reader's (:data:`lmtoolkit.logs.readers.FINAL_VARS`, ``SAMPLE_VARS``); counts,
#: shares and flags ``1``.  Records written before this said ``MiB``, ``MiB/s`` and none for
#: some: readers go by the variable's name, never its units string, so both read alike.
UNITS = {
    **{k: FINAL_VARS[k] for k in ("ram_normal_bytes", "precopy_bytes", "downtime_bytes", "postcopy_bytes")},
    **{k: FINAL_VARS[k] for k in ("xbzrle_bytes", "xbzrle_pages")},
    **{f"sample_{k}": v for k, v in SAMPLE_VARS.items()},
    "total_time": ("s", "start of migration to VM running on the destination"),
    "downtime": ("s", "VM paused"),
    "setup_time": ("s", "QEMU migration setup"),
    "transferred": ("bytes", "bytes on the migration stream"),
    "rounds": ("1", "pre-copy phases (dirty_sync_count - 2 when completed)"),
    "converged": ("1", "pre-copy met the switchover test"),
    "completed": ("1", "VM runs on the destination"),
    "postcopy_started": ("1", "the migration switched to post-copy"),
    "dirty_sync_count": ("1", "QEMU dirty-sync-count (setup and final syncs included)"),
    "ram_total": ("bytes", "guest RAM blocks migrated"),
    "ram_normal": ("1", "pages sent as normal pages"),
    "ram_duplicate": ("1", "pages sent as zero pages"),
    "zero_fraction": ("1", "ram_duplicate / pages of ram_total"),
    "postcopy_requests": ("1", "page requests from the destination (ram.postcopy-requests)"),
    "mbps": ("Mbit/s", "migration throughput, QEMU's estimate (ram.mbps, megabits/s)"),
    "xbzrle_cache_miss": ("1", "XBZRLE cache misses (xbzrle-cache.cache-miss)"),
    "xbzrle_overflow": ("1", "XBZRLE encodings that overflowed (xbzrle-cache.overflow)"),
    "dirty_pages_rate": ("s-1", "QEMU dirty-pages-rate (max over the run)"),
    "dirty_rate_measured": ("s-1", "page writes per second the guest achieved before migrating"),
    "dirty_rate_during": ("s-1", "page writes per second across the migration (guest time)"),
    "max_rate_measured": ("s-1", "page writes per second the guest achieves flat out (wall pacing)"),
    "throttle_max": ("1", "auto-converge CPU throttle (max, fraction)"),
    "verify_bad_pages": ("1", "guest buffer pages wrong after migration (-1: not checked)"),
    "verify_pages": ("1", "guest buffer pages checked after migration (0: not checked)"),
    "sweep_start": ("1", "sequential writer's place in its hot set at migrate (fraction; NaN: random)"),
    "wall_time": ("s", "wall-clock time from migrate to the end of polling"),
    "boot_time": ("s", "guest boot time before its first migration"),
    "wbytes": ("bytes", "bytes each page write rewrites"),
    "hot_pages": ("1", "pages the writes fall in"),
    "pass_time": ("s", "since the migrate command"),
    "pass_number": ("1", "MIGRATION_PASS pass number"),
    "auto_converge": ("1", "auto-converge capability on"),
    "xbzrle": ("1", "xbzrle capability on"),
    "postcopy": ("1", "postcopy-ram capability on"),
    "multifd_channels": ("1", "multifd-channels (0: multifd off)"),
    "postcopy_after_passes": ("1", "post-copy started after this many passes"),
    "repeat": ("1", "repetition of the same settings"),
    "dirty_rate_pages_s": _key("dirty_rate_pages_s", "page writes per second asked of the guest"),
    "max_bandwidth_mib_s": _key("max_bandwidth_mib_s", "max-bandwidth"),
    "downtime_limit_ms": _key("downtime_limit_ms", "downtime-limit"),
    "hot_mib": _key("hot_mib", "hot set the writes fall in (NaN: the whole buffer)"),
    "postcopy_after_s": _key(
        "postcopy_after_s", "post-copy started this long after migrate (NaN: after passes)"
    ),
    "memory_mib": _key("memory_mib", "guest RAM (-m)"),
    "buffer_mib": _key("buffer_mib", "the dirtier's buffer"),
    "xbzrle_cache_mib": _key("xbzrle_cache_mib", "xbzrle-cache-size"),
    "timeout_s": _key("timeout_s", "the migration is cancelled when still running this long after migrate"),
    "settle_s": _key("settle_s", "the guest's write rate measured this long before migrating"),
}
#: attrs of the string variables (CF: no units)
STRING_VARS = {"sample_status": {"long_name": "migration status"}}


def set_units(ds: xr.Dataset) -> xr.Dataset:
    """Set every variable's ``units`` and ``long_name`` from :data:`UNITS` (in place)."""
    _set_attrs(ds.variables)
    return ds


def _set_attrs(variables) -> list[str]:
    """Apply :data:`UNITS` and :data:`STRING_VARS` to ``variables`` (name -> object with
    ``attrs``: xarray's or h5netcdf's); the names whose attrs changed."""
    changed = []
    for k, var in variables.items():
        want = dict(zip(("units", "long_name"), UNITS[k])) if k in UNITS else STRING_VARS.get(k)
        if want is None:
            continue
        have = {a: var.attrs.get(a) for a in ("units", "long_name")}
        if k in STRING_VARS and "units" in var.attrs:
            del var.attrs["units"]
        for a, v in want.items():
            var.attrs[a] = v
        if have != {a: want.get(a) for a in ("units", "long_name")}:
            changed.append(k)
    return changed


def rewrite_units(path) -> list[str]:
    """Give a record written before :data:`UNITS` held CF units (``MiB``, ``MiB/s``, none on
    some variables) the attrs :func:`to_dataset` writes now; its values stay byte for byte:
    the file is written again whole (:func:`_rewrite`), not edited in place, which left the
    old attributes' space free in the HDF5 file (the 166 committed records grew 8.1 -> 10.1 MB).
    The global ``history`` says so.  Returns the variables changed ([]: the file is untouched)."""
    path = Path(path)
    ds = _read_raw(path)
    changed = _set_attrs(ds.variables)
    if changed:
        note = (
            f"{provenance.now()} units and long_names of {len(changed)} variables set to CF (rewrite_units)"
        )
        ds.attrs["history"] = f"{ds.attrs.get('history', '')}\n{note}".lstrip()
        _rewrite(ds, path)
    return changed


def repack(path) -> int:
    """Write a record again as it reads — values, dtypes, fill values and attributes unchanged —
    without the free space that attribute edits in place leave in an HDF5 file; the bytes
    saved (0 for a packed file)."""
    path = Path(path)
    before = path.stat().st_size
    _rewrite(_read_raw(path), path)
    return before - path.stat().st_size


def _read_raw(path: Path) -> xr.Dataset:
    """A record as stored (no CF decoding: raw values, ``_FillValue`` and flags kept as attrs)."""
    with xr.open_dataset(path, engine="h5netcdf", decode_cf=False) as ds:
        return ds.load()


def _rewrite(ds: xr.Dataset, path: Path) -> None:
    """Write :func:`_read_raw`'s Dataset to a new file renamed over ``path``, no free space, by
    the library that wrote ``path`` (:func:`_writer_engine`): the same dtypes, fill values and
    attribute string types as the file had."""
    from ..io import atomic_path

    engine = _writer_engine(path)
    with atomic_path(path, suffix=".nc") as tmp:
        ds.to_netcdf(tmp, engine=engine, **({"format": "NETCDF4"} if engine == "netcdf4" else {}))


def _writer_engine(path: Path) -> str:
    """xarray's engine for the library that wrote ``path``, by its ``_NCProperties``:
    ``netcdf4`` for netCDF-C (:func:`lmtoolkit.io.write_dataset` where netCDF4-python is
    installed; fixed-length string attributes, netCDF's default fill values), else
    ``h5netcdf`` (variable-length strings, fill value 0)."""
    import h5py

    from ..io import netcdf_write_engine

    with h5py.File(path, "r") as f:
        props = f.attrs.get("_NCProperties", b"")
    props = props.decode() if isinstance(props, bytes) else str(props)
    libraries = {field.partition("=")[0] for field in props.split(",")}  # version=2,netcdf=4.10.1,…
    return "netcdf4" if "netcdf" in libraries and netcdf_write_engine() == "netcdf4" else "h5netcdf"


STRINGS = ("status", "pattern", "tag", "label", "pacing", "pass_clock")
SKIP = ("samples", "passes", "throttle")


def to_dataset(m: dict, extra_attrs: dict | None = None) -> xr.Dataset:
    m = dict(m)
    completed = bool(m["completed"])
    dsc = int(m["dirty_sync_count"])
    m["rounds"] = max(dsc - (2 if completed else 1), 0)
    m["converged"] = completed and not m.get("postcopy_started", False)
    m["throttle_max"] = m.get("throttle", 0.0)
    pages = m["ram_total"] / PAGE if m["ram_total"] else np.nan
    m["zero_fraction"] = m["ram_duplicate"] / pages if pages else np.nan
    data = {}
    for k, v in m.items():
        if k in SKIP or k in STRINGS:
            continue
        if v is None:
            v = np.nan
        if isinstance(v, bool):
            arr = np.bool_(v)
        elif isinstance(v, (int, np.integer)):
            arr = np.int64(v)
        else:
            arr = np.float64(v)
        data[k] = xr.Variable((), arr)
    s = m.get("samples") or []
    if s:
        cols = list(zip(*s))
        data["sample_time"] = ("sample", np.array(cols[0], float))
        data["sample_status"] = ("sample", np.array(cols[1], dtype=str).astype(object))
        data["sample_transferred"] = ("sample", np.array(cols[2], float))
        data["sample_remaining"] = ("sample", np.array(cols[3], float))
        data["sample_dirty_sync_count"] = ("sample", np.array(cols[4], np.int64))
        data["sample_throttle"] = ("sample", np.array(cols[5], float) / 100.0)
        data["sample_dirty_pages_rate"] = ("sample", np.array(cols[6], float))
    p = m.get("passes") or []
    data["pass_time"] = ("pass", np.array([x[0] for x in p], float))
    data["pass_number"] = ("pass", np.array([x[1] for x in p], np.int64))
    ds = xr.Dataset(data)
    set_units(ds)
    # lmt_pass_clock (attrs): "qemu" — pass_time is QEMU's own event timestamp (the end of the
    # sync); "received" or empty (older records) — when the poll read the event
    commit, dirty = provenance.git_state()
    ds.attrs.update(
        {
            "title": f"QEMU live migration (testbed) {m.get('label', '')}".strip(),
            "source": "lmtoolkit.testbed: real QEMU (TCG) migration on 127.0.0.1",
            "lmt_kind": "testbed_run",
            "lmt_label": str(m.get("label", "")),
            "lmt_git_commit": commit,
            "lmt_created_at": provenance.now(),
            "lmt_versions": json.dumps(provenance.versions(), sort_keys=True),
            "history": f"{provenance.now()} lmtk testbed run",
        }
    )
    for k in STRINGS:
        ds.attrs[f"lmt_{k}"] = str(m.get(k, ""))
    for k, v in (extra_attrs or {}).items():
        ds.attrs[k] = v if isinstance(v, str) else json.dumps(v)
    return ds


def label(spec, guest=None) -> str:
    """A readable file stem for a run:
    ``r05000-h064-rand-bw064-dl0300[-xbzrle[-xc16]][-ac[-pg|-pw]][-pc|-pcp3|-pct10][-mfd2][-g1024]``.

    Suffixes appear only away from the defaults (so older runs keep their names): the XBZRLE
    cache when not 64 MiB, the writer's pacing (guest/wall), post-copy after N != 1 passes or
    at t seconds, and the guest's RAM (``guest``: the run's :class:`GuestSpec`) when not 512 MiB.
    """
    hot = "all" if spec.hot_mib is None else f"{int(spec.hot_mib):03d}"
    parts = [
        f"r{int(spec.dirty_rate_pages_s):05d}",
        f"h{hot}",
        "seq" if spec.pattern == "sequential" else "rand",
        f"bw{int(spec.max_bandwidth_mib_s):03d}",
        f"dl{int(spec.downtime_limit_ms):04d}",
    ]
    if spec.xbzrle:
        parts.append("xbzrle")
        if float(spec.xbzrle_cache_mib) != 64.0:
            parts.append(f"xc{int(spec.xbzrle_cache_mib)}")
    if spec.auto_converge:
        parts.append("ac")
    pacing = getattr(spec, "pacing", "")
    if pacing:
        parts.append({"guest": "pg", "wall": "pw"}[pacing])
    if spec.postcopy:
        after_s = getattr(spec, "postcopy_after_s", None)
        if after_s is not None:
            parts.append(f"pct{int(after_s)}")
        elif int(spec.postcopy_after_passes) != 1:
            parts.append(f"pcp{int(spec.postcopy_after_passes)}")
        else:
            parts.append("pc")
    if spec.multifd_channels:
        parts.append(f"mfd{spec.multifd_channels}")
    mem = getattr(guest, "memory_mib", 512) if guest is not None else 512
    if int(mem) != 512:
        parts.append(f"g{int(mem)}")
    if spec.tag:
        parts.append(spec.tag)
    return "-".join(parts) + f"-n{spec.repeat}"


def load_runs(path) -> list[xr.Dataset]:
    """All testbed runs under ``path`` (a directory of .nc files, or one file), sorted by name."""
    from ..errors import ConfigError
    from ..io import read_input_dataset

    path = Path(path)
    if not path.exists():  # (read as a record, it was 'not a readable netCDF … FileNotFoundError')
        raise ConfigError(
            "--data",
            str(path),
            "",
            message=f"--data {path} does not exist: give a directory of testbed records or one",
        )
    files = sorted(path.glob("*.nc")) if path.is_dir() else [path]
    out = []
    for f in files:
        ds = read_input_dataset(f, "--data", "netCDF testbed record")
        if ds.attrs.get("lmt_kind") != "testbed_run":  # a sweep's or a run's result, say
            raise ConfigError(
                "--data",
                str(f),
                "",
                message=(
                    f"{f}: not a testbed record (lmt_kind={ds.attrs.get('lmt_kind')!r}; expected "
                    f"testbed_run): --data takes a directory of `lmtk testbed run` records"
                ),
            )
        ds.attrs["lmt_file"] = f.name
        out.append(ds)
    return out
