"""Our migration-energy model beside Liu et al.'s linear reference model (issue 16).

Liu et al. (HPDC 2011) fit ``E_mig = alpha V_mig + beta`` on Xen pre-copy over Gigabit
Ethernet: energy follows the data moved.  Ours (:mod:`lmtoolkit.model.energy`) charges the
CPU work each policy does per page and per byte, the bits in NICs and switch, and reports the
guest work that throttling and post-copy stalls hold back.  On their setup the two agree (the
``power=liu2011`` preset is calibrated to their coefficients); :data:`CASES` are where they
part, each with why.

    from lmtoolkit import energy_reference
    ds = energy_reference.compare(["vm.memory_gib=1"])       # dim `case`
    alpha, beta = energy_reference.fit_their_setup()
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from .compose import compose
from .engine import run_batch
from .errors import ClaimError, report_claims
from .model.energy import (
    LIU2011_ALPHA_J_PER_MB,
    LIU2011_BETA_J,
    VARIABLES,
    fit_linear,
    liu2011_energy,
    scenario_constants,
    stack_constants,
)
from .runner import build_power, build_scenario
from .tasks.migration import with_energy

#: what every case shares: Liu et al.'s link and the preset calibrated to their setup
BASE = ("network=1gbe", "power=liu2011", "engine=fluid")
#: a guest that writes hard: 60k page writes/s over a hot set (the hotcold preset)
HOT = ("workload=hotcold", "workload.dirty_rate_pages_s=60000")
#: case -> (overrides, why the two models agree or differ there)
CASES = {
    "xen_idle": (
        ("policy=xen", "workload=idle"),
        "their setup, an idle guest: one copy of memory; both models charge the same bytes",
    ),
    "xen_database": (
        ("policy=xen", "workload=database"),
        "their setup, a writing guest: re-sent pages add bytes, and both models add energy for them",
    ),
    "hyperv_tcp": (
        ("policy=hyperv", "policy.transport=tcp", "workload=web_server"),
        "pages as they are (no compression): energy follows bytes, the models agree (ours adds "
        "a zero-page scan of every page, which Xen, the setup of Liu's line, does not do: a few "
        "% more a byte where the stack is cheap)",
    ),
    "hyperv_compression": (
        ("policy=hyperv", "policy.transport=compression", "workload=web_server"),
        "compression halves the bytes, so a data-volume model halves the energy; ours adds the "
        "compressor's CPU on the source and decompression on the destination: where bytes are "
        "dear (Liu's servers) compression still saves most of it, where they are cheap (a "
        "current server) it costs more than it saves",
    ),
    "vmware_encrypted": (
        ("policy=vmware", "policy.encryption=true", "workload=web_server"),
        "encryption moves the same bytes, so a data-volume model sees no cost; AES-GCM on both "
        "hosts adds CPU work: small beside Xen-era bytes, about 60 % more on a current server",
    ),
    "qemu_hot": (
        ("policy=qemu",) + HOT,
        "a hot guest without throttling: many re-sent pages, energy follows bytes in both models "
        "(plus QEMU's zero-page scan, as for Hyper-V over TCP)",
    ),
    "qemu_auto_converge": (
        ("policy=qemu", "policy.auto_converge=true") + HOT,
        "throttling cuts the re-sent bytes, so both models see less energy; only ours also "
        "reports the vCPU time the guest lost (guest_lost_cpu_s), which Liu's model cannot see",
    ),
    "postcopy": (
        ("policy=postcopy",) + HOT,
        "post-copy sends each page once: least data, so least energy for a data-volume model; "
        "ours adds the destination's fault handling (userfaultfd) and reports the vCPU time the "
        "faults stall",
    ),
}


def compare(overrides=(), cases: dict | None = None, power: str = "liu2011") -> xr.Dataset:
    """Our energy and Liu et al.'s for each case (dim ``case``): ``transferred``,
    ``total_time``, ``downtime``, our :data:`~lmtoolkit.model.energy.VARIABLES`,
    ``energy_liu2011`` and ``ratio`` (ours / Liu), with ``why`` per case.

    ``power``: the preset of the hosts.  With ``liu2011`` (their servers) Liu's model uses
    their published coefficients; with another preset it uses coefficients fitted the way they
    fitted theirs, on their setup with that preset (:func:`fit_their_setup`) — their method
    on other hardware."""
    cases = CASES if cases is None else cases
    overrides = [*overrides, f"power={power}"]
    if power == "liu2011":
        alpha, beta = LIU2011_ALPHA_J_PER_MB, LIU2011_BETA_J
    else:
        alpha, beta = fit_their_setup(overrides)
    rows = []
    for case_ov, _ in cases.values():
        cfg = compose(list(BASE) + list(overrides) + list(case_ov))
        scn = build_scenario(cfg)
        batch = with_energy(run_batch([scn]), scenario_constants(scn, build_power(cfg)))
        rows.append({k: float(v[0]) for k, v in batch.extra.items()} | _record(batch.scalars))
    names = list(cases)
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    data = {
        "transferred": (("case",), col("transferred_bytes"), {"units": "bytes", "long_name": "data moved"}),
        "total_time": (("case",), col("total_time_s"), {"units": "s", "long_name": "total migration time"}),
        "downtime": (("case",), col("downtime_s"), {"units": "s", "long_name": "downtime"}),
        "throttle_max": (
            ("case",),
            col("throttle_max"),
            {"units": "1", "long_name": "largest share of vCPU time throttled away"},
        ),
    }
    for k, (units, long) in VARIABLES.items():
        data[k] = (("case",), col(k), {"units": units, "long_name": long})
    liu = liu2011_energy(col("transferred_bytes"), alpha, beta)
    data["energy_liu2011"] = (
        ("case",),
        liu,
        {"units": "J", "long_name": "Liu et al. (HPDC 2011): alpha V + beta"},
    )
    data["ratio"] = (
        ("case",),
        col("energy_total") / liu,
        {"units": "1", "long_name": "our energy / Liu et al.'s"},
    )
    ds = xr.Dataset(data, coords={"case": ("case", np.array(names), {"long_name": "scenario"})})
    ds = ds.assign_coords(why=("case", np.array([cases[n][1] for n in names]), {"long_name": "why"}))
    ds.attrs.update(
        title="migration energy: ours vs Liu et al. (HPDC 2011)",
        lmt_overrides=" ".join(list(BASE) + list(overrides)),
        lmt_power=power,
        liu2011_alpha_j_per_mb=alpha,
        liu2011_beta_j=beta,
    )
    return ds


def _record(scalars) -> dict:
    keys = ("transferred_bytes", "total_time_s", "downtime_s", "throttle_max")
    return {k: float(np.asarray(scalars[k], float)[0]) for k in keys}


#: notebook 13's claims: the cases where ours and Liu's agree (their setup), and where ours adds
#: a zero-page scan to Xen's bytes (ratio a little above 1)
AGREE, SCANNING = ("xen_idle", "xen_database"), ("hyperv_tcp", "qemu_hot")


def check_claims(alpha: float, theirs: xr.Dataset, current: xr.Dataset) -> str:
    """Check notebook 13's claims on :func:`fit_their_setup`'s ``alpha`` and :func:`compare`'s
    Datasets on their servers (``theirs``) and on a current one (``current``); return one line
    per claim (held, or not applicable and why).  A claim that does not hold raises
    :class:`ClaimError` naming it and the values (it was a bare ``assert``).

    The claims: the fit gives Liu et al.'s alpha back (within 5 %); ours / Liu's is 1 ± 5 % on
    their setup (:data:`AGREE`) and 0.95–1.10 with a zero-page scan (:data:`SCANNING`) on both
    servers; compression costs more than it saves on a current server (ratio > 2) but not on
    theirs (1–2); auto-converge costs the guest more than 1 vCPU-s — when it throttled at all
    (``throttle_max > 0``: a migration that times out before QEMU's throttle engages, a 64 GiB
    guest on 1 GbE, has no throttling cost to show)."""
    ref = LIU2011_ALPHA_J_PER_MB
    checks = [
        (f"fitted alpha {alpha:.3f} J/MB within 5 % of Liu et al.'s {ref}", abs(alpha / ref - 1) < 0.05)
    ]
    for label, ds in (("their servers", theirs), ("a current server", current)):
        r = {str(c): float(v) for c, v in zip(ds.case.values, ds.ratio.values)}
        checks += [
            (f"{c} on {label}: ours / Liu's {r[c]:.3f} within 1 ± 0.05", abs(r[c] - 1) < 0.05) for c in AGREE
        ]
        checks += [
            (f"{c} on {label}: ours / Liu's {r[c]:.3f} in 0.95-1.10", 0.95 < r[c] < 1.10) for c in SCANNING
        ]
    hc_now, hc_then = (float(d.ratio.sel(case="hyperv_compression")) for d in (current, theirs))
    checks.append(
        (
            f"hyperv_compression: ours / Liu's {hc_now:.2f} > 2 on a current server, {hc_then:.2f} in 1-2 on theirs",
            hc_now > 2 > hc_then > 1,
        )
    )
    ac = current.sel(case="qemu_auto_converge")
    lost = float(ac.guest_lost_cpu_s)
    if float(ac.throttle_max) > 0:
        checks.append((f"qemu_auto_converge: the guest lost {lost:.2f} vCPU-s (> 1) to throttling", lost > 1))
    else:
        checks.append(
            (
                f"qemu_auto_converge: the guest was never throttled (the migration "
                f"ended after {float(ac.total_time):.0f} s, before auto-converge engaged): no cost to show",
                None,
            )
        )
    return report_claims(checks, "notebook 13's claims", theirs.attrs.get("lmt_overrides", ""))


#: Liu et al.'s workloads are five; ours are the five workload presets
THEIR_WORKLOADS = ("idle", "web_server", "database", "hpc", "memory_intensive")
#: VM sizes of the fit (GiB)
THEIR_SIZES_GIB = (0.5, 1.0, 2.0)


def their_setup(overrides=()) -> tuple[np.ndarray, np.ndarray]:
    """(bytes moved, our energy in J) of Xen pre-copy over Gigabit Ethernet with
    ``power=liu2011``: every workload preset at every size of :data:`THEIR_SIZES_GIB`."""
    volumes, energies = [], []
    for wl in THEIR_WORKLOADS:
        cfg = compose(["policy=xen", f"workload={wl}", *BASE, *overrides])
        base, power = build_scenario(cfg), build_power(cfg)
        scns = [
            dataclasses.replace(base, vm=dataclasses.replace(base.vm, memory_gib=g)) for g in THEIR_SIZES_GIB
        ]
        batch = with_energy(run_batch(scns), stack_constants([scenario_constants(s, power) for s in scns]))
        volumes += list(np.asarray(batch.scalars["transferred_bytes"], float))
        energies += list(batch.extra["energy_total"])
    return np.array(volumes), np.array(energies)


def fit_their_setup(overrides=()) -> tuple[float, float]:
    """``(alpha J/MB, beta J)`` fitted, as Liu et al. did, to our model on their setup."""
    return fit_linear(*their_setup(overrides))


__all__ = ["CASES", "ClaimError", "check_claims", "compare", "their_setup", "fit_their_setup"]
