"""Energy figures: what each policy costs in energy, time and downtime (issue 16).

Dataset in, matplotlib Figure out; plotting never simulates.  The energy variables come from
:mod:`lmtoolkit.model.energy` (``energy_total`` in J).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from . import style
from .figures import _figure, _log, value_label

#: marker per network option (others cycle through the rest)
MARKERS = {"1gbe": "o", "10gbe": "s", "25gbe": "^", "40gbe": "v", "100gbe_rdma": "D", "wan": "P"}
#: the objectives of the front, all minimised: (variable, display factor, axis label)
OBJECTIVES = (
    ("energy_total", 1e-3, "migration energy (kJ)"),
    ("total_time", 1.0, "total migration time (s)"),
    ("downtime", 1e3, "downtime (ms)"),
)


def pareto_mask(points) -> np.ndarray:
    """True for the rows of ``points`` (N x k, every column minimised) that no other row
    dominates (no worse in every column, better in one).  Rows with NaN are never on it."""
    p = np.asarray(points, dtype=float)
    ok = np.isfinite(p).all(axis=1)
    on = ok.copy()
    for i in np.flatnonzero(ok):
        others = p[ok]
        dominated = np.all(others <= p[i], axis=1) & np.any(others < p[i], axis=1)
        on[i] = not dominated.any()
    return on


def energy_frame(ds: xr.Dataset) -> pd.DataFrame:
    """One row per point (mean over replicates): the sweep dims, the objectives, ``completed``
    and ``front`` — on the Pareto front of energy, total time and downtime among the points
    that share every dim but ``policy`` (a workload on a link: which policies are worth it)."""
    names = [v for v, _, _ in OBJECTIVES] + ["completed"]
    sub = ds[[v for v in names if v in ds]]
    if "replicate" in sub.dims:
        sub = sub.astype(float).mean("replicate")
    df = sub.to_dataframe().reset_index()
    if "completed" in df:
        df["completed"] = df["completed"].astype(float) > 0.5
    else:
        df["completed"] = True
    groups = [d for d in ds[OBJECTIVES[0][0]].dims if d not in ("policy", "replicate")]
    cols = [v for v, _, _ in OBJECTIVES]
    df["front"] = False
    for _, g in df.groupby(groups) if groups else [(None, df)]:
        pts = np.array(g[cols].to_numpy(dtype=float), copy=True)
        pts[~g["completed"].to_numpy()] = np.nan  # an abandoned migration is no option
        df.loc[g.index, "front"] = pareto_mask(pts)
    return df


def fig_energy_pareto(ds: xr.Dataset):
    """Left: total time, right: downtime, against migration energy — one mark per policy,
    workload and link (colour: policy; shape: link); filled marks are on the Pareto front of
    (energy, total time, downtime) for their workload and link, hollow ones are dominated."""
    df = energy_frame(ds)
    fig, axes = _figure(2, width=4.2, height=3.4)
    policies = list(pd.unique(df["policy"])) if "policy" in df else [""]
    nets = list(pd.unique(df["network"])) if "network" in df else [""]
    spare = ["X", "*", "h", "<", ">"]
    marker = {n: MARKERS.get(str(n), spare[i % len(spare)]) for i, n in enumerate(nets)}
    x_name, x_scale, x_label = OBJECTIVES[0]
    for ax, (y_name, y_scale, y_label) in zip(axes[0], OBJECTIVES[1:]):
        for pol in policies:
            color = style.policy_color(pol) if pol else style.OTHER_COLORS[0]
            for net in nets:
                sel = df[(df["policy"] == pol) if pol else slice(None)]
                sel = sel[(sel["network"] == net)] if net else sel
                sel = sel[sel["completed"]]
                for front, face in ((True, color), (False, "none")):
                    s = sel[sel["front"] == front]
                    if s.empty:
                        continue
                    ax.scatter(
                        s[x_name] * x_scale,
                        s[y_name] * y_scale,
                        marker=marker[net],
                        s=34,
                        facecolors=face,
                        edgecolors=color,
                        linewidths=1.1,
                        alpha=1.0 if front else 0.7,
                    )
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        if np.nanmin(df[x_name]) > 0:
            _log(ax, "x")
        if np.nanmin(df[y_name]) > 0:
            _log(ax, "y")
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="", marker="o", color=style.policy_color(p), label=str(p)) for p in policies if p
    ]
    handles += [
        Line2D([], [], ls="", marker=marker[n], color="0.3", mfc="none", label=value_label("network", n))
        for n in nets
        if n
    ]
    handles.append(Line2D([], [], ls="", marker="o", color="0.3", label="filled: on the Pareto front"))
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    axes[0][0].set_title("energy vs total time")
    axes[0][1].set_title("energy vs downtime")
    return fig


def fig_liu_comparison(ds: xr.Dataset):
    """Left: our migration energy (stacked: source, destination, network) beside Liu et al.'s
    ``alpha V + beta`` for each case of :func:`lmtoolkit.energy_reference.compare`; right: the
    vCPU time the guest lost, which a data-volume model cannot see."""
    cases = [str(c) for c in ds.case.values]
    x = np.arange(len(cases))
    fig, axes = _figure(2, width=max(4.0, 0.55 * len(cases) + 1.5), height=3.4)
    ax, ax2 = axes[0]
    bottom = np.zeros(len(cases))
    for k, color, name in (
        ("energy_source", style.OTHER_COLORS[0], "ours: source"),
        ("energy_destination", style.OTHER_COLORS[2], "ours: destination"),
        ("energy_network", style.OTHER_COLORS[7], "ours: network"),
    ):
        v = np.asarray(ds[k].values, float)
        ax.bar(x - 0.2, v, 0.4, bottom=bottom, color=color, label=name)
        bottom = bottom + v
    ax.bar(
        x + 0.2,
        np.asarray(ds.energy_liu2011.values, float),
        0.4,
        color=style.OTHER_COLORS[1],
        label="Liu et al.: alpha V + beta",
    )
    ax.set_ylabel("migration energy (J)")
    ax2.bar(x, np.asarray(ds.guest_lost_cpu_s.values, float), 0.6, color=style.OTHER_COLORS[3])
    ax2.set_ylabel("guest lost vCPU time (s)")
    for a in (ax, ax2):
        a.set_xticks(x, [c.replace("_", " ") for c in cases], rotation=40, ha="right")
        a.set_xlabel("case")
    ax.legend(fontsize="small")
    ax.set_title("energy: ours vs Liu et al.")
    ax2.set_title("what throttling and faults cost the guest")
    return fig


__all__ = ["fig_energy_pareto", "fig_liu_comparison", "energy_frame", "pareto_mask"]
