"""What both engines check of a policy's answers before they use them.

A rule that answers NaN, a negative page count, a wire cost that is not positive, a throttle
outside [0, 1] or a stop reason that does not exist would otherwise turn into a wrong number
in the results (a negative ``transferred``, a NaN ``total_time``) or a traceback far from the
rule.  The engines and the energy model hold the policy as a :class:`CheckedPolicy`
(:func:`checked`: the policy's own class with the checks in front of its rules), so a rule is
checked wherever it is asked — by an engine, or by another rule on ``self`` (``decide`` asks
``converged``); for a plug-in's class also the rules the engines' rules are made of
(:class:`CheckedPlugin`: ``rate_bytes_s``, ``nonzero_wire_bytes``, ``nonzero_cpu_s``,
``checksum_cpu_s``, ``forced``).  A bad answer raises one :class:`PolicyRuleError` naming the
policy class, the rule, the value and what is allowed.  This guards a user's plug-in
(``policy._target_``, ``examples/my_policy.py``) as much as a built-in policy's bug.  Each check
is two reductions per call (min and max, NaN-propagating); ``dirty_clear`` is checked once,
when the policy is taken.
"""

from __future__ import annotations

import numpy as np

from ..errors import PolicyRuleError, policy_label
from ..policies.base import Link
from ..records import STOP_REASONS

_BIG = np.finfo(float).max  # an upper bound that refuses inf (and NaN, as every comparison)

__all__ = ["CheckedPlugin", "CheckedPolicy", "PolicyRuleError", "check_answer", "checked"]


def _refuse(policy, rule: str, what: str, bad: np.ndarray, n: int, allowed: str) -> PolicyRuleError:
    many = f" ({bad.size} of {n} migrations)" if n > 1 else ""
    v = float(bad.flat[0])
    return PolicyRuleError(
        "policy",
        v,
        allowed,
        message=f"{policy_label(policy)}: rule {rule} gave {what} = {v!r}{many}; allowed: {allowed}",
    )


_MIN, _MAX = np.minimum.reduce, np.maximum.reduce  # (NaN-propagating, without ndarray.min's wrapper)


def _in_range(value, lo: float, hi: float, lo_open: bool) -> bool:
    """Every element of ``value`` in [lo, hi] (``lo_open``: (lo, hi]); NaN is in no range.
    The common answers (a float, a numeric array) take no conversion: the engines ask this of
    every rule at every phase."""
    t = type(value)
    if t is np.ndarray and value.dtype.kind in "fiu":
        if value.size == 0:
            return True
        mn, mx = _MIN(value, None), _MAX(value, None)
    elif t is float or t is np.float64:
        mn = mx = value
    else:
        a = np.asarray(value, dtype=float)
        if a.size == 0:
            return True
        mn, mx = _MIN(a, None), _MAX(a, None)
    return bool((mn > lo if lo_open else mn >= lo) and mx <= hi)


def _check(policy, rule: str, what: str, value, lo: float, hi: float = _BIG, lo_open: bool = False) -> None:
    """Raise :class:`PolicyRuleError` unless every element of ``value`` is finite and in
    [lo, hi] (``lo_open``: (lo, hi])."""
    if _in_range(value, lo, hi, lo_open):
        return
    a = np.asarray(value, dtype=float)
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
    if type(value) is np.ndarray and value.dtype.kind in "iu":
        return
    a = np.asarray(value, dtype=float)
    whole = a == np.round(a)
    if not whole.all():
        raise _refuse(policy, rule, what, np.atleast_1d(a[~whole]), a.size, "a whole number")


#: public name of :func:`_check` for a caller that asks a rule outside the engines
check_answer = _check


def _array_note(e: ValueError, policy, rule: str) -> None:
    """A Python ``if`` on an array inside a rule (it works on one migration, fails on a fluid
    batch) keeps its traceback, which points at the line, plus a note saying what to write
    (once: a rule called from another rule adds none of its own)."""
    if "truth value of an array" in str(e) and not any(
        n.startswith("lmtoolkit: ") for n in getattr(e, "__notes__", ())
    ):
        e.add_note(
            f"lmtoolkit: {policy_label(policy)}, rule {rule}: the fluid engine runs a policy's rules on "
            "arrays, one element per migration; write a condition with np.where(...), not if/and/or "
            "(examples/README.md, point 3)"
        )


def _asked(policy, rule: str, answer, *args, **kw):
    """``answer(*args, **kw)`` (a rule of ``policy``, bound), with :func:`_array_note` on the
    ValueError of an ``if`` on an array."""
    try:
        return answer(*args, **kw)
    except ValueError as e:
        _array_note(e, policy, rule)
        raise


def _check_link(policy, rule: str, lk: Link) -> Link:
    """A phase's per-page costs: bytes first (a page's time is made of them)."""
    _check(policy, rule, "wire bytes per non-zero page (b_nz)", lk.b_nz, 0.0)
    _check(policy, rule, "wire bytes per zero page (b_z)", lk.b_z, 0.0)
    _check(policy, rule, "seconds per non-zero page (t_nz)", lk.t_nz, 0.0, lo_open=True)
    _check(policy, rule, "seconds per zero page (t_z)", lk.t_z, 0.0)
    return lk


def _check_state(policy, rule: str, st) -> None:
    """The state a rule may set that the engines read: throttle share and bandwidth estimate."""
    _check(policy, rule, "st.throttle", st.throttle, 0.0, 1.0)
    _check(policy, rule, "st.bw_est (bytes/s)", st.bw_est, 0.0)


#: when a page's dirty log is cleared (:attr:`lmtoolkit.policies.base.Policy.dirty_clear`)
CLEAR_MODES = ("send", "sync", "chunk", "skip")


def _check_clear_mode(policy) -> None:
    """The ``dirty_clear`` hook names a mode both engines know (a plug-in's ``"bogus"`` ran
    as ``"sync"``: every mode but ``send`` was taken for it)."""
    mode = policy.dirty_clear
    bad = [m for m in np.atleast_1d(np.asarray(mode, dtype=object)).ravel() if m not in CLEAR_MODES]
    if bad:
        raise PolicyRuleError(
            "policy",
            bad[0],
            ", ".join(CLEAR_MODES),
            message=f"{policy_label(policy)}: dirty_clear = {bad[0]!r}; allowed: one of "
            + ", ".join(CLEAR_MODES),
        )


class CheckedPolicy:
    """The checks, as a base placed in front of a policy's own class (:func:`checked`).

    A checked policy is an instance of a subclass of ``(CheckedPolicy, its class)`` holding the
    same field values, so a rule another rule asks on ``self`` reaches it through the check
    here too (``decide`` asks ``converged``: a wrapper holding the policy checked only the
    engines' own calls, and a NaN from ``converged`` became numpy's TypeError inside
    ``decide``).  These are the rules the engines act on; a plug-in's class (defined outside
    ``lmtoolkit``) also has the rules those are made of checked (:class:`CheckedPlugin`).
    """

    def unchecked(self):
        """The policy itself: its class, these field values, no checks (for probes of
        predicted states the engine makes, whose NaN rows it discards)."""
        obj = object.__new__(self._unchecked_class)
        obj.__dict__.update(self.__dict__)
        return obj

    def __reduce__(self):  # pickled as the policy, checked again where it is loaded
        return (checked, (self.unchecked(),))

    def init_state(self, st, ctx) -> None:
        self.link(st, ctx)  # the wire costs first: the initial bandwidth estimate is made of them
        _asked(self, "init_state", super().init_state, st, ctx)
        _check_state(self, "init_state", st)

    def after_sync(self, st, ctx) -> None:
        _asked(self, "after_sync", super().after_sync, st, ctx)
        _check_state(self, "after_sync", st)

    def link(self, st, ctx, stop: bool = False) -> Link:
        lk = _asked(self, "link", super().link, st, ctx, stop=stop)
        return _check_link(self, "link(stop=True)" if stop else "link", lk)

    def postcopy_link(self, st, ctx) -> Link:
        lk = _asked(self, "postcopy_link", super().postcopy_link, st, ctx)
        return _check_link(self, "postcopy_link", lk)

    def stop_rate_bytes_s(self, st, ctx):
        rate = _asked(self, "stop_rate_bytes_s", super().stop_rate_bytes_s, st, ctx)
        _check(self, "stop_rate_bytes_s", "bytes/s", rate, 0.0, lo_open=True)
        return rate

    def postcopy_rate_bytes_s(self, st, ctx):
        rate = _asked(self, "postcopy_rate_bytes_s", super().postcopy_rate_bytes_s, st, ctx)
        _check(self, "postcopy_rate_bytes_s", "bytes/s", rate, 0.0, lo_open=True)
        return rate

    def discard_bytes(self, runs):
        b = _asked(self, "discard_bytes", super().discard_bytes, runs)
        _check(self, "discard_bytes", "bytes", b, 0.0)
        return b

    def phase_pages(self, st, ctx):
        k = _asked(self, "phase_pages", super().phase_pages, st, ctx)
        _check(self, "phase_pages", "pages", k, 0.0)
        return k

    def converged(self, st, ctx):
        c = _asked(self, "converged", super().converged, st, ctx)
        if np.asarray(c).dtype != bool:
            _check_whole(self, "converged", "a truth value (0 or 1)", c, 0.0, 1.0)
            c = np.asarray(c) != 0
        return c

    def decide(self, st, ctx):
        code = _asked(self, "decide", super().decide, st, ctx)
        _check_whole(self, "decide", "a stop reason code", code, 0.0, len(STOP_REASONS) - 1.0)
        return code

    def clear_chunk_pages(self, ctx):
        cp = super().clear_chunk_pages(ctx)
        _check_whole(self, "clear_chunk_pages", "pages per dirty-log clear", cp, 1.0)
        return cp

    def xbzrle_slots(self, ctx):
        n = super().xbzrle_slots(ctx)
        _check_whole(self, "xbzrle_slots", "cache entries", n, 0.0)
        return n

    def fault_access_factor(self):
        f = super().fault_access_factor()
        _check(self, "fault_access_factor", "accesses per write", f, 0.0)
        return f

    def fault_overhead_s(self):
        s = super().fault_overhead_s()
        _check(self, "fault_overhead_s", "seconds per fault", s, 0.0)
        return s


class CheckedPlugin(CheckedPolicy):
    """:class:`CheckedPolicy`, and the rules the engines' rules are made of, for a class
    defined outside ``lmtoolkit`` (a plug-in): ``link`` asks ``rate_bytes_s`` (checked before
    it divides by it: a rate of 0 printed numpy's RuntimeWarning above the one-line error),
    ``nonzero_wire_bytes``, ``nonzero_cpu_s`` and ``checksum_cpu_s`` (the larger of the CPU
    and wire times is the page's: a negative CPU time went unseen, into the energy model, which
    asks it as well); ``decide`` asks ``forced``.  The package's own classes skip these (their
    rules are the package's code, tested; the engines ask them at every phase)."""

    def rate_bytes_s(self, st, ctx):
        rate = _asked(self, "rate_bytes_s", super().rate_bytes_s, st, ctx)
        _check(self, "rate_bytes_s", "bytes/s", rate, 0.0, lo_open=True)
        return rate

    def nonzero_wire_bytes(self, st, ctx):
        b = _asked(self, "nonzero_wire_bytes", super().nonzero_wire_bytes, st, ctx)
        _check(self, "nonzero_wire_bytes", "wire bytes per non-zero page", b, 0.0)
        return b

    def nonzero_cpu_s(self, st, ctx):
        s = _asked(self, "nonzero_cpu_s", super().nonzero_cpu_s, st, ctx)
        _check(self, "nonzero_cpu_s", "sender CPU seconds per non-zero page", s, 0.0)
        return s

    def checksum_cpu_s(self, ctx):
        s = super().checksum_cpu_s(ctx)
        _check(self, "checksum_cpu_s", "hashing seconds per non-zero page", s, 0.0)
        return s

    def forced(self, st, ctx):
        code = _asked(self, "forced", super().forced, st, ctx)
        _check_whole(self, "forced", "a stop reason code", code, 0.0, len(STOP_REASONS) - 1.0)
        return code


#: policy class -> its checked subclass
_CHECKED: dict[type, type] = {}
_PACKAGE = __name__.split(".")[0]  # lmtoolkit


def _checked_class(cls: type) -> type:
    sub = _CHECKED.get(cls)
    if sub is None:
        # named as the policy's class: errors, reprs and labels name the user's class
        ns = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "_unchecked_class": cls}
        plugin = not cls.__module__.startswith(_PACKAGE + ".")
        sub = _CHECKED[cls] = type(cls.__name__, (CheckedPlugin if plugin else CheckedPolicy, cls), ns)
    return sub


def checked(policy):
    """``policy`` as a :class:`CheckedPolicy` (same class, same field values, its rules'
    answers checked; once: a checked one is kept).  Its ``dirty_clear`` is checked here."""
    if isinstance(policy, CheckedPolicy):
        return policy
    _check_clear_mode(policy)
    obj = object.__new__(_checked_class(type(policy)))
    obj.__dict__.update(policy.__dict__)
    return obj
