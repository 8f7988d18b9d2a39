"""Engines: ``page`` (page-granular, one migration at a time) and ``fluid`` (closed form,
vectorised over many scenarios).  Both return the same records."""

from __future__ import annotations

from ..scenario import Scenario
from .common import ROUND_DETAIL_LIMIT, BatchResult
from .fluid import simulate_fluid
from .page import simulate_page


def run_batch(scenarios: list[Scenario], round_detail: int = ROUND_DETAIL_LIMIT) -> BatchResult:
    """Run scenarios with the engine each names; page runs one by one, fluid all at once
    (``round_detail``: pre-copy rounds whose detail is kept, in both engines)."""
    page_idx = [i for i, s in enumerate(scenarios) if s.engine == "page"]
    fluid_idx = [i for i, s in enumerate(scenarios) if s.engine == "fluid"]
    parts, order = [], []
    if page_idx:
        parts.append(
            BatchResult.from_records(
                [simulate_page(scenarios[i], round_detail=round_detail) for i in page_idx]
            )
        )
        order += page_idx
    if fluid_idx:
        parts.append(simulate_fluid([scenarios[i] for i in fluid_idx], round_detail=round_detail))
        order += fluid_idx
    out = BatchResult.concat(parts) if len(parts) > 1 else parts[0]
    if order != list(range(len(scenarios))):
        import numpy as np

        out = out.take(np.argsort(order))
    return out


__all__ = ["simulate_page", "simulate_fluid", "run_batch", "BatchResult"]
