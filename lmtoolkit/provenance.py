"""Provenance: what produced a result (config, overrides, code, packages, time).

The cache key of a result (:func:`config_hash`) covers the resolved config *and* the code:
:func:`code_hash` hashes the content of every source file of the package that can change a
number (``lmtoolkit/**/*.py`` and the C sources it builds, ``*.c``/``*.h``), so a result
computed by other code — a changed rule, an uncommitted edit, an install without git — is
never served from the cache.
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
    """SHA-256 (hex, 16 chars) of the resolved config and the code (:func:`code_hash`)."""
    h = hashlib.sha256()
    h.update(config_yaml(cfg).encode())
    h.update(code_hash().encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]


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
