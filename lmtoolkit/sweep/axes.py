"""Sweep axes: ``sweep.axes`` of an experiment -> checked :class:`Axis` objects.

Each dim names a config key and its values (``dirty_rate: {key:
workload.dirty_rate_pages_s, values: [...]}``, or generated: ``values: {start, stop, num,
log}``) or a config group and its options (``policy: {key: policy, values: [vmware,
hyperv]}``, a *group swap*), or policy classes (``pol: {key: policy._target_, values:
[my_policy.A, my_policy.B]}``, a *class swap*: each class with its own defaults, as a group swap
gives each option its own keys).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..compose import CLASS_KEY, leaf_keys, sweeps_policy
from ..errors import ConfigError
from ..paths import group_options
from ..units import display_unit, unit_of_key

#: config groups an axis may swap
SWAPPABLE = ("vm", "workload", "network", "host", "policy", "storage", "power", "evacuation")
RESERVED_DIMS = ("replicate", "round", "seed", "vm")
#: key roots that say how a sweep runs, not what it simulates
NOT_SWEEPABLE = ("sweep", "paths", "hydra", "experiment", "debug", "local", "task")


@dataclass
class Axis:
    dim: str
    key: str
    values: list
    group: bool  # a config-group swap (policy=vmware), not a value
    column: bool = False  # applied to built scenarios (vectorised on the fluid engine)
    swap_class: bool = False  # policy._target_: the policy's class swapped (its own defaults)
    long_name: str = ""  # the coordinate's label; its units are always the key's (units.py)

    @property
    def swaps_policy(self) -> bool:
        """Does each value choose the policy's class (a ``policy`` group or class axis)?"""
        return self.swap_class or (self.group and self.key == "policy")

    def coord(self) -> np.ndarray:
        if self.group or any(isinstance(v, str) for v in self.values):
            return np.array([str(v) for v in self.values])
        if all(isinstance(v, bool) for v in self.values):
            return np.array(self.values, dtype=bool)
        if any(v is None for v in self.values):  # null (e.g. "no cap"): NaN, as a file reads it back
            return np.array([np.nan if v is None else v for v in self.values], dtype=float)
        return np.asarray(self.values)

    def coord_attrs(self) -> dict:
        a = {
            "long_name": self.long_name or (f"{self.key} (config group)" if self.group else self.key),
            "lmt_key": self.key,
        }
        units = self._units()
        if units is not None:
            a["units"] = units
        return a

    def _units(self) -> str | None:
        if self.group or any(isinstance(v, str) for v in self.values):
            return None
        if all(isinstance(v, bool) for v in self.values):
            return "1"
        return unit_of_key(self.key)


def _err(where: str, value, message: str) -> ConfigError:
    return ConfigError(where, value, "", message=f"{where}: {message}")


def parse_axes(cfg, max_values: int | None) -> list[Axis]:
    """The checked axes of ``cfg.sweep.axes``.  ``max_values`` (``sweep.max_values``, which
    ``debug=default`` sets to 2) cuts an axis to its first ``max_values - 1`` values and its
    last: a debug run keeps both ends of every axis (VMware-like *and* Hyper-V-like).  With
    ``max_values=1`` it keeps the first value alone (:func:`cut_values`)."""
    raw = OmegaConf.select(cfg, "sweep.axes")
    if raw is None:
        return []
    if not isinstance(raw, DictConfig):
        raise ConfigError("sweep.axes", raw, "a mapping dim -> {key: ..., values: [...]}")
    axes = [_axis(cfg, str(dim), raw[dim], max_values) for dim in raw.keys()]
    seen: dict[str, str] = {}
    for a in axes:  # one key on two axes: each point would run one of the two values, unseen
        if a.key in seen:
            raise _err(
                f"sweep.axes.{a.dim}.key",
                a.key,
                f"'{a.key}' is already swept by axis {seen[a.key]}: two axes over one key would label "
                "points with values they do not run with (one axis per key)",
            )
        seen[a.key] = a.dim
    if CLASS_KEY in seen and "policy" in seen:  # both would set the whole policy
        raise _err(
            f"sweep.axes.{seen[CLASS_KEY]}.key",
            CLASS_KEY,
            f"'{CLASS_KEY}' and axis {seen['policy']} (key policy) both choose the policy: one of them "
            "(a group option may name a plug-in: configs/policy/custom.yaml)",
        )
    return axes


#: the fields of an axis (its coordinate's units are its key's: "units live in key names")
AXIS_FIELDS = ("key", "values", "long_name")
#: the fields of generated values
GENERATED_FIELDS = ("start", "stop", "num", "log")


def _field_error(
    where: str, field: str, value, fields: tuple[str, ...], what: str, tail: str = ""
) -> ConfigError:
    """``where.field=value`` is not a field of ``what`` (naming the fields)."""
    return ConfigError(
        f"{where}.{field}", value, f"not a field of {what} (fields: {', '.join(fields)}{tail})"
    )


def _check_fields(where: str, spec: DictConfig) -> None:
    """Only :data:`AXIS_FIELDS`.  A ``units`` field is refused with its reason: the coordinate
    took it while the points ran in the key's unit (``units: Mbit/s`` over
    ``network.bandwidth_gbit_s: [1000, 10000]`` labelled 1000 Gbit/s points Mbit/s)."""
    for field in spec.keys():
        field = str(field)
        if field in AXIS_FIELDS:
            continue
        value = spec._get_node(field)._value()
        if field == "units":
            key = spec.get("key")
            of = (
                f" ({key} is in {display_unit(unit_of_key(key), key)})"
                if isinstance(key, str) and "." in key
                else ""
            )
            raise ConfigError(
                f"{where}.units",
                value,
                f"an axis's values are in the unit its key names{of}: units live in key names "
                f"(DESIGN.md); the fields of an axis are {', '.join(AXIS_FIELDS)}",
            )
        close = difflib.get_close_matches(field, AXIS_FIELDS, n=1)  # value -> values
        raise _field_error(
            where, field, value, AXIS_FIELDS, "an axis", f"; did you mean {close[0]}?" * bool(close)
        )


def _check_group_swap(where: str, key: str, values) -> None:
    """An axis over ``<group>.name`` (``policy.name: [qemu, xen]``) or a ``_target_`` other than
    the policy's would switch the group's model but keep the base option's keys (``unknown key
    'policy.max_bandwidth_mib_s' for policy 'xen'``; a ``workload.name`` axis ran ``hotcold``
    with the keys of ``uniform``): a group axis swaps the whole option."""
    group, _, leaf = key.partition(".")
    if group not in SWAPPABLE or leaf not in ("name", "_target_") or key == CLASS_KEY:
        return
    shown = ", ".join(map(str, values)) if isinstance(values, ListConfig) and leaf == "name" else "..."
    what = "chooses its option" if leaf == "name" else "is no class to swap (only policy._target_ is)"
    raise ConfigError(
        f"{where}.key",
        key,
        f"{key} {what}: swap the whole option with a group axis "
        f"{where}={{key: {group}, values: [{shown}]}} (options: {', '.join(group_options(group))})",
    )


def _check_duplicates(where: str, values: list) -> None:
    """Each value once (2000 and 2000.0 are one value): the error names the repeated ones."""
    seen: dict = {}
    for v in values:
        seen.setdefault(_same_value(v), []).append(v)
    twice = [vs for vs in seen.values() if len(vs) > 1]
    if twice:
        shown = "; ".join(
            f"{vs[0]!r} {len(vs)} times" if len({repr(v) for v in vs}) == 1 else " = ".join(map(repr, vs))
            for vs in twice
        )
        raise ConfigError(where, values, f"each value once (duplicates: {shown})")


def cut_values(values: list, max_values: int | None) -> list:
    """``sweep.max_values=N``: the first N-1 values and the last (the ends: the contrast an
    axis is about).  N=1 keeps the first alone (not "the first 0 and the last"): experiments
    list an axis from its baseline (auto_converge false, no background traffic, the lowest
    dirty rate, the smallest VM), usually the cheaper end (``memory_scaling``'s last value is a
    512 GiB VM, ``bandwidth_vs_dirty_rate``'s 1M pages/s)."""
    if max_values is None or len(values) <= int(max_values):
        return values
    k = int(max_values)
    return values[:1] if k == 1 else values[: k - 1] + values[-1:]


def _same_value(v):
    """What makes two axis values the same point (2000 and 2000.0 are; True and 1 are not)."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, (int, float)):
        return ("number", float(v))
    return (type(v).__name__, v)


#: a dotted config key, list items indexed (``evacuation.vms[0].count``)
KEY_FORM = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*|\[\d+\])*")


def _axis(cfg, dim: str, spec, max_values) -> Axis:
    where = f"sweep.axes.{dim}"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", dim) or dim in RESERVED_DIMS:
        raise _err(
            where, dim, f"'{dim}' cannot be a dim name (an identifier other than {', '.join(RESERVED_DIMS)})"
        )
    if not isinstance(spec, DictConfig) or "key" not in spec or "values" not in spec:
        raise _err(where, spec, "must be {key: <config key or group>, values: [...]}")
    _check_fields(where, spec)
    key, values = str(spec.key), spec["values"]
    if not isinstance(spec.key, str) or not KEY_FORM.fullmatch(key):
        raise _err(
            f"{where}.key",
            spec.key,
            f"{spec.key!r} is not a config key (workload.dirty_rate_pages_s) or a group (policy)",
        )
    _check_group_swap(where, key, values)
    if isinstance(values, DictConfig):
        values = generated_values(where, OmegaConf.to_container(values, resolve=True))
    elif not isinstance(values, ListConfig) or len(values) == 0:
        raise _err(
            f"{where}.values", values, "must be a non-empty list or {start: a, stop: b, num: n, log: false}"
        )
    else:
        values = OmegaConf.to_container(values, resolve=True)
    _check_duplicates(f"{where}.values", values)  # (as given: before max_values cuts the axis)
    values = cut_values(values, max_values)
    kinds = {isinstance(v, bool) for v in values}
    if len(kinds) > 1:  # [1, true]: a coordinate [1 1] (True read as 1), .sel broken
        raise _err(f"{where}.values", values, "one kind of value: true/false, or numbers and names, not both")
    group = "." not in key and key in SWAPPABLE
    if key == CLASS_KEY:
        return _class_axis(dim, where, spec, values)
    if group:
        opts = group_options(key)
        for v in values:
            if str(v) not in opts:
                close = difflib.get_close_matches(str(v), opts, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise _err(where, v, f"unknown {key} '{v}'{hint} (available: {', '.join(opts)})")
        values = [str(v) for v in values]
    else:
        if key == "seed":
            # each point's seed is a word of SeedSequence(seed) (plan.py): a seed axis would
            # label points with seeds they do not run with
            raise _err(
                where,
                key,
                "'seed' cannot be swept: every point already runs with its own seed (the seed "
                "coordinate); for more samples per point use sweep.replicates=N, for another "
                "stream of seeds set seed=N for the whole sweep",
            )
        if key.split(".")[0] in NOT_SWEEPABLE:
            raise _err(
                where, key, f"'{key}' cannot be swept (sweep axes change the simulation, not how it runs)"
            )
        # (a key of the classes or options a policy axis swaps in: checked in each cell, plan.py)
        missing = OmegaConf.select(cfg, key, default="__missing__") == "__missing__"
        if missing and not (key.startswith("policy.") and sweeps_policy(cfg)):
            valid = [k for k in leaf_keys(cfg) if not k.startswith(NOT_SWEEPABLE)]
            close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise _err(where, key, f"unknown key '{key}'{hint}")
        for v in values:
            if isinstance(v, (dict, list)):
                raise _err(where, v, f"values must be scalars, got {v!r}")
    return Axis(
        dim=dim,
        key=key,
        values=list(values),
        group=group,
        long_name=str(spec.get("long_name") or ""),
    )


def _class_axis(dim: str, where: str, spec, values: list) -> Axis:
    """A ``policy._target_`` axis: each value an importable policy class (checked here, before
    any point runs); the base config need not have a ``_target_`` (it had to: the axis was an
    unknown key under ``policy=qemu``)."""
    from ..policies import policy_class

    for v in values:
        if not isinstance(v, str):
            raise _err(where, v, f"values of {CLASS_KEY} are policy classes (module.Class), got {v!r}")
        try:
            policy_class({"_target_": v})
        except ConfigError as e:
            e = e.with_prefix("policy")
            raise ConfigError(e.key, e.value, e.allowed, message=f"{where}: {e.text()}") from None
    return Axis(
        dim=dim,
        key=CLASS_KEY,
        values=list(values),
        group=False,
        swap_class=True,
        long_name=str(spec.get("long_name") or ""),
    )


def generated_values(where: str, spec: dict) -> list:
    """``{start, stop, num, log}`` -> ``num`` evenly (or log-) spaced values, ends included."""
    for field in spec:
        if field not in GENERATED_FIELDS:
            tail = ": num values from start to stop, ends included"
            raise _field_error(
                f"{where}.values", str(field), spec[field], GENERATED_FIELDS, "generated values", tail
            )
    missing = [f for f in ("start", "stop", "num") if f not in spec]
    if missing:
        raise ConfigError(
            f"{where}.values",
            spec,
            f"{', '.join(missing)} missing: generated values are {{start: a, stop: b, num: n, log: false}}",
        )
    num, log = spec["num"], spec.get("log", False)
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ConfigError(f"{where}.values.num", num, "a positive integer")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.values.log", log, "true or false")
    try:
        start, stop = float(spec["start"]), float(spec["stop"])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.values", spec, "numbers for start and stop") from None
    if num == 1 and start != stop:  # linspace would give start alone, dropping stop silently
        raise ConfigError(
            f"{where}.values.num", num, f"at least 2 for start {start:g} and stop {stop:g} (or stop = start)"
        )
    if num > 1 and start == stop:  # num copies of one value
        raise ConfigError(
            f"{where}.values.num", num, f"1 when start = stop ({num} values would all be {start:g})"
        )
    if log and (start <= 0 or stop <= 0):
        raise ConfigError(f"{where}.values", spec, "start and stop > 0 with log: true")
    arr = np.geomspace(start, stop, num) if log else np.linspace(start, stop, num)
    return [float(v) for v in arr]
