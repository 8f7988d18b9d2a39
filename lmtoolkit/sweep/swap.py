"""Group swaps without a new Hydra composition, where that is exact.

A sweep axis over a config group (``policy: {key: policy, values: [vmware, hyperv]}``)
needs the config as Hydra would compose it with ``policy=hyperv``.  When nothing but the
option's own file sets the group's keys (no experiment, debug, local or command-line value
for ``policy.*``), that config is the base composition with the group's node replaced by the
option's file merged over the same-group options its defaults list names — no new
composition (~0.1 s each).  ``tests/config/test_group_swap.py`` checks it against Hydra for
every option of every group and every experiment's cells.

A ``policy._target_`` axis (plug-in classes) swaps the policy's class the same way
(:func:`swap_class`): each class with its own defaults, plus the policy keys the command line,
the experiment, debug or local file set — not the keys the base option's file or its class's
defaults brought in, which belong to the class the axis replaces.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from ..compose import complete_policy, split_override
from ..paths import config_dir


def group_option_node(group: str, option: str) -> DictConfig | None:
    """The node one option of a config group contributes on its own: its file merged over the
    same-group options its defaults list names (``- default``, ``_self_``), as Hydra does.

    None when the file uses what this shortcut does not follow (a ``@package`` directive,
    another group or an override in its defaults list): then compose with Hydra.
    """
    path = config_dir() / group / f"{option}.yaml"
    if not path.is_file():
        return None
    text = path.read_text()
    if any(line.lstrip().startswith("# @package") for line in text.splitlines()):
        return None
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        return None
    defaults = data.pop("defaults", None)
    if defaults is not None and not isinstance(defaults, list):
        return None
    parts, has_self = [], False
    for d in defaults or []:
        if d == "_self_":
            parts.append(data)
            has_self = True
        elif isinstance(d, str) and d != option:
            sub = group_option_node(group, d)
            if sub is None:
                return None
            parts.append(sub)
        else:
            return None
    if not has_self:
        parts.append(data)  # Hydra >= 1.1: _self_ last unless placed
    return OmegaConf.merge(*[OmegaConf.create(x) if isinstance(x, dict) else x for x in parts])


def option_files(group: str, option: str) -> list[Path]:
    """The config files one option of a group is composed from: its own file and, through its
    defaults list, those it includes (``- default`` in the same group, ``/group/name``, ``sub:
    name``), recursively; files that are not there are left out (Hydra reports them)."""
    root = config_dir()
    out: list[Path] = []
    todo = [(group, str(option))]
    while todo:
        where, name = todo.pop(0)
        rel = name.lstrip("/") if name.startswith("/") else f"{where}/{name}"
        f = root / f"{rel}.yaml"  # (not with_suffix: an option may hold a dot)
        if f in out or not f.is_file():
            continue
        out.append(f)
        try:
            defaults = (yaml.safe_load(f.read_text()) or {}).get("defaults") or []
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        here = f.parent.relative_to(root).as_posix()
        for d in defaults if isinstance(defaults, list) else ():
            if isinstance(d, str) and d != "_self_":
                todo.append((here, d))
            elif isinstance(d, dict):
                for key, value in d.items():
                    sub = str(key).replace("override ", "").replace("optional ", "").split("@")[0].strip()
                    path = sub.lstrip("/") if sub.startswith("/") else f"{here}/{sub}"
                    for v in value if isinstance(value, list) else [value]:
                        if isinstance(v, str):
                            todo.append(("", f"/{path}/{v}"))
    return out


def swap_group(raw: DictConfig, group: str, option: str) -> DictConfig | None:
    """``raw`` (an unresolved composed config) with ``group`` switched to ``option`` without a
    new Hydra composition, or None if that is not exact here.  Exact when nothing but the
    option's own file sets the group's keys (no experiment, debug, local or command-line
    value for ``group.*``) — the caller checks that (:func:`group_is_untouched`)."""
    node = group_option_node(group, option)
    if node is None:
        return None
    out = copy.deepcopy(raw)
    with open_dict(out):
        out[group] = node
    if group == "policy":
        complete_policy(out)
    return out


def group_is_untouched(group: str, overrides: list[str]) -> bool:
    """Does no config source other than the group's option set keys of ``group``?"""
    for o in overrides:
        key = split_override(o)[1]
        if key.startswith(group + "."):
            return False
        if "." not in key and key in ("experiment", "debug"):
            value = split_override(o)[2]
            f = config_dir() / key / f"{value}.yaml"
            try:
                data = yaml.safe_load(f.read_text()) or {}
            except (OSError, yaml.YAMLError):
                return False
            if not isinstance(data, dict) or group in data:
                return False
    local = config_dir() / "local" / "default.yaml"
    if local.is_file():
        try:
            data = yaml.safe_load(local.read_text()) or {}
        except yaml.YAMLError:
            return False
        if not isinstance(data, dict) or group in data:
            return False
    return True


def _policy_section(f, group: str) -> set[str]:
    try:
        data = yaml.safe_load(f.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return set()
    node = data.get(group) if isinstance(data, dict) else None
    return {str(k) for k in node} if isinstance(node, dict) else set()


def keys_set_outside(group: str, overrides: list[str]) -> set[str]:
    """First-level keys of ``group`` that a source other than the group's option sets: a
    ``group.KEY=value`` override, or the ``group:`` section of an experiment or debug file the
    overrides name, or of ``local/default.yaml`` (the sources :func:`group_is_untouched` reads)."""
    out: set[str] = set()
    for o in overrides:
        prefix, key, value = split_override(o)
        if key.startswith(group + ".") and "~" not in prefix:
            out.add(key[len(group) + 1 :].split(".")[0].split("[")[0])
        elif "." not in key and key in ("experiment", "debug"):
            out |= _policy_section(config_dir() / key / f"{value}.yaml", group)
    local = config_dir() / "local" / "default.yaml"
    if local.is_file():
        out |= _policy_section(local, group)
    return out


def swap_class(raw: DictConfig, target: str, keep: set[str]) -> DictConfig:
    """``raw`` (an unresolved composed config) with its policy the class ``target``
    (``module.Class``): the keys of ``keep`` (:func:`keys_set_outside`) as ``raw`` has them,
    the class's defaults for the rest (:func:`~lmtoolkit.compose.complete_policy`).  The other
    keys of ``raw``'s policy — its option file's and its class's defaults — are dropped: a
    ``policy._target_`` axis over classes of different fields ran each class with the first
    one's keys (``unknown key 'policy.min_shrink_pct' for policy 'caprounds'``, a key nobody
    set).  A kept key the class does not have is refused when the cell is built."""
    old = (
        OmegaConf.to_container(raw.policy, resolve=False) if isinstance(raw.get("policy"), DictConfig) else {}
    )
    node = {"_target_": target}
    node.update({k: v for k, v in old.items() if k in keep and k not in ("_target_", "name")})
    out = copy.deepcopy(raw)
    with open_dict(out):
        out["policy"] = OmegaConf.create(node)
    complete_policy(out)
    return out
