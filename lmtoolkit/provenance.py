"""Provenance: what produced a result (config, overrides, code, packages, time).

The cache key of a result (:func:`config_hash`) covers the resolved config *and* the code:
:func:`code_hash` hashes the content of every source file of the package that can change a
number (``lmtoolkit/**/*.py`` and the C sources it builds, ``*.c``/``*.h``), so a result
computed by other code — a changed rule, an uncommitted edit, an install without git — is
never served from the cache.  It also covers what the config reads from outside the package
(:func:`inputs_hash`): the trace files it names and the source of a plug-in policy class
(``policy._target_``), so an edited plug-in or another trace under the same name is never
served either.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
import sys
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


def config_hash(cfg: DictConfig, extra: str = "") -> str:
    """SHA-256 (hex, 16 chars) of the resolved config, the code (:func:`code_hash`) and the
    files and plug-in code the config reads (:func:`inputs_hash`)."""
    h = hashlib.sha256()
    h.update(config_yaml(cfg).encode())
    h.update(code_hash().encode())
    h.update(inputs_hash(cfg).encode())
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


def plugin_files(target: str) -> list[Path]:
    """The source files of a ``_target_`` class from outside the package: its module's and
    those of its base classes that are not the package's own (empty if it does not import;
    building the config reports that)."""
    import inspect

    from .policies import _import_class

    try:
        cls = _import_class(target)
    except Exception:  # noqa: BLE001 - any import failure is reported where the config is built
        return []
    out: list[Path] = []
    for c in inspect.getmro(cls) if isinstance(cls, type) else ():
        src = getattr(sys.modules.get(c.__module__), "__file__", None)
        p = Path(src).resolve() if src else None
        if p and p.is_file() and not p.is_relative_to(package_dir()) and p not in out:
            out.append(p)
    return out


def inputs_hash(cfg: DictConfig) -> str:
    """SHA-256 (hex, 16 chars; "" when there is none) of what the config reads from outside
    the package (:func:`tree_inputs_hash`)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for k in ("hydra", "paths"):
        tree.pop(k, None)
    return tree_inputs_hash(tree)


def tree_inputs_hash(tree) -> str:
    """SHA-256 (hex, 16 chars; "" when there is none) of what a plain config tree reads from
    outside the package: each file a ``file`` key names (traces: ``workload.file``, phases'
    files) and the source of each ``_target_`` class that is not the package's
    (:func:`plugin_files`)."""
    from .runner import resolve_input_path

    h, any_input = hashlib.sha256(), False
    for f in named_values(tree, "file"):
        p, any_input = resolve_input_path(f), True
        h.update(f.encode() + (file_digest(p) if p.is_file() else b"-"))
    for target in named_values(tree, "_target_"):
        for p in plugin_files(target):
            any_input = True
            h.update(str(p).encode() + b"\0" + file_digest(p))
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


def attrs(cfg: DictConfig, overrides, command: str, extra_hash: str = "") -> dict:
    """``lmt_*`` string attributes (netCDF attributes hold no dicts, bools or None)."""
    commit, dirty = git_state()
    created = now()
    return {
        "lmt_config": config_yaml(cfg),
        "lmt_overrides": json.dumps(list(overrides)),
        "lmt_config_hash": config_hash(cfg, extra_hash),
        "lmt_code_hash": code_hash(),
        "lmt_git_commit": commit,
        "lmt_git_dirty": "true" if dirty else "false",
        "lmt_versions": json.dumps(versions(), sort_keys=True),
        "lmt_created_at": created,
        "history": f"{created} {command}",
    }
