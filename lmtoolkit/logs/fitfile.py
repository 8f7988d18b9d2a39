"""FIT.yaml: a fitted guest as a Hydra config file (``# @package _global_``).

The file is a config: its ``defaults`` pick the fitted workload shape and policy
(``override /workload: uniform``, ``override /policy: qemu``), and it sets every key of
``vm``, ``workload``, ``network``, ``host`` and ``policy`` to the observed run's settings and
the fitted values, plus ``engine``, ``title`` and ``description``.  Hydra finds it as an
option of a config group on a search path, so ``lmtk run`` uses it as it is::

    lmtk run hydra.searchpath=[file:///abs/DIR] +fit=NAME      # the file is DIR/fit/NAME.yaml

(the group is the file's directory name: ``lmtk fit`` writes ``<results>/fits/fit/<log>.yaml``
by default and prints the exact command).  ``lmtk whatif FIT.yaml [overrides]`` composes it
the same way (a copy in a temporary ``fit/`` directory), in one composition with the overrides.

What the fit found beyond the config — parameters with their bootstrap spread and samples,
the fit quality, the observed and fitted per-round trajectories — is kept in the file's
header as YAML in comment lines starting with ``#| `` (Hydra ignores comments; :func:`read_fit`
reads them back).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import ConfigError

#: config sections a FIT file sets
SECTIONS = ("vm", "workload", "network", "host", "policy")
#: the last line of a FIT file (its block says ``end_marker: true``): a file cut off before it
#: — a copy or a disk that ran out — is refused instead of read with defaults for what it lost
END_MARKER = "# end of FIT file (lmtk fit)"
#: the group options a FIT file picks in its defaults list
GROUP_DEFAULTS = ("workload", "policy")
BLOCK = "#| "
MAX_SAMPLES = 100
MAX_POINTS = 240


def _r(v, digits=6):
    """Round for the file (floats to ``digits`` significant digits; NaN -> None)."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_r(x, digits) for x in v]
    if isinstance(v, dict):
        return {k: _r(x, digits) for k, x in v.items()}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return None
        return float(f"{v:.{digits}g}")
    return v


def _samples_in_bounds(res, n: int) -> list:
    """The first ``n`` bootstrap samples, each value to 6 digits within its parameter's bounds
    (a sample at the working set's bound, the VM's 512.5078125 MiB, written as 512.508 made
    ``lmtk whatif`` refuse the FIT file)."""
    from .fit import _nice_in

    bounds = [(p.lo, p.hi) for p in res.params]
    return [[_nice_in(float(v), *b) for v, b in zip(row, bounds)] for row in res.samples[:n]]


def _decimate(t, y, n=MAX_POINTS):
    t, y = np.asarray(t, float), np.asarray(y, float)
    if t.size <= n:
        return t, y
    idx = np.unique(np.linspace(0, t.size - 1, n).round().astype(int))
    return t[idx], y[idx]


def fit_block(res) -> dict:
    """The machine-readable part of a fit (what :mod:`.whatif` and :mod:`.plot` read)."""
    from .. import __version__, provenance

    obs = res.obs
    iv, sd = res.interval(), res.stderr()
    params = {}
    for p in res.params:
        params[p.key] = {
            "value": res.values[p.key],
            "sd": sd[p.key],
            "p16": iv[p.key][0],
            "p84": iv[p.key][1],
            "lo": p.lo,
            "hi": p.hi,
            "units": p.units,
            "label": p.label,
        }
    n = min(res.samples.shape[0], MAX_SAMPLES)
    st, sr = _decimate(obs.sample_time, obs.sample_remaining)
    _, stt = _decimate(obs.sample_time, obs.sample_transferred)
    commit, dirty = provenance.git_state()
    return _r(
        {
            "log": {
                "source": str(res.log.attrs.get("source", "")),
                "format": res.log.attrs.get("lmt_log_format", ""),
                "label": res.log.attrs.get("lmt_label", ""),
                "status": res.log.attrs.get("lmt_status", ""),
            },
            "engine": res.engine,
            "pattern": res.pattern,
            "cap_factor": res.cap_factor,
            "overrides": list(res.overrides),
            "log_overrides": list(res.log_overrides),
            "params": params,
            "derived": dict(res.derived),
            "quality": dict(res.quality),
            "alternatives": dict(res.alternatives),
            "samples": {"keys": [p.key for p in res.params], "values": _samples_in_bounds(res, n)},
            "observed": {
                "sync": list(range(2, obs.syncs + 1)),
                "sync_lo": obs.lo.tolist(),
                "sync_hi": obs.hi.tolist(),
                "new_bytes": obs.dirty.tolist(),
                # the log's own total time; the fit matched it less the host stalls it cut out
                "total_time": obs.log_total_time if math.isfinite(obs.log_total_time) else obs.total_time,
                "total_time_stall_free": obs.total_time,
                "stall_at": [at for at, _ in obs.stalls],
                "stall_s": [cut for _, cut in obs.stalls],
                "downtime": obs.downtime,
                "transferred": obs.transferred,
                "completed": obs.completed,
                "converged": obs.converged,
                "setup_time": obs.setup_time,
                "sample_time": st.tolist(),
                "sample_remaining": sr.tolist(),
                "sample_transferred": stt.tolist(),
            },
            "fitted": {
                "sync_time": list(res.trajectory["sync_time"]),
                "new_bytes": list(res.trajectory["dirty"]),
                "remaining_t": list(res.trajectory["remaining_t"]),
                "remaining": list(res.trajectory["remaining"]),
            },
            "elapsed_s": res.elapsed_s,
            "lmtoolkit": __version__,
            "git_commit": commit,
            "created_at": provenance.now(),
            "end_marker": True,  # the file's last line is END_MARKER: a cut-off file is refused
        }
    )


def config_sections(cfg) -> dict:
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True)
    return {k: c[k] for k in SECTIONS if k in c}


def fit_text(res, path: Path) -> str:
    """The FIT file's text for a :class:`~.fit.FitResult`."""
    from omegaconf import OmegaConf

    secs = config_sections(res.cfg)
    label = res.log.attrs.get("lmt_label", "")
    src = res.log.attrs.get("source", "")
    head = [
        "# @package _global_",
        f"# The guest and run observed in {src}, fitted by `lmtk fit` (lmtoolkit.logs).",
        "# Use it:",
        f"#   lmtk whatif {path} network=10gbe policy=vmware ...   # what-ifs with bootstrap bands",
        f"#   {run_command(path)}",
        "#",
    ]
    head += ["# " + ln for ln in res.summary().splitlines()]
    head.append("#")
    block = yaml.safe_dump({"lmt_fit": fit_block(res)}, sort_keys=False, default_flow_style=None, width=100)
    head += [BLOCK + ln for ln in block.rstrip("\n").splitlines()]
    body = {
        "defaults": [{f"override /{g}": _option(g, secs[g])} for g in GROUP_DEFAULTS if g in secs],
        "title": f"fitted guest: {label}",
        "description": (
            f"fitted by lmtk fit from {src} ({res.log.attrs.get('lmt_log_format', '')}); "
            f"workload {res.cfg.workload.name} {res.pattern}, engine {res.engine}"
        ),
        "engine": str(res.cfg.engine),
    }
    body.update(secs)
    text = "\n".join(head) + "\n" + OmegaConf.to_yaml(OmegaConf.create(body))
    return text + END_MARKER + "\n"


def _option(group: str, section: dict) -> str:
    from ..paths import group_options

    name = str(section.get("name", ""))
    opts = group_options(group)
    if name in opts:
        return name
    raise ConfigError(
        group,
        name,
        "",
        message=f"the fitted {group} '{name}' has no config option configs/{group}/{name}.yaml",
    )


def write_fit(res, path) -> Path:
    """Write the FIT file atomically (:mod:`lmtoolkit.io`)."""
    from ..io import write_text

    path = Path(path)
    return write_text(path, fit_text(res, path))


def run_command(path) -> str:
    """The ``lmtk run`` command line that uses a FIT file where it is."""
    import shlex

    path = Path(path).resolve()
    group = path.parent.name
    if _usable_group(group) and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", path.stem):
        return "lmtk run " + shlex.join(
            [f"hydra.searchpath=[file://{path.parent.parent}]", f"+{group}={path.stem}"]
        )
    return (
        "lmtk run hydra.searchpath=[file://DIR] +fit=NAME   # after copying it to DIR/fit/NAME.yaml "
        "(NAME: letters, digits, _ - .)"
    )


def _usable_group(name: str) -> bool:
    from ..compose import GROUPS, TOP_LEVEL

    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)) and name not in GROUPS + TOP_LEVEL


@dataclass
class FitFile:
    path: Path
    config: dict  # the sections and top-level keys (no defaults)
    defaults: list
    fit: dict  # the ``#|`` block (lmt_fit)

    @property
    def params(self) -> dict:
        return self.fit.get("params", {})

    def samples(self) -> tuple[list[str], np.ndarray]:
        s = self.fit.get("samples") or {}
        keys = list(s.get("keys") or [])
        vals = np.array(s.get("values") or [], float).reshape(-1, len(keys)) if keys else np.zeros((0, 0))
        return keys, vals


def _a_log_instead(path: Path) -> ConfigError | None:
    """The error for a migration log given where a FIT file belongs (None: it does not read as
    one): ``lmtk whatif run.jsonl`` said "not valid YAML (expected '<document start>' …)"."""
    from .readers import read_log

    try:
        fmt = read_log(path).attrs.get("lmt_log_format", "")
    except Exception:  # noqa: BLE001 - not a log either: the FIT file's own error stands
        return None
    return ConfigError(
        "FIT",
        str(path),
        "",
        message=f"{path} looks like a migration log ({fmt}), not a FIT file: fit it first "
        f"(lmtk fit {path} --out FIT.yaml), then ask lmtk whatif FIT.yaml …",
    )


def read_fit(path, check_values: bool = True) -> FitFile:
    """Read a FIT file; a missing or damaged one is one :class:`ConfigError` naming it.

    ``check_values`` (the default; what ``lmtk whatif`` and ``lmtk run … +fit=NAME`` run):
    also refuse bootstrap samples that are not finite or lie outside their parameter's
    bounds (:func:`_check_samples`) and a config whose fitted values or stated settings differ
    from the block's (:func:`_check_body`: a hand edit)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            "FIT", str(path), "", message=f"{path}: no such file (write one with lmtk fit)"
        ) from None
    except (IsADirectoryError, UnicodeDecodeError, OSError) as e:
        raise _a_log_instead(path) or ConfigError(
            "FIT", str(path), "", message=f"{path}: cannot read it as a FIT file ({type(e).__name__})"
        ) from None
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise _a_log_instead(path) or ConfigError(
            "FIT",
            str(path),
            "",
            message=f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or 'parse error'})",
        ) from None
    block_lines = [ln[len(BLOCK) :] for ln in text.splitlines() if ln.startswith(BLOCK)]
    try:
        fit = (yaml.safe_load("\n".join(block_lines)) or {}).get("lmt_fit") or {}
    except (yaml.YAMLError, AttributeError):
        raise ConfigError(
            "FIT", str(path), "", message=f"{path}: the '#| lmt_fit' block is damaged"
        ) from None
    if (
        not isinstance(body, dict)
        or not any(k in body for k in SECTIONS)
        or not isinstance(fit, dict)
        or not fit
    ):
        raise _a_log_instead(path) or ConfigError(
            "FIT",
            str(path),
            "",
            message=f"{path}: not a FIT file written by lmtk fit "
            "(needs the config sections and the '#| lmt_fit' block)",
        )
    missing = [k for k in SECTIONS if k not in body]
    cut = fit.get("end_marker") is True and text.rstrip().splitlines()[-1].strip() != END_MARKER
    if missing or cut:  # a cut-off file ran with the defaults of what it lost (20x too short)
        raise ConfigError(
            "FIT",
            str(path),
            "",
            message=f"{path}: incomplete FIT file ("
            + (f"no {', '.join(missing)} section" if missing else f"its last line is not {END_MARKER!r}")
            + "): cut off? write it again with lmtk fit",
        )
    _check_block(fit, path)
    if check_values:
        _check_samples(fit, path)
        _check_body(fit, body, path)
    defaults = list(body.pop("defaults", []) or [])
    return FitFile(path=path, config=body, defaults=defaults, fit=fit)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers(v) -> bool:  # a list of numbers (null: a value the log did not give)
    return isinstance(v, list) and all(x is None or _number(x) for x in v)


def _texts(v) -> bool:  # a list of strings
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: the '#| lmt_fit' block's entries: what each must be (an absent one is left to its default)
_BLOCK = {
    "log": (
        lambda v: isinstance(v, dict) and _texts(list(v.values())),
        "a mapping of text",
    ),
    "engine": (lambda v: v in ("page", "fluid"), "page or fluid"),
    "pattern": (lambda v: isinstance(v, str), "text"),
    "cap_factor": (
        lambda v: _number(v) and 0.9 <= v <= 1.1,
        "a number in [0.9, 1.1] (lmtk fit keeps 0.9-1.1)",
    ),
    "overrides": (_texts, "a list of overrides"),
    "log_overrides": (_texts, "a list of overrides"),
    "params": (
        lambda v: (
            isinstance(v, dict)
            and all(
                isinstance(p, dict) and all(x is None or _number(x) or isinstance(x, str) for x in p.values())
                for p in v.values()
            )
        ),
        "a mapping of parameters",
    ),
    "derived": (lambda v: isinstance(v, dict), "a mapping"),
    "quality": (lambda v: isinstance(v, dict), "a mapping"),
    "alternatives": (lambda v: isinstance(v, dict), "a mapping"),
    "samples": (
        lambda v: (
            isinstance(v, dict)
            and _texts(v.get("keys", []))
            and isinstance(v.get("values", []), list)
            and all(_numbers(r) and len(r) == len(v.get("keys", [])) for r in v.get("values", []))
        ),
        "keys (parameter names) and values (rows of one number per key)",
    ),
    "observed": (
        lambda v: (
            isinstance(v, dict)
            and all(
                _numbers(x) if isinstance(x, list) else (x is None or _number(x) or isinstance(x, bool))
                for x in v.values()
            )
            and len({len(v.get(k, [])) for k in ("sync", "sync_lo", "sync_hi", "new_bytes")}) == 1
        ),
        "numbers, and as many sync_lo, sync_hi and new_bytes as syncs",
    ),
    "fitted": (lambda v: isinstance(v, dict) and all(_numbers(x) for x in v.values()), "lists of numbers"),
}


def _check_block(fit, path) -> None:
    """The '#| lmt_fit' block as :func:`fit_block` writes it: a hand-edited entry of another
    kind is one error naming it (it was a traceback, after the what-if's file was written)."""
    if not isinstance(fit, dict):
        raise ConfigError("FIT", str(path), "", message=f"{path}: the '#| lmt_fit' block is not a mapping")
    for key, (ok, what) in _BLOCK.items():
        if key in fit and not ok(fit[key]):
            raise ConfigError(
                "FIT",
                str(path),
                "",
                message=f"{path}: the '#| lmt_fit' block's {key} = {str(fit[key])[:60]} is not allowed: {what}",
            )
    keys = (fit.get("samples") or {}).get("keys", [])
    unknown = [k for k in keys if k not in (fit.get("params") or {})]
    if unknown:
        raise ConfigError(
            "FIT",
            str(path),
            "",
            message=f"{path}: the '#| lmt_fit' block's samples name {unknown[0]!r}, not a fitted parameter",
        )


def _check_samples(fit: dict, path) -> None:
    """Every bootstrap sample finite and within its parameter's bounds (``lo``, ``hi`` of the
    block's ``params``; :func:`_samples_in_bounds` writes them so): a negative write rate was
    a ValueError traceback in ``lmtk whatif`` (``fluid.from_columns``), a null one an error
    of the policy rules that did not name the file."""
    s = fit.get("samples") or {}
    keys, params = list(s.get("keys") or []), fit.get("params") or {}
    for n, row in enumerate(s.get("values") or [], start=1):
        for k, v in zip(keys, row):
            p = params.get(k) or {}
            lo, hi = p.get("lo"), p.get("hi")
            if v is None or not math.isfinite(v):
                why = "not a finite number"
            elif (_number(lo) and v < lo - 1e-9 * abs(lo)) or (_number(hi) and v > hi + 1e-9 * abs(hi)):
                why = (
                    "outside its bounds ["
                    + ", ".join(format(b, "g") if _number(b) else "-" for b in (lo, hi))
                    + "]"
                )
            else:
                continue
            raise ConfigError(
                "FIT",
                str(path),
                "",
                message=f"{path}: the '#| lmt_fit' block's bootstrap sample {n} has {k} = "
                f"{'null' if v is None else format(v, 'g')}: {why} "
                "(hand-edited? write it again with lmtk fit)",
            )


def _lookup(body: dict, key: str):
    """(found, value) of a dotted key in the FIT file's config."""
    node = body
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _same_value(a, b, rel: float = 1e-4) -> bool:
    """Config values equal: numbers within ``rel`` (the file keeps 6 digits, the cap is the
    stated one times the 6-digit cap factor), else equal as text (``true``/``True``)."""
    if _number(a) and _number(b):
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-12)
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    return str(a).strip().lower() == str(b).strip().lower()


def expected_values(fit: dict) -> list[tuple[str, object, str]]:
    """What ``lmtk fit`` wrote into the config, by the block: (key, value, where from) for
    each setting the log implies (``log_overrides``), each the user stated (``overrides``,
    composed after them: the user's wins), each fitted parameter (set last), a cap times
    ``cap_factor``, the engine."""
    from ..compose import split_override

    out = {}
    for entry, what in (
        ("log_overrides", "what the log states"),
        ("overrides", "a setting stated for the fit"),
    ):
        for o in fit.get(entry) or []:
            prefix, k, v = split_override(str(o))
            if "." not in k or "~" in prefix:
                continue  # a group option (policy=hybrid): its section says the rest; a deletion
            try:
                val = yaml.safe_load(v) if v.strip() else v
            except yaml.YAMLError:
                val = v
            out[k] = (val, what)
    factor = float(fit.get("cap_factor") or 1.0)
    cap = out.get("policy.max_bandwidth_mib_s")
    if cap is not None and _number(cap[0]):
        out["policy.max_bandwidth_mib_s"] = (float(cap[0]) * factor, cap[1])  # the cap QEMU kept
    for k, p in (fit.get("params") or {}).items():
        if isinstance(p, dict) and p.get("value") is not None:
            out[k] = (p["value"], "the fitted value")
    if fit.get("engine") in ("page", "fluid"):
        out["engine"] = (fit["engine"], "the fit's engine")
    return [(k, v, what) for k, (v, what) in out.items()]


def _check_body(fit: dict, body: dict, path) -> None:
    """The config as ``lmtk fit`` wrote it (:func:`expected_values`): a hand-edited fitted
    value or stated setting ran as the observed run — ``lmtk whatif`` labelled it "as observed
    (fitted)" with the old fit's bootstrap band (a write rate edited 10077 -> 5000, a 4 GiB
    guest for the 0.5 GiB one the log states).  Refused, naming the key: an override says the
    same and runs as a variant of the fit, named, without a band for what it replaces.  Keys
    the block does not record (``policy.iteration_ms``) may be edited."""
    expected = expected_values(fit)
    pat = fit.get("pattern")
    wl = body.get("workload") if isinstance(body.get("workload"), dict) else {}
    if isinstance(pat, str) and "pattern" in wl:
        expected.append(("workload.pattern", pat, "the fitted pattern"))
    for key, want, what in expected:
        found, have = _lookup(body, key)
        if found and _same_value(have, want):
            continue
        shown = f"{have}" if found else "missing"
        raise ConfigError(
            "FIT",
            str(path),
            "",
            message=(
                f"{path}: {key} is {shown} in its config but {want} in its '#| lmt_fit' block ({what}): "
                "edited after lmtk fit wrote it, it would run as the observed run with the fit's bands; give "
                f"the change as an override after the FIT file instead ({key}=VALUE: a variant, named, without "
                "the fit's band for it), or fit the log again"
            ),
        )
