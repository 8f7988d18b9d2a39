"""Collect: the runs of a Hydra multirun (``lmtk sweep -m``) -> one Dataset."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from .. import provenance
from ..compose import clean_overrides, is_hydra_override, split_override
from ..errors import ConfigError
from ..io import (
    DATASET_SUFFIXES,
    check_writable,
    read_attrs,
    read_input_dataset,
    readable,
    write_dataset,
    write_text,
)
from ..units import unit_of_key


def _override_value(v: str):
    try:
        out = yaml.safe_load(v)
    except yaml.YAMLError:
        return v
    return out if isinstance(out, (int, float, str, bool)) else v


def _labels(raw: list[str]) -> list:
    """The jobs' values of one override as coordinate labels: numbers, flags or strings; all as
    strings where they mix (``null`` and ``128``: the concatenation made the labels strings,
    and the jobs of 128 were then not found by the int label and collected as NaN)."""
    vals = [_override_value(v) for v in raw]
    if len({type(v) is str for v in vals}) > 1:
        return [str(v) for v in raw]
    return vals


def _null_as_nan(values) -> np.ndarray | None:
    """A collected coordinate of numbers and null (``policy.max_bandwidth_mib_s=null,128``:
    strings ``['null', '128']``, without units) as floats with NaN for null, as a sweep's axis
    stores it (:meth:`~lmtoolkit.sweep.axes.Axis.coord`); None where it is not that."""
    vals = [_override_value(str(v)) for v in values]
    if "null" not in vals or all(v == "null" for v in vals):
        return None
    if any(v != "null" and (isinstance(v, (bool, str)) or not isinstance(v, (int, float))) for v in vals):
        return None
    return np.array([np.nan if v == "null" else float(v) for v in vals])


#: overrides that say where a job's result goes and whether it shows progress, not what it
#: holds: the Hydra app sets both for each job (lmtoolkit/hydra_app.py)
_PLACEMENT = ("paths.results_dir", "sweep.progress")


def _identity(overrides) -> list[str]:
    """The overrides that make a result what it is, as the sweep records them (``lmt_overrides``)."""
    ov = clean_overrides([o for o in overrides if not is_hydra_override(o)])
    return [o for o in ov if split_override(o)[1] not in _PLACEMENT]


def _job_result(job: Path, overrides: list[str]) -> Path:
    """The result of the job's own overrides: a job directory that a later multirun into the
    same ``hydra.sweep.dir`` reused also holds the earlier run's result, under other labels."""
    files = sorted(
        p
        for p in [*job.rglob("*.nc"), *job.rglob("*.zarr")]
        if ".partial" not in p.parts and not p.name.startswith(".")
    )
    if not files:
        raise ConfigError(
            "collect", str(job), "", message=f"job {job} has no result file (did it fail? see {job}/*.log)"
        )
    want = _identity(overrides)
    found = {}  # file: (its overrides, its config hash)
    for f in files:
        with readable(f, "collect", "sweep result"):
            a = read_attrs(f)
        found[f] = (_identity(json.loads(a.get("lmt_overrides", "[]"))), a.get("lmt_config_hash"))
    mine = {f: h for f, (ov, h) in found.items() if ov == want}
    if len(set(mine.values())) == 1:
        return next(iter(mine))
    if not mine:
        others = "; ".join(f"{f.relative_to(job)} is of {' '.join(ov)}" for f, (ov, _) in found.items())
        why = f"holds no result of its overrides ({' '.join(want)}): {others} (results of an earlier "
        why += f"multirun into the same directory? did the job fail? see {job}/*.log)"
    else:
        hashes = ", ".join(f"{f.relative_to(job)}: config hash {h}" for f, h in mine.items())
        why = f"holds {len(mine)} results of its overrides, of different configs ({hashes}): "
        why += "remove the stale ones"
    raise ConfigError("collect", str(job), "", message=f"job {job} {why}")


def _check_same_points(dss: list[xr.Dataset], jobs: list[Path]) -> None:
    """Refuse jobs that ran different points.  Merging them by an outer join would make up the
    points a job did not run, and no honest filler exists for every variable (bool and int ones
    hold no NaN: converged=True, rounds=INT64_MIN).  The round dim alone may differ: its padding
    (NaN, round_kind -1) is what a sweep writes after a point's last round."""

    def show(ds, d):
        v = ds.get_index(d).tolist()
        return str(v) if len(v) <= 8 else f"{len(v)} values [{v[0]}, {v[1]}, …, {v[-1]}]"

    for ds, job in zip(dss[1:], jobs[1:]):
        for d in dss[0].dims:
            if d != "round" and not dss[0].get_index(d).equals(ds.get_index(d)):
                raise ConfigError(
                    "collect",
                    str(job),
                    "",
                    message=f"jobs {jobs[0].name} and {job.name} ran different points: {d} is "
                    f"{show(dss[0], d)} against {show(ds, d)}; collect merges jobs over the same "
                    "points, so an override that changes them (sweep.replicates, sweep.axes.…) "
                    "cannot differ between jobs",
                )


#: how many missing jobs or points an error names
_SHOW_MISSING = 4


def _first_few(items: list[str]) -> str:
    """The first :data:`_SHOW_MISSING` of ``items``, ``; ``-joined, and how many more."""
    more = len(items) - _SHOW_MISSING
    return "; ".join(items[:_SHOW_MISSING]) + (f" and {more} more" if more > 0 else "")


def _check_every_job_ran(run_dir: Path, latest: _Jobs, found: set) -> None:
    """Refuse a multirun some of whose jobs left no job directory (a SLURM array task that
    never started or was cancelled, a job still pending, a directory removed): their points
    were made up by the merge (NaN beside ``converged`` True, ``rounds`` and ``seed``
    INT64_MIN, ``stop_reason`` 'nan'), or, of a two-job multirun, the one job was the result."""
    missing = [job for job in latest.ordered if job not in found]
    if not missing:
        return
    shown = _first_few([" ".join(job) for job in missing])
    raise ConfigError(
        "collect",
        str(run_dir),
        "",
        message=f"{len(missing)} of the {len(latest.ordered)} jobs of the last multirun into {run_dir} "
        f"(its multirun.yaml: {' '.join(latest.task)}) left no job directory: {shown} (still "
        "pending, failed before it started, or removed?); collect merges every job: rerun the same "
        f"multirun with hydra.sweep.dir={run_dir} (finished jobs are served from their cache)",
    )


def _check_full_grid(run_dir: Path, varying: list[str], seen: dict) -> None:
    """Refuse jobs that do not cover every combination of the overrides that vary between
    them (a job directory removed, no ``multirun.yaml`` to tell): the merge made those points up."""
    values = [list(dict.fromkeys(point[i] for point in seen)) for i in range(len(varying))]
    holes = [p for p in itertools.product(*values) if p not in seen]
    if not holes:
        return
    shown = _first_few([" ".join(f"{k}={v}" for k, v in zip(varying, p)) for p in holes])
    raise ConfigError(
        "collect",
        str(run_dir),
        "",
        message=f"no job in {run_dir} ran {shown}: the {len(seen)} jobs cover {len(seen)} of the "
        f"{len(seen) + len(holes)} combinations of {', '.join(varying)}, and collect does not make up "
        "the points of a job that did not run; run the missing jobs into this directory, or collect "
        "a directory whose jobs form a full grid",
    )


class _Jobs(set):
    """The override lists of a multirun's jobs, and the multirun's own overrides (``task``)."""

    task: list[str]
    #: the jobs in the order the sweeper runs them (job number order)
    ordered: list[tuple]


def _latest_jobs(run_dir: Path) -> _Jobs | None:
    """The jobs of the last multirun into ``run_dir``, as override tuples, from the
    ``multirun.yaml`` Hydra writes there (the basic sweeper runs the cartesian product of its
    sweep overrides, in order); None where that cannot be told (no file, another sweeper)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    f = run_dir / "multirun.yaml"
    try:
        cfg = yaml.safe_load(f.read_text()) or {}
        task = [str(o) for o in cfg["hydra"]["overrides"]["task"]]
        sweeper = str(cfg["hydra"]["sweeper"].get("_target_", ""))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    if not sweeper.endswith("BasicSweeper"):
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(task)
    except Exception:  # noqa: BLE001 (an override grammar this check does not follow)
        return None
    choices = []
    for o, text in zip(parsed, task):
        if o.is_sweep_override():
            choices.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([text])
    ordered = list(itertools.product(*choices))
    out = _Jobs(ordered)
    out.task, out.ordered = task, ordered
    return out


def collect(run_dir, output: str | os.PathLike | None = None):
    """Merge the results of a multirun directory (``multirun/<date>/<time>``) into one Dataset.

    Each job's overrides (``<job>/.hydra/overrides.yaml``) that differ between jobs become
    new dims (``network=1gbe,10gbe`` → dim ``network``; ``vm.memory_gib=…`` → ``memory_gib``).
    A job's result is the one recorded with the job's overrides; the jobs must have run the
    same points (:func:`_check_same_points`); attributes that differ between jobs are recorded
    per job (``attrs`` in ``lmt_runs``), not as the file's.
    Written to ``<run_dir>/<experiment>.nc`` (or ``output``) with ``provenance.yaml``.
    Returns ``(dataset, path)``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError("collect", str(run_dir), "", message=f"no such directory: {run_dir}")
    if output is not None:
        check_writable(output, "--output", DATASET_SUFFIXES)
    jobs = sorted(
        (p.parent.parent for p in run_dir.glob("*/.hydra/overrides.yaml")),
        key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name),
    )
    if not jobs:
        raise ConfigError(
            "collect",
            str(run_dir),
            "",
            message=f"{run_dir} holds no Hydra multirun jobs (no */.hydra/overrides.yaml)",
        )
    runs = []
    latest = _latest_jobs(run_dir)
    for job in jobs:
        ov = [str(o) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []]
        if latest is not None and tuple(ov) not in latest:
            raise ConfigError(
                "collect",
                str(job),
                "",
                message=f"job {job} ({' '.join(ov)}) is not a job of the last multirun into {run_dir} "
                f"(its multirun.yaml: {' '.join(latest.task)}): a job directory an earlier multirun left "
                "(remove it, or give each multirun its own hydra.sweep.dir)",
            )
        runs.append((job, ov, _job_result(job, ov)))
    if latest is not None:
        _check_every_job_ran(run_dir, latest, {tuple(ov) for _, ov, _ in runs})
    parsed = []
    for _, ov, _ in runs:
        d = {}
        for o in ov:
            _, key, value = split_override(o)
            if key == "paths.results_dir":
                continue
            d[key] = value
        parsed.append(d)
    keys = list(dict.fromkeys(k for d in parsed for k in d))
    varying = [k for k in keys if len({d.get(k) for d in parsed}) > 1]
    dss = [read_input_dataset(f, "collect", "sweep result") for _, _, f in runs]
    base_dims = set(dss[0].dims)
    if any(set(ds.dims) - {"round"} != base_dims - {"round"} for ds in dss):
        raise ConfigError(
            "collect",
            str(run_dir),
            "",
            message="the runs have different dims "
            "(different experiments?); collect merges runs of one experiment",
        )
    _check_same_points(dss, [job for job, _, _ in runs])
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
    labels = {k: _labels([d.get(k, "null") for d in parsed]) for k in varying}
    stamped = []
    for j, ds in enumerate(dss):
        ds = ds.copy()
        for k in varying:
            ds = ds.expand_dims({names[k]: [labels[k][j]]})
        ds.attrs = {}
        stamped.append(ds)
    if varying:
        seen = {}
        for d, (job, _, _) in zip(parsed, runs):
            point = tuple(_override_value(d.get(k, "null")) for k in varying)
            if point in seen:  # 1 and 1.0: two jobs of one point, which would be one cell
                raise ConfigError(
                    "multirun",
                    str(run_dir),
                    "",
                    message=f"jobs {seen[point].name} and {job.name} ran the same point "
                    f"({', '.join(f'{k}={v}' for k, v in zip(varying, point))}): collect needs one job per point",
                )
            seen[point] = job
        _check_full_grid(run_dir, varying, seen)
        run_dim = "__run__"
        cat = xr.concat(
            [s.stack({run_dim: [names[k] for k in varying]}) for s in stamped],
            dim=run_dim,
            join="outer",
            coords="different",
            compat="equals",
            fill_value={"round_kind": np.int8(-1)},
            combine_attrs="drop",
        )
        merged = cat.unstack(run_dim)
        # unstack sorts: restore the order in which the jobs ran
        merged = merged.reindex({names[k]: list(dict.fromkeys(labels[k])) for k in varying})
        merged = merged.transpose(
            *[names[k] for k in varying], *[d for d in dss[0].dims if d in merged.dims], ...
        )
    else:
        merged = stamped[0]
    for k in varying:
        nums = _null_as_nan(merged[names[k]].values)
        if nums is not None:
            merged = merged.assign_coords({names[k]: nums})
        merged[names[k]].attrs.update({"long_name": f"{k} (multirun override)", "lmt_key": k})
        if merged[names[k]].dtype.kind in "biuf":  # a number or flag: its units from the key's name
            merged[names[k]].attrs["units"] = unit_of_key(k)
    if "round_kind" in merged:
        merged["round_kind"] = merged["round_kind"].fillna(-1).astype(np.int8)
        merged["round_kind"].attrs.update(dss[0]["round_kind"].attrs)
    for v in merged.variables:
        if v in dss[0].variables:
            for a, val in dss[0][v].attrs.items():
                merged[v].attrs.setdefault(a, val)
    # the jobs' attributes: those of one value in every job stay; the others (lmt_engine,
    # lmt_config … of an engine=fluid,page multirun) go into each job's record in lmt_runs
    rewritten = ("lmt_config_hash", "lmt_created_at", "lmt_overrides", "history")
    first = dss[0].attrs
    attr_keys = dict.fromkeys(k for d in dss for k in d.attrs if k not in rewritten)
    common = {k: first[k] for k in attr_keys if all(k in d.attrs and d.attrs[k] == first[k] for d in dss)}
    differ = [k for k in attr_keys if k not in common]
    name = common.get("lmt_experiment", "collected")
    command = f"lmtk collect {run_dir}"
    created = provenance.now()
    merged.attrs = dict(common)
    merged.attrs.update(
        {
            "history": f"{created} {command}\n" + "\n".join(d.attrs.get("history", "") for d in dss),
            "lmt_created_at": created,
            "lmt_overrides": json.dumps(
                sorted({o for _, ov, _ in runs for o in ov if not o.startswith("paths.results_dir=")})
            ),
            "lmt_config_hash": ",".join(d.attrs.get("lmt_config_hash", "") for d in dss),
            "lmt_runs": json.dumps(
                [
                    {
                        "job": j.name,
                        "overrides": ov,
                        "file": str(f.relative_to(run_dir)),
                        "config_hash": d.attrs.get("lmt_config_hash", ""),
                        "attrs": {k: d.attrs[k] for k in differ if k in d.attrs},
                    }
                    for (j, ov, f), d in zip(runs, dss)
                ]
            ),
            "lmt_collected_dims": json.dumps(names),
        }
    )
    out = Path(output) if output else check_writable(run_dir / f"{name}.nc", "collect")
    write_dataset(merged, out)
    write_text(
        out.parent / "provenance.yaml",
        yaml.safe_dump(
            {
                "collected_from": str(run_dir),
                "command": command,
                "created_at": created,
                "new_dims": names,
                "dims": {d: int(n) for d, n in merged.sizes.items()},
                "runs": json.loads(merged.attrs["lmt_runs"]),
                "git_commit": common.get("lmt_git_commit"),  # (else each run's attrs)
                "versions": json.loads(common.get("lmt_versions", "{}")),
            },
            sort_keys=False,
            width=100,
        ),
    )
    return merged, out
