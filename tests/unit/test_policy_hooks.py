"""The policy registry, the base-class hooks and the profile helper (issue 10)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lmtoolkit.errors import ConfigError
from lmtoolkit.model import UniformWorkload
from lmtoolkit.policies import (
    POLICIES,
    HybridPolicy,
    HypervPolicy,
    Policy,
    PostcopyPolicy,
    PrecopyPolicy,
    QemuPolicy,
    StopCopyPolicy,
    VmwarePolicy,
    XenPolicy,
    policy_class,
    policy_fields,
)
from lmtoolkit.records import REASON_CODE, STOP_REASONS
from tests.conftest import run, scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUILT_IN = {
    "precopy": PrecopyPolicy,
    "qemu": QemuPolicy,
    "xen": XenPolicy,
    "vmware": VmwarePolicy,
    "hyperv": HypervPolicy,
    "postcopy": PostcopyPolicy,
    "hybrid": HybridPolicy,
    "stopcopy": StopCopyPolicy,
}


# -- registry ----------------------------------------------------------------------------------
def test_built_in_policies_register_themselves():
    assert dict(POLICIES) == BUILT_IN


def test_a_new_policy_class_registers_itself():
    @dataclass(frozen=True)
    class OnePass(PrecopyPolicy, register=True):
        name = "one_pass_test"
        max_rounds: int = 1

    try:
        assert POLICIES["one_pass_test"] is OnePass
        assert policy_class({"name": "one_pass_test"}) is OnePass
        assert policy_fields({"name": "one_pass_test"})["max_rounds"] == 1
    finally:
        POLICIES.pop("one_pass_test")


def test_a_taken_name_is_refused():
    with pytest.raises(TypeError, match="'qemu' is taken"):

        @dataclass(frozen=True)
        class NotQemu(PrecopyPolicy, register=True):
            name = "qemu"

    assert POLICIES["qemu"] is QemuPolicy


def test_plugin_policies_work_by_target_without_registering(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from my_policy import ShrinkOrStopPolicy

    assert "shrink_or_stop" not in POLICIES
    cfg = {"_target_": "my_policy.ShrinkOrStopPolicy", "name": "ignored"}
    assert policy_class(cfg) is ShrinkOrStopPolicy
    fields = policy_fields(cfg)
    assert fields["min_shrink_pct"] == 10.0 and fields["max_rounds"] == 30
    assert "name" not in fields and "_target_" not in fields


def test_policy_fields_are_the_class_defaults():
    f = policy_fields({"name": "qemu"})
    assert f["max_rounds"] == 10**9 and f["xbzrle"] is False and f["dirty_clear"] == "chunk"
    assert f["clear_bitmap_shift"] == 18
    assert f == {x.name: x.default for x in dataclasses.fields(QemuPolicy)}
    assert policy_fields({"name": "xen"})["max_rounds"] is None  # the version decides


@pytest.mark.parametrize(
    "cfg,key,needle",
    [
        ({"name": "qemuu"}, "name", "one of hybrid, hyperv"),
        ({}, "name", "one of"),
        ({"_target_": "no_such_module.Policy"}, "_target_", "an importable policy class"),
        ({"_target_": "lmtoolkit.model.VM"}, "_target_", "a subclass of lmtoolkit.policies.Policy"),
    ],
)
def test_policy_class_errors_name_the_key(cfg, key, needle):
    with pytest.raises(ConfigError) as e:
        policy_class(cfg)
    assert e.value.key == key and needle in str(e.value)
    assert e.value.with_prefix("policy").key == f"policy.{key}"


# -- hooks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("gbit,limit", [(1.0, 4), (2.5, 4), (9.99, 4), (10.0, 8), (25.0, 8)])
def test_vmware_concurrency_hook_follows_the_link_rate(gbit, limit):
    assert VmwarePolicy().concurrent_migrations(gbit) == limit


def test_concurrency_hooks_of_the_other_policies():
    assert VmwarePolicy(concurrent_limit_1gbe=2, concurrent_limit_10gbe=6).concurrent_migrations(1) == 2
    assert VmwarePolicy(concurrent_limit_1gbe=2, concurrent_limit_10gbe=6).concurrent_migrations(10) == 6
    assert HypervPolicy().concurrent_migrations(1.0) == HypervPolicy().concurrent_migrations(40.0) == 2
    assert HypervPolicy(simultaneous_migrations=5).concurrent_migrations(10.0) == 5
    for cls in (QemuPolicy, XenPolicy, PostcopyPolicy, HybridPolicy, StopCopyPolicy, PrecopyPolicy):
        assert cls().concurrent_migrations(10.0) is None


@dataclass(frozen=True)
class SyncClearPrecopy(PrecopyPolicy):
    """The generic pre-copy with the dirty log cleared at the sync (via the base hook)."""

    name = "sync_clear_test"
    dirty_clear = "sync"


def test_dirty_clear_hook_defaults():
    assert Policy.dirty_clear == "send"
    assert VmwarePolicy().dirty_clear == HypervPolicy().dirty_clear == "send"
    assert QemuPolicy().dirty_clear == "chunk"  # KVM manual dirty-log protect
    assert QemuPolicy(dirty_clear="sync").dirty_clear == "sync"


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_dirty_clear_hook_changes_the_run_for_any_policy(engine):
    wl = UniformWorkload(dirty_rate_pages_s=2_000, wss_mib=64)
    kw = {"memory_gib": 0.5, "workload": wl, "gbit": 0.5, "engine": engine}
    send = run(scenario(policy=PrecopyPolicy(), **kw))
    sync = run(scenario(policy=SyncClearPrecopy(), **kw))
    # every page written during pass 1 is dirty at the sync, not only those written after their send
    assert sync.round_detail[1].dirty_pages > send.round_detail[1].dirty_pages * 1.3
    assert sync.transferred_bytes > send.transferred_bytes
    # QEMU's field drives the same hook
    q_send = run(scenario(policy=QemuPolicy(max_bandwidth_mib_s=64, dirty_clear="send"), **kw))
    q_sync = run(scenario(policy=QemuPolicy(max_bandwidth_mib_s=64, dirty_clear="sync"), **kw))
    assert q_sync.transferred_bytes > q_send.transferred_bytes


@dataclass(frozen=True)
class GiveUpAfterOnePass(PrecopyPolicy):
    """A plug-in with a stop reason of its own."""

    name = "give_up_test"
    stop_reasons = ("gave_up",)

    def forced(self, st, ctx):
        code = super().forced(st, ctx)
        return np.where((code == 0) & (self.passes_done(st) >= 1), REASON_CODE["gave_up"], code)


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_a_policy_adds_its_own_stop_reason(engine):
    assert "gave_up" in STOP_REASONS and STOP_REASONS[REASON_CODE["gave_up"]] == "gave_up"
    wl = UniformWorkload(dirty_rate_pages_s=20_000)
    rec = run(scenario(memory_gib=0.5, workload=wl, policy=GiveUpAfterOnePass(), engine=engine))
    assert rec.stop_reason == "gave_up" and rec.rounds == 1 and rec.completed and not rec.converged
    # built-in reasons keep their codes
    assert STOP_REASONS[:8] == [
        "running",
        "converged",
        "max_rounds",
        "max_sent",
        "timeout",
        "no_precopy",
        "precopy_done",
        "no_progress",
    ]


def test_vendor_stop_reasons_are_declared_by_their_policies():
    assert "max_sent" in XenPolicy.stop_reasons
    assert "no_progress" in VmwarePolicy.stop_reasons
    assert "precopy_done" in HybridPolicy.stop_reasons


# -- profiles ----------------------------------------------------------------------------------
def test_profiles_fill_only_the_keys_left_null():
    assert (XenPolicy().max_rounds, XenPolicy().max_factor, XenPolicy().dirty_threshold_pages) == (
        29,
        3.0,
        50,
    )
    v2 = XenPolicy(version="v2")
    assert v2.max_rounds == 5 and v2.max_factor == float("inf")
    assert XenPolicy(version="v2", max_rounds=7).max_rounds == 7
    assert (VmwarePolicy().encryption, VmwarePolicy().stream_autoscale) == (True, False)  # Opportunistic
    assert (
        VmwarePolicy(profile="vsphere7").encryption,
        VmwarePolicy(profile="vsphere7").stream_autoscale,
    ) == (True, True)
    assert VmwarePolicy(profile="vsphere7", encryption=False).encryption is False
    assert (HypervPolicy().max_passes, HypervPolicy().transport) == (5, "compression")
    assert (HypervPolicy(profile="2008r2").max_passes, HypervPolicy(profile="2008r2").transport) == (
        10,
        "tcp",
    )
    assert HypervPolicy(profile="2008r2", transport="smb").transport == "smb"


@pytest.mark.parametrize(
    "cls,key,bad",
    [(XenPolicy, "version", "v3"), (VmwarePolicy, "profile", "vsphere9"), (HypervPolicy, "profile", "2016")],
)
def test_unknown_profile_is_one_clear_error(cls, key, bad):
    with pytest.raises(ConfigError) as e:
        cls(**{key: bad})
    assert e.value.key == key and str(e.value).startswith(f"{key}={bad!r} is not allowed: one of")


# -- plug-ins written to a module of their own (tmp_path on sys.path) ----------------------------
def _plugin(tmp_path, monkeypatch, name: str, body: str) -> str:
    """Write module ``name`` (``body`` after the usual imports) to ``tmp_path``, on sys.path."""
    head = (
        "from dataclasses import dataclass, field\n"
        "import numpy as np\n"
        "from lmtoolkit.policies import PrecopyPolicy\n"
        "from lmtoolkit.records import REASON_CODE\n"
    )
    (tmp_path / f"{name}.py").write_text(head + body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


LIST_FIELD = '''
@dataclass(frozen=True)
class ListField(PrecopyPolicy):
    """Stops after the last of its steps' passes: a rule that reads its list field."""
    name = "list_field_test"
    steps: list = field(default_factory=lambda: [1, 2])

    def forced(self, st, ctx):
        code = super().forced(st, ctx)
        return np.where((code == 0) & (self.passes_done(st) >= self.steps[-1]), REASON_CODE["max_rounds"], code)
'''


def _capped_run(target: str, engine: str) -> list[str]:
    """Overrides of a run of the plug-in ``target`` that its pass cap ends (0.5 GiB written at
    20,000 pages/s over 1 GbE never converges)."""
    return [f"policy._target_={target}", f"engine={engine}", "workload=uniform"] + [
        "workload.dirty_rate_pages_s=20000",
        "vm.memory_gib=0.5",
        "network=1gbe",
    ]


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_a_list_field_runs_on_both_engines(tmp_path, monkeypatch, engine):
    """``engine=fluid`` was ``TypeError: unhashable type: 'list'`` (its batching of equal
    scenarios hashes them): a list field is a tuple once the policy is made."""
    import lmtoolkit as lmt

    _plugin(tmp_path, monkeypatch, "listpol", LIST_FIELD)
    base = _capped_run("listpol.ListField", engine)
    two = lmt.simulate(base)
    three = lmt.simulate(base + ["policy.steps=[1,3]"])
    assert str(two.stop_reason.values) == "max_rounds" and int(two.rounds) == 2
    assert int(three.rounds) == 3
    from listpol import ListField

    assert ListField().steps == (1, 2) and ListField(steps=[4, [5, 6]]).steps == (4, (5, 6))
    assert hash(ListField()) == hash(ListField(steps=(1, 2)))


def test_the_fluid_engine_batches_policies_by_their_list_fields(tmp_path, monkeypatch):
    """Migrations whose lists differ run in separate batches, each as it runs alone (a list
    is not an element per migration: stacking made it a 2-d array of the lists)."""
    from lmtoolkit.engine import simulate_fluid

    _plugin(tmp_path, monkeypatch, "listpol2", LIST_FIELD)
    from listpol2 import ListField

    wl = UniformWorkload(dirty_rate_pages_s=20_000)
    scns = [
        scenario(memory_gib=0.5, workload=wl, policy=ListField(steps=s), engine="fluid")
        for s in ([2], [4], [2])
    ]
    together = simulate_fluid(scns).records()
    alone = [run(s) for s in scns]
    assert [r.rounds for r in together] == [r.rounds for r in alone] == [2, 4, 2]
    with pytest.raises(ValueError, match="field steps differs"):
        ListField.stack([ListField(steps=[2]), ListField(steps=[4])])


DICT_FIELD = '''
@dataclass(frozen=True)
class DictField(PrecopyPolicy):
    """Stops after caps["passes"] passes: a rule that reads its dict field."""
    name = "dict_field_test"
    caps: dict = field(default_factory=lambda: {"passes": 2, "notes": [1, {"x": 2}]})

    def forced(self, st, ctx):
        code = super().forced(st, ctx)
        stop = self.passes_done(st) >= self.caps["passes"]
        return np.where((code == 0) & stop, REASON_CODE["max_rounds"], code)
'''


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_a_dict_field_runs_on_both_engines(tmp_path, monkeypatch, engine):
    """``engine=fluid`` was ``TypeError: unhashable type: 'dict'`` (the page engine ran): a
    dict field is a read-only, hashable FrozenDict once the policy is made, as a list is a
    tuple."""
    import lmtoolkit as lmt
    from lmtoolkit.policies.base import FrozenDict

    _plugin(tmp_path, monkeypatch, "dictpol", DICT_FIELD)
    base = _capped_run("dictpol.DictField", engine)
    two = lmt.simulate(base)
    three = lmt.simulate(base + ["policy.caps={passes: 3}"])
    assert str(two.stop_reason.values) == "max_rounds" and int(two.rounds) == 2
    assert str(three.stop_reason.values) == "max_rounds" and int(three.rounds) == 3
    from dictpol import DictField

    p = DictField()
    assert p.caps == {"passes": 2, "notes": (1, {"x": 2})} and isinstance(p.caps, FrozenDict)
    assert p.caps["notes"] == (1, FrozenDict({"x": 2}))
    assert hash(p) == hash(DictField(caps={"notes": (1, {"x": 2}), "passes": 2}))
    with pytest.raises(TypeError):
        p.caps["passes"] = 5  # read-only


def test_the_fluid_engine_batches_policies_by_their_dict_fields(tmp_path, monkeypatch):
    from lmtoolkit.engine import simulate_fluid

    _plugin(tmp_path, monkeypatch, "dictpol2", DICT_FIELD)
    from dictpol2 import DictField

    wl = UniformWorkload(dirty_rate_pages_s=20_000)
    scns = [
        scenario(memory_gib=0.5, workload=wl, policy=DictField(caps={"passes": n}), engine="fluid")
        for n in (2, 4, 2)
    ]
    together = simulate_fluid(scns).records()
    assert [r.rounds for r in together] == [run(s).rounds for s in scns] == [2, 4, 2]


IMPORT_FAILURES = [
    ("import no_such_dependency_xyz\n", "ModuleNotFoundError: No module named 'no_such_dependency_xyz'", 5),
    ("x = (\n", "SyntaxError: '(' was never closed", 5),
    ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import", 5),
    (
        "@dataclass(frozen=True)\nclass Q(PrecopyPolicy, register=True):\n    name = 'qemu'\n",
        "TypeError: policy name 'qemu' is taken by lmtoolkit.policies.qemu.QemuPolicy",
        6,
    ),
]


@pytest.mark.parametrize("body,said,line", IMPORT_FAILURES, ids=["import", "syntax", "runtime", "taken"])
def test_a_plugin_that_fails_to_import_is_one_line_naming_it(tmp_path, monkeypatch, body, said, line):
    """A module found but failing on import was reported as not importable ("put its module's
    directory on PYTHONPATH": wrong advice) or as a traceback (exit 1)."""
    mod = _plugin(tmp_path, monkeypatch, f"failing_{abs(hash(body)) % 10**6}", body)
    with pytest.raises(ConfigError) as e:
        policy_class({"_target_": f"{mod}.X"})
    text = str(e.value.with_prefix("policy"))
    assert (
        text == f"policy._target_={mod}.X: importing module {mod} raised {said} ({tmp_path / mod}.py:{line})"
    )
    assert "PYTHONPATH" not in text and "\n" not in text


def test_the_cli_reports_a_failing_plugin_in_one_line(tmp_path, monkeypatch, capsys):
    from lmtoolkit.cli import main

    mod = _plugin(tmp_path, monkeypatch, "failing_cli", "import no_such_dependency_xyz\n")
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path))
    assert main(["run", f"policy._target_={mod}.X"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"lmtk: error: policy._target_={mod}.X: importing module {mod} raised ModuleNotFoundError: "
        f"No module named 'no_such_dependency_xyz' ({tmp_path / mod}.py:5)"
    ]


def test_a_missing_module_or_class_says_which(tmp_path, monkeypatch):
    mod = _plugin(tmp_path, monkeypatch, "present_mod", "")
    with pytest.raises(ConfigError, match="put its module's directory on PYTHONPATH"):
        policy_class({"_target_": "absent_mod_xyz.X"})
    with pytest.raises(ConfigError) as e:
        policy_class({"_target_": f"{mod}.Nope"})
    assert str(e.value) == f"_target_={mod}.Nope: module {mod} ({tmp_path / mod}.py) has no Nope"


# -- a sweep over plug-in classes ---------------------------------------------------------------
CLASSES = """
@dataclass(frozen=True)
class CapRounds(PrecopyPolicy):
    name = "caprounds_test"
    cap: int = 3

    def forced(self, st, ctx):
        code = super().forced(st, ctx)
        return np.where((code == 0) & (self.passes_done(st) >= self.cap), REASON_CODE["max_rounds"], code)


@dataclass(frozen=True)
class CapRounds4(CapRounds):
    name = "caprounds4_test"
    cap: int = 4


@dataclass(frozen=True)
class Plain(PrecopyPolicy):
    name = "plain_test"
"""

AXIS = "+sweep.axes.pol={key: policy._target_, values: [twoclasses.CapRounds, twoclasses.Plain]}"


@pytest.mark.parametrize("base", [[], ["policy=custom"], ["policy=vmware_vsphere5"]])
def test_a_target_axis_swaps_the_class_with_its_own_defaults(tmp_path, monkeypatch, base):
    """Unknown key 'policy._target_' without a plug-in base; with ``policy=custom`` every class
    was handed the base class's keys (unknown key 'policy.min_shrink_pct' for CapRounds)."""
    from lmtoolkit.sweep import make_plan

    _plugin(tmp_path, monkeypatch, "twoclasses", CLASSES)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    plan = make_plan(["workload=uniform", "policy.timeout_s=100", *base, AXIS], results_dir=tmp_path)
    pols = [c["policy"] for c in plan.cells]
    assert [p["_target_"] for p in pols] == ["twoclasses.CapRounds", "twoclasses.Plain"]
    assert [set(p) for p in pols] == [
        set(policy_fields({"_target_": t})) | {"_target_"}
        for t in ("twoclasses.CapRounds", "twoclasses.Plain")
    ]
    assert pols[0]["cap"] == 3 and all(p["timeout_s"] == 100 for p in pols)  # the user's key kept


def test_a_target_axis_refuses_a_key_a_class_lacks(tmp_path, monkeypatch):
    from lmtoolkit.sweep import make_plan

    _plugin(tmp_path, monkeypatch, "twoclasses", CLASSES)
    # a key of the base policy (qemu) that the swept classes do not have: the user set it
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'policy.xbzrle' for policy 'caprounds_test'.*"
        r"\(at sweep.axes.pol: policy._target_=twoclasses.CapRounds\)$",
    ):
        make_plan(["workload=uniform", "policy.xbzrle=true", AXIS], results_dir=tmp_path)
    with pytest.raises(
        ConfigError, match=r"sweep.axes.pol: policy._target_=twoclasses.Nope: module twoclasses"
    ):
        make_plan(
            ["workload=uniform", AXIS.replace("twoclasses.Plain", "twoclasses.Nope")], results_dir=tmp_path
        )


def test_a_target_axis_takes_a_key_its_classes_have_and_the_base_lacks(tmp_path, monkeypatch):
    """``policy.cap=2`` for an axis over two classes with ``cap`` was "unknown key 'policy.cap'
    for policy 'qemu'": the base option's class, which no point runs.  Now each class runs
    with it; a key only some of the classes have is one error naming the key and both sets."""
    import lmtoolkit as lmt
    from lmtoolkit.sweep import make_plan

    _plugin(tmp_path, monkeypatch, "twoclasses", CLASSES)
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "results"))
    ov = ["workload=uniform", "workload.dirty_rate_pages_s=20000", "vm.memory_gib=0.5", "network=1gbe"]
    ov += ["engine=fluid"]
    both = AXIS.replace("twoclasses.Plain", "twoclasses.CapRounds4")
    defaults = lmt.sweep([*ov, both])
    assert list(defaults.rounds.values.ravel()) == [3, 4]  # cap 3 and 4: the classes' own
    ds = lmt.sweep([*ov, both, "policy.cap=2"])
    assert list(ds.rounds.values.ravel()) == [2, 2] and set(ds.stop_reason.values.ravel()) == {"max_rounds"}
    # a value axis over the classes' key, which the base lacks, too
    cap = "+sweep.axes.cap={key: policy.cap, values: [2, 5]}"
    assert lmt.sweep([*ov, both, cap]).rounds.values.squeeze().tolist() == [[2, 4], [2, 4]]
    with pytest.raises(ConfigError) as e:
        make_plan([*ov, AXIS, "policy.cap=2"], results_dir=tmp_path)
    assert str(e.value) == (
        "policy.cap=2 is a key of twoclasses.CapRounds but not of twoclasses.Plain (sweep.axes.pol: "
        "policy._target_): every class of the axis runs with it; sweep only classes that have it, or "
        "leave it out"
    )
    with pytest.raises(ConfigError, match=r"^sweep.axes.cap: key 'policy.cap' does not exist with "):
        make_plan([*ov, AXIS, cap], results_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^unknown key 'policy.cap' for policy 'qemu'"):
        lmt.simulate([*ov, "policy.cap=2"])  # no axis: the base policy runs, and lacks it


def test_a_policy_group_axis_takes_a_key_its_options_have_and_the_base_lacks(tmp_path, monkeypatch):
    """``policy.max_passes=3`` under an axis over ``[hyperv, hyperv_2008r2]`` was "unknown key
    'policy.max_passes' for policy 'qemu'" (the base option, which no point runs; and
    ``policy=hyperv`` as the base is refused as swept).  Now each option runs with it, as a
    class axis does; a key only some options have is one error naming both sets."""
    import lmtoolkit as lmt
    from lmtoolkit.sweep import make_plan

    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "results"))
    ov = ["workload=uniform", "workload.dirty_rate_pages_s=60000", "vm.memory_gib=0.5", "network=1gbe"]
    ov += ["engine=fluid", "sweep.replicates=1"]
    hv = "+sweep.axes.pol={key: policy, values: [hyperv, hyperv_2008r2]}"
    defaults = lmt.sweep([*ov, hv])  # both hit their pass cap: 5 (2012r2) and 10 (2008r2)
    assert defaults.rounds.values.ravel().tolist() == [5, 10]
    np.testing.assert_allclose(defaults.total_time.values.ravel(), [5.065, 28.902], atol=1e-3)
    ds = lmt.sweep([*ov, hv, "policy.max_passes=3"])
    assert ds.rounds.values.ravel().tolist() == [3, 3]
    assert set(ds.stop_reason.values.ravel()) == {"max_rounds"}
    np.testing.assert_allclose(ds.total_time.values.ravel(), [4.286, 12.135], atol=1e-3)
    mp = "+sweep.axes.mp={key: policy.max_passes, values: [2, 3]}"  # a value axis over it too
    assert lmt.sweep([*ov, hv, mp]).rounds.values.squeeze().tolist() == [[2, 3], [2, 3]]
    # a key of the base and of every option: as before
    vh = hv.replace("hyperv, hyperv_2008r2", "vmware, hyperv")
    timed = lmt.sweep([*ov, vh, "policy.timeout_s=3"])
    assert timed.total_time.values.ravel().tolist() == [3.0, 3.0]
    assert set(timed.stop_reason.values.ravel()) == {"timeout"}
    with pytest.raises(ConfigError) as e:
        make_plan([*ov, vh, "policy.max_passes=3"], results_dir=tmp_path)
    assert str(e.value) == (
        "policy.max_passes=3 is a key of policy hyperv but not of policy vmware (sweep.axes.pol: "
        "policy): every option of the axis runs with it; sweep only options that have it, or leave it out"
    )
    with pytest.raises(ConfigError, match=r"^sweep.axes.mp: key 'policy.max_passes' does not exist with "):
        make_plan([*ov, vh, mp], results_dir=tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"^unknown key 'policy.cap' for policy 'vmware'.*\(at sweep.axes.pol: policy=vmware\)$",
    ):
        make_plan([*ov, vh, "policy.cap=3"], results_dir=tmp_path)  # a key no option has
    # the options' own files: a key hyperv_2008r2 sets (profile), set for both, leaves them alike
    with pytest.raises(
        ConfigError, match="options hyperv and hyperv_2008r2 of axis pol .* one configuration"
    ):
        make_plan([*ov, hv, "policy.profile=2008r2"], results_dir=tmp_path)


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_a_sweep_over_plugin_classes_runs_each_class(tmp_path, monkeypatch, engine):
    import lmtoolkit as lmt

    _plugin(tmp_path, monkeypatch, "twoclasses", CLASSES)
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "results"))
    ov = ["workload=uniform", "workload.dirty_rate_pages_s=20000", "vm.memory_gib=0.5", "network=1gbe"]
    ds = lmt.sweep([*ov, f"engine={engine}", AXIS])
    assert list(ds.pol.values) == ["twoclasses.CapRounds", "twoclasses.Plain"]
    assert list(ds.stop_reason.values.ravel()) == ["max_rounds", "converged"]
    assert int(ds.rounds.values.ravel()[0]) == 3
    for i, t in enumerate(["CapRounds", "Plain"]):  # each point as its class runs alone
        seed = int(ds.seed.values.ravel()[i])  # the point's own seed (the page engine samples)
        one = lmt.simulate([*ov, f"engine={engine}", f"policy._target_=twoclasses.{t}", f"seed={seed}"])
        assert float(ds.total_time.values.ravel()[i]) == pytest.approx(float(one.total_time), rel=1e-9)


# -- --cfg job and registration --------------------------------------------------------------------
def test_cfg_job_prints_what_lmt_config_records(tmp_path, monkeypatch, capsys):
    """``lmtk run --cfg job policy._target_=…`` printed ``name: qemu`` beside ``_target_`` (and
    ``paths``); it is now the run's ``lmt_config``, byte for byte."""
    import lmtoolkit as lmt
    from lmtoolkit.cli import main

    _plugin(tmp_path, monkeypatch, "twoclasses", CLASSES)
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path))
    ov = ["policy._target_=twoclasses.CapRounds", "vm.memory_gib=0.25"]
    assert main(["run", "--cfg", "job", *ov]) == 0
    printed = capsys.readouterr().out
    assert printed == lmt.simulate(ov).attrs["lmt_config"]
    import yaml

    pol = yaml.safe_load(printed)["policy"]
    assert "name" not in pol and pol["_target_"] == "twoclasses.CapRounds" and pol["cap"] == 3


def test_a_registered_plugin_name_needs_its_module_imported(tmp_path, monkeypatch):
    """``register=True`` adds the name in the process that imports the module (a script, a
    notebook); the command line imports nothing of the user's by name and says to use
    ``_target_``."""
    import lmtoolkit as lmt

    _plugin(
        tmp_path,
        monkeypatch,
        "regpol",
        "@dataclass(frozen=True)\nclass Reg(PrecopyPolicy, register=True):\n    name = 'regpol_test'\n",
    )
    assert "regpol_test" not in POLICIES
    with pytest.raises(ConfigError, match=r"one of .*; a plug-in class: policy._target_=module.Class"):
        lmt.simulate(["policy.name=regpol_test", "vm.memory_gib=0.25"])
    import regpol

    try:
        assert float(lmt.simulate(["policy.name=regpol_test", "vm.memory_gib=0.25"]).total_time) > 0
    finally:
        POLICIES.pop("regpol_test")
    assert regpol.Reg.name == "regpol_test"
