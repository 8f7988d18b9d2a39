"""Configs to objects — the only place that does it.

:func:`~lmtoolkit.compose.compose` turns Hydra overrides into a resolved config (one
composition, one clear error for a bad key or value); :func:`build_scenario` turns a config
into a :class:`~lmtoolkit.scenario.Scenario`, :func:`build_evacuation` into an
:class:`~lmtoolkit.model.evacuation.Evacuation`.
"""

from __future__ import annotations

import copy
import dataclasses
from contextvars import ContextVar
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from .compose import GROUPS, TASKS, compose, policy_class, split_override, task_of, unknown_field  # noqa: F401
from .errors import ConfigError, check_list, check_mapping, check_range
from .model import VM, Host, Network
from .model.checks import check_number
from .model.energy import Power
from .model.evacuation import Evacuation, HostLink, VmSpec, check_links_above
from .model.storage import Storage
from .model.workload import WORKLOADS, PhasedWorkload, TraceWorkload
from .paths import project_root
from .scenario import Scenario


def _as_dict(node) -> dict:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node or {})


def _build(cls, cfg: dict, prefix: str, owner: str = ""):
    """``cls(**cfg)`` with one clear error for an unknown key or a bad value (key prefixed)."""
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    unknown = [k for k in cfg if k not in names]
    if unknown:
        raise unknown_field(cls, unknown[0], cfg[unknown[0]], prefix, owner)
    try:
        return cls(**cfg)
    except ConfigError as e:
        raise e.with_prefix(prefix) from None
    except TypeError as e:
        raise ConfigError(prefix, cfg, "", message=f"{prefix}: {e}") from None


#: input files a sweep's chunk brought along (name as written -> (the driver's path, bytes or
#: None: no file)): set while a chunk runs (:func:`lmtoolkit.sweep.execute.run_chunk`), so a
#: worker simulates the bytes the driver hashed and never opens the name on its own disk
SHIPPED_INPUTS: ContextVar[dict | None] = ContextVar("lmt_shipped_inputs", default=None)


def resolve_input_path(path, root: Path | None = None) -> Path:
    """A relative input file (a trace): under ``root`` (default: the current directory) if it
    is there, else under the project root."""
    p = Path(path)
    if p.is_absolute():
        return p
    base = root or Path.cwd()
    return base / p if (base / p).exists() else project_root() / p


def build_workload(cfg, prefix: str = "workload", root: Path | None = None):
    d = _as_dict(cfg)
    name = d.pop("name", None)
    if name not in WORKLOADS:
        raise ConfigError(f"{prefix}.name", name, "one of " + ", ".join(sorted(WORKLOADS)))
    cls = WORKLOADS[name]
    if cls is PhasedWorkload:
        phases = d.pop("phases", None) or []
        if not isinstance(phases, (list, tuple)) or not all(isinstance(p, dict) for p in phases):
            raise ConfigError(
                f"{prefix}.phases",
                phases,
                "a list of workloads, e.g. [{name: uniform, dirty_rate_pages_s: 1000}]",
            )
        subs = []
        for i, p in enumerate(phases):
            p = dict(p)
            # the phased workload's pattern is its phases' default; a trace has none (its file
            # states where its writes fell): handing it one refused every trace phase
            if WORKLOADS.get(p.get("name")) is not TraceWorkload:
                p.setdefault("pattern", d.get("pattern", "random"))
            subs.append(build_workload(p, f"{prefix}.phases[{i}]", root))
        d.pop("pattern", None)
        durations = d.pop("durations_s", ()) or ()
        if not isinstance(durations, (list, tuple)):
            raise ConfigError(f"{prefix}.durations_s", durations, "a list of seconds, one per phase")
        return _build(cls, dict(phases=tuple(subs), durations_s=tuple(durations), **d), prefix)
    if cls is TraceWorkload:
        from .trace.format import load_trace

        path = d.pop("file", None)
        for k in d:  # the trace states its writes: any other key would be dropped unseen
            raise ConfigError(
                f"{prefix}.{k}",
                d[k],
                "",
                message=(
                    f"{prefix}.{k}={d[k]} would have no effect: a trace workload replays the writes "
                    f"its file recorded (rate, working set and pattern included); its only key is "
                    f"{prefix}.file"
                ),
            )
        if not path or not isinstance(path, str):
            raise ConfigError(f"{prefix}.file", path, "the path of a trace file (.npz)")
        shipped = SHIPPED_INPUTS.get()
        if shipped is not None:  # a sweep's chunk: the bytes its driver read and hashed
            if path not in shipped:  # (every `file` of the chunk's configs is shipped)
                raise RuntimeError(f"{prefix}.file={path!r} was not shipped with the chunk")
            p, data = shipped[path]
            if data is None:
                raise ConfigError(f"{prefix}.file", path, "an existing trace file")
            tr = load_trace(p, key=f"{prefix}.file", data=data)
        else:
            p = resolve_input_path(path, root)
            try:
                tr = load_trace(p, key=f"{prefix}.file")
            except FileNotFoundError:
                raise ConfigError(f"{prefix}.file", path, "an existing trace file") from None
        return _build(
            cls,
            dict(
                interval_s=tr["interval_s"],
                counts=tuple(int(c) for c in tr["counts"]),
                pages=tr["pages"],
                source=str(p),
                page_size_kib=int(tr.get("page_size_kib", 4)),
            ),
            prefix,
        )
    return _build(cls, d, prefix)


def build_policy(cfg, prefix: str = "policy"):
    d = _as_dict(cfg)
    cls = policy_class(d, prefix)
    d.pop("_target_", None)
    d.pop("name", None)
    return _build(cls, d, prefix, owner=f" for policy '{cls.name}'")


def build_scenario(cfg: DictConfig) -> Scenario:
    """The one place where a config becomes objects."""
    vm = _build(VM, _as_dict(cfg.vm), "vm")
    network = _build(Network, _as_dict(cfg.network), "network")
    host = _build(Host, _as_dict(cfg.host), "host")
    workload = build_workload(cfg.workload)
    policy = build_policy(cfg.policy)
    storage = _build(Storage, _as_dict(cfg.get("storage") or {}), "storage")
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError("seed", seed, "a non-negative integer")
    return Scenario(
        vm=vm,
        workload=workload,
        network=network,
        host=host,
        policy=policy,
        engine=str(cfg.get("engine", "page")),
        seed=seed,
        storage=storage,
    )


def build_power(cfg: DictConfig) -> Power:
    """The ``power`` group -> :class:`~lmtoolkit.model.energy.Power` (migration energy)."""
    return _build(Power, _as_dict(cfg.get("power") or {}), "power")


#: top-level keys each VM of ``evacuation.vms`` may set for itself: key -> the VM's field
PER_VM_KEYS = {
    "vm.memory_gib": "memory_gib",
    "workload.dirty_rate_pages_s": "dirty_rate_pages_s",
    "workload.wss_mib": "wss_mib",
}
#: the ``network`` keys an evacuation reads (its line rate is the hosts' links)
EVACUATION_NETWORK_KEYS = tuple(f.name for f in dataclasses.fields(Network) if f.name != "bandwidth_gbit_s")
#: the ``vm`` keys an evacuation reads (each VM's memory is its own)
EVACUATION_VM_KEYS = tuple(f.name for f in dataclasses.fields(VM) if f.name != "memory_gib")
_LINKS = (
    "each migration runs at most at the slower of its two hosts' links, evacuation.source.link_gbit_s "
    "and evacuation.destinations[i].link_gbit_s (evacuation=gigabit: 1 GbE hosts)"
)


def check_link_rate_unset(cfg: DictConfig) -> None:
    """An evacuation's line rates are its hosts' links: ``network.bandwidth_gbit_s`` is not
    read, and is refused away from its default (whatever set it: the key, a ``network``
    option, a site file, an experiment)."""
    default = {f.name: f.default for f in dataclasses.fields(Network)}["bandwidth_gbit_s"]
    value = OmegaConf.select(cfg, "network.bandwidth_gbit_s", default=default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != default:
        raise ConfigError(
            "network.bandwidth_gbit_s",
            value,
            "",
            message=f"network.bandwidth_gbit_s={value} is not read by an evacuation: {_LINKS}; set the links "
            f"there and leave network.bandwidth_gbit_s at its default, {default:g} (a network option of another "
            f"rate sets it too; the network keys an evacuation reads are {', '.join(EVACUATION_NETWORK_KEYS)})",
        )


def _vm_lists(cfg: DictConfig, overrides: list[str], axes) -> list[list]:
    """The ``evacuation.vms`` lists the points of a plan may have: the config's, and each
    option's of an axis over the ``evacuation`` group (unless ``evacuation.vms`` is given);
    None for one this cannot read (then a top-level VM key may be read)."""
    from .sweep.swap import group_option_node

    out = [OmegaConf.select(cfg, "evacuation.vms", default=None)]
    given = any(split_override(o)[1] == "evacuation.vms" for o in overrides)
    for a in axes:
        if a.group and a.key == "evacuation" and not given:
            for opt in a.values:
                node = group_option_node("evacuation", str(opt))
                out.append(None if node is None else node.get("vms"))
    return [list(v) if isinstance(v, (list, ListConfig)) else None for v in out]


def _every_vm_sets(lists: list, field: str) -> bool:
    """Does every VM of every list (:func:`_vm_lists`) set ``field`` itself?"""
    return all(vms and all(hasattr(v, "keys") and field in v for v in vms) for vms in lists)


def evacuation_unread_keys(cfg: DictConfig, overrides: list[str], axes=()) -> list[str]:
    """The top-level keys no point of an evacuation reads: ``network.bandwidth_gbit_s`` (the
    hosts' links are the line rates) and each key of :data:`PER_VM_KEYS` that every VM of
    ``evacuation.vms`` (of every option an axis swaps in) sets for itself.  Left out of what
    the result records (``lmt_config``): a ``vm.memory_gib: 1.0`` there (``debug=default``'s)
    read as the VMs' size though none ran at it."""
    lists = _vm_lists(cfg, overrides, axes)
    keys = [k for k, field in PER_VM_KEYS.items() if _every_vm_sets(lists, field)]
    return keys + ["network.bandwidth_gbit_s"]


def check_evacuation_overrides(overrides: list[str], cfg: DictConfig, axes=()) -> None:
    """Refuse, before anything runs, what an evacuation would not read (one
    :class:`ConfigError` naming the key, the value and where to set it instead):

    * ``vm.memory_gib``, ``workload.dirty_rate_pages_s``, ``workload.wss_mib`` (given or an
      axis's key) when every VM of ``evacuation.vms`` sets its own — a VM that leaves its
      field out takes the top-level key, which is then read;
    * a ``vm`` option (given or an axis) when every VM sets its own ``memory_gib``: its point,
      the guest's size, is not read;
    * a ``network`` option and ``network.bandwidth_gbit_s`` (given or an axis): the line
      rates are the hosts' links (:func:`check_link_rate_unset`).

    A ``workload`` option is read: it chooses every VM's write pattern (each VM's rate and
    working set replace the option's)."""
    lists = _vm_lists(cfg, overrides, axes)

    def every(field: str) -> bool:
        return _every_vm_sets(lists, field)

    def per_vm(field: str, key: str, shown: str, value) -> ConfigError:
        first = lists[0][0][field] if lists[0] else "..."
        return ConfigError(
            key,
            value,
            "",
            message=f"{shown} is not read by an evacuation: every VM of evacuation.vms sets its own {field} "
            f"(evacuation.vms[0].{field}={first}); set it per VM there, e.g. "
            f"'evacuation.vms=[{{name: a, {field}: {value}, count: 2}}, ...]' (a VM that leaves {field} "
            f"out takes {key})",
        )

    def option(group: str, opt) -> ConfigError:
        if group == "network":
            return ConfigError(
                "network",
                opt,
                "",
                message=f"network={opt}: an evacuation does not read a network option's line rate "
                f"(bandwidth_gbit_s): {_LINKS}; set the links there, and the network keys an evacuation "
                f"reads ({', '.join(EVACUATION_NETWORK_KEYS)}) one by one as network.KEY=VALUE",
            )
        return ConfigError(
            "vm",
            opt,
            "",
            message=f"vm={opt}: an evacuation does not read a vm option's size (memory_gib): every VM of "
            "evacuation.vms sets its own memory_gib; set the VMs' memory there (evacuation.vms[i].memory_gib), "
            f"and the vm keys an evacuation reads ({', '.join(EVACUATION_VM_KEYS)}) one by one as vm.KEY=VALUE",
        )

    given = [split_override(o) for o in overrides]
    for prefix, key, value in given:
        if "~" not in prefix and key in PER_VM_KEYS and every(PER_VM_KEYS[key]):
            raise per_vm(PER_VM_KEYS[key], key, f"{key}={value}", value)
    for a in axes:
        if not a.group and a.key in PER_VM_KEYS and every(PER_VM_KEYS[a.key]):
            raise per_vm(PER_VM_KEYS[a.key], a.key, f"sweep.axes.{a.dim} (key {a.key})", a.values[0])
        if not a.group and a.key == "network.bandwidth_gbit_s":
            raise ConfigError(
                f"sweep.axes.{a.dim}",
                a.key,
                "",
                message=f"sweep.axes.{a.dim}: key network.bandwidth_gbit_s is not read by an evacuation: {_LINKS}; "
                "sweep the links instead (an axis over the evacuation group, or over "
                "evacuation.source.link_gbit_s)",
            )
    for prefix, key, value in given:
        if "~" not in prefix and (key == "network" or (key == "vm" and every("memory_gib"))):
            raise option(key, value)
    for a in axes:
        if a.group and (a.key == "network" or (a.key == "vm" and every("memory_gib"))):
            e = option(a.key, a.values[0])
            raise ConfigError(f"sweep.axes.{a.dim}", a.values, "", message=f"sweep.axes.{a.dim}: {e.text()}")
    check_link_rate_unset(cfg)


def shrink_factor(ev: dict, default_gib: float) -> float:
    """What every VM's sizes are scaled by (at most 1): ``evacuation.shrink_to_gib`` (GiB; null
    = 1) over the largest VM's ``memory_gib`` (``default_gib``, the top-level
    ``vm.memory_gib``, for a VM that leaves it out; VMs with ``count: 0`` do not count).
    ``debug=default`` sets 1.0: the largest VM of a debug evacuation is 1 GiB, the others as
    much smaller as they were (their order by size stays)."""
    shrink = ev.get("shrink_to_gib")
    if shrink is None:
        return 1.0
    check_number("evacuation.shrink_to_gib", shrink)
    check_range("evacuation.shrink_to_gib", shrink, 0, None, lo_open=True, finite=True)
    sizes = [
        v.get("memory_gib", default_gib)
        for v in ev.get("vms") or []
        if isinstance(v, dict) and v.get("count", 1) != 0
    ]
    sizes = [float(m) for m in sizes if _is_real(m) and m > 0]  # (bad ones: the VM's own error)
    return min(1.0, float(shrink) / max(sizes)) if sizes else 1.0


def _is_real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _scaled(value, factor: float):
    """``value`` (GiB or MiB) times ``factor``; a value that is not a number as it is (its
    key's own error)."""
    return value * factor if factor != 1 and _is_real(value) else value


def _shrunk_workload(wl, factor: float):
    """The workload with its sizes (``wss_mib``, a hot set's ``hot_mib``) times ``factor``:
    a shrunk evacuation's VMs keep their working sets' share of memory."""
    if factor == 1:
        return wl
    sizes = {f: getattr(wl, f) * factor for f in ("wss_mib", "hot_mib") if _is_real(getattr(wl, f, None))}
    return dataclasses.replace(wl, **sizes) if sizes else wl


def build_evacuation(cfg: DictConfig):
    """Config with an ``evacuation`` group -> :class:`~lmtoolkit.model.evacuation.Evacuation`.

    Each VM of ``evacuation.vms`` is the config's scenario with its ``memory_gib``,
    ``dirty_rate_pages_s`` and ``wss_mib`` replaced (``count`` repeats it), its sizes scaled by
    :func:`shrink_factor` (``evacuation.shrink_to_gib``); the line rates are
    the hosts' links (``network.bandwidth_gbit_s`` is refused away from its default:
    :func:`check_link_rate_unset`).
    """
    ev = _as_dict(cfg.get("evacuation") or {})
    if not ev:
        raise ConfigError("evacuation", None, "an evacuation config (evacuation=default)")
    if str(cfg.get("engine", "fluid")) != "fluid":
        # the migrations' progress at each link rate comes from the fluid engine's tables
        # (concurrency.py); engine=page was recorded in the result and ran fluid
        raise ConfigError(
            "engine",
            str(cfg.get("engine")),
            "",
            message=f"engine={cfg.get('engine')} is not allowed for an evacuation: its migrations run on the "
            "fluid engine's progress tables over link rates (engine=fluid)",
        )
    check_link_rate_unset(cfg)
    known = {"order", "concurrency", "setup_s", "source", "destinations", "vms", "shrink_to_gib"}
    for k in ev:
        if k not in known:
            raise ConfigError(
                f"evacuation.{k}",
                ev[k],
                "",
                message=f"unknown key 'evacuation.{k}' (valid: {', '.join(sorted(known))})",
            )

    def host(d, key):
        d = check_mapping(key, d)
        try:
            return HostLink(
                name=str(d.pop("name")),
                link_gbit_s=d.pop("link_gbit_s"),
                free_gib=d.pop("free_gib", float("inf")),
                key=key,
                **d,
            )
        except KeyError as e:
            raise ConfigError(f"{key}.{e.args[0]}", None, "required (name, link_gbit_s)") from None
        except TypeError:
            raise ConfigError(key, d, "keys name, link_gbit_s, free_gib") from None

    source = host(ev.get("source"), "evacuation.source")
    dests = [
        host(d, f"evacuation.destinations[{i}]")
        for i, d in enumerate(check_list("evacuation.destinations", ev.get("destinations")))
    ]
    # the scenario the VMs share, its line rate the fastest host link (each migration gets the
    # slower of its two hosts' links: tasks.evacuation.simulate_evacuation), so the network's
    # own checks (background traffic below the line rate) are against a link that exists
    hosts = [source, *dests]
    bg = OmegaConf.select(cfg, "network.background_gbit_s", default=0.0)
    if isinstance(bg, (int, float)) and not isinstance(bg, bool):  # (else: the network's own error)
        check_links_above(hosts, bg)
    fastest = max(h.link_gbit_s for h in hosts)
    with_links = copy.deepcopy(cfg)
    with open_dict(with_links):
        with_links.network.bandwidth_gbit_s = fastest
    base = build_scenario(with_links)
    factor = shrink_factor(ev, base.vm.memory_gib)
    vms = []
    for i, v in enumerate(check_list("evacuation.vms", ev.get("vms"))):
        key = f"evacuation.vms[{i}]"
        v = check_mapping(key, v)
        count = v.pop("count", 1)
        check_number(f"{key}.count", count, integer=True)
        check_range(f"{key}.count", count, 0, 10**6)
        count = int(count)
        name = str(v.pop("name", f"vm{i}"))
        unknown = set(v) - {"memory_gib", "dirty_rate_pages_s", "wss_mib"}
        if unknown:
            k = sorted(unknown)[0]
            raise ConfigError(
                f"{key}.{k}", v[k], "one of name, count, memory_gib, dirty_rate_pages_s, wss_mib"
            )
        try:
            memory = _scaled(v.get("memory_gib", base.vm.memory_gib), factor)
            vm = dataclasses.replace(base.vm, memory_gib=memory)
            wl = _shrunk_workload(base.workload, factor)
            for f in ("dirty_rate_pages_s", "wss_mib"):
                if f in v:  # (a workload that takes none, idle, phased or trace, refuses it)
                    wl = dataclasses.replace(wl, **{f: _scaled(v[f], factor) if f == "wss_mib" else v[f]})
            scn = dataclasses.replace(base, vm=vm, workload=wl, engine="fluid")
        except ConfigError as e:
            if e.key == "hot_mib" and "wss_mib" in v:  # the VM's working set against the workload's
                raise ConfigError(  # hot set: it named evacuation.vms[i].hot_mib, not a VM key
                    f"{key}.wss_mib",
                    v["wss_mib"],
                    "",
                    message=f"{key}.wss_mib={v['wss_mib']} is not allowed with workload.hot_mib="
                    f"{getattr(base.workload, 'hot_mib', None)}: a VM's working set holds the workload's "
                    "hot set (a larger wss_mib, or another workload)",
                ) from None
            raise e.with_prefix(key) from None
        for c in range(count):
            vm_name = name if count == 1 else f"{name}-{c + 1}"
            if any(o.name == vm_name for o in vms):  # results are indexed by name: one would be lost
                raise ConfigError(
                    f"{key}.name",
                    vm_name,
                    "",
                    message=f"{key}.name: two VMs are named '{vm_name}' (a VM with count N is named "
                    f"NAME-1 … NAME-N): each VM needs its own name",
                )
            vms.append(VmSpec(vm_name, scn, key))
    if not vms and ev.get("vms"):
        raise ConfigError("evacuation.vms", list(ev.get("vms")), "at least one VM in all (every count is 0)")
    return Evacuation(
        source=source,
        destinations=tuple(dests),
        vms=tuple(vms),
        order=str(ev.get("order", "largest_first")),
        concurrency=ev.get("concurrency"),
        setup_s=ev.get("setup_s", 0.0),
        policy=base.policy,
        network=base.network,
    )
