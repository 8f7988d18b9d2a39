"""The course site (``lmtk site``): built offline, then every page opened in headless Chromium
from disk — no request leaves the file system, no broken link, image or script, no console
error; the student edition shows no solution, the teacher edition every solution with a ✓."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from lmtoolkit import notebooks as lnb
from lmtoolkit.teaching import EXERCISES

pytestmark = pytest.mark.browser


#: the lessons this test builds (two, to keep the tier short: every lesson's teacher edition is
#: run by the notebooks tier, tests/notebooks/test_notebooks.py)
LESSONS = ["00_live_migration_basics", "04_numa_and_ecc"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site built in smoke mode with one experiment notebook run and its figure made (what
    ``lmtk notebooks quickstart --smoke`` and ``lmtk figures fig01 debug=default`` leave)."""
    from lmtoolkit.plotting.make import make_figure
    from lmtoolkit.site import build

    results = tmp_path_factory.mktemp("site_results")
    mp = pytest.MonkeyPatch()
    mp.setenv("LMT_RESULTS_DIR", str(results))
    try:
        lnb.execute("quickstart", smoke=True, progress=False)
        make_figure("fig01", ["debug=default"])
        info = build(smoke=True, progress=False, teaching=LESSONS)
    finally:
        mp.undo()
    assert info["site"] == results / "site"
    return info


def _local_target(url: str, page_path: Path) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def test_every_page_loads_offline_with_no_broken_link_image_or_script(site, browser, artifacts):
    root: Path = site["site"]
    pages = sorted(p for p in root.rglob("*.html") if ".executed" not in p.parts)
    teaching = LESSONS
    assert {p.relative_to(root).as_posix() for p in pages} >= (
        {"index.html", "figures.html", "reference.html", "notebooks/20_quickstart.html"}
        | {f"{ed}/{n}.html" for ed in ("student", "teacher") for n in teaching}
    )
    problems: list[str] = []
    for path in pages:
        page = browser.new_page()
        seen, failed, console = [], [], []
        page.on("request", lambda r, seen=seen: seen.append(r.url))
        page.on("requestfailed", lambda r, failed=failed: failed.append(r.url))
        page.on("console", lambda m, console=console: console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, console=console: console.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        rel = path.relative_to(root).as_posix()
        problems += [
            f"{rel}: request leaves the disk: {u}"
            for u in seen
            if not u.startswith(("file:", "data:", "about:"))
        ]
        problems += [f"{rel}: failed to load {u}" for u in failed]
        problems += [f"{rel}: console error: {c}" for c in console]
        broken = page.evaluate(
            "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80))"
        )
        problems += [f"{rel}: broken image {b}" for b in broken]
        for href in page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)"):
            target = _local_target(href, path)
            if href.startswith(("http:", "https:")):
                continue  # a link out (to read online); nothing is fetched
            if target is not None and not target.exists():
                problems.append(f"{rel}: broken link {href}")
        n_scripts = page.evaluate(
            "() => [...document.scripts].filter(s => s.src && !s.src.startsWith('file:') && !s.src.startsWith('data:')).length"
        )
        if n_scripts:
            problems.append(f"{rel}: {n_scripts} script(s) from elsewhere")
        if rel in ("index.html", "student/00_live_migration_basics.html", "teacher/04_numa_and_ecc.html"):
            page.screenshot(
                path=str(artifacts / ("site_" + rel.replace("/", "_").replace(".html", ".png"))),
                full_page=True,
            )
        page.close()
    assert problems == []


def test_student_and_teacher_editions_come_from_one_source(site):
    root: Path = site["site"]
    for stem in LESSONS:
        n_ex = len([e for e in EXERCISES if e.startswith(stem[:2] + ".")])
        student = (root / "student" / f"{stem}.html").read_text()
        teacher = (root / "teacher" / f"{stem}.html").read_text()
        assert student.count("lmt-check-unanswered") == n_ex and "lmt-check-ok" not in student
        assert "Solution" not in student and not re.search(
            r"answer_\w+</span>\s*<span[^>]*>=</span>\s*<span[^>]*>(?!None)", student
        )
        assert teacher.count("lmt-check-ok") == n_ex, f"{stem}: a teacher solution does not pass its check"
        assert len(re.findall(r"<details open", teacher)) == n_ex
