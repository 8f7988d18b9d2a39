"""Running a sweep's chunks: one chunk = plain data in, plain arrays out, in any executor.

Every executor hands each finished chunk to ``done`` as soon as it finishes (the driver
writes it to ``.partial/`` at once), so an interrupted sweep — Ctrl-C, SIGKILL, a lost
worker — keeps every chunk that finished and a rerun computes only the rest.

Executors (``sweep.executor``): ``inline``; ``processes`` (``concurrent.futures`` process
pool, ``sweep.workers``); ``dask`` (``distributed``: a ``LocalCluster`` when
``sweep.dask_address`` is null, else the scheduler at that address).  Results are identical
whichever runs them.

A chunk carries what its configs read from outside the package, as the config hash read it
(:class:`lmtoolkit.provenance.Inputs`): the bytes of each input file (traces), which the
worker simulates instead of opening the name on its own disk, and the digest of each plug-in
policy's source files, which the worker checks against its own copy before it simulates; and
the driver's code hash, which the worker checks against the lmtoolkit code it runs
(:func:`check_code`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from .. import provenance
from ..errors import ConfigError
from ..io import atomic_path, remove_stale_temps, temp_prefix, writer_gone
from ..runner import SHIPPED_INPUTS
from ..tasks import get_task
from .plan import DEFAULT_ROUND_DETAIL, Plan

#: seconds to wait for a Dask scheduler at ``sweep.dask_address``
DASK_CONNECT_TIMEOUT_S = 5


@dataclass
class ChunkTask:
    start: int
    stop: int
    task: str
    cells: dict
    cell_of: np.ndarray
    columns: dict
    seeds: np.ndarray
    round_detail: int = DEFAULT_ROUND_DETAIL
    #: input file name (as the configs write it) -> (the driver's path, its bytes; None: no
    #: such file); None: read them from this machine's disk (a chunk made by hand)
    inputs: dict | None = None
    #: plug-in ``_target_`` -> ((module, the driver's file, sha256 hex), ...)
    plugins: dict | None = None
    #: the driver's :func:`~lmtoolkit.provenance.code_hash` (None: a chunk made by hand)
    code: str | None = None


def chunk_task(plan: Plan, start: int, stop: int) -> ChunkTask:
    cell_of = plan.cell_of[start:stop]
    cells = {int(c): plan.cells[int(c)] for c in np.unique(cell_of)}
    trees = [provenance.input_tree(c) for c in cells.values()]
    names = sorted({f for t in trees for f in provenance.named_values(t, "file")})
    targets = sorted({t for tr in trees for t in provenance.named_values(tr, "_target_")})
    return ChunkTask(
        start=start,
        stop=stop,
        task=plan.task,
        cells=cells,
        cell_of=cell_of,
        columns={k: v[start:stop] for k, v in plan.columns.items()},
        seeds=plan.seeds[start:stop],
        round_detail=plan.round_detail,
        inputs={f: plan.inputs.content(f) for f in names},
        plugins={t: plan.inputs.plugin(t) for t in targets},
        code=plan.code_hash,
    )


def check_plugins(plugins: dict | None) -> None:
    """Refuse to simulate with plug-in code other than the driver hashed: the modules of each
    ``_target_`` this process runs must be the driver's, file content for file content (a Dask
    worker imports the plug-in from its own ``sys.path``, and keeps what it imported first)."""
    for target, want in (plugins or {}).items():
        loaded, disk = provenance.plugin_code(target)
        code = provenance.same_code
        if code(loaded, want):  # (module by module: the files' paths may differ between machines)
            continue
        if code(disk, want):
            raise provenance.stale_plugin_error(target, loaded, disk)
        here = {m: (p, d) for m, p, d in disk}
        there = {m: (p, d) for m, p, d in want}
        mod = next(m for m in {**there, **here} if here.get(m, ("", ""))[1] != there.get(m, ("", ""))[1])
        if mod not in here:
            what = f"module {mod} (the driver's {there[mod][0]}) does not import here"
        elif mod not in there:
            what = f"here it also runs module {mod} ({here[mod][0]}), which the driver's plug-in does not use"
        else:
            what = (
                f"module {mod} is {here[mod][0]} (sha256 {here[mod][1][:12]}) here, "
                f"{there[mod][0]} (sha256 {there[mod][1][:12]}) on the driver"
            )
        raise ConfigError(
            "policy._target_",
            target,
            "",
            message=(
                f"policy._target_={target}: process {os.getpid()} on {socket.gethostname()} would run "
                f"other plug-in code than the driver hashed: {what}; give every worker the driver's "
                "copy of the plug-in (the same module on its PYTHONPATH), or run with "
                "sweep.executor=processes"
            ),
        )


def check_code(want: str | None) -> None:
    """Refuse to simulate with lmtoolkit code other than the driver hashed (``want``, its
    :func:`~lmtoolkit.provenance.code_hash`): this process must run the code of its own package
    files — not modules it imported before they changed (a long-lived Dask worker after an edit
    or ``git pull``: it computed the old rule's numbers, stored under the new code's hash) —
    and those files must be the driver's, by content (another install on another machine).
    ``want`` None: only the first check."""
    here = provenance.running_code_hash(want)
    if want is None or here == want:
        return
    raise ConfigError(
        "lmtoolkit",
        str(provenance.package_dir()),
        "",
        message=(
            f"lmtoolkit: {provenance.this_process()} runs other lmtoolkit code than the driver "
            f"hashed: code {here[:12]} here ({provenance.package_dir()}), {want[:12]} on the driver; "
            "install the driver's lmtoolkit on the workers (the same version and edits) and restart "
            "them, or run with sweep.executor=processes; nothing was computed"
        ),
    )


def run_chunk(chunk: ChunkTask, inputs: dict | None = None):
    """Simulate the points of one chunk; returns the task's batch (points in chunk order).

    Input files come from the chunk (``inputs``, when given, stands for ``chunk.inputs``: one
    copy sent to each Dask worker), never from this machine's disk (unless the chunk has none:
    ``inputs=None``, one made by hand); plug-in code other than the driver's is refused
    (:func:`check_plugins`), and so is lmtoolkit code other than the driver's (:func:`check_code`)."""
    check_code(chunk.code)
    check_plugins(chunk.plugins)
    shipped = inputs if inputs is not None else chunk.inputs
    token = SHIPPED_INPUTS.set(shipped)
    try:
        task = get_task(chunk.task)
        parts, order = [], []
        for c, res in chunk.cells.items():
            sel = np.flatnonzero(chunk.cell_of == c)
            if not sel.size:
                continue
            cols = {k: v[sel] for k, v in chunk.columns.items()}
            parts.append(task.run_cell(OmegaConf.create(res), cols, chunk.seeds[sel], chunk.round_detail))
            order.append(sel)
    finally:
        SHIPPED_INPUTS.reset(token)
    out = task.concat(parts)
    order = np.concatenate(order)
    if not np.array_equal(order, np.arange(order.size)):
        out = out.take(np.argsort(order, kind="stable"))
    return out


# -- partial results ----------------------------------------------------------------------------
def chunk_file(d: Path, start: int, stop: int) -> Path:
    return d / f"chunk-{start:010d}-{stop:010d}.npz"


def save_partial(path: Path, task_name: str, batch) -> None:
    arrays = get_task(task_name).to_arrays(batch)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_partial(path: Path, task_name: str):
    with np.load(path, allow_pickle=False) as z:
        return get_task(task_name).from_arrays({k: z[k] for k in z.files})


#: in a partial directory: the code hash of the run that writes it (``CODE_FILE``), and one
#: ``.run.<pid>@<host>`` marker a run that writes there (removed when it ends)
CODE_FILE = "code_hash"
RUN_MARK = ".run."


def _marker(d: Path) -> Path:
    return d / f"{RUN_MARK}{os.getpid()}@{socket.gethostname()}"


@contextlib.contextmanager
def claim_partial(d: Path, code_hash: str | None):
    """Mark ``d`` (``.partial/<config-hash>``) as written by this process while the block
    runs, with the code hash that writes it, so that another sweep can tell whether it may
    remove it (:func:`partial_in_use`, :func:`remove_partial`)."""
    d.mkdir(parents=True, exist_ok=True)
    mark = _marker(d)
    mark.touch()
    if code_hash and not (d / CODE_FILE).exists():
        with atomic_path(d / CODE_FILE) as tmp:
            tmp.write_text(code_hash)
    try:
        yield d
    finally:
        mark.unlink(missing_ok=True)


def partial_in_use(d: Path) -> bool:
    """Could another process be writing to partial directory ``d``?  True for a marker of a
    live process on this host other than this one, or of another host (a shared file system:
    its processes cannot be seen from here)."""
    me = _marker(d).name
    for m in d.glob(f"{RUN_MARK}*"):
        pid, _, host = m.name[len(RUN_MARK) :].partition("@")
        if m.name != me and not writer_gone(pid, host):
            return True
    return False


def remove_partial(d: Path) -> bool:
    """Remove partial directory ``d`` unless another process may be writing to it: renamed
    away first (``.partial/.<hash>.<pid>@<host>~old.tmp``, as :func:`lmtoolkit.io.temp_prefix`:
    a removal cut short is never read as chunks, and the next one clears it), then deleted.
    True if it is gone."""
    remove_stale_temps(d)
    if not d.is_dir():
        return True
    if partial_in_use(d):
        return False
    gone = d.with_name(f"{temp_prefix(d)}old.tmp")
    try:
        os.replace(d, gone)
    except OSError:
        return False
    shutil.rmtree(gone, ignore_errors=True)
    with contextlib.suppress(OSError):
        d.parent.rmdir()  # (.partial itself, once empty)
    return True


def stale_partials(root: Path, code_hash: str | None) -> list[Path]:
    """Remove the partial directories under ``root`` (``.partial``) that the current code can
    never resume — their recorded code hash is another — and no live process writes to.
    Returns those left that may be stale but cannot be told safe: written before the code hash
    was recorded (a run of that code may be going on; it leaves no marker), or in use."""
    left = []
    for d in sorted(root.iterdir()) if root.is_dir() else ():
        if not d.is_dir() or d.name.startswith("."):
            continue
        try:
            recorded = (d / CODE_FILE).read_text().strip()
        except OSError:
            recorded = None
        if recorded is None:
            left.append(d)
        elif code_hash and recorded != code_hash and not remove_partial(d):
            left.append(d)
    return left


def dir_size(d: Path) -> int:
    """Bytes of the files under ``d``."""
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


# -- executors -----------------------------------------------------------------------------------
def usable_cores() -> int:
    """The CPUs this process may run on: its affinity (a SLURM job's ``--cpus-per-task``,
    ``taskset``, a container's cpuset), not the machine's (``os.cpu_count``: 128 on a node
    where the job has 2, and ``sweep.workers=null`` started 128 processes on those 2)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # (no affinity call: macOS, Windows)
        return os.cpu_count() or 1


def workers(settings) -> int:
    """``sweep.workers``, or (null) :func:`usable_cores`."""
    return int(settings["workers"] or usable_cores())


def run_inline(chunks, done, settings):
    for t in chunks:
        done(t, run_chunk(t))


#: seconds between a pool worker's checks that the process that started it still runs
PARENT_POLL_S = 0.5


def _exit_with_parent() -> None:
    """A pool worker's initializer: exit once the process that started it is gone.  A driver
    killed by SIGKILL (``kill -9``, the OOM killer: the driver holds the sweep's results) left
    its workers behind for good — forked, they hold the pool's queue open themselves, so they
    wait on it forever with the driver's memory; their chunk's result has nowhere to go."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="lmtoolkit-parent-watch", daemon=True).start()


def run_processes(chunks, done, settings):
    """A process pool; each chunk is handed to ``done`` the moment it finishes.  Its workers
    exit when the driver dies (:func:`_exit_with_parent`)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # the platform's default start method (fork on Linux up to Python 3.13: no re-import of
    # the caller's script; spawn/forkserver elsewhere need the usual `if __name__ == "__main__"`)
    ex = ProcessPoolExecutor(max_workers=min(workers(settings), len(chunks)), initializer=_exit_with_parent)
    try:
        futs = {ex.submit(run_chunk, t): t for t in chunks}
        pending = set(futs)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                done(futs[f], f.result())
    except BaseException:
        # the running chunks' processes, taken before shutdown (which sets the table to None
        # and used to hide the chunk's own error behind an AttributeError): stop them now
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()
        raise
    ex.shutdown(wait=True)


def _dask_client(settings, n_chunks: int, stack: contextlib.ExitStack):
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover
        raise ConfigError(
            "sweep.executor",
            "dask",
            "",
            message="sweep.executor=dask needs the 'distributed' package: pip install -e '.[scale]'",
        ) from None
    address = settings["dask_address"]
    if address:
        try:
            return stack.enter_context(Client(str(address), timeout=f"{DASK_CONNECT_TIMEOUT_S}s"))
        except (OSError, TimeoutError) as e:
            raise ConfigError(
                "sweep.dask_address",
                address,
                "",
                message=(
                    f"sweep.dask_address={address}: no Dask scheduler answered within "
                    f"{DASK_CONNECT_TIMEOUT_S} s ({type(e).__name__}); start one (dask scheduler) "
                    f"or set sweep.dask_address=null for a local cluster"
                ),
            ) from None
        except (TypeError, ValueError) as e:  # (the form was checked): tls:// without TLS settings
            raise ConfigError(
                "sweep.dask_address",
                address,
                "",
                message=(
                    f"sweep.dask_address={address}: distributed cannot connect to it "
                    f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); a tls:// address needs "
                    "Dask's TLS settings (distributed.comm.tls in the Dask config)"
                ),
            ) from None
    cluster = stack.enter_context(
        LocalCluster(
            n_workers=min(workers(settings), max(1, n_chunks)),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
    )
    return stack.enter_context(Client(cluster))


def run_dask(chunks, done, settings):
    from distributed import as_completed

    with contextlib.ExitStack() as stack:
        client = _dask_client(settings, len(chunks), stack)
        # the input files once per worker (scattered), not once per chunk; each chunk keeps an
        # empty dict: a worker never falls back to its own disk
        shared = {k: v for t in chunks for k, v in (t.inputs or {}).items()}
        if shared:
            [ref] = client.scatter([shared], hash=False)
            sent = [dataclasses.replace(t, inputs={}) for t in chunks]
            futs = client.map(run_chunk, sent, inputs=ref, pure=False)
        else:
            futs = client.map(run_chunk, chunks, pure=False)
        index = {f.key: t for f, t in zip(futs, chunks)}
        try:
            for f in as_completed(futs):
                done(index[f.key], f.result())
                f.release()
        except BaseException:
            client.cancel(futs)
            raise


EXECUTORS = {"inline": run_inline, "processes": run_processes, "dask": run_dask}
