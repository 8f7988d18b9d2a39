"""One live migration per point (the default task): page or fluid engine."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..engine.common import BatchResult, unique_rows
from ..engine.fluid import simulate_fluid, simulate_fluid_columns, with_values
from ..engine.page import simulate_page
from ..model.energy import migration_energy, scenario_constants, stack_constants
from ..runner import build_power, build_scenario
from .base import Task

#: per-round rows a page-engine record keeps unless the sweep asks for fewer
FULL_DETAIL = 64


def trim_rounds(rec, keep: int):
    """Keep the first ``keep`` pre-copy rounds of a record (and every other round)."""
    if keep >= FULL_DETAIL:
        return rec
    kept, n_pre = [], 0
    for r in rec.round_detail:
        if r.kind == "precopy":
            n_pre += 1
            if n_pre > keep:
                continue
        kept.append(r)
    rec.round_detail = kept
    return rec


class MigrationBatch(BatchResult):
    """A :class:`BatchResult` plus per-migration variables computed after the engine from
    the records (``extra``: name -> (S,) array; the energy model's variables)."""

    extra: dict

    @classmethod
    def wrap(cls, batch: BatchResult, extra: dict) -> MigrationBatch:
        out = cls.__new__(cls)
        out.__dict__.update(batch.__dict__)
        out.extra = dict(extra)
        return out

    def take(self, order) -> MigrationBatch:
        return MigrationBatch.wrap(super().take(order), {k: v[order] for k, v in self.extra.items()})


def _energy_columns(tpl, columns: dict, power) -> dict:
    """Energy constants per row: the template's, or per distinct row when a column changes
    the VM, host or policy (what the constants read)."""
    keys = [k for k in columns if k.split(".")[0] in ("vm", "host", "policy")]
    if not keys:
        return scenario_constants(tpl, power)
    table = np.column_stack([np.asarray(columns[k], dtype=float) for k in keys])
    uniq, inverse = unique_rows(table)
    consts = [scenario_constants(with_values(tpl, zip(keys, row)), power) for row in uniq]
    return {k: v[inverse] for k, v in stack_constants(consts).items()}


def with_energy(batch: BatchResult, consts: dict) -> MigrationBatch:
    """``batch`` with the energy variables of its records (:mod:`lmtoolkit.model.energy`)."""
    return MigrationBatch.wrap(batch, migration_energy(batch.scalars, consts))


class MigrationTask(Task):
    name = "migration"
    columns = True
    table = (
        ("total_time", "total time [s]", 1.0),
        ("downtime", "downtime [ms]", 1e3),
        ("transferred", "sent [GiB]", 1 / 1024**3),
        ("energy_total", "energy [kJ]", 1e-3),
        ("converged", "converged", 1.0),
        ("completed", "completed", 1.0),
    )

    def template(self, cfg):
        return build_scenario(cfg)

    def run_cell(self, cfg, columns, seeds, round_detail):
        tpl = build_scenario(cfg)
        power = build_power(cfg)
        if tpl.engine == "fluid":  # seed-independent: each distinct point is computed once
            return with_energy(
                self._fluid(tpl, columns, seeds, round_detail), _energy_columns(tpl, columns, power)
            )
        recs, consts = [], []
        for j, seed in enumerate(seeds):
            scn = with_values(tpl, ((k, v[j]) for k, v in columns.items()))
            scn = dataclasses.replace(scn, seed=int(seed))
            recs.append(trim_rounds(simulate_page(scn), round_detail))
            consts.append(scenario_constants(scn, power))
        return with_energy(BatchResult.from_records(recs), stack_constants(consts))

    @staticmethod
    def _fluid(tpl, columns, seeds, round_detail) -> BatchResult:
        if not columns:
            one = simulate_fluid([tpl], round_detail=round_detail)
            return one.take(np.zeros(len(seeds), dtype=np.int64))
        keys = list(columns)
        table = np.column_stack([np.asarray(columns[k], dtype=float) for k in keys])
        uniq, inverse = unique_rows(table)
        if len(uniq) == len(table):
            return simulate_fluid_columns(tpl, columns, round_detail=round_detail)
        batch = simulate_fluid_columns(
            tpl, {k: uniq[:, i] for i, k in enumerate(keys)}, round_detail=round_detail
        )
        return batch.take(inverse)

    def concat(self, parts):
        if len(parts) == 1:
            return parts[0]
        out = BatchResult.concat(parts)
        names = set.intersection(*(set(getattr(p, "extra", {})) for p in parts))
        return MigrationBatch.wrap(
            out, {k: np.concatenate([p.extra[k] for p in parts]) for k in sorted(names)}
        )

    def to_arrays(self, b) -> dict:
        out = {f"s_{k}": (v.astype(str) if v.dtype == object else v) for k, v in b.scalars.items()}
        out.update({f"r_{k}": v for k, v in b.round.items()})
        out.update({f"e_{k}": v for k, v in getattr(b, "extra", {}).items()})
        out["round_kind"] = b.round_kind
        return out

    def from_arrays(self, arrs):
        kinds = arrs["round_kind"]
        b = BatchResult(kinds.shape[0], kinds.shape[1])
        for k in list(b.scalars):
            v = arrs[f"s_{k}"]
            b.scalars[k] = v.astype(object) if v.dtype.kind == "U" else v
        for k in list(b.round):
            b.round[k] = arrs[f"r_{k}"]
        b.round_kind = kinds
        extra = {k[2:]: v for k, v in arrs.items() if k.startswith("e_")}
        return MigrationBatch.wrap(b, extra) if extra else b

    def to_dataset(self, batch, dims, coords, attrs, coord_attrs):
        from .. import dataset

        return dataset.to_dataset(batch, dims=dims, coords=coords, attrs=attrs, coord_attrs=coord_attrs)


__all__ = ["MigrationTask", "MigrationBatch", "with_energy", "trim_rounds", "FULL_DETAIL"]
