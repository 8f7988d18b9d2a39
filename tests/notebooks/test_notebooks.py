"""Notebooks: the contract (parameters cell, compose cell, stripped outputs) and a smoke run of
every notebook through papermill on the project's kernel, asserting on what each wrote."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from lmtoolkit import notebooks as lnb
from lmtoolkit.teaching import EXERCISES

ROOT = Path(__file__).resolve().parents[2]
NAMES = lnb.list_notebooks()
EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
#: every papermill run of `lmtk notebooks --smoke`: (notebook, experiment), the experiment
#: notebook once per experiment
RUNS = lnb.targets()
#: what each notebook must have written into its summary ("values")
EXPECTED_KEYS = {
    "00_live_migration_basics": {"rounds", "downtime_s", "bitmap_shape", "hot_completed"},
    "01_the_network_matters": {"total_time_s", "failed", "idle_speedup"},
    "02_vmware_vs_hyperv": {"downtime_s", "throttled", "hyperv_2008r2_passes"},
    "03_postcopy_and_hybrid": {"postcopy_ratio", "longest_downtime", "hybrid_fewer_faults"},
    "04_numa_and_ecc": {
        "remote_share",
        "numa_penalty",
        "one_big_node_compatible",
        "corruption_probability",
        "checksum_slowdown",
    },
    "10_simulator_vs_analytic": {"checks"},
    "11_page_vs_fluid": {"cases", "worst_total_time_rel_diff"},
    "12_whatif_from_a_real_log": {"fitted_rate", "guest_rate", "points"},
    "13_migration_energy": {"alpha", "beta", "cases", "ratio", "guest_lost_cpu_s"},
    lnb.TEMPLATE: {"experiment", "dims", "figure"},  # (its config hash: the summary's own)
    "30_paper_figures": {"figures"},
}


def test_one_experiment_notebook_runs_every_experiment():
    prefixes = {n[0] for n in NAMES}
    assert {"0", "1", "2", "3"} <= prefixes
    assert [n for n in NAMES if n.startswith("2")] == [lnb.TEMPLATE], "one parameterized 2x notebook"
    assert lnb.list_experiments() == EXPERIMENTS
    assert [e for n, e in RUNS if n == lnb.TEMPLATE] == EXPERIMENTS
    assert [n for n, e in RUNS if e is None] == [n for n in NAMES if n != lnb.TEMPLATE]
    from lmtoolkit.plotting.registry import FIGURES

    for spec in FIGURES.values():  # every figure's notebook runs its experiment
        assert spec.notebook == lnb.TEMPLATE and spec.experiment in EXPERIMENTS


def test_names_resolve_to_notebooks_and_experiment_runs():
    assert lnb.resolve_target("00") == ("00_live_migration_basics", None)
    assert lnb.resolve_target("quickstart") == (lnb.TEMPLATE, "quickstart")
    assert lnb.resolve_target("20_quickstart.ipynb") == (lnb.TEMPLATE, "quickstart")
    assert lnb.resolve_target("20") == (lnb.TEMPLATE, None)
    assert lnb.targets(["20"], ["experiment=auto_converge", "vm.memory_gib=2"]) == [
        (lnb.TEMPLATE, "auto_converge")
    ]
    assert lnb.targets(["20"]) == [(lnb.TEMPLATE, e) for e in EXPERIMENTS]
    assert lnb.run_name(lnb.TEMPLATE, "quickstart") == "20_quickstart"
    from lmtoolkit.errors import ConfigError

    with pytest.raises(ConfigError, match="ambiguous.*02.*20_vmware_vs_hyperv"):
        lnb.resolve_target("vmware_vs_hyperv")  # teaching notebook 02 or the experiment
    with pytest.raises(ConfigError, match="did you mean quickstart"):
        lnb.targets(["20"], ["experiment=quickstrt"])
    with pytest.raises(ConfigError, match="runs one experiment"):
        lnb.execute("20", progress=False)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_follows_the_contract_and_is_stripped(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    first, second = nb.cells[0], nb.cells[1]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    names = {
        line.split(":")[0].split("=")[0].strip()
        for line in first.source.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    assert names == ({"experiment", "overrides", "smoke"} if name == lnb.TEMPLATE else {"overrides", "smoke"})
    assert (
        "lmt.notebooks.compose(" in second.source
        and "overrides" in second.source
        and "smoke" in second.source
    )
    if name == lnb.TEMPLATE:
        assert "experiment=experiment" in second.source
        default = next(ln for ln in first.source.splitlines() if ln.startswith("experiment"))
        assert default.split("=", 1)[1].strip().strip("\"'") in EXPERIMENTS
    assert nb.metadata["kernelspec"]["name"] == lnb.KERNEL_NAME
    for c in nb.cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None, f"{name}: outputs not stripped"
            assert "papermill" not in c.metadata


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory):
    """One results/ for the whole module: 30_paper_figures reuses the 2x sweeps' cache."""
    return tmp_path_factory.mktemp("nbresults")


#: the one papermill run of the default tier (the experiment notebook on the quickstart
#: experiment: a real kernel, compose, sweep, figure); the others are marked ``notebooks``
#: (the CI tier: ``-m "notebooks or browser or testbed"``)
DEFAULT_TIER_RUN = (lnb.TEMPLATE, "quickstart")


def _run_params():
    return [
        pytest.param(
            n, e, id=lnb.run_name(n, e), marks=() if (n, e) == DEFAULT_TIER_RUN else pytest.mark.notebooks
        )
        for n, e in RUNS
    ]


@pytest.mark.parametrize("notebook, experiment", _run_params())
def test_notebook_runs_in_smoke_mode(notebook, experiment, shared_results, monkeypatch):
    monkeypatch.setenv("LMT_RESULTS_DIR", str(shared_results))
    name = lnb.run_name(notebook, experiment)
    # teaching notebooks run as their teacher edition: everything the student edition runs, plus
    # the solutions, which must pass their checks
    edition = "teacher" if lnb.is_teaching(notebook) else None
    run = lnb.execute(notebook, smoke=True, progress=False, experiment=experiment, edition_name=edition)
    assert run.name == name and run.notebook == notebook and run.experiment == experiment
    assert run.output == shared_results / "notebooks" / f"{name}.ipynb" and run.output.exists()
    executed = nbformat.read(run.output, as_version=4)
    params = {"overrides": [], "smoke": True} | ({"experiment": experiment} if experiment else {})
    assert executed.metadata["papermill"]["parameters"] == params
    assert not any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))
    summary = json.loads((shared_results / "notebooks" / f"{name}.json").read_text())
    assert summary["notebook"] == name and summary["smoke"] is True
    assert "debug=default" in summary["effective_overrides"]
    values = summary["values"]
    assert EXPECTED_KEYS[notebook] <= set(values)
    if edition:
        states = [
            json.dumps(o.get("metadata", {}))
            for c in executed.cells
            for o in c.get("outputs", [])
            if "lmt_check" in json.dumps(o.get("metadata", {}))
        ]
        n_ex = len([e for e in EXERCISES if e.startswith(notebook[:2] + ".")])
        assert len(states) == n_ex and all('"ok"' in s for s in states), states
        assert not any(o.get("name") == "stderr" for c in executed.cells for o in c.get("outputs", [])), (
            "a stderr box (e.g. a warning) in a teaching notebook"
        )
    if experiment:
        assert summary["experiment"] == values["experiment"] == experiment
        assert f"experiment={experiment}" in summary["effective_overrides"]
        assert values["dims"]["replicate"] >= 1
        _assert_one_hash_the_datasets(summary)
        from lmtoolkit.plotting.registry import FIGURES

        spec = next(f for f in FIGURES.values() if f.experiment == experiment)
        assert values["figure"] == spec.id
        assert {f"mean_{v}" for v in spec.table} <= set(values)  # the table shows them all
        outputs = [o for c in executed.cells for o in c.get("outputs", [])]
        assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure
        assert any(
            spec.caption[:40] in "".join(o.get("data", {}).get("text/markdown", "")) for o in outputs
        )  # its caption
    if notebook == "30_paper_figures":
        from lmtoolkit.plotting.registry import FIGURES

        assert set(values["figures"]) == set(FIGURES)
        for spec in FIGURES.values():
            for ext in ("png", "pdf", "yaml"):
                assert (shared_results / "debug" / "figures" / f"{spec.stem}.{ext}").exists()


def _assert_one_hash_the_datasets(summary: dict) -> None:
    """An experiment run's summary has one config hash, the Dataset's (as the file records it);
    its top-level hash was config_hash(cfg) — without the sweep's identity and with the
    run-time keys — and never the Dataset's, beside values.config_hash, which was."""
    import xarray as xr

    with xr.open_dataset(summary["dataset"]) as ds:
        assert summary["config_hash"] == ds.attrs["lmt_config_hash"]
    assert len(summary["config_hash"]) == 16 and "config_hash" not in summary["values"]


def test_a_notebook_summary_has_one_config_hash_the_datasets(tmp_path):
    """What `lmtk notebooks quickstart -p vm.memory_gib=4` saves, in process: the summary's
    config_hash is the variant Dataset's; a notebook without an experiment records the hash of
    the Dataset cfg.simulate() makes; a different hash in the values is refused."""
    import xarray as xr

    cfg = lnb.compose(["vm.memory_gib=4"], smoke=True, experiment="quickstart")
    ds = cfg.sweep()
    summary = json.loads(cfg.save(**cfg.summary(ds)).read_text())
    assert summary["config_hash"] == ds.attrs["lmt_config_hash"]
    _assert_one_hash_the_datasets(summary)
    assert "/variants/" in summary["dataset"]
    with xr.open_dataset(summary["dataset"]) as on_disk:
        assert json.loads(on_disk.attrs["lmt_overrides"])[:2] == ["experiment=quickstart", "vm.memory_gib=4"]
    with pytest.raises(ValueError, match="config_hash"):
        cfg.save(config_hash="0123456789abcdef")
    base = lnb.compose(["vm.memory_gib=1"], smoke=True, name="00_x")
    assert base.dataset() == (base.simulate().attrs["lmt_config_hash"], None)


@pytest.mark.notebooks
def test_an_experiment_run_with_a_parameter_records_its_variants_hash(tmp_path, monkeypatch):
    """`lmtk notebooks quickstart -p vm.memory_gib=4 --smoke` through papermill: one config
    hash in 20_quickstart.json, the variant Dataset's."""
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path))
    run = lnb.execute("quickstart", ["vm.memory_gib=4"], smoke=True, progress=False)
    assert run.summary is not None and run.summary["overrides"] == ["vm.memory_gib=4"]
    _assert_one_hash_the_datasets(run.summary)
    assert "/variants/" in run.summary["dataset"]


@pytest.mark.notebooks
def test_a_failing_cell_names_the_notebook_and_the_cell(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("overrides: list[str] = []\nsmoke: bool = False")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [
        p,
        nbformat.v4.new_code_cell("import lmtoolkit as lmt\ncfg = lmt.notebooks.compose(overrides, smoke)"),
        nbformat.v4.new_code_cell("x = 1 / 0  # boom"),
    ]
    nb.metadata["kernelspec"] = {"name": lnb.KERNEL_NAME, "display_name": "x", "language": "python"}
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nbformat.write(nb, nbdir / "99_broken.ipynb")
    monkeypatch.setattr(lnb, "notebook_dir", lambda: nbdir)
    with pytest.raises(lnb.NotebookError) as e:
        lnb.execute("99", progress=False, output_dir=tmp_path / "out")
    msg = str(e.value)
    assert "99_broken" in msg and "cell 2" in msg and "ZeroDivisionError" in msg and "1 / 0" in msg
    assert e.value.output.exists()


#: the calls a notebook hands its overrides to, by where they go (lnb.OVERRIDES_TO)
HANDED_TO = {
    "sweep": ("cfg.sweep(", "make_figures("),
    "whatif": ("whatif.whatif(",),
    "migration": ("lmt.teaching.", "lmt.analytic.", "energy_reference."),
}


@pytest.mark.parametrize("name", NAMES)
def test_overrides_to_says_where_each_notebook_hands_its_overrides(name):
    """``check_parameters`` refuses ``sweep.*`` keys for the notebooks of single migrations
    (lnb.OVERRIDES_TO): each notebook's code calls what its entry says, and nothing of the others."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    to = lnb.OVERRIDES_TO[name]
    assert any(call in code for call in HANDED_TO[to]), (name, to)
    assert not [c for other, calls in HANDED_TO.items() if other != to for c in calls if c in code]
    assert set(lnb.OVERRIDES_TO) == set(NAMES)


def test_compose_adds_the_debug_preset_in_smoke_mode_and_user_overrides_win():
    cfg = lnb.compose(["vm.memory_gib=3"], smoke=True, name="x")
    assert cfg.overrides == ["vm.memory_gib=3", "debug=default"]
    assert cfg.vm.memory_gib == 3 and cfg.policy.timeout_s == 60  # debug's timeout, user's memory
    assert lnb.compose([], smoke=False).overrides == []


def test_cli_lists_notebooks_and_rejects_a_bad_parameter(capsys):
    from lmtoolkit.cli import main

    assert main(["notebooks", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == NAMES
    assert all(e in lines[NAMES.index(lnb.TEMPLATE)] for e in EXPERIMENTS)
    assert main(["notebooks", "00", "-p", "novalue"]) == 2
    assert main(["notebooks", "nosuchbook"]) == 2
    assert main(["notebooks", "20", "-p", "experiment=nosuch"]) == 2
    assert "unknown experiment 'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, param, words",
    [
        # the notebook's own settings met the user's value inside the kernel (UnusedKeyError,
        # "must fit"): now one line before a kernel starts, naming the run, the key and the value
        ("00", "workload=idle", ["explorer's first setting", "workload.wss_mib=512.0 is not allowed"]),
        # a key the notebook sets too: its own value named beside the user's, and which is used
        ("00", "workload=idle", ["-p workload=idle (in place of the notebook's own workload=uniform)"]),
        (
            "01",
            "vm.memory_gib=0.5",
            ["-p vm.memory_gib=0.5 (in place of the notebook's own vm.memory_gib=2)"],
        ),
        ("01", "workload=idle", ["case '1 GbE dedicated'", "workload.wss_mib=1024 is not allowed"]),
        ("02", "vm.memory_gib=0.05", ["case 'VMware (SDPS)'", "workload.hot_mib=256.0", "<= 51.2 MiB"]),
        ("11", "vm.memory_gib=0.01", ["qemu/hotcold@60000/1gbe", "workload.hot_mib=256.0", "<= 10.24 MiB"]),
        # 04's 96 GiB VM on its 2 x 64 GiB source, 04.3's checksums, 10's stop-and-copy check
        ("04", "host.numa_spanning=false", ["NUMA explorer's first setting", "vm.memory_gib=96.0 is not"]),
        (
            "04",
            "host.spare_cores=0",
            ["exercise 04.3, case 'no ECC + checksums'", "host.spare_cores=0 is not"],
        ),
        ("10", "policy.auto_converge=true", ["check stopcopy_downtime", "for policy 'stopcopy'"]),
    ],
)
def test_a_value_the_notebooks_own_settings_refuse_is_refused_before_a_kernel(
    name, param, words, capsys, monkeypatch
):
    from lmtoolkit.cli import main

    def no_kernel(*a):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(lnb, "ensure_kernel", no_kernel)
    assert main(["notebooks", name, "-q", "-p", param]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"-p {param}" in err[0], err
    assert all(w in err[0] for w in words), err[0]


def test_a_key_the_notebook_sets_after_the_users_value_is_named_as_the_one_used():
    """Where the notebook's own setting comes after the user's (notebook 04's copy-error
    explorer sets host.spare_cores=4.0 after -p host.spare_cores=...), the error said only the
    user's value, which the run does not use; now both, and which one is used."""
    from lmtoolkit.errors import ConfigError

    own = ["vm.memory_gib=0.5", "workload=uniform", "workload.wss_mib=1024"]
    with pytest.raises(ConfigError) as e:
        lnb._check_run("01_x", "case 'a'", ["vm.memory_gib=4", *own], ["vm.memory_gib=4"], own)
    assert str(e.value) == (
        "notebook 01_x runs case 'a' (vm.memory_gib=0.5 workload=uniform workload.wss_mib=1024) with "
        "-p vm.memory_gib=4 (the notebook's own vm.memory_gib=0.5 comes after it and is used): "
        "workload.wss_mib=1024 is not allowed: the working set must fit in the VM's memory (<= 512 MiB)"
    )


@pytest.mark.parametrize("name", [n for n in NAMES if n[:2] in ("00", "01", "02", "03")])
def test_the_teaching_notebooks_run_the_guests_the_check_composes(name):
    """What check_parameters composes (lmt.teaching.notebook_runs) is what the notebook runs:
    its guest comes from the package, not a list of its own."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f'lmt.teaching.guest("{name[:2]}", cfg.overrides)' in code
    assert "vm.memory_gib=" not in code and "workload=" not in code
    assert len(lnb.notebook_runs(name, [])) >= 2


def test_notebooks_04_and_10_run_what_the_check_composes():
    """04's NUMA and copy-error settings and 10's checks come from the package (what
    check_parameters builds), not from the notebook's cells."""
    from lmtoolkit.analytic import CHECKS

    def code(name):
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        return "\n".join(c.source for c in nb.cells if c.cell_type == "code")

    nb04 = code("04_numa_and_ecc")
    assert "vm.memory_gib=" not in nb04 and "dst_node_gib=" not in nb04
    assert 'lmt.teaching.copy_error_exercise("04.3", base)' in nb04
    runs = lnb.notebook_runs("04_numa_and_ecc", [])
    assert len(runs) == 2 + 3 * 4  # two NUMA cases, three copy-error settings x 4 protections
    assert "host.dst_numa_node_gib=192.0" in runs["exercise 04.2's one big node"]
    assert runs["exercise 04.4, case 'ECC + checksums'"][-4:] == [
        "network=100gbe_rdma",
        "host.spare_cores=1.0",
        "host.ecc=true",
        "policy.verify_checksums=true",
    ]
    assert list(lnb.notebook_runs("10_simulator_vs_analytic", [])) == [f"check {c.name}" for c in CHECKS]


@pytest.mark.parametrize(
    "name, call",
    [
        ("10_simulator_vs_analytic", "lmt.analytic.check_limits(lim)"),
        ("11_page_vs_fluid", "lmt.analytic.check_engines(cmp)"),
        ("13_migration_energy", "energy_reference.check_claims(alpha, theirs, current)"),
        ("20_experiment", "cfg.check(ds, fig)"),
        ("30_paper_figures", "lmt.plotting.make.check_figures(sides, cfg.user_overrides)"),
    ],
)
def test_the_validation_notebooks_check_their_claims_in_the_package(name, call):
    """No bare ``assert`` (a failing one was an ``AssertionError:`` in a cell): the package
    checks the claims, one line each, n/a where they do not apply, a failing one named."""
    import re

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*assert\b", code, flags=re.M) and f"print({call})" in code


def test_the_experiment_notebooks_claims_name_what_fails_and_what_does_not_apply(monkeypatch):
    """Notebook 20's claims (cfg.check): the Dataset's hash is the config's, its dims the
    sweep's at the plan's sizes, the figure drawn; n/a for an experiment without a figure."""
    import numpy as np
    import xarray as xr

    from lmtoolkit.errors import ClaimError
    from lmtoolkit.sweep import make_plan

    cfg = lnb.compose([], smoke=True, experiment="quickstart", name="20_quickstart")
    plan = make_plan(cfg.overrides, expand=False)
    ds = xr.Dataset(
        {"total_time": (plan.dims, np.zeros(plan.shape))}, attrs={"lmt_config_hash": plan.config_hash}
    )
    lines = cfg.check(ds, fig=object()).splitlines()
    assert len(lines) == 3 and all(ln.startswith("ok   ") for ln in lines), lines
    assert f"replicate {plan.replicates}" in lines[1] and "fig01" in lines[2]
    with pytest.raises(ClaimError, match=r"dims: .*replicate missing"):
        cfg.check(ds.isel(replicate=0), fig=object())
    with pytest.raises(ClaimError, match=r"lmt_config_hash 0123456789abcdef is this config's"):
        cfg.check(ds.assign_attrs(lmt_config_hash="0123456789abcdef"), fig=object())
    with pytest.raises(ClaimError, match=r"figure: fig01 .* drawn"):
        cfg.check(ds, fig=None)
    monkeypatch.setattr(lnb.NotebookConfig, "figure_spec", None)
    assert cfg.check(ds).splitlines()[2].startswith("n/a  figure: experiment quickstart has none")


def test_the_figures_notebooks_claims_name_a_missing_figure_or_file(tmp_path):
    """Notebook 30's claims (make.check_figures): every registry figure made, each with its
    PNG, PDF and sidecar in its dir and a Dataset config hash (it was len(sides) == len(FIGURES))."""
    from lmtoolkit.errors import ClaimError
    from lmtoolkit.plotting.make import check_figures
    from lmtoolkit.plotting.registry import FIGURES

    sides = []
    for spec in FIGURES.values():
        for ext in ("png", "pdf", "yaml"):
            (tmp_path / f"{spec.stem}.{ext}").write_text("x")
        files = [f"{spec.stem}.png", f"{spec.stem}.pdf"]
        sides.append(
            {"id": spec.id, "files": files, "dir": str(tmp_path), "datasets": [{"config_hash": "ab"}]}
        )
    lines = check_figures(sides).splitlines()
    assert len(lines) == 1 + len(FIGURES) and all(ln.startswith("ok   ") for ln in lines)
    n = len(FIGURES)
    with pytest.raises(ClaimError, match=rf"{n - 1} of the registry's {n} figures made \(missing: fig01\)"):
        check_figures(sides[1:])
    (tmp_path / f"{sides[0]['files'][1]}").unlink()
    with pytest.raises(ClaimError, match=r"fig01: .*\(missing: fig01_quickstart.pdf\)"):
        check_figures(sides, ["sweep.replicates=1"])
    sides[0]["datasets"] = [{"config_hash": ""}]
    with pytest.raises(ClaimError, match=r"settings \(sweep.replicates=1\).*dataset config hash \(none\)"):
        check_figures(sides, ["sweep.replicates=1"])


TEACHING = [n for n in NAMES if lnb.is_teaching(n)]


@pytest.mark.parametrize("name", TEACHING)
def test_exercises_come_without_answers_and_with_one_folded_solution_each(name):
    """Student view: every answer cell is ``None`` and every check cell calls the package; each
    solution is folded (``<details>``) and its code sets the exercise's answer."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    ours = {k: v for k, v in EXERCISES.items() if k.startswith(name[:2] + ".")}
    assert ours, f"{name} has no exercises"
    for ex_id, ex in ours.items():
        answer_cells = [
            c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith(f"{ex.answer} =")
        ]
        assert len(answer_cells) == 1, (name, ex.answer)
        assert answer_cells[0].source.split("=", 1)[1].split("#")[0].strip() == "None", (
            f"{name}: {ex.answer} comes filled in"
        )
        checks = [c for c in nb.cells if f'lmt.teaching.check("{ex_id}", {ex.answer}' in c.source]
        assert len(checks) == 1, (name, ex_id)
    solutions = [c for c in nb.cells if lnb.SOLUTION_TAG in c.metadata.get("tags", [])]
    assert len(solutions) == len(ours)
    for c in solutions:
        assert c.cell_type == "markdown" and c.source.startswith("<details>")
        code = lnb._solution_code(c.source)
        assert any(code.startswith(f"{ex.answer} =") for ex in ours.values()), code
    student, teacher = lnb.edition(nb, "student"), lnb.edition(nb, "teacher")
    assert not any(lnb.SOLUTION_TAG in c.metadata.get("tags", []) for c in student.cells)
    assert len(teacher.cells) == len(nb.cells) + len(ours)
    assert sum("<details open>" in c.source for c in teacher.cells) == len(ours)
    assert len(nb.cells) == len(student.cells) + len(ours)


def test_the_student_edition_of_a_teacher_run_shows_unanswered_checks():
    """student_from_teacher: solutions out, checks back to "not answered yet", reveals dropped."""
    from lmtoolkit.teaching import check

    nb = nbformat.v4.new_notebook()
    sol = nbformat.v4.new_markdown_cell(
        "<details><summary>Solution</summary>\n\n```python\nanswer_x = 1\n```\n</details>"
    )
    sol.metadata["tags"] = [lnb.SOLUTION_TAG]
    nb.cells = [nbformat.v4.new_code_cell("answer_x = None"), sol]
    teacher = lnb.edition(nb, "teacher")
    assert (
        teacher.cells[2].source == "answer_x = 1" and lnb.SOLUTION_CODE_TAG in teacher.cells[2].metadata.tags
    )
    data, md = check("04.2", None)._repr_mimebundle_()
    ok = nbformat.v4.new_output(
        "execute_result",
        data={"text/plain": "✓"},
        execution_count=4,
        metadata={"text/html": {"lmt_check": {"exercise": "04.2", "state": "ok"}}},
    )
    reveal = nbformat.v4.new_output(
        "display_data", data={"image/png": "AAAA"}, metadata={"lmt_reveal": "04.2"}
    )
    keep = nbformat.v4.new_output("stream", name="stdout", text="kept")
    cell = nbformat.v4.new_code_cell("check", execution_count=4)
    cell.outputs = [reveal, ok, keep]
    teacher.cells.append(cell)
    student = lnb.student_from_teacher(teacher)
    assert [c.source for c in student.cells] == ["answer_x = None", "check"]
    outs = student.cells[1].outputs
    assert len(outs) == 2 and outs[0]["data"] == data and outs[1]["text"] == "kept"
    assert student.cells[1].execution_count == 1  # renumbered without the solution cells


def test_notebook_04s_ecc_figure_is_the_one_it_computes():
    """The 04.3 solution said ECC makes corruption "about 1e-17 times less likely"; the
    notebook's own table gives 2.75e-18 against 6.885e-5, a factor of about 4e-14."""
    import re

    from lmtoolkit.teaching import copy_errors

    nb = nbformat.read(ROOT / "notebooks" / "04_numa_and_ecc.ipynb", as_version=4)
    text = next(c.source for c in nb.cells if "answer_one_in =" in c.source and c.cell_type == "markdown")
    factor = float(re.search(r"about ([0-9.e+-]+) times as likely", text).group(1))
    p = copy_errors(["vm.memory_gib=8", "workload=idle"]).corruption_probability
    ratio = float(p.sel(case="ECC") / p.sel(case="no ECC"))
    assert ratio == pytest.approx(factor, rel=0.1)
    shown = float(re.search(r"≈ ([0-9.e+-]+) per migration", text).group(1))
    assert shown == pytest.approx(float(p.sel(case="ECC")), rel=0.05)
