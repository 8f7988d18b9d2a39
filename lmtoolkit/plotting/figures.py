"""One function per figure: a Dataset in, a matplotlib Figure out — never a simulation.

Paper figures (``fig_*``) take the Dataset of one experiment (``lmt.sweep(["experiment=…"])``):
dims are the sweep axes by short name plus ``replicate`` (and ``round``).  Replicates are
averaged with a ±1 standard deviation band.  Teaching/validation figures take the small
Datasets that :mod:`lmtoolkit.teaching` and :mod:`lmtoolkit.analytic` return.

Every axis label names its quantity and unit, e.g. ``downtime (ms)``; :data:`VARIABLES` and
:data:`DIMS` hold the display names, units and scale factors (Dataset units: s, bytes).
The registry of paper figures is :mod:`lmtoolkit.plotting.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..units import MIB, display_unit
from . import style

#: variable -> (display name, display unit, factor from the Dataset's unit, Dataset unit)
VARIABLES = {
    "total_time": ("total migration time", "s", 1.0, "s"),
    "downtime": ("downtime", "ms", 1e3, "s"),
    "transferred": ("data sent", "GiB", 2.0**-30, "bytes"),
    "precopy_transferred": ("data sent before the switch", "GiB", 2.0**-30, "bytes"),
    "rounds": ("pre-copy rounds", "count", 1.0, "1"),
    "guest_slowdown": ("guest slowdown", "%", 100.0, "1"),
    "throttle_max": ("peak CPU throttle", "%", 100.0, "1"),
    "postcopy_faults": ("post-copy faults", "count", 1.0, "1"),
    "postcopy_time": ("post-copy phase", "s", 1.0, "s"),
    "round_bytes": ("data sent in the round", "MiB", 2.0**-20, "bytes"),
    "round_dirty_pages": ("dirty pages at the sync", "pages", 1.0, "1"),
    "round_duration": ("round duration", "s", 1.0, "s"),
    "completed": ("completed", "share", 1.0, "1"),
    "converged": ("converged", "share", 1.0, "1"),
}
#: sweep dim -> (display name, unit or "" for categories)
DIMS = {
    "dirty_rate": ("dirty rate", "pages/s"),
    "bandwidth": ("link bandwidth", "Gbit/s"),
    "memory": ("VM memory", "GiB"),
    "downtime_limit": ("downtime limit", "ms"),
    "switchover_goal": ("switchover goal", "ms"),
    "wss": ("working set", "MiB"),
    "background": ("background traffic", "Gbit/s"),
    "round": ("round", "index"),
    "policy": ("policy", ""),
    "network": ("network", ""),
    "workload": ("workload", ""),
    "auto_converge": ("auto-converge", ""),
    "engine": ("engine", ""),
    "links": ("host links", ""),
    "order": ("migration order", ""),
}
#: sweep dim -> {value as stored (a config group's name) -> what a reader sees}.  Config groups
#: keep their names (``evacuation=gigabit``); legends and ticks say what they are.
VALUE_LABELS = {
    "network": {
        "1gbe": "1 GbE",
        "10gbe": "10 GbE",
        "25gbe": "25 GbE",
        "40gbe": "40 GbE",
        "100gbe_rdma": "100 GbE RDMA",
        "wan": "WAN",
    },
    "links": {"gigabit": "1 GbE", "default": "10 GbE"},
    "order": {
        "largest_first": "largest first",
        "smallest_first": "smallest first",
        "hottest_first": "hottest first",
        "coldest_first": "coldest first",
        "given": "as given",
    },
}


# -- helpers -----------------------------------------------------------------------------------
def label(ds: xr.Dataset | None, name: str) -> str:
    """``"display name (unit)"`` for a variable or dim of ``ds``."""
    if name in VARIABLES:
        disp, unit, _, _ = VARIABLES[name]
        return f"{disp} ({unit})"
    if name in DIMS:
        disp, unit = DIMS[name]
        return f"{disp} ({unit})" if unit else disp
    attrs = ds[name].attrs if ds is not None and name in ds.variables else {}
    disp = attrs.get("long_name", name.replace("_", " "))
    unit = display_unit(attrs.get("units", ""), attrs.get("lmt_key"))
    return f"{disp} ({unit})" if unit and unit != "1" else str(disp)


def value_label(dim: str, value) -> str:
    """How a value of sweep dim ``dim`` is shown (``links="gigabit"`` -> ``"1 GbE"``)."""
    return VALUE_LABELS.get(dim, {}).get(str(value), str(value))


def plural(n: float, word: str) -> str:
    """``1 pre-copy round``, ``3 pre-copy rounds``."""
    n = int(n)
    return f"{n} {word}" + ("" if n == 1 else "s")


def fmt_seconds(s: float) -> str:
    """``0.302`` -> ``302 ms``, ``16.75`` -> ``16.8 s``, NaN -> ``n/a``."""
    s = float(s)
    if s != s:
        return "n/a"
    if s < 1:
        return f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e3:.2f} ms"
    return f"{s:.3g} s" if s < 100 else f"{s:.0f} s"


def fmt_bytes(b: float) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(b) >= div:
            return f"{b / div:.3g} {unit}"
    return f"{b:.0f} B"


#: what a timed-out point's numbers are (figure titles, the sweep quick-look)
TIMEOUT_NOTE = "total time = the timeout; downtime = the pause until it, where one was abandoned"


def abandoned_pause(ds: xr.Dataset) -> str:
    """The guest's pause of a migration abandoned in its switchover (``downtime`` of one that
    did not complete), or "no downtime" where the timeout fell before any pause."""
    down = float(ds["downtime"].item())
    if down != down:
        return "the VM stays on the source, so no downtime"
    return f"paused {fmt_seconds(down)} until then, then resumed on the source"


def outcome(ds: xr.Dataset) -> str:
    """One line on one migration: rounds, total time, downtime (or why there is none), bytes."""
    rounds = plural(ds["rounds"].item(), "pre-copy round")
    total = fmt_seconds(ds["total_time"].item())
    sent = fmt_bytes(float(ds["transferred"].item())) if "transferred" in ds else ""
    if not bool(ds["completed"].item()):
        return (
            f"{rounds}, stopped after {total} without completing "
            f"(stop: {ds['stop_reason'].item()}; {abandoned_pause(ds)})" + (f", {sent} sent" if sent else "")
        )
    return f"{rounds}, total {total}, downtime {fmt_seconds(ds['downtime'].item())}" + (
        f", {sent} sent" if sent else ""
    )


def scale(ds: xr.Dataset, name: str) -> float:
    """Factor from the Dataset's unit of ``name`` to its display unit."""
    if name not in VARIABLES:
        return 1.0
    _, _, factor, unit = VARIABLES[name]
    have = ds[name].attrs.get("units") if name in ds.variables else None
    if have not in (None, unit):
        raise ValueError(f"{name} is in {have!r}, expected {unit!r}")
    return factor


def frame(ds: xr.Dataset, variables: Sequence[str]) -> pd.DataFrame:
    """A long table of ``variables`` (display units) with one column per dim; booleans on/off."""
    variables = [v for v in variables if v in ds]
    df = ds[variables].to_dataframe().reset_index()
    for v in variables:
        df[v] = df[v].astype(float) * scale(ds, v)
    for c in df.columns:
        if c not in variables and df[c].dtype == bool:
            df[c] = df[c].map({True: "on", False: "off"})
        elif c in VALUE_LABELS:
            df[c] = df[c].map(lambda v, c=c: value_label(c, v))
    return df


def _sorted(values) -> list:
    """Numbers ascending; labels in the order they appear (the sweep axis order)."""
    vals = list(pd.unique(pd.Series(values)))
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
        return sorted(vals)
    return vals


def _hue_palette(df: pd.DataFrame, hue: str | None):
    if hue is None:
        return None
    return style.palette(list(pd.unique(df[hue])), kind="policy" if hue == "policy" else None)


def _figure(ncols: int, nrows: int = 1, width: float = 3.6, height: float = 3.0):
    import matplotlib.pyplot as plt

    style.apply()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def _log(ax, axis: str = "y") -> None:
    """Log scale; on axes spanning a decade or more, labels on the decades only (minor labels
    overlap), on shorter ones matplotlib's labelled minor ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    lo, hi = getattr(ax, f"get_{axis}lim")()
    which = getattr(ax, f"{axis}axis")
    if lo > 0 and hi / lo >= 10:
        which.set_minor_formatter(NullFormatter())
    if lo > 0 and hi / lo < 30:
        # less than ~1.5 decades: a single decade tick would be all there is; label 1-2-5 steps
        which.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        which.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
        which.set_minor_formatter(NullFormatter())


def _short(v: float) -> str:
    """1500 -> 1.5k, 2000000 -> 2M."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:.3g}"


def _value_ticks(ax, values, axis: str = "x", max_ticks: int = 6) -> None:
    """Ticks at the swept values (when there are few) instead of decades."""
    from matplotlib.ticker import NullFormatter, NullLocator

    vals = sorted(set(float(v) for v in values))
    if 1 < len(vals) <= max_ticks:
        getattr(ax, f"set_{axis}ticks")(vals, [_short(v) for v in vals])
        getattr(ax, f"{axis}axis").set_minor_locator(NullLocator())
        getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())


def _legend_once(fig, axes) -> None:
    """Keep one legend (on the last axes, outside the plot)."""
    flat = list(np.ravel(axes))
    for ax in flat[:-1]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    leg = flat[-1].get_legend()
    if leg is not None:
        title = leg.get_title().get_text()
        flat[-1].legend(
            *flat[-1].get_legend_handles_labels(),
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            fontsize="small",
            title=title or None,
        )


def lines(
    ds: xr.Dataset,
    x: str,
    variables: Sequence[str],
    hue: str | None = None,
    style_by: str | None = None,
    logx: bool = False,
    logy: Sequence[str] | bool = (),
    title: str | None = None,
    width: float = 3.6,
):
    """One panel per variable: ``variable`` against dim ``x``, a line per ``hue``/``style_by``.

    The generic plot behind most figures; replicates give a ±1 sd band.
    """
    import seaborn as sns

    variables = [v for v in variables if v in ds]
    hue = hue if hue in ds.dims else None
    style_by = style_by if style_by in ds.dims else None
    df = frame(ds, variables)
    fig, axes = _figure(len(variables), width=width)
    pal = _hue_palette(df, hue)
    for ax, v in zip(axes[0], variables):
        # without a style dim, markers follow the hue (lines that coincide stay visible)
        sns.lineplot(
            data=df,
            x=x,
            y=v,
            hue=hue,
            style=style_by or hue,
            palette=pal,
            markers=True,
            dashes=True,
            errorbar="sd",
            ax=ax,
            hue_order=_sorted(df[hue]) if hue and hue != "policy" else None,
        )
        ax.set_xlabel(label(ds, x))
        ax.set_ylabel(label(ds, v))
        if logx:
            _log(ax, "x")
        if np.issubdtype(df[x].dtype, np.number):
            _value_ticks(ax, df[x].unique())
        if logy is True or v in (logy or ()):
            _log(ax, "y")
        if v in ("total_time", "downtime"):
            _mark_timeouts(ds, df, ax, x, v)
    _legend_once(fig, axes)
    if title:
        n_cut = _timed_out_points(ds)
        fig.suptitle(
            title
            + (
                f"\n(circled: {n_cut} point{'s' if n_cut > 1 else ''} timed out; {TIMEOUT_NOTE})"
                if n_cut
                else ""
            )
        )
    return fig


def incomplete_points(ds: xr.Dataset) -> xr.DataArray:
    """Per point (replicates folded): did some replicate not complete (a timeout)?  All false
    for a Dataset without ``completed``.  (The quick-look of ``lmtk sweep`` marks these too.)"""
    done = ds["completed"].astype(bool) if "completed" in ds else xr.ones_like(ds["total_time"], dtype=bool)
    return ~(done.all("replicate") if "replicate" in done.dims else done)


def _timed_out_points(ds: xr.Dataset) -> int:
    return int(incomplete_points(ds).values.sum())


def _mark_timeouts(ds: xr.Dataset, df: pd.DataFrame, ax, x: str, v: str = "total_time") -> None:
    """Circle the points of variable ``v`` where a replicate timed out: its total time is the
    timeout (a lower bound, not a migration time) and its downtime, where the switchover was
    abandoned, the pause until the timeout.  Drawn as ordinary points they read as slow
    migrations (``shared_network``'s 1 GbE at 0.9 Gbit/s background: two 600 s points among
    the others).  A point with no downtime at all (NaN: no pause) has nothing to circle."""
    cut = incomplete_points(ds)
    if not bool(cut.values.any()):
        return
    mean = ds[[v]].mean("replicate") if "replicate" in ds[v].dims else ds[[v]]
    pts = frame(mean.assign(lmt_cut=cut), [v, "lmt_cut"])  # where the lines' means are
    pts = pts[(pts["lmt_cut"] > 0) & np.isfinite(pts[v])]
    ax.plot(pts[x], pts[v], ls="", marker="o", ms=11, mew=1.6, mfc="none", mec="red", zorder=5)


# -- paper figures (one per experiment) ------------------------------------------------------------
def fig_quickstart(ds: xr.Dataset):
    """VMware-like vs Hyper-V-like: total time and downtime over dirty rate, 1 vs 10 GbE."""
    return lines(
        ds,
        "dirty_rate",
        ["total_time", "downtime"],
        hue="policy",
        style_by="network",
        logx=True,
        logy=["total_time", "downtime"],
        title="VMware-like vs Hyper-V-like on 1 and 10 GbE",
    )


def fig_bandwidth_vs_dirty_rate(ds: xr.Dataset):
    """Heat maps of total time and downtime over link bandwidth × dirty rate (× = never completes)."""
    import seaborn as sns
    from matplotlib.colors import LogNorm

    fig, axes = _figure(2, width=4.6, height=3.8)
    mean = ds[["total_time", "downtime", "completed"]]
    if "replicate" in mean.dims:
        mean = mean.mean("replicate")
    for ax, v in zip(axes[0], ["total_time", "downtime"]):
        grid = (mean[v] * scale(ds, v)).transpose("dirty_rate", "bandwidth")
        table = grid.to_pandas().sort_index(ascending=False)
        table.index = [f"{x:g}" for x in table.index]
        table.columns = [f"{x:g}" for x in table.columns]
        vals = table.to_numpy()
        finite = vals[np.isfinite(vals) & (vals > 0)]
        # times span decades: log colours; the downtime sits near its target: linear
        norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if v == "total_time" and finite.size else None
        sns.heatmap(
            table,
            ax=ax,
            cmap=style.HEATMAP_CMAP,
            norm=norm,
            cbar_kws={"label": label(ds, v)},
            mask=~np.isfinite(vals),
        )
        done = (
            mean["completed"]
            .transpose("dirty_rate", "bandwidth")
            .to_pandas()
            .sort_index(ascending=False)
            .to_numpy()
            > 0.5
        )
        ys, xs = np.nonzero(~done)
        ax.scatter(xs + 0.5, ys + 0.5, marker="x", color="white", s=18, linewidths=1.2)
        ax.grid(False)
        ax.set_facecolor("0.92")
        ax.tick_params(axis="x", labelrotation=0)
        ax.set_xlabel(label(ds, "bandwidth"))
        ax.set_ylabel(label(ds, "dirty_rate"))
        ax.set_title(VARIABLES[v][0] + (" (grey: none)" if v == "downtime" else ""))
    fig.suptitle("Pre-copy over link bandwidth and dirty rate (× = does not complete)")
    return fig


def fig_vmware_vs_hyperv(ds: xr.Dataset):
    """Downtime and total time per workload preset and policy profile, one row per network."""
    import seaborn as sns

    df = frame(ds, ["downtime", "total_time"])
    nets = _sorted(df["network"]) if "network" in df else [None]
    fig, axes = _figure(2, nrows=len(nets), width=4.4, height=2.8)
    pal = _hue_palette(df, "policy")
    for r, net in enumerate(nets):
        sub = df if net is None else df[df["network"] == net]
        for c, v in enumerate(["downtime", "total_time"]):
            ax = axes[r][c]
            sns.barplot(data=sub, x="workload", y=v, hue="policy", palette=pal, errorbar="sd", ax=ax)
            _log(ax, "y")
            ax.set_xlabel(label(ds, "workload"))
            ax.set_ylabel(label(ds, v))
            ax.set_title(f"{VARIABLES[v][0]}, {net}" if net else VARIABLES[v][0])
            ax.tick_params(axis="x", labelrotation=30)
    _legend_once(fig, axes)
    return fig


def fig_downtime_target(ds: xr.Dataset):
    """Downtime reached and total time against the downtime target, one line per dirty rate."""
    fig = lines(
        ds,
        "downtime_limit",
        ["downtime", "total_time"],
        hue="dirty_rate",
        logx=True,
        logy=True,
        title="What the downtime target buys (QEMU-like)",
    )
    ax = fig.axes[0]
    lim = np.asarray(ds["downtime_limit"].values, dtype=float)
    ax.plot(lim, lim, color="0.5", lw=0.8, ls=":", label="downtime = target")
    return fig


def fig_auto_converge(ds: xr.Dataset):
    """Auto-converge on/off: total time, downtime and the guest slowdown it costs."""
    return lines(
        ds,
        "dirty_rate",
        ["total_time", "downtime", "guest_slowdown"],
        hue="auto_converge",
        style_by="network",
        logx=True,
        logy=["total_time", "downtime"],
        title="QEMU-like auto-converge: convergence bought with guest slowdown",
    )


def fig_postcopy_vs_precopy(ds: xr.Dataset):
    """Pre-copy, post-copy, hybrid and stop-and-copy: total time, downtime, data sent."""
    return lines(
        ds,
        "dirty_rate",
        ["total_time", "downtime", "transferred"],
        hue="policy",
        logx=True,
        logy=["downtime"],
        title="Post-copy vs pre-copy vs hybrid vs stop-and-copy",
    )


def fig_memory_scaling(ds: xr.Dataset):
    """Total time and downtime from 1 to 512 GiB, VMware-like vs Hyper-V-like, 10 vs 100 GbE."""
    return lines(
        ds,
        "memory",
        ["total_time", "downtime"],
        hue="policy",
        style_by="network",
        logx=True,
        logy=True,
        title="Memory scaling",
    )


def fig_fluid_map(ds: xr.Dataset):
    """High-resolution map: total time over link bandwidth × dirty rate, and where it completes."""
    from matplotlib.colors import LogNorm

    fig, axes = _figure(1, width=6.2, height=4.2)
    ax = axes[0][0]
    mean = ds[["total_time", "completed"]]
    if "replicate" in mean.dims:
        mean = mean.mean("replicate")
    t = mean["total_time"].transpose("dirty_rate", "bandwidth").values.astype(float)
    done = mean["completed"].transpose("dirty_rate", "bandwidth").values > 0.5
    bw = np.asarray(ds["bandwidth"].values, float)
    rate = np.asarray(ds["dirty_rate"].values, float)
    shown = np.where(done, t, np.nan)
    finite = shown[np.isfinite(shown) & (shown > 0)]
    ax.set_facecolor("0.25")
    mesh = ax.pcolormesh(
        np.arange(bw.size + 1),
        _edges(rate),
        shown,
        cmap=style.HEATMAP_CMAP,
        norm=LogNorm(finite.min(), finite.max()) if finite.size else None,
        shading="flat",
        rasterized=True,
    )
    fig.colorbar(mesh, ax=ax, label=label(ds, "total_time"))
    _log(ax, "y")
    ax.set_xticks(np.arange(bw.size) + 0.5, [f"{b:g}" for b in bw])
    ax.grid(False)
    ax.set_xlabel(label(ds, "bandwidth"))
    ax.set_ylabel(label(ds, "dirty_rate"))
    ax.set_title("total migration time (dark grey: never completes)")
    return fig


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted positive centres (geometric midpoints)."""
    c = np.asarray(centers, float)
    if c.size == 1:
        return np.array([c[0] / 1.5, c[0] * 1.5])
    mid = np.sqrt(c[:-1] * c[1:])
    return np.concatenate([[c[0] ** 2 / mid[0]], mid, [c[-1] ** 2 / mid[-1]]])


# -- teaching and validation figures -------------------------------------------------------------
def _integer_ticks(ax, axis: str = "x") -> None:
    """Whole-number ticks (rounds, counts): no 0.5 or -0.25."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True, nbins="auto"))


def precopy_rounds(ds: xr.Dataset, axes=None):
    """One migration, round by round: data sent per round and the dirty set at each sync."""
    from matplotlib.patches import Patch

    from ..records import ROUND_KINDS

    if axes is None:
        fig, grid = _figure(2, width=4.2)
        axes = grid[0]
    fig = axes[0].figure
    kinds = np.asarray(ds["round_kind"].values)
    ok = kinds >= 0
    r = np.asarray(ds["round"].values)[ok]
    colors = [style.OTHER_COLORS[int(k)] for k in kinds[ok]]
    ax = axes[0]
    ax.bar(r, np.asarray(ds["round_bytes"].values)[ok] * scale(ds, "round_bytes"), color=colors)
    ax.set_xlabel(label(ds, "round"))
    ax.set_ylabel(label(ds, "round_bytes"))
    _log(ax, "y")
    _integer_ticks(ax)
    ax.set_xlim(-0.6, max(float(r.max()) if r.size else 0.0, 1.0) + 0.6)
    ax.legend(
        handles=[
            Patch(color=style.OTHER_COLORS[i], label=k)
            for i, k in enumerate(ROUND_KINDS)
            if (kinds[ok] == i).any()
        ],
        fontsize="small",
    )
    ax = axes[1]
    dirty = np.asarray(ds["round_dirty_pages"].values, dtype=float)[ok]
    ax.plot(r, dirty, marker="o")
    ax.set_xlabel(label(ds, "round"))
    disp, unit, _, _ = VARIABLES["round_dirty_pages"]
    ax.set_ylabel(f"{disp}\n({unit})")
    ax.set_yscale("symlog", linthresh=10)
    big = dirty[dirty > 10]
    if big.size and big.max() / big.min() < 30:
        # under ~1.5 decades a single decade tick would be all there is: label 1-2-5 steps
        from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator

        ax.yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
    _integer_ticks(ax)
    ax.set_xlim(-0.3, max(float(r.max()) if r.size else 0.0, 1.0) + 0.3)
    policy = ds.attrs.get("lmt_policy", "")
    fig.suptitle((f"{policy}: " if policy else "") + outcome(ds.drop_vars("transferred", errors="ignore")))
    return fig


def precopy_explorer(ds: xr.Dataset):
    """The teaching explorer: bytes per round, dirty pages per sync, dirty-bitmap heat map."""
    import matplotlib.pyplot as plt

    style.apply()
    fig = plt.figure(figsize=(9.5, 6.8))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.1])
    axes = top.subplots(1, 2)
    precopy_rounds(ds, axes)
    if "dirty_bitmap" in ds:
        dirty_bitmap(ds["dirty_bitmap"], ax=bottom.subplots())
    return fig


def compare_bars(
    ds: xr.Dataset, variables: Sequence[str], hue: str | None = None, logy: Sequence[str] | bool = ()
):
    """Teaching: one bar per ``case`` for each variable (display units on the axes).

    A case that did not complete never ran on the destination: its downtime bar, if any (the
    pause of a switchover abandoned at the timeout), is labelled "abandoned", and where there
    is none (no pause) the words "did not complete" stand in its place."""
    import seaborn as sns

    variables = [v for v in variables if v in ds]
    df = frame(ds, variables)
    done = (
        df["case"].map(dict(zip(map(str, ds["case"].values), np.asarray(ds["completed"].values, bool))))
        if "completed" in ds and "case" in df
        else pd.Series(True, index=df.index)
    )
    fig, axes = _figure(len(variables), width=3.4, height=3.3)
    for ax, v in zip(axes[0], variables):
        sns.barplot(
            data=df,
            x="case",
            y=v,
            hue=hue or "case",
            ax=ax,
            legend=False,
            palette=style.palette(
                list(pd.unique(df[hue or "case"])), kind="policy" if hue == "policy" else None
            ),
        )
        ax.set_xlabel("")
        ax.set_ylabel(label(ds, v))
        if logy is True or v in (logy or ()):
            _log(ax, "y")
        if v in ("counts", "rounds", "postcopy_faults"):
            _integer_ticks(ax, "y")
        for i, (value, ok) in enumerate(zip(df[v], done)):
            if (not ok and v == "downtime") or not np.isfinite(value):
                ax.annotate(
                    "abandoned" if np.isfinite(value) else "did not\ncomplete",
                    (i, 0.02),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="bottom",
                    fontsize="x-small",
                    color="0.35",
                )
        ax.tick_params(axis="x", labelrotation=25)
        for lab in ax.get_xticklabels():
            lab.set_horizontalalignment("right")
    return fig


def dirty_bitmap(da: xr.DataArray, ax=None):
    """Heat map of a dirty bitmap per round (``round`` × page bins, share of pages dirty).

    The bins run over ``address`` (guest physical address) or, for a bitmap from
    :func:`lmtoolkit.teaching.dirty_bitmap_rounds` with ``order="rank"``, over ``rank``: the
    pages ordered by how often the guest writes them, the working set first (a dotted line
    marks where it ends)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    style.apply()
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.2))
    xdim = next(d for d in da.dims if d != "round")
    table = da.transpose("round", xdim).to_pandas()
    table.columns = [f"{c:.0f}" for c in table.columns]
    step = max(1, int(np.ceil(table.shape[0] / 12)))
    sns.heatmap(
        table,
        ax=ax,
        cmap=style.HEATMAP_CMAP,
        vmin=0,
        vmax=1,
        cbar_kws={"label": "dirty share of pages in the bin (1)"},
        xticklabels=max(1, table.shape[1] // 8),
        yticklabels=step,
    )
    ax.tick_params(axis="y", labelrotation=0)
    unit = display_unit(da[xdim].attrs.get("units", MIB))
    if xdim == "rank":
        ax.set_xlabel(f"guest memory, pages ordered by write frequency ({unit}, working set first)")
        wss = da.attrs.get("wss_bins")
        if wss is not None and 0 < float(wss) < table.shape[1]:
            ax.axvline(float(wss), color="0.2", lw=1.0, ls=":")
            ax.annotate(
                "end of the working set",
                (float(wss), 0.5),
                xycoords=("data", "axes fraction"),
                xytext=(4, 0),
                textcoords="offset points",
                fontsize="x-small",
                va="center",
                color="0.2",
            )
    else:
        ax.set_xlabel(f"guest physical address ({unit}, bin start)")
    ax.set_ylabel("round (index)")
    ax.set_title("dirty bitmap at each sync (the set the round sends)")
    return ax.figure


def page_vs_fluid(ds: xr.Dataset):
    """Validation: page engine vs fluid engine on the same scenarios (dim ``engine``)."""
    fig, axes = _figure(2, width=3.8)
    for ax, v in zip(axes[0], ["total_time", "transferred"]):
        page = ds[v].sel(engine="page").values * scale(ds, v)
        fluid = ds[v].sel(engine="fluid").values * scale(ds, v)
        ax.scatter(page, fluid, color=style.policy_color("qemu"), s=22)
        lo = np.nanmin([page.min(), fluid.min()])
        hi = np.nanmax([page.max(), fluid.max()])
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls=":")
        _log(ax, "x")
        _log(ax, "y")
        disp, unit, _, _ = VARIABLES[v]
        ax.set_xlabel(f"{disp}, page engine ({unit})")
        ax.set_ylabel(f"{disp}, fluid engine ({unit})")
    fig.suptitle("page vs fluid engine (dotted: equal)")
    return fig


def simulated_vs_analytic(ds: xr.Dataset):
    """Validation: simulated / analytic per check (dim ``check``), the allowed band shaded."""
    fig, axes = _figure(1, width=6.4, height=0.45 * ds.sizes["check"] + 1.4)
    ax = axes[0][0]
    ratio = np.asarray(ds["simulated"].values, float) / np.asarray(ds["analytic"].values, float)
    tol = np.asarray(ds["tolerance"].values, float)
    rel = [str(r) for r in ds["relation"].values]
    ok = np.asarray(ds["ok"].values, bool)
    y = np.arange(ratio.size)
    ax.barh(
        y,
        ratio,
        color=[style.policy_color("vmware") if o else style.policy_color("postcopy") for o in ok],
        height=0.6,
    )
    for yi, t, r in zip(y, tol, rel):
        lo, hi = (1 - t, 1 + t) if r == "≈" else ((0, 1 + t) if r == "≤" else (1 - t, 10))
        ax.fill_betweenx([yi - 0.4, yi + 0.4], lo, min(hi, 2), color="0.85", zorder=0)
    ax.axvline(1.0, color="0.3", lw=0.8, ls=":")
    ax.set_yticks(y, [f"{c} ({r})" for c, r in zip(ds["check"].values, rel)])
    ax.set_xlim(0, max(1.3, float(np.nanmax(ratio)) * 1.1))
    ax.set_xlabel("simulated / analytic (1)")
    ax.set_ylabel("check")
    ax.set_title("simulator vs analytic limits (grey: allowed)")
    return fig


# -- beyond one link (issue 7) ---------------------------------------------------------------------
def fig_shared_network(ds: xr.Dataset):
    """Dedicated vs shared migration link: total time and downtime against the other traffic on
    the link, 1 vs 10 GbE (``experiment=shared_network``, ``lmt.sweep``)."""
    return lines(
        ds,
        "background",
        ["total_time", "downtime"],
        hue="network",
        style_by="dirty_rate",
        logy=True,
        title="Dedicated vs shared migration network",
    )


def fig_evacuation_order(ds: xr.Dataset):
    """Host evacuation by order: makespan and mean VM completion time per order, one bar group per
    link (``experiment=evacuation_order``, ``lmt.evacuate``; dims ``order`` [× ``links``] × ``vm``)."""
    import seaborn as sns

    mean_end = ds["end"].mean("vm")
    df = pd.DataFrame(
        {"makespan": ds["makespan"].to_series(), "mean completion": mean_end.to_series()}
    ).reset_index()
    hue = next((d for d in ds["makespan"].dims if d != "order"), None)
    for c in ("order", hue):
        if c is not None:
            df[c] = df[c].map(lambda x, c=c: value_label(c, x))
    fig, axes = _figure(2, width=4.2)
    for ax, v in zip(axes[0], ("makespan", "mean completion")):
        sns.barplot(
            data=df,
            x="order",
            y=v,
            hue=hue,
            ax=ax,
            palette=style.palette(list(pd.unique(df[hue]))) if hue else None,
        )
        if hue and ax.get_legend() is not None:
            ax.get_legend().set_title(DIMS.get(hue, (hue,))[0])
        ax.set_xlabel("migration order")
        ax.set_ylabel(f"{v} (s)")
        ax.tick_params(axis="x", labelrotation=30)
        for lab in ax.get_xticklabels():
            lab.set_horizontalalignment("right")
        if hue and float(df[v].max()) / max(float(df[v].min()), 1e-9) > 20:
            _log(ax, "y")
    _legend_once(fig, axes)
    fig.suptitle("Host evacuation: does the order matter?")
    return fig


# -- NUMA and copy errors (teaching notebook 04) ------------------------------------------------------
def numa_placement(ds: xr.Dataset):
    """Where a VM's vNUMA nodes land on the destination (local vs remote GiB per vNUMA node), and
    the slowdown after the move over destination node sizes (``lmt.teaching.numa_case``)."""
    fig, axes = _figure(2, width=4.4, height=3.2)
    v = int(ds["vnuma_nodes"].item())
    s = float(ds["vnuma_node_gib"].item())
    d = float(ds.attrs.get("lmt_dst_node_gib", s))
    local = min(s, d)
    ax = axes[0][0]
    idx = np.arange(v)
    ax.bar(idx, [local] * v, color=style.policy_color("vmware"), label="local")
    ax.bar(
        idx,
        [s - local] * v,
        bottom=[local] * v,
        color=style.policy_color("postcopy"),
        hatch="//",
        label="remote",
    )
    ax.axhline(d, color="0.3", lw=1.0, ls=":", label="destination node size")
    ax.set_xticks(idx, [f"vNUMA {i}" for i in idx])
    ax.set_xlim(-0.7, max(v, 2) - 0.3)
    ax.set_ylim(0, max(s, d) * 1.45)
    ax.set_xlabel("the VM's vNUMA nodes (fixed at power-on)")
    ax.set_ylabel("memory (GiB)")
    ax.legend(fontsize="x-small", loc="upper left", ncol=3)
    ax.set_title("compatible layout" if bool(ds["numa_compatible"].item()) else "layout does not match")
    ax = axes[0][1]
    curve = ds["curve_penalty"]
    x = np.asarray(curve["dst_node_gib"].values, float)
    ax.plot(x, np.asarray(curve.values, float) * 100, marker="o", color=style.policy_color("qemu"))
    ax.plot(
        [d],
        [float(ds["numa_penalty"].item()) * 100],
        marker="o",
        ms=11,
        mfc="none",
        color=style.policy_color("postcopy"),
        label="this destination",
        ls="none",
    )
    ax.set_xlabel("memory per destination node (GiB)")
    ax.set_ylabel("slowdown after the move (%)")
    ax.legend(fontsize="small")
    ax.set_title("memory-bound work after the move")
    return fig


def copy_errors(ds: xr.Dataset):
    """The four protections against copy errors (``lmt.teaching.copy_errors``, dim ``case``):
    probability that a page arrives silently corrupted, and the total time."""
    fig, axes = _figure(2, width=4.2, height=3.3)
    cases = [str(c) for c in ds["case"].values]
    colors = [style.OTHER_COLORS[i] for i in range(len(cases))]
    p = np.asarray(ds["corruption_probability"].values, float)
    ax = axes[0][0]
    p = np.maximum(p, 1e-300)
    ax.bar(cases, p, color=colors)
    ax.set_yscale("log")
    ax.set_ylim(float(p.min()) / 1e4, min(1.0, float(p.max()) * 1e3))
    ax.set_ylabel("P(silent corruption) (1)")
    ax.set_title(f"bit error rate {ds.attrs.get('lmt_bit_error_rate', float('nan')):.0e}")
    ax = axes[0][1]
    ax.bar(cases, np.asarray(ds["total_time"].values, float) * scale(ds, "total_time"), color=colors)
    ax.set_ylabel(label(ds, "total_time"))
    ax.set_title(f"link: {value_label('network', ds.attrs.get('lmt_network', ''))}")
    for ax in axes[0]:
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelrotation=25)
        for lab in ax.get_xticklabels():
            lab.set_horizontalalignment("right")
    return fig
