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
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import socket
import subprocess
import sys
import weakref
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

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
    """Are two :func:`plugin_code` answers the same code: module for module, by content?"""
    return {m: d for m, _, d in a} == {m: d for m, _, d in b}


def stale_plugin_error(target: str, loaded: tuple, disk: tuple):
    """The error for plug-in code that changed on disk after this process imported it."""
    from .errors import ConfigError

    before, now = ({m: d for m, _, d in t} for t in (loaded, disk))
    changed = sorted(m for m in before.keys() | now.keys() if before.get(m) != now.get(m))
    return ConfigError(
        "policy._target_",
        target,
        "",
        message=(
            f"policy._target_={target}: module {', '.join(changed)} changed on disk after process "
            f"{os.getpid()} on {socket.gethostname()} imported it, and the process still runs the "
            "code it imported: restart it (a Dask worker, a notebook's kernel) or importlib.reload "
            "the module"
        ),
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
CODE_SUFFIXES = (".py", ".c", ".h")


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def code_files(root: Path | None = None) -> list[Path]:
    """The package's source files that feed :func:`code_hash`, sorted by relative path."""
    root = Path(root) if root is not None else package_dir()
    return sorted(
        (
            p
            for p in root.rglob("*")
            if p.suffix in CODE_SUFFIXES and p.is_file() and "__pycache__" not in p.parts
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )


@cache
def code_hash(root: str | None = None) -> str:
    """SHA-256 (hex, 16 chars) of the package's source: each file's relative path and content.

    Computed once per process (the code a process runs does not change under it); a fresh
    process sees every edit, committed or not.
    """
    base = Path(root) if root is not None else package_dir()
    h = hashlib.sha256()
    for p in code_files(base):
        h.update(p.relative_to(base).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


@lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the checkout holding the package; ("unknown", False) outside git."""
    from .paths import project_root

    root = str(project_root())
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (commit or "unknown", bool(status))
    except (OSError, subprocess.SubprocessError):
        return ("unknown", False)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def attrs(
    cfg: DictConfig, overrides, command: str, extra_hash: str = "", known_hash: str | None = None
) -> dict:
    """``lmt_*`` string attributes (netCDF attributes hold no dicts, bools or None);
    ``known_hash``: the config hash already computed (a sweep's, from what it read when it began)."""
    commit, dirty = git_state()
    created = now()
    return {
        "lmt_config": config_yaml(cfg),
        "lmt_overrides": json.dumps(list(overrides)),
        "lmt_config_hash": known_hash or config_hash(cfg, extra_hash),
        "lmt_code_hash": code_hash(),
        "lmt_git_commit": commit,
        "lmt_git_dirty": "true" if dirty else "false",
        "lmt_versions": json.dumps(versions(), sort_keys=True),
        "lmt_created_at": created,
        "history": f"{created} {command}",
    }
