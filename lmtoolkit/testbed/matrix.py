"""``lmtk testbed run``: a matrix of real migrations from ``configs/testbed/`` (Hydra).

``configs/testbed/config.yaml`` holds the guest, the defaults of every run (``run``) and the
output directory; the ``matrix`` group (``configs/testbed/matrix/*.yaml``) lists runs, each
a mapping of ``run`` keys (plus ``repeats: N``).  Overrides are Hydra's
(``matrix=full run.max_bandwidth_mib_s=100 guest.memory_mib=1024``).

**Where runs go** (:func:`resolve_out_dir`): by default ``<results>/testbed/`` — the results
directory of every other command (``$LMT_RESULTS_DIR`` or ``./results``, gitignored), so new
runs never touch the tracked reference set ``data/testbed/`` that ``lmtk validate`` fits on
and the README's numbers come from.  ``out_dir=DIR`` writes elsewhere (relative to the
current directory); adding runs to the reference set is explicit: ``lmtk testbed run
--reference`` (``reference=true``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import time
from pathlib import Path

from omegaconf import OmegaConf

from ..compose import compose_raw
from ..errors import ConfigError, check_range
from ..io import check_writable_dir, write_dataset
from ..model.checks import check_bool, check_number
from ..paths import config_dir, data_dir
from .driver import GuestSpec, MigrationFailed, RunSpec, Testbed, guest_for
from .qemu import ConsoleError
from .qmp import QMPError
from .record import label, to_dataset


def compose_testbed(overrides=()):
    """The testbed's config (``configs/testbed/``), composed once (no global Hydra state)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = compose_raw(list(overrides), cfg_dir=config_dir() / "testbed")
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        msg = " ".join(str(e).strip().splitlines()[:2])
        if "Could not find 'matrix/" in msg:
            names = sorted(p.stem for p in (config_dir() / "testbed" / "matrix").glob("*.yaml"))
            given = msg.split("'matrix/", 1)[1].split("'", 1)[0]
            raise ConfigError(
                "matrix", given, "", message=f"unknown matrix '{given}' (available: {', '.join(names)})"
            ) from None
        bad = re.search(r"Could not override '([^']+)'", msg)
        if bad:
            raise unknown_testbed_key(bad.group(1)) from None
        raise ConfigError("overrides", list(overrides), "", message=f"testbed config: {msg}") from None
    _check_testbed_keys(cfg)
    return cfg


def _check_testbed_keys(cfg) -> None:
    """``+KEY=...`` adds a key nothing reads (``+foo=1``, ``+matrix.foo=1`` ran the matrix,
    silently): every key, and every key of a group (``matrix``, ``guest``), must be one of
    :func:`_valid_keys`.  (``run``'s are checked with the matrix's entries, :func:`expand`.)"""
    from omegaconf import DictConfig

    for k in cfg.keys():
        if k not in _testbed_base():
            raise unknown_testbed_key(str(k), cfg.get(k))
        if isinstance(cfg[k], DictConfig) and k != "run":
            for sub in cfg[k].keys():
                if f"{k}.{sub}" not in _valid_keys(k):
                    raise unknown_testbed_key(f"{k}.{sub}", cfg[k].get(sub))


@functools.cache
def _testbed_base():
    """The testbed's default config (the keys an override may set)."""
    return compose_raw([], cfg_dir=config_dir() / "testbed")


def _valid_keys(group: str = "") -> list[str]:
    """The keys an override may set: the top level's (a group's as ``GROUP.KEY``), or those of
    ``group`` (``run``: a :class:`RunSpec`'s fields, ``tag`` too)."""
    base = _testbed_base()
    if not group:
        return sorted(f"{k}.KEY" if hasattr(base[k], "keys") else str(k) for k in base.keys())
    names = run_keys() if group == "run" else base[group].keys()
    return sorted(f"{group}.{k}" for k in names)


def run_keys() -> list[str]:
    """The keys of a run (``run.KEY``, a matrix entry's): :class:`RunSpec`'s fields."""
    return sorted(f.name for f in dataclasses.fields(RunSpec) if f.name != "repeat")


def unknown_testbed_key(key: str, value=None) -> ConfigError:
    """The error for a key the testbed config does not have: the keys it has where the key
    would go (the top level, or its group's), a close match, and where ``repeats`` goes."""
    from ..compose import leaf_keys

    group = key.split(".", 1)[0] if "." in key else ""
    valid = _valid_keys(group if group in _testbed_base() else "")
    close = difflib.get_close_matches(key, leaf_keys(_testbed_base()), n=3, cutoff=0.6)
    close = [c for c in close if c != group]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if key.rsplit(".", 1)[-1] == "repeats":
        hint += "; repeats is a matrix entry's: matrix.runs=[{..., repeats: N}]"
    return ConfigError(
        key, value, "", message=f"unknown testbed key '{key}' (valid: {', '.join(valid)}){hint}"
    )


def check_settings(cfg) -> None:
    """The matrix-wide settings: ``budget_s`` (null or seconds >= 0), ``reboot_every`` (an
    integer >= 1), ``overwrite`` and ``reference`` (true or false)."""
    if cfg.get("budget_s") is not None:
        check_number("budget_s", cfg.budget_s)
        check_range("budget_s", cfg.budget_s, 0, None)
    check_number("reboot_every", cfg.reboot_every, integer=True)
    check_range("reboot_every", cfg.reboot_every, 1, None, finite=True)  # an integer
    for k in ("overwrite", "reference"):
        check_bool(k, cfg.get(k, False))


def check_run_overrides_read(cfg, overrides) -> None:
    """A ``run.KEY=…`` override is a default for the matrix's runs: one that every run of the
    matrix sets itself is read by none — ``lmtk testbed run run.dirty_rate_pages_s=-1`` ran the
    smoke matrix's 0 and 5000 pages/s, silently (and never checked -1)."""
    from ..compose import split_override

    rows = [dict(r or {}) for r in OmegaConf.to_container(cfg.matrix.runs, resolve=True)]
    for o in overrides:
        prefix, key, value = split_override(o)
        name = key.removeprefix("run.")
        if key.startswith("run.") and prefix != "~" and rows and all(name in r for r in rows):
            raise ConfigError(
                key,
                value,
                "",
                message=f"{key}={value} has no effect: every run of the matrix sets {name} itself "
                f"(matrix.runs[*].{name}); pick a matrix that leaves it to run (matrix=single), or "
                f"set it per run (matrix.runs=[{{{name}: {value}}}, ...])",
            )


def testbed_guest(cfg) -> GuestSpec:
    """The matrix's guest (``guest:``), checked; an error names ``guest.<key>``."""
    try:
        return GuestSpec(**OmegaConf.to_container(cfg.guest, resolve=True))
    except ConfigError as e:
        raise e.with_prefix("guest") from None
    except TypeError as e:  # an unknown key
        raise ConfigError("guest", None, "", message=f"guest: {e}") from None


def expand(cfg) -> list[RunSpec]:
    """The matrix as :class:`RunSpec` objects (``repeats`` expanded), each checked."""
    guest = testbed_guest(cfg)
    base = OmegaConf.to_container(cfg.run, resolve=True)
    names = {f.name for f in dataclasses.fields(RunSpec)}
    specs = []
    for i, entry in enumerate(OmegaConf.to_container(cfg.matrix.runs, resolve=True)):
        entry = dict(entry or {})
        reps = entry.pop("repeats", 1)
        try:
            check_number("repeats", reps, integer=True)
            check_range("repeats", reps, 1, None, finite=True)  # an integer
        except ConfigError as e:
            raise e.with_prefix(f"matrix.runs[{i}]") from None
        reps = int(reps)
        d = {**base, **entry}
        bad = [k for k in d if k not in names]
        if bad:
            raise ConfigError(
                f"matrix.runs[{i}].{bad[0]}",
                d[bad[0]],
                "",
                message=f"unknown run key '{bad[0]}' (valid: {', '.join(run_keys())})",
            )
        for r in range(reps):
            try:
                spec = RunSpec(**{**d, "repeat": r})
                buffer = guest_for(spec, guest).buffer_mib  # the run's guest, checked
                if spec.hot_mib is not None and spec.hot_mib > buffer:
                    raise ConfigError(
                        "hot_mib",
                        spec.hot_mib,
                        f"the hot set lies in the dirtier's buffer (<= buffer_mib, {buffer} MiB)",
                    )
            except ConfigError as e:  # name where the value came from: the matrix entry or `run`
                raise e.with_prefix(f"matrix.runs[{i}]" if e.key in entry else "run") from None
            specs.append(spec)
    return specs


def reference_dir() -> Path:
    """The tracked reference set: ``data/testbed/`` (what ``lmtk validate`` fits on)."""
    return data_dir() / "testbed"


def default_out_dir() -> Path:
    """``<results>/testbed``: the results dir a default config names (``paths.results_dir``)."""
    from ..paths import results_dir
    from ..runner import compose

    return results_dir(compose([])) / "testbed"


def resolve_out_dir(cfg) -> Path:
    """Where the runs go: ``data/testbed`` with ``reference=true``, else ``out_dir`` (relative
    to the current directory), else ``<results>/testbed``."""
    reference = bool(cfg.get("reference", False))
    if reference and cfg.get("out_dir") is not None:
        raise ConfigError(
            "out_dir",
            cfg.out_dir,
            "",
            message=(
                f"out_dir={cfg.out_dir} and --reference (reference=true) both say where runs go: "
                f"give one (--reference writes into {reference_dir()})"
            ),
        )
    if reference:
        return reference_dir()
    if cfg.get("out_dir") is not None:
        return Path(str(cfg.out_dir)).expanduser().resolve()
    return default_out_dir().resolve()


def run_matrix(overrides=(), log=print, reference: bool = False) -> list[Path]:
    """Run the matrix; write ``<out dir>/<label>.nc`` per run (:func:`resolve_out_dir`;
    ``reference=True``: into the tracked ``data/testbed/``); return the files written."""
    cfg = compose_testbed(overrides)
    if reference:
        cfg.reference = True
    check_settings(cfg)
    check_run_overrides_read(cfg, overrides)
    out = resolve_out_dir(cfg)
    specs = expand(cfg)
    check_writable_dir(out, "out_dir")  # once the runs are checked, before a guest boots
    base_guest = testbed_guest(cfg)
    todo = [
        s for s in specs if cfg.overwrite or not (out / f"{label(s, guest_for(s, base_guest))}.nc").exists()
    ]
    # runs on the same guest one after the other (a new guest size needs a new boot)
    todo.sort(key=lambda s: (guest_for(s, base_guest).memory_mib, guest_for(s, base_guest).buffer_mib))
    where = "the reference set" if out == reference_dir() else "not the reference set data/testbed/"
    log(f"testbed: {len(specs)} runs in matrix, {len(todo)} to do -> {out} ({where})")
    written: list[Path] = []
    failed: list[str] = []
    tb, booted = None, None
    budget = cfg.get("budget_s")
    started = time.monotonic()
    try:
        for i, spec in enumerate(todo):
            if budget is not None and time.monotonic() - started > float(budget):
                log(f"testbed: budget_s={budget} spent, {len(todo) - i} run(s) left (run again to resume)")
                break
            guest = guest_for(spec, base_guest)
            if tb is None or tb.migrations >= int(cfg.reboot_every) or guest != booted:
                if tb is not None:
                    tb.close()
                tb, booted = Testbed(guest, log=log).__enter__(), guest
            lab = label(spec, guest)
            t0 = time.monotonic()
            try:
                m = tb.migrate(spec)
            except (MigrationFailed, ConsoleError, QMPError, OSError) as e:  # OSError: QMP/console timeouts
                # keep going with a fresh guest; the logs stay on disk
                log(f"[{i + 1}/{len(todo)}] {lab}: FAILED: {e}\n{tb.log_tail()}\n(logs kept in {tb.workdir})")
                failed.append(lab)
                tb.close(keep_logs=True)
                tb = None
                continue
            m["label"] = lab
            m["boot_time"] = tb.boot_s
            ds = to_dataset(
                m,
                extra_attrs={
                    "lmt_testbed_guest": dataclasses.asdict(guest),
                    "lmt_testbed_run": dataclasses.asdict(spec),
                    "lmt_qemu": str(tb.p.qemu.name) + " " + _qemu_version(tb),
                    "lmt_kernel": tb.p.kernel.name,
                },
            )
            path = write_dataset(ds, out / f"{lab}.nc")
            written.append(path)
            bad = m["verify_bad_pages"]
            log(
                f"[{i + 1}/{len(todo)}] {lab}: {m['status']} total {m['total_time']:.2f} s, downtime "
                f"{m['downtime'] * 1000:.0f} ms, {m['transferred'] / 2**20:.0f} MiB, syncs {m['dirty_sync_count']}, "
                f"rate {m['dirty_rate_measured']:.0f}/s, guest memory "
                f"{'ok' if bad == 0 else ('not checked' if bad < 0 else f'{bad} BAD pages')} "
                f"({time.monotonic() - t0:.0f} s)"
            )
            if bad > 0:
                raise RuntimeError(f"{lab}: the guest found {bad} wrong pages after migration")
    finally:
        if tb is not None:
            tb.close()
    if failed:
        log(f"testbed: {len(failed)} run(s) failed: {', '.join(failed)} (run again to retry them)")
    return written


def _qemu_version(tb) -> str:
    from .setup import qemu_version

    try:
        return ".".join(map(str, qemu_version(tb.p)))
    except Exception:  # noqa: BLE001 - a label in the run's attrs; never fail a recorded run for it
        return "?"
