"""``lmtk sweep`` and ``lmtk collect`` (registered in :data:`lmtoolkit.cli.COMMAND_MODULES`).

lmtk sweep experiment=quickstart                     # in-process; table + figure + .nc
lmtk sweep experiment=quickstart sweep.executor=dask  # same result, on a Dask cluster
lmtk sweep -m experiment=quickstart network=1gbe,10gbe hydra/launcher=joblib
lmtk collect multirun/2025-01-01/12-00-00            # merge a multirun into one Dataset
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .errors import ConfigError
from .units import display_unit

MAX_TABLE_ROWS = 40


def summary_table(ds, max_rows: int = MAX_TABLE_ROWS) -> str:
    """The headline variables, one row per point: the mean over replicates, with the standard
    deviation (``±``) when there are several; the share that converged and completed, and the
    most frequent stop reason (a completed but forced migration says why it stopped)."""
    import pandas as pd

    from .tasks import get_task

    n_rep = ds.sizes.get("replicate", 1)
    if not set(ds.dims) - {"replicate", "round"}:  # no axis: one point (it was a traceback)
        ds = ds.expand_dims(point=["all"])
    cols = {}
    for var, label, scale in get_task(ds.attrs.get("lmt_task", "migration")).table:
        if var not in ds:
            continue
        v = ds[var].astype(float) * scale
        if "replicate" in v.dims:
            mean = v.mean("replicate").to_series()
            if n_rep > 1 and var not in ("converged", "completed"):
                sd = v.std("replicate").to_series()
                cols[label] = [f"{m:,.3g} ± {d:.2g}" for m, d in zip(mean, sd)]
                index = mean.index
                continue
            v = mean
        else:
            v = v.to_series()
        cols[label] = v
        index = v.index
    df = pd.DataFrame(cols, index=index)
    for flag in ("converged", "completed"):
        if flag in df:
            df[flag] = df[flag].map(lambda x: f"{x:.0%}")
    if "stop_reason" in ds and "replicate" in ds["stop_reason"].dims:
        df["stop"] = (
            ds["stop_reason"]
            .to_series()
            .groupby(level=list(df.index.names))
            .agg(lambda s: s.value_counts().index[0])
            .reindex(df.index)
            .values
        )
    head = f"mean over {n_rep} replicates (± standard deviation)" if n_rep > 1 else "one replicate per point"
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", lambda x: f"{x:,.3g}"
    ):
        body = (
            df.to_string()
            if len(df) <= max_rows
            else df.head(max_rows).to_string() + f"\n... ({len(df)} rows; open the .nc for all)"
        )
    return head + "\n" + body


#: the quick-look's limits (a readable PNG): beyond them it draws the first ones and says so,
#: in its title and on the console (:func:`quicklook_layout`)
QUICKLOOK_MAX_SERIES = 20  # colours: lines per panel, bars per group
QUICKLOOK_MAX_PANELS = 12  # panels per variable (line plots)
QUICKLOOK_MAX_BARS = 240  # bars per panel (bar plots)


def quicklook_layout(ds) -> dict:
    """How :func:`quicklook` draws ``ds`` (no drawing): ``x`` (the main numeric axis, or None:
    bars), ``hue`` (one colour per value: ``policy`` if swept, else the axis with the most
    values), ``rest`` (the other axes: one panel per combination for lines, one group of bars
    for bars), ``fixed`` (axes of one value), ``groups`` (the combinations of ``rest`` drawn),
    ``n_hue`` (hue values drawn), ``points`` / ``drawn`` (points in ``ds`` / in the figure, over
    replicates), ``capped`` and ``note``: None when every point is drawn, else what was left
    out (the note is what ``lmtk sweep`` prints; the figure's title says it too)."""
    import numpy as np

    dims = [d for d in ds["total_time"].dims if d != "replicate"]
    numeric = [d for d in dims if ds[d].dtype.kind in "fiu" and ds.sizes[d] > 1]
    x = (
        "dirty_rate"
        if "dirty_rate" in numeric
        else (max(numeric, key=lambda d: ds.sizes[d]) if numeric else None)
    )
    others = [d for d in dims if d != x]
    varying = [d for d in others if ds.sizes[d] > 1]
    fixed = [d for d in others if ds.sizes[d] == 1]
    hue = "policy" if "policy" in varying else (max(varying, key=lambda d: ds.sizes[d]) if varying else None)
    rest = [d for d in varying if d != hue]
    groups = list(np.ndindex(*[ds.sizes[d] for d in rest])) if rest else [()]
    n_hue_all = ds.sizes[hue] if hue else 1
    n_hue = min(n_hue_all, QUICKLOOK_MAX_SERIES)
    n_x = ds.sizes[x] if x else 1
    cap = QUICKLOOK_MAX_PANELS if x else max(1, QUICKLOOK_MAX_BARS // n_hue)
    shown = groups[:cap]
    points = int(np.prod([ds.sizes[d] for d in dims])) if dims else 1
    drawn = n_hue * len(shown) * n_x
    left = []
    if n_hue < n_hue_all:
        left.append(f"the first {n_hue} of {n_hue_all} values of {hue}")
    if len(shown) < len(groups):
        what = "panels" if x else "groups of bars"
        left.append(f"the first {len(shown)} of {len(groups)} {what} ({' × '.join(rest)})")
    capped = "; ".join(left) if drawn < points else None
    note = (
        f"the quick-look shows {drawn} of {points} points ({capped}); the Dataset has them all"
        if capped
        else None
    )
    return {
        "x": x,
        "hue": hue,
        "rest": rest,
        "fixed": fixed,
        "groups": shown,
        "n_hue": n_hue,
        "points": points,
        "drawn": drawn,
        "capped": capped,
        "note": note,
    }


def _label(ds, sel: dict) -> str:
    return ", ".join(f"{d}={ds[d].values[i]}" for d, i in sel.items())


def quicklook_figure(ds):
    """A first-look figure of every point (mean over replicates): total time and downtime
    against the main numeric axis, one line per ``hue`` value and one panel per combination of
    the other axes; without a numeric axis, bars (one colour per ``hue`` value, one group per
    combination of the others).  Returns ``(figure, layout)`` (:func:`quicklook_layout`)."""
    import math

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    lay = quicklook_layout(ds)
    x, hue, rest, groups, n_hue = lay["x"], lay["hue"], lay["rest"], lay["groups"], lay["n_hue"]
    mean = ds[["total_time", "downtime"]]
    mean = mean.mean("replicate") if "replicate" in mean.dims else mean
    mean = mean.isel({d: 0 for d in lay["fixed"]})
    # a point where a replicate did not complete (timeout): its total time is the timeout, a
    # lower bound, not a migration time — marked, never drawn as one
    from .plotting.figures import TIMEOUT_NOTE, incomplete_points

    timed_out = incomplete_points(ds).isel({d: 0 for d in lay["fixed"]})
    n_cut = int(timed_out.values.sum())
    variables = (("total_time", 1.0, "total migration time [s]"), ("downtime", 1e3, "downtime [ms]"))
    colors = plt.get_cmap("tab10" if n_hue <= 10 else "tab20").colors
    hues = [{hue: h} if hue else {} for h in range(n_hue)]
    hue_names = [_label(ds, h).split("=", 1)[-1] if h else "all points" for h in hues]
    if x is not None:
        ncols = min(len(groups), 4)
        nrows = math.ceil(len(groups) / ncols)
        if len(groups) == 1:
            fig, grid = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True, squeeze=False)
            panels = {(v, 0): grid[0, v] for v in range(2)}
        else:
            fig, grid = plt.subplots(
                2 * nrows,
                ncols,
                figsize=(1 + 3.2 * ncols, 2.4 * 2 * nrows + 0.8),
                constrained_layout=True,
                squeeze=False,
            )
            panels = {
                (v, g): grid[v * nrows + g // ncols, g % ncols] for v in range(2) for g in range(len(groups))
            }
            for ax in grid.ravel():
                if ax not in panels.values():
                    ax.set_visible(False)
        units = display_unit(ds[x].attrs.get("units", ""), ds[x].attrs.get("lmt_key"))
        xs = ds[x].values.astype(float)
        for (v, g), ax in panels.items():
            var, scale, label = variables[v]
            sel = dict(zip(rest, groups[g]))
            for k, h in enumerate(hues):
                y = mean[var].isel({**sel, **h}) * scale
                cut = timed_out.isel({**sel, **h}).values
                ax.plot(xs, y.values, marker="o", ms=3, color=colors[k % len(colors)], label=hue_names[k])
                if cut.any():
                    ax.plot(xs[cut], y.values[cut], ls="", marker="o", ms=9, mew=1.5, mfc="none", mec="red")
            ax.set_xlabel(f"{x} [{units}]" if units and units != "1" else x, fontsize=8)
            if xs.min() > 0 and xs.max() / xs.min() >= 50:
                ax.set_xscale("log")
            ax.set_ylabel(label, fontsize=8)
            if sel:
                ax.set_title(_label(ds, sel), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
    else:
        n_bars = n_hue * len(groups)
        fig, axs = plt.subplots(
            2, 1, figsize=(min(max(8.0, 3 + 0.12 * n_bars), 30.0), 7), constrained_layout=True
        )
        width = 0.8 / n_hue
        for ax, (var, scale, label) in zip(axs, variables):
            for k, h in enumerate(hues):
                pos = np.arange(len(groups)) + (k - (n_hue - 1) / 2) * width
                y = [float(mean[var].isel({**dict(zip(rest, c)), **h})) * scale for c in groups]
                cut = [bool(timed_out.isel({**dict(zip(rest, c)), **h})) for c in groups]
                bars = ax.bar(pos, y, width=width, color=colors[k % len(colors)], label=hue_names[k])
                for b, c in zip(bars, cut):
                    if c:
                        b.set_hatch("xx")
                        b.set_edgecolor("black")
            ax.set_xticks(np.arange(len(groups)))
            ticks = ["\n".join(str(ds[d].values[i]) for d, i in zip(rest, c)) for c in groups]
            long = max((len(t) for c in ticks for t in c.split("\n")), default=0) > 10
            rot = 90 if len(groups) > 16 else (30 if long and len(groups) > 6 else 0)
            ax.set_xticklabels(
                ticks if rest else [""], fontsize=7, rotation=rot, ha="right" if rot == 30 else "center"
            )
            if rest:
                ax.set_xlabel(" / ".join(rest), fontsize=8)
            ax.set_ylabel(label, fontsize=8)
            ax.grid(True, axis="y", alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if hue:
        fig.legend(handles, labels, title=hue, loc="outside right upper", fontsize=7, title_fontsize=8)
    reps = ds.sizes.get("replicate", 1)
    how = [f"mean over {reps} replicates" if reps > 1 else "one replicate"]
    how += [f"{d}={ds[d].values[0]}" for d in lay["fixed"]]
    if lay["note"]:
        how.append(f"showing {lay['drawn']} of {lay['points']} points")
    if n_cut:
        lay["timed_out"] = n_cut
        how.append(
            f"{n_cut} point{'s' if n_cut > 1 else ''} timed out "
            f"({'circled' if x is not None else 'hatched'}: {TIMEOUT_NOTE})"
        )
    title = ds.attrs.get("title", "") + "\n" + " · ".join(how)
    if lay["capped"]:
        title += f"\n(only {lay['capped']}; the Dataset has them all)"
    fig.suptitle(title, fontsize=10)
    return fig, lay


def quicklook(ds, path: Path, log=None) -> Path | None:
    """Write :func:`quicklook_figure` as PNG to ``path``; ``log`` gets the note when the figure
    cannot show every point (also in its title).  None when ``ds`` has no axis."""
    import matplotlib.pyplot as plt

    from .io import atomic_path

    if not [d for d in ds["total_time"].dims if d != "replicate"]:
        return None
    fig, lay = quicklook_figure(ds)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    if lay["note"] and log is not None:
        log(lay["note"])
    return path


def _check_hydra_groups(parsed) -> None:
    """``hydra/launcher=NAME`` (and other ``hydra/`` groups) must name an installed option."""
    import difflib

    from .compose import hydra_group_options

    for o in parsed:
        key = o.get_key_element().lstrip("+~")
        if not key.startswith("hydra/"):
            continue
        opts = hydra_group_options(key)
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        for v in values:
            if str(v) not in opts:
                close = difflib.get_close_matches(str(v), opts, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                extra = (
                    " (the joblib/submitit launchers: pip install -e '.[scale]')"
                    if key == "hydra/launcher"
                    else ""
                )
                raise ConfigError(
                    key, v, "", message=f"unknown {key} '{v}'{hint} (available: {', '.join(opts)}){extra}"
                )


def _validate_multirun(overrides: list[str]) -> None:
    """Check a multirun before launching (one-line errors, exit 2): its first job, and each
    value of each swept key with the others at their first (a bad value — ``vm.memory_gib=
    0.5,-1`` — was a Hydra traceback in its job, after the jobs before it had run)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .compose import is_hydra_override
    from .sweep import make_plan

    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not is_hydra_override(o)])
    except Exception as e:  # noqa: BLE001 - Hydra's grammar errors
        raise ConfigError("overrides", overrides, "", message=str(e).strip().splitlines()[0]) from None
    from .compose import GROUPS
    from .paths import group_options

    _check_hydra_groups(
        OverridesParser.create().parse_overrides(
            [o for o in overrides if is_hydra_override(o) and "/" in o.split("=", 1)[0]]
        )
    )
    first, swept = [], []
    for o in parsed:
        if o.is_sweep_override():
            values = list(o.sweep_string_iterator())
            key = o.get_key_element().lstrip("+~")
            if key in GROUPS and key not in ("hydra", "local"):
                for v in values[1:]:  # every option must exist (the first is checked below)
                    if v not in group_options(key):
                        make_plan([f"{key}={v}"])  # raises the one-line "unknown ..." error
            swept.append((len(first), o.get_key_element(), values[1:]))
            first.append(f"{o.get_key_element()}={values[0]}")
        else:
            first.append(o.input_line)
    make_plan(first)
    for i, key, values in swept:  # each other value, the rest at their first
        for v in values:
            make_plan(first[:i] + [f"{key}={v}"] + first[i + 1 :])


def multirun_dir(overrides: list[str]) -> tuple[str | None, list[str]]:
    """The multirun's directory, and the overrides that fix it: the user's
    ``hydra.sweep.dir``, else the config's (``multirun/<date>/<time>``) resolved now and added
    as ``hydra.sweep.dir=…`` — so lmtk can name it, and a rerun into it resumes (Hydra picks a
    new dated directory each time: an interrupted ``lmtk sweep -m`` rerun had recomputed every
    job from scratch, beside the first's finished jobs and chunks).  ``None`` where the
    config's directory needs Hydra's job state to resolve (left to Hydra)."""
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf

    from .compose import compose_raw, is_hydra_override, split_override

    given = [v for _, k, v in map(split_override, overrides) if k == "hydra.sweep.dir"]
    if given:
        if not given[-1].strip():  # (the jobs went into the current directory)
            raise ConfigError(
                "hydra.sweep.dir", given[-1], "a directory (leave it out for multirun/<date>/<time>)"
            )
        return given[-1], list(overrides)
    setup_globals()  # Hydra's ${now:...}
    cfg = compose_raw([o for o in overrides if is_hydra_override(o)], return_hydra_config=True)
    try:
        d = str(OmegaConf.select(cfg, "hydra.sweep.dir"))
    except Exception:  # noqa: BLE001 - e.g. ${hydra:job.name}: Hydra resolves it in the job
        return None, list(overrides)
    return d, [*overrides, f"hydra.sweep.dir={d}"]  # (as the message shows it: no quotes)


def run_multirun(overrides: list[str]) -> int:
    """Run the Hydra app (:mod:`lmtoolkit.hydra_app`) with ``-m`` in a child process: Hydra
    reads its command line from ``sys.argv`` and sets up global state, neither of which this
    process should have changed behind its back.  ``policy.KEY=…`` goes to Hydra as
    ``++policy.KEY=…``, as in every other command (policy files list only the keys that differ
    from the class's defaults).  Returns the exit status."""
    import os
    import subprocess

    from .compose import hydra_overrides

    pkg_parent = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    argv = [hydra_overrides([o])[0] if o.lstrip("+~").startswith("policy.") else o for o in overrides]
    from .hydra_app import CHILD

    return subprocess.run([sys.executable, "-c", CHILD, "-m", *argv], env=env).returncode


def cmd_sweep(args) -> int:
    overrides = list(args.overrides)
    if args.cfg:
        if args.multirun:
            raise ConfigError(
                "--cfg",
                args.cfg,
                "",
                message="--cfg job prints one config: leave out -m (or give one value per key)",
            )
        from .cli import print_config
        from .sweep import make_plan

        return print_config(make_plan(overrides).hash_cfg)  # what its lmt_config records
    command = "lmtk sweep " + " ".join(([] if not args.multirun else ["-m"]) + overrides)
    if args.multirun:
        _validate_multirun(overrides)
        d, fixed = multirun_dir(overrides)
        again = f"plus hydra.sweep.dir={d} " if fixed != overrides else ""
        resume = f"the same command {again}resumes it (its jobs and chunks are in {d})" if d else ""
        where = d or "the multirun directory above"
        try:
            rc = run_multirun(fixed)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(resume) from None
        if rc == 130:  # the child's Ctrl-C (a SIGINT to it alone)
            raise KeyboardInterrupt(resume)
        if rc:
            raise ConfigError(
                "multirun",
                overrides,
                "",
                message=f"the Hydra multirun failed (exit status {rc}); its jobs' logs are in {where}",
            )
        print(f"multirun done: merge the jobs with `lmtk collect {where}`")
        return 0
    from .sweep import run

    t = time.perf_counter()
    ds, info = run(overrides, command=command, log=lambda m: print(m, file=sys.stderr))
    plan = info["plan"]
    shape = " x ".join(f"{d} {n}" for d, n in zip(plan.dims, plan.shape))
    engines = (
        sorted({str(e) for e in ds["engine"].values.ravel()})
        if "engine" in ds
        else [ds.attrs.get("lmt_engine", str(plan.cfg.get("engine", "page")))]
    )
    print(
        f"experiment {plan.name}: {plan.n_points} points ({shape}), engine {'/'.join(engines)}, "
        f"config {info['config_hash']}"
    )
    if info["cached"]:
        src = info.get("converted_from")
        converted = f", converted from {src.name} (removed)" if src else ""
        print(
            f"served from cache: {info['path']}{converted} (same config hash; sweep.cache=false recomputes)"
        )
    else:
        reused = f", {info['chunks_reused']} resumed from .partial" if info["chunks_reused"] else ""
        print(
            f"computed {info['chunks_computed']} of {info['chunks']} chunks{reused} "
            f"({plan.settings['executor']}) in {time.perf_counter() - t:.1f} s"
        )
    if not args.quiet:
        print()
        print(summary_table(ds))
        print()
    out = Path(info["path"])
    if plan.variant:
        print(
            f"a variant of experiment {plan.name} ({plan.variant_reason}): kept apart from "
            f"the canonical {out.parents[2] / out.name}"
        )
    print(f"wrote {out}" if not info["cached"] else f"dataset {out}")
    print(f"      {out.parent / 'provenance.yaml'}")
    if not args.no_plot and "total_time" in ds:
        png = out.parent / f"{plan.name}.png"
        fresh = info["cached"] and png.exists() and png.stat().st_mtime >= out.stat().st_mtime
        fig = png if fresh else quicklook(ds, png)
        if fig:
            print(f"      {fig}")
            note = quicklook_layout(ds)["note"]
            if note:
                print(f"      note: {note}")
    if info.get("partials_note"):
        print(info["partials_note"], file=sys.stderr)
    return 0


def cmd_collect(args) -> int:
    from .sweep import collect

    ds, out = collect(args.directory, args.output)
    print(
        f"collected {len(__import__('json').loads(ds.attrs['lmt_runs']))} runs: "
        + ", ".join(f"{d} {n}" for d, n in ds.sizes.items())
    )
    print(f"wrote {out}")
    return 0


def add_commands(sub) -> None:
    from .cli import add_cfg_option

    s = sub.add_parser(
        "sweep",
        help="run an experiment's sweep into one Dataset (results/<experiment>/<experiment>.nc)",
        description="Run the sweep of configs/experiment/NAME.yaml. Overrides as in "
        "`lmtk run`; sweep.executor=inline|processes|dask, "
        "sweep.workers=N, debug=default shrinks it. With -m, a Hydra "
        "multirun (launchers: hydra/launcher=joblib|submitit_local|"
        "submitit_slurm); merge its jobs with `lmtk collect DIR`.",
    )
    s.add_argument("overrides", nargs="*", help="experiment=NAME and Hydra overrides")
    s.add_argument(
        "-m", "--multirun", action="store_true", help="Hydra multirun over comma-separated override values"
    )
    s.add_argument("--no-plot", action="store_true", help="do not write the quick-look PNG")
    add_cfg_option(s)
    s.add_argument("-q", "--quiet", action="store_true", help="no table")
    s.set_defaults(func=cmd_sweep)
    c = sub.add_parser("collect", help="merge the jobs of a Hydra multirun into one Dataset")
    c.add_argument("directory", help="the multirun directory (multirun/<date>/<time>)")
    c.add_argument("-o", "--output", help="file to write (default DIR/<experiment>.nc)")
    c.set_defaults(func=cmd_collect)
