"""The what-if figure: observed vs fitted round trajectory, and the what-if table with bands.

:func:`fig_whatif` takes the Dataset :func:`lmtoolkit.logs.whatif.whatif` returns (Dataset
in, matplotlib Figure out; no simulation here) and uses the project's style
(:mod:`lmtoolkit.plotting.style`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

MIB = 1024**2
#: the fitted trajectory's legend entry: what the model gives (its round detail), and what not
FITTED_LABEL = "fitted: each round's start and end\n(dotted between them)"
#: stop reasons as the figure words them
WHY = {
    "precopy_done": "post-copy",
    "timeout": "timed out",
    "max_rounds": "pass cap",
    "max_sent": "byte cap",
    "no_precopy": "no pre-copy",
    "no_progress": "no progress",
}


def point_labels(ds: xr.Dataset) -> list[str]:
    """One label per what-if point (row-major over the axes' dims)."""
    dims = [d for d in ds.total_time.dims]
    if not dims:
        import json

        try:
            ov = json.loads(ds.attrs.get("lmt_overrides", "[]"))
        except ValueError:
            ov = []
        return [", ".join(ov) if ov else "as observed (fitted)"]
    grids = np.meshgrid(*[ds[d].values for d in dims], indexing="ij")
    labels = []
    for vals in zip(*[g.ravel() for g in grids]):
        labels.append(", ".join(f"{d}={_fmt(v)}" for d, v in zip(dims, vals)))
    return labels


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):  # NaN: a null axis value (no cap), as Axis.coord stores it
        return "null" if np.isnan(v) else f"{float(v):g}"
    return str(v.item() if hasattr(v, "item") else v)


def whatif_table(ds: xr.Dataset):
    """The what-if points as a DataFrame: total time, downtime, bytes with their seeds'
    standard deviation and their bands, converged (the run nearest the mean), the share of
    seeds and of bootstrap parameter sets that converged."""
    import pandas as pd

    rows = {"point": point_labels(ds)}
    for v, scale in (("total_time", 1.0), ("downtime", 1e3), ("transferred", 1 / MIB)):
        unit = {"total_time": "s", "downtime": "ms", "transferred": "MiB"}[v]
        for suffix in ("", "_seed_sd", "_lo", "_hi"):
            if f"{v}{suffix}" in ds:  # (seed sd: a Dataset written before --seeds has none)
                rows[f"{v}{suffix} [{unit}]"] = np.asarray(ds[f"{v}{suffix}"].values, float).ravel() * scale
    for v, label in (("energy_total", "energy [J]"), ("guest_lost_cpu_s", "guest lost [vCPU-s]")):
        if v in ds:  # the energy model (lmtoolkit.model.energy), where the run has it
            rows[label] = np.asarray(ds[v].values, float).ravel()
    rows["converged"] = np.asarray(ds.converged.values).ravel()
    if int(ds.attrs.get("lmt_seeds", 1)) > 1:  # the run shown is one seed's: how many converged
        rows["converged seeds"] = np.asarray(ds.converged_seeds.values, float).ravel()
    rows["converged share"] = np.asarray(ds.converged_share.values, float).ravel()
    return pd.DataFrame(rows).set_index("point")


def fig_whatif(ds: xr.Dataset, title: str | None = None):
    """Left: dirty bytes left over time, observed polls vs the fitted run (its value at each
    round's start and end, dotted between), with the observed sync brackets and the fitted syncs.  Right: total time of every what-if point (the mean of
    its seeds) with its band (the fit's bootstrap 5-95 % and the seeds' range), hatched where
    the migration does not converge, the observed run's total time dashed."""
    import matplotlib.pyplot as plt

    from ..plotting import style

    style.apply()
    n = int(np.prod([ds.sizes[d] for d in ds.total_time.dims])) if ds.total_time.dims else 1
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(10.5, max(3.4, 0.32 * n + 1.6)), gridspec_kw={"width_ratios": [1.15, 1.0]}
    )
    # (a) trajectory
    if "observed_sample_time" in ds and ds.sizes.get("sample", 0):
        ax1.plot(
            ds.observed_sample_time,
            ds.observed_remaining / MIB,
            ".",
            ms=3.5,
            color="#333333",
            label="observed (query-migrate polls)",
        )
    if "fitted_curve_time" in ds and ds.sizes.get("curve", 0):
        # the engines give the dirty bytes left at each round's start and end only (round
        # detail); between them the line is drawn straight, which the model does not state
        ax1.plot(
            ds.fitted_curve_time,
            ds.fitted_remaining / MIB,
            ":",
            marker="o",
            ms=3,
            mfc="none",
            lw=1.2,
            color=style.OTHER_COLORS[0],
            label=FITTED_LABEL,
        )
    if "observed_sync_lo" in ds:
        for i, (lo, hi) in enumerate(zip(ds.observed_sync_lo.values, ds.observed_sync_hi.values)):
            if np.isfinite(lo) and np.isfinite(hi):
                ax1.axvspan(
                    lo,
                    max(hi, lo + 0.01),
                    color="#999999",
                    alpha=0.18,
                    lw=0,
                    label="observed sync (between polls)" if i == 0 else None,
                )
        ft = ds.fitted_sync_time.values
        ft = ft[np.isfinite(ft)]
        if ft.size:
            y0 = ax1.get_ylim()[1] if ax1.lines else 1.0
            ax1.plot(
                ft, np.full(ft.size, y0 * 0.97), "v", color=style.OTHER_COLORS[0], ms=5, label="fitted sync"
            )
    stalled = "observed_stall_time" in ds and float(ds.observed_stall_time) > 0
    ax1.set_xlabel("time since migrate [s]" + (" (the log's host stalls cut out)" if stalled else ""))
    ax1.set_ylabel("dirty memory left [MiB]")
    fit = _fit_attrs(ds)
    sub = fit.get("log", {}).get("label", "")
    ax1.set_title(f"observed vs fitted: {sub}" if sub else "observed vs fitted")
    ax1.legend(fontsize="x-small", loc="lower left", frameon=True, framealpha=0.9)  # under the first pass
    # (b) what-if table
    labels = point_labels(ds)
    t = np.asarray(ds.total_time.values, float).ravel()
    lo = np.asarray(ds.total_time_lo.values, float).ravel()
    hi = np.asarray(ds.total_time_hi.values, float).ravel()
    conv = np.asarray(ds.converged.values, bool).ravel()
    y = np.arange(n)[::-1]
    colors = [_point_color(ds, i) for i in range(n)]
    bars = ax2.barh(y, t, color=colors, alpha=0.85, height=0.7)
    for b, c in zip(bars, conv):
        if not c:
            b.set_hatch("///")
            b.set_alpha(0.5)
    err = np.vstack([np.clip(t - lo, 0, None), np.clip(hi - t, 0, None)])
    ax2.errorbar(t, y, xerr=np.nan_to_num(err), fmt="none", ecolor="#222222", capsize=3, lw=1)
    obs_t = float(ds.observed_total_time) if "observed_total_time" in ds else np.nan
    if np.isfinite(obs_t):
        ax2.axvline(obs_t, ls="--", color="#222222", lw=1, label=f"observed run: {obs_t:.2f} s")
        stall = float(ds.observed_stall_time) if "observed_stall_time" in ds else 0.0
        if stall > 0:  # the fit (and every what-if) is without the log's host stalls
            free = float(ds.observed_total_time_stall_free)
            ax2.axvline(free, ls=":", color="#222222", lw=1, label=f"without its host stalls: {free:.2f} s")
        ax2.legend(fontsize="small", loc="lower right")
    ax2.set_yticks(y)
    ax2.set_yticklabels(labels, fontsize="small")
    k = int(ds.attrs.get("lmt_seeds", 1))
    if k > 1:
        ax2.set_xlabel(
            f"total migration time [s], mean of {k} seeds\n(bars: the fit's bootstrap 5-95 % and the seeds)"
        )
    else:
        ax2.set_xlabel("total migration time [s] (bars: 5-95 % of the fit's bootstrap)")
    reasons = np.asarray(ds.stop_reason.values).astype(str).ravel() if "stop_reason" in ds else [""] * n
    ends = np.fmax(t, hi)  # the label starts after the bar and its whisker
    for yi, ti, d, c, why in zip(y, ends, np.asarray(ds.downtime.values, float).ravel(), conv, reasons):
        note = f" {d * 1000:.0f} ms down" if np.isfinite(d) else " did not complete"
        if np.isfinite(d) and why == "timeout":  # a switchover abandoned at the timeout
            note = f" {d * 1000:.0f} ms paused, then abandoned"
        if not c and why and why != "converged":
            note += f" ({WHY.get(why, why.replace('_', ' '))})"
        ax2.annotate(
            note, (ti, yi), xytext=(4, 0), textcoords="offset points", va="center", fontsize="x-small"
        )
    ax2.set_title("what if (hatched: not converged)")
    if title:
        fig.suptitle(title)
    return fig


def _point_color(ds, i):
    from ..plotting import style

    if "policy" in ds.total_time.dims:
        dims = list(ds.total_time.dims)
        idx = np.unravel_index(i, tuple(ds.sizes[d] for d in dims))
        return style.policy_color(str(ds["policy"].values[idx[dims.index("policy")]]))
    return style.policy_color(ds.attrs.get("lmt_policy", "qemu"))


def _fit_attrs(ds) -> dict:
    import json

    try:
        return json.loads(ds.attrs.get("lmt_fit", "{}"))
    except ValueError:
        return {}
