"""``lmtk site``: the course site — static HTML that opens from disk, with nothing to install.

    lmtk site                      # -> results/site/index.html
    lmtk site --smoke              # tiny runs (debug=default): a quick check of the whole site
    lmtk site --edition student    # only the student edition of the teaching notebooks

What it holds (``<results>/site/``):

* ``student/0x_*.html`` and ``teacher/0x_*.html`` — the teaching notebooks, executed once per
  build: the **teacher edition** (:func:`lmtoolkit.notebooks.edition`: solutions unfolded,
  answers filled in, checks ✓) runs through papermill, and the **student edition** is derived
  from that run (:func:`lmtoolkit.notebooks.student_from_teacher`: solutions removed, checks
  "not answered yet") — one source notebook, two handouts;
* ``notebooks/*.html`` — the other notebooks (experiment runs ``20_<experiment>``, validation
  ``1x``, figures ``30``) from their executed copies in ``<results>/notebooks/`` (made by
  ``lmtk notebooks``); the index lists the ones not run yet and the command that runs them;
* ``figures.html`` — the paper figures of ``<results>/figures/`` (``lmtk figures``) with their
  captions and provenance (sidecar YAML: datasets, config hashes, commit, command);
* ``reference.html`` — the README's reference tables (variables, configuration, experiments,
  notebooks, figures).

Offline by construction: notebooks are rendered by nbconvert's ``lab`` template with the
scripts it would fetch from a CDN (require.js, MathJax, Mermaid, the widget manager) left out
and every image embedded as ``data:``; figures are copied beside the pages; links are
relative.  Widgets are not rendered (a static page cannot run a kernel): the explorers draw
their default setting once under papermill.
"""

from __future__ import annotations

import html
import re
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import ConfigError

#: nbconvert template: the ``lab`` look without anything fetched from the network
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style>
.lmt-nav { font-family: sans-serif; padding: 8px 16px; background: #f3f5f7; border-bottom: 1px solid #ddd; }
.lmt-nav a { margin-right: 1.2em; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
<nav class="lmt-nav">{{ resources.lmt_nav }}</nav>
{%- endblock body_header -%}
"""

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; max-width: 1100px;
       margin: 0 auto; padding: 0 20px 40px; color: #1f2328; line-height: 1.45; }
nav { padding: 10px 0; border-bottom: 1px solid #ddd; margin-bottom: 16px; }
nav a { margin-right: 1.2em; }
table { border-collapse: collapse; margin: 8px 0 18px; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
code { background: #f6f8fa; padding: 1px 4px; border-radius: 3px; font-size: 90%; }
figure { margin: 18px 0 30px; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 14px; }
.muted { color: #57606a; }
details { font-size: 13px; }
"""


def _page(title: str, body: str, nav: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><nav>{nav}</nav>{body}</body></html>\n"
    )


def _nav(prefix: str = "") -> str:
    return (
        f'<a href="{prefix}index.html">Course home</a>'
        f'<a href="{prefix}figures.html">Figures</a>'
        f'<a href="{prefix}reference.html">Reference</a>'
    )


# -- notebooks -> HTML --------------------------------------------------------------------------------
def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    e = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"lmt_offline.html.j2": _TEMPLATE})])
    e.template_file = "lmt_offline.html.j2"
    e.embed_images = True
    e.exclude_input_prompt = False
    return e


def _strip_widgets(nb):
    """A static page cannot show live widgets: drop their views and saved state."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [
            o
            for o in cell.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})
        ]
    return nb


def render_notebook(nb, target: Path, title: str, nav: str) -> Path:
    """Write ``nb`` (executed) as one self-contained HTML page."""
    from .io import write_text

    body, _ = _exporter().from_notebook_node(
        _strip_widgets(nb), resources={"metadata": {"name": title}, "lmt_nav": nav}
    )
    write_text(target, body)
    return target


# -- the README's reference tables ----------------------------------------------------------------------
def readme_tables(readme: Path) -> list[tuple[str, str]]:
    """``(heading, markdown table)`` for every table of the README, under its nearest heading."""
    out, heading, block, fenced = [], "", [], False
    for line in readme.read_text(encoding="utf-8").splitlines() + [""]:
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            out.append((heading, "\n".join(block)))
            block = []
    return out


def _md_inline(text: str) -> str:
    """Markdown inline code, bold and links -> HTML (enough for table cells)."""
    parts = re.split(r"(`[^`]*`)", text)
    res = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) >= 2:
            res.append(f"<code>{html.escape(p[1:-1])}</code>")
        else:
            t = html.escape(p)
            t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
            t = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1", t)  # links: their text only (offline)
            res.append(t)
    return "".join(res)


def table_html(md_table: str) -> str:
    rows = [r.strip().strip("|").split("|") for r in md_table.splitlines() if r.strip()]
    rows = [[c.strip() for c in r] for r in rows]
    if len(rows) >= 2 and all(set(c) <= set("-: ") for c in rows[1]):
        head, body = rows[0], rows[2:]
    else:
        head, body = None, rows
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{_md_inline(c)}</th>" for c in head) + "</tr>")
    for r in body:
        out.append("<tr>" + "".join(f"<td>{_md_inline(c)}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "".join(out)


# -- figures ----------------------------------------------------------------------------------------------
def _figures_page(fig_dir: Path, site: Path) -> tuple[str, int, set[Path]]:
    """The figures page's body, how many figures it shows and the images it copied."""
    import yaml

    from .plotting.registry import FIGURES

    parts, n, copied = [], 0, set()
    (site / "figures").mkdir(parents=True, exist_ok=True)
    for spec in FIGURES.values():
        png, side = fig_dir / f"{spec.stem}.png", fig_dir / f"{spec.stem}.yaml"
        if not png.exists():
            parts.append(
                f'<h2 id="{spec.id}">{spec.id}</h2><p class="muted">{html.escape(spec.caption)} '
                f"— not made yet: <code>lmtk figures {spec.id}</code></p>"
            )
            continue
        shutil.copy2(png, site / "figures" / png.name)
        copied.add(site / "figures" / png.name)
        meta = yaml.safe_load(side.read_text()) if side.exists() else {}
        rows = "".join(
            f"<tr><td>{html.escape(str(d.get('experiment')))}</td><td><code>"
            f"{html.escape(str(d.get('config_hash')))}</code></td><td>{html.escape(str(d.get('created_at', '')))}</td>"
            f"<td>{html.escape(' '.join(d.get('overrides') or []))}</td></tr>"
            for d in meta.get("datasets", [])
        )
        prov = (
            f"<details><summary>provenance</summary><table><tr><th>experiment</th><th>config hash"
            f"</th><th>created</th><th>overrides</th></tr>{rows}</table>"
            f"<p>commit <code>{html.escape(str(meta.get('git_commit', '')))}</code>"
            f"{' (uncommitted changes)' if meta.get('git_dirty') else ''} · made by "
            f"<code>{html.escape(str(meta.get('command', '')))}</code> · "
            f"<code>{html.escape(str(meta.get('function', '')))}</code></p></details>"
        )
        parts.append(
            f'<figure id="{spec.id}"><h2>{spec.id} · {html.escape(spec.slug.replace("_", " "))}</h2>'
            f'<img src="figures/{png.name}" alt="{html.escape(spec.caption)}">'
            f"<figcaption>{html.escape(spec.caption)}{prov}</figcaption></figure>"
        )
        n += 1
    return "".join(parts), n, copied


#: what a build writes under the site directory, by subdirectory (the rest: index, figures and
#: reference pages at the top, rewritten every time)
BUILT = {"student": "*.html", "teacher": "*.html", "notebooks": "*.html", "figures": "*.png"}


def _prune(site: Path, keep: set[Path]) -> list[Path]:
    """Remove the pages and images an earlier build left that this one did not write (a
    notebook renamed or removed, an edition or a figure no longer built): the site holds what
    its index links to, no stale page.  Only the subdirectories a build writes are looked at."""
    gone = []
    for sub, pattern in BUILT.items():
        for f in sorted((site / sub).glob(pattern)):
            if f not in keep:
                f.unlink()
                gone.append(f)
    return gone


# -- the build ----------------------------------------------------------------------------------------------
def _progress(items: Sequence, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="page", file=sys.stderr)


def _title(nb, fallback: str) -> str:
    for c in nb.cells:
        if c.cell_type == "markdown" and c.source.lstrip().startswith("# "):
            return c.source.lstrip()[2:].splitlines()[0].strip()
    return fallback


def build(
    out_dir: Path | None = None,
    overrides: Sequence[str] = (),
    smoke: bool = False,
    editions: Iterable[str] = ("student", "teacher"),
    teaching: Iterable[str] | None = None,
    progress: bool | None = None,
) -> dict:
    """Build the course site; return what it holds (pages, missing runs, seconds)."""
    import nbformat

    from . import notebooks as lnb
    from .io import write_text
    from .paths import project_root
    from .plotting.make import results_dir

    t0 = time.perf_counter()
    editions = list(editions)
    for e in editions:
        if e not in lnb.EDITIONS:
            raise ConfigError("--edition", e, "student, teacher or both")
    overrides = list(overrides)
    base = results_dir(overrides)  # lmtk notebooks writes here, smoke or not
    fig_root = results_dir(overrides + (["debug=default"] if smoke else []))  # lmtk figures [debug=default]
    site = Path(out_dir) if out_dir else base / "site"
    site.mkdir(parents=True, exist_ok=True)
    progress = lnb.interactive_terminal() if progress is None else progress
    names = lnb.list_notebooks()
    teach = (
        [n for n in names if lnb.is_teaching(n)]
        if teaching is None
        else [lnb.resolve_target(n)[0] for n in teaching]
    )
    pages: dict[str, list] = {"student": [], "teacher": [], "other": []}
    written: set[Path] = set()
    executed = site / ".executed"
    for stem in _progress(teach, progress, "teaching notebooks"):
        run = lnb.execute(stem, overrides, smoke, output_dir=executed, progress=False, edition_name="teacher")
        nb = nbformat.read(run.output, as_version=4)
        title = _title(nb, stem)
        if "teacher" in editions:
            written.add(site / "teacher" / f"{stem}.html")
            render_notebook(
                nb,
                site / "teacher" / f"{stem}.html",
                f"{title} (teacher edition)",
                _nav("../") + f'<a href="../student/{stem}.html">student edition</a>',
            )
            pages["teacher"].append((stem, title))
        if "student" in editions:
            written.add(site / "student" / f"{stem}.html")
            render_notebook(
                lnb.student_from_teacher(nb), site / "student" / f"{stem}.html", title, _nav("../")
            )
            pages["student"].append((stem, title))
    # the other notebooks: their executed copies from `lmtk notebooks`
    nb_dir = base / "notebooks"
    missing = []
    others = [n for n in names if not lnb.is_teaching(n)]
    for stem, exp in lnb.targets(others) if others else []:
        run = lnb.run_name(stem, exp)
        src = nb_dir / f"{run}.ipynb"
        if not src.exists():
            missing.append((run, lnb.command_line(exp or stem, [], smoke)))
            continue
        nb = nbformat.read(src, as_version=4)
        title = _title(nb, run) if not exp else f"Experiment {exp}"
        written.add(site / "notebooks" / f"{run}.html")
        render_notebook(nb, site / "notebooks" / f"{run}.html", title, _nav("../"))
        pages["other"].append((run, title))
    # figures and reference
    fig_body, n_fig, copied = _figures_page(fig_root / "figures", site)
    write_text(
        site / "figures.html",
        _page(
            "Paper figures",
            "<h1>Paper figures</h1>"
            + (
                ""
                if n_fig
                else '<p class="muted">No figures made yet: <code>lmtk figures</code>'
                + (" debug=default" if smoke else "")
                + ", then <code>lmtk site</code> again.</p>"
            )
            + fig_body,
            _nav(),
        ),
    )
    readme = project_root() / "README.md"
    ref = (
        "".join(f"<h2>{html.escape(h)}</h2>{table_html(t)}" for h, t in readme_tables(readme))
        if readme.exists()
        else '<p class="muted">README.md not found.</p>'
    )
    write_text(
        site / "reference.html",
        _page("Reference", "<h1>Reference tables (from the README)</h1>" + ref, _nav()),
    )

    # index
    def items(kind, prefix):
        return "".join(f'<li><a href="{prefix}/{s}.html">{html.escape(t)}</a></li>' for s, t in pages[kind])

    body = [
        "<h1>lmtoolkit — live VM migration course</h1>",
        '<p class="muted">Built '
        + time.strftime("%Y-%m-%d %H:%M")
        + (" in smoke mode (tiny runs)" if smoke else "")
        + " by <code>lmtk site</code>. "
        "Pages open from disk; nothing to install. The explorers' widgets need a live kernel: "
        "open the notebooks in JupyterLab to move them.</p>",
    ]
    if pages["student"]:
        body.append("<h2>Lessons (student edition)</h2><ol start=0>" + items("student", "student") + "</ol>")
    if pages["teacher"]:
        body.append(
            "<h2>Lessons (teacher edition: solutions shown)</h2><ol start=0>"
            + items("teacher", "teacher")
            + "</ol>"
        )
    if pages["other"]:
        body.append("<h2>Experiments and validation</h2><ul>" + items("other", "notebooks") + "</ul>")
    if missing:
        body.append(
            "<details><summary>Notebooks not run yet ("
            + str(len(missing))
            + ")</summary><ul>"
            + "".join(f"<li>{html.escape(r)}: <code>{html.escape(c)}</code></li>" for r, c in missing)
            + "</ul></details>"
        )
    body.append(
        f'<h2>More</h2><ul><li><a href="figures.html">Paper figures</a> ({n_fig} made)</li>'
        '<li><a href="reference.html">Reference tables</a></li></ul>'
    )
    write_text(site / "index.html", _page("lmtoolkit course", "".join(body), _nav()))
    shutil.rmtree(executed, ignore_errors=True)
    removed = _prune(site, written | copied)
    return {
        "site": site,
        "index": site / "index.html",
        "pages": pages,
        "missing": missing,
        "removed": removed,
        "figures": n_fig,
        "seconds": time.perf_counter() - t0,
    }


def cmd_site(args) -> int:
    from .io import check_writable_dir

    if args.output:
        check_writable_dir(args.output, "--output")
    editions = ["student", "teacher"] if args.edition == "both" else [args.edition]
    info = build(
        Path(args.output) if args.output else None,
        args.overrides,
        args.smoke,
        editions,
        args.notebooks or None,
        progress=None if not args.quiet else False,
    )
    n = sum(len(v) for v in info["pages"].values())
    print(
        f"site: {n} notebook page(s), {info['figures']} figure(s), "
        f"{len(info['missing'])} notebook(s) not run yet, in {info['seconds']:.1f} s"
        + (
            f"; removed {len(info['removed'])} page(s)/image(s) of an earlier build"
            if info["removed"]
            else ""
        )
    )
    print(f"open {info['index']}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "site",
        help="build the course site (static HTML: lessons in student and "
        "teacher editions, experiments, figures, reference) under "
        "results/site/",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides for every run")
    p.add_argument("--smoke", action="store_true", help="tiny runs (debug=default): a quick build")
    p.add_argument(
        "--edition",
        choices=["student", "teacher", "both"],
        default="both",
        help="which edition of the lessons to render (default both)",
    )
    p.add_argument(
        "--notebooks",
        action="append",
        metavar="NAME",
        help="only these teaching notebooks (repeatable; default all 0x)",
    )
    p.add_argument("-o", "--output", help="directory of the site (default <results>/site)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_site)
