"""Issue 7: replaying measured concurrent KVM migrations (Kherbache 2017)."""

from __future__ import annotations

import pytest

from lmtoolkit.validation import kherbache2017 as kh

pytestmark = pytest.mark.integration


def test_the_data_ships_with_the_project():
    from lmtoolkit.paths import data_dir

    d = kh.default_dir()
    assert d == data_dir() / "validation" / "kherbache2017"
    assert len(list((d / "input").glob("random.*.json"))) == 50
    assert len(list((d / "real_executions_output").glob("*/micro_random.*.csv"))) == 200
    readme = (d / "README.md").read_text()
    assert "btrplace/kherbache-thesis" in readme and "LGPL" in readme and "10.1109/TCC.2017.2754279" in readme


def _err(lines, kind):
    line = next(l for l in lines if l.startswith(f"{kind} median_abs_rel_error="))
    return float(line.split("=")[1].split()[0])


def test_a_few_scenarios_fast():
    table, lines = kh.run(scenarios={1, 2, 3, 4})
    assert {"vm_MB", "link_Mbit_s", "median_abs_rel_error"} <= set(table.columns)
    assert _err(lines, "solo") <= 0.10 and _err(lines, "concurrent") <= 0.15


def test_full_replay_meets_goals_on_held_out_scenarios():
    import io

    from lmtoolkit.testbed.validate import DATASETS, run_validate  # what `lmtk validate` calls

    assert "kherbache2017" in DATASETS
    buf = io.StringIO()
    assert run_validate("kherbache2017", out=buf) == 0
    out = buf.getvalue().strip().splitlines()
    assert _err(out, "solo") <= 0.10
    assert _err(out, "concurrent") <= 0.15


def test_split_and_solo_definition():
    df = kh.load(scenarios={1, 2})
    assert set(df[df.fit].scenario) == {1} and set(df[~df.fit].scenario) == {2}
    assert len(df) == 2 * 4 * 10 and df.solo.any() and (~df.solo).any()


def test_missing_data_dir_is_a_clear_error(tmp_path):
    from lmtoolkit.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        kh.load(tmp_path)
    assert str(tmp_path) in str(e.value) and "--data" in str(e.value)


def test_cli_names_the_missing_path_and_the_option(tmp_path, capsys):
    from lmtoolkit.cli import main

    missing = tmp_path / "nowhere"
    assert main(["validate", "kherbache2017", "--data", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and "--data" in err[0]
