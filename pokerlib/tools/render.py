"""Render report.qmd to one self-contained HTML file without Quarto (SPEC section 9).

The same source Quarto renders: jupytext reads the .qmd as R Markdown, `-P key=value` parameters
are injected after the `parameters`-tagged cell (as Quarto and papermill do), nbclient executes,
and nbconvert exports. The `#|` cell options used by the report are mapped: `echo`, `output`,
`include`, `warning`, `fig-cap`. Formulas become MathML, so math renders with no script and no
network; figures are embedded; code is folded.
"""

from __future__ import annotations

import html
import re
import shutil
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
_OPTION = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*)$")
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?!\s)([^$\n]+?)(?<!\s)\$(?![\w$])")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.55; color: #1f2328;
       max-width: 980px; margin: 2rem auto; padding: 0 1.2rem; }}
h1, h2, h3 {{ line-height: 1.25; }}
h2 {{ border-bottom: 1px solid #d0d7de; padding-bottom: .25rem; margin-top: 2.2rem; }}
.anchor-link {{ display: none; }}
pre {{ background: #f6f8fa; padding: .7rem; overflow-x: auto; font-size: .85rem; }}
code {{ background: #f6f8fa; padding: 0 .2rem; }}
details.code-fold > summary {{ cursor: pointer; color: #57606a; font-size: .85rem; }}
table {{ border-collapse: collapse; margin: .8rem 0; font-size: .88rem; }}
th, td {{ border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: right; }}
img {{ max-width: 100%; }}
.caption {{ color: #57606a; font-size: .9rem; margin-top: -.3rem; }}
math[display="block"] {{ margin: 1rem 0; font-size: 1.1em; }}
.subtitle {{ color: #57606a; }}
</style>
</head>
<body>
<header><h1 class="title">{title}</h1><p class="subtitle">{subtitle}</p></header>
{body}
</body>
</html>
"""


def cell_options(source: str) -> tuple[dict, str]:
    """Split Quarto `#| key: value` lines off the top of a code cell."""
    options, lines = {}, source.splitlines()
    while lines and (match := _OPTION.match(lines[0])):
        options[match.group(1)] = yaml.safe_load(match.group(2))
        lines.pop(0)
    return options, "\n".join(lines)


def tex_to_mathml(markdown: str) -> str:
    """Replace $...$ and $$...$$ with MathML, which browsers render natively and offline."""
    from latex2mathml.converter import convert

    markdown = _DISPLAY_MATH.sub(lambda m: "\n" + convert(m.group(1).strip(), display="block") + "\n", markdown)
    return _INLINE_MATH.sub(lambda m: convert(m.group(1)), markdown)


class MathStash:
    """Swaps TeX out of Markdown for placeholders before export, and MathML in after.

    nbconvert sanitizes Markdown HTML and would mangle MathML, so formulas are put back last.
    """

    def __init__(self) -> None:
        self.formulas: list[str] = []

    def hide(self, markdown: str) -> str:
        def stash(match: re.Match) -> str:
            self.formulas.append(tex_to_mathml(match.group(0)))
            return f"MATHPLACEHOLDER{len(self.formulas) - 1}X"

        return _INLINE_MATH.sub(stash, _DISPLAY_MATH.sub(stash, markdown))

    def restore(self, html_text: str) -> str:
        return re.sub(r"MATHPLACEHOLDER(\d+)X", lambda m: self.formulas[int(m.group(1))], html_text)


def load_qmd(path: Path):
    """The .qmd as a notebook: front matter (dict) and cells with their `#|` options in metadata."""
    import jupytext

    nb = jupytext.reads(path.read_text(), fmt="Rmd")
    front = {}
    if nb.cells and nb.cells[0].cell_type == "raw":
        front = yaml.safe_load(nb.cells.pop(0).source.strip().strip("-")) or {}
    for cell in nb.cells:
        cell.metadata["tags"] = []
        if cell.cell_type == "code":
            options, cell.source = cell_options(cell.source)
            cell.metadata["quarto"] = options
            cell.metadata["tags"] = list(options.get("tags", []))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["papermill"] = {}
    return front, nb


def _apply_options(nb, defaults: dict, math: MathStash) -> None:
    """Map Quarto's cell options (front matter `execute:` defaults, then `#|` lines) onto the executed notebook."""
    import nbformat

    cells = []
    for cell in nb.cells:
        options = {**defaults, **cell.metadata.get("quarto", {})} if cell.cell_type == "code" else {}
        if cell.cell_type == "markdown":
            cell.source = math.hide(cell.source)
        if options.get("include") is False:
            continue
        if options.get("echo") is False or {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", [])):
            cell.metadata.setdefault("tags", []).append("remove_input")
        if options.get("output") is False:
            cell.outputs = []
        if options.get("warning") is False:
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
        cells.append(cell)
        if options.get("fig-cap"):
            cap = nbformat.v4.new_markdown_cell(f'<p class="caption">{html.escape(str(options["fig-cap"]))}</p>')
            cells.append(cap)
    nb.cells = cells


def _fold_code(body: str) -> str:
    pattern = re.compile(
        r'<div class="input">\s*<div class="inner_cell">\s*<div class="input_area">(.*?)</div>\s*'
        r"</div>\s*</div>",
        re.S,
    )
    return pattern.sub(lambda m: f'<details class="code-fold"><summary>Code</summary>{m.group(1)}</details>', body)


def render(
    qmd: str | Path = "report.qmd", output: str | Path | None = None, params: dict | None = None, log=print
) -> Path:
    """Execute and export `qmd` to a self-contained HTML file; returns its path."""
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    from papermill.parameterize import parameterize_notebook

    qmd = Path(qmd).resolve()
    if not qmd.is_file():
        raise FileNotFoundError(f"report source not found: {qmd}")
    output = Path(output) if output else qmd.parent / "_output" / (qmd.stem + ".html")
    front, nb = load_qmd(qmd)
    if params:
        if not any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
            raise ValueError(f"{qmd.name} has no cell tagged `parameters` to receive {', '.join(params)}")
        nb = parameterize_notebook(nb, params)
    started = time.time()
    log(f"executing {qmd.name} ...")
    NotebookClient(nb, kernel_name="python3", timeout=3600, resources={"metadata": {"path": str(qmd.parent)}}).execute()
    math = MathStash()
    _apply_options(nb, front.get("execute", {}), math)
    exporter = HTMLExporter(template_name="basic", exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.embed_images = True
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={"remove_input"}), enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    page = PAGE.format(
        title=html.escape(str(front.get("title", qmd.stem))),
        subtitle=html.escape(str(front.get("subtitle", ""))),
        body=math.restore(_fold_code(body)),
    )
    tmp = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(page)
    shutil.move(tmp, output)  # a failed render never leaves a complete-looking report
    log(f"rendered {output} in {time.time() - started:.0f} s")
    return output
