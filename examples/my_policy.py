"""An example user policy, plugged in from outside the package.

``ShrinkOrStopPolicy`` is the generic pre-copy (:class:`lmtoolkit.policies.PrecopyPolicy`:
switch over when the rest fits ``downtime_limit_ms``, at most ``max_rounds`` passes) plus one
rule of its own: give up pre-copying as soon as a pass no longer shrinks the dirty set by at
least ``min_shrink_pct`` percent — further passes would only resend the writable working set
(Clark et al., NSDI 2005, §3.3 call this set the WWS).  It then switches over with reason
``no_progress``.

Use it (see ``examples/README.md``)::

    PYTHONPATH=examples lmtk run policy=custom
    PYTHONPATH=examples lmtk run policy=custom policy.min_shrink_pct=25

``configs/policy/custom.yaml`` holds ``_target_: my_policy.ShrinkOrStopPolicy``; the keys and
their defaults are the dataclass fields below (and the inherited ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmtoolkit.errors import check_range
from lmtoolkit.policies import PrecopyPolicy
from lmtoolkit.records import REASON_CODE


@dataclass(frozen=True)
class ShrinkOrStopPolicy(PrecopyPolicy):
    """Pre-copy that stops as soon as a pass shrinks the dirty set by less than ``min_shrink_pct``."""

    min_shrink_pct: float = 10.0

    name = "shrink_or_stop"  # the label in results (dataset coordinate / record ``policy``)

    def __post_init__(self):
        super().__post_init__()  # checks the inherited keys
        check_range("min_shrink_pct", self.min_shrink_pct, 0, 100)

    # State is shared with the engines: st.extra holds a policy's own per-migration values.
    # Write every rule with numpy operations so it also runs on arrays (engine=fluid).
    def init_state(self, st, ctx):
        super().init_state(st, ctx)
        st.extra["prev_pending"] = st.pending + 0.0

    def after_sync(self, st, ctx):
        super().after_sync(st, ctx)
        shrink = 1.0 - st.pending / np.maximum(st.extra["prev_pending"], 1.0)
        st.extra["stalled"] = (shrink * 100.0 < self.min_shrink_pct).astype(float)
        st.extra["prev_pending"] = st.pending + 0.0

    def forced(self, st, ctx):
        code = super().forced(st, ctx)  # max_rounds
        stalled = st.extra.get("stalled", np.zeros_like(st.t)) > 0
        return np.where((code == 0) & stalled, REASON_CODE["no_progress"], code)
