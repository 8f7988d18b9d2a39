"""One error type for bad input, so the CLI can print one line and exit 2."""

from __future__ import annotations

import copy


class ConfigError(ValueError):
    """A config key or value is not acceptable.

    ``key`` is the dotted config key (``vm.zero_fraction``), ``value`` what was given and
    ``allowed`` a human description of what is accepted.  Models raise it with their field
    name; :mod:`lmtoolkit.runner` re-raises it with the group prefix.
    """

    def __init__(self, key: str, value: object = None, allowed: str = "", message: str | None = None):
        self.key, self.value, self.allowed = key, value, allowed
        self._message = message
        super().__init__(self.text())

    def __reduce__(self):  # picklable with its fields (errors cross process/Dask boundaries)
        return (type(self), (self.key, self.value, self.allowed, self._message))

    def text(self) -> str:
        if self._message:
            return self._message
        return f"{self.key}={self.value!r} is not allowed: {self.allowed}"

    def with_prefix(self, prefix: str) -> ConfigError:
        """The same error with ``prefix.`` in front of the key (unless already there)."""
        key = self.key if self.key.startswith(prefix + ".") else f"{prefix}.{self.key}"
        msg = self._message
        if msg and key != self.key and msg.startswith(self.key):  # a message that opens with the key
            msg = key + msg[len(self.key) :]
        out = copy.copy(self)  # (a subclass stays one, with its own fields)
        out.key, out._message = key, msg
        out.args = (out.text(),)
        return out


class UnusedKeyError(ConfigError):
    """A key set away from its ``default`` that nothing reads given the other keys
    (:func:`lmtoolkit.model.checks.refuse_unused`).  A sweep whose other points read it runs
    the points that do not at ``default`` (:mod:`lmtoolkit.sweep.plan`)."""

    def __init__(self, key, value=None, allowed="", message=None, default=None):
        self.default = default
        super().__init__(key, value, allowed, message)

    def __reduce__(self):
        return (type(self), (self.key, self.value, self.allowed, self._message, self.default))


class PolicyRuleError(ConfigError):
    """A policy rule answered a value the engines cannot use (see
    :mod:`lmtoolkit.engine.rule_checks`); the message names the class, the rule and the value."""


def policy_label(policy) -> str:
    """``policy module.Class``: how an error names a policy (a plug-in by its own path)."""
    cls = type(policy)
    return f"policy {cls.__module__}.{cls.__qualname__}"


def check_range(
    key: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    finite: bool = False,
    note: str = "",
) -> None:
    """Raise :class:`ConfigError` unless ``lo (<|<=) value (<|<=) hi`` (and, with ``finite``,
    not infinite: for sizes, costs, limits and integers, where inf would be a hang or an inf
    result — an integer field is refused inf by its type check, so it passes ``finite`` too;
    a speed may be infinite, an idealisation).

    The error states what is accepted, the same interval for every refused value: an
    unbounded end reads ``inf]`` only where inf itself passes (``finite`` off) and ``inf)``
    where it does not — ``(0, inf)`` for a finite rate, ``(0, inf]`` for a speed; an infinite
    value refused by ``finite`` is told "must be a finite number in (0, inf)".  (It had read
    ``inf]`` for every unbounded end: ``network.bandwidth_gbit_s=0`` answered "(0, inf]" and
    ``=inf`` "a finite number".)  ``note`` follows the interval (units, why the bound:
    " pages/s: …")."""
    try:
        v = float(value)
    except OverflowError:  # an integer beyond a float (10**400): beyond every bound
        v = float("inf") if value > 0 else float("-inf")
    except (TypeError, ValueError):
        raise ConfigError(key, value, "a number") from None
    if v != v:  # NaN
        raise ConfigError(key, value, "a number, not NaN")
    lo_f = float("-inf") if lo is None else float(lo)
    hi_f = float("inf") if hi is None else float(hi)
    # an infinite end is excluded where inf is (finite), or where the caller excludes the end
    lo_excl = lo_open or (finite and lo_f == float("-inf"))
    hi_excl = hi_open or (finite and hi_f == float("inf"))
    bad = (v <= lo_f if lo_excl else v < lo_f) or (v >= hi_f if hi_excl else v > hi_f)
    if bad:
        left = "(" if lo_excl else "["
        right = ")" if hi_excl else "]"
        what = "a finite number in" if finite and v in (float("inf"), float("-inf")) else "in"
        raise ConfigError(key, value, f"must be {what} {left}{lo_f:g}, {hi_f:g}{right}{note}")


#: what a key whose config file holds a list / a mapping accepts
LIST_ALLOWED = "a list [...] (as in its config file)"
MAPPING_ALLOWED = "a mapping {key: value, ...} (as in its config file)"


def check_list(key: str, value) -> list:
    """``value`` (None: empty) as a list; :class:`ConfigError` naming ``key`` unless a list."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, LIST_ALLOWED)
    return list(value)


def check_mapping(key: str, value) -> dict:
    """``value`` (None: empty) as a dict; :class:`ConfigError` naming ``key`` unless a mapping."""
    from collections.abc import Mapping

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, MAPPING_ALLOWED)
    return dict(value)


def check_choice(key: str, value: object, choices) -> None:
    if value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(map(str, choices)))


class ClaimError(AssertionError):
    """A notebook's claim does not hold for the data: names the claim and its values."""


def report_claims(checks, subject: str, settings: str = "") -> str:
    """One line per claim of ``checks`` (``(text, held)``: ``True`` "ok", ``None`` "n/a", the
    text saying why it does not apply); :class:`ClaimError` naming every claim that is ``False``
    ("``subject`` do not hold with these settings (``settings``): …"; it was a bare ``assert``)."""
    failed = [c for c, ok in checks if ok is False]
    if failed:
        raise ClaimError(f"{subject} do not hold with these settings ({settings}): " + "; ".join(failed))
    return "\n".join(("n/a  " if ok is None else "ok   ") + c for c, ok in checks)
