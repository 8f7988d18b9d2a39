"""Notebooks: the config cell's :func:`compose` and :func:`execute` through papermill.

The notebook contract (DESIGN.md §4): the first cell, tagged ``parameters``, holds only

    overrides: list[str] = []
    smoke: bool = False

and the second composes the config through the package::

    import lmtoolkit as lmt
    cfg = lmt.notebooks.compose(overrides, smoke)

``cfg`` is the resolved Hydra config (``cfg.vm.memory_gib``…) plus the effective overrides
(``cfg.overrides``: the notebook's, and ``debug=default`` in smoke mode) and helpers that call
the package: ``cfg.simulate()``, ``cfg.sweep()``, ``cfg.save(**values)`` (the notebook's
summary, ``results/notebooks/<name>.json``).

:func:`execute` runs a notebook on a real Jupyter kernel (the project's ``lmtoolkit`` kernel)
through papermill and writes the executed copy, with its parameters, to
``results/notebooks/<name>.ipynb``; a failing cell raises :class:`NotebookError` naming the
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .errors import ConfigError
from .runner import compose as _compose
from .paths import notebook_dir, project_root

KERNEL_NAME = "lmtoolkit"
KERNEL_DISPLAY_NAME = "Python (lmtoolkit)"
#: what smoke mode adds to a notebook's overrides (a tiny, fast version of every run)
SMOKE_OVERRIDES = ("debug=default",)
#: environment variables the kernel reads (set by :func:`execute`)
ENV_NAME, ENV_OUT = "LMT_NOTEBOOK", "LMT_NOTEBOOK_OUT"


def list_notebooks() -> list[str]:
    """Names (file stems) of the shipped notebooks, in order."""
    return sorted(p.stem for p in notebook_dir().glob("[0-9][0-9]_*.ipynb"))


def resolve(name: str) -> str:
    """A notebook's stem from its stem, file name, number (``"00"``) or slug."""
    names = list_notebooks()
    key = Path(str(name)).name.removesuffix(".ipynb")
    if key in names:
        return key
    hits = [n for n in names if n.split("_", 1)[0] == key or n.split("_", 1)[-1] == key]
    if len(hits) == 1:
        return hits[0]
    raise ConfigError("notebook", name, "one of " + ", ".join(names))


# -- inside a notebook ---------------------------------------------------------------------------
def _results_root(overrides: Sequence[str]) -> Path:
    from .paths import results_dir
    return results_dir(_compose(list(overrides)))


class NotebookConfig:
    """The composed config of a notebook run (attribute access goes to the Hydra config)."""

    def __init__(self, config, overrides: list[str], user_overrides: list[str], smoke: bool,
                 name: str, out_dir: Path):
        self.config = config
        self.overrides = overrides
        self.user_overrides = user_overrides
        self.smoke = smoke
        self.name = name
        self.out_dir = out_dir

    def __getattr__(self, key):
        if key == "config":
            raise AttributeError(key)
        return getattr(self.config, key)

    def __getitem__(self, key):
        return self.config[key]

    def __repr__(self) -> str:
        return (f"NotebookConfig(name={self.name!r}, smoke={self.smoke}, "
                f"overrides={self.overrides!r})")

    def with_overrides(self, *extra: str) -> list[str]:
        """The effective overrides followed by ``extra`` (later ones win)."""
        return list(self.overrides) + [str(e) for e in extra]

    def simulate(self, *extra: str):
        """``lmt.simulate`` with this notebook's overrides plus ``extra``."""
        from .api import simulate
        return simulate(self.with_overrides(*extra), command=f"notebook {self.name}")

    def sweep(self, *extra: str):
        """``lmt.sweep`` with this notebook's overrides plus ``extra`` (cached on disk)."""
        from . import sweep as _sweep_mod
        fn = _sweep_mod if callable(_sweep_mod) else getattr(_sweep_mod, "sweep")
        return fn(self.with_overrides(*extra))

    def save(self, **values) -> Path:
        """Write the notebook's summary (``values`` plus its parameters) as JSON; return the path."""
        from .io import write_text
        from .provenance import config_hash, git_state, now
        commit, dirty = git_state()
        doc = {"notebook": self.name, "overrides": self.user_overrides, "smoke": self.smoke,
               "effective_overrides": self.overrides, "config_hash": config_hash(self.config),
               "git_commit": commit, "git_dirty": dirty, "created_at": now(),
               "values": _jsonable(values)}
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


def compose(overrides: Iterable[str] = (), smoke: bool = False, name: str | None = None) -> NotebookConfig:
    """The notebook's config: ``overrides`` (+ ``debug=default`` when ``smoke``), composed."""
    if isinstance(overrides, str):
        overrides = [overrides]
    user = [str(o) for o in (overrides or [])]
    if not os.environ.get("LMT_RESULTS_DIR"):
        with contextlib.suppress(OSError):
            # JupyterLab starts kernels in notebooks/: keep results at the project's results/.
            if Path.cwd().resolve() == notebook_dir().resolve():
                os.environ["LMT_RESULTS_DIR"] = str(project_root() / "results")
    effective = list(user)
    if smoke:
        effective += [o for o in SMOKE_OVERRIDES
                      if not any(u.split("=")[0] == o.split("=")[0] for u in user)]
    cfg = _compose(effective)
    out = Path(os.environ[ENV_OUT]) if os.environ.get(ENV_OUT) else _results_root(user) / "notebooks"
    return NotebookConfig(cfg, effective, user, bool(smoke), name or _guess_name(), out)


# -- the kernel ---------------------------------------------------------------------------------
def kernel_spec(name: str = KERNEL_NAME):
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        return KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return None


def install_kernel(name: str = KERNEL_NAME, user: bool = True) -> None:
    """``python -m ipykernel install --user --name lmtoolkit`` for this interpreter."""
    cmd = [sys.executable, "-m", "ipykernel", "install", "--name", name,
           "--display-name", KERNEL_DISPLAY_NAME]
    if user:
        cmd.append("--user")
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Install the project kernel if it is missing (or points at a missing interpreter)."""
    spec = kernel_spec(name)
    if spec is None or not spec.argv or not Path(spec.argv[0]).exists():
        install_kernel(name)
    return name


# -- running notebooks ----------------------------------------------------------------------------
class NotebookError(RuntimeError):
    """A notebook failed: names the notebook, the cell and the error."""

    def __init__(self, notebook: str, cell_index: int | None, exec_count, source: str,
                 ename: str, evalue: str, output: Path):
        self.notebook, self.cell_index, self.exec_count = notebook, cell_index, exec_count
        self.source, self.ename, self.evalue, self.output = source, ename, evalue, output
        first = next((ln for ln in source.splitlines() if ln.strip()), "").strip()
        where = f"cell {cell_index} of the notebook file" + \
            (f" (In [{exec_count}])" if exec_count else "")
        super().__init__(f"notebook {notebook} failed in {where}: {ename}: {evalue}\n"
                         f"    {first[:100]}\n  executed copy: {output}")


@dataclass
class NotebookRun:
    name: str
    output: Path
    seconds: float
    parameters: dict
    summary: dict | None = field(default=None)


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


def execute(name: str, overrides: Iterable[str] = (), smoke: bool = False,
            output_dir: str | Path | None = None, progress: bool = True,
            kernel: str = KERNEL_NAME, timeout: float | None = 1800) -> NotebookRun:
    """Run notebook ``name`` through papermill on a real kernel; return where it went.

    The executed copy (parameters injected, outputs kept) is ``<results>/notebooks/<name>.ipynb``
    and the notebook's summary ``<name>.json`` beside it.  Raises :class:`NotebookError`
    naming the notebook and the failing cell.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    stem = resolve(name)
    overrides = [str(o) for o in overrides]
    params = {"overrides": overrides, "smoke": bool(smoke)}
    root = _results_root(overrides).resolve()
    out_dir = Path(output_dir).resolve() if output_dir else root / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{stem}.ipynb"
    summary_path = out_dir / f"{stem}.json"
    summary_path.unlink(missing_ok=True)
    ensure_kernel(kernel)
    t0 = time.perf_counter()
    env = {ENV_NAME: stem, ENV_OUT: str(out_dir), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if not os.environ.get("LMT_RESULTS_DIR"):
        env["LMT_RESULTS_DIR"] = str(root)
    try:
        with _env(**env):
            pm.execute_notebook(str(notebook_dir() / f"{stem}.ipynb"), str(out), parameters=params,
                                kernel_name=kernel, progress_bar=progress, cwd=os.getcwd(),
                                execution_timeout=timeout, log_output=False)
    except PapermillExecutionError as e:
        source, index = "", e.cell_index
        with contextlib.suppress(Exception):
            # papermill's index counts the cells it inserts (parameters, error banners): find
            # the failing cell by its error output, and number it as in the notebook file.
            import nbformat
            cells = nbformat.read(out, as_version=4).cells
            failing = next(c for c in cells if any(o.get("output_type") == "error"
                                                   for o in c.get("outputs", [])))
            source = failing.source
            original = [c for c in cells if "injected-parameters" not in c.metadata.get("tags", [])
                        and not (c.cell_type == "markdown" and "papermill-error" in c.source)]
            index = next(i for i, c in enumerate(original) if c is failing)
        raise NotebookError(stem, index, e.exec_count, source, e.ename, e.evalue, out) from None
    seconds = time.perf_counter() - t0
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return NotebookRun(stem, out, seconds, params, summary)


def execute_all(names: Iterable[str] | None = None, overrides: Iterable[str] = (),
                smoke: bool = False, output_dir=None, progress: bool = True,
                stop_on_error: bool = False) -> tuple[list[NotebookRun], list[NotebookError]]:
    """Run several notebooks (default: all), one line of progress each; collect the failures."""
    names = [resolve(n) for n in names] if names else list_notebooks()
    runs, errors = [], []
    for i, n in enumerate(names, 1):
        if progress:
            print(f"[{i}/{len(names)}] {n}", file=sys.stderr, flush=True)
        try:
            r = execute(n, overrides, smoke, output_dir, progress=progress)
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
    if args.list:
        for n in list_notebooks():
            print(n)
        return 0
    overrides = list(args.param or [])
    for o in overrides:
        if "=" not in o:
            raise ConfigError("-p", o, "key=value (a Hydra override)")
    t0 = time.perf_counter()
    runs, errors = execute_all(args.names or None, overrides, args.smoke, args.output,
                               progress=not args.quiet, stop_on_error=args.fail_fast)
    total = time.perf_counter() - t0
    print(f"{len(runs)} notebook(s) ran in {total:.1f} s" + (f", {len(errors)} failed" if errors else ""))
    for e in errors:
        print(f"lmtk: error: {e}", file=sys.stderr)
    return 1 if errors else 0


def add_commands(sub) -> None:
    p = sub.add_parser("notebooks", help="run the notebooks through papermill (executed copies in "
                                         "results/notebooks/)")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="notebooks to run: name, number or slug (default: all)")
    p.add_argument("--smoke", action="store_true", help="tiny, fast runs (adds debug=default)")
    p.add_argument("-p", "--param", action="append", metavar="key=value",
                   help="a Hydra override passed to the notebook's `overrides` (repeatable)")
    p.add_argument("-o", "--output", help="directory for executed copies (default "
                                          "<results>/notebooks)")
    p.add_argument("--list", action="store_true", help="list the notebooks and exit")
    p.add_argument("--install-kernel", action="store_true",
                   help=f"(re)install the '{KERNEL_NAME}' Jupyter kernel for this Python")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_notebooks)


def command_line(name: str, overrides: Sequence[str], smoke: bool) -> str:
    """The ``lmtk notebooks`` command that reruns a notebook with these parameters."""
    parts = ["lmtk", "notebooks", name] + (["--smoke"] if smoke else [])
    for o in overrides:
        parts += ["-p", o]
    return " ".join(shlex.quote(p) for p in parts)
