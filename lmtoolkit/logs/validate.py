"""``lmtk validate whatif``: fit one real run of a family, predict the family's other settings.

A *family* is the testbed runs of one guest workload (the write rate asked of the guest, its
hot set and pattern) under different settings (cap, downtime limit, capabilities,
post-copy).  For each family with at least two settings, one of them plain (a family of
capability runs only — e.g. matrix=multifd's — has no run to fit on and is left out):

1. the *fit run* is fixed by its settings, not by its outcome: the plain run (no XBZRLE,
   auto-converge, multifd or post-copy) with the smallest switchover threshold (cap x downtime
   limit; then the lower cap; first repeat).  That setting leaves the most syncs in the log
   before the switchover, and the syncs whose dirty pages do not fill the working set are what
   say how fast the guest writes: a log whose every sync finds the whole hot set dirty (16 MiB
   written over at 5000/s within a 4 s first pass, then a switchover) bounds the rate from
   below only.  (Until session 15 the rule was the plain run nearest 64 MiB/s and 300 ms: its
   logs left three of eight families' rates a bound or a wide interval);
2. ``lmtk fit`` fits it from its log alone (the record's QMP series and the settings an
   operator knows: cap, downtime limit, capabilities, TCG — :func:`.readers.testbed_settings`);
3. ``lmtk whatif`` predicts every other run of the family from the FIT file with that run's
   settings as overrides (repeats of the fit run's own setting are listed, not scored).

Goals on the held-out settings: median |relative error| of total time and of bytes <= 5 %,
convergence verdicts 100 %, and each family's fitted dirty rate within 10 % of the rate its
guest reported across the fit run's migration (``dirty_rate_during``: the guest's own count of
its writes from ``migrate`` to the stats it gives on the destination, the interval the log
covers; a run that did not complete has none, and the rate of the 1.5 s before ``migrate``,
``dirty_rate_measured``, stands in).  The table shows both: under host load the two part
(r05000-h064-rand-bw032: 3613/s before, 4981/s across).  Idle guests report 0 and are left out
of that goal.

The registration below makes ``whatif`` a dataset of ``lmtk validate`` (the registry of
:mod:`lmtoolkit.testbed.validate`); it runs when :mod:`lmtoolkit.logs.cli` is imported.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GOALS = {"total_time": 0.05, "transferred": 0.05, "converged": 1.0, "dirty_rate": 0.10}


def _v(ds, k, default=math.nan):
    return float(ds[k].item()) if k in ds else default


def _b(ds, k):
    return bool(ds[k].item()) if k in ds else False


#: the runs ``lmtk validate whatif`` reads by default (under ``data/``): the reference set of
#: ``lmtk validate`` and the what-if fit runs recorded for it (``matrix=whatif``: plain runs at
#: a small switchover threshold, kept apart so that they do not move the reference set's
#: calibration, which is fitted on a fixed third of its runs)
DEFAULT_DATA = ("testbed", "testbed-whatif")

#: the guest most testbed runs use (MiB of RAM): other guests' families are labelled ``-gNNN``
REFERENCE_GUEST_MIB = 512


def family_key(run) -> tuple:
    """The guest and its workload: the write rate asked of it, hot set, pattern and RAM (a run
    of a smaller guest is another guest, not another setting)."""
    hot = _v(run, "hot_mib")
    mem = _v(run, "memory_mib")
    if not np.isfinite(mem):
        mem = float(json.loads(run.attrs.get("lmt_testbed_guest", "{}") or "{}").get("memory_mib", math.nan))
    return (
        int(round(_v(run, "dirty_rate_pages_s", 0))),
        None if not np.isfinite(hot) else int(hot),
        str(run.attrs.get("lmt_pattern", "random")),
        int(mem) if np.isfinite(mem) else REFERENCE_GUEST_MIB,
    )


def setting_key(run) -> tuple:
    return (
        _v(run, "max_bandwidth_mib_s"),
        _v(run, "downtime_limit_ms"),
        _b(run, "auto_converge"),
        _b(run, "xbzrle"),
        int(_v(run, "multifd_channels", 0)),
        _b(run, "postcopy"),
    )


def plain(run) -> bool:
    bw, dl, ac, xb, mfd, pc = setting_key(run)
    return not (ac or xb or mfd or pc)


def choose_fit_run(runs: list):
    """The family's fit run: the plain run with the smallest switchover threshold (cap x
    downtime limit), then the lower cap, first repeat (module doc: the most syncs before the
    switchover)."""
    cands = [r for r in runs if plain(r)]

    def key(r):
        bw, dl = setting_key(r)[:2]
        return (bw * dl, bw, _v(r, "repeat", 0), r.attrs.get("lmt_file", ""))

    return min(cands, key=key)


def guest_rates(guest: dict) -> tuple[float, float]:
    """The rate the guest reported across the migration (``dirty_rate_during``; NaN for a run
    that did not complete) and before it (``dirty_rate_measured``), pages/s."""
    return float(guest.get("dirty_rate_during", math.nan)), float(guest.get("dirty_rate_measured", math.nan))


def guest_rate(guest: dict) -> float:
    """The rate the fitted rate is scored against: across the migration, else before it."""
    during, before = guest_rates(guest)
    return during if np.isfinite(during) else before


def families(runs: list) -> dict:
    fam: dict = {}
    for r in runs:
        fam.setdefault(family_key(r), []).append(r)
    return {
        k: v for k, v in fam.items() if len({setting_key(r) for r in v}) >= 2 and any(plain(r) for r in v)
    }


def run_overrides(run, fit_policy: str, fitted_rate: float | None = None) -> list[str]:
    """The settings of a run as what-if overrides (the policy group only when it changes) and,
    given the fitted write rate, the run's writer: how much of a throttle stall it makes up
    (the testbed's ``pacing``: the peak rate of a clock-paced writer,
    :func:`.readers.testbed_writer`)."""
    from .readers import testbed_settings, testbed_writer, writer_peak_rate

    out = []
    for o in testbed_settings(run):
        k = o.split("=", 1)[0]
        if k == "policy":
            if o.split("=", 1)[1] != fit_policy:
                out.append(o)
        elif k.startswith("policy."):
            out.append(o)
    if fitted_rate is not None and np.isfinite(fitted_rate) and fitted_rate > 0:
        peak = max(float(writer_peak_rate(testbed_writer(run), fitted_rate)), float(fitted_rate))
        out.append(f"workload.max_rate_pages_s={float(f'{peak:.6g}')!r}")
    return out


def label(run) -> str:
    return run.attrs.get("lmt_label") or run.attrs.get("lmt_file", "?").removesuffix(".nc")


@dataclass
class Report:
    rows: list = field(default_factory=list)  # one per run
    fits: list = field(default_factory=list)  # one per family

    def metrics(self) -> dict:
        held = [r for r in self.rows if r["role"] == "held-out"]
        t = np.array([abs(r["pred_total_time"] / r["total_time"] - 1) for r in held])
        b = np.array([abs(r["pred_transferred"] / r["transferred"] - 1) for r in held])
        c = np.array([r["pred_converged"] == r["converged"] for r in held])
        dirt = [f for f in self.fits if f["guest_rate"] > 0]
        rate = np.array([abs(f["fitted_rate"] / f["guest_rate"] - 1) for f in dirt])
        pinned = np.array([f.get("rate_determined", False) for f in dirt], dtype=bool)
        inside = np.array([_inside(f) for f in dirt], dtype=bool)
        bound = np.array([_bound_only(f) for f in dirt], dtype=bool)
        wide = ~pinned & ~bound  # a closed interval wider than +-10 %
        within = rate <= GOALS["dirty_rate"]
        return {
            "held_out": len(held),
            "families": len(self.fits),
            "total_time": float(np.median(t)) if t.size else math.nan,
            "transferred": float(np.median(b)) if b.size else math.nan,
            "converged": float(c.mean()) if c.size else math.nan,
            "dirty_rate_within": float((rate <= GOALS["dirty_rate"]).mean()) if rate.size else math.nan,
            "dirty_rate_median": float(np.median(rate)) if rate.size else math.nan,
            "dirty_rate_max": float(rate.max()) if rate.size else math.nan,
            "dirtying": int(rate.size),
            "rate_within": int(within.sum()),
            "rate_pinned": int(pinned.sum()),
            "rate_pinned_within": int((within & pinned).sum()),
            "rate_wide": int(wide.sum()),
            "rate_wide_within": int((within & wide).sum()),
            "rate_wide_inside": int((inside & wide).sum()),
            "rate_bound": int(bound.sum()),
            "rate_bound_inside": int((inside & bound).sum()),
            "rate_in_interval": int(inside.sum()),
            "fit_time_median_s": float(np.median([f["fit_s"] for f in self.fits])) if self.fits else math.nan,
            "fit_time_max_s": float(np.max([f["fit_s"] for f in self.fits])) if self.fits else math.nan,
        }


def _inside(f: dict) -> bool:
    """The guest's rate lies inside the fit's profile interval (an open side has no limit)."""
    iv = f.get("rate_interval")
    if not iv:
        return False
    lo, hi, open_lo, open_hi = iv
    g = f["guest_rate"]
    return (open_lo or g >= lo) and (open_hi or g <= hi)


def _bound_only(f: dict) -> bool:
    """The log bounds the rate on one side only (or not at all): its profile is open."""
    iv = f.get("rate_interval")
    return not iv or bool(iv[2] or iv[3])


def goals_met(m: dict) -> bool:
    return (
        m["total_time"] <= GOALS["total_time"]
        and m["transferred"] <= GOALS["transferred"]
        and m["converged"] >= GOALS["converged"]
        and m["dirty_rate_within"] >= 1.0
    )


def compare(path=None, engine: str = "page", bootstrap: int = 100, progress=None) -> Report:
    """Fit every family's fit run, predict the others (see the module doc)."""
    from ..paths import project_root
    from ..testbed.record import load_runs
    from .fit import fit_log
    from .fitfile import write_fit
    from .readers import read_testbed
    from .whatif import whatif

    where = [Path(path)] if path else [project_root() / "data" / d for d in DEFAULT_DATA]
    runs = []
    for p in where:
        for r in load_runs(p) if p.exists() else []:
            r.attrs["lmt_path"] = str(p / r.attrs["lmt_file"] if p.is_dir() else p)
            runs.append(r)
    p = where[0]
    if not runs:
        raise FileNotFoundError(p)
    fams = families(runs)
    if not fams:
        from ..errors import ConfigError

        raise ConfigError(
            "--data",
            str(p),
            "",
            message=(
                f"whatif data: no family to validate under {p} ({len(runs)} run(s)): a family is the runs "
                f"of one guest workload under at least two settings, one of them plain to fit on"
            ),
        )
    rep = Report()
    with tempfile.TemporaryDirectory(prefix="lmtk-validate-whatif-") as tmp:
        for key, fam in sorted(fams.items(), key=lambda kv: str(kv[0])):
            fr = choose_fit_run(fam)
            src = Path(fr.attrs["lmt_path"])
            t0 = time.perf_counter()
            res = fit_log(read_testbed(src), bootstrap=bootstrap, engine=engine)
            fit_s = time.perf_counter() - t0
            fpath = Path(tmp) / "fit" / f"{label(fr)}.yaml"
            write_fit(res, fpath)
            guest = json.loads(res.log.attrs.get("lmt_guest", "{}"))
            hot = guest.get("hot_mib") or guest.get("buffer_mib")
            rep.fits.append(
                {
                    "family": _fam_label(key),
                    "fit_run": label(fr),
                    "fit_s": fit_s,
                    "fitted_rate": res.values.get("workload.dirty_rate_pages_s", math.nan),
                    "guest_rate": guest_rate(guest),
                    "guest_rate_before": guest_rates(guest)[1],
                    "fitted_wss_mib": res.values.get("workload.wss_mib", math.nan),
                    "hot_mib": float(hot) if hot else math.nan,
                    "pattern": res.pattern,
                    "guest_pattern": guest.get("pattern", ""),
                    "quality": res.quality,
                    "undecided": _undecided(res),
                    "rate_interval": res.rate_interval,
                    "rate_determined": res.rate_determined(),
                }
            )
            if progress:
                progress(f"fitted {label(fr)} in {fit_s:.1f} s")
            policy = str(res.cfg.policy.name)
            for r in sorted(fam, key=label):
                role = "fit" if r is fr else ("repeat" if setting_key(r) == setting_key(fr) else "held-out")
                ov = run_overrides(r, policy, res.values.get("workload.dirty_rate_pages_s"))
                pred = whatif(fpath, ov, samples=0)
                rep.rows.append(
                    {
                        "family": _fam_label(key),
                        "run": label(r),
                        "role": role,
                        "total_time": _v(r, "total_time"),
                        "pred_total_time": float(pred.total_time),
                        "transferred": _v(r, "transferred"),
                        "pred_transferred": float(pred.transferred),
                        "converged": _b(r, "converged"),
                        "pred_converged": bool(pred.converged),
                        "downtime": _v(r, "downtime"),
                        "pred_downtime": float(pred.downtime),
                    }
                )
    return rep


def _undecided(res) -> str:
    """``pattern: rate`` of a pattern the log does not rule out (empty when decided)."""
    from .fit import undecided

    return ", ".join(
        f"{pat[:3]} {res.alternative_values[pat].get('workload.dirty_rate_pages_s', math.nan):.0f}"
        for pat in undecided(res.alternatives, res.pattern)
    )


def _fam_label(key) -> str:
    rate, hot, pat, mem = key
    guest = "" if mem == REFERENCE_GUEST_MIB else f"-g{mem:03d}"
    return (
        f"r{rate:05d}-h{'all' if hot is None else f'{hot:03d}'}-{'seq' if pat == 'sequential' else 'rand'}"
        f"{guest}"
    )


def table(rep: Report) -> str:
    lines = [f"{'run':42s} {'role':8s} {'total s':>15s} {'err':>6s} {'MiB':>13s} {'err':>6s} {'conv':>5s}"]
    for r in rep.rows:
        et = r["pred_total_time"] / r["total_time"] - 1
        eb = r["pred_transferred"] / r["transferred"] - 1
        lines.append(
            f"{r['run'][:42]:42s} {r['role']:8s} {r['total_time']:7.2f}/{r['pred_total_time']:<7.2f} "
            f"{et * 100:+5.1f}% {r['transferred'] / 2**20:6.0f}/{r['pred_transferred'] / 2**20:<6.0f} "
            f"{eb * 100:+5.1f}% {'y' if r['converged'] else 'n'}/{'y' if r['pred_converged'] else 'n'}"
        )
    lines.append("(measured/predicted from the family's fit run)")
    lines.append("")
    lines.append(
        f"{'family':18s} {'fit run':36s} {'fitted rate':>11s} {'guest':>7s} {'err':>6s} {'before':>7s} "
        f"{'wss MiB':>8s} {'hot':>5s} {'pattern':>10s} {'fit s':>6s}  {'rate profile (Δχ² <= 1)':24s} "
        "pattern not ruled out"
    )
    for f in rep.fits:
        err = f["fitted_rate"] / f["guest_rate"] - 1 if f["guest_rate"] > 0 else math.nan
        lines.append(
            f"{f['family']:18s} {f['fit_run'][:36]:36s} {f['fitted_rate']:11.0f} {f['guest_rate']:7.0f} "
            f"{err * 100:+5.1f}% {f.get('guest_rate_before', math.nan):7.0f} {f['fitted_wss_mib']:8.1f} "
            f"{f['hot_mib']:5.0f} "
            f"{f['pattern'][:4]}/{f['guest_pattern'][:4]:>5s} {f['fit_s']:6.1f}  {_interval(f):24s} "
            f"{f.get('undecided', '')}"
        )
    lines.append(
        "(guest: the rate the guest counted across the fit run's migration, or before it where the run "
        "did not complete; before: in the 1.5 s before migrate; fitted pattern / the guest's; idle guests "
        "report no rate; the rate profile: the write rates the fit run's log allows, the working set "
        "re-fitted, '>=' where it only bounds it from below)"
    )
    return "\n".join(lines)


def _interval(f: dict) -> str:
    iv = f.get("rate_interval")
    if not iv:
        return "-"
    lo, hi, open_lo, open_hi = iv
    if open_hi and not open_lo:
        return f">= {lo:.0f}"
    if open_lo and not open_hi:
        return f"<= {hi:.0f}"
    if open_lo and open_hi:
        return "open"
    return f"{lo:.0f}-{hi:.0f}{' pinned' if f.get('rate_determined') else ''}"


def summary_line(m: dict) -> str:
    """One line: the held-out errors and the rate goal, with what the fit runs' logs can say of
    the rate (pinned to +-10 %, a wider closed interval, a bound only) accounted apart."""
    return (
        f"held-out settings {m['held_out']} ({m['families']} families): median |err| total time "
        f"{m['total_time'] * 100:.1f}% (goal <= 5%), bytes {m['transferred'] * 100:.1f}% (<= 5%); converged "
        f"agree {m['converged'] * 100:.0f}% (100%); fitted dirty rate within 10% of the guest's in "
        f"{m['rate_within']} of {m['dirtying']} dirtying families (goal: all; median err "
        f"{m['dirty_rate_median'] * 100:.1f}%, max {m['dirty_rate_max'] * 100:.1f}%) — the fit run's log "
        f"pins the rate (profile within +-10%) in {m['rate_pinned']}, {m['rate_pinned_within']} of them "
        f"within 10%; a wider interval in {m['rate_wide']}, {m['rate_wide_within']} within 10%, the guest's "
        f"rate inside it in {m['rate_wide_inside']}; a lower bound only in {m['rate_bound']}, the guest's "
        f"rate above it in {m['rate_bound_inside']}; fit time median {m['fit_time_median_s']:.1f} s "
        f"-> {'goals met' if goals_met(m) else 'goals NOT met'}"
    )


def report(path=None, out=None, engine: str = "page") -> int:
    """``lmtk validate whatif [--data DIR]``: the table, the fits and the summary line."""
    out = out or sys.stdout
    try:
        rep = compare(path, engine=engine)
    except FileNotFoundError as e:
        from ..errors import ConfigError

        raise ConfigError(
            "--data",
            str(e),
            "",
            message=(f"whatif data: no testbed runs (*.nc) under {e}; give the directory with --data DIR"),
        ) from None
    print(table(rep), file=out)
    print(summary_line(rep.metrics()), file=out)
    return 0


def register() -> None:
    """Make ``whatif`` a dataset of ``lmtk validate``."""
    from ..testbed.validate import DATASETS, ValidationSet
    from ..testbed.validate import register as reg

    if "whatif" not in DATASETS:
        reg(
            ValidationSet(
                "whatif",
                "data/testbed + data/testbed-whatif",
                None,
                description="fit one run of a family of testbed runs, predict the others (issue 13)",
                report=lambda path, out=None: report(path, out=out),
            )
        )
