"""What if: the fitted guest of a FIT file (:mod:`.fitfile`) under other settings.

``whatif(FIT, overrides)`` composes the FIT file with the overrides — one Hydra composition
per cell (a temporary ``fit/`` directory on ``hydra.searchpath``, ``+fit=observed``) — and
simulates; keys not overridden keep the observed run's settings.

* **Axes.**  ``key=a,b,c`` (Hydra's sweep syntax) or ``+sweep.axes.DIM={key: K, values: [...]}``
  make dims, as in ``lmtk sweep``: value axes are applied to the built scenario
  (:func:`lmtoolkit.engine.fluid.with_value`), group swaps (``policy=qemu,hybrid,vmware``)
  compose one cell each.
* **Group swaps.**  A swapped group takes the option's values: the FIT file's section for
  that group is dropped, except, for ``policy``, the keys that describe the run rather than
  the vendor — ``timeout_s``, ``stop_overhead_ms`` (fitted), ``dirty_clear`` (TCG), and the
  cap, downtime limit and capabilities — when the new policy has them.  So does a policy key
  given as an override beside a policy axis (``policy=qemu,vmware policy.downtime_limit_ms=100``):
  the options that have the key run with it, the others without it, with a note
  (:func:`policy_key_notes`; ``ds.attrs["lmt_notes"]``, and ``log``).  A key none of the
  axis's options has stays the error it is.
* **The cap.**  QEMU's pre-copy runs a little above ``max-bandwidth``; the fit measured the
  factor (``cap_factor`` in the FIT file) and a what-if cap (an override or an axis) is
  scaled by it, so that ``policy.max_bandwidth_mib_s=128`` means what an operator's
  ``migrate-set-parameters max-bandwidth`` of 128 MiB/s does on that host.
* **Seeds.**  The page engine draws its writes at random, and one run's total time moves by a
  whole pre-copy round when a round boundary falls the other side of the switchover threshold
  (the QMP fixture's fitted guest: 5.19 or 5.29 s by seed).  Each point is therefore the mean
  of ``seeds`` page-engine runs, seeds ``seed … seed+seeds-1`` of the config (``lmtk run
  seed=K`` repeats run K), the same seeds in every row (common random numbers), so that rows
  differ by their settings, not by their draws; ``*_seed_sd``, ``*_seed_min``, ``*_seed_max``
  give the runs' spread (a mean's own error is about ``sd / sqrt(seeds)``).  Float results
  (times, bytes, energy) are the seeds' means; the counts, flags and per-round detail are the
  run whose total time is nearest the mean (``seed``); ``converged_seeds`` is the share of
  seeds that converged.  The fluid engine is deterministic: one run.
* **Bands.**  The bootstrap parameter sets of the fit (``samples``) run on the fluid engine for
  the same points; their 5-95 % spread, moved to the point, and the seeds' min-max are added
  in quadrature (independent sources) and give ``*_lo`` / ``*_hi`` (total time, downtime,
  bytes); ``converged_share`` is the share of sets whose migration converged.  Neither is the
  model's own error (the fit's quality line states that: total time +1.3 % on the QMP
  fixture), so an observed run may fall outside its "as observed" band.  Fitted parameters
  that an override, an axis or a group swap replaces get no samples (the band is the seeds'
  range).  Without parameter sets (``samples=0``, a fit made with ``bootstrap=0``) the bands
  are NaN: none was estimated.

The Dataset has the variables of ``lmtk run`` (``total_time``, ``downtime``, ``transferred``,
``converged``, ``completed``, per-round detail …) over the axes' dims, the bands, the
observed run's totals (``observed_*``) and the observed and fitted trajectories (dims
``sync``, ``sample``, ``curve``) for :func:`lmtoolkit.logs.plot.fig_whatif`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import shutil
import tempfile
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from ..compose import WHATIF_VARIANT, hydra_value
from ..errors import ConfigError
from .fit import check_one_run
from .fitfile import FitFile, read_fit

#: policy keys a policy swap keeps from the observed run when the new policy has them
CARRY_POLICY = (
    "timeout_s",
    "stop_overhead_ms",
    "dirty_clear",
    "max_bandwidth_mib_s",
    "downtime_limit_ms",
    "auto_converge",
    "xbzrle",
    "xbzrle_cache_mib",
    "xbzrle_delta_ratio",
    "multifd_channels",
)
CAP_KEY = "policy.max_bandwidth_mib_s"
BANDED = ("total_time", "downtime", "transferred")
#: the banded variables and the record fields they come from
FIELDS = (("total_time", "total_time_s"), ("downtime", "downtime_s"), ("transferred", "transferred_bytes"))
#: page-engine runs (seeds) per what-if point (``lmtk whatif --seeds``): the mean's error is
#: about sd/sqrt(32) — 0.2 % of the QMP fixture's 5.24 s, a tenth of its one-round step
DEFAULT_SEEDS = 32
#: the most seeds per point: the mean's error sd/sqrt(1024) is sd/32, a 32nd of one run's spread
#: and under a fifth of the default's; each seed is one page-engine run of every point, all
#: held in one batch, so 10^8 seeds ran for hours (and would hold 10^8 records per point)
#: for an error no plot can show
MAX_SEEDS = 1024


def _split(o: str):
    from ..compose import split_override

    return split_override(o)


def _has_list_commas(value: str) -> bool:
    """``a,b,c`` at the top level (not inside [...], {...} or quotes)."""
    depth, quote = 0, None
    for ch in value:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def split_axes(overrides) -> tuple[list[str], dict]:
    """Overrides without the ``key=a,b`` sweeps, and those as ``dim -> (key, [values])``."""
    plain, axes = [], {}
    for o in overrides:
        prefix, key, value = _split(str(o))
        if not prefix and "=" in str(o) and _has_list_commas(value):
            vals = [yaml.safe_load(v.strip()) if v.strip() else "" for v in value.split(",")]
            dim = key.rsplit(".", 1)[-1]
            if dim in axes:
                dim = key.replace(".", "_")
            axes[dim] = (key, vals)
        else:
            plain.append(str(o))
    return plain, axes


def _policy_fields(name: str) -> set:
    from ..policies import policy_class

    try:
        cls = policy_class({"name": name})
    except Exception:  # noqa: BLE001 - a plug-in policy: carry nothing
        return set()
    return {f.name for f in fields(cls)} - set(cls.unused_fields)  # (fields its rules read)


def _option_policy_name(option: str) -> str:
    """The ``name`` a policy option selects (``vmware_vsphere7`` -> ``vmware``)."""
    from ..paths import config_dir

    p = config_dir() / "policy" / f"{option}.yaml"
    with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
        return str((yaml.safe_load(p.read_text()) or {}).get("name", option))
    return option


def fit_variant(ff: FitFile, swaps: dict) -> dict:
    """The FIT file's body with the sections of swapped groups dropped (see the module doc)."""
    body = copy.deepcopy(ff.config)
    defaults = (
        [d for d in ff.defaults if not any(f"/{g}" in str(list(d)[0]) for g in swaps)] if ff.defaults else []
    )
    for g, option in swaps.items():
        if g not in body:
            continue
        if g == "policy":
            keep = _policy_fields(_option_policy_name(option)) & set(CARRY_POLICY)
            body[g] = {k: v for k, v in body[g].items() if k in keep}
            if not body[g]:
                del body[g]
        else:
            del body[g]
    return {"defaults": defaults, **body}


class _FitDir:
    """A temporary search-path directory holding ``fit/<name>.yaml`` variants."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="lmtk-whatif-"))
        (self.root / "fit").mkdir()
        self.n = 0

    def add(self, body: dict) -> str:
        name = f"v{self.n}"
        self.n += 1
        (self.root / "fit" / f"{name}.yaml").write_text(
            f"# @package _global_\n{WHATIF_VARIANT}\n" + yaml.safe_dump(body, sort_keys=False)
        )
        return name

    def overrides(self, name: str) -> list[str]:
        return [f"hydra.searchpath=[file://{self.root}]", f"+fit={name}"]

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def _compose_cell(fd: _FitDir, ff: FitFile, user: list[str], swaps: dict):
    from ..compose import compose

    name = fd.add(fit_variant(ff, swaps))
    return compose(fd.overrides(name) + user)


def _swaps_of(overrides) -> dict:
    from ..sweep.axes import SWAPPABLE

    out = {}
    for o in overrides:
        prefix, key, value = _split(str(o))
        if "." not in key and key in SWAPPABLE:
            out[key] = value
    return out


def policy_key_notes(axes, plain) -> tuple[dict, list[str]]:
    """``(option -> overrides it runs without, notes)`` for a policy axis among ``axes``: an
    override ``policy.KEY=V`` that some options of the axis have and others lack applies to
    those that have it (as the observed run's cap and downtime limit do, :data:`CARRY_POLICY`).
    A key that every option has, or none (a typo: the cell's "unknown key" error), is left."""
    from ..sweep.plan import _policy_fields_per_value

    axis = next((a for a in axes if a.group and a.key == "policy"), None)
    given = [o for o in plain if _split(o)[0] == "" and _split(o)[1].startswith("policy.")]
    if axis is None or not given:
        return {}, []
    fields_of = _policy_fields_per_value(axis)
    drop, notes = {}, []
    for o in given:
        key = _split(o)[1].split(".")[1]
        have = [v for v, f in fields_of.items() if key in f]
        lack = [v for v in fields_of if v not in have]
        if not have or not lack:
            continue
        for v in lack:
            drop.setdefault(v, set()).add(o)
        notes.append(
            f"{o} is a key of policy {', '.join(have)} but not of {', '.join(lack)}: "
            f"the {', '.join(lack)} points run without it"
        )
    return drop, notes


def whatif(
    fit_path,
    overrides=(),
    samples: int | None = None,
    command: str | None = None,
    progress=None,
    log=None,
    seeds: int = DEFAULT_SEEDS,
) -> xr.Dataset:
    """Simulate the fitted guest of ``fit_path`` under ``overrides`` (see the module doc);
    ``log`` (``print``) is called with each note (``note: …``); ``seeds``: page-engine runs
    averaged per point."""
    from .. import dataset, provenance
    from ..compose import as_overrides
    from ..engine.fluid import simulate_fluid, simulate_fluid_columns
    from ..runner import build_scenario
    from ..sweep.axes import Axis, parse_axes
    from ..tasks import get_task

    ff = read_fit(fit_path)
    check_seeds(seeds)
    user = as_overrides(overrides)
    for o in user:
        if "=" not in o:
            raise ConfigError(o, None, "", message=f"override '{o}' is not of the form key=value")
        k = _split(o)[1]
        if k == "fit" or k.startswith("hydra"):
            raise ConfigError(
                k,
                None,
                "",
                message=f"'{o}': lmtk whatif sets the search path and the "
                "fit itself; give only the settings to change",
            )
    check_one_run(user, "lmtk whatif")
    plain, comma_axes = split_axes(user)
    for dim, (key, vals) in comma_axes.items():
        plain.append(f"+sweep.axes.{dim}={{key: {key}, values: [{', '.join(hydra_value(v) for v in vals)}]}}")
    cap_factor = float(ff.fit.get("cap_factor") or 1.0)
    fd = _FitDir()
    try:
        base_swaps = _swaps_of(plain)
        cfg = _compose_cell(fd, ff, plain, base_swaps)
        axes: list[Axis] = parse_axes(cfg, None)
        # composed per value: config groups, and value axes holding null (no cap: a built
        # scenario's column is a number; the composition checks each value as lmtk run does)
        gaxes = [a for a in axes if a.group or any(v is None for v in a.values)]
        without, notes = policy_key_notes(gaxes, plain)
        for note in notes if log else ():
            log(f"note: {note}")
        task = get_task("migration")
        base_tpl = build_scenario(cfg)
        vaxes = [a for a in axes if a not in gaxes]
        for a in vaxes:
            _check_value_axis(a, base_tpl)
        shape = tuple(len(a.values) for a in axes)
        n = int(np.prod(shape)) if shape else 1
        idx = np.unravel_index(np.arange(n), shape) if shape else ()
        pos = {a.dim: i for i, a in enumerate(axes)}
        user_keys = {_split(o)[1] for o in plain}
        fitted_keys, S = _samples(ff, samples)
        results, lo_hi = [None] * n, {v: (np.full(n, np.nan), np.full(n, np.nan)) for v in BANDED}
        conv_share, per_seed = np.full(n, np.nan), {}
        gcombos = list(itertools.product(*[a.values for a in gaxes])) or [()]
        for combo in gcombos:
            swaps = dict(base_swaps)
            swaps.update({a.key: v for a, v in zip(gaxes, combo) if a.group})
            skip = without.get(str(swaps.get("policy")), set())
            ov = [o for o in plain if _split(o)[1] not in {a.key for a in gaxes} and o not in skip] + [
                f"{a.key}={hydra_value(v)}" for a, v in zip(gaxes, combo)
            ]
            ccfg = cfg if not gaxes else _compose_cell(fd, ff, ov, swaps)
            if gaxes:
                where = ", ".join(f"{a.key}={v}" for a, v in zip(gaxes, combo))
                cell_tpl = build_scenario(ccfg)
                for a in vaxes:
                    try:
                        _check_value_axis(a, cell_tpl)
                    except ConfigError:
                        raise ConfigError(
                            f"sweep.axes.{a.dim}",
                            a.key,
                            "",
                            message=(f"what-if axis {a.dim}: {a.key} does not exist with {where}"),
                        ) from None
            if progress and gaxes:
                progress(", ".join(f"{a.key}={v}" for a, v in zip(gaxes, combo)))
            _apply_cap_factor(ccfg, ov, cap_factor)
            rows = np.arange(n)
            for a, v in zip(gaxes, combo):
                rows = rows[np.asarray(idx[pos[a.dim]])[rows] == a.values.index(v)]
            columns = {}
            for a in vaxes:
                vals = np.array([float(x) for x in a.values])
                if a.key == CAP_KEY:
                    vals = vals * cap_factor
                columns[a.key] = vals[np.asarray(idx[pos[a.dim]])[rows]]
            tpl = build_scenario(ccfg)
            central, spread = seed_mean(task, ccfg, columns, rows.size, _seed_list(tpl, seeds))
            for j, r in enumerate(rows):
                results[r] = central.take(np.array([j]))
            for key, arr in spread.items():
                per_seed.setdefault(key, np.full(n, np.nan))[rows] = arr
            # bands: the fit's bootstrap parameter sets on the fluid engine, and the seeds
            live = [
                i
                for i, k in enumerate(fitted_keys)
                if k not in user_keys and k.split(".")[0] not in swaps and k not in columns
            ]
            if S.shape[0] and live:
                reps = S.shape[0]
                cols = {k: np.repeat(v, reps) for k, v in columns.items()}
                for i in live:
                    cols[fitted_keys[i]] = np.tile(S[:, i], rows.size)
                import dataclasses

                ftpl = dataclasses.replace(tpl, engine="fluid")
                bb = simulate_fluid_columns(ftpl, cols, round_detail=0)
                ref = (
                    simulate_fluid_columns(ftpl, columns, round_detail=0)
                    if columns
                    else simulate_fluid([ftpl], round_detail=0)
                )
                for name, field in FIELDS:
                    vals = np.asarray(bb.scalars[field], float).reshape(rows.size, reps)
                    refv = np.asarray(ref.scalars[field], float).reshape(-1)
                    if refv.size == 1:
                        refv = np.repeat(refv, rows.size)
                    down, up = _quantile_offsets(vals, refv)
                    lo, hi = combined_band(central.scalars[field], down, up, spread, name)
                    lo_hi[name][0][rows], lo_hi[name][1][rows] = lo, hi
                conv_share[rows] = np.asarray(bb.scalars["converged"], float).reshape(rows.size, reps).mean(1)
            else:
                zero = np.zeros(rows.size)
                for name, field in FIELDS:
                    # no parameter sets (--samples 0, a fit with --bootstrap 0): no band (it
                    # was the central value on both sides, which looked exact); every fitted
                    # value replaced by an override or axis: the band is the seeds' range
                    lo, hi = combined_band(central.scalars[field], zero, zero, spread, name)
                    if not S.shape[0]:
                        lo, hi = np.full(rows.size, np.nan), np.full(rows.size, np.nan)
                    lo_hi[name][0][rows], lo_hi[name][1][rows] = lo, hi
                conv_share[rows] = spread["converged_seeds"] if S.shape[0] else np.nan
    finally:
        fd.close()
    batch = task.concat(results)
    dims = [a.dim for a in axes]
    coords = {a.dim: a.coord() for a in axes}
    cattrs = {a.dim: a.coord_attrs() for a in axes}
    attrs = provenance.attrs(cfg, user, command or f"lmtoolkit.logs.whatif({str(fit_path)!r}, {user!r})")
    attrs["title"] = f"what if: {ff.fit.get('log', {}).get('label', '')}"
    attrs["lmt_fit_file"] = str(fit_path)
    attrs["lmt_fit"] = json.dumps(
        {k: v for k, v in ff.fit.items() if k not in ("samples", "observed", "fitted")}
    )
    attrs["lmt_axes"] = json.dumps({a.dim: {"key": a.key, "values": a.values} for a in axes})
    attrs["lmt_cap_factor"] = cap_factor
    attrs["lmt_band_samples"] = int(S.shape[0])
    if notes:
        attrs["lmt_notes"] = "\n".join(notes)
    used = _seed_list(base_tpl, seeds)
    attrs["lmt_seeds"], attrs["lmt_seed_first"] = int(used.size), int(used[0])
    if not S.shape[0]:
        attrs["lmt_bands"] = (
            "none: the FIT file keeps no bootstrap samples (lmtk fit --bootstrap 0)"
            if not ff.samples()[1].shape[0]
            else "none: --samples 0"
        )
    ds = dataset.to_dataset(batch, dims=dims, coords=coords, attrs=attrs, coord_attrs=cattrs)
    shp = tuple(len(a.values) for a in axes)
    units = {"total_time": "s", "downtime": "s", "transferred": "bytes"}
    for name in BANDED:
        for side, arr in zip(("lo", "hi"), lo_hi[name]):
            ds[f"{name}_{side}"] = (
                dims,
                arr.reshape(shp),
                {
                    "units": units[name],
                    "long_name": f"{name}: {'5' if side == 'lo' else '95'} % of the fit's "
                    "bootstrap parameter sets and the seeds' "
                    f"{'min' if side == 'lo' else 'max'}, in quadrature (not the model's error)",
                },
            )
        for stat, what in (("sd", "standard deviation"), ("min", "least"), ("max", "largest")):
            ds[f"{name}_seed_{stat}"] = (
                dims,
                per_seed[f"{name}_seed_{stat}"].reshape(shp),
                {"units": units[name], "long_name": f"{name}: {what} of the point's {used.size} seeds"},
            )
    ds["converged_seeds"] = (
        dims,
        per_seed["converged_seeds"].reshape(shp),
        {"units": "1", "long_name": "share of the point's seeds whose migration converged"},
    )
    ds["seed"] = (
        dims,
        per_seed["seed"].astype(np.int64).reshape(shp),
        {"units": "1", "long_name": "the seed of the run whose counts, flags and rounds the point shows"},
    )
    ds["converged_share"] = (
        dims,
        conv_share.reshape(shp),
        {"units": "1", "long_name": "share of the fit's bootstrap parameter sets whose migration converged"},
    )
    _add_observed(ds, ff)
    return ds


def check_seeds(seeds) -> None:
    """``seeds`` is an integer in [1, :data:`MAX_SEEDS`] (ConfigError naming ``--seeds``
    otherwise), checked before any run."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(
            "--seeds",
            seeds,
            f"page-engine runs per point: an integer >= 1 and <= {MAX_SEEDS} "
            f"(the mean's error is sd/sqrt(N): sd/32 at {MAX_SEEDS})",
        )


def _seed_list(tpl, seeds: int) -> np.ndarray:
    """The config's seed and the next ``seeds - 1`` (one for the deterministic fluid engine)."""
    return np.arange(int(tpl.seed), int(tpl.seed) + (1 if tpl.engine == "fluid" else int(seeds)))


def _nan_stat(fn, a: np.ndarray, **kw) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (nothing completed): NaN
        return fn(a, axis=1, **kw)


def seed_mean(task, cfg, columns: dict, n_rows: int, seeds: np.ndarray):
    """Run each of ``n_rows`` points (``columns``: key -> (n_rows,) values) with every seed in
    one batch, the same seeds for every point.  Returns the points (float results: the seeds'
    means; counts, flags and rounds: the run nearest the mean total time) and the spread:
    ``<var>_seed_sd|min|max`` (s, bytes), ``converged_seeds`` (share), ``seed`` (the run kept)."""
    k = len(seeds)
    cols = {key: np.repeat(np.asarray(v), k) for key, v in columns.items()}
    batch = task.run_cell(cfg, cols, np.tile(seeds, n_rows), 64)
    per = {key: np.asarray(v).reshape(n_rows, k) for key, v in batch.scalars.items()}
    t = per["total_time_s"].astype(float)
    pick = np.argmin(np.abs(t - t.mean(axis=1, keepdims=True)), axis=1)  # ties: the lowest seed
    out = batch.take(np.arange(n_rows) * k + pick)
    for src, dst in ((batch.scalars, out.scalars), (batch.extra, out.extra)):
        for key, v in src.items():
            if np.asarray(v).dtype.kind == "f":
                dst[key] = _nan_stat(np.nanmean, np.asarray(v).reshape(n_rows, k))
    spread = {"converged_seeds": per["converged"].astype(float).mean(axis=1), "seed": seeds[pick]}
    for name, field in FIELDS:
        v = per[field].astype(float)
        spread[f"{name}_seed_sd"] = _nan_stat(np.nanstd, v, ddof=1) if k > 1 else np.zeros(n_rows)
        spread[f"{name}_seed_min"] = _nan_stat(np.nanmin, v)
        spread[f"{name}_seed_max"] = _nan_stat(np.nanmax, v)
    return out, spread


def _quantile_offsets(vals: np.ndarray, ref: np.ndarray):
    """How far the 5 % and 95 % of the parameter sets' results (rows x sets) lie below and
    above the fluid engine's result at the fitted values (>= 0; NaN where none completed)."""
    if not np.isfinite(vals).any():
        nan = np.full(vals.shape[0], np.nan)
        return nan, nan
    q05, q95 = _nan_stat(np.nanpercentile, vals, q=5), _nan_stat(np.nanpercentile, vals, q=95)
    return np.maximum(ref - q05, 0.0), np.maximum(q95 - ref, 0.0)


def combined_band(point, down, up, spread: dict, name: str):
    """The band around ``point``: the parameter sets' offsets ``down`` / ``up`` and the seeds'
    min-max around the point, added in quadrature (independent sources)."""
    cen = np.asarray(point, float)
    lo = cen - np.hypot(down, np.maximum(cen - spread[f"{name}_seed_min"], 0.0))
    hi = cen + np.hypot(up, np.maximum(spread[f"{name}_seed_max"] - cen, 0.0))
    return lo, hi


def _check_value_axis(a, tpl):
    from ..sweep.plan import _scenario_attr

    cur, ok = _scenario_attr(tpl, a.key)
    bad = [v for v in a.values if not isinstance(v, (int, float, bool))]
    if ok and cur is not None and not isinstance(cur, str) and bad:  # the key can vary: a value is wrong
        raise ConfigError(
            f"{a.key}",
            bad[0],
            "",
            message=f"what-if axis {a.dim}: {a.key}={bad[0]!r} is not allowed: the values must be numbers "
            f"({', '.join(map(str, a.values))} given)",
        )
    if ok and cur is None and not bad:  # a number axis over a key the fitted run leaves null
        one = f"{a.key}={a.values[0]}"
        raise ConfigError(
            f"sweep.axes.{a.dim}",
            a.key,
            "",
            message=(
                f"what-if axis {a.dim}: {a.key} is null in the fitted run (the class's default, e.g. "
                f"no cap), and an axis varies a number it ran with: state it when fitting "
                f"(lmtk fit LOG {one}), or ask one value per what-if ({one})"
            ),
        )
    if not ok or cur is None or isinstance(cur, str) or bad:
        raise ConfigError(
            f"sweep.axes.{a.dim}",
            a.key,
            "",
            message=(
                f"what-if axis {a.dim}: {a.key} cannot be varied on the built scenario (numbers or booleans "
                f"of vm, workload, network, host, policy; config groups as policy=qemu,vmware)"
            ),
        )


def _apply_cap_factor(cfg, plain, factor: float) -> None:
    """Scale a what-if cap given as an override by the fitted cap factor (in place)."""
    from omegaconf import OmegaConf

    if factor == 1.0 or "policy" not in cfg or cfg.policy.get("max_bandwidth_mib_s", None) is None:
        return
    if any(_split(o)[1] == CAP_KEY for o in plain):
        OmegaConf.set_struct(cfg, False)
        cfg.policy.max_bandwidth_mib_s = float(cfg.policy.max_bandwidth_mib_s) * factor


def _samples(ff: FitFile, n: int | None):
    keys, vals = ff.samples()
    if n is not None:
        vals = vals[: max(int(n), 0)]
    return keys, vals


def _add_observed(ds: xr.Dataset, ff: FitFile) -> None:
    obs, fit = ff.fit.get("observed") or {}, ff.fit.get("fitted") or {}

    def arr(x):
        return np.array([np.nan if v is None else v for v in (x or [])], float)

    for k, u, ln in (
        ("total_time", "s", "observed total time (the log's)"),
        ("downtime", "s", "observed downtime"),
        ("transferred", "bytes", "observed bytes"),
    ):
        v = obs.get(k)
        ds[f"observed_{k}"] = ((), float("nan") if v is None else float(v), {"units": u, "long_name": ln})
    # the host stalls the fit cut out of the log's time line (a FIT file from before they were
    # recorded states none): the fitted run, and the what-ifs, are without them
    stall_s = [float(x) for x in (obs.get("stall_s") or []) if x is not None]
    free = obs.get("total_time_stall_free")
    free = float(free) if free is not None else float(ds["observed_total_time"])
    ds["observed_stall_time"] = (
        (),
        float(sum(stall_s)),
        {"units": "s", "long_name": "host stalls in the log, cut out by the fit", "stalls": len(stall_s)},
    )
    ds["observed_total_time_stall_free"] = (
        (),
        free,
        {
            "units": "s",
            "long_name": "observed total time less the host stalls (what the fit matched; "
            "compare the what-if points with it)",
        },
    )
    ds["observed_converged"] = (
        (),
        bool(obs.get("converged", False)),
        {"units": "1", "long_name": "observed run converged"},
    )
    nsync = len(obs.get("sync") or [])
    ds.coords["sync"] = (
        "sync",
        np.array(obs.get("sync") or [], np.int64),
        {"long_name": "dirty-sync-count", "units": "1"},
    )
    ds["observed_sync_lo"] = (
        "sync",
        arr(obs.get("sync_lo")),
        {"units": "s", "long_name": "sync after this poll"},
    )
    ds["observed_sync_hi"] = (
        "sync",
        arr(obs.get("sync_hi")),
        {"units": "s", "long_name": "sync before this poll"},
    )
    ds["observed_new_bytes"] = (
        "sync",
        arr(obs.get("new_bytes")),
        {"units": "bytes", "long_name": "bytes the sync added to the dirty bitmap (observed)"},
    )
    ft = arr(fit.get("sync_time"))[:nsync]
    fn = arr(fit.get("new_bytes"))[:nsync]
    ds["fitted_sync_time"] = (
        "sync",
        np.pad(ft, (0, nsync - ft.size), constant_values=np.nan),
        {"units": "s", "long_name": "sync time (fitted)"},
    )
    ds["fitted_new_bytes"] = (
        "sync",
        np.pad(fn, (0, nsync - fn.size), constant_values=np.nan),
        {"units": "bytes", "long_name": "bytes the sync added (fitted)"},
    )
    ds["observed_sample_time"] = (
        "sample",
        arr(obs.get("sample_time")),
        {"units": "s", "long_name": "poll time"},
    )
    ds["observed_remaining"] = (
        "sample",
        arr(obs.get("sample_remaining")),
        {"units": "bytes", "long_name": "dirty bytes left (observed)"},
    )
    ds["fitted_curve_time"] = ("curve", arr(fit.get("remaining_t")), {"units": "s", "long_name": "time"})
    ds["fitted_remaining"] = (
        "curve",
        arr(fit.get("remaining")),
        {"units": "bytes", "long_name": "dirty bytes left (fitted)"},
    )
