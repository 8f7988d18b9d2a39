"""The task interface the sweep machinery runs (one point = one call of the task's model)."""

from __future__ import annotations

import numpy as np


class Task:
    """What a sweep point is.  Subclasses implement every method; results are task-specific
    batch objects with ``n`` (points), ``concat`` and ``take``."""

    #: the config value of ``task``
    name: str = ""
    #: numeric axes may be applied to built scenarios (vectorised on the fluid engine)
    columns: bool = False
    #: headline variables for the sweep table: (variable, label, scale)
    table: tuple = ()

    def check_plan(self, overrides: list[str], cfg, axes: list) -> None:
        """Refuse, before anything runs, overrides and axes this task would not read (raises
        :class:`~lmtoolkit.errors.ConfigError`); ``cfg``: the resolved base config."""

    def unread_keys(self, overrides: list[str], cfg, axes: list) -> list[str]:
        """Keys of the resolved config ``cfg`` that no point of the plan reads: left out of
        what the result records (``lmt_config``) and hashes."""
        return []

    def template(self, cfg):
        """Build the objects of one config cell (raises :class:`~lmtoolkit.errors.ConfigError`)."""
        raise NotImplementedError

    def run_cell(self, cfg, columns: dict, seeds: np.ndarray, round_detail: int):
        """Simulate ``len(seeds)`` points of one config cell; ``columns``: key -> values."""
        raise NotImplementedError

    def concat(self, parts: list):
        raise NotImplementedError

    def to_arrays(self, batch) -> dict:
        """Plain numpy arrays (no objects) for partial files; :meth:`from_arrays` inverts it."""
        raise NotImplementedError

    def from_arrays(self, arrays: dict):
        raise NotImplementedError

    def to_dataset(self, batch, dims: list[str], coords: dict, attrs: dict, coord_attrs: dict):
        """The Dataset over ``dims`` (row-major), with units and the given attributes."""
        raise NotImplementedError
