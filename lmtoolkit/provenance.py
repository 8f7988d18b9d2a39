"""Provenance: what produced a result (config, overrides, code, packages, time).

The cache key of a result (:func:`config_hash`) covers the resolved config *and* the code:
:func:`code_hash` hashes the content of every source file of the package that can change a
number (``lmtoolkit/**/*.py`` and the C sources it builds, ``*.c``/``*.h``), so a result
computed by other code — a changed rule, an uncommitted edit, an install without git — is
never served from the cache.  It also covers what the config reads from outside the package
(:func:`inputs_hash`): the trace files it names and the source of a plug-in policy class
(``policy._target_``), so an edited plug-in or another trace under the same name is never
served either.  :class:`Inputs` keeps what the hash read, so that a sweep's chunks simulate
exactly those files (their bytes travel with the chunk to any worker) and check that a worker
runs the same plug-in code.

A hash of the files certifies the code a process runs only while the files are those it
imported (a process keeps the modules it imported): :func:`code_hash` refuses once the
package's files changed under the process (:func:`package_code`), and a sweep's worker refuses
a chunk whose driver hashed other code than it runs (``sweep.execute.check_code``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import socket
import subprocess
import sys
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from . import _imported

PACKAGES = (
    "lmtoolkit",
    "numpy",
    "scipy",
    "xarray",
    "h5netcdf",
    "netCDF4",
    "hydra-core",
    "omegaconf",
    "pandas",
)


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (``hydra`` and ``paths`` left out: they do not change results)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("hydra", "paths"):
        c.pop(k, None)
    return OmegaConf.to_yaml(OmegaConf.create(c), sort_keys=True)


def config_hash(cfg: DictConfig, extra: str = "", inputs: Inputs | None = None) -> str:
    """SHA-256 (hex, 16 chars) of the resolved config, the code (:func:`code_hash`) and the
    files and plug-in code the config reads (:func:`inputs_hash`; recorded in ``inputs``)."""
    h = hashlib.sha256()
    h.update(config_yaml(cfg).encode())
    h.update(code_hash().encode())
    h.update(inputs_hash(cfg, inputs).encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]


def named_values(node, key: str) -> list[str]:
    """Every string value of ``key`` anywhere in a (plain) config tree."""
    if isinstance(node, dict):
        out = [node[key]] if isinstance(node.get(key), str) else []
        return out + [v for k, child in node.items() if k != key for v in named_values(child, key)]
    if isinstance(node, list):
        return [v for child in node for v in named_values(child, key)]
    return []


def input_tree(tree: dict) -> dict:
    """A resolved config tree without the parts that read nothing (``hydra``, ``paths``)."""
    return {k: v for k, v in tree.items() if k not in ("hydra", "paths")}


def plugin_sources(target: str) -> tuple[type | None, list[tuple[str, Path]]]:
    """The class a ``_target_`` names and ``(module, file)`` of it from outside the package:
    its module and those of its base classes that are not the package's own (None and empty
    if it does not import; building the config reports that)."""
    import inspect

    from .policies import _import_class

    try:
        cls = _import_class(target)
    except Exception:  # noqa: BLE001 - any import failure is reported where the config is built
        return None, []
    out: list[tuple[str, Path]] = []
    for c in inspect.getmro(cls) if isinstance(cls, type) else ():
        src = getattr(sys.modules.get(c.__module__), "__file__", None)
        p = Path(src).resolve() if src else None
        if p and p.is_file() and not p.is_relative_to(package_dir()) and p not in [q for _, q in out]:
            out.append((c.__module__, p))
    return (cls if isinstance(cls, type) else None), out


#: a plug-in class -> its files' digests when this process first hashed or checked it
_FIRST_SEEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def plugin_code(target: str) -> tuple[tuple, tuple]:
    """``(loaded, on_disk)``: ``((module, file, sha256 hex), ...)`` of a ``_target_`` class
    (:func:`plugin_sources`) as this process first saw them — the code it runs: a module is
    imported once — and as its files are now."""
    cls, sources = plugin_sources(target)
    disk = tuple((mod, str(p), file_digest(p).hex()) for mod, p in sources)
    return (_FIRST_SEEN.setdefault(cls, disk) if cls is not None else disk), disk


def same_code(a: tuple, b: tuple) -> bool:
    """Are two :func:`plugin_code` (or :func:`package_code`) answers the same code: module for
    module (file for file), by content?"""
    return {m: d for m, _, d in a} == {m: d for m, _, d in b}


def dask_worker_address() -> str | None:
    """The address of the Dask worker running this task (None outside one)."""
    if "distributed" not in sys.modules:  # (never imported here: not a worker)
        return None
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # ValueError: no worker runs this thread
        return None


def this_process() -> str:
    """How an error names the process: ``process 4242 on node7 (Dask worker tcp://…)``."""
    worker = dask_worker_address()
    where = f"process {os.getpid()} on {socket.gethostname()}"
    return f"{where} (Dask worker {worker})" if worker else where


def stale_code_error(
    key: str, value, head: str, noun: str, loaded: tuple, disk: tuple, advice: str, detail: str = ""
):
    """The error for code that changed on disk after this process imported it and that it still
    runs: one line naming what changed (``noun``: module, file), the process, ``detail`` (in
    parentheses) and ``advice`` (what to do); ``loaded``/``disk`` as :func:`plugin_code` or
    :func:`package_code` answer."""
    from .errors import ConfigError

    before, now = ({m: d for m, _, d in t} for t in (loaded, disk))
    changed = sorted(m for m in before.keys() | now.keys() if before.get(m) != now.get(m))
    names = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return ConfigError(
        key,
        value,
        "",
        message=(
            f"{head}: {noun}{'s' if len(changed) > 1 else ''} {names} changed on disk after "
            f"{this_process()} imported it, and the process still runs the code it imported"
            f"{f' ({detail})' if detail else ''}: {advice}"
        ),
    )


def stale_plugin_error(target: str, loaded: tuple, disk: tuple):
    """The error for plug-in code that changed on disk after this process imported it."""
    advice = "restart it (a Dask worker, a notebook's kernel) or importlib.reload the module"
    return stale_code_error(
        "policy._target_", target, f"policy._target_={target}", "module", loaded, disk, advice
    )


@dataclass
class Inputs:
    """What a config reads from outside the package, as its hash read it.

    ``files``: each name a ``file`` key gives (as written) -> (the path it resolved to, the
    SHA-256 of its content; None where there is no file); ``plugins``: each ``_target_`` ->
    ``((module, file, sha256 hex), ...)`` (:func:`plugin_sources`).  :meth:`content` reads a
    file's bytes once and checks them against the digest the hash used: a sweep ships those
    bytes with its chunks, so every executor simulates exactly what the hash certifies (a Dask
    worker used to open the name on its own disk).
    """

    files: dict = field(default_factory=dict)
    plugins: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict, repr=False)

    def digest(self, name: str) -> bytes | None:
        if name not in self.files:
            from .runner import resolve_input_path

            p = resolve_input_path(name)
            self.files[name] = (str(p), file_digest(p) if p.is_file() else None)
        return self.files[name][1]

    def content(self, name: str) -> tuple[str, bytes | None]:
        """``(path, bytes)`` of the file ``name`` as hashed (bytes None: there was no file)."""
        want = self.digest(name)
        path = self.files[name][0]
        if name not in self.data:
            data = None
            if want is not None:
                try:
                    data = Path(path).read_bytes()
                except OSError:
                    data = b""
                if hashlib.sha256(data).digest() != want:
                    from .errors import ConfigError

                    raise ConfigError(
                        "file",
                        name,
                        "",
                        message=f"input file {name!r} ({path}) changed after the run's config hash "
                        "was computed from it: run the command again",
                    )
            self.data[name] = data
        return path, self.data[name]

    def plugin(self, target: str) -> tuple[tuple[str, str, str], ...]:
        """The plug-in's files as hashed: those of the code this process runs (else an error:
        a hash of edited files would certify code that does not run)."""
        if target not in self.plugins:
            loaded, disk = plugin_code(target)
            if not same_code(loaded, disk):
                raise stale_plugin_error(target, loaded, disk)
            self.plugins[target] = disk
        return self.plugins[target]


def inputs_hash(cfg: DictConfig, inputs: Inputs | None = None) -> str:
    """SHA-256 (hex, 16 chars; "" when there is none) of what the config reads from outside
    the package (:func:`tree_inputs_hash`)."""
    return tree_inputs_hash(input_tree(OmegaConf.to_container(cfg, resolve=True)), inputs)


def tree_inputs_hash(tree, inputs: Inputs | None = None) -> str:
    """SHA-256 (hex, 16 chars; "" when there is none) of what a plain config tree reads from
    outside the package: each file a ``file`` key names (traces: ``workload.file``, phases'
    files) and the source of each ``_target_`` class that is not the package's
    (:func:`plugin_sources`); what it read is recorded in ``inputs``."""
    inputs = Inputs() if inputs is None else inputs
    h, any_input = hashlib.sha256(), False
    for f in named_values(tree, "file"):
        d, any_input = inputs.digest(f), True
        h.update(f.encode() + (d if d is not None else b"-"))
    for target in named_values(tree, "_target_"):
        for _, p, digest in inputs.plugin(target):
            any_input = True
            h.update(p.encode() + b"\0" + bytes.fromhex(digest))
    return h.hexdigest()[:16] if any_input else ""


def file_digest(path: Path) -> bytes:
    """SHA-256 of a file's content, read once per version of the file in a process (keyed by
    its modification time and size): ``lmtk run`` and every ``lmt.simulate`` hash the config
    more than once, and a trace can be large."""
    st = path.stat()
    return _digest(str(path.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


#: suffixes of the package's files that can change a result
CODE_SUFFIXES = _imported.CODE_SUFFIXES


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def code_files(root: Path | None = None) -> list[Path]:
    """The package's source files that feed :func:`code_hash`, sorted by relative path."""
    root = Path(root) if root is not None else package_dir()
    return [root / rel for rel in sorted(_imported.source_stats(str(root)))]


#: a package file (relative path) -> (its stat, SHA-256 hex of its content) when last read
_READ: dict[str, tuple[tuple, str]] = {}
#: a package file -> SHA-256 hex of the content this process imported (read while its stat
#: was still the one :mod:`lmtoolkit._imported` recorded)
_LOADED: dict[str, str] = {}


def package_code() -> tuple[tuple, tuple]:
    """``(loaded, on_disk)``: ``((file, path, sha256 hex), ...)`` of the package's source files
    (relative path, sorted) as this process imported them — the code it runs — and as they are
    now; the package's counterpart of :func:`plugin_code`.

    What it imported is known by ``stat``: ``import lmtoolkit`` records every file's stat
    first (:mod:`lmtoolkit._imported`); a file read while its stat is still that one is the
    file the process imported, and its digest is kept (a later ``touch`` or an identical
    rewrite is then no change).  A file whose stat changed before this process read it has
    loaded digest "" (unknown: never the disk's), its module imported yet or not: one imported
    after the edit runs the new code beside the old, and the process cannot tell which version
    a later import gets.  A file is read only when its stat changed; otherwise this costs one
    ``stat`` per file (~0.5 ms for the package's ~100 files).
    """
    base = str(package_dir())
    imported = _imported.IMPORTED
    now: dict[str, str] = {}
    for rel, st in _imported.source_stats(base).items():
        seen = _READ.get(rel)
        if seen is None or seen[0] != st:
            path = Path(base, rel)
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                s = path.stat()  # (after the read: the content read is that of this stat)
            except OSError:  # (removed meanwhile)
                continue
            seen = _READ[rel] = ((s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino), digest)
        now[rel] = seen[1]
        if imported.get(rel) == seen[0]:
            _LOADED.setdefault(rel, seen[1])
    loaded = tuple((rel, f"{base}/{rel}", _LOADED.get(rel, "")) for rel in sorted(imported))
    return loaded, tuple((rel, f"{base}/{rel}", d) for rel, d in sorted(now.items()))


def tree_hash(code: tuple) -> str:
    """SHA-256 (hex, 16 chars) of ``((file, path, sha256 hex), ...)`` sorted by file: each file's
    relative path and content digest (the paths on this machine left out)."""
    h = hashlib.sha256()
    for rel, _, digest in code:
        h.update(rel.encode() + b"\0")
        h.update(bytes.fromhex(digest))
    return h.hexdigest()[:16]


def stale_package_error(loaded: tuple, disk: tuple, driver: str | None = None):
    """The error for a process whose lmtoolkit files changed on disk after it imported them
    (:func:`package_code`); ``driver``: the code hash a sweep's driver sent this worker."""
    ran = tree_hash(loaded)[:12] if all(d for _, _, d in loaded) else "unknown"
    there = f"the driver hashed {driver[:12]}" if driver else f"its files now hash {tree_hash(disk)[:12]}"
    if dask_worker_address():
        todo = "restart the Dask workers (client.restart(), or the dask worker processes) so that they"
    else:
        todo = "restart it (the Python session, the notebook's kernel) so that it"
    return stale_code_error(
        "lmtoolkit",
        str(package_dir()),
        "lmtoolkit",
        "file",
        loaded,
        disk,
        f"{todo} import the current lmtoolkit; nothing was computed",
        detail=f"code {ran}; {there}",
    )


def running_code_hash(driver: str | None = None) -> str:
    """:func:`code_hash` of the code this process runs: that of the package's files while they
    are the ones it imported, else :func:`stale_package_error` (``driver``: as there)."""
    loaded, disk = package_code()
    if not same_code(loaded, disk):
        raise stale_package_error(loaded, disk, driver)
    return tree_hash(disk)


def code_hash(root: str | None = None) -> str:
    """SHA-256 (hex, 16 chars) of the package's source: each file's relative path and content.

    Without ``root``: of the code this process runs (:func:`running_code_hash`).  It used to be
    computed from the files once per process, whenever first asked: a process (a notebook's
    kernel) that imported lmtoolkit, then saw a rule edited, hashed the new rule and ran the
    old one; now that is an error (a fresh process sees every edit, committed or not).
    ``root``: of the files under it, as they are.
    """
    if root is None:
        return running_code_hash()
    base = Path(root)
    return tree_hash(
        tuple(
            (rel, "", hashlib.sha256((base / rel).read_bytes()).hexdigest())
            for rel in sorted(_imported.source_stats(str(base)))
        )
    )


@lru_cache(maxsize=1)
def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the checkout holding the package; ("unknown", False) outside git.

    Dirty: a tracked file changed, or a file git does not track that a result depends on: a
    source file of the package that :func:`code_hash` reads (an ignored one too) or a config
    file git would add (an untracked ``policies/x.py`` changed the code hash and left the flag
    false).  ``configs/local/*.yaml`` is ignored by git: results record it in
    ``lmt_local_file``.  Asked again only when those files changed (a ``stat`` each).
    """
    from .paths import config_dir, project_root

    return _git_state(str(project_root()), _checkout_stamp(config_dir()))


def _checkout_stamp(configs: Path) -> tuple:
    """The stats of the package's source files and of the config files: what :func:`git_state`
    reads besides git's index (a file added, removed or edited changes it)."""
    conf = []
    for f in sorted(configs.rglob("*")) if configs.is_dir() else ():
        with contextlib.suppress(OSError):
            st = f.stat()
            conf.append((str(f), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(_imported.source_stats(str(package_dir())).items())), tuple(conf)


def _git(root: str, *args: str) -> list[str]:
    out = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10)
    if out.returncode:
        raise OSError(out.stderr.strip())
    return [x for x in out.stdout.split("\0" if "-z" in args else "\n") if x.strip()]


@lru_cache(maxsize=4)
def _git_state(root: str, stamp: tuple) -> tuple[str, bool]:
    try:
        commit = _git(root, "rev-parse", "HEAD")[0]
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
        return commit, dirty or bool(untracked_inputs(root))
    except (OSError, IndexError, subprocess.SubprocessError):
        return ("unknown", False)


def untracked_inputs(root: str) -> list[str]:
    """Files under ``root`` (a git checkout) that results depend on and git does not track:
    the package's source files :func:`code_hash` reads (ignored ones too) and the config files
    git would add (``git ls-files --others --exclude-standard``), as relative paths."""
    from .paths import config_dir

    base, out = Path(root).resolve(), []
    pkg = package_dir()
    if pkg.is_relative_to(base):
        rel = pkg.relative_to(base).as_posix()
        tracked = set(_git(root, "ls-files", "-z", "--", rel))
        out += [f"{rel}/{f}" for f in _imported.source_stats(str(pkg)) if f"{rel}/{f}" not in tracked]
    conf = config_dir()
    if conf.is_relative_to(base):
        out += _git(
            root, "ls-files", "-z", "--others", "--exclude-standard", "--", conf.relative_to(base).as_posix()
        )
    return sorted(out)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def attrs(
    cfg: DictConfig, overrides, command: str, extra_hash: str = "", known_hash: str | None = None
) -> dict:
    """``lmt_*`` string attributes (netCDF attributes hold no dicts, bools or None);
    ``lmt_local_file`` and ``lmt_local_config`` (its text) when a ``local`` file
    (:func:`~lmtoolkit.compose.local_file`) was merged into the config; ``known_hash``: the
    config hash already computed (a sweep's, from what it read when it began)."""
    from .compose import local_file, shown_path

    commit, dirty = git_state()
    created = now()
    local = local_file(overrides)
    # the machine's own file, merged last: what it sets is in lmt_config, and here where from
    mine = {"lmt_local_file": shown_path(local), "lmt_local_config": local.read_text()} if local else {}
    return {
        "lmt_config": config_yaml(cfg),
        "lmt_overrides": json.dumps(list(overrides)),
        "lmt_config_hash": known_hash or config_hash(cfg, extra_hash),
        "lmt_code_hash": code_hash(),
        "lmt_git_commit": commit,
        "lmt_git_dirty": "true" if dirty else "false",
        "lmt_versions": json.dumps(versions(), sort_keys=True),
        "lmt_created_at": created,
        **mine,
        "history": f"{created} {command}",
    }
