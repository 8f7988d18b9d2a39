"""Hydra overrides -> one resolved config, composed once, with one clear error for bad input.

:func:`compose` is what every command and API call uses (``lmtk run``, ``simulate``,
``sweep``, ``evacuate``): it composes ``configs/config.yaml`` exactly once on the good path
and never touches Hydra's global state, ``os.environ`` or ``sys.argv`` (it drives Hydra's
config loader directly), so it is safe inside a running Hydra app and in notebooks.  The
extra compositions that word an error happen only when composition failed.

Policy keys: a policy's YAML states only what differs from its dataclass defaults, so an
override ``policy.KEY=VALUE`` is applied as ``++policy.KEY=VALUE`` (set or add) and then
checked against the fields of the policy class the config selects.
"""

from __future__ import annotations

import difflib
import numbers
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from .errors import LIST_ALLOWED, MAPPING_ALLOWED, ConfigError
from .paths import config_dir, group_options

#: config groups (``key=option`` overrides)
GROUPS = (
    "vm",
    "workload",
    "network",
    "host",
    "policy",
    "storage",
    "power",
    "evacuation",
    "paths",
    "experiment",
    "sweep",
    "debug",
    "local",
    "hydra",
)
#: top-level keys a composed config may hold; anything else (``+foo=1``) is an error
TOP_LEVEL = tuple(g for g in GROUPS if g not in ("experiment", "debug", "local", "hydra")) + (
    "engine",
    "seed",
    "title",
    "task",
    "description",
)
#: what one sweep point (or ``lmtk run``) is: the ``task`` key
TASKS = ("migration", "evacuation")


def split_override(override: str) -> tuple[str, str, str]:
    """(prefix, key, value) of a Hydra override such as ``+vm.memory_gib=4``."""
    prefix = ""
    while override[:1] in "+~":
        prefix += override[0]
        override = override[1:]
    key, _, value = override.partition("=")
    return prefix, key.strip(), value


#: Hydra settings that change what is composed (config groups found in another directory:
#: ``+fit=NAME`` from ``lmtk fit``): kept with the config's own overrides, where every other
#: ``hydra.*`` one (launcher, sweep dir, job) only says how a run is launched
COMPOSING_HYDRA_KEYS = ("hydra.searchpath",)


def is_hydra_override(o: str) -> bool:
    """A ``hydra.*`` / ``hydra/...`` override that does not change the composed config (so a
    sweep's plan, identity and cache leave it out); ``hydra.searchpath`` is not one of them:
    ``lmtk sweep hydra.searchpath=[file://DIR] +fit=NAME`` read ``fit`` as a new key without it."""
    key = split_override(o)[1]
    if key in COMPOSING_HYDRA_KEYS:
        return False
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def leaf_keys(cfg, prefix: str = "") -> list[str]:
    """Every dotted key of ``cfg`` (inner nodes included), for "did you mean" hints."""
    keys = []
    if isinstance(cfg, DictConfig):
        for k in cfg.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            try:
                v = cfg._get_node(k)
            except Exception:  # noqa: BLE001 - interpolation errors: no hint from this node
                continue
            if isinstance(v, DictConfig):
                keys.extend(leaf_keys(v, full + "."))
    return keys


def first_line(e: Exception) -> str:
    """The first lines of an exception's message, joined: Hydra's and OmegaConf's are long."""
    msg = str(e).strip().splitlines()
    return " ".join(m.strip() for m in msg[:3] if m.strip()) or type(e).__name__


@lru_cache(maxsize=4)
def _loader(cfg_dir: str):
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    return ConfigLoaderImpl(config_search_path=create_config_search_path(cfg_dir))


def hydra_group_options(group: str) -> list[str]:
    """The options of a Hydra-side group such as ``hydra/launcher`` (plug-ins included)."""
    return sorted(_loader(str(config_dir())).get_group_options(group))


def compose_raw(
    overrides: list[str], return_hydra_config: bool = False, *, cfg_dir=None, config_name: str = "config"
) -> DictConfig:
    """One Hydra composition (unresolved; Hydra's own errors) of ``configs/config.yaml``, or
    of ``config_name`` in ``cfg_dir`` (another config tree, e.g. the testbed's; the policy is
    completed only in the main tree)."""
    from hydra.types import RunMode

    main = cfg_dir is None
    cfg = _loader(str(config_dir() if main else cfg_dir)).load_configuration(
        config_name=config_name, overrides=list(overrides), run_mode=RunMode.RUN, from_shell=False
    )
    if main:
        check_fit_files(cfg)
        check_group_choices_kept(cfg, overrides)
        drop_evacuation_presets(cfg)
    if not return_hydra_config and "hydra" in cfg:
        with open_dict(cfg):
            del cfg["hydra"]
    if main:
        complete_policy(cfg)
    return cfg


#: the first line of a FIT file's ``#| lmt_fit:`` block (:mod:`lmtoolkit.logs.fitfile`)
_FIT_BLOCK = re.compile(r"^#\| lmt_fit:", re.MULTILINE)


def chosen_options(cfg: DictConfig) -> list[tuple[str, str, Path]]:
    """(group, option, file) of every group option the composition took from a file, as Hydra
    records them (``hydra.runtime.choices`` and ``config_sources``, the first source holding an
    option being the one it used; ``fit/NAME.yaml`` on a ``hydra.searchpath`` directory too);
    files of ``file://`` sources only."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    sources = OmegaConf.select(cfg, "hydra.runtime.config_sources", default=None) or []
    roots = [Path(str(s.get("path"))) for s in sources if s.get("schema") == "file" and s.get("path")]
    out = []
    for group, option in (choices or {}).items():
        if not isinstance(option, str) or str(group).startswith("hydra"):
            continue
        for root in roots:
            f = root / str(group) / f"{option}.yaml"
            if f.is_file():
                out.append((str(group), option, f))
                break
    return out


def chosen_files(cfg: DictConfig) -> list[Path]:
    """The config files the composition took its group options from (:func:`chosen_options`)."""
    return [f for _, _, f in chosen_options(cfg)]


def check_fit_files(cfg: DictConfig) -> None:
    """A FIT file composed as a config group option (``lmtk run hydra.searchpath=[file://DIR]
    +fit=NAME``, ``lmtk sweep`` likewise) is checked as ``lmtk whatif`` checks it
    (:func:`lmtoolkit.logs.fitfile.read_fit`): Hydra reads the YAML only, and a FIT file cut
    off before its sections' end (its end marker is a comment) ran with the defaults of what
    it lost — 269.7 ms for a 5.29 s run, exit 0."""
    for f in chosen_files(cfg):
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if _FIT_BLOCK.search(text):
            from .logs.fitfile import read_fit

            read_fit(f)


#: the line that marks a ``lmtk whatif`` cell's FIT variant: it carries the observed run's
#: policy settings into a swapped policy on purpose (:mod:`lmtoolkit.logs.whatif`)
WHATIF_VARIANT = "#| lmt_whatif_variant: the observed run's settings carried into swapped groups"

#: groups whose ``_global_`` files may set other groups' keys on purpose: ``debug`` shrinks any
#: run (its ``vm.memory_gib: 1`` is its point), ``local`` is the user's own site file
_OVERRIDING_GROUPS = ("debug", "local")


def global_body(f) -> tuple[str, dict | None]:
    """``(text, body)`` of a config file: its YAML body where it is a ``# @package _global_``
    file (not a what-if variant), else None."""
    try:
        text = f.read_text(errors="replace")
    except OSError:
        return "", None
    if WHATIF_VARIANT in text or not re.search(r"^#\s*@package\s+_global_\b", text, re.MULTILINE):
        return text, None
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError:
        return text, None
    return text, body if isinstance(body, dict) else None


def drop_evacuation_presets(cfg: DictConfig) -> None:
    """A ``debug``/``local`` file's ``evacuation:`` section (``debug=default``'s
    ``shrink_to_gib``) applies to evacuations only: in a config of migrations whose
    ``evacuation`` node is that section and nothing else, the node is removed (anything more,
    an override or a file's group, is left to :func:`_check_evacuation_read` to refuse)."""
    if task_of(cfg) == "evacuation" or not isinstance(cfg.get("evacuation"), DictConfig):
        return
    preset = {}
    for group, _, f in chosen_options(cfg):
        body = global_body(f)[1] if group in _OVERRIDING_GROUPS else None
        if body and isinstance(body.get("evacuation"), dict):
            preset.update(body["evacuation"])
    if preset and OmegaConf.to_container(cfg.evacuation, resolve=False) == preset:
        with open_dict(cfg):
            del cfg["evacuation"]


def _leaves(d: dict, prefix: str) -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}.{k}"
        out.extend(_leaves(v, key) if isinstance(v, dict) else [(key, v)])
    return out


def leaf_items(d: dict) -> list[tuple[str, object]]:
    """``(dotted key, value)`` of every leaf of a plain config tree (``paths.results_dir``)."""
    return [(k[1:], v) for k, v in _leaves(d, "")]


def check_group_choices_kept(cfg: DictConfig, overrides: list[str]) -> None:
    """A group option chosen on the command line (``network=10gbe``) whose keys a ``_global_``
    file later in the composition sets (an experiment's ``vm: {memory_gib: 4}``, a FIT file's
    whole ``vm``/``workload``/``network``/``host``/``policy``) is refused: Hydra merges that
    file last, so the run was not the option chosen while the overrides said it was
    (``experiment=auto_converge vm=large`` ran 4 GiB, not 64; ``+fit=NAME policy=vmware`` ran
    the fitted QEMU-like run, same config hash as without it).  A key the user sets as well
    (``vm.memory_gib=64``) is theirs, and ``debug``/``local`` files override on purpose."""
    chosen = {}
    explicit = set()
    for o in overrides:
        prefix, key, value = split_override(o)
        if "." in key or "/" in key:
            explicit.add(key)
        elif key in GROUPS and key not in ("experiment", "debug", "local", "hydra", "paths", "sweep"):
            if "~" not in prefix:
                chosen[key] = value
    if not chosen:
        return
    for group, option, f in chosen_options(cfg):
        if group in _OVERRIDING_GROUPS or group in chosen:
            continue
        text, body = global_body(f)
        if not body:
            continue
        fit = bool(_FIT_BLOCK.search(text))
        for g, opt in chosen.items():
            node = body.get(g)
            if not isinstance(node, dict):
                continue
            taken = [(k, v) for k, v in _leaves(node, g) if k not in explicit]
            if not taken:
                continue
            k, v = taken[0]
            more = f" (and {len(taken) - 1} more {g} keys)" if len(taken) > 1 else ""
            what = "the FIT file" if fit else f"{group} '{option}'"
            todo = (
                f"for a what-if of the fitted run use `lmtk whatif {f} {g}={opt}` (it applies the "
                "what-if rules), or set the keys themselves"
                if fit
                else f"set the keys themselves ({k}=...) or leave {g}={opt} out"
            )
            raise ConfigError(
                g,
                opt,
                "",
                message=f"{g}={opt}: {what} ({f}) sets {k}={v!r}{more} after the option is "
                f"chosen, so the run would not be {g} '{opt}'; {todo}",
            )


#: keys their group's files leave unset (null when absent): ``evacuation.shrink_to_gib``, which
#: ``debug=default`` sets and ``lmtk evacuate``'s ``+evacuation=default``, merged after it, would reset
UNSET_KEYS = ("evacuation.shrink_to_gib",)


def _as_hydra(o: str) -> list[str]:
    """What Hydra is given for one override.

    ``policy.KEY=V`` -> ``++policy.KEY=V`` (policy YAMLs list only non-default keys), and so
    for the keys of :data:`UNSET_KEYS`;
    ``sweep.axes.DIM.values=V`` replaces the values whatever their form (a list, or the
    generated ``{start, stop, num, log}``), which Hydra would otherwise try to merge.
    """
    prefix, key, value = split_override(o)
    if prefix:
        return [o]
    if (key.startswith("policy.") and key.count(".") == 1) or key in UNSET_KEYS:
        return ["++" + o]
    parts = key.split(".")
    if len(parts) == 4 and parts[:2] == ["sweep", "axes"] and parts[3] == "values":
        return [f"~{key}", f"+{key}={value}"]
    return [o]


#: groups whose option may be null (the root config's default for them)
NULL_GROUPS = ("experiment", "debug")


def clean_overrides(overrides: list[str]) -> list[str]:
    """The overrides as composition takes them: each of the form key=value (one error
    otherwise); ``experiment=null`` / ``debug=null`` (the root config's own defaults) left out
    with any earlier option of that group,
    and a null option of another group refused (Hydra's answer was a ValueError traceback)."""
    kept = []
    for o in overrides:
        if "=" not in o and not (o.startswith("~") and len(o) > 1):  # (~key deletes a key)
            raise ConfigError(o, None, "", message=f"override '{o}' is not of the form key=value")
        prefix, key, value = split_override(o)
        if not key:
            raise ConfigError(o, None, "", message=f"override '{o}' names no key: key=value")
        if "." not in key and key in GROUPS and value == "null" and not prefix:
            if key in NULL_GROUPS:  # (and an earlier option of the group is undone)
                kept = [k for k in kept if split_override(k)[1] != key]
                continue
            opts = group_options(key)
            need = f"available: {', '.join(opts)}" if opts else f"~{key} leaves it out"
            raise ConfigError(key, value, "", message=f"{key}=null: {key} needs an option ({need})")
        kept.append(o)
    return kept


def _check_sweeps(overrides: list[str]) -> None:
    """A Hydra sweep (``vm.memory_gib=1,2``, ``network=1gbe,10gbe``, ``seed=range(3)``) in one
    composition is one line saying how to sweep it: Hydra's own answer was "Ambiguous value
    ... use key=[value1,value2]" (a list value, which ``vm.memory_gib`` is not) or "requires
    --multirun", and a group's comma list was "unknown network '1gbe,10gbe'"."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    maybe = [o for o in overrides if not is_hydra_override(o) and ("," in o or "(" in o)]
    if not maybe:
        return
    parser = OverridesParser.create()
    for o in maybe:
        try:
            (ov,) = parser.parse_overrides([o])
        except HydraException:
            continue  # not a sweep: composition words what is wrong with it
        if not ov.is_sweep_override():
            continue
        key, value = ov.get_key_element(), split_override(o)[2]
        try:
            values = ", ".join(ov.sweep_string_iterator())
        except HydraException:  # an interval(): no list of values
            values = "..."
        raise ConfigError(
            key,
            value,
            "",
            message=f"{key}={value} sweeps several values: use lmtk sweep -m (a Hydra multirun) or "
            f"an axis +sweep.axes.NAME={{key: {key}, values: [{values}]}}",
        )


def _check_groups(groups: list[str]) -> None:
    for o in groups:
        _, key, value = split_override(o)
        opts = group_options(key)
        if key in ("hydra", "local") or value in ("null",):
            continue
        if value == "":
            raise ConfigError(
                key, value, "", message=f"{key}= needs an option: {key}=NAME (available: {', '.join(opts)})"
            )
        if opts and value not in opts:
            close = difflib.get_close_matches(value, opts, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                key, value, "", message=f"unknown {key} '{value}'{hint} (available: {', '.join(opts)})"
            )


def _yaml_error(groups: list[str], e: Exception) -> ConfigError:
    """Name the config file that does not parse."""
    for o in ["config=config", *groups]:
        _, key, value = split_override(o)
        path = config_dir() / ("config.yaml" if key == "config" else f"{key}/{value}.yaml")
        if path.is_file():
            try:
                yaml.safe_load(path.read_text())
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                what = getattr(err, "problem", None) or first_line(err)
                return ConfigError(key, value, "", message=f"{path} is not valid YAML{where}: {what}")
    return ConfigError("config", None, "", message=f"a config file is not valid YAML: {first_line(e)}")


def _is_evacuation_key(key: str) -> bool:
    return key == "evacuation" or key.startswith("evacuation.")


def _evacuation_elsewhere(o: str, runs: str) -> ConfigError:
    """The error for an ``evacuation`` override where no evacuation runs: ``runs`` says what
    the config runs instead."""
    prefix, key, value = split_override(o)
    clean = f"{key}={value}"
    what = "the evacuation group" if key == "evacuation" else "an evacuation key"
    return ConfigError(
        key,
        value,
        "",
        message=f"{o}: {what} is read by host evacuations only: lmtk evacuate {clean} (or an experiment "
        f"with task: evacuation, e.g. lmtk sweep experiment=evacuation_order {clean}); {runs}",
    )


def _explain(overrides: list[str], groups: list[str], values: list[str], err: Exception) -> ConfigError:
    """Word a failed composition as one line (composes the groups alone to find the bad key)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, yaml.YAMLError):
        return _yaml_error(groups, err)
    # an evacuation key or option where the config has no evacuation group (lmtk run
    # evacuation=gigabit: Hydra's answer was to append it with +, which lmtk run then ignored)
    plain = [o for o in overrides if not split_override(o)[0] and _is_evacuation_key(split_override(o)[1])]
    if plain:
        try:
            base = compose_raw([g for g in groups if g not in plain])
        except (HydraException, OmegaConfBaseException, yaml.YAMLError):
            base = None
        if base is not None and "evacuation" not in base:
            return _evacuation_elsewhere(
                plain[0],
                "this config has no evacuation to read it (lmtk run and lmt.simulate run one migration)",
            )
    try:
        base = compose_raw(groups)
    except yaml.YAMLError as e:
        return _yaml_error(groups, e)
    except (HydraException, OmegaConfBaseException) as e:
        return ConfigError("overrides", groups, "", message=first_line(e))
    valid = leaf_keys(base)
    for o in values:
        prefix, key, _ = split_override(o)
        if prefix or key.startswith(("policy.", "hydra.")):  # hydra.*: Hydra's own (a search path)
            continue
        if OmegaConf.select(base, key, default="__missing__") == "__missing__":
            close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            # a new key is only ever right for what a sweep names itself (its axes, its name)
            add = (
                f" (use +{key}=... to add a new key)"
                if key.startswith("sweep.axes.") or key == "sweep.name"
                else ""
            )
            return ConfigError(key, None, "", message=f"unknown key '{key}'{hint}{add}")
    for o in values:  # a mapping given for a list, or the other way round
        prefix, key, value = split_override(o)
        node = OmegaConf.select(base, key, default=None)
        try:
            given = yaml.safe_load(value)
        except yaml.YAMLError:
            continue
        if isinstance(node, ListConfig) and not isinstance(given, list):
            return ConfigError(key, value, LIST_ALLOWED)
        if isinstance(node, DictConfig) and not isinstance(given, dict):
            return ConfigError(key, value, MAPPING_ALLOWED)
    return ConfigError("overrides", overrides, "", message=first_line(err))


def _check_top_level(cfg: DictConfig) -> None:
    for k in cfg.keys():
        if k not in TOP_LEVEL:
            close = difflib.get_close_matches(str(k), TOP_LEVEL, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                str(k),
                cfg.get(k),
                "",
                message=f"unknown key '{k}'{hint}: lmtoolkit "
                f"reads only {', '.join(TOP_LEVEL)} at the top level",
            )
    task = cfg.get("task", "migration")
    if task not in TASKS:
        raise ConfigError("task", task, "one of " + ", ".join(TASKS))


def _check_evacuation_read(cfg: DictConfig, overrides: list[str]) -> None:
    """An ``evacuation`` group in a config of migrations (``lmtk run +evacuation=gigabit``)
    would be read by nothing: refused, naming the override that added it."""
    if task_of(cfg) != "migration" or "evacuation" not in cfg:
        return
    given = [o for o in overrides if _is_evacuation_key(split_override(o)[1])]
    runs = "this config runs task=migration (lmtk run, lmt.simulate: one migration per point), which would ignore it"
    if given:
        raise _evacuation_elsewhere(given[0], runs)
    raise ConfigError(
        "evacuation",
        None,
        "",
        message="the config has an evacuation group (from its config files) and runs task=migration, which "
        "reads no evacuation keys: set task: evacuation beside the group, or leave the group out",
    )


def policy_class(d, prefix: str = "policy") -> type:
    """The policy class a ``policy`` config selects: ``_target_`` (a plug-in) or ``name``."""
    from .policies import policy_class as select

    try:
        return select(d)
    except ConfigError as e:
        raise e.with_prefix(prefix) from None


def complete_policy(cfg: DictConfig) -> None:
    """Add the policy class's defaults for the keys its YAML leaves out (in place), so that
    every composed config — what the cache hashes and provenance records — lists every
    parameter the policy runs with.  A plug-in's config (``_target_``) drops ``name``: the
    class is the target, and a ``name: qemu`` left by the base option beside it named a policy
    that does not run (``lmtk run --cfg job policy._target_=…`` printed it)."""
    from .policies import class_defaults

    node = cfg.get("policy") if isinstance(cfg, DictConfig) else None
    if not isinstance(node, DictConfig):
        return
    sel = {k: node._get_node(k)._value() for k in ("name", "_target_") if k in node}
    defaults = class_defaults(policy_class(sel))  # its errors name policy._target_ / policy.name
    missing = {k: config_value(v) for k, v in defaults.items() if k not in node}
    drop_name = bool(sel.get("_target_")) and "name" in node
    if missing or drop_name:
        with open_dict(cfg):
            if drop_name:
                del node["name"]
            for k, v in missing.items():
                node[k] = v


def config_value(v):
    """A dataclass default as a config value (tuples -> lists, mappings -> dicts, numpy
    scalars -> Python)."""
    if isinstance(v, tuple):
        return [config_value(x) for x in v]
    if isinstance(v, Mapping):
        return {k: config_value(x) for k, x in v.items()}
    return v.item() if hasattr(v, "item") and not isinstance(v, (list, dict, str)) else v


def unknown_field(cls, key: str, value, prefix: str, owner: str = "") -> ConfigError:
    """The error for a key ``cls`` (a config dataclass) does not have, with the best hint."""
    from dataclasses import fields

    names = sorted(f.name for f in fields(cls))
    hint = ""
    if prefix == "policy":
        from .policies import POLICIES

        others = sorted(n for n, c in POLICIES.items() if key in {f.name for f in fields(c)})
        if others:
            hint = f"; it is a key of policy {', '.join(others)}"
    if not hint:
        close = difflib.get_close_matches(key, names, n=3)
        hint = f"; did you mean {', '.join(prefix + '.' + c for c in close)}?" if close else ""
    return ConfigError(
        f"{prefix}.{key}",
        value,
        "",
        message=f"unknown key '{prefix}.{key}'{owner}{hint} (valid: {', '.join(names)})",
    )


#: the keys of the ``sweep`` and ``paths`` groups (configs/sweep/default.yaml and
#: configs/paths/default.yaml, plus the sweep's ``name``): a key added to them (``+sweep.replicate=5``)
#: would be read by nothing
FIXED_KEYS = {
    "sweep": (
        "name",
        "axes",
        "replicates",
        "common_random_numbers",
        "max_values",
        "round_detail",
        "executor",
        "workers",
        "dask_address",
        "chunk_size",
        "format",
        "cache",
        "progress",
    ),
    "paths": ("results_dir", "data_dir"),
}


def _check_fixed_keys(cfg: DictConfig) -> None:
    for group, names in FIXED_KEYS.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        for k in node.keys():
            if k not in names:
                close = difflib.get_close_matches(str(k), names, n=3)
                hint = f"; did you mean {', '.join(group + '.' + c for c in close)}?" if close else ""
                raise ConfigError(
                    f"{group}.{k}",
                    node.get(k),
                    "",
                    message=f"unknown key '{group}.{k}'{hint} ({group} keys: {', '.join(names)})",
                )


def _check_paths(cfg: DictConfig) -> None:
    """``paths.*`` name directories: ``paths.results_dir=`` (or an empty ``$LMT_RESULTS_DIR``)
    had written ``runs/`` and ``<experiment>/`` into the current directory, and
    ``paths.results_dir=null`` into a directory named ``None``."""
    node = cfg.get("paths")
    if not isinstance(node, DictConfig):
        return
    for k in FIXED_KEYS["paths"]:
        v = node.get(k)
        if k in node and (v is None or isinstance(v, (bool, DictConfig, ListConfig)) or not str(v).strip()):
            env = " (an empty LMT_RESULTS_DIR sets it empty)" if k == "results_dir" else ""
            raise ConfigError(
                f"paths.{k}",
                v,
                "a directory name (relative to the current directory unless absolute); "
                f"leave it out for the default{env}",
            )


#: the key of a sweep axis over policy classes (``sweep.axes.pol: {key: policy._target_, …}``)
CLASS_KEY = "policy._target_"
#: the keys of sweep axes that choose the policy's class: over plug-in classes, or over the
#: ``policy`` group's options (``{key: policy, values: [vmware, hyperv]}``)
POLICY_AXIS_KEYS = (CLASS_KEY, "policy")


def sweeps_policy(cfg: DictConfig) -> bool:
    """Does ``cfg`` declare a sweep axis that chooses the policy (:data:`POLICY_AXIS_KEYS`)?"""
    axes = OmegaConf.select(cfg, "sweep.axes")
    return isinstance(axes, DictConfig) and any(
        isinstance(spec, DictConfig) and spec.get("key") in POLICY_AXIS_KEYS for spec in axes.values()
    )


def _check_policy_keys(cfg: DictConfig) -> None:
    """A ``policy.*`` key the selected class does not have is an unknown key — except under a
    sweep axis that chooses the policy (a group or class axis): the base option's class does
    not run there, and each option or class of the axis is checked against the keys set for
    it when the sweep lays out its points (:func:`lmtoolkit.sweep.plan.expand_plan`;
    ``policy.cap=5`` for classes that all have ``cap`` was "unknown key 'policy.cap' for
    policy 'qemu'", and so was ``policy.max_passes=3`` under an axis over ``[hyperv,
    hyperv_2008r2]``, while ``policy=hyperv`` as the base is refused as swept)."""
    from dataclasses import fields

    node = cfg.get("policy")
    if not isinstance(node, DictConfig) or sweeps_policy(cfg):
        return
    d = OmegaConf.to_container(node, resolve=True)
    cls = policy_class(d)
    names = {f.name for f in fields(cls)} | {"name", "_target_"}
    for k in d:
        if k not in names:
            raise unknown_field(cls, k, d[k], "policy", owner=f" for policy '{cls.name}'")


def local_file(overrides: Iterable[str] = ()) -> Path | None:
    """The file of group ``local`` a composition of ``overrides`` merges last: this machine's
    ``configs/local/default.yaml`` (``optional local: default`` in ``config.yaml``), another
    with ``local=NAME``, none with ``~local`` or where there is no such file."""
    option = "default"
    for o in overrides:
        prefix, key, value = split_override(str(o))
        if key == "local":
            option = None if "~" in prefix else (value or None)
    f = config_dir() / "local" / f"{option}.yaml" if option else None
    return f if f is not None and f.is_file() else None


def shown_path(path: Path) -> str:
    """``path`` relative to the project root (``configs/local/default.yaml``) if under it."""
    root = config_dir().parent
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def hydra_overrides(overrides: list[str]) -> list[str]:
    """The overrides as Hydra is given them (see :func:`_as_hydra`)."""
    return [h for o in overrides for h in _as_hydra(o)]


def compose(overrides: Iterable[str] | str | None = ()) -> DictConfig:
    """Compose ``configs/config.yaml`` with Hydra ``overrides`` (a list, or one string).

    Returns the resolved config.  Raises :class:`ConfigError` with one line naming the key,
    the value and what is allowed.  One Hydra composition unless the input is bad.
    """
    return compose_both(overrides)[1]


def compose_both(overrides: Iterable[str] | str | None = ()) -> tuple[DictConfig, DictConfig]:
    """(unresolved, resolved) config from one composition: sweeps set axis values on the
    unresolved one, so that keys interpolated from a swept key follow it."""
    import copy

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = clean_overrides(as_overrides(overrides))
    _check_sweeps(overrides)
    groups, values = [], []
    for o in overrides:
        _, key, _ = split_override(o)
        (groups if "." not in key and key in GROUPS else values).append(o)
    _check_groups(groups)
    try:
        raw = compose_raw(hydra_overrides(overrides))
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as e:
        raise _explain(overrides, groups, values, e) from None
    cfg = copy.deepcopy(raw)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError("overrides", overrides, "", message=first_line(e)) from None
    _check_top_level(cfg)
    _check_evacuation_read(cfg, overrides)
    _check_fixed_keys(cfg)
    _check_paths(cfg)
    _check_policy_keys(cfg)
    return raw, cfg


def hydra_value(v) -> str:
    """A Python value in Hydra's override grammar: ``True`` -> ``true``, ``None`` -> ``null``,
    numbers as numbers (numpy's too), a list -> ``[a,b]``, a string bare when it is a plain
    word or number, else quoted."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return repr(float(v))
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    s = str(v)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*|[0-9][A-Za-z0-9_.]*", s):
        return s
    return "'" + s.replace("'", "\\'") + "'"


def as_overrides(overrides) -> list[str]:
    """A list of override strings from a list/tuple, one string, a mapping ``{key: value}``
    (``{"vm.memory_gib": 4, "policy": "xen", "policy.xbzrle": True}``), or None (none)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return overrides.split() if overrides.strip() else []
    if isinstance(overrides, DictConfig):
        raise ConfigError(
            "overrides", "a DictConfig", "", message="pass a composed config as cfg=, not as overrides"
        )
    if isinstance(overrides, Mapping):
        return [f"{k}={hydra_value(v)}" for k, v in overrides.items()]
    try:
        out = [str(o) for o in overrides]
    except TypeError:
        raise ConfigError("overrides", overrides, "a list of 'key=value' strings") from None
    return out


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (``hydra`` and ``paths`` left out: they do not change results)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("hydra", "paths"):
        c.pop(k, None)
    return OmegaConf.to_yaml(OmegaConf.create(c), sort_keys=True)


def task_of(cfg: DictConfig) -> str:
    return str(cfg.get("task", None) or "migration")
