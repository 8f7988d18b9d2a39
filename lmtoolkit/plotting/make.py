"""``lmtk figures [ID…] [overrides]``: every paper figure (PNG + PDF + YAML sidecar).

Each figure's Dataset comes from ``lmt.sweep(["experiment=<experiment>", *overrides])``: the
sweep serves it from its cache (``results/<experiment>/<experiment>.nc``, keyed by the config
hash) or runs it.  Figures go to ``<results>/figures/<id>_<slug>.{png,pdf}``; the sidecar
``<id>_<slug>.yaml`` records the caption, the dataset used (the file the sweep read or wrote,
its config hash, its variant), the git commit and the command that made it.

A figure of a *variant* (overrides that change the experiment's points, e.g.
``sweep.replicates=1``: the sweep keeps it in ``results/<exp>/variants/<id>/``) goes beside
that variant, to ``results/<exp>/variants/<id>/figures/``: it never replaces the canonical
figure, as ``debug=default`` never does (``results/debug/figures/``).

    lmtk figures                 # all figures
    lmtk figures fig02 fig05     # some (ids, numbers or slugs)
    lmtk figures debug=default   # shrunk sweeps (results/debug/figures/), for quick checks
    lmtk figures fig01 vm=medium # a variant: results/quickstart/variants/<id>/figures/
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..io import check_writable_dir
from .registry import FIGURES, FigureSpec, get

FORMATS = ("png", "pdf")


def experiment_dataset(experiment: str, overrides: Sequence[str] = ()):
    """The experiment's Dataset from its sweep (any task; cached on disk after the first run)."""
    return experiment_result(experiment, overrides)[0]


def experiment_result(experiment: str, overrides: Sequence[str] = ()):
    """``(Dataset, info)`` of the experiment's sweep (:func:`lmtoolkit.sweep.run`): ``info``
    names the file read or written (``path``), its ``config_hash`` and its ``plan``."""
    from ..sweep import run

    return run([f"experiment={experiment}", *overrides])


def results_dir(overrides: Sequence[str] = ()) -> Path:
    """The results dir the config composed from ``overrides`` names."""
    from .. import paths
    from ..runner import compose

    return paths.results_dir(compose(list(overrides)))


def _dataset_path(ds, experiment: str, overrides: Sequence[str]) -> str | None:
    """The file ``ds`` was read from, for a Dataset given without its sweep's ``info``: where it
    says it came from, else the file the sweep of these overrides keeps — if that file's config
    hash is the Dataset's (never a file of another config: a guessed canonical path named
    ``quickstart.nc`` for a variant's data, and a ``.nc`` for a zarr result)."""
    path = ds.attrs.get("lmt_path") or ds.encoding.get("source")
    if path:
        return str(path)
    import contextlib

    import yaml

    from ..sweep import make_plan

    with contextlib.suppress(Exception):  # no plan for these overrides: the path is unknown
        out = make_plan([f"experiment={experiment}", *overrides], expand=False).out_path
        rec = yaml.safe_load((out.parent / "provenance.yaml").read_text()) or {}
        if out.exists() and rec.get("config_hash") == ds.attrs.get("lmt_config_hash"):
            return str(out)
    return None


def _dataset_entry(ds, experiment: str, path) -> dict:
    """The sidecar's record of the dataset a figure shows: ``path`` is the file it came from."""
    return {
        "experiment": experiment,
        "path": str(path) if path else None,
        "config_hash": str(ds.attrs.get("lmt_config_hash", "")),
        "variant": str(ds.attrs.get("lmt_variant", "") or "") or None,
        "overrides": json.loads(ds.attrs.get("lmt_overrides", "[]") or "[]"),
        "created_at": str(ds.attrs.get("lmt_created_at", "")),
        "git_commit": str(ds.attrs.get("lmt_git_commit", "")),
    }


def save_figure(
    fig,
    spec: FigureSpec,
    datasets: list[dict],
    out_dir: Path,
    command: str,
    seconds: float | None = None,
    thumbnails: Path | None = None,
) -> dict:
    """Write ``fig`` as PNG and PDF plus the YAML sidecar; return the sidecar's content."""
    import matplotlib.pyplot as plt
    import yaml

    from ..io import atomic_path, write_text
    from ..provenance import git_state, now

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for fmt in FORMATS:
        target = out_dir / f"{spec.stem}.{fmt}"
        with atomic_path(target, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt)
        files.append(target.name)
    if thumbnails is not None:
        thumbnails = Path(thumbnails)
        thumbnails.mkdir(parents=True, exist_ok=True)
        with atomic_path(thumbnails / f"{spec.stem}.png", suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=55)
    plt.close(fig)
    commit, dirty = git_state()
    side = {
        "id": spec.id,
        "files": files,
        "caption": spec.caption,
        "experiment": spec.experiment,
        "notebook": f"notebooks/{spec.notebook}.ipynb",
        "function": f"{spec.function.__module__}.{spec.function.__name__}",
        "datasets": datasets,
        "git_commit": commit,
        "git_dirty": dirty,
        "command": command,
        "created_at": now(),
    }
    if seconds is not None:
        side["seconds"] = round(float(seconds), 2)
    write_text(
        out_dir / f"{spec.stem}.yaml", yaml.safe_dump(side, sort_keys=False, width=100, allow_unicode=True)
    )
    return side


def make_figure(
    spec: FigureSpec | str,
    overrides: Sequence[str] = (),
    out_dir: Path | None = None,
    command: str | None = None,
    thumbnails: Path | None = None,
    ds=None,
) -> dict:
    """Make one registered figure (running or reusing its experiment); return its sidecar plus
    ``dir``, the directory its files went to.

    The directory: ``out_dir`` if given, else ``<results>/figures/`` for the experiment's
    canonical result (``debug=default``: ``results/debug/figures/``) and, for a variant
    (overrides that change the points), ``figures/`` beside the variant's Dataset
    (``results/<exp>/variants/<id>/figures/``), so a variant never replaces a canonical figure.
    """
    spec = get(spec) if isinstance(spec, str) else spec
    t0 = time.perf_counter()
    overrides = list(overrides)
    if thumbnails is not None:
        _refuse_variant_thumbnails(overrides)
    why = ""  # what makes the result a variant
    if ds is None:
        ds, info = experiment_result(spec.experiment, overrides)
        path, why = info["path"], info["plan"].variant_reason
    else:
        path = _dataset_path(ds, spec.experiment, overrides)
    if thumbnails is not None and ds.attrs.get("lmt_variant"):  # (configs/local/default.yaml)
        from ..errors import ConfigError

        raise ConfigError(
            "--thumbnails",
            str(thumbnails),
            "",
            message=f"--thumbnails redraws the README's thumbnails from the canonical results: "
            f"experiment {spec.experiment}'s is a variant (lmt_variant={ds.attrs['lmt_variant']}"
            f"{f': {why}' if why else ''})",
        )
    if out_dir:
        out_dir = Path(out_dir)
    elif ds.attrs.get("lmt_variant"):
        if not path:
            from ..errors import ConfigError

            raise ConfigError(
                "ds",
                ds.attrs.get("lmt_variant"),
                "",
                message=f"{spec.id}: a variant's Dataset (lmt_variant={ds.attrs['lmt_variant']}) whose "
                "file is unknown: give out_dir (a variant's figure never goes to <results>/figures/)",
            )
        out_dir = Path(path).parent / "figures"
    else:
        out_dir = results_dir(overrides) / "figures"
    fig = spec.function(ds)
    command = command or f"lmtoolkit.plotting.make.make_figure({spec.id!r}, {overrides!r})"
    side = save_figure(
        fig,
        spec,
        [_dataset_entry(ds, spec.experiment, path)],
        out_dir,
        command,
        time.perf_counter() - t0,
        thumbnails,
    )
    return {**side, "dir": str(out_dir), "variant_reason": why}


def _refuse_variant_thumbnails(overrides: Sequence[str]) -> None:
    """``--thumbnails`` refreshes the README's images: from canonical results only."""
    from ..errors import ConfigError
    from ..sweep.plan import is_canonical

    if not is_canonical(list(overrides)):
        raise ConfigError(
            "--thumbnails",
            " ".join(overrides),
            "",
            message="--thumbnails redraws the README's thumbnails from the canonical results: leave "
            "out the overrides that change the experiments' points ("
            + " ".join(o for o in overrides if not is_canonical([o]))
            + ")",
        )


def make_figures(
    ids: Iterable[str] | None = None,
    overrides: Sequence[str] = (),
    out_dir: Path | None = None,
    command: str | None = None,
    thumbnails: Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Make the given figures (default: all of :data:`FIGURES`); return their sidecars."""
    specs = [get(i) for i in ids] if ids else list(FIGURES.values())
    out = []
    t_all = time.perf_counter()
    for i, spec in enumerate(specs, 1):
        if progress:
            print(
                f"[{i}/{len(specs)}] {spec.stem:32s} experiment={spec.experiment} …",
                end="",
                file=sys.stderr,
                flush=True,
            )
        side = make_figure(spec, overrides, out_dir, command, thumbnails)
        if progress:
            print(f" {side['seconds']:.1f} s", file=sys.stderr, flush=True)
        out.append(side)
    if progress:
        print(f"{len(out)} figure(s) in {time.perf_counter() - t_all:.1f} s", file=sys.stderr)
    return out


def check_figures(sides: list[dict], overrides: Sequence[str] = ()) -> str:
    """Notebook 30's claims on :func:`make_figures`' sidecars, one line each;
    :class:`~lmtoolkit.errors.ClaimError` naming those that fail (it was a bare ``assert`` on
    their count): every figure of :data:`FIGURES` was made, and each one's files
    (:data:`FORMATS` and its ``.yaml`` sidecar) are in its ``dir``, drawn from a Dataset with a
    config hash."""
    from ..errors import report_claims

    made = [s["id"] for s in sides]
    missing = [i for i in FIGURES if i not in made]
    checks = [
        (
            f"{len(made)} of the registry's {len(FIGURES)} figures made"
            + (f" (missing: {', '.join(missing)})" if missing else ""),
            not missing and len(made) == len(FIGURES),
        )
    ]
    for s in sides:
        stem = Path(s["files"][0]).stem
        names = [f"{stem}.{fmt}" for fmt in (*FORMATS, "yaml")]
        absent = [n for n in names if not (Path(s["dir"]) / n).is_file()]
        digest = ", ".join(str(d.get("config_hash") or "(none)") for d in s["datasets"])
        checks.append(
            (
                f"{s['id']}: {stem}.{{{','.join(n.rsplit('.', 1)[1] for n in names)}}} in {s['dir']}"
                + (f" (missing: {', '.join(absent)})" if absent else "")
                + f"; dataset config hash {digest}",
                not absent and all(d.get("config_hash") for d in s["datasets"]),
            )
        )
    return report_claims(checks, "notebook 30's claims", " ".join(overrides))


def show(sides: list[dict], out_dir: Path | None = None) -> None:
    """Display made figures in a notebook: each PNG under its id and caption (from the ``dir``
    :func:`make_figure` returns; ``out_dir`` for sidecars without one)."""
    from IPython.display import Image, Markdown, display

    for s in sides:
        display(Markdown(f"**{s['id']}** — {s['caption']}"))
        display(Image(filename=str(Path(s.get("dir") or out_dir) / s["files"][0]), width=820))


# -- CLI -------------------------------------------------------------------------------------------
def cmd_figures(args) -> int:
    ids = [a for a in args.items if "=" not in a]
    if args.list:  # the named figures only (they were ignored: --list fig01 listed all 11)
        for s in [get(i) for i in ids] if ids else FIGURES.values():
            print(f"{s.stem:32s} experiment={s.experiment:26s} notebooks/{s.notebook}.ipynb")
        return 0
    overrides = [a for a in args.items if "=" in a]
    from ..sweep.execute import usable_cores

    if usable_cores() > 1 and not any(o.lstrip("+~").startswith("sweep.executor") for o in overrides):
        # the experiments' chunks on every core (a run-time key: same results, same cache)
        overrides.append("sweep.executor=processes")
    for d, key in ((args.output, "--output"), (args.thumbnails, "--thumbnails")):
        if d:
            check_writable_dir(d, key)
    command = "lmtk figures " + " ".join(shlex.quote(a) for a in args.items)
    if args.thumbnails:
        command += f" --thumbnails {shlex.quote(args.thumbnails)}"
    from ..notebooks import interactive_terminal

    sides = make_figures(
        ids or None,
        overrides,
        Path(args.output) if args.output else None,
        command=command.strip(),
        thumbnails=Path(args.thumbnails) if args.thumbnails else None,
        progress=interactive_terminal(),
    )  # quiet in CI logs and pipes
    canonical = results_dir(overrides) / "figures"
    for s in sides:
        variant = s["datasets"][0].get("variant")
        if variant and not args.output:
            why = s.get("variant_reason") or "its config is not the canonical one"
            print(
                f"a variant of experiment {s['experiment']} ({why}): kept apart "
                f"from the canonical {canonical / s['files'][0]}"
            )
        print(f"wrote {Path(s['dir']) / s['files'][0]} (+ .pdf, .yaml)")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "figures", help="make the paper figures (PNG, PDF, YAML sidecar) from the experiments' Datasets"
    )
    p.add_argument(
        "items",
        nargs="*",
        metavar="ID|key=value",
        help="figure ids (fig01, 1 or quickstart; default all) and Hydra overrides "
        "for the experiments (e.g. debug=default)",
    )
    p.add_argument(
        "-o",
        "--output",
        help="directory for the figures (default <results>/figures; a variant's: "
        "figures/ beside its Dataset)",
    )
    p.add_argument(
        "--thumbnails",
        metavar="DIR",
        help="also write small PNG thumbnails there (the README's are docs/img)",
    )
    p.add_argument(
        "--list", action="store_true", help="list the figures (those named, if any: --list fig01 3) and exit"
    )
    p.set_defaults(func=cmd_figures)
