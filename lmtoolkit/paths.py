"""Where things are: the project root, its ``configs/``, ``notebooks/``, ``data/`` and the results dir.

The one place that knows the layout (the config dir may be moved with ``$LMT_CONFIG_DIR``;
results go where the composed config's ``paths.results_dir`` says, by default
``$LMT_RESULTS_DIR`` or ``results/`` under the current directory).
"""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """The ``configs/`` directory: ``$LMT_CONFIG_DIR`` or the one beside the package."""
    env = os.environ.get("LMT_CONFIG_DIR")
    if env:
        return Path(env).resolve()
    return (Path(__file__).resolve().parent.parent / "configs").resolve()


def project_root() -> Path:
    """The checkout holding ``configs/``, ``notebooks/``, ``data/`` (the config dir's parent)."""
    return config_dir().parent


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def data_dir() -> Path:
    return project_root() / "data"


def group_options(group: str) -> list[str]:
    """The options of a config group (``configs/<group>/*.yaml`` stems), sorted."""
    d = config_dir() / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def results_dir(cfg) -> Path:
    """The results directory a composed config names (``paths.results_dir``)."""
    return Path(str(cfg.paths.results_dir))
