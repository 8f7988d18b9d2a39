"""What both engines check of a policy's answers before they use them.

A rule that answers NaN, a negative page count, a wire cost that is not positive, a throttle
outside [0, 1] or a stop reason that does not exist would otherwise turn into a wrong number
in the results (a negative ``transferred``, a NaN ``total_time``) or a traceback far from the
rule.  The engines hold the policy as :class:`CheckedPolicy`, which passes every call through
and checks the answers of the rules they act on; a bad answer raises one
:class:`PolicyRuleError` naming the policy class, the rule, the value and what is allowed.
This guards a user's plug-in (``policy._target_``, ``examples/my_policy.py``) as much as a
built-in policy's bug.  Each check is two reductions per call (min and max, NaN-propagating).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..errors import PolicyRuleError, policy_label
from ..policies.base import Link
from ..records import STOP_REASONS

_BIG = np.finfo(float).max  # an upper bound that refuses inf (and NaN, as every comparison)

__all__ = ["CheckedPolicy", "PolicyRuleError", "checked"]


def _refuse(policy, rule: str, what: str, bad: np.ndarray, n: int, allowed: str) -> PolicyRuleError:
    many = f" ({bad.size} of {n} migrations)" if n > 1 else ""
    v = float(bad.flat[0])
    return PolicyRuleError(
        "policy",
        v,
        allowed,
        message=f"{policy_label(policy)}: rule {rule} gave {what} = {v!r}{many}; allowed: {allowed}",
    )


def _check(policy, rule: str, what: str, value, lo: float, hi: float = _BIG, lo_open: bool = False) -> None:
    """Raise :class:`PolicyRuleError` unless every element of ``value`` is finite and in
    [lo, hi] (``lo_open``: (lo, hi])."""
    a = np.asarray(value, dtype=float)
    if a.size == 0:
        return
    mn, mx = a.min(), a.max()
    if (mn > lo if lo_open else mn >= lo) and mx <= hi:
        return
    ok = ((a > lo) if lo_open else (a >= lo)) & (a <= hi)
    hi_s = f"{hi:g}]" if hi < _BIG else "inf)"
    raise _refuse(
        policy,
        rule,
        what,
        np.atleast_1d(a[~ok]),
        a.size,
        f"finite, in {'(' if lo_open else '['}{lo:g}, {hi_s}",
    )


def _check_whole(policy, rule: str, what: str, value, lo: float, hi: float = _BIG) -> None:
    """:func:`_check`, and every element a whole number."""
    _check(policy, rule, what, value, lo, hi)
    a = np.asarray(value, dtype=float)
    if not np.array_equal(a, np.round(a)):
        raise _refuse(policy, rule, what, np.atleast_1d(a[a != np.round(a)]), a.size, "a whole number")


@contextlib.contextmanager
def _arrays_hint(policy, rule: str):
    """A Python ``if`` on an array inside a rule (it works on one migration, fails on a fluid
    batch) keeps its traceback, which points at the line, plus a note saying what to write."""
    try:
        yield
    except ValueError as e:
        if "truth value of an array" in str(e):
            e.add_note(
                f"lmtoolkit: {policy_label(policy)}, rule {rule}: the fluid engine runs a policy's rules on "
                "arrays, one element per migration; write a condition with np.where(...), not if/and/or "
                "(examples/README.md, point 3)"
            )
        raise


def _check_state(policy, rule: str, st) -> None:
    """The state a rule may set that the engines read: throttle share and bandwidth estimate."""
    _check(policy, rule, "st.throttle", st.throttle, 0.0, 1.0)
    _check(policy, rule, "st.bw_est (bytes/s)", st.bw_est, 0.0)


class CheckedPolicy:
    """``policy`` with its rules' answers checked (every other attribute is the policy's own)."""

    __slots__ = ("policy",)

    def __init__(self, policy):
        self.policy = policy

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def __repr__(self) -> str:
        return f"CheckedPolicy({self.policy!r})"

    def subset(self, idx) -> CheckedPolicy:
        return CheckedPolicy(self.policy.subset(idx))

    def init_state(self, st, ctx) -> None:
        self.link(st, ctx)  # the wire costs first: the initial bandwidth estimate is made of them
        with _arrays_hint(self.policy, "init_state"):
            self.policy.init_state(st, ctx)
        _check_state(self.policy, "init_state", st)

    def after_sync(self, st, ctx) -> None:
        with _arrays_hint(self.policy, "after_sync"):
            self.policy.after_sync(st, ctx)
        _check_state(self.policy, "after_sync", st)

    def link(self, st, ctx, stop: bool = False) -> Link:
        with _arrays_hint(self.policy, "link"):
            lk = self.policy.link(st, ctx, stop=stop)
        rule = "link(stop=True)" if stop else "link"
        # bytes first: a page's time is made of them
        _check(self.policy, rule, "wire bytes per non-zero page (b_nz)", lk.b_nz, 0.0)
        _check(self.policy, rule, "wire bytes per zero page (b_z)", lk.b_z, 0.0)
        _check(self.policy, rule, "seconds per non-zero page (t_nz)", lk.t_nz, 0.0, lo_open=True)
        _check(self.policy, rule, "seconds per zero page (t_z)", lk.t_z, 0.0)
        return lk

    def stop_rate_bytes_s(self, st, ctx):
        with _arrays_hint(self.policy, "stop_rate_bytes_s"):
            rate = self.policy.stop_rate_bytes_s(st, ctx)
        _check(self.policy, "stop_rate_bytes_s", "bytes/s", rate, 0.0, lo_open=True)
        return rate

    def phase_pages(self, st, ctx):
        with _arrays_hint(self.policy, "phase_pages"):
            k = self.policy.phase_pages(st, ctx)
        _check(self.policy, "phase_pages", "pages", k, 0.0)
        return k

    def converged(self, st, ctx):
        with _arrays_hint(self.policy, "converged"):
            c = self.policy.converged(st, ctx)
        if np.asarray(c).dtype != bool:
            _check(self.policy, "converged", "a truth value (0 or 1)", c, 0.0, 1.0)
            c = np.asarray(c) != 0
        return c

    def decide(self, st, ctx):
        with _arrays_hint(self.policy, "decide"):
            code = self.policy.decide(st, ctx)
        _check_whole(self.policy, "decide", "a stop reason code", code, 0.0, len(STOP_REASONS) - 1.0)
        return code

    def clear_chunk_pages(self, ctx):
        cp = self.policy.clear_chunk_pages(ctx)
        _check_whole(self.policy, "clear_chunk_pages", "pages per dirty-log clear", cp, 1.0)
        return cp

    def xbzrle_slots(self, ctx):
        n = self.policy.xbzrle_slots(ctx)
        _check_whole(self.policy, "xbzrle_slots", "cache entries", n, 0.0)
        return n

    def fault_access_factor(self):
        f = self.policy.fault_access_factor()
        _check(self.policy, "fault_access_factor", "accesses per write", f, 0.0)
        return f

    def fault_overhead_s(self):
        s = self.policy.fault_overhead_s()
        _check(self.policy, "fault_overhead_s", "seconds per fault", s, 0.0)
        return s


def checked(policy):
    """``policy`` held so that its rules' answers are checked (once: a checked one is kept)."""
    return policy if isinstance(policy, CheckedPolicy) else CheckedPolicy(policy)
