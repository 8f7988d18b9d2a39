"""Running a planned sweep: the cache, partial results, assembly into one Dataset, files.

The cache: a result is served from disk only when its ``lmt_config_hash`` — the resolved
config (minus run-time settings) *and* the package's source code
(:func:`lmtoolkit.provenance.code_hash`) — equals the plan's, as ``provenance.yaml`` records
it with the SHA-256 of the file's bytes, which must still match.  Finished chunks are written
atomically to ``<out dir>/.partial/<config-hash>/`` as they finish; a rerun after a crash or
SIGKILL loads them and computes only the missing chunks — unless it says ``sweep.cache=false``,
which recomputes every chunk (and discards those partial files).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from .. import provenance
from ..compose import as_overrides
from ..errors import ConfigError
from ..io import (
    check_writable,
    file_digest,
    read_dataset,
    remove_stale_temps,
    temp_prefix,
    write_dataset,
    write_text,
)
from ..tasks import get_task
from .execute import (
    EXECUTORS,
    chunk_file,
    chunk_task,
    claim_partial,
    dir_size,
    load_partial,
    remove_partial,
    save_partial,
    stale_partials,
)
from .plan import FORMATS, Plan, expand_plan, make_plan


def assemble(plan: Plan, batch, command: str) -> xr.Dataset:
    """The sweep's Dataset: dims = axes + replicate (+ the task's own), coords with units."""
    coords = {a.dim: a.coord() for a in plan.axes}
    coords["replicate"] = np.arange(plan.replicates)
    cattrs = {a.dim: a.coord_attrs() for a in plan.axes}
    cattrs["replicate"] = {"long_name": "replicate (independent repetition)", "units": "1"}
    # (the plan's hash: the axes' order and swapped groups' files too, and what the sweep read
    # when it began; hashing again would read the inputs again)
    attrs = provenance.attrs(plan.hash_cfg, plan.overrides, command, known_hash=plan.config_hash)
    attrs["title"] = _title(plan)
    attrs["lmt_experiment"] = plan.name
    attrs["lmt_task"] = plan.task
    attrs["lmt_variant"] = plan.variant or ""
    attrs["lmt_axes"] = json.dumps({a.dim: {"key": a.key, "values": a.values} for a in plan.axes})
    attrs["lmt_replicates"] = str(plan.replicates)
    if plan.notes:  # e.g. an override that replaced values the options of a swept group set
        attrs["lmt_notes"] = "\n".join(plan.notes)
    attrs["lmt_round_detail"] = str(plan.round_detail)
    scalars = getattr(batch, "scalars", {})
    for lab in ("policy", "engine"):
        vals = set(map(str, scalars[lab])) if lab in scalars else set()
        if len(vals) == 1:
            attrs[f"lmt_{lab}"] = vals.pop()
    ds = get_task(plan.task).to_dataset(batch, plan.dims, coords, attrs, cattrs)
    return ds.assign_coords(
        seed=(
            plan.dims,
            plan.seeds.astype(np.int64).reshape(plan.shape),
            {"long_name": "workload random seed of the point", "units": "1"},
        )
    )


#: the root config's title (configs/config.yaml): one migration's, not a sweep's or a task's
ROOT_TITLE = "single live migration"


def _title(plan: Plan) -> str:
    """The experiment's title, else the task's (an evacuation run without an experiment was
    titled 'single live migration', the root config's)."""
    title = str(plan.cfg.get("title") or "")
    if title and title != ROOT_TITLE:
        return title
    return getattr(get_task(plan.task), "title", None) or f"sweep {plan.name}"


def read_result(path) -> xr.Dataset:
    """Read a sweep result fully into memory, exactly as it was written."""
    return read_dataset(path)


def provenance_record(ds, plan: Plan, info: dict) -> dict:
    a = ds.attrs
    return {
        "experiment": plan.name,
        "task": plan.task,
        "variant": plan.variant,
        **({"variant_reason": plan.variant_reason} if plan.variant else {}),
        "title": a.get("title"),
        "file": plan.out_path.name,
        "config_hash": a.get("lmt_config_hash"),
        "code_hash": a.get("lmt_code_hash"),
        "command": a.get("history", "").split(" ", 1)[-1],
        "history": a.get("history"),
        "overrides": json.loads(a.get("lmt_overrides", "[]")),
        "git_commit": a.get("lmt_git_commit"),
        "git_dirty": a.get("lmt_git_dirty") == "true",
        "versions": json.loads(a.get("lmt_versions", "{}")),
        "created_at": a.get("lmt_created_at"),
        "dims": {d: int(n) for d, n in ds.sizes.items()},
        "axes": {
            ax.dim: {"key": ax.key, "values": ax.values, "group": ax.group, "vectorised": ax.column}
            for ax in plan.axes
        },
        "run": {
            k: info[k]
            for k in (
                "points",
                "chunks",
                "chunks_computed",
                "chunks_reused",
                "executor",
                "workers",
                "elapsed_s",
            )
            if k in info
        },
        "config": yaml.safe_load(a.get("lmt_config", "{}")),
        **(
            {"local_file": a["lmt_local_file"], "local_config": a["lmt_local_config"]}
            if "lmt_local_file" in a
            else {}
        ),
    }


def _progress(settings, total: int, name: str):
    from tqdm.auto import tqdm

    p = settings["progress"]
    return tqdm(
        total=total,
        unit="pt",
        desc=f"sweep {name}",
        file=sys.stderr,
        leave=False,
        disable=(None if p is None else not p),
        mininterval=0.5,
        dynamic_ncols=True,
    )


def _stored(plan: Plan) -> tuple[Path | None, dict]:
    """``(file, record)`` of this plan's result on disk, intact, in either format (``None``,
    ``{}``: none).  Its ``provenance.yaml`` (written after it) names the file, the config hash
    and the digest of the bytes written: a damaged file — a lost zarr chunk read back as NaN,
    flipped bytes that h5py reads as numbers or loops on — or one whose record is missing or
    older is recomputed, never served."""
    out = plan.out_path
    if not plan.settings["cache"]:
        return None, {}
    try:
        rec = yaml.safe_load((out.parent / "provenance.yaml").read_text()) or {}
        f = out.parent / str(rec.get("file"))
        # (the record's hash is the file's lmt_config_hash, and the digest says it is that file)
        if f in _formats(plan) and rec.get("config_hash") == plan.config_hash:
            return (f, rec) if rec.get("file_sha256") == file_digest(f) else (None, {})
    except Exception:  # noqa: BLE001 - unreadable: recompute
        pass
    return None, {}


def _formats(plan: Plan) -> list[Path]:
    """The result's file in each format (``walk.nc``, ``walk.zarr``): one of them at a time."""
    return [plan.out_path.parent / f"{plan.name}{suffix}" for suffix in FORMATS.values()]


def _drop_other_formats(plan: Plan) -> None:
    """Remove the result's file in another format than the one just written: it is stale, and
    ``provenance.yaml`` describes the new one (``walk.zarr`` stayed beside a ``walk.nc``
    after a switch of ``sweep.format``).  Renamed away first: never read half-removed.  The
    temporary files a killed writer left of either are removed too."""
    for f in _formats(plan):
        remove_stale_temps(f)
        if f != plan.out_path and f.exists():
            gone = f.with_name(f"{temp_prefix(f)}old.tmp")
            os.replace(f, gone)
            if gone.is_dir():
                shutil.rmtree(gone)
            else:
                gone.unlink()


def _convert(plan: Plan, src: Path, rec: dict, command: str) -> xr.Dataset:
    """This config's result, stored in the other format (``src``, ``rec`` its record), written
    in the plan's format, with ``provenance.yaml`` describing it; ``src`` then removed.  The
    data and attributes are those computed (a line of ``history`` says what converted it)."""
    ds = read_result(src)
    when = provenance.now()
    ds.attrs["history"] = f"{when} {command} (converted from {src.name})\n" + ds.attrs.get("history", "")
    out = plan.out_path
    write_dataset(ds, out)
    record = {**rec, "file": out.name, "history": ds.attrs["history"]}
    record["converted_from"] = {"file": src.name, "file_sha256": rec.get("file_sha256"), "at": when}
    record["file_sha256"] = file_digest(out)
    write_text(out.parent / "provenance.yaml", yaml.safe_dump(record, sort_keys=False, width=100))
    _drop_other_formats(plan)
    return ds


def run(
    overrides: Iterable[str] = (),
    command: str | None = None,
    results_dir: str | os.PathLike | None = None,
    log=None,
    cfg_pair=None,
    task: str | None = None,
    name: str | None = None,
):
    """Run (or load) a sweep; return ``(dataset, info)``.

    ``info``: ``path``, ``cached`` (served from disk), ``converted_from`` (the file in the
    other format it was served from, when ``sweep.format`` changed), ``points``, ``chunks``,
    ``chunks_computed``, ``chunks_reused`` (from ``.partial`` after an interruption),
    ``elapsed_s``, ``config_hash``, ``plan``, ``partials_note`` (partial chunks of other runs
    left in ``.partial`` that may be stale: a line to show the user, or None).  ``task``: the
    task the caller runs (an experiment of another task is a :class:`ConfigError`, never a
    silent substitute);
    ``name``: the result's name when no experiment is given (a single point).
    """
    t0 = time.perf_counter()
    overrides = as_overrides(overrides)
    plan = make_plan(overrides, results_dir=results_dir, expand=False, cfg_pair=cfg_pair, name=name)
    if task is not None and plan.task != task:
        raise ConfigError(
            "task",
            plan.task,
            "",
            message=f"experiment {plan.name} declares "
            f"task={plan.task}; this command runs task={task} (lmtk sweep "
            f"experiment={plan.name} runs any task)",
        )
    command = command or f"lmtoolkit.sweep({overrides!r})"
    settings, out = plan.settings, plan.out_path
    info = {
        "path": out,
        "config_hash": plan.config_hash,
        "points": plan.n_points,
        "chunks": 0,
        "chunks_computed": 0,
        "chunks_reused": 0,
        "cached": False,
        "executor": settings["executor"],
        "workers": settings["workers"],
        "plan": plan,
    }
    # notes are printed once the plan is known good: a bad value inside a swept group
    # (network.latency_ms=abc) printed "every point runs latency_ms=abc" before its error
    stored, rec = _stored(plan)
    partial = out.parent / ".partial" / plan.config_hash
    if stored == out:
        _log_notes(plan, log)
        ds = read_result(out)
        info.update(
            cached=True, elapsed_s=time.perf_counter() - t0, partials_note=_tidy_partials(plan, partial)
        )
        return ds, info
    check_writable(out, "paths.results_dir")
    if stored is not None:  # this config's result in the other format (sweep.format changed)
        _log_notes(plan, log)
        ds = _convert(plan, stored, rec, command)
        info.update(cached=True, converted_from=stored, elapsed_s=time.perf_counter() - t0)
        info["partials_note"] = _tidy_partials(plan, partial)
        return ds, info
    expand_plan(plan)  # (its notes: keys some cells do not read)
    _log_notes(plan, log)
    info.update(plan=plan, chunks=len(plan.chunks))
    if settings["cache"]:
        results = _resume(plan, partial)
    else:  # always recompute: chunks of an earlier run are not reused either
        results, dropped = {}, _discard(partial)
        if log and dropped:
            log(f"sweep.cache=false: discarded {dropped} partial chunk(s) of an earlier run in {partial}")
    info["chunks_reused"] = len(results)
    todo = [chunk_task(plan, s, e) for s, e in plan.chunks if (s, e) not in results]
    if log and results:
        log(f"resuming: {len(results)} of {len(plan.chunks)} chunks from {partial}")
    bar = _progress(settings, plan.n_points, plan.name)
    bar.update(sum(e - s for s, e in results))

    def done(chunk, batch):
        if len(plan.chunks) > 1:
            save_partial(chunk_file(partial, chunk.start, chunk.stop), plan.task, batch)
        results[(chunk.start, chunk.stop)] = batch
        info["chunks_computed"] += 1
        bar.update(chunk.stop - chunk.start)

    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        if todo and len(plan.chunks) > 1:
            stack.enter_context(claim_partial(partial, plan.code_hash))
        if todo:
            EXECUTORS[settings["executor"]](todo, done, settings)
    batch = get_task(plan.task).concat([results[c] for c in plan.chunks])
    ds = assemble(plan, batch, command)
    write_dataset(ds, out)
    info["elapsed_s"] = round(time.perf_counter() - t0, 3)
    record = {**provenance_record(ds, plan, info), "file_sha256": file_digest(out)}
    write_text(out.parent / "provenance.yaml", yaml.safe_dump(record, sort_keys=False, width=100))
    _drop_other_formats(plan)
    info["partials_note"] = _tidy_partials(plan, partial)
    return ds, info


def _tidy_partials(plan: Plan, partial: Path) -> str | None:
    """Once the result is in place (written or served): remove its partial chunks, and those
    of other configs that the current code can never resume (:func:`stale_partials`).  Returns
    a note naming those left because no one can tell here whether a run still writes them."""
    remove_partial(partial)
    left = [d for d in stale_partials(partial.parent, plan.code_hash) if d != partial]
    if not left:
        return None
    mib = sum(map(dir_size, left)) / 2**20
    return (
        f"note: {len(left)} partial result(s) of other runs left in {partial.parent} "
        f"({mib:.1f} MiB: {', '.join(d.name for d in left)}): written by older code "
        "or by a run that may still be going on; remove them by hand if none is"
    )


def _log_notes(plan: Plan, log) -> None:
    for note in plan.notes if log else ():
        log(f"note: {note}")


def _resume(plan: Plan, partial: Path) -> dict:
    results = {}
    if len(plan.chunks) > 1 and partial.is_dir():
        for s, e in plan.chunks:
            f = chunk_file(partial, s, e)
            if f.exists():
                try:
                    results[(s, e)] = load_partial(f, plan.task)
                except Exception:  # noqa: BLE001 - damaged: recompute that chunk
                    f.unlink(missing_ok=True)
    return results


def _discard(partial: Path) -> int:
    """Remove the partial chunks of an earlier run; how many there were."""
    n = len(list(partial.glob("chunk-*.npz"))) if partial.is_dir() else 0
    shutil.rmtree(partial, ignore_errors=True)
    return n


def sweep(overrides: Iterable[str] = (), command: str | None = None, cfg_pair=None):
    """Run the sweep an experiment declares; return ONE ``xarray.Dataset``.

    ``overrides`` are Hydra overrides (``["experiment=quickstart", "sweep.executor=dask"]``).
    Dims are the axes (short names) plus ``replicate`` and the task's own (``round`` for
    migrations, ``vm`` for evacuations); the Dataset is also written to
    ``results/<experiment>/<experiment>.nc`` (overrides that change the points: a variant
    under ``results/<experiment>/variants/``) with ``provenance.yaml`` beside it, and served
    from there when the same config and code run again.
    """
    return run(overrides, command=command, cfg_pair=cfg_pair)[0]
