"""Provenance: what produced a result (config, overrides, code version, packages, time)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
import sys
from functools import lru_cache
from importlib import metadata

from omegaconf import DictConfig, OmegaConf

PACKAGES = ("lmtoolkit", "numpy", "scipy", "xarray", "h5netcdf", "hydra-core", "omegaconf", "pandas")


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (``hydra`` and ``paths`` left out: they do not change results)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("hydra", "paths"):
        c.pop(k, None)
    return OmegaConf.to_yaml(OmegaConf.create(c), sort_keys=True)


def config_hash(cfg: DictConfig, extra: str = "") -> str:
    """SHA-256 (hex, 16 chars) of the resolved config and the package version."""
    h = hashlib.sha256()
    h.update(config_yaml(cfg).encode())
    h.update(package_version().encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]


def package_version() -> str:
    try:
        return metadata.version("lmtoolkit")
    except metadata.PackageNotFoundError:
        from . import __version__
        return __version__


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
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
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
        "lmt_git_commit": commit,
        "lmt_git_dirty": "true" if dirty else "false",
        "lmt_versions": json.dumps(versions(), sort_keys=True),
        "lmt_created_at": created,
        "history": f"{created} {command}",
    }
