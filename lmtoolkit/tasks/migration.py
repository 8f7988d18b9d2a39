"""One live migration per point (the default task): page or fluid engine."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..engine.common import BatchResult
from ..engine.fluid import simulate_fluid, simulate_fluid_columns, with_value
from ..engine.page import simulate_page
from ..runner import build_scenario
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


class MigrationTask(Task):
    name = "migration"
    columns = True
    table = (
        ("total_time", "total time [s]", 1.0),
        ("downtime", "downtime [ms]", 1e3),
        ("transferred", "sent [GiB]", 1 / 1024**3),
        ("converged", "converged", 1.0),
        ("completed", "completed", 1.0),
    )

    def template(self, cfg):
        return build_scenario(cfg)

    def run_cell(self, cfg, columns, seeds, round_detail):
        tpl = build_scenario(cfg)
        if tpl.engine == "fluid":  # seed-independent: each distinct point is computed once
            if not columns:
                one = simulate_fluid([tpl], round_detail=round_detail)
                return one.take(np.zeros(len(seeds), dtype=np.int64))
            keys = list(columns)
            table = np.column_stack([np.asarray(columns[k], dtype=float) for k in keys])
            uniq, inverse = np.unique(table, axis=0, return_inverse=True)
            if len(uniq) == len(table):
                return simulate_fluid_columns(tpl, columns, round_detail=round_detail)
            batch = simulate_fluid_columns(
                tpl, {k: uniq[:, i] for i, k in enumerate(keys)}, round_detail=round_detail
            )
            return batch.take(inverse.ravel())
        recs = []
        for j, seed in enumerate(seeds):
            scn = tpl
            for k, v in columns.items():
                scn = with_value(scn, k, v[j])
            scn = dataclasses.replace(scn, seed=int(seed))
            recs.append(trim_rounds(simulate_page(scn), round_detail))
        return BatchResult.from_records(recs)

    def concat(self, parts):
        return BatchResult.concat(parts) if len(parts) > 1 else parts[0]

    def to_arrays(self, b) -> dict:
        out = {f"s_{k}": (v.astype(str) if v.dtype == object else v) for k, v in b.scalars.items()}
        out.update({f"r_{k}": v for k, v in b.round.items()})
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
        return b

    def to_dataset(self, batch, dims, coords, attrs, coord_attrs):
        from .. import dataset

        return dataset.to_dataset(batch, dims=dims, coords=coords, attrs=attrs, coord_attrs=coord_attrs)


__all__ = ["MigrationTask", "trim_rounds", "FULL_DETAIL"]
