"""``lmtk fit LOG [overrides] --out FIT.yaml`` and ``lmtk whatif FIT.yaml [overrides] --out OUT.nc``.

Bad input (an unreadable or truncated log, a bad override, a damaged FIT file) is one line
``lmtk: error: …`` and exit status 2 (:class:`~lmtoolkit.errors.ConfigError`, printed by
:func:`lmtoolkit.cli.main`).  Files are written atomically (:mod:`lmtoolkit.io`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import sys
from pathlib import Path

from ..errors import ConfigError

#: what ``--figure`` writes (matplotlib's formats of the README's figures)
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def _results_root(overrides) -> Path:
    """``paths.results_dir`` as the overrides or ``$LMT_RESULTS_DIR`` set it (no composition)."""
    for o in overrides:
        k, _, v = str(o).lstrip("+").partition("=")
        if k.strip() == "paths.results_dir" and v:
            return Path(v)
    return Path(os.environ.get("LMT_RESULTS_DIR") or "results")


def default_fit_path(log, overrides) -> Path:
    """``<results>/fits/fit/<log stem>.yaml`` (the ``fit`` directory makes it a config group:
    ``lmtk run hydra.searchpath=[file://<results>/fits] +fit=<stem>``)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(log).stem) or "fit"
    if overrides:
        stem += "-" + hashlib.sha1(" ".join(overrides).encode()).hexdigest()[:8]
    return _results_root(overrides) / "fits" / "fit" / f"{stem}.yaml"


def _check_default_is_ours(out: Path, log) -> None:
    """The default FIT path is named by the log's file name: a FIT file there fitted from
    another log of the same name (``d1/x.jsonl``, ``d2/x.jsonl``) would be replaced silently,
    so that is refused, naming both and ``--out``."""
    if not out.is_file():
        return
    from .fitfile import read_fit

    try:
        src = str((read_fit(out, check_values=False).fit.get("log") or {}).get("source", ""))
    except ConfigError:
        return  # not a readable FIT file: replaced as before
    if src and Path(src).resolve() != Path(log).resolve():
        raise ConfigError(
            "--out",
            str(out),
            "",
            message=f"{out} holds the fit of another log ({src}); give --out FILE for the fit of {log}",
        )


def _warn_mismatch(quality: dict, fit_path) -> None:
    """One line on stderr when the fit does not reproduce its log (:func:`.fit.mismatch`)."""
    import sys

    from .fit import mismatch

    m = mismatch(quality or {})
    if m:
        print(
            f"lmtk: warning: the fit {fit_path} does not reproduce its log ({m}): check the settings "
            "stated for the run (cap, downtime limit, capabilities, dirty_clear); what-ifs from it "
            "describe the fitted migration, not the observed one",
            file=sys.stderr,
        )


def cmd_fit(args) -> int:
    from ..io import check_writable
    from .fit import fit_log
    from .fitfile import run_command, write_fit

    if args.bootstrap < 0:
        raise ConfigError("--bootstrap", args.bootstrap, "resamples over rounds: an integer >= 0")
    src = Path(args.log)
    if not args.out and src.exists() and not src.is_file() and not src.is_dir():
        # a pipe (lmtk fit <(...): /dev/fd/63 every time) or another stream: its name says nothing
        # of what it holds, and the second fit replaced the first's FIT file
        raise ConfigError(
            "--out",
            None,
            "",
            message=f"{args.log} is not a regular file (a pipe, lmtk fit <(...)): its name does not "
            "identify the log, so there is no default FIT file for it; give --out FIT.yaml",
        )
    out = Path(args.out) if args.out else default_fit_path(args.log, args.overrides)
    check_writable(out, "--out" if args.out else "paths.results_dir", (".yaml", ".yml"))
    if not args.out:
        _check_default_is_ours(out, args.log)
    res = fit_log(args.log, args.overrides, bootstrap=args.bootstrap, seed=args.seed, engine=args.engine)
    write_fit(res, out)
    print(res.summary())
    print(f"\nwrote {out}")
    _warn_mismatch(res.quality, out)
    print(f"what-ifs:   lmtk whatif {shlex.quote(str(out))} network=10gbe policy=qemu,hybrid,vmware,hyperv")
    print(f"as config:  {run_command(out)}")
    return 0


def cmd_whatif(args) -> int:
    from ..io import DATASET_SUFFIXES, check_writable, write_dataset
    from .fitfile import read_fit
    from .plot import fig_whatif, whatif_table
    from .whatif import DEFAULT_SEEDS, check_seeds, whatif

    ff = read_fit(args.fit)  # a bad FIT file is an error before anything else
    check_seeds(args.seeds)
    if args.samples is not None and args.samples < 0:
        raise ConfigError(
            "--samples", args.samples, "bootstrap parameter sets: an integer >= 0 (0: no bands)"
        )
    if args.out:
        out = Path(args.out)
    else:
        # named by the FIT file's content, the overrides, --samples and --seeds: two FIT files of
        # one name in two directories (a/run.yaml, b/run.yaml) wrote one file, the second over the first
        h = hashlib.sha1(Path(args.fit).read_bytes())
        h.update(("\0" + " ".join(args.overrides) + f"\0{args.samples}").encode())
        if args.seeds != DEFAULT_SEEDS:  # (the default keeps the names of earlier results)
            h.update(f"\0seeds={args.seeds}".encode())
        out = _results_root(args.overrides) / "whatif" / f"{Path(args.fit).stem}_{h.hexdigest()[:8]}.nc"
    check_writable(out, "--out" if args.out else "paths.results_dir", DATASET_SUFFIXES)
    fig_path = Path(args.figure) if args.figure else None
    if fig_path is not None:
        check_writable(fig_path, "--figure", FIGURE_SUFFIXES)
    command = "lmtk whatif " + " ".join([args.fit] + list(args.overrides))
    ds = whatif(
        args.fit,
        args.overrides,
        samples=args.samples,
        command=command,
        log=lambda m: print(m, file=sys.stderr),
        seeds=args.seeds,
    )
    write_dataset(ds, out)
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        tab = whatif_table(ds)
        cols = [c for c in tab.columns if not c.startswith(("downtime_", "transferred_"))]
        print(tab[cols].to_string())
    print(observed_line(ds))
    print(f"\nwrote {out}")
    _warn_mismatch(ff.fit.get("quality"), args.fit)
    if fig_path is not None:
        from ..io import atomic_path

        fig = fig_whatif(ds)
        with atomic_path(fig_path, suffix=fig_path.suffix) as tmp:
            fig.savefig(tmp, format=fig_path.suffix.lstrip(".") or "png")
        print(f"wrote {fig_path}")
    return 0


def observed_line(ds) -> str:
    """The observed run under the what-if table: the log's total time and, where the log shows
    host stalls, the time without them, which the fitted run (and every what-if) matches."""
    obs = float(ds.observed_total_time)
    stall = float(ds.observed_stall_time) if "observed_stall_time" in ds else 0.0
    time = f"total time {obs:.3f} s"
    if stall > 0:
        n = int(ds.observed_stall_time.attrs.get("stalls", 0))
        free = float(ds.observed_total_time_stall_free)
        time += (
            f" in the log, {free:.3f} s without its {n} host stall{'s' if n != 1 else ''} ({stall:.3f} s), "
            f"which the fit cut out: compare the rows with {free:.3f} s"
        )
    return (
        f"(observed run: {time}, downtime {float(ds.observed_downtime) * 1000:.1f} ms, "
        f"{float(ds.observed_transferred) / 2**20:.1f} MiB)\n" + noise_line(ds)
    )


def noise_line(ds) -> str:
    """What a point is and what its band covers, under the what-if table."""
    k, s0 = int(ds.attrs.get("lmt_seeds", 1)), int(ds.attrs.get("lmt_seed_first", 0))
    n = int(ds.attrs.get("lmt_band_samples", 0))
    if k > 1:
        point = (
            f"points: mean of {k} page-engine runs, seeds {s0}-{s0 + k - 1} in every row (--seeds); "
            f"seed sd: one run's spread, a mean's is about sd/{k**0.5:.1f}"
        )
    else:
        point = f"points: one run, seed {s0}" + (
            " (the fluid engine is deterministic)" if ds.attrs.get("lmt_engine") == "fluid" else ""
        )
    bands = (
        f"bands: 5-95 % of {n} bootstrap parameter sets and the seeds' min-max, in quadrature; "
        "not the model's error (the fit's quality line), the observed run may fall outside"
        if n
        else f"bands: {ds.attrs.get('lmt_bands', 'none')}"
    )
    return f"({point}; {bands})"


def add_commands(sub) -> None:
    from .whatif import DEFAULT_SEEDS, MAX_SEEDS

    f = sub.add_parser(
        "fit",
        help="fit the guest of a real migration log (QMP query-migrate JSON, libvirt "
        "domjobinfo / job stats, testbed record) -> FIT.yaml",
    )
    f.add_argument(
        "log",
        help="the log: QMP query-migrate replies with _t (JSON list or lines), virsh "
        "domjobinfo text, virDomainGetJobStats key=value, or a testbed .nc record",
    )
    f.add_argument(
        "overrides",
        nargs="*",
        help="what you know about the run, e.g. "
        "policy.max_bandwidth_mib_s=100 policy.downtime_limit_ms=300 "
        "policy.dirty_clear=sync (TCG); workload=hotcold|zipf to fit "
        "that shape",
    )
    f.add_argument(
        "-o",
        "--out",
        help=(
            "FIT.yaml to write (default <results>/fits/fit/<log>.yaml, <log>-<hash>.yaml with "
            "overrides; the path is printed; required for a log from a pipe, lmtk fit <(...))"
        ),
    )
    f.add_argument(
        "--engine",
        default="page",
        choices=("page", "fluid"),
        help="page (default): the fluid engine's search corrected onto the page engine (space "
        "mapping; the FIT file runs the page engine); fluid: the fluid engine alone (faster, "
        "its estimate carries the fluid engine's error on the pages a sync adds)",
    )
    f.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples over rounds (default 200)")
    f.add_argument("--seed", type=int, default=0, help="seed of the optimiser and the bootstrap")
    f.set_defaults(func=cmd_fit)

    w = sub.add_parser(
        "whatif",
        help="simulate a fitted guest (FIT.yaml) under other settings, with bootstrap bands -> a Dataset",
    )
    w.add_argument("fit", help="a FIT.yaml written by lmtk fit")
    w.add_argument(
        "overrides",
        nargs="*",
        help="settings to change, e.g. network=10gbe policy=vmware; "
        "key=a,b,c makes an axis (policy=qemu,hybrid,vmware "
        "policy.max_bandwidth_mib_s=64,128)",
    )
    w.add_argument(
        "-o",
        "--out",
        help="netCDF file to write (default <results>/whatif/<fit>_<hash>.nc, the hash of the FIT "
        "file's content, the overrides and --samples)",
    )
    w.add_argument(
        "--samples",
        type=int,
        default=None,
        help="bootstrap parameter sets for the bands (default: all the FIT file keeps, <= 100)",
    )
    w.add_argument(
        "--seeds",
        type=int,
        default=DEFAULT_SEEDS,
        help=f"page-engine runs per point, averaged; the same seeds in every row (default {DEFAULT_SEEDS}, "
        f"at most {MAX_SEEDS}: the mean's error is sd/sqrt(N); "
        "1: one run, whose round count can move the total time by a whole pre-copy round)",
    )
    w.add_argument("--figure", help="also write the what-if figure (PNG/PDF/SVG)")
    w.set_defaults(func=cmd_whatif)


def _register_validation() -> None:
    # `lmtk validate whatif`: the dataset lives in lmtoolkit.logs.validate
    from .validate import register

    register()


_register_validation()
