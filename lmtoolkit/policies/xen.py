"""Xen-like pre-copy (``xl migrate``), two generations of the stop rule.

* ``version: classic`` — ``tools/libxc/xc_domain_save.c`` (Xen <= 4.5, migration stream v1):
  ``DEF_MAX_ITERS 29`` ("limit us to 30 times round loop"), ``DEF_MAX_FACTOR 3`` ("never send
  more than 3x p2m_size"); the last iteration starts when
  ``iter >= max_iters || sent_this_iter + skip_this_iter < 50 || total_sent > p2m_size * max_factor``.
  Pages re-dirtied during the current iteration are skipped (``to_skip``, a peek of the
  log-dirty bitmap) and go out with the next one — each dirtied page is still sent once per
  round, which is what the engines model.  Also Clark et al., NSDI 2005.
* ``version: v2`` — ``tools/libs/guest/xg_sr_save.c`` (Xen >= 4.6, stream v2):
  ``simple_precopy_policy`` stops when ``dirty_count < SPP_TARGET_DIRTY_COUNT`` (50) or
  ``iteration >= SPP_MAX_ITERATIONS`` (5); no 3x factor.

``max_rounds`` / ``max_factor`` / ``dirty_threshold_pages`` override the version's values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import check_range
from ..records import REASON_CODE
from .base import none_to
from .precopy import PrecopyPolicy

#: version -> the values of the keys left null (max_factor inf = no byte cap)
VERSIONS = {
    "classic": {"max_rounds": 30, "max_factor": 3.0, "dirty_threshold_pages": 50},
    "v2": {"max_rounds": 5, "max_factor": float("inf"), "dirty_threshold_pages": 50},
}


@dataclass(frozen=True)
class XenPolicy(PrecopyPolicy):
    """Xen: at most 30 rounds (v2: 5), stop below 50 dirty pages or after 3x memory sent."""

    version: str = "classic"                 # classic (xc_domain_save.c) | v2 (xg_sr_save.c)
    max_rounds: int | None = None            # null = the version's (30 / 5)
    max_factor: float | None = None          # null = the version's (3 x memory / none)
    dirty_threshold_pages: int | None = None  # null = the version's (50)
    # downtime_limit_ms (inherited) is not used by Xen's rules; kept for comparisons.

    name = "xen"
    stop_reasons = ("max_sent",)

    def __post_init__(self):
        self.resolve_profile("version", VERSIONS)
        super().__post_init__()
        check_range("max_factor", self.max_factor, 1, None)
        check_range("dirty_threshold_pages", self.dirty_threshold_pages, 0, None)

    def converged(self, st, ctx):
        return st.pending < self.dirty_threshold_pages

    def steady_horizon(self, st, ctx, phase_s, phase_bytes):
        h = super().steady_horizon(st, ctx, phase_s, phase_bytes)
        left = none_to(self.max_factor, np.inf) * ctx.memory_bytes - st.sent_bytes
        return np.minimum(h, np.ceil(np.maximum(left, 0.0) / np.maximum(phase_bytes, 1e-12)))

    def forced(self, st, ctx):
        code = super().forced(st, ctx)
        too_much = st.sent_bytes > none_to(self.max_factor, np.inf) * ctx.memory_bytes
        return np.where((code == 0) & too_much, REASON_CODE["max_sent"], code)
