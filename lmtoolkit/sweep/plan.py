"""The plan of a sweep: composed config -> cells, columns, seeds, chunks, output path.

* **cells** — one config per combination of group swaps (Hydra composes each, so experiment
  and debug files apply to every option) and of the value axes that cannot be applied to
  built objects (strings, keys that feed other keys, every axis of a non-columnar task);
* **columns** — numeric value axes that map one-to-one onto a scenario field are applied to
  the built scenario (``engine.fluid.with_value``); on the fluid engine a whole cell's points
  go through one vectorised call;
* **seeds** — point ``p`` (row-major over the axes and ``replicate``) gets word ``p`` of
  ``numpy.random.SeedSequence(seed).generate_state(n_points)``; with
  ``sweep.common_random_numbers`` the word of its replicate instead.  Seeds never depend on
  the executor, the worker count or the chunking;
* **output** — the experiment's canonical file ``<results>/<exp>/<exp>.nc`` when the
  config hash is that of the overrides that only pick the experiment and how it runs
  (``sweep.executor`` …, ``paths.*``, ``debug=…``, which writes to its own ``results/debug/``
  tree) compose without ``configs/local/``; any other config is a *variant*: ``<results>/<exp>/variants/<variant>/<exp>.nc``,
  keyed by the resolved config, so variants never overwrite the canonical result or each other.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .. import provenance
from ..compose import (
    clean_overrides,
    compose_both,
    compose_raw,
    config_value,
    config_yaml,
    first_line,
    global_body,
    hydra_overrides,
    hydra_value,
    is_hydra_override,
    leaf_items,
    local_file,
    shown_path,
    split_override,
    task_of,
)
from ..engine.fluid import with_value, with_values
from ..errors import ConfigError, UnusedKeyError
from ..paths import group_options
from ..tasks import get_task
from .axes import SWAPPABLE, Axis, parse_axes
from .swap import (
    group_is_untouched,
    group_option_node,
    keys_set_outside,
    option_files,
    swap_class,
    swap_group,
)

#: sweep.* keys that do not change results: left out of the config hash
RUNTIME_KEYS = ("executor", "workers", "dask_address", "chunk_size", "format", "cache", "progress")
EXECUTORS = ("inline", "processes", "dask")
FORMATS = {"netcdf": ".nc", "zarr": ".zarr"}
#: a Dask scheduler's address (sweep.dask_address): [SCHEME://]HOST:PORT, as distributed reads it
DASK_SCHEMES = ("tcp", "tls", "ws", "wss")  # (ucx needs the distributed-ucxx package)
DASK_ADDRESS = re.compile(
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})"
)
DASK_ADDRESS_FORM = f"null or a scheduler address [SCHEME://]HOST:PORT (SCHEME {', '.join(DASK_SCHEMES)})"
#: sweeps with more points than this keep no per-pre-copy-round detail unless asked
AUTO_DETAIL_MAX_POINTS = 10_000
DEFAULT_ROUND_DETAIL = 64
#: points per unit of work (and of resume) when sweep.chunk_size is null; a fluid chunk counts
#: distinct points (the engine computes a point's replicates once: replicates are the innermost
#: dim), up to FLUID_CHUNK_MAX_POINTS points with their replicates
AUTO_CHUNK = {"page": 4, "fluid": 65536, "evacuation": 1}
FLUID_CHUNK_MAX_POINTS = 1 << 20


@dataclass
class Plan:
    """Everything needed to run a sweep, decided in the driver before any simulation."""

    name: str
    task: str
    overrides: list[str]
    cfg: object  # the resolved base config (DictConfig)
    hash_cfg: object  # what the config hash and lmt_config describe
    config_hash: str
    axes: list[Axis]
    replicates: int
    cells: list[dict]  # resolved config containers
    cell_of: np.ndarray  # (N,) cell per point
    columns: dict[str, np.ndarray]  # key -> (N,) values of column axes
    seeds: np.ndarray  # (N,) uint32
    round_detail: int
    chunks: list[tuple[int, int]]
    settings: dict  # sweep.* run-time settings
    out_path: Path
    variant: str | None = None  # None: the experiment's canonical result
    variant_reason: str = ""  # what makes it a variant: "overrides change its points", ...
    raw: object = None  # the unresolved base config (axis values are set on it)
    notes: list = dataclasses.field(default_factory=list)  # what the user should know (printed)
    #: the files and plug-in code the config hash read (their bytes go with each chunk)
    inputs: provenance.Inputs = dataclasses.field(default_factory=provenance.Inputs)
    #: the code hash the config hash covers; each chunk carries it, and a worker running other
    #: lmtoolkit code refuses the chunk (:func:`lmtoolkit.sweep.execute.check_code`)
    code_hash: str | None = None

    @property
    def dims(self) -> list[str]:
        return [a.dim for a in self.axes] + ["replicate"]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes) + (self.replicates,)

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape))


def experiment_name(overrides: Iterable[str]) -> str | None:
    name = None
    for o in overrides:
        _, key, value = split_override(o)
        if key == "experiment":
            name = value or None
    return name


def available_experiments() -> list[str]:
    return group_options("experiment")


def _resolved(cfg) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError("config", None, "", message=first_line(e)) from None


def settings_of(cfg) -> dict:
    """The run-time ``sweep.*`` settings, checked."""
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
    if not isinstance(out["cache"], bool):
        raise ConfigError("sweep.cache", out["cache"], "true or false")
    if out["progress"] is not None and not isinstance(out["progress"], bool):
        raise ConfigError("sweep.progress", out["progress"], "null, true or false")
    _check_dask_address(out["dask_address"])
    if out["dask_address"] is not None and out["executor"] != "dask":
        raise ConfigError(
            "sweep.dask_address",
            out["dask_address"],
            "",
            message=(
                f"sweep.dask_address={out['dask_address']} would have no effect: "
                f"sweep.executor={out['executor']} (it needs sweep.executor=dask; or set sweep.dask_address=null)"
            ),
        )
    return out


def _check_dask_address(address) -> None:
    """``sweep.dask_address``: null or ``[SCHEME://]HOST:PORT`` — checked before any work (a
    bare ``123`` or ``foo://x:1`` was a traceback from distributed when the executor started)."""
    if address is None:
        return
    if isinstance(address, str) and re.fullmatch(r"inproc://\S+", address):
        return  # a LocalCluster(processes=False) of the calling Python process
    m = DASK_ADDRESS.fullmatch(address) if isinstance(address, str) else None
    scheme = (m.group("scheme") or "tcp").lower() if m else None
    if not m or scheme not in DASK_SCHEMES or not 0 < int(m.group("port")) < 65536:
        raise ConfigError("sweep.dask_address", address, DASK_ADDRESS_FORM + ", e.g. tcp://10.0.0.5:8786")


def _posint(cfg, key, default, lo=1):
    v = OmegaConf.select(cfg, key, default=default)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ConfigError(key, v, f"null or an integer >= {lo}")
    return v


def is_canonical(overrides: list[str]) -> bool:
    """Do the overrides only pick the experiment and how it runs (no change to its points)?"""
    for o in overrides:
        _, key, _ = split_override(o)
        if key in ("experiment", "debug") or key.startswith("paths.") or is_hydra_override(o):
            continue  # (debug=... writes to its own results tree)
        if key.startswith("sweep.") and key.split(".", 1)[1] in RUNTIME_KEYS:
            continue
        return False
    return True


def _identity(cfg, axes: list[Axis], replicates: int, inputs: provenance.Inputs, unread=()) -> tuple:
    """``(hash_cfg, round_detail, config_hash)`` of a composed sweep config: what its
    ``lmt_config`` records (run-time settings and the keys no point reads, ``unread``, left
    out; the round detail filled in) and its cache key (:func:`provenance.config_hash` with
    :func:`_sweep_identity`)."""
    n = int(np.prod([len(a.values) for a in axes] + [replicates]))
    L = _posint(cfg, "sweep.round_detail", None, lo=0)
    if L is None:
        L = DEFAULT_ROUND_DETAIL if n <= AUTO_DETAIL_MAX_POINTS else 0
    hash_cfg = copy.deepcopy(cfg)
    OmegaConf.set_struct(hash_cfg, False)
    for k in RUNTIME_KEYS:
        hash_cfg.sweep.pop(k, None)
    hash_cfg.sweep.round_detail = L
    for key in unread:  # (an evacuation's vm.memory_gib, …: Task.unread_keys)
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(hash_cfg, parent) if parent else hash_cfg
        if node is not None and leaf in node:
            node.pop(leaf)
    return hash_cfg, L, provenance.config_hash(hash_cfg, _sweep_identity(axes, inputs), inputs)


def composed_hash(overrides: list[str]) -> str | None:
    """The config hash of the sweep ``overrides`` compose (None: they do not compose)."""
    try:
        _, cfg = compose_both(overrides)
        replicates = _posint(cfg, "sweep.replicates", 1) or 1
        axes = parse_axes(cfg, _posint(cfg, "sweep.max_values", None))
        unread = get_task(task_of(cfg)).unread_keys(overrides, cfg, axes)
        return _identity(cfg, axes, replicates, provenance.Inputs(), unread)[2]
    except ConfigError:
        return None


def _variant(overrides: list[str], hash_cfg, config_hash: str) -> tuple[str | None, str]:
    """``(variant id, why)``, ``(None, "")`` for the canonical result: for an experiment, the
    config the overrides that only pick it and say how it runs (:func:`is_canonical`) compose
    without this machine's ``local`` file.  What is composed decides, not which overrides were
    given: one that changes nothing (``engine=fluid`` on a fluid experiment, ``seed=0``) was
    recomputed into a variant of the same hash, and a local file that changes the points
    (``network: {latency_ms: 50}``) replaced the canonical result unnoticed.  That reference
    is composed (~0.1 s) only when other overrides, or a local file that sets more than how a
    sweep runs, are given; without an experiment (``lmtk evacuate policy=hyperv``: the command
    composes once) any of them makes a variant."""
    canon = [o for o in overrides if is_canonical([o])]
    local_ov = [o for o in overrides if split_override(o)[1] == "local"]
    extra = [o for o in overrides if o not in canon and o not in local_ov]
    local = local_file(overrides)
    if local is not None and _sets_how_it_runs_only(local):
        local = None  # (executor, workers, paths.*: the canonical result, as README suggests)
    if not extra and local is None:
        return None, ""
    if experiment_name(overrides) is None:  # no reference composed: what was given
        why = ["overrides change its points"] if extra else []
        why += [f"{shown_path(local)} sets more than how it runs"] if local is not None else []
        return _variant_id(hash_cfg), "; ".join(why)
    reference = composed_hash(canon + ["~local"])
    if reference == config_hash:
        return None, ""
    changes = {"overrides": bool(extra), **({shown_path(local): True} if local is not None else {})}
    if extra and local is not None:  # which of them change the points
        with_local = composed_hash(canon + local_ov)
        changes = {"overrides": with_local != config_hash, shown_path(local): with_local != reference}
    why = [w for w, c in changes.items() if c]
    return _variant_id(hash_cfg), " and ".join(why) + (
        " change" if len(why) > 1 else " changes"
    ) + " its points"


def _sets_how_it_runs_only(f: Path) -> bool:
    """Does a ``local`` file set nothing but how sweeps run (``sweep.executor`` …, ``paths.*``,
    ``hydra.*``: :func:`is_canonical` keys)?  Then it changes no point (told without composing)."""
    _, body = global_body(f)
    if body is None or "defaults" in body:
        return False
    return is_canonical([f"{k}=" for k, _ in leaf_items(body)])


def _sweep_identity(axes, inputs: provenance.Inputs | None = None) -> str:
    """What a sweep's result depends on beyond its resolved config (whose keys are sorted):
    the axes in their order — they number the points, and so the chunks a resume reuses and
    each point's seed — and the text of the files each option a group axis swaps in is composed
    from (:func:`~.swap.option_files`: the resolved config holds the base option only; an edited
    ``network/1gbe.yaml`` must not be served from the cache, nor resumed into).  Only those: an
    unused ``network/walknet.yaml`` added beside them recomputed (and replaced) the result."""
    import json

    from ..paths import config_dir

    files = {}
    for a in axes:
        for f in (p for v in a.values for p in option_files(a.key, v)) if a.group else ():
            files[f.relative_to(config_dir()).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    digests = {f"{a.dim}": _axis_inputs(a, inputs) for a in axes}
    return json.dumps(
        {"axes": [[a.dim, a.key] for a in axes], "group_files": files, "inputs": digests}, sort_keys=True
    )


def _axis_inputs(a, inputs: provenance.Inputs | None = None) -> dict:
    """Digests of what an axis's values read from outside the package, which the resolved
    config (the base option, the first value) does not show, digested as the config's own
    (:func:`provenance.tree_inputs_hash`): the plug-in classes of the group options it swaps
    in (their ``_target_``, in any file an option is composed from: ``custom2.yaml`` with
    ``defaults: [custom]``), the files a ``….file`` axis names (traces) and the classes a
    ``…._target_`` axis names.  An edited
    plug-in or trace was served from the cache when an axis brought it in (README, *Cache*)."""
    import yaml

    if a.group:
        trees = {}
        for v in a.values:
            try:
                trees[str(v)] = [yaml.safe_load(f.read_text()) for f in option_files(a.key, v)]
            except (OSError, yaml.YAMLError):
                trees[str(v)] = None
    else:  # a value axis: each value as the key it sets (only `file` and `_target_` read any)
        last = a.key.rsplit(".", 1)[-1]
        trees = {v: {last: v} for v in a.values if isinstance(v, str)}
    digests = {v: provenance.tree_inputs_hash(t or {}, inputs) for v, t in trees.items()}
    return {v: d for v, d in digests.items() if d}


def _variant_id(hash_cfg) -> str:
    """A variant's directory: its resolved config (not the code: a variant rerun by newer
    code replaces its own file, as the canonical result does)."""
    return hashlib.sha256(config_yaml(hash_cfg).encode()).hexdigest()[:12]


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


def _column_ok(axis: Axis, task, raw_cells: list, templates: list, descs: list[str], firsts) -> bool:
    """A value axis can be applied to built scenarios iff it maps one-to-one onto a field
    (its ends composed in each cell ``descs`` names, with the other value axes at their first
    values ``firsts``, as the cell is built: a combination some point runs; its other values:
    :func:`_check_columns`)."""
    if not task.columns or axis.group or not all(_is_number(v) for v in axis.values):
        return False
    if axis.key.split(".")[0] not in SWAPPABLE:
        return False
    for raw, tpl, desc in zip(raw_cells, templates, descs):
        cur, ok = _scenario_attr(tpl, axis.key)
        if not ok or cur is None or isinstance(cur, str) or not _is_number(cur):
            return False
        if isinstance(cur, bool) != all(isinstance(v, bool) for v in axis.values):
            return False
        for v in {axis.values[0], axis.values[-1]}:
            c = copy.deepcopy(raw)
            OmegaConf.update(c, axis.key, v, merge=False)
            try:
                want = task.template(OmegaConf.create(_resolved(c)))
            except ConfigError as e:
                pairs = [(axis, v)] + [(b, x) for b, x in firsts if b is not axis]
                raise _combination_error(e, axis, pairs, desc) from None
            try:
                got = with_value(tpl, axis.key, v)
            except (ConfigError, TypeError, ValueError):
                return False
            if not _same(got, want):
                return False
    return True


def _head(key: str) -> str:
    return key.split(".")[0]


def _combination_error(e: ConfigError, axis: Axis, pairs: list, where: str) -> ConfigError:
    """``e``, refused at the combination ``pairs`` (``(axis, value)``, ``axis``'s first) in the
    cell ``where``, naming the axis of the key refused (else ``axis``) and, after the cell, the
    values of ``axis`` and of the other axes of the same model object but the key refused (the
    object checks its fields together: ``network.background_gbit_s=5 ... (at
    network.bandwidth_gbit_s=1)``)."""
    named = next((b for b, _ in pairs if b.key == e.key), axis)
    at = [where] * bool(where) + [
        f"{b.key}={x}" for b, x in pairs if b.key != e.key and (b is axis or _head(b.key) == _head(e.key))
    ]
    return _column_error(named, e, ", ".join(at))


def _column_error(axis: Axis, e: ConfigError, where: str) -> ConfigError:
    """``e`` (a value of column ``axis`` refused) naming the axis and the cell ``where``."""
    at = f" (at {where})" if where else ""
    return ConfigError(e.key, e.value, e.allowed, message=f"sweep.axes.{axis.dim}: {e.text()}{at}")


def _check_columns(caxes: list[Axis], templates: list, descs: list[str]) -> None:
    """Every value of every column axis built into every cell's scenario (~10 us each), before
    any point runs: a value one cell refuses (``network.background_gbit_s=1.5`` on 1 GbE, fine on
    10 GbE) was checked on the first cell only and failed mid-sweep, after chunks were written,
    naming neither the axis nor the cell.  The other column axes of the same model object
    (``network.bandwidth_gbit_s`` for ``network.background_gbit_s``: the object checks them
    together) are set to their first and last values each, not to every value; their base
    values run at no point and are never checked (the cells hold each column at its first value,
    the non-column value axes at their own)."""
    for a in caxes:
        others = [b for b in caxes if b is not a and _head(b.key) == _head(a.key)]
        ends = list(itertools.product(*[dict.fromkeys((b.values[0], b.values[-1])) for b in others]))
        for tpl, desc in zip(templates, descs):
            for v, end in itertools.product(a.values, ends):
                pairs = [(a, v), *zip(others, end)]
                try:
                    with_values(tpl, [(b.key, x) for b, x in pairs])
                except ConfigError as e:  # named by the axis of the key refused, at the others
                    raise _combination_error(e, a, pairs, desc) from None


def _with_pairs(raw, pairs):
    """A copy of the unresolved config ``raw`` with each ``(axis, value)`` of ``pairs`` set
    (``raw`` itself when there are none)."""
    pairs = list(pairs)
    if not pairs or raw is None:
        return raw
    out = copy.deepcopy(raw)
    for a, v in pairs:
        OmegaConf.update(out, a.key, v, merge=False)
    return out


def _swap_override(base_ov: list[str], key: str, value: str) -> str:
    """``key=value`` for a group swap (``+key=value`` when the base added the group with +)."""
    plus = any(split_override(o)[1] == key and o.startswith("+") for o in base_ov)
    return f"{'+' if plus else ''}{key}={value}"


def make_plan(
    overrides: Iterable[str] = (),
    results_dir: str | os.PathLike | None = None,
    expand: bool = True,
    cfg_pair=None,
    name: str | None = None,
) -> Plan:
    """Compose the config, check the axes and lay out every point (no simulation).

    ``expand=False`` stops after the config hash and the output path (one Hydra composition):
    enough to serve a cached result.  ``cfg_pair``: an already composed (unresolved,
    resolved) config of these overrides (no composition then).  ``name``: the result's name
    without an experiment (one point, e.g. a single evacuation).
    """
    overrides = clean_overrides([str(o) for o in overrides if not is_hydra_override(str(o))])
    default_name, name = name, experiment_name(overrides)
    raw_base, cfg = cfg_pair if cfg_pair is not None else compose_both(overrides)
    task = get_task(task_of(cfg))
    settings = settings_of(cfg)
    max_values = _posint(cfg, "sweep.max_values", None)
    replicates = _posint(cfg, "sweep.replicates", 1)
    replicates = 1 if replicates is None else replicates
    crn = OmegaConf.select(cfg, "sweep.common_random_numbers", default=False)
    if not isinstance(crn, bool):  # a string such as 'maybe' was read as true
        raise ConfigError("sweep.common_random_numbers", crn, "true or false")
    axes = parse_axes(cfg, max_values)
    notes = _check_not_swept(overrides, axes, name or default_name)
    task.check_plan(overrides, cfg, axes)  # what the task would not read: refused before any work
    if (
        not axes
        and name is None
        and default_name is None
        and OmegaConf.select(cfg, "sweep.name", default=None) is None
    ):
        raise ConfigError(
            "experiment",
            None,
            "",
            message="no experiment given: lmtk sweep "
            "experiment=NAME (available: " + ", ".join(available_experiments()) + ")",
        )
    name = name or str(OmegaConf.select(cfg, "sweep.name", default=None) or default_name or "sweep")
    # trace files and plug-in code included; and what the resolved config does not show: the
    # axes' order (it numbers the points: chunks, seeds) and the files of swapped groups; what
    # it read from outside the package is kept (inputs): the chunks simulate exactly that
    inputs = provenance.Inputs()
    code = provenance.code_hash()  # (the one config_hash reads: the same, or stale and an error)
    unread = task.unread_keys(overrides, cfg, axes)
    hash_cfg, L, config_hash = _identity(cfg, axes, replicates, inputs, unread)
    root = Path(results_dir) if results_dir is not None else Path(str(cfg.paths.results_dir))
    variant, why = _variant(overrides, hash_cfg, config_hash)
    folder = root / name if variant is None else root / name / "variants" / variant
    out = folder / f"{name}{FORMATS[settings['format']]}"
    plan = Plan(
        name=name,
        task=task.name,
        overrides=overrides,
        cfg=cfg,
        hash_cfg=hash_cfg,
        config_hash=config_hash,
        axes=axes,
        replicates=replicates,
        cells=[],
        cell_of=np.zeros(0, np.int64),
        columns={},
        seeds=np.zeros(0, np.uint32),
        round_detail=L,
        chunks=[],
        settings=settings,
        out_path=out,
        variant=variant,
        variant_reason=why,
        raw=raw_base,
        notes=notes,
        inputs=inputs,
        code_hash=code,
    )
    return expand_plan(plan) if expand else plan


def _check_not_swept(overrides: list[str], axes: list[Axis], name: str | None) -> list[str]:
    """An override of a key an axis sweeps would be replaced at every point, silently: it is
    an error that says how to choose the axis's values instead.  Returns notes on overrides
    of keys inside a swept group (:func:`_check_group_keys_not_erased`)."""
    swept = {a.key: a for a in axes}
    inside = []  # keys inside a swept group
    for o in overrides:
        prefix, key, value = split_override(o)
        a = swept.get(key)
        if a is None and "~" not in prefix:
            inside.append((key, value))
        if a is None or "~" in prefix:
            continue
        shown = ", ".join(map(str, a.values[:6])) + (", ..." if len(a.values) > 6 else "")
        raise ConfigError(
            key,
            value,
            "",
            message=(
                f"{key}={value} would have no effect: {f'experiment {name}' if name else 'the sweep'} sweeps "
                f"{key} (axis {a.dim}: {shown}); choose the axis's values instead: "
                f"sweep.axes.{a.dim}.values=[{value}]"
            ),
        )
    return _check_group_keys_not_erased(inside, axes, name)


def _check_group_keys_not_erased(
    pairs: list[tuple[str, str]], axes: list[Axis], name: str | None
) -> list[str]:
    """Overrides ``pairs`` (key, value) of keys inside a swept group (``network.bandwidth_gbit_s=2``
    under an axis over ``network: [1gbe, 10gbe]``) apply to every option.  Where they leave two
    options alike, their points would be one configuration under two names: an error.  Where
    they replace values the options' files set differently, the points keep the options' names
    but not those values: a note each (returned)."""
    _missing = object()
    notes = []
    where = f"experiment {name}" if name else "the sweep"
    for a in axes:
        mine = [(k[len(a.key) + 1 :], k, v) for k, v in pairs if a.group and k.startswith(a.key + ".")]
        nodes = {str(o): group_option_node(a.key, str(o)) for o in a.values} if mine else {}
        if not mine or any(n is None for n in nodes.values()):  # none, or unreadable here
            continue
        after = {o: copy.deepcopy(n) for o, n in nodes.items()}
        erased = []
        for sub, key, value in mine:
            own = {o: OmegaConf.select(n, sub, default=_missing) for o, n in nodes.items()}
            if len({repr(v) for v in own.values()}) > 1:  # the options set it differently
                shown = ", ".join(f"{o}: {'(default)' if v is _missing else v}" for o, v in own.items())
                erased.append(sub)
                notes.append(
                    f"{key}={value} replaces what the options of axis {a.dim} set ({shown}): every "
                    f"point runs {sub}={value}, under the options' names"
                )
            for n in after.values():
                OmegaConf.update(n, sub, yaml.safe_load(str(value)), merge=False, force_add=True)
        alike = {}
        for o, n in after.items():
            alike.setdefault(repr(OmegaConf.to_container(n)), []).append(o)
        same = next((v for v in alike.values() if len(v) > 1), None)
        if same and erased:
            given = " ".join(f"{k}={v}" for _, k, v in mine)
            raise ConfigError(
                mine[0][1],
                mine[0][2],
                "",
                message=(
                    f"{given} would make options {' and '.join(same)} of axis {a.dim} ({where}) one "
                    f"configuration under different names (they differ only in {', '.join(erased)}); "
                    f"sweep the key instead (sweep.axes.{a.dim}={{key: {a.key}.{erased[0]}, "
                    "values: [...]}) or drop the override"
                ),
            )
    return notes


def _cell_error(e: ConfigError, pairs) -> ConfigError:
    """A point's error, naming the axes whose values it concerns (``(axis, value)`` pairs of
    the point): those whose key is the error's key or holds it (a group), and the value axes
    of the same model object (``network.bandwidth_gbit_s=1`` for a background of 5 Gbit/s: the
    object checks them together); none for an error of the base config (``seed=-1`` is not
    about ``policy=vmware``)."""
    about = [
        (a, v)
        for a, v in pairs
        if e.key == a.key
        or e.key.startswith(a.key + ".")
        or a.key.startswith(e.key + ".")
        or (a.swap_class and e.key.startswith("policy."))  # a key of the class it swapped in
        or (not a.group and _head(a.key) == _head(e.key))
    ]
    where = ", ".join(f"sweep.axes.{a.dim}: {a.key}={v}" for a, v in about)
    return ConfigError(e.key, e.value, e.allowed, message=e.text() + (f" (at {where})" if where else ""))


def _policy_fields_per_value(axis: Axis) -> dict[str, dict]:
    """Field name -> default of the policy class each value of a policy axis runs (a
    ``policy._target_`` axis: its classes; a ``policy`` group axis: the class its option's
    file names, through its defaults list).  An option whose class cannot be told here (a
    plug-in not importable) is left out: its cell gives that error, naming the option."""
    from ..policies import policy_fields

    if axis.swap_class:
        return {str(v): policy_fields({"_target_": v}) for v in axis.values}
    out = {}
    for v in map(str, axis.values):
        node = group_option_node("policy", v)
        if node is None:  # a file this shortcut does not follow: as Hydra composes it
            node = compose_raw([f"policy={v}"]).policy
        try:
            out[v] = policy_fields(OmegaConf.to_container(node, resolve=False))
        except ConfigError:
            continue
    return out


def _check_policy_axis_keys(axis: Axis, keep: set[str], cfg) -> None:
    """A policy key set for an axis that chooses the policy (``keep``: command line,
    experiment, debug or local file) that some of its classes or options have and others do
    not: one error naming the key and both sets (each runs with the keys set for it; the base
    option's class does not run).  A key none of them has is left to the cell's "unknown key"
    error (with its closest keys)."""
    keys = sorted(keep - {"name", "_target_"})
    fields_of = _policy_fields_per_value(axis) if keys else {}
    what, label = ("class", "") if axis.swap_class else ("option", "policy ")
    for key in keys:
        have = [c for c, f in fields_of.items() if key in f]
        lack = [c for c in fields_of if c not in have]
        if have and lack:
            value = OmegaConf.select(cfg, f"policy.{key}")
            raise ConfigError(
                f"policy.{key}",
                value,
                "",
                message=f"policy.{key}={hydra_value(value)} is a key of {label}{', '.join(have)} but not of "
                f"{label}{', '.join(lack)} (sweep.axes.{axis.dim}: {axis.key}): every {what} of the axis "
                f"runs with it; sweep only {what}{'es' if axis.swap_class else 's'} that have it, or "
                "leave it out",
            )


def _sweep_wide_keys(overrides: list[str], axes: list[Axis]) -> set[str]:
    """``group.key`` set for the whole sweep — by the command line, the experiment, debug or
    local file (:func:`~.swap.keys_set_outside`; in a swapped group too: every option gets
    it) — and swept by no value axis."""
    swept = [a.key for a in axes if not a.group]
    out = {f"{g}.{k}" for g in SWAPPABLE for k in keys_set_outside(g, overrides)}
    return {k for k in out if not any(k == s or k.startswith(s + ".") for s in swept)}


def _template_reading(task, raw, free: set[str]):
    """``(template, config, resolved config, errors)`` of the unresolved cell config ``raw``:
    a key of ``free`` (:func:`_sweep_wide_keys`) that nothing reads in this cell
    (:class:`UnusedKeyError`: ``policy.smb_channels`` with ``policy.transport=tcp``) put back
    to its default (in a copy of ``raw``), each with the error it raised (``errors``).  Other
    errors raise."""
    res, unread = _resolved(raw), []
    while True:
        try:
            return task.template(OmegaConf.create(res)), raw, res, unread
        except UnusedKeyError as e:
            if e.key not in free or any(u.key == e.key for u in unread):
                raise
            raw = copy.deepcopy(raw)
            OmegaConf.update(raw, e.key, config_value(e.default), merge=False)
            res = _resolved(raw)
            unread.append(e)


def _unread_notes(unread: dict, n_cells: int) -> list[str]:
    """A sweep-wide key that some cells do not read runs there at its default: a note each.
    One that no cell reads is the error a single run gives (it would change nothing)."""
    notes = []
    for key, (e, where) in unread.items():
        if len(where) == n_cells:
            raise e
        shown = "; ".join(where[:3]) + ("; ..." if len(where) > 3 else "")
        notes.append(
            f"{key}={e.value!r} is not read at {shown}: those points run with its default "
            f"{e.default!r} (it would change nothing there), the others with {e.value!r}"
        )
    return notes


def expand_plan(plan: Plan) -> Plan:
    """Fill the plan's cells, columns, seeds and chunks (one composition per group swap)."""
    task, raw_base, overrides = get_task(plan.task), plan.raw, plan.overrides
    axes, cfg, n = plan.axes, plan.cfg, plan.n_points
    # cells: one Hydra composition per combination of group (and policy class) swaps ...
    gaxes = [a for a in axes if a.group or a.swap_class]
    swapped = {a.key for a in gaxes}
    # a policy swap keeps the policy keys set outside the base option (command line, experiment)
    keep = keys_set_outside("policy", overrides) if any(a.swaps_policy for a in gaxes) else set()
    for a in gaxes:
        if a.swaps_policy:
            _check_policy_axis_keys(a, keep, cfg)
    base_ov = [o for o in overrides if split_override(o)[1] not in swapped]
    raw_cells, templates = [], []
    # a key set for the whole sweep (not by an axis) that a cell does not read is put back to
    # its default there (_template_reading): clean_cells, with what each put back
    clean_cells, group_unread, descs, cell_pairs = [], [], [], []
    free = _sweep_wide_keys(overrides, axes)
    # each cell is built with the value axes at their first values, never at the base config's
    # (network=1gbe's 1 Gbit/s runs at no point of an axis over bandwidth [10, 25]: background
    # 5 Gbit/s was refused against it)
    firsts = [(a, a.values[0]) for a in axes if not a.group and not a.swap_class]
    # A group swap reuses a composition when that is exact (compose.swap_group: nothing but
    # the option's file sets the group's keys); the other swaps compose with Hydra, once per
    # combination of their values.
    hydra_axes = [a for a in gaxes if a.group and not group_is_untouched(a.key, overrides)]
    composed = {}

    def hydra_cell(pairs):
        ov = base_ov + [_swap_override(overrides, a.key, v) for a, v in pairs]
        try:
            return compose_raw(hydra_overrides(ov))
        except ConfigError as e:
            raise _cell_error(e, pairs) from None

    for combo in itertools.product(*[a.values for a in gaxes]):
        where = ", ".join(f"{g.key}={v}" for g, v in zip(gaxes, combo))
        pairs = list(zip(gaxes, combo))
        key = tuple(v for a, v in pairs if a in hydra_axes)
        if key not in composed:
            composed[key] = (
                hydra_cell([(a, v) for a, v in pairs if a in hydra_axes]) if hydra_axes else raw_base
            )
        raw = composed[key]
        for a, v in pairs:
            if a.swap_class:
                continue  # after the group swaps (which may swap the policy's option)
            if a not in hydra_axes:
                raw = swap_group(raw, a.key, v) if raw is not None else None
        if raw is None:
            raw = hydra_cell([(a, v) for a, v in pairs if a.group])
        for a, v in pairs:
            if a.swap_class:
                raw = swap_class(raw, v, keep)
        for a in axes:
            if not a.group and OmegaConf.select(raw, a.key, default="__missing__") == "__missing__":
                raise ConfigError(
                    f"sweep.axes.{a.dim}",
                    a.key,
                    "",
                    message=f"sweep.axes.{a.dim}: key '{a.key}' does not exist with {where}",
                )
        raw = _with_pairs(raw, firsts)
        try:
            tpl, clean, clean_res, put_back = _template_reading(task, raw, free)
        except ConfigError as e:
            raise _cell_error(e, pairs + firsts) from None
        raw_cells.append(raw)
        templates.append(tpl)
        clean_cells.append((clean, clean_res))
        group_unread.append(put_back)
        descs.append(where)
        cell_pairs.append(pairs)
    # ... value axes either become columns or multiply the cells
    for a in axes:
        if not a.group and not a.swap_class:
            a.column = _column_ok(a, task, [c for c, _ in clean_cells], templates, descs, firsts)
    vaxes = [a for a in axes if not a.group and not a.swap_class and not a.column]
    cfirsts = [(a, v) for a, v in firsts if a.column]  # each cell holds its columns' first values
    cells, unread, cell_tpls, cell_descs = [], {}, [], []
    for raw, tpl, (_, clean_res), gunread, desc, gpairs in zip(
        raw_cells, templates, clean_cells, group_unread, descs, cell_pairs
    ):
        for combo in itertools.product(*[a.values for a in vaxes]):
            here = ", ".join([desc] * bool(desc) + [f"{a.key}={v}" for a, v in zip(vaxes, combo)])
            if not vaxes:
                res, cunread = clean_res, gunread
            else:
                try:
                    tpl, _, res, cunread = _template_reading(task, _with_pairs(raw, zip(vaxes, combo)), free)
                except ConfigError as e:
                    raise _cell_error(e, gpairs + list(zip(vaxes, combo)) + cfirsts) from None
            for e in cunread:
                unread.setdefault(e.key, (e, []))[1].append(here or "every point")
            cells.append(res)
            cell_tpls.append(tpl)
            cell_descs.append(here)
    # the columns over the cells as they run (the non-column value axes at their own values)
    _check_columns([a for a in axes if a.column], cell_tpls, cell_descs)
    plan.notes = plan.notes + _unread_notes(unread, len(cells))
    shape = plan.shape
    idx = np.unravel_index(np.arange(n), shape) if axes else (np.zeros(n, dtype=np.int64),)
    pos = {a.dim: i for i, a in enumerate(axes)}
    # cell order: group combos (outer) x non-column value combos (inner)
    tshape = tuple(len(a.values) for a in gaxes) + tuple(len(a.values) for a in vaxes)
    if tshape:
        tidx = tuple(idx[pos[a.dim]] for a in gaxes) + tuple(idx[pos[a.dim]] for a in vaxes)
        cell_of = np.ravel_multi_index(tidx, tshape).astype(np.int64)
    else:
        cell_of = np.zeros(n, dtype=np.int64)
    columns = {a.key: np.array([float(v) for v in a.values])[idx[pos[a.dim]]] for a in axes if a.column}
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError("seed", seed, "a non-negative integer")
    ss = np.random.SeedSequence(seed)
    if OmegaConf.select(cfg, "sweep.common_random_numbers", default=False):
        words = ss.generate_state(plan.replicates, dtype=np.uint32)
        seeds = words[idx[-1]] if axes else words[np.arange(n)]
    else:
        seeds = ss.generate_state(n, dtype=np.uint32)
    if task.name == "migration":
        engines = {c.get("engine", "page") for c in cells}
        if "page" in engines:
            auto = AUTO_CHUNK["page"]
        else:  # every chunk of the fluid engine has a tail of slow migrations: fewer, larger chunks
            auto = max(
                AUTO_CHUNK["fluid"], min(AUTO_CHUNK["fluid"] * plan.replicates, FLUID_CHUNK_MAX_POINTS)
            )
    else:
        auto = AUTO_CHUNK.get(task.name, 1)
    chunk = plan.settings["chunk_size"] or auto
    plan.cells, plan.cell_of, plan.columns, plan.seeds = cells, cell_of, columns, seeds
    plan.chunks = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    return plan
