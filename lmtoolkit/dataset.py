"""Records → ``xarray.Dataset`` with CF units and long names; :func:`validate` checks the schema."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import xarray as xr

from .engine.common import BatchResult
from .model.energy import VARIABLES as ENERGY_VARIABLES
from .records import ROUND_FIELDS, ROUND_KINDS, STOP_REASONS

#: record field -> (dataset variable, units, long name)
SCALARS = {
    "total_time_s": ("total_time", "s", "total migration time"),
    "downtime_s": (
        "downtime",
        "s",
        "time the VM is paused (switchover; if abandoned at the timeout, until then; none without a pause)",
    ),
    "transferred_bytes": ("transferred", "bytes", "bytes sent over the migration link"),
    "rounds": ("rounds", "1", "pre-copy passes (dirty-bitmap syncs after setup)"),
    "converged": ("converged", "1", "the policy's convergence test held"),
    "completed": ("completed", "1", "the VM runs on the destination"),
    "stop_reason": ("stop_reason", "", "why pre-copy stopped"),
    "memory_bytes": ("memory", "bytes", "guest memory size"),
    "throttle_max": ("throttle_max", "1", "highest share of guest CPU removed by throttling"),
    "guest_slowdown": (
        "guest_slowdown",
        "1",
        "mean share of guest progress lost while running during migration",
    ),
    "postcopy_faults": ("postcopy_faults", "1", "demand page faults after the switch"),
    "postcopy_time_s": ("postcopy_time", "s", "duration of the post-copy phase"),
    "precopy_bytes": ("precopy_transferred", "bytes", "bytes sent while the VM ran at the source"),
    "stop_bytes": ("downtime_transferred", "bytes", "bytes sent while the VM was paused"),
    "numa_compatible": (
        "numa_compatible",
        "1",
        "the VM's vNUMA layout maps one-to-one onto the destination's nodes",
    ),
    "numa_penalty": (
        "numa_penalty",
        "1",
        "slowdown of memory-bound work after migration from remote NUMA accesses",
    ),
    "corruption_probability": (
        "corruption_probability",
        "1",
        "probability that at least one page arrives silently corrupted",
    ),
    "retransmitted_bytes": (
        "retransmitted",
        "bytes",
        "bytes of pages re-sent after a checksum mismatch (included in transferred)",
    ),
    "checksum_cpu_time_s": (
        "checksum_cpu_time",
        "s",
        "CPU time hashing pages for verification, both hosts (each transmission hashed once per host)",
    ),
    "storage_time_s": ("storage_time", "s", "disk pre-copy before memory (shared-nothing)"),
    "storage_bytes": ("storage_transferred", "bytes", "disk bytes sent: pre-copy passes and mirrored writes"),
}
#: record fields kept only as coordinates / attributes
LABELS = ("policy", "engine")
#: variables every Dataset of a task has (``lmt_task`` attribute; default migration)
REQUIRED_VARS = {
    "migration": ("total_time", "downtime", "transferred", "rounds", "converged"),
    "evacuation": ("makespan", "start", "end", "duration", "downtime", "transferred"),
    # a migration read from a log (lmtoolkit.logs.readers: its polls and final statistics)
    "migration_log": ("sample_time", "sample_status", "total_time", "downtime", "transferred", "completed"),
    # real migrations beside their simulation, per run (lmtoolkit.testbed.validate.compare)
    "testbed_comparison": tuple(
        f"{p}_{k}" for k in ("total_time", "downtime", "transferred") for p in ("measured", "simulated")
    ),
}
#: ``lmt_kind`` -> the task whose variables a Dataset without ``lmt_task`` has (a testbed
#: record holds a migration's; a log, what a log states)
KIND_TASK = {
    "testbed_run": "migration",
    "migration_log": "migration_log",
    "testbed_comparison": "testbed_comparison",
}


def to_dataset(
    batch: BatchResult,
    dims: list[str] | None = None,
    coords: dict | None = None,
    attrs: dict | None = None,
    coord_attrs: dict | None = None,
) -> xr.Dataset:
    """Arrange ``batch`` (row-major over ``dims``) as a Dataset; no dims → one migration."""
    dims = list(dims or [])
    coords = dict(coords or {})
    shape = tuple(len(coords[d]) for d in dims)
    if int(np.prod(shape)) != batch.n:
        raise ValueError(f"{batch.n} results do not fill dims {dict(zip(dims, shape))}")
    kinds = batch.round_kind
    used = np.flatnonzero((kinds >= 0).any(axis=0))
    n_round = int(used.max()) + 1 if used.size else 0
    data = {}
    for field, (name, units, long) in SCALARS.items():
        v = np.asarray(batch.scalars[field])
        if field == "stop_reason":
            v = v.astype(str)
        data[name] = (
            dims,
            v.reshape(shape),
            {"units": units, "long_name": long} if units else {"long_name": long},
        )
    for name, v in getattr(batch, "extra", {}).items():  # energy (lmtoolkit.model.energy)
        units, long = ENERGY_VARIABLES[name]
        data[name] = (dims, np.asarray(v, dtype=float).reshape(shape), {"units": units, "long_name": long})
    for field, (units, long) in ROUND_FIELDS.items():
        v = batch.round[field][:, :n_round].reshape(shape + (n_round,))
        data[field] = (dims + ["round"], v, {"units": units, "long_name": long})
    data["round_kind"] = (
        dims + ["round"],
        kinds[:, :n_round].reshape(shape + (n_round,)),
        {
            # -1 (after a migration's last round) is a flag of its own, not a _FillValue: a
            # _FillValue makes a plain xr.open_dataset decode the variable to floats with NaN
            "long_name": "kind of round",
            "flag_values": np.array([*range(len(ROUND_KINDS)), -1], dtype=np.int8),
            "flag_meanings": " ".join((*ROUND_KINDS, "none")),
        },
    )
    ds = xr.Dataset(data)
    ds = ds.assign_coords(round=("round", np.arange(n_round), {"long_name": "round index", "units": "1"}))
    for d in dims:
        ds = ds.assign_coords({d: (d, np.asarray(coords[d]), (coord_attrs or {}).get(d, {}))})
    if not dims:
        for lab in LABELS:
            ds.attrs[f"lmt_{lab}"] = str(batch.scalars[lab][0])
    base = {
        "Conventions": "CF-1.10",
        "title": "lmtoolkit live-migration simulation",
        "source": "lmtoolkit",
        "lmt_stop_reasons": " ".join(STOP_REASONS),
    }
    ds.attrs.update(base)
    ds.attrs.update(attrs or {})
    return ds


def units_problems(ds: xr.Dataset) -> list[str]:
    """Where ``ds`` breaks the units rule (README, Dataset; CF-1.10 §3.1, §3.5): every variable
    and coordinate has a ``long_name``; a numeric or boolean one has CF ``units``, a string
    UDUNITS-2 parses (``1`` for counts, shares, booleans; checked where ``cf_units`` is
    installed, as with the test extra) — except a flag variable (``flag_values`` and
    ``flag_meanings``, e.g. ``round_kind``), which like a string one has none: CF gives units
    to quantities, not to categories or names."""
    out = []
    for name, var in ds.variables.items():
        what = f"{'coordinate' if name in ds.coords else 'variable'} '{name}'"
        a = var.attrs
        if not a.get("long_name"):
            out.append(f"{what} has no long_name")
        flag = "flag_values" in a
        if flag and "flag_meanings" not in a:
            out.append(f"{what} has flag_values but no flag_meanings")
        if var.dtype.kind in "biuf" and not flag:
            if "units" not in a:
                out.append(f"{what} has no units")
            elif not udunits_ok(a["units"]):
                out.append(f"{what} has units {a['units']!r}, which UDUNITS-2 does not parse")
        elif "units" in a:
            kind = "a flag" if flag else "not numeric"
            out.append(f"{what} is {kind} and has units {a['units']!r} (CF: units are for quantities)")
    return out


def udunits_ok(units) -> bool:
    """Is ``units`` a string UDUNITS-2 parses (``cf_units.Unit``)?  Any string passes where
    ``cf_units`` is not installed (the test extra installs it)."""
    return isinstance(units, str) and _parses(units)


@lru_cache(maxsize=256)
def _parses(units: str) -> bool:
    try:
        from cf_units import Unit
    except ImportError:
        return True
    try:
        Unit(units)
    except ValueError:
        return False
    return True


def validate(ds: xr.Dataset) -> None:
    """Raise ``ValueError`` if ``ds`` breaks the schema (variables, units, attribute types):
    a simulation's, a testbed record's or a migration log's (``lmt_kind``)."""
    task = str(ds.attrs.get("lmt_task") or KIND_TASK.get(ds.attrs.get("lmt_kind"), "migration"))
    problems = [f"missing variable '{v}'" for v in REQUIRED_VARS.get(task, ()) if v not in ds]
    if task not in REQUIRED_VARS:
        problems.append(f"unknown lmt_task '{task}'")
    problems += units_problems(ds)
    for k, v in ds.attrs.items():
        if not isinstance(v, (str, int, float, np.integer, np.floating, np.ndarray)):
            problems.append(f"attribute '{k}' is {type(v).__name__}, not a netCDF type")
    for k in ("title", "source", "history"):
        if k not in ds.attrs:
            problems.append(f"missing global attribute '{k}'")
    if problems:
        raise ValueError("dataset does not follow the lmtoolkit schema: " + "; ".join(problems))
