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
from .errors import ConfigError, report_claims
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
                _not_applicable(c, scn, ds),
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
    why, names, desc, var, units, rel_, sim, ana, err, tol, ok = map(list, zip(*rows))
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
            "not_applicable": (
                "check",
                np.array(why, dtype=object),
                {"long_name": "why the check does not apply to these settings ('' where it does)"},
            ),
            "relation": ("check", np.array(rel_)),
            "variable": ("check", np.array(var)),
            "units": ("check", np.array(units)),
            "description": ("check", np.array(desc)),
        },
        coords={"check": names},
        attrs={"title": "simulator vs analytic limits", "lmt_overrides": " ".join(base)},
    )


def steady_dirty_share(rho: float) -> float:
    """Share of memory dirty between syncs when a uniform writer dirties ``rho`` memories per
    pass time: the fixed point of ``x = 1 − exp(−ρ x)`` (a round of ``x`` passes rewrites
    ``1 − exp(−ρ x)`` of the pages); 0 for ``ρ ≤ 1`` (the rounds shrink to nothing)."""
    x = 1.0
    for _ in range(200):
        x = 1.0 - float(np.exp(-rho * x))
    return x if x > 1e-9 else 0.0


def _not_applicable(check: Check, scn, ds) -> str:
    """Why ``check`` does not apply to this run ('' where it does): the series and the
    downtime bound are about a migration that completes; "never converges" needs a steady dirty
    set larger than what the downtime limit lets the pause send."""
    done = bool(ds["completed"])
    timeout = float(scn.policy.timeout_s)
    if check.name in ("geometric_series", "downtime_within_limit") and not done:
        return f"the migration did not complete before the {timeout:g} s timeout: nothing converged to check"
    if check.name == "no_convergence":
        _, secs = one_pass(scn)
        share = steady_dirty_share(_rho(scn))
        limit = float(scn.policy.downtime_limit_ms) / 1000.0
        if share * secs <= limit:
            return (
                f"the steady dirty set ({share:.0%} of memory, {share * secs:.3g} s to send) fits in "
                f"the {limit:g} s downtime limit: a writer faster than the link converges anyway"
            )
    return ""


def check_limits(lim: xr.Dataset) -> str:
    """Notebook 10's claim, one line per check of :func:`limits`' Dataset (held, or not
    applicable and why); :class:`~lmtoolkit.errors.ClaimError` naming the checks that fail and
    their values (it was a bare ``assert``)."""
    checks = []
    for c in lim.check.values:
        r = lim.sel(check=c)
        why = str(r.not_applicable.item())
        text = (
            f"{c}: {r.variable.item()} simulated {float(r.simulated):.4g} {r.relation.item()} "
            f"analytic {float(r.analytic):.4g} {r.units.item()} (error {float(r.rel_error):+.2%}, "
            f"tolerance {100 * float(r.tolerance):.3g} %)"
        )
        checks.append((f"{c}: {why}", None) if why else (text, bool(r.ok)))
    return report_claims(checks, "notebook 10's checks", lim.attrs.get("lmt_overrides", ""))


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
    ds = ds.assign_coords(
        policy=("case", [c[0] for c in cases]),
        network=("case", [c[3] for c in cases]),
        timeout_s=("case", [float(compose(ov).policy.timeout_s) for ov in runs.values()], {"units": "s"}),
    )
    page, fluid = ds.sel(engine="page"), ds.sel(engine="fluid")
    for v in ("total_time", "transferred"):
        ds[f"{v}_rel_diff"] = ((fluid[v] - page[v]) / page[v]).assign_attrs(
            units="1", long_name=f"(fluid − page) / page, {v}"
        )
    ds.attrs.update(title="page vs fluid engine", lmt_overrides=" ".join(base))
    return ds


#: notebook 11's claims: the engines' total times agree within this (relative)
ENGINE_TOLERANCE = 0.15
#: a verdict (converged or not) is the timeout's, not the engines', when the engine that
#: converged ended this close to ``policy.timeout_s`` (relative): twice the engines' total-time
#: p99 difference (1.05 %, tests/integration/test_differential.py)
VERDICT_MARGIN = 0.02


def _verdict_claim(r: xr.Dataset) -> tuple[str, bool | None]:
    """Whether one case's engines agree on converging (None: the timeout decides, not they)."""
    page, fluid = (bool(r.converged.sel(engine=e)) for e in ("page", "fluid"))
    if page == fluid:
        return "", True
    won = "page" if page else "fluid"
    t, timeout = float(r.total_time.sel(engine=won)), float(r.timeout_s)
    text = f"{r.case.item()}: converged on the {won} engine only, at {t:.5g} s"
    if t >= timeout * (1.0 - VERDICT_MARGIN):
        return (
            f"{text}, {1 - t / timeout:.2%} before the {timeout:g} s timeout: the timeout decides, not the engines",
            None,
        )
    return f"{text}, the other ran until the {timeout:g} s timeout", False


def check_engines(cmp: xr.Dataset) -> str:
    """Notebook 11's claims on :func:`compare_engines`' Dataset, one line each (held, or not
    applicable and why): the engines' total times agree within :data:`ENGINE_TOLERANCE` and they
    give every case the same verdict, converged or not (a case whose converging engine ended
    within :data:`VERDICT_MARGIN` of the timeout does not count: n/a).
    :class:`~lmtoolkit.errors.ClaimError` names the claims that fail (they were bare ``assert``s)."""
    diff = abs(cmp.total_time_rel_diff)
    worst = str(cmp.case.values[int(np.nanargmax(diff.values))])
    checks = [
        (
            f"total time: largest |fluid − page| / page {float(diff.max()):.2%} ({worst}) "
            f"< {ENGINE_TOLERANCE:.0%}",
            float(diff.max()) < ENGINE_TOLERANCE,
        )
    ]
    verdicts = [_verdict_claim(cmp.sel(case=c)) for c in cmp.case.values]
    others = [(t, ok) for t, ok in verdicts if ok is not True]
    n = len(verdicts)
    text = f"converged or not: the same verdict on both engines in {n - len(others)} of {n} cases"
    checks.append((text, all(ok is None for _, ok in others)))
    checks += others
    return report_claims(checks, "notebook 11's claims", cmp.attrs.get("lmt_overrides", ""))
