"""One error type for bad input, so the CLI can print one line and exit 2."""

from __future__ import annotations


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
        return ConfigError(key, self.value, self.allowed, msg)


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
) -> None:
    """Raise :class:`ConfigError` unless ``lo (<|<=) value (<|<=) hi`` (and, with ``finite``,
    not infinite: for sizes, costs and limits, where inf would be a hang or an inf result;
    a speed may be infinite, an idealisation)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, "a number") from None
    if v != v:  # NaN
        raise ConfigError(key, value, "a number, not NaN")
    if finite and v in (float("inf"), float("-inf")):
        raise ConfigError(key, value, "a finite number")
    bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (
        hi is not None and (v >= hi if hi_open else v > hi)
    )
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(key, value, f"must be in {left}{lo_s}, {hi_s}{right}")


def check_choice(key: str, value: object, choices) -> None:
    if value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(map(str, choices)))
