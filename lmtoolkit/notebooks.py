"""Notebooks: the config cell's :func:`compose` and :func:`execute` through papermill.

The notebook contract (README, "Notebooks and figures"): the first cell, tagged
``parameters``, holds only

    overrides: list[str] = []
    smoke: bool = False

(plus ``experiment: str = "quickstart"`` in the experiment notebook, :data:`TEMPLATE`) and the
second composes the config through the package::

    import lmtoolkit as lmt
    cfg = lmt.notebooks.compose(overrides, smoke)                         # or, in 20_experiment:
    cfg = lmt.notebooks.compose(overrides, smoke, experiment=experiment)

``cfg`` is the resolved Hydra config (``cfg.vm.memory_gib``…) plus the effective overrides
(``cfg.overrides``: ``experiment=NAME`` if given, the notebook's, and ``debug=default`` in
smoke mode) and helpers that call the package: ``cfg.simulate()``, ``cfg.sweep()``,
``cfg.save(**values)`` (the notebook's summary, ``results/notebooks/<name>.json``, with one
``config_hash``: the ``lmt_config_hash`` of the Dataset its config makes) and, for an
experiment, ``cfg.describe()``, ``cfg.table(ds)``, ``cfg.figure(ds)``, ``cfg.summary(ds)``
(what to show comes from data: the experiment's ``title`` and its figure in
:mod:`lmtoolkit.plotting.registry`).

**One notebook for every experiment.**  ``notebooks/20_experiment.ipynb`` is parameterized
by ``experiment``; papermill runs it once per experiment (``configs/experiment/*.yaml``).  A
run is named ``20_<experiment>``: the executed copy is ``results/notebooks/20_<experiment>.ipynb``
and its summary ``20_<experiment>.json``.  ``lmtk notebooks quickstart`` (or ``20_quickstart``,
or ``20 -p experiment=quickstart``) runs it for one experiment; ``lmtk notebooks 20`` for all.

:func:`execute` runs a notebook on a real Jupyter kernel (the project's ``lmtoolkit`` kernel)
through papermill and writes the executed copy, with its parameters, to
``results/notebooks/<run name>.ipynb``; a failing cell raises :class:`NotebookError` naming the
notebook and the cell.  ``lmtk notebooks [NAME…] [--smoke] [-p key=value]`` is the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .paths import notebook_dir, project_root
from .runner import compose as _compose

KERNEL_NAME = "lmtoolkit"
KERNEL_DISPLAY_NAME = "Python (lmtoolkit)"
#: what smoke mode adds to a notebook's overrides (a tiny, fast version of every run)
SMOKE_OVERRIDES = ("debug=default",)
#: environment variables the kernel reads (set by :func:`execute`)
ENV_NAME, ENV_OUT = "LMT_NOTEBOOK", "LMT_NOTEBOOK_OUT"
#: the notebook papermill runs once per experiment (parameter ``experiment``)
TEMPLATE = "20_experiment"
#: what each notebook hands its ``overrides`` to (a test reads the notebooks' code to check):
#: ``sweep`` — ``lmt.sweep`` (``cfg.sweep()``, ``lmt.plotting.make.make_figures``), whose
#: settings the ``sweep.*`` keys are; ``whatif`` — ``lmt.logs.whatif.whatif`` (its own checks:
#: ``sweep.axes.*`` add what-if axes); ``migration`` — single migrations: ``lmt.simulate``
#: (through ``lmt.teaching``, ``lmt.analytic``) or a run built from the composed config as
#: ``teaching.dirty_bitmap_rounds`` and ``energy_reference`` build it, which read no sweep key
OVERRIDES_TO = {
    "00_live_migration_basics": "migration",
    "01_the_network_matters": "migration",
    "02_vmware_vs_hyperv": "migration",
    "03_postcopy_and_hybrid": "migration",
    "04_numa_and_ecc": "migration",
    "10_simulator_vs_analytic": "migration",
    "11_page_vs_fluid": "migration",
    "12_whatif_from_a_real_log": "whatif",
    "13_migration_energy": "migration",
    TEMPLATE: "sweep",
    "30_paper_figures": "sweep",
}


def list_notebooks() -> list[str]:
    """Names (file stems) of the shipped notebooks, in order."""
    return sorted(p.stem for p in notebook_dir().glob("[0-9][0-9]_*.ipynb"))


def list_experiments() -> list[str]:
    """The experiments (``configs/experiment/*.yaml``): the runs of :data:`TEMPLATE`."""
    from .paths import group_options

    return group_options("experiment")


def run_name(stem: str, experiment: str | None = None) -> str:
    """What a run is called (executed copy, summary): the stem, or ``20_<experiment>``."""
    return f"{stem.split('_', 1)[0]}_{experiment}" if experiment else stem


def _experiment_alias(key: str) -> str | None:
    """``quickstart`` or ``20_quickstart`` -> ``quickstart`` (an experiment run of the template)."""
    experiments = list_experiments()
    prefix = TEMPLATE.split("_", 1)[0] + "_"
    if key in experiments:
        return key
    if key.startswith(prefix) and key[len(prefix) :] in experiments:
        return key[len(prefix) :]
    return None


def resolve_target(name: str) -> tuple[str, str | None]:
    """``(notebook stem, experiment or None)`` for a name given to ``lmtk notebooks``: a
    notebook's stem, file name, number (``"00"``) or slug, or an experiment's name
    (``quickstart``, ``20_quickstart``: :data:`TEMPLATE` for that experiment)."""
    names = list_notebooks()
    key = Path(str(name)).name.removesuffix(".ipynb")
    if key in names:
        return key, None
    hits = [n for n in names if n.split("_", 1)[0] == key or n.split("_", 1)[-1] == key]
    exp = _experiment_alias(key) if TEMPLATE in names else None
    if exp is not None and hits:
        raise ConfigError(
            "notebook",
            name,
            "",
            message=(
                f"notebook {name!r} is ambiguous: notebook {hits[0]} or the experiment notebook for "
                f"experiment {exp} (say {hits[0].split('_', 1)[0]} or {run_name(TEMPLATE, exp)})"
            ),
        )
    if exp is not None:
        return TEMPLATE, exp
    if len(hits) == 1:
        return hits[0], None
    raise ConfigError(
        "notebook",
        name,
        "one of " + ", ".join(names) + " or an experiment (" + ", ".join(list_experiments()) + ")",
    )


def _split_experiment(overrides: Sequence[str]) -> tuple[str | None, list[str]]:
    """``experiment=NAME`` taken out of ``overrides`` (the template's parameter)."""
    exp, rest = None, []
    for o in overrides:
        k, _, v = str(o).partition("=")
        if k.strip() == "experiment" and v:
            exp = v.strip()
        else:
            rest.append(str(o))
    return exp, rest


def targets(
    names: Iterable[str] | None = None, overrides: Sequence[str] = ()
) -> list[tuple[str, str | None]]:
    """The runs ``lmtk notebooks NAMES -p OVERRIDES`` makes, in order: ``(stem, experiment)``.
    The template runs once per experiment (or for ``-p experiment=NAME`` only)."""
    chosen, _ = _split_experiment(overrides)
    if chosen is not None and chosen not in list_experiments():
        from difflib import get_close_matches

        close = get_close_matches(chosen, list_experiments(), n=1)
        raise ConfigError(
            "experiment",
            chosen,
            "",
            message=(
                f"unknown experiment '{chosen}'"
                + (f"; did you mean {close[0]}?" if close else "")
                + f" (available: {', '.join(list_experiments())})"
            ),
        )
    out: list[tuple[str, str | None]] = []
    for stem, exp in [resolve_target(n) for n in names] if names else [(n, None) for n in list_notebooks()]:
        if stem == TEMPLATE and exp is None:
            out += [(stem, e) for e in ([chosen] if chosen else list_experiments())]
        else:
            out.append((stem, exp))
    return out


# -- inside a notebook ---------------------------------------------------------------------------
def _results_root(overrides: Sequence[str]) -> Path:
    from .paths import results_dir

    return results_dir(_compose(list(overrides)))


class NotebookConfig:
    """The composed config of a notebook run (attribute access goes to the Hydra config)."""

    def __init__(
        self,
        config,
        overrides: list[str],
        user_overrides: list[str],
        smoke: bool,
        name: str,
        out_dir: Path,
        experiment: str | None = None,
    ):
        self.config = config
        self.overrides = overrides
        self.user_overrides = user_overrides
        self.smoke = smoke
        self.name = name
        self.out_dir = out_dir
        self.experiment = experiment

    def __getattr__(self, key):
        if key == "config":
            raise AttributeError(key)
        return getattr(self.config, key)

    def __getitem__(self, key):
        return self.config[key]

    def __repr__(self) -> str:
        exp = f"experiment={self.experiment!r}, " if self.experiment else ""
        return f"NotebookConfig(name={self.name!r}, {exp}smoke={self.smoke}, overrides={self.overrides!r})"

    def _repr_html_(self) -> str:
        """What the config cell shows in a notebook: one readable line, not a repr."""
        import html

        parts = [f"<b>{html.escape(self.name)}</b>"]
        if self.experiment:
            parts.append(f"experiment <code>{html.escape(self.experiment)}</code>")
        parts.append(
            "overrides: "
            + (", ".join(f"<code>{html.escape(o)}</code>" for o in self.overrides) or "none (the defaults)")
        )
        if self.smoke:
            parts.append("smoke run (tiny, fast)")
        return '<p class="lmt-config">Config of ' + " · ".join(parts) + "</p>"

    def with_overrides(self, *extra: str) -> list[str]:
        """The effective overrides followed by ``extra`` (later ones win)."""
        return list(self.overrides) + [str(e) for e in extra]

    def simulate(self, *extra: str):
        """``lmt.simulate`` with this notebook's overrides plus ``extra``."""
        from .api import simulate

        return simulate(self.with_overrides(*extra), command=f"notebook {self.name}")

    def sweep(self, *extra: str):
        """``lmt.sweep`` with this notebook's overrides plus ``extra`` (cached on disk).  For an
        experiment this runs whatever its task is (migrations, or host evacuations)."""
        from .sweep import sweep

        return sweep(self.with_overrides(*extra), command=self.command())

    def command(self) -> str:
        """The ``lmtk notebooks`` command that reruns this notebook with these parameters."""
        return command_line(self.experiment or self.name, self.user_overrides, self.smoke)

    # -- one experiment (notebooks/20_experiment.ipynb) ------------------------------------
    @property
    def figure_spec(self):
        """The registered figure of this experiment (:mod:`lmtoolkit.plotting.registry`), or None."""
        from .plotting.registry import FIGURES

        return next((f for f in FIGURES.values() if f.experiment == self.experiment), None)

    def describe(self):
        """What the experiment is and what its figure shows, as Markdown (from data: the
        experiment's ``title`` and its figure's caption in the registry)."""
        from IPython.display import Markdown

        self._need_experiment()
        c = self.config
        axes = list((c.sweep.get("axes") or {}).keys()) if "sweep" in c else []
        reps = int(c.sweep.get("replicates", 1) or 1) if "sweep" in c else 1
        spec = self.figure_spec
        lines = [f"## Experiment `{self.experiment}`: {c.get('title', '')}", ""]
        if spec is not None:
            lines += [f"**{spec.id}** ({spec.stem}): {spec.caption}", ""]
        task = str(c.get("task", "migration") or "migration")
        how = f"task `{task}`" + (
            f", engine `{c.get('engine')}`" if task == "migration" and c.get("engine") else ""
        )
        lines.append(
            f"The sweep is `configs/experiment/{self.experiment}.yaml`: "
            + (" × ".join(f"`{a}`" for a in axes) or "one point")
            + f" × {reps} replicate{'s' if reps != 1 else ''} ({how}).  Same as "
            f"`lmtk sweep experiment={self.experiment}`"
            + (f"; the figure alone: `lmtk figures {spec.id}`." if spec is not None else ".")
        )
        if self.smoke:
            lines += [
                "",
                "*Smoke mode* (`debug=default`, `configs/debug/default.yaml`): a shrunk run "
                "for checks: two values per axis, one replicate, a 1 GiB VM, 60 s of "
                "simulated time at most; results under `results/debug/`.",
            ]
        if self.user_overrides:
            lines += ["", "Overrides: " + ", ".join(f"`{o}`" for o in self.user_overrides)]
        lines += ["", f"Rerun: `{self.command()}`"]
        return Markdown("\n".join(lines))

    def table_variables(self, ds) -> list[str]:
        """The variables :meth:`table` shows: the figure's (registry ``table``) that ``ds`` has
        without a per-round or per-VM dim; else total time and downtime (or the makespan)."""
        spec = self.figure_spec
        wanted = list(spec.table) if spec is not None else ["makespan", "total_time", "downtime"]
        return [v for v in wanted if v in ds.data_vars and not {"round", "vm"} & set(ds[v].dims)]

    def table(self, ds):
        """Mean over replicates of :meth:`table_variables`, one row per point (a DataFrame)."""
        v = self.table_variables(ds)
        sub = ds[v]
        return (sub.mean("replicate") if "replicate" in sub.dims else sub).to_dataframe()

    def figure(self, ds):
        """The experiment's registered figure drawn from ``ds`` (None if it has none)."""
        spec = self.figure_spec
        return spec.function(ds) if spec is not None else None

    def summary(self, ds) -> dict:
        """What the experiment notebook saves: the Dataset's dims and the mean of every table
        variable (its config hash is the summary's own ``config_hash``, :meth:`save`)."""
        out = {
            "experiment": self.experiment,
            "dims": {k: int(n) for k, n in ds.sizes.items()},
            "figure": self.figure_spec.id if self.figure_spec is not None else None,
        }
        for v in self.table_variables(ds):
            out[f"mean_{v}"] = float(ds[v].astype(float).mean())
        return out

    def check(self, ds, fig=None) -> str:
        """Notebook 20's claims on ``cfg.sweep()``'s Dataset and ``cfg.figure(ds)``'s figure, one
        line each (held, or not applicable and why); :class:`~lmtoolkit.errors.ClaimError`
        naming those that fail (it was a bare ``assert``): the Dataset carries this config's
        hash (the summary's ``config_hash``, :meth:`dataset`), its dims are the sweep's axes and
        ``replicate`` at the plan's sizes, and the experiment's registered figure was drawn
        (n/a for an experiment without one in :mod:`lmtoolkit.plotting.registry`)."""
        from .errors import report_claims
        from .sweep import make_plan

        self._need_experiment()
        plan = make_plan(self.overrides, expand=False)
        have = str(ds.attrs.get("lmt_config_hash", "") or "")
        want = dict(zip(plan.dims, plan.shape))
        got = {d: int(ds.sizes[d]) for d in want if d in ds.sizes}
        sizes = " × ".join(f"{d} {got.get(d, 'missing')}" for d in want)
        checks = [
            (
                f"config hash: the Dataset's lmt_config_hash {have or '(none)'} is this config's "
                f"{plan.config_hash} (the summary's)",
                have == plan.config_hash,
            ),
            (f"dims: {sizes} (the sweep's axes and replicates, at the plan's sizes)", got == want),
        ]
        spec = self.figure_spec
        if spec is None:
            checks.append(
                (f"figure: experiment {self.experiment} has none in lmtoolkit/plotting/registry.py", None)
            )
        else:
            checks.append((f"figure: {spec.id} ({spec.stem}) drawn", fig is not None))
        settings = " ".join([f"experiment={self.experiment}", *self.user_overrides])
        return report_claims(checks, f"notebook {self.name}'s claims", settings)

    def _need_experiment(self):
        if not self.experiment:
            raise ConfigError(
                "experiment",
                None,
                "",
                message=("this notebook config has no experiment: compose(..., experiment=NAME)"),
            )

    def dataset(self) -> tuple[str, Path | None]:
        """``(config hash, file)`` of the Dataset this notebook's config makes: for an experiment,
        the sweep's (``cfg.sweep()``: its ``lmt_config_hash``, the hash ``lmtk sweep`` prints,
        and the file it is kept in, a variant's when the overrides change the points); else the
        one migration's (``cfg.simulate()``'s ``lmt_config_hash``; no file).  No simulation."""
        if self.experiment:
            from .sweep import make_plan

            plan = make_plan(self.overrides, expand=False)
            return plan.config_hash, plan.out_path
        from .provenance import config_hash

        return config_hash(self.config), None

    def save(self, **values) -> Path:
        """Write the notebook's summary (``values`` plus its parameters) as JSON; return the path.
        ``config_hash`` is the one of the Dataset the notebook's config makes (:meth:`dataset`:
        the ``lmt_config_hash`` of ``cfg.sweep()``'s Dataset, or of ``cfg.simulate()``'s), and
        for an experiment ``dataset`` names its file; a ``config_hash`` in ``values`` that is
        another is refused (two hashes in one summary, one of them not the Dataset's)."""
        from .io import write_text
        from .provenance import git_state, now

        digest, data = self.dataset()
        if "config_hash" in values and str(values["config_hash"]) != digest:
            raise ValueError(
                f"cfg.save(config_hash={values['config_hash']!r}): the summary's config_hash is "
                f"{digest}, the Dataset's of this notebook's config (cfg.sweep() / cfg.simulate()); "
                "save another Dataset's hash under another name"
            )
        values = {k: v for k, v in values.items() if k != "config_hash"}
        commit, dirty = git_state()
        doc = {
            "notebook": self.name,
            "overrides": self.user_overrides,
            "smoke": self.smoke,
            "effective_overrides": self.overrides,
            "config_hash": digest,
            **({"dataset": str(data)} if data is not None else {}),
            "git_commit": commit,
            "git_dirty": dirty,
            "created_at": now(),
            "values": _jsonable(values),
        }
        if self.experiment:
            doc["experiment"] = self.experiment
        path = self.out_dir / f"{self.name}.json"
        write_text(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")
        return path


def _jsonable(v):
    import numpy as np

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", None) == 0:
        return _jsonable(v.item())
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _guess_name() -> str:
    if os.environ.get(ENV_NAME):
        return os.environ[ENV_NAME]
    session = os.environ.get("JPY_SESSION_NAME")  # set by jupyter_server for a notebook's kernel
    if session:
        return Path(session).name.removesuffix(".ipynb")
    return "interactive"


def _effective(user: list[str], smoke: bool, experiment: str | None) -> list[str]:
    """What a notebook composes: ``experiment=NAME``, the user's overrides, then the smoke
    settings the user did not set."""
    out = ([f"experiment={experiment}"] if experiment else []) + list(user)
    if smoke:
        out += [o for o in SMOKE_OVERRIDES if not any(u.split("=")[0] == o.split("=")[0] for u in user)]
    return out


def check_parameters(stem: str, experiment: str | None, overrides: Sequence[str], smoke: bool) -> None:
    """Refuse a bad ``-p`` value before a kernel starts (one :class:`ConfigError` naming the key,
    not a failed cell): the experiment notebook lays out every point of its experiment
    (:func:`~lmtoolkit.sweep.plan.make_plan`, nothing simulated); the others build their base
    config as one migration (their cases vary it; a bad base value is bad in every case), and
    those of single migrations (:data:`OVERRIDES_TO`) refuse what ``lmt.simulate`` refuses
    (``sweep.*`` keys, a config with sweep axes: :func:`_check_one_migration`)."""
    from omegaconf import OmegaConf

    from .compose import task_of
    from .runner import build_scenario
    from .sweep.plan import make_plan

    user = [str(o) for o in overrides]
    if stem == TEMPLATE and experiment:
        make_plan(_effective(_split_experiment(user)[1], smoke, experiment))
        return
    effective = _effective(user, smoke, None)
    cfg = _compose(effective)
    if OVERRIDES_TO.get(stem) == "migration":
        _check_one_migration(stem, cfg, effective)
    if task_of(cfg) == "migration" and not OmegaConf.select(cfg, "sweep.axes"):
        build_scenario(cfg)
    own = notebook_runs(stem, _effective([], smoke, None), smoke)  # its settings without -p
    for label, run in notebook_runs(stem, effective, smoke).items():
        _check_run(stem, label, run, user, own.get(label))


def notebook_runs(stem: str, overrides: Sequence[str], smoke: bool = False) -> dict[str, list[str]]:
    """The overrides of the migrations notebook ``stem`` runs with its own settings (its guest,
    its cases) given its ``cfg.overrides``, by label (:func:`lmtoolkit.teaching.notebook_runs`,
    :func:`lmtoolkit.analytic.limit_runs`, :func:`lmtoolkit.analytic.engine_cases`); ``{}`` where the base migration is all there is
    to check."""
    from . import analytic, teaching

    if stem == "10_simulator_vs_analytic":
        return {f"check {k}": v for k, v in analytic.limit_runs(overrides).items()}
    if stem == "11_page_vs_fluid":
        return analytic.engine_cases(overrides, smoke=smoke)
    return teaching.notebook_runs(stem[:2], overrides) if is_teaching(stem) else {}


def _key(override: str) -> str:
    """The config key of a Hydra override (``+a.b=1`` -> ``a.b``)."""
    return override.partition("=")[0].strip().lstrip("+~")


def _check_run(stem: str, label: str, run: list[str], user: list[str], own: list[str] | None = None) -> None:
    """Compose and build one run of a notebook; its error names the notebook, the run, the
    notebook's own settings (``own``: the run without the user's ``-p`` values) and the user's
    values — where both set a key, both, and which one the run uses (the later one): ``-p
    host.spare_cores=0`` under notebook 04's own ``host.spare_cores=4.0`` named only the user's
    (``-p workload=idle`` under notebook 01's ``workload.wss_mib=1024`` failed in a cell)."""
    from .runner import build_scenario

    try:
        build_scenario(_compose(run))
    except ConfigError as e:
        raise ConfigError(
            e.key, e.value, e.allowed, message=f"{_run_label(stem, label, run, user, own)}: {e.text()}"
        ) from None


def _run_label(stem: str, label: str, run: list[str], user: list[str], own: list[str] | None) -> str:
    """``notebook S runs L (its settings) with -p …``; a ``-p`` key the notebook sets too says
    the notebook's value and which of the two the run uses."""
    mine = {_key(o) for o in user}
    if own is None:  # (a run whose label depends on the -p values: its settings from the run)
        own = [o for o in run if o not in user and _key(o) not in mine]
    yours = []
    for o in user:
        theirs = [x for x in own if _key(x) == _key(o) and x != o]
        used = next((x for x in reversed(run) if _key(x) == _key(o)), o)
        if theirs and used == o:
            o += f" (in place of the notebook's own {theirs[-1]})"
        elif theirs:
            o += f" (the notebook's own {used} comes after it and is used)"
        yours.append(f"-p {o}")
    return f"notebook {stem} runs {label} ({' '.join(own)}) with {' '.join(yours) or 'its defaults'}"


def _check_one_migration(stem: str, cfg, overrides: list[str]) -> None:
    """:func:`lmtoolkit.api.check_single_migration`'s error, naming the notebook, before the
    kernel starts (``lmtk notebooks 02 -p sweep.replicates=5`` started it and failed in the
    first cell that simulates; notebooks 00 and 13, which build their runs, dropped the key)."""
    from .api import check_single_migration

    try:
        check_single_migration(cfg, overrides)
    except ConfigError as e:
        raise ConfigError(
            e.key, e.value, e.allowed, message=f"notebook {stem} runs single migrations: {e.text()}"
        ) from None


def compose(
    overrides: Iterable[str] = (), smoke: bool = False, name: str | None = None, experiment: str | None = None
) -> NotebookConfig:
    """The notebook's config: ``experiment=NAME`` (if given), ``overrides`` (+ ``debug=default``
    when ``smoke``), composed."""
    if isinstance(overrides, str):
        overrides = [overrides]
    user = [str(o) for o in (overrides or [])]
    if experiment:
        exp_in_overrides, user = _split_experiment(user)
        experiment = exp_in_overrides or str(experiment)
    if not os.environ.get("LMT_RESULTS_DIR") and not any(
        u.lstrip("+~").startswith("paths.results_dir=") for u in user
    ):
        with contextlib.suppress(OSError):
            # JupyterLab starts kernels in notebooks/: keep results at the project's results/
            # (an override, not a change to this process's environment).
            if Path.cwd().resolve() == notebook_dir().resolve():
                user = user + [f"paths.results_dir={project_root() / 'results'}"]
    effective = _effective(user, smoke, experiment)
    cfg = _compose(effective)
    out = Path(os.environ[ENV_OUT]) if os.environ.get(ENV_OUT) else _results_root(user) / "notebooks"
    name = name or _guess_name()
    if experiment and name in (TEMPLATE, "interactive"):  # opened in JupyterLab / a script
        name = run_name(TEMPLATE, experiment)
    return NotebookConfig(cfg, effective, user, bool(smoke), name, out, experiment or None)


# -- the kernel ---------------------------------------------------------------------------------
def kernel_spec(name: str = KERNEL_NAME):
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        return KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return None


def install_kernel(name: str = KERNEL_NAME, user: bool = True) -> None:
    """``python -m ipykernel install --user --name lmtoolkit`` for this interpreter."""
    cmd = [
        sys.executable,
        "-m",
        "ipykernel",
        "install",
        "--name",
        name,
        "--display-name",
        KERNEL_DISPLAY_NAME,
    ]
    if user:
        cmd.append("--user")
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Install the project kernel if it is missing (or points at a missing interpreter)."""
    spec = kernel_spec(name)
    if spec is None or not spec.argv or not Path(spec.argv[0]).exists():
        install_kernel(name)
    return name


# -- student and teacher editions ------------------------------------------------------------------
#: a teaching notebook's exercise: question (markdown), answer cell (``answer_x = None``), a
#: markdown cell tagged ``solution`` — folded, ``<details><summary>Solution…</summary>`` — holding
#: a fenced ``python`` block with the answer and the explanation, and the check cell
#: (``lmt.teaching.check("00.1", answer_x, data)``)
SOLUTION_TAG = "solution"
#: the code cell the teacher edition adds after each solution (the fenced block, runnable)
SOLUTION_CODE_TAG = "solution-code"
EDITIONS = ("student", "teacher")


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _solution_code(source: str) -> str:
    """The first fenced ```python block of a solution cell."""
    import re

    m = re.search(r"```python\n(.*?)```", source, flags=re.S)
    return m.group(1).strip() if m else ""


def is_teaching(stem: str) -> bool:
    """Teaching notebooks are 0x (they have exercises and editions)."""
    return stem[:1] == "0"


def edition(nb, which: str):
    """One edition of a notebook, from its one source (a copy; ``nb`` is not changed).

    * ``student``: without the ``solution`` cells — what a student opens, answers left blank;
    * ``teacher``: every solution unfolded and followed by a ``solution-code`` cell that sets
      the answer, so the checks show ✓ and the explanation.
    """
    import copy

    import nbformat

    if which not in EDITIONS:
        raise ConfigError("edition", which, "one of " + ", ".join(EDITIONS))
    out = copy.deepcopy(nb)
    cells = []
    for cell in out.cells:
        if SOLUTION_TAG not in _tags(cell):
            cells.append(cell)
            continue
        if which == "student":
            continue
        cell.source = cell.source.replace("<details>", "<details open>", 1)  # unfolded
        cells.append(cell)
        code = _solution_code(cell.source)
        if code:
            c = nbformat.v4.new_code_cell(code)
            c.metadata["tags"] = [SOLUTION_CODE_TAG]
            cells.append(c)
    out.cells = cells
    out.metadata["lmt_edition"] = which
    return out


def _output_marker(output, key: str):
    md = output.get("metadata", {}) or {}
    if key in md:
        return md[key]
    for v in md.values():
        if isinstance(v, dict) and key in v:
            return v[key]
    return None


def student_from_teacher(executed):
    """The student edition of an executed teacher edition, without running it again: the
    solution cells go, each check shows what an unanswered check shows ("not answered yet"),
    and what a check reveals once answered (a figure) is dropped.  The same outputs as running
    the student edition: the checks are the only cells that read the answers."""
    import copy

    import nbformat

    from .teaching import check

    out = copy.deepcopy(executed)
    out.cells = [c for c in out.cells if not ({SOLUTION_TAG, SOLUTION_CODE_TAG} & set(_tags(c)))]
    for cell in out.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for o in cell.get("outputs", []):
            if _output_marker(o, "lmt_reveal") is not None:
                continue
            mark = _output_marker(o, "lmt_check")
            if mark is not None:
                res = check(mark["exercise"], None)
                data, md = res._repr_mimebundle_()
                o = nbformat.from_dict({**o, "data": data, "metadata": md})
            kept.append(o)
        cell.outputs = kept
    count = 0  # execution counts without the gaps the solutions leave
    for cell in out.cells:
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
            for o in cell.get("outputs", []):
                if "execution_count" in o:
                    o["execution_count"] = count
    out.metadata["lmt_edition"] = "student"
    return out


def interactive_terminal(stream=None) -> bool:
    """Progress displays only for a person at a terminal: not in CI logs (``CI`` set) or pipes."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")


# -- running notebooks ----------------------------------------------------------------------------
class NotebookError(RuntimeError):
    """A notebook failed: names the notebook, the cell and the error."""

    def __init__(
        self,
        notebook: str,
        cell_index: int | None,
        exec_count,
        source: str,
        ename: str,
        evalue: str,
        output: Path,
    ):
        self.notebook, self.cell_index, self.exec_count = notebook, cell_index, exec_count
        self.source, self.ename, self.evalue, self.output = source, ename, evalue, output
        first = next((ln for ln in source.splitlines() if ln.strip()), "").strip()
        where = f"cell {cell_index} of the notebook file" + (f" (In [{exec_count}])" if exec_count else "")
        super().__init__(
            f"notebook {notebook} failed in {where}: {ename}: {evalue}\n"
            f"    {first[:100]}\n  executed copy: {output}"
        )


@dataclass
class NotebookRun:
    name: str  # the run: the notebook's stem, or 20_<experiment>
    output: Path
    seconds: float
    parameters: dict
    summary: dict | None = field(default=None)
    notebook: str = ""  # the notebook file's stem
    experiment: str | None = None


@contextlib.contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(
    name: str,
    overrides: Iterable[str] = (),
    smoke: bool = False,
    output_dir: str | Path | None = None,
    progress: bool = True,
    kernel: str = KERNEL_NAME,
    timeout: float | None = 1800,
    experiment: str | None = None,
    edition_name: str | None = None,
    check: bool = True,
) -> NotebookRun:
    """Run notebook ``name`` through papermill on a real kernel; return where it went.

    ``name`` is a notebook (stem, number, slug) or an experiment (``quickstart``,
    ``20_quickstart``: the experiment notebook :data:`TEMPLATE` for it); the template also
    takes ``experiment=`` or an ``experiment=NAME`` override.  The executed copy (parameters
    injected, outputs kept) is ``<results>/notebooks/<run name>.ipynb`` (:func:`run_name`) and
    the notebook's summary ``<run name>.json`` beside it.  Raises :class:`NotebookError`
    naming the notebook and the failing cell.  ``edition_name`` (``student``/``teacher``) runs
    that edition of the notebook (:func:`edition`) instead of the file as it is.  Bad
    ``overrides`` raise :class:`ConfigError` before a kernel starts (:func:`check_parameters`;
    ``check=False``: already checked).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    stem, alias = resolve_target(name)
    overrides = [str(o) for o in overrides]
    params = {"overrides": overrides, "smoke": bool(smoke)}
    if stem == TEMPLATE:
        chosen, overrides = _split_experiment(overrides)
        experiment = experiment or alias or chosen
        if not experiment:
            raise ConfigError(
                "experiment",
                None,
                "",
                message=(
                    f"notebook {stem} runs one experiment: name it (lmtk notebooks quickstart, or "
                    f"-p experiment=NAME; available: {', '.join(list_experiments())})"
                ),
            )
        if experiment not in list_experiments():
            raise ConfigError("experiment", experiment, "one of " + ", ".join(list_experiments()))
        params = {"experiment": experiment, "overrides": overrides, "smoke": bool(smoke)}
    else:
        experiment = None
    if check:
        check_parameters(stem, experiment, overrides, smoke)
    run = run_name(stem, experiment)
    root = _results_root(overrides).resolve()
    out_dir = Path(output_dir).resolve() if output_dir else root / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{run}.ipynb"
    summary_path = out_dir / f"{run}.json"
    summary_path.unlink(missing_ok=True)
    ensure_kernel(kernel)
    t0 = time.perf_counter()
    env = {ENV_NAME: run, ENV_OUT: str(out_dir), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if not os.environ.get("LMT_RESULTS_DIR"):
        env["LMT_RESULTS_DIR"] = str(root)
    src_path = notebook_dir() / f"{stem}.ipynb"
    if edition_name is not None:
        import nbformat

        src_path = out_dir / f".{run}.{edition_name}.source.ipynb"
        nbformat.write(
            edition(nbformat.read(notebook_dir() / f"{stem}.ipynb", as_version=4), edition_name), src_path
        )
    try:
        with _env(**env):
            pm.execute_notebook(
                str(src_path),
                str(out),
                parameters=params,
                kernel_name=kernel,
                progress_bar=progress,
                cwd=os.getcwd(),
                execution_timeout=timeout,
                log_output=False,
            )
    except PapermillExecutionError as e:
        source, index = "", e.cell_index
        with contextlib.suppress(Exception):
            # papermill's index counts the cells it inserts (parameters, error banners): find
            # the failing cell by its error output, and number it as in the notebook file.
            import nbformat

            cells = nbformat.read(out, as_version=4).cells
            failing = next(
                c for c in cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))
            )
            source = failing.source
            original = [
                c
                for c in cells
                if "injected-parameters" not in c.metadata.get("tags", [])
                and not (c.cell_type == "markdown" and "papermill-error" in c.source)
            ]
            index = next(i for i, c in enumerate(original) if c is failing)
        raise NotebookError(
            f"{stem} (experiment={experiment})" if experiment else stem,
            index,
            e.exec_count,
            source,
            e.ename,
            e.evalue,
            out,
        ) from None
    finally:
        if edition_name is not None:
            (out_dir / f".{run}.{edition_name}.source.ipynb").unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return NotebookRun(run, out, seconds, params, summary, stem, experiment)


def execute_all(
    names: Iterable[str] | None = None,
    overrides: Iterable[str] = (),
    smoke: bool = False,
    output_dir=None,
    progress: bool = True,
    stop_on_error: bool = False,
) -> tuple[list[NotebookRun], list[NotebookError]]:
    """Run several notebooks (default: all; the experiment notebook once per experiment), one
    line of progress each; collect the failures."""
    todo = targets(names, [str(o) for o in overrides])
    for stem, exp in todo:  # every bad value before the first kernel starts
        check_parameters(stem, exp, overrides, smoke)
    runs, errors = [], []
    for i, (stem, exp) in enumerate(todo, 1):
        if progress:
            label = f"{stem} (experiment={exp})" if exp else stem
            print(f"[{i}/{len(todo)}] {label}", file=sys.stderr, flush=True)
        try:
            r = execute(stem, overrides, smoke, output_dir, progress=progress, experiment=exp, check=False)
        except NotebookError as e:
            errors.append(e)
            if progress:
                print(f"      FAILED: {e}", file=sys.stderr, flush=True)
            if stop_on_error:
                break
            continue
        runs.append(r)
        if progress:
            print(f"      ok in {r.seconds:.1f} s -> {r.output}", file=sys.stderr, flush=True)
    return runs, errors


# -- CLI ------------------------------------------------------------------------------------------
def cmd_notebooks(args) -> int:
    if args.install_kernel:
        install_kernel()
        print(f"installed Jupyter kernel '{KERNEL_NAME}' ({sys.executable})")
        if not args.names:
            return 0
    if args.list:  # the named notebooks only (they were ignored: --list 00 listed all 11)
        for n, exp in (
            [resolve_target(n) for n in args.names] if args.names else [(n, None) for n in list_notebooks()]
        ):
            for_exp = (
                f"for experiment {exp}" if exp else f"once per experiment: {', '.join(list_experiments())}"
            )
            print(n + (f"  ({for_exp})" if n == TEMPLATE else ""))
        return 0
    overrides = list(args.param or [])
    for o in overrides:
        if "=" not in o:
            raise ConfigError("-p", o, "key=value (a Hydra override)")
    if args.output:
        from .io import check_writable_dir

        check_writable_dir(args.output, "--output")
    t0 = time.perf_counter()
    runs, errors = execute_all(
        args.names or None,
        overrides,
        args.smoke,
        args.output,
        progress=not args.quiet and interactive_terminal(),
        stop_on_error=args.fail_fast,
    )
    total = time.perf_counter() - t0
    print(f"{len(runs)} notebook(s) ran in {total:.1f} s" + (f", {len(errors)} failed" if errors else ""))
    for e in errors:
        print(f"lmtk: error: {e}", file=sys.stderr)
    return 1 if errors else 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "notebooks", help="run the notebooks through papermill (executed copies in results/notebooks/)"
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="notebooks to run: name, number or slug, or an experiment (quickstart: "
        f"{TEMPLATE} for it; {TEMPLATE.split('_')[0]}: for every experiment); default all",
    )
    p.add_argument("--smoke", action="store_true", help="tiny, fast runs (adds debug=default)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="key=value",
        help="a Hydra override passed to the notebook's `overrides` (repeatable); "
        f"experiment=NAME picks the experiment of {TEMPLATE}",
    )
    p.add_argument("-o", "--output", help="directory for executed copies (default <results>/notebooks)")
    p.add_argument(
        "--list",
        action="store_true",
        help="list the notebooks (those named, if any: --list 00 quickstart) and exit",
    )
    p.add_argument(
        "--install-kernel",
        action="store_true",
        help=f"(re)install the '{KERNEL_NAME}' Jupyter kernel for this Python",
    )
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress display (the default where stderr is not a terminal, or CI is set)",
    )
    p.set_defaults(func=cmd_notebooks)


def command_line(name: str, overrides: Sequence[str], smoke: bool) -> str:
    """The ``lmtk notebooks`` command that reruns a notebook with these parameters."""
    parts = ["lmtk", "notebooks", name] + (["--smoke"] if smoke else [])
    for o in overrides:
        parts += ["-p", o]
    return " ".join(shlex.quote(p) for p in parts)
