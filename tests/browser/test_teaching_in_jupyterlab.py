"""Every teaching notebook as a student meets it: opened in JupyterLab in headless Chromium, on
the ``Python (lmtoolkit)`` kernel, *Run → Run All Cells*, then the explorer's controls moved.

Asserted on what the page shows: no error or stderr box, no raw repr (``<xarray.Dataset>``,
``<Figure size …>``, ``PosixPath(…)``), the explorer's plot drawn once, every exercise
"not answered yet" (answers are not filled in), and after each move a different plot and a
different Result line.  Screenshots of the notebook and of the explorer before and after the
move are kept in ``results/browser/``.
"""

from __future__ import annotations

import re

import pytest

from lmtoolkit import notebooks as lnb
from lmtoolkit.teaching import EXERCISES

pytestmark = pytest.mark.browser

TEACHING = [n for n in lnb.list_notebooks() if lnb.is_teaching(n)]
#: what a student does with each notebook's first explorer: (control label, new value)
MOVES = {
    "00": [("link (Gbit/s)", "10"), ("policy", "xen")],
    "01": [("other traffic (share of the link)", "0.5")],
    "02": [("vendor setting", "Hyper-V 2012 R2")],
    "03": [("writes (pages/s)", "5000")],
    "04": [("memory per destination node (GiB)", "64")],
}
RAW_REPRS = (
    "<xarray.",
    "<Figure size",
    "PosixPath(",
    "<IPython.core.display",
    "<matplotlib.",
    "<Axes:",
    "NotebookConfig(",
)
KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""
ALL_RAN = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session.kernel;
  const busy = [...document.querySelectorAll('.jp-InputArea-prompt')].some(e => e.textContent.includes('*'));
  const fresh = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].some(e => e.textContent.trim() === '[ ]:');
  return k.status === 'idle' && !busy && !fresh;
}"""


def _screenshot_notebook(page, path) -> None:
    """The whole notebook: JupyterLab scrolls inside .jp-WindowedPanel-outer, so grow the
    viewport to its height first."""
    size = page.viewport_size
    h = page.evaluate("""() => { const o = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
                                 return o ? o.scrollHeight + o.getBoundingClientRect().top + 30 : 900; }""")
    page.set_viewport_size({"width": size["width"], "height": int(min(max(h, 900), 16000))})
    page.evaluate("""() => { const o = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
                             if (o) o.scrollTop = 0; }""")
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def _problems(page) -> list[str]:
    """Error/stderr boxes and raw reprs anywhere in the notebook's outputs."""
    out = []
    for el in page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all():
        out.append("stderr/error box: " + el.inner_text()[:300])
    text = page.locator(".jp-Notebook .jp-OutputArea").all_inner_texts()
    joined = "\n".join(text)
    out += [f"raw repr {r!r} in an output" for r in RAW_REPRS if r in joined]
    return out


def _explorer(page):
    return page.locator(".lmt-explorer").first


def _state(page):
    ex = _explorer(page)
    imgs = ex.locator("img")
    return (
        imgs.count(),
        (imgs.first.get_attribute("src") if imgs.count() else None),
        ex.locator(".lmt-numbers").first.inner_text() if ex.locator(".lmt-numbers").count() else "",
    )


def _move(page, label: str, value: str) -> None:
    """Set one control as a student would: pick from a dropdown, or type into a slider's
    readout and press Enter."""
    ex = _explorer(page)
    box = ex.locator(".widget-inline-hbox").filter(has=page.locator("label", has_text=label)).first
    select = box.locator("select")
    if select.count():
        select.select_option(label=value)
        return
    readout = box.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


@pytest.mark.parametrize("name", TEACHING)
def test_a_student_runs_the_notebook_and_moves_the_widgets(name, lab, browser, artifacts):
    page = browser.new_page()
    try:
        page.goto(lab.url(f"lab/tree/{name}.ipynb?reset"))
        page.wait_for_function(KERNEL_IDLE, timeout=90_000)
        kernel = page.locator(".jp-Toolbar-kernelName").first.inner_text().strip()
        assert kernel == lnb.KERNEL_DISPLAY_NAME, f"JupyterLab started kernel {kernel!r}"
        page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        page.wait_for_timeout(500)
        page.wait_for_function(ALL_RAN, timeout=240_000, polling=500)
        _explorer(page).locator(".lmt-numbers").first.wait_for(timeout=60_000)
        _screenshot_notebook(page, artifacts / f"{name}.png")
        assert _problems(page) == []

        # the explorer: one plot and one Result line; nothing else drawn in its cell
        n_img, src0, numbers0 = _state(page)
        assert n_img == 1 and src0 and numbers0.startswith("Result:")
        cell = page.locator(".jp-CodeCell").filter(has=page.locator(".lmt-explorer")).first
        assert cell.locator(".jp-OutputArea-output img").count() == 1, "the explorer's plot is drawn once"

        # exercises are not answered for the student; each check says so
        ours = [e for e in EXERCISES if e.startswith(name[:2] + ".")]
        checks = page.locator(".lmt-check")
        assert checks.count() == len(ours) > 0
        assert page.locator(".lmt-check-unanswered").count() == len(ours)
        shown = "".join(page.locator(".jp-MarkdownOutput").all_inner_texts())
        assert re.search(r"answer_\w+ = (?!None)", shown) is None, "a solution is visible"
        assert page.locator(".jp-MarkdownOutput details").count() == len(ours)  # folded solutions
        assert page.locator(".jp-MarkdownOutput details[open]").count() == 0

        _explorer(page).screenshot(path=str(artifacts / f"{name}_explorer_before.png"))
        for label, value in MOVES[name[:2]]:
            before = _state(page)
            _move(page, label, value)
            page.wait_for_function(
                """([src, text]) => { const ex = document.querySelector('.lmt-explorer');
                     const img = ex && ex.querySelector('img'); const n = ex && ex.querySelector('.lmt-numbers');
                     return img && n && img.getAttribute('src') !== src && n.innerText !== text; }""",
                arg=[before[1], before[2]],
                timeout=90_000,
                polling=300,
            )
            page.wait_for_function(KERNEL_IDLE, timeout=90_000)
            after = _state(page)
            assert after[0] == 1, "still one plot after the move"
            assert after[1] != before[1] and after[2] != before[2], (label, value)
        _explorer(page).screenshot(path=str(artifacts / f"{name}_explorer_after.png"))
        assert _problems(page) == []
    finally:
        page.close()
        lab.shutdown_kernels()
