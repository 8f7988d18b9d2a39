"""Validation against closed-form limits and between engines (notebooks 10 and 11).

:func:`limits` runs a handful of scenarios whose answer is known in closed form — an idle VM
is one pass (``bytes / payload rate``), stop-and-copy pauses for exactly that long, a slowly
writing guest sends ``M (1 + ρ (1 − a) / (1 − ρ))`` (the geometric series of Clark et al.,
NSDI 2005, with ``ρ`` = dirty bytes/s ÷ payload bytes/s and ``a`` the share of the first
pass's writes absorbed because the page's dirty-log bit is cleared after the write: ½ when
the log is cleared at each page's send, 0 at the sync (TCG), (K − 1)/2K when K chunks are
cleared in turn — QEMU/KVM's default), a guest that writes faster than the link never
converges, post-copy sends every page once — and returns simulated vs analytic values.

:func:`compare_engines` runs the same scenarios on the page and the fluid engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .api import simulate
from .engine.common import switchover_latency_s
from .errors import ConfigError
from .runner import build_scenario, compose


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    overrides: tuple[str, ...]
    variable: str  # Dataset variable compared
    relation: str  # "≈" (within tolerance), "≤" or "≥"
    tolerance: float  # relative


CHECKS = (
    Check(
        "idle_one_pass",
        "idle VM: one pass, total time = bytes / payload rate",
        ("workload=idle", "policy=qemu"),
        "total_time",
        "≈",
        1e-6,
    ),
    Check(
        "stopcopy_downtime",
        "stop-and-copy: downtime = total time = one pass",
        ("workload=uniform", "workload.dirty_rate_pages_s=50000", "policy=stopcopy"),
        "downtime",
        "≈",
        1e-6,
    ),
    Check(
        "geometric_series",
        "slow writer (ρ = 0.2): data sent ≈ M (1 + ρ (1 − a) / (1 − ρ)), a = writes absorbed by a later log clear",
        ("workload=uniform", "policy=qemu", "network=1gbe", "policy.downtime_limit_ms=30"),
        "transferred",
        "≈",
        0.05,
    ),
    Check(
        "no_convergence",
        "writes faster than the link: runs until the timeout",
        ("workload=uniform", "policy=qemu", "network=1gbe", "policy.timeout_s=30"),
        "total_time",
        "≥",
        0.0,
    ),
    Check(
        "downtime_within_limit",
        "converged QEMU-like migration: downtime ≤ downtime-limit",
        ("workload=uniform", "workload.dirty_rate_pages_s=20000", "policy=qemu"),
        "downtime",
        "≤",
        0.0,
    ),
    Check(
        "postcopy_once",
        "post-copy: every page sent once, total time = one pass",
        ("workload=uniform", "workload.dirty_rate_pages_s=50000", "policy=postcopy"),
        "transferred",
        "≈",
        1e-6,
    ),
)


def one_pass(scn) -> tuple[float, float]:
    """(bytes, seconds) to send every page once plus the device state (no zero pages), the
    seconds until the destination has the last byte and runs the VM (the switchover's
    ``switchover_trips x network.latency_ms``, :func:`~lmtoolkit.engine.common.switchover_latency_s`)."""
    vm, pol = scn.vm, scn.policy
    rate = scn.network.payload_bytes_s()
    nbytes = vm.pages * (vm.page_bytes + pol.page_header_bytes) + vm.device_state_bytes
    return float(nbytes), float(nbytes / rate + switchover_latency_s(pol, scn.context()))


def _analytic(check: Check, scn, ds) -> float:
    nbytes, secs = one_pass(scn)
    if check.name in ("idle_one_pass", "stopcopy_downtime"):
        return secs
    if check.name == "postcopy_once":
        return nbytes
    if check.name == "geometric_series":
        # Pass 0 sends M while the guest writes ρM; the share a of those writes that is absorbed
        # (lands on a page whose dirty-log bit is cleared later, so it goes once, in pass 0)
        # depends on when the log is cleared (policy.dirty_clear): at each page's send, half;
        # at the sync, none; per chunk of the K chunks cleared in turn, (K − 1) / 2K.  Later
        # passes are small, so nearly every write dirties a page: ρM(1 − a) · (1 + ρ + ρ² + …).
        rho = _rho(scn)
        return nbytes * (1.0 + rho * (1.0 - _absorbed(scn)) / (1.0 - rho))
    if check.name == "no_convergence":
        return float(scn.policy.timeout_s)
    if check.name == "downtime_within_limit":
        return float(scn.policy.downtime_limit_ms) / 1000.0
    raise KeyError(check.name)


def _absorbed(scn) -> float:
    """Share of pass-0 writes absorbed by a later dirty-log clear (see ``geometric_series``)."""
    pol = scn.policy
    rule = str(pol.dirty_clear)
    if rule == "send":
        return 0.5
    if rule == "chunk":
        k = float(np.ceil(scn.vm.pages / float(pol.clear_chunk_pages(scn.context()))))
        return (k - 1.0) / (2.0 * k)
    return 0.0


def _rho(scn) -> float:
    """Dirty bytes per second over payload bytes per second."""
    vm, pol = scn.vm, scn.policy
    return (
        scn.workload.dirty_rate_pages_s
        * (vm.page_bytes + pol.page_header_bytes)
        / scn.network.payload_bytes_s()
    )


def _check_overrides(check: Check, base: Sequence[str]) -> list[str]:
    ov = list(base) + list(check.overrides) + ["vm.zero_fraction=0"]
    if check.name in ("geometric_series", "no_convergence"):
        try:
            scn = build_scenario(compose(ov))
        except ConfigError:  # a run that cannot be built: whoever builds it says why
            return ov
        rate_pages = scn.network.payload_bytes_s() / (scn.vm.page_bytes + scn.policy.page_header_bytes)
        factor = 0.2 if check.name == "geometric_series" else 1.5
        ov.append(f"workload.dirty_rate_pages_s={factor * rate_pages:.1f}")
    return ov


def limit_runs(base: Sequence[str] = (), checks: Sequence[Check] = CHECKS) -> dict[str, list[str]]:
    """The overrides of each check of :func:`limits` (``base`` first, then the check's), by name."""
    return {c.name: _check_overrides(c, base) for c in checks}


def limits(base: Sequence[str] = (), checks: Sequence[Check] = CHECKS) -> xr.Dataset:
    """Simulate every check; Dataset on dim ``check``: simulated, analytic, rel_error, ok."""
    rows = []
    for c, ov in zip(checks, limit_runs(base, checks).values()):
        scn = build_scenario(compose(ov))
        ds = simulate(ov)
        sim = float(ds[c.variable])
        ana = _analytic(c, scn, ds)
        rel = (sim - ana) / ana
        if c.relation == "≈":
            ok = abs(rel) <= c.tolerance
        elif c.relation == "≤":
            ok = sim <= ana * (1 + c.tolerance)
        else:
            ok = sim >= ana * (1 - c.tolerance)
        if c.name == "no_convergence":
            ok = ok and not bool(ds["completed"])
        rows.append(
            (
                c.name,
                c.description,
                c.variable,
                ds[c.variable].attrs.get("units", ""),
                c.relation,
                sim,
                ana,
                rel,
                c.tolerance,
                ok,
            )
        )
    names, desc, var, units, rel_, sim, ana, err, tol, ok = map(list, zip(*rows))
    return xr.Dataset(
        {
            "simulated": ("check", np.array(sim), {"long_name": "simulated value"}),
            "analytic": ("check", np.array(ana), {"long_name": "closed-form value"}),
            "rel_error": (
                "check",
                np.array(err),
                {"units": "1", "long_name": "(simulated − analytic) / analytic"},
            ),
            "tolerance": ("check", np.array(tol), {"units": "1", "long_name": "allowed relative error"}),
            "ok": ("check", np.array(ok, dtype=bool), {"long_name": "the check holds"}),
            "relation": ("check", np.array(rel_)),
            "variable": ("check", np.array(var)),
            "units": ("check", np.array(units)),
            "description": ("check", np.array(desc)),
        },
        coords={"check": names},
        attrs={"title": "simulator vs analytic limits"},
    )


#: page-vs-fluid scenarios: (policy, workload, dirty rate pages/s, network)
ENGINE_CASES = tuple(
    (p, w, r, n)
    for p in ("qemu", "xen", "vmware", "hyperv")
    for w, r in (("uniform", 5_000), ("uniform", 40_000), ("hotcold", 60_000))
    for n in ("1gbe", "10gbe")
)


#: a quick subset for smoke runs
SMOKE_CASES = tuple(c for c in ENGINE_CASES if c[0] in ("qemu", "hyperv") and c[2] == 40_000)


def engine_cases(base: Sequence[str] = (), cases=None, smoke: bool = False) -> dict[str, list[str]]:
    """The overrides of each case of :func:`compare_engines` (``base`` first), by its label
    (``qemu/uniform@5000/1gbe``); ``cases`` default to :data:`ENGINE_CASES` (:data:`SMOKE_CASES`)."""
    cases = cases or (SMOKE_CASES if smoke else ENGINE_CASES)
    return {
        f"{pol}/{wl}@{rate}/{net}": list(base)
        + [f"policy={pol}", f"workload={wl}", f"network={net}", f"workload.dirty_rate_pages_s={rate}"]
        for pol, wl, rate, net in cases
    }


def compare_engines(base: Sequence[str] = (), cases=None, smoke: bool = False) -> xr.Dataset:
    """Each case on both engines: Dataset with dims ``case`` × ``engine``."""
    cases = cases or (SMOKE_CASES if smoke else ENGINE_CASES)
    variables = ["total_time", "downtime", "transferred", "rounds", "converged"]
    out = []
    runs = engine_cases(base, cases)
    for ov in runs.values():
        pair = [simulate(ov + [f"engine={e}"])[variables].expand_dims(engine=[e]) for e in ("page", "fluid")]
        out.append(xr.concat(pair, "engine", combine_attrs="drop"))
    ds = xr.concat(out, xr.DataArray(list(runs), dims="case", name="case"), combine_attrs="drop")
    ds = ds.assign_coords(policy=("case", [c[0] for c in cases]), network=("case", [c[3] for c in cases]))
    page, fluid = ds.sel(engine="page"), ds.sel(engine="fluid")
    for v in ("total_time", "transferred"):
        ds[f"{v}_rel_diff"] = ((fluid[v] - page[v]) / page[v]).assign_attrs(
            units="1", long_name=f"(fluid − page) / page, {v}"
        )
    ds.attrs["title"] = "page vs fluid engine"
    return ds
