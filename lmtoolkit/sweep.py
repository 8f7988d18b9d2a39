"""Sweeps: an experiment's axes → a grid of points → chunks run by an executor → one Dataset.

    >>> import lmtoolkit as lmt
    >>> ds = lmt.sweep(["experiment=quickstart"])        # dims: policy, network, dirty_rate, replicate, round

An experiment (``configs/experiment/<slug>.yaml``) declares ``sweep.axes``: each dim names a
config key and its values (``dirty_rate: {key: workload.dirty_rate_pages_s, values: [...]}``)
or a config group and its options (``policy: {key: policy, values: [vmware, hyperv]}``, a
*group swap*).  The plan:

* **cells** — one composed config per combination of group swaps (Hydra composes each, so
  experiment and debug files apply to every option) and of the value axes that cannot be
  applied to built objects (strings, or keys that feed other keys);
* **columns** — numeric value axes that map one-to-one onto a scenario field are applied to
  the built scenario (``engine.fluid.with_value``); for the fluid engine a whole cell's
  points go through :func:`~lmtoolkit.engine.fluid.simulate_fluid_columns` in one vectorised
  call, so a 100,000-point fluid grid costs no Python work per point;
* **seeds** — point ``p`` (row-major over the axes and ``replicate``) gets word ``p`` of
  ``numpy.random.SeedSequence(seed).generate_state(n_points)``; with
  ``sweep.common_random_numbers`` the word of its replicate instead (paired comparisons).
  Seeds never depend on the executor, the worker count or the chunking.

Points are cut into chunks of ``sweep.chunk_size``.  Each finished chunk is written
atomically to ``results/<exp>/.partial/<config-hash>/``; a rerun after a crash or SIGKILL
loads those and computes only the missing chunks.  The merged Dataset is written atomically
to ``results/<exp>/<exp>.nc`` (or ``.zarr``) with ``provenance.yaml`` beside it; a rerun with
the same config hash (resolved config minus run-time settings, plus the package version) is
served from that file without simulating.

Executors (``sweep.executor``): ``inline``, ``processes`` (``concurrent.futures``
process pool, ``sweep.workers``) and ``dask`` (``distributed``: a ``LocalCluster`` when
``sweep.dask_address`` is null, else the scheduler at that address).  Results are identical
whichever runs them.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import itertools
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import ConfigError

#: sweep.* keys that do not change results: left out of the config hash.
RUNTIME_KEYS = ("executor", "workers", "dask_address", "chunk_size", "format", "cache", "progress")
EXECUTORS = ("inline", "processes", "dask")
FORMATS = {"netcdf": ".nc", "zarr": ".zarr"}
#: config groups an axis may swap
SWAPPABLE = ("vm", "workload", "network", "host", "policy")
#: sweeps with more points than this keep no per-pre-copy-round detail unless asked
AUTO_DETAIL_MAX_POINTS = 10_000
DEFAULT_ROUND_DETAIL = 64
AUTO_CHUNK = {"page": 4, "fluid": 65536}
RESERVED_DIMS = ("replicate", "round", "seed")

_UNIT_SUFFIXES = (("_pages_s", "pages/s"), ("_gbit_s", "Gbit/s"), ("_mib_s", "MiB/s"),
                  ("_gib_s", "GiB/s"), ("_gib", "GiB"), ("_mib", "MiB"), ("_kib", "KiB"),
                  ("_ms", "ms"), ("_us", "us"), ("_pct", "%"), ("_bytes", "bytes"), ("_s", "s"))


# --------------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------------
@dataclass
class Axis:
    dim: str
    key: str
    values: list
    group: bool                 # a config-group swap (policy=vmware), not a value
    column: bool = False        # applied to built scenarios (vectorised on the fluid engine)
    long_name: str = ""
    units: str | None = None

    def coord(self) -> np.ndarray:
        if self.group or any(isinstance(v, str) for v in self.values):
            return np.array([str(v) for v in self.values])
        if all(isinstance(v, bool) for v in self.values):
            return np.array(self.values, dtype=bool)
        return np.asarray(self.values)

    def coord_attrs(self) -> dict:
        a = {"long_name": self.long_name or (f"{self.key} (config group)" if self.group else self.key),
             "lmt_key": self.key}
        units = self.units if self.units is not None else _units_of(self)
        if units is not None:
            a["units"] = units
        return a


def _units_of(axis: Axis) -> str | None:
    if axis.group or any(isinstance(v, str) for v in axis.values):
        return None
    if all(isinstance(v, bool) for v in axis.values):
        return "1"
    leaf = axis.key.rsplit(".", 1)[-1]
    for suffix, units in _UNIT_SUFFIXES:
        if leaf.endswith(suffix):
            return units
    return "1"


@dataclass
class Plan:
    """Everything needed to run a sweep, decided in the driver before any simulation."""

    name: str
    overrides: list[str]
    cfg: object                  # the resolved base config (DictConfig)
    hash_cfg: object             # what the config hash and lmt_config describe
    config_hash: str
    axes: list[Axis]
    replicates: int
    cells: list[dict]            # resolved config containers
    cell_of: np.ndarray          # (N,) cell per point
    columns: dict[str, np.ndarray]  # key -> (N,) values of column axes
    seeds: np.ndarray            # (N,) uint32
    round_detail: int
    chunks: list[tuple[int, int]]
    settings: dict               # sweep.* run-time settings
    out_path: Path

    @property
    def dims(self) -> list[str]:
        return [a.dim for a in self.axes] + ["replicate"]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes) + (self.replicates,)

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape))

    def task(self, start: int, stop: int) -> "ChunkTask":
        cell_of = self.cell_of[start:stop]
        used = np.unique(cell_of)
        return ChunkTask(start=start, stop=stop,
                         cells={int(c): self.cells[int(c)] for c in used},
                         cell_of=cell_of, columns={k: v[start:stop] for k, v in self.columns.items()},
                         seeds=self.seeds[start:stop], round_detail=self.round_detail)


@contextlib.contextmanager
def _keep_global_hydra():
    """Compose without disturbing a running Hydra app (the multirun entry point)."""
    from hydra.core.global_hydra import GlobalHydra
    saved = GlobalHydra.instance().hydra
    try:
        yield
    finally:
        gh = GlobalHydra.instance()
        gh.clear()
        gh.hydra = saved


def _split(o: str) -> tuple[str, str, str]:
    from .runner import _split as split
    return split(o)


def experiment_name(overrides: Iterable[str]) -> str | None:
    name = None
    for o in overrides:
        _, key, value = _split(o)
        if key == "experiment":
            name = value or None
    return name


def available_experiments() -> list[str]:
    from .paths import group_options
    return group_options("experiment")


def _is_hydra_override(o: str) -> bool:
    _, key, _ = _split(o)
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _compose_raw(overrides: list[str]):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .runner import _first_line, _raw_compose
    try:
        with _keep_global_hydra():
            return _raw_compose(overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError("overrides", overrides, "", message=_first_line(e)) from None


def _resolved(cfg) -> dict:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        from .runner import _first_line
        raise ConfigError("config", None, "", message=_first_line(e)) from None


def _parse_axes(cfg, max_values) -> list[Axis]:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    from .paths import group_options
    from .runner import _leaf_keys
    raw = OmegaConf.select(cfg, "sweep.axes")
    if raw is None:
        return []
    if not isinstance(raw, DictConfig):
        raise ConfigError("sweep.axes", raw, "a mapping dim -> {key: ..., values: [...]}")
    axes, valid = [], None
    for dim in raw.keys():
        spec = raw[dim]
        where = f"sweep.axes.{dim}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(dim)) or dim in RESERVED_DIMS:
            raise ConfigError(where, dim, "", message=f"{where}: '{dim}' cannot be a dim name "
                                                      f"(an identifier other than {', '.join(RESERVED_DIMS)})")
        if not isinstance(spec, DictConfig) or "key" not in spec or "values" not in spec:
            raise ConfigError(where, spec, "", message=f"{where} must be {{key: <config key or group>, "
                                                       f"values: [...]}}")
        extra = [k for k in spec.keys() if k not in ("key", "values", "long_name", "units")]
        if extra:
            raise ConfigError(where, None, "", message=f"{where}: unknown field '{extra[0]}' "
                                                       f"(allowed: key, values, long_name, units)")
        key, values = str(spec.key), spec["values"]
        if isinstance(values, DictConfig):
            values = _generated_values(where, OmegaConf.to_container(values, resolve=True))
        elif not isinstance(values, ListConfig) or len(values) == 0:
            raise ConfigError(f"{where}.values", values, "", message=f"{where}.values must be a "
                              f"non-empty list or {{start: a, stop: b, num: n, log: false}}")
        else:
            values = OmegaConf.to_container(values, resolve=True)
        if max_values is not None:
            values = values[:int(max_values)]
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{where}.values", values, "", message=f"{where}.values has duplicates")
        group = "." not in key and key in SWAPPABLE
        if group:
            opts = group_options(key)
            for v in values:
                if str(v) not in opts:
                    close = difflib.get_close_matches(str(v), opts, n=3)
                    hint = f"; did you mean {', '.join(close)}?" if close else ""
                    raise ConfigError(where, v, "", message=f"{where}: unknown {key} '{v}'{hint} "
                                                            f"(available: {', '.join(opts)})")
            values = [str(v) for v in values]
        else:
            if key.split(".")[0] in ("sweep", "paths", "hydra", "experiment", "debug", "local") \
                    or "." not in key and key in ("paths", "sweep"):
                raise ConfigError(where, key, "", message=f"{where}: '{key}' cannot be swept "
                                                          f"(sweep axes change the simulation, not "
                                                          f"how it runs)")
            if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                valid = valid or [k for k in _leaf_keys(cfg)
                                  if not k.startswith(("sweep", "paths", "hydra"))]
                close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(where, key, "", message=f"{where}: unknown key '{key}'{hint}")
            for v in values:
                if isinstance(v, (dict, list)):
                    raise ConfigError(where, v, "", message=f"{where}: values must be scalars, "
                                                            f"got {v!r}")
        axes.append(Axis(dim=str(dim), key=key, values=list(values), group=group,
                         long_name=str(spec.get("long_name") or ""),
                         units=None if spec.get("units") is None else str(spec.get("units"))))
    return axes


def _generated_values(where: str, spec: dict) -> list:
    """``{start, stop, num, log}`` → ``num`` evenly (or log-) spaced values, ends included."""
    extra = set(spec) - {"start", "stop", "num", "log"}
    if extra or not {"start", "stop", "num"} <= set(spec):
        raise ConfigError(f"{where}.values", spec, "", message=f"{where}.values: a generated axis "
                          f"is {{start: a, stop: b, num: n, log: false}}")
    num, log = spec["num"], bool(spec.get("log", False))
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ConfigError(f"{where}.values.num", num, "a positive integer")
    try:
        start, stop = float(spec["start"]), float(spec["stop"])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.values", spec, "numbers for start and stop") from None
    if log and (start <= 0 or stop <= 0):
        raise ConfigError(f"{where}.values", spec, "start and stop > 0 with log: true")
    arr = np.geomspace(start, stop, num) if log else np.linspace(start, stop, num)
    return [float(v) for v in arr]


def _settings(cfg) -> dict:
    from omegaconf import OmegaConf
    s = OmegaConf.to_container(cfg.sweep, resolve=True) if "sweep" in cfg else {}
    out = {k: s.get(k) for k in RUNTIME_KEYS}
    out["executor"] = out["executor"] or "inline"
    out["format"] = out["format"] or "netcdf"
    out["cache"] = True if out["cache"] is None else out["cache"]
    if out["executor"] not in EXECUTORS:
        raise ConfigError("sweep.executor", out["executor"], "one of " + ", ".join(EXECUTORS))
    if out["format"] not in FORMATS:
        raise ConfigError("sweep.format", out["format"], "one of " + ", ".join(FORMATS))
    for k in ("workers", "chunk_size"):
        v = out[k]
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"sweep.{k}", v, "null or a positive integer")
    for k in ("cache",):
        if not isinstance(out[k], bool):
            raise ConfigError(f"sweep.{k}", out[k], "true or false")
    if out["progress"] is not None and not isinstance(out["progress"], bool):
        raise ConfigError("sweep.progress", out["progress"], "null, true or false")
    return out


def _posint(cfg, key, default, lo=1):
    from omegaconf import OmegaConf
    v = OmegaConf.select(cfg, key, default=default)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ConfigError(key, v, f"null or an integer >= {lo}")
    return v


def _scenario_attr(scn, key: str):
    obj = scn
    for part in key.split("."):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            return None, False
        obj = getattr(obj, part)
    return obj, True


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 (array-valued fields)
        return False


def _is_number(v) -> bool:
    return isinstance(v, (int, float, bool, np.integer, np.floating)) and v == v


def _column_ok(axis: Axis, raw_cells: list, templates: list) -> bool:
    """A value axis can be applied to built scenarios iff it maps one-to-one onto a field."""
    from omegaconf import OmegaConf

    from .engine.fluid import with_value
    from .runner import build_scenario
    if axis.group or not all(_is_number(v) for v in axis.values):
        return False
    if axis.key.split(".")[0] not in SWAPPABLE:
        return False
    for raw, tpl in zip(raw_cells, templates):
        cur, ok = _scenario_attr(tpl, axis.key)
        if not ok or cur is None or isinstance(cur, str) or not _is_number(cur):
            return False
        if isinstance(cur, bool) != all(isinstance(v, bool) for v in axis.values):
            return False
        for v in {axis.values[0], axis.values[-1]}:
            c = copy.deepcopy(raw)
            OmegaConf.update(c, axis.key, v, merge=False)
            try:
                want = build_scenario(OmegaConf.create(_resolved(c)))
            except ConfigError as e:
                raise ConfigError(e.key, e.value, e.allowed,
                                  message=f"sweep.axes.{axis.dim}: {e.text()}") from None
            try:
                got = with_value(tpl, axis.key, v)
            except (ConfigError, TypeError, ValueError):
                return False
            if not _same(got, want):
                return False
    return True


def make_plan(overrides: Iterable[str] = (), results_dir: str | os.PathLike | None = None,
              expand: bool = True) -> Plan:
    """Compose the config, check the axes and lay out every point (no simulation).

    ``expand=False`` stops after the config hash and the output path (one Hydra composition):
    enough to serve a cached result.
    """
    from omegaconf import OmegaConf

    from . import provenance
    from .runner import build_scenario, compose

    overrides = [str(o) for o in overrides if not _is_hydra_override(str(o))]
    name = experiment_name(overrides)
    if name is not None and name not in available_experiments():
        compose(overrides)  # raises the runner's "unknown experiment ... (available: ...)"
    # one Hydra composition in the common case; the runner's compose (two compositions, with
    # its key/value checks) only to word the error when this one fails
    try:
        raw_base = _compose_raw(overrides)
        cfg = copy.deepcopy(raw_base)
        OmegaConf.resolve(cfg)
    except (ConfigError, Exception) as e:  # noqa: BLE001 - re-raised below with a clear message
        with _keep_global_hydra():
            compose(overrides)
        raise ConfigError("overrides", overrides, "", message=str(e).splitlines()[0]) from None
    settings = _settings(cfg)
    max_values = _posint(cfg, "sweep.max_values", None)
    replicates = _posint(cfg, "sweep.replicates", 1)
    replicates = 1 if replicates is None else replicates
    axes = _parse_axes(cfg, max_values)
    if not axes and name is None:
        raise ConfigError("experiment", None, "", message="no experiment given: lmtk sweep "
                          "experiment=NAME (available: " + ", ".join(available_experiments()) + ")")
    name = name or str(OmegaConf.select(cfg, "sweep.name", default=None) or "sweep")
    shape = tuple(len(a.values) for a in axes) + (replicates,)
    n = int(np.prod(shape))
    L = _posint(cfg, "sweep.round_detail", None, lo=0)
    if L is None:
        L = DEFAULT_ROUND_DETAIL if n <= AUTO_DETAIL_MAX_POINTS else 0
    hash_cfg = copy.deepcopy(cfg)
    with contextlib.suppress(Exception):
        OmegaConf.set_struct(hash_cfg, False)
    for k in RUNTIME_KEYS:
        hash_cfg.sweep.pop(k, None)
    hash_cfg.sweep.round_detail = L
    config_hash = provenance.config_hash(hash_cfg)
    root = Path(results_dir) if results_dir is not None else Path(str(cfg.paths.results_dir))
    out = root / name / f"{name}{FORMATS[settings['format']]}"
    if not expand:
        return Plan(name=name, overrides=overrides, cfg=cfg, hash_cfg=hash_cfg,
                    config_hash=config_hash, axes=axes, replicates=replicates, cells=[],
                    cell_of=np.zeros(0, np.int64), columns={}, seeds=np.zeros(0, np.uint32),
                    round_detail=L, chunks=[], settings=settings, out_path=out)

    # cells: one Hydra composition per combination of group swaps ...
    gaxes = [a for a in axes if a.group]
    swapped = {a.key for a in gaxes}
    base_ov = [o for o in overrides if _split(o)[1] not in swapped]
    raw_cells, templates = [], []
    for combo in itertools.product(*[a.values for a in gaxes]):
        ov = base_ov + [f"{a.key}={v}" for a, v in zip(gaxes, combo)]
        raw = _compose_raw(ov) if gaxes else raw_base
        for a in axes:
            if not a.group and OmegaConf.select(raw, a.key, default="__missing__") == "__missing__":
                where = ", ".join(f"{g.key}={v}" for g, v in zip(gaxes, combo))
                raise ConfigError(f"sweep.axes.{a.dim}", a.key, "", message=f"sweep.axes.{a.dim}: "
                                  f"key '{a.key}' does not exist with {where}")
        try:
            tpl = build_scenario(OmegaConf.create(_resolved(raw)))
        except ConfigError as e:
            where = ", ".join(f"{g.key}={v}" for g, v in zip(gaxes, combo))
            raise ConfigError(e.key, e.value, e.allowed,
                              message=e.text() + (f" (with {where})" if where else "")) from None
        raw_cells.append(raw)
        templates.append(tpl)
    # ... value axes either become columns or multiply the cells
    for a in axes:
        if not a.group:
            a.column = _column_ok(a, raw_cells, templates)
    taxes = [a for a in axes if a.group or not a.column]
    vaxes = [a for a in taxes if not a.group]
    cells = []
    for g, raw in enumerate(raw_cells):
        for combo in itertools.product(*[a.values for a in vaxes]):
            c = raw
            if vaxes:
                c = copy.deepcopy(raw)
                for a, v in zip(vaxes, combo):
                    OmegaConf.update(c, a.key, v, merge=False)
            res = _resolved(c)
            if vaxes:
                try:
                    build_scenario(OmegaConf.create(res))
                except ConfigError as e:
                    where = ", ".join(f"{a.key}={v}" for a, v in zip(vaxes, combo))
                    raise ConfigError(e.key, e.value, e.allowed,
                                      message=f"{e.text()} (sweep point {where})") from None
            cells.append(res)

    idx = np.unravel_index(np.arange(n), shape) if axes else (np.zeros(n, dtype=np.int64),)
    pos = {a.dim: i for i, a in enumerate(axes)}
    # cell order: group combos (outer) x non-column value combos (inner)
    tshape = tuple(len(a.values) for a in gaxes) + tuple(len(a.values) for a in vaxes)
    if tshape:
        tidx = tuple(idx[pos[a.dim]] for a in gaxes) + tuple(idx[pos[a.dim]] for a in vaxes)
        cell_of = np.ravel_multi_index(tidx, tshape).astype(np.int64)
    else:
        cell_of = np.zeros(n, dtype=np.int64)
    columns = {}
    for a in axes:
        if a.column:
            vals = np.array([float(v) for v in a.values])
            columns[a.key] = vals[idx[pos[a.dim]]]
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError("seed", seed, "a non-negative integer")
    ss = np.random.SeedSequence(seed)
    if OmegaConf.select(cfg, "sweep.common_random_numbers", default=False):
        seeds = ss.generate_state(replicates, dtype=np.uint32)[idx[-1]] if axes else \
            ss.generate_state(replicates, dtype=np.uint32)[np.arange(n)]
    else:
        seeds = ss.generate_state(n, dtype=np.uint32)
    engines = {c.get("engine", "page") for c in cells}
    chunk = settings["chunk_size"] or (AUTO_CHUNK["page"] if "page" in engines else AUTO_CHUNK["fluid"])
    chunks = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    return Plan(name=name, overrides=overrides, cfg=cfg, hash_cfg=hash_cfg, config_hash=config_hash,
                axes=axes, replicates=replicates, cells=cells, cell_of=cell_of, columns=columns,
                seeds=seeds, round_detail=L, chunks=chunks, settings=settings, out_path=out)


# --------------------------------------------------------------------------------------------
# one chunk (runs in any executor: plain data in, plain arrays out)
# --------------------------------------------------------------------------------------------
@dataclass
class ChunkTask:
    start: int
    stop: int
    cells: dict
    cell_of: np.ndarray
    columns: dict
    seeds: np.ndarray
    round_detail: int = DEFAULT_ROUND_DETAIL


def _trim(rec, L: int):
    if L >= DEFAULT_ROUND_DETAIL:
        return rec
    kept, n_pre = [], 0
    for r in rec.round_detail:
        if r.kind == "precopy":
            n_pre += 1
            if n_pre > L:
                continue
        kept.append(r)
    rec.round_detail = kept
    return rec


def run_chunk(task: ChunkTask):
    """Simulate the points of one chunk; return a :class:`~lmtoolkit.engine.common.BatchResult`."""
    from omegaconf import OmegaConf

    from .engine.common import BatchResult
    from .engine.fluid import simulate_fluid, simulate_fluid_columns, with_value
    from .engine.page import simulate_page
    from .runner import build_scenario

    parts, order = [], []
    for c, res in task.cells.items():
        sel = np.flatnonzero(task.cell_of == c)
        if not sel.size:
            continue
        tpl = build_scenario(OmegaConf.create(res))
        cols = {k: v[sel] for k, v in task.columns.items()}
        if tpl.engine == "fluid":
            if cols:
                part = simulate_fluid_columns(tpl, cols, round_detail=task.round_detail)
            else:
                part = simulate_fluid([tpl] * sel.size, round_detail=task.round_detail)
        else:
            recs = []
            for j, i in enumerate(sel):
                scn = tpl
                for k, v in cols.items():
                    scn = with_value(scn, k, v[j])
                scn = dataclasses.replace(scn, seed=int(task.seeds[i]))
                recs.append(_trim(simulate_page(scn), task.round_detail))
            part = BatchResult.from_records(recs)
        parts.append(part)
        order.append(sel)
    out = BatchResult.concat(parts) if len(parts) > 1 else parts[0]
    order = np.concatenate(order)
    if not np.array_equal(order, np.arange(order.size)):
        out = out.take(np.argsort(order, kind="stable"))
    return out


def _batch_to_arrays(b) -> dict:
    out = {}
    for k, v in b.scalars.items():
        out[f"s_{k}"] = v.astype(str) if v.dtype == object else v
    for k, v in b.round.items():
        out[f"r_{k}"] = v
    out["round_kind"] = b.round_kind
    return out


def _arrays_to_batch(arrs):
    from .engine.common import BatchResult
    kinds = arrs["round_kind"]
    b = BatchResult(kinds.shape[0], kinds.shape[1])
    for k in list(b.scalars):
        v = arrs[f"s_{k}"]
        b.scalars[k] = v.astype(object) if v.dtype.kind == "U" else v
    for k in list(b.round):
        b.round[k] = arrs[f"r_{k}"]
    b.round_kind = kinds
    return b


def _save_partial(path: Path, batch) -> None:
    from .io import atomic_path
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **_batch_to_arrays(batch))


def _load_partial(path: Path):
    with np.load(path, allow_pickle=False) as z:
        return _arrays_to_batch({k: z[k] for k in z.files})


def _chunk_file(d: Path, start: int, stop: int) -> Path:
    return d / f"chunk-{start:010d}-{stop:010d}.npz"


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------
def _workers(settings) -> int:
    return int(settings["workers"] or os.cpu_count() or 1)


def _run_inline(tasks, done, settings):
    for t in tasks:
        done(t, run_chunk(t))


def _run_processes(tasks, done, settings):
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    # the platform's default start method (fork on Linux up to Python 3.13: no re-import of
    # the caller's script; spawn/forkserver elsewhere need the usual `if __name__ == "__main__"`)
    with ProcessPoolExecutor(max_workers=min(_workers(settings), len(tasks))) as ex:
        futs = {ex.submit(run_chunk, t): t for t in tasks}
        pending = set(futs)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in finished:
                    done(futs[f], f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def _run_dask(tasks, done, settings):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover
        raise ConfigError("sweep.executor", "dask", "", message="sweep.executor=dask needs the "
                          "'distributed' package: pip install -e '.[scale]'") from None
    address = settings["dask_address"]
    cluster = None
    with contextlib.ExitStack() as stack:
        if address:
            client = stack.enter_context(Client(str(address), timeout="30s"))
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=min(_workers(settings), max(1, len(tasks))), threads_per_worker=1,
                processes=True, dashboard_address=None, silence_logs=40))
            client = stack.enter_context(Client(cluster))
        futs = client.map(run_chunk, tasks, pure=False)
        index = {f.key: t for f, t in zip(futs, tasks)}
        for f in as_completed(futs):
            done(index[f.key], f.result())
            f.release()


_EXECUTORS = {"inline": _run_inline, "processes": _run_processes, "dask": _run_dask}


# --------------------------------------------------------------------------------------------
# dataset and files
# --------------------------------------------------------------------------------------------
def assemble(plan: Plan, batch, command: str):
    """The sweep's Dataset: dims = axes + replicate (+ round), coords with units, provenance."""
    from . import dataset, provenance
    coords = {a.dim: a.coord() for a in plan.axes}
    coords["replicate"] = np.arange(plan.replicates)
    cattrs = {a.dim: a.coord_attrs() for a in plan.axes}
    cattrs["replicate"] = {"long_name": "replicate (independent repetition)", "units": "1"}
    attrs = provenance.attrs(plan.hash_cfg, plan.overrides, command)
    attrs["title"] = str(plan.cfg.get("title", f"sweep {plan.name}"))
    attrs["lmt_experiment"] = plan.name
    attrs["lmt_axes"] = json.dumps({a.dim: {"key": a.key, "values": a.values} for a in plan.axes})
    attrs["lmt_replicates"] = str(plan.replicates)
    attrs["lmt_round_detail"] = str(plan.round_detail)
    for lab in ("policy", "engine"):
        vals = set(map(str, batch.scalars[lab]))
        if len(vals) == 1:
            attrs[f"lmt_{lab}"] = vals.pop()
    ds = dataset.to_dataset(batch, dims=plan.dims, coords=coords, attrs=attrs, coord_attrs=cattrs)
    ds = ds.assign_coords(seed=(plan.dims, plan.seeds.astype(np.int64).reshape(plan.shape),
                                {"long_name": "workload random seed of the point", "units": "1"}))
    return ds


def read_result(path) -> "xr.Dataset":
    """Read a sweep result fully into memory, exactly as it was written."""
    from .io import read_dataset
    return read_dataset(path)


def read_attrs(path: Path) -> dict:
    import xarray as xr
    path = Path(path)
    if path.suffix == ".zarr":
        with xr.open_zarr(path) as ds:
            return dict(ds.attrs)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return dict(ds.attrs)


def provenance_record(ds, plan: Plan, info: dict) -> dict:
    import yaml
    a = ds.attrs
    return {
        "experiment": plan.name,
        "title": a.get("title"),
        "file": plan.out_path.name,
        "config_hash": a.get("lmt_config_hash"),
        "command": a.get("history", "").split(" ", 1)[-1],
        "history": a.get("history"),
        "overrides": json.loads(a.get("lmt_overrides", "[]")),
        "git_commit": a.get("lmt_git_commit"),
        "git_dirty": a.get("lmt_git_dirty") == "true",
        "versions": json.loads(a.get("lmt_versions", "{}")),
        "created_at": a.get("lmt_created_at"),
        "dims": {d: int(n) for d, n in ds.sizes.items()},
        "axes": {ax.dim: {"key": ax.key, "values": ax.values, "group": ax.group,
                          "vectorised": ax.column} for ax in plan.axes},
        "run": {k: info[k] for k in ("points", "chunks", "chunks_computed", "chunks_reused",
                                     "executor", "workers", "elapsed_s") if k in info},
        "config": yaml.safe_load(a.get("lmt_config", "{}")),
    }


def _progress(settings, total: int, name: str):
    from tqdm.auto import tqdm
    p = settings["progress"]
    return tqdm(total=total, unit="pt", desc=f"sweep {name}", file=sys.stderr, leave=False,
                disable=(None if p is None else not p), mininterval=0.5, dynamic_ncols=True)


def run(overrides: Iterable[str] = (), command: str | None = None,
        results_dir: str | os.PathLike | None = None, log=None):
    """Run (or load) a sweep; return ``(dataset, info)``.

    ``info``: ``path``, ``cached`` (served from disk), ``points``, ``chunks``,
    ``chunks_computed``, ``chunks_reused`` (from ``.partial`` after an interruption),
    ``elapsed_s``, ``config_hash``.
    """
    import yaml

    from .io import write_dataset, write_text

    t0 = time.perf_counter()
    overrides = list(overrides)
    plan = make_plan(overrides, results_dir=results_dir, expand=False)
    command = command or f"lmtoolkit.sweep({overrides!r})"
    settings = plan.settings
    out = plan.out_path
    info = {"path": out, "config_hash": plan.config_hash, "points": plan.n_points,
            "chunks": 0, "chunks_computed": 0, "chunks_reused": 0, "cached": False,
            "executor": settings["executor"], "workers": settings["workers"], "plan": plan}
    if settings["cache"] and out.exists():
        try:
            hit = read_attrs(out).get("lmt_config_hash") == plan.config_hash
        except Exception:  # noqa: BLE001 - unreadable: recompute
            hit = False
        if hit:
            info.update(cached=True, elapsed_s=time.perf_counter() - t0)
            return read_result(out), info
    plan = make_plan(overrides, results_dir=results_dir)
    info.update(plan=plan, chunks=len(plan.chunks))

    partial = out.parent / ".partial" / plan.config_hash
    results = {}
    if len(plan.chunks) > 1 and partial.is_dir():
        for s, e in plan.chunks:
            f = _chunk_file(partial, s, e)
            if f.exists():
                try:
                    results[(s, e)] = _load_partial(f)
                except Exception:  # noqa: BLE001 - damaged: recompute that chunk
                    f.unlink(missing_ok=True)
    info["chunks_reused"] = len(results)
    todo = [plan.task(s, e) for s, e in plan.chunks if (s, e) not in results]
    if log and results:
        log(f"resuming: {len(results)} of {len(plan.chunks)} chunks from {partial}")
    bar = _progress(settings, plan.n_points, plan.name)
    bar.update(sum(e - s for s, e in results))

    def done(task: ChunkTask, batch):
        if len(plan.chunks) > 1:
            _save_partial(_chunk_file(partial, task.start, task.stop), batch)
        results[(task.start, task.stop)] = batch
        info["chunks_computed"] += 1
        bar.update(task.stop - task.start)

    try:
        if todo:
            _EXECUTORS[settings["executor"]](todo, done, settings)
    finally:
        bar.close()
    from .engine.common import BatchResult
    parts = [results[c] for c in plan.chunks]
    batch = BatchResult.concat(parts) if len(parts) > 1 else parts[0]
    ds = assemble(plan, batch, command)
    write_dataset(ds, out)
    info["elapsed_s"] = round(time.perf_counter() - t0, 3)
    write_text(out.parent / "provenance.yaml",
               yaml.safe_dump(provenance_record(ds, plan, info), sort_keys=False, width=100))
    shutil.rmtree(partial, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out.parent / ".partial").rmdir()
    return ds, info


def sweep(overrides: Iterable[str] = (), command: str | None = None):
    """Run the sweep an experiment declares; return ONE ``xarray.Dataset``.

    ``overrides`` are Hydra overrides (``["experiment=quickstart", "sweep.executor=dask"]``).
    Dims are the axes (short names) plus ``replicate`` and ``round``; the Dataset is also
    written to ``results/<experiment>/<experiment>.nc`` with ``provenance.yaml`` beside it, and
    served from there when the same config runs again.
    """
    return run(overrides, command=command)[0]


# --------------------------------------------------------------------------------------------
# collect: the runs of a Hydra multirun -> one Dataset
# --------------------------------------------------------------------------------------------
def _override_value(v: str):
    import yaml
    try:
        out = yaml.safe_load(v)
    except yaml.YAMLError:
        return v
    return out if isinstance(out, (int, float, str, bool)) else v


def collect(run_dir, output: str | os.PathLike | None = None):
    """Merge the results of a multirun directory (``multirun/<date>/<time>``) into one Dataset.

    Each job's overrides (``<job>/.hydra/overrides.yaml``) that differ between jobs become
    new dims (``network=1gbe,10gbe`` → dim ``network``; ``vm.memory_gib=…`` → ``memory_gib``).
    Written to ``<run_dir>/<experiment>.nc`` (or ``output``) with ``provenance.yaml``.
    Returns ``(dataset, path)``.
    """
    import xarray as xr
    import yaml

    from . import provenance
    from .io import write_dataset, write_text

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError("collect", str(run_dir), "", message=f"no such directory: {run_dir}")
    jobs = sorted((p.parent.parent for p in run_dir.glob("*/.hydra/overrides.yaml")),
                  key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    if not jobs:
        raise ConfigError("collect", str(run_dir), "", message=f"{run_dir} holds no Hydra multirun "
                          f"jobs (no */.hydra/overrides.yaml)")
    runs = []
    for job in jobs:
        ov = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        files = sorted(p for p in list(job.rglob("*.nc")) + list(job.rglob("*.zarr"))
                       if ".partial" not in p.parts and not p.name.startswith("."))
        if not files:
            raise ConfigError("collect", str(job), "", message=f"job {job} has no result file "
                              f"(did it fail? see {job}/*.log)")
        runs.append((job, [str(o) for o in ov], files[0]))
    parsed = []
    for _, ov, _ in runs:
        d = {}
        for o in ov:
            _, key, value = _split(o)
            if key == "paths.results_dir":
                continue
            d[key] = value
        parsed.append(d)
    keys = list(dict.fromkeys(k for d in parsed for k in d))
    varying = [k for k in keys if len({d.get(k) for d in parsed}) > 1]
    dss = [read_result(f) for _, _, f in runs]
    base_dims = set(dss[0].dims)
    if any(set(ds.dims) - {"round"} != base_dims - {"round"} for ds in dss):
        raise ConfigError("collect", str(run_dir), "", message="the runs have different dims "
                          "(different experiments?); collect merges runs of one experiment")
    names = {}
    for k in varying:
        def taken(n):
            return n in base_dims or n in names.values() or n in dss[0].variables
        short = k.rsplit(".", 1)[-1].replace("/", "_")
        if taken(short):
            short = k.replace(".", "_").replace("/", "_")
        while taken(short):
            short += "_"
        names[k] = short
    stamped = []
    for ds, d in zip(dss, parsed):
        ds = ds.copy()
        for k in varying:
            ds = ds.expand_dims({names[k]: [_override_value(d.get(k, "null"))]})
        ds.attrs = {}
        stamped.append(ds)
    if varying:
        run_dim = "__run__"
        cat = xr.concat([s.stack({run_dim: [names[k] for k in varying]}) for s in stamped], dim=run_dim,
                        join="outer", coords="different", compat="equals",
                        fill_value={"round_kind": np.int8(-1)}, combine_attrs="drop")
        merged = cat.unstack(run_dim)
        # unstack sorts: restore the order in which the jobs ran
        merged = merged.reindex({names[k]: list(dict.fromkeys(
            _override_value(d.get(k, "null")) for d in parsed)) for k in varying})
        merged = merged.transpose(*[names[k] for k in varying], *[d for d in dss[0].dims if d in merged.dims],
                                  ...)
    else:
        merged = stamped[0]
    for k in varying:
        merged[names[k]].attrs.update({"long_name": f"{k} (multirun override)", "lmt_key": k})
    if "round_kind" in merged:
        merged["round_kind"] = merged["round_kind"].fillna(-1).astype(np.int8)
        merged["round_kind"].attrs.update(dss[0]["round_kind"].attrs)
    for v in merged.variables:
        if v in dss[0].variables:
            for a, val in dss[0][v].attrs.items():
                merged[v].attrs.setdefault(a, val)
    first = dss[0].attrs
    name = first.get("lmt_experiment", "collected")
    command = f"lmtk collect {run_dir}"
    created = provenance.now()
    merged.attrs = {k: v for k, v in first.items() if k not in ("lmt_config_hash", "lmt_created_at",
                                                                "lmt_overrides", "history")}
    merged.attrs.update({
        "history": f"{created} {command}\n" + "\n".join(d.attrs.get("history", "") for d in dss),
        "lmt_created_at": created,
        "lmt_overrides": json.dumps(sorted({o for _, ov, _ in runs for o in ov
                                            if not o.startswith("paths.results_dir=")})),
        "lmt_config_hash": ",".join(d.attrs.get("lmt_config_hash", "") for d in dss),
        "lmt_runs": json.dumps([{"job": j.name, "overrides": ov, "file": str(f.relative_to(run_dir)),
                                 "config_hash": d.attrs.get("lmt_config_hash", "")}
                                for (j, ov, f), d in zip(runs, dss)]),
        "lmt_collected_dims": json.dumps(names),
    })
    out = Path(output) if output else run_dir / f"{name}.nc"
    write_dataset(merged, out)
    write_text(out.parent / "provenance.yaml", yaml.safe_dump({
        "collected_from": str(run_dir), "command": command, "created_at": created,
        "new_dims": names, "dims": {d: int(n) for d, n in merged.sizes.items()},
        "runs": json.loads(merged.attrs["lmt_runs"]),
        "git_commit": first.get("lmt_git_commit"), "versions": json.loads(first.get("lmt_versions", "{}")),
    }, sort_keys=False, width=100))
    return merged, out


__all__ = ["sweep", "run", "make_plan", "collect", "run_chunk", "Plan", "Axis", "ChunkTask",
           "available_experiments"]
