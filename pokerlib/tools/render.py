"""Render report.qmd to one self-contained HTML file without Quarto, on Pandoc as Quarto does.

jupytext reads the .qmd's cells, `-P key=value` parameters are injected after the `parameters`-tagged
cell (as Quarto and papermill do), nbclient executes, and the executed cells become one Pandoc markdown
document: prose as written, code folded in <details>, figures with numbered captions under them. Pandoc
(the reader Quarto uses) then adds the table of contents, section numbers, MathML and the references.
Cross-references `@fig-...` and `@sec-...` become "Figure N" / "Section N" links, as in Quarto.
"""

from __future__ import annotations

import ast
import base64
import difflib
import os
import re
import time
from pathlib import Path

import yaml

from .kernel import ipc_kernel

_OPTION = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*(?:\{([^}]*)\})?\s*$")
_XREF = re.compile(r"@((?:fig|sec)-[\w-]*\w)")
_FENCE = re.compile(r"^(```|~~~)")
TEMPLATE = Path(__file__).with_name("page_template.html")  # the page around Pandoc's body, styles included


def cell_options(source: str) -> tuple[dict, str]:
    """Split Quarto `#| key: value` lines off the top of a code cell."""
    options, lines = {}, source.splitlines()
    while lines and (match := _OPTION.match(lines[0])):
        options[match.group(1)] = yaml.safe_load(match.group(2))
        lines.pop(0)
    return options, "\n".join(lines)


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


def parameter_names(nb) -> list[str]:
    """The names the `parameters` cell assigns: the only keys `-P` may set."""
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            tree = ast.parse(cell.source)
            return [
                t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if hasattr(t, "id")
            ]
    return []


def check_params(nb, params: dict, source: str) -> None:
    """Refuse a parameter the report does not define (a typo would silently render the defaults)."""
    known = parameter_names(nb)
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"{source} has no parameter {key!r}: {hint}its parameters are {', '.join(known) or 'none'}"
            )


def execute(nb, cwd: Path) -> None:
    """Run every cell in a fresh kernel started in `cwd`; a failing cell raises CellExecutionError."""
    from nbclient import NotebookClient

    with ipc_kernel() as km:
        NotebookClient(nb, km=km, timeout=3600, resources={"metadata": {"path": str(cwd)}}).execute()


def number_figures(nb) -> dict[str, int]:
    """Figure labels in order of appearance -> their numbers (cells labelled `fig-...`)."""
    labels = [str(c.metadata.get("quarto", {}).get("label", "")) for c in nb.cells if c.cell_type == "code"]
    labels = [label for label in labels if label.startswith("fig-")]
    return {label: i for i, label in enumerate(labels, 1)}


def number_sections(markdown: str) -> dict[str, str]:
    """`{#sec-...}` heading ids -> their numbers as Pandoc will print them (top level: the shallowest)."""
    headings, in_fence = [], False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (m := _HEADING.match(line)):
            attrs = m.group(3) or ""
            headings.append((len(m.group(1)), ".unnumbered" in attrs or "-}" in attrs, re.search(r"#([\w-]+)", attrs)))
    if not headings:
        return {}
    top, counters, numbers = min(level for level, _, _ in headings), [0] * 7, {}
    for level, unnumbered, ident in headings:
        if unnumbered:
            continue
        counters[level - top] += 1
        counters[level - top + 1 :] = [0] * (6 - (level - top))
        if ident and ident.group(1).startswith("sec-"):
            numbers[ident.group(1)] = ".".join(str(n) for n in counters[: level - top + 1])
    return numbers


def resolve_xrefs(markdown: str, figures: dict[str, int], sections: dict[str, str]) -> str:
    """`@fig-x` -> [Figure N](#fig-x) and `@sec-x` -> [Section N](#sec-x); an unknown label is an error."""

    def link(match: re.Match) -> str:
        label = match.group(1)
        if label in figures:
            return f"[Figure {figures[label]}](#{label})"
        if label in sections:
            return f"[Section {sections[label]}](#{label})"
        raise ValueError(f"cross-reference @{label} points to no figure or section")

    return _XREF.sub(link, markdown)


def _code_block(code: str, language: str = "") -> str:
    fence = "````" if "```" in code else "```"
    return f"{fence}{language}\n{code.rstrip()}\n{fence}"


def _output_markdown(output, figure: tuple[str, int, str] | None, images: list[bytes]) -> str | None:
    """One cell output as markdown; a PNG becomes a numbered figure whose image is filled in after Pandoc."""
    if output.output_type == "stream":
        return _code_block(output.text) if output.name == "stdout" and output.text.strip() else None
    data = output.get("data", {})
    if "image/png" in data:
        if figure is None:
            raise ValueError("a cell draws a figure without `#| label: fig-...` and `#| fig-cap`: give it both")
        label, number, caption = figure
        images.append(base64.b64decode(data["image/png"]))
        return f"![Figure {number}: {caption}](IMAGE{len(images) - 1}.png){{#{label}}}"
    if "text/markdown" in data:
        return data["text/markdown"]
    if "text/html" in data:
        return f"```{{=html}}\n{data['text/html']}\n```"
    if "text/plain" in data:
        return _code_block(data["text/plain"])
    return None


def to_markdown(nb, defaults: dict, figures: dict[str, int]) -> tuple[str, list[bytes]]:
    """The executed notebook as one Pandoc markdown document and the PNG images it refers to."""
    parts, images = [], []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            continue
        if cell.cell_type != "code" or "injected-parameters" in cell.metadata.get("tags", []):
            continue
        options = {**defaults, **cell.metadata.get("quarto", {})}
        if options.get("include") is False:
            continue
        if options.get("echo", True) is not False and cell.source.strip():
            code = _code_block(cell.source, "python")
            fold = options.get("code-fold", False)
            parts.append(
                f'<details class="code-fold">\n<summary>Code</summary>\n\n{code}\n\n</details>' if fold else code
            )
        if options.get("output") is False:
            continue
        label = str(options.get("label", ""))
        figure = (label, figures[label], str(options.get("fig-cap", ""))) if label in figures else None
        for output in cell.outputs:
            if options.get("warning") is False and output.output_type == "stream" and output.name == "stderr":
                continue
            if (text := _output_markdown(output, figure, images)) is not None:
                parts.append(text)
    return "\n\n".join(parts) + "\n", images


def pandoc_html(markdown: str, front: dict, cwd: Path) -> str:
    """Markdown -> a standalone HTML page through Pandoc: TOC, numbered sections, MathML, references."""
    import pypandoc

    fmt = front.get("format", {}).get("html", {})
    args = ["--standalone", f"--template={TEMPLATE}", "--mathml", "--section-divs", "--wrap=none"]
    args += ["--toc", "--toc-depth=2"] if fmt.get("toc") else []
    args += ["--number-sections"] if fmt.get("number-sections") else []
    if front.get("bibliography"):
        args += ["--citeproc", f"--bibliography={cwd / front['bibliography']}", "--metadata=link-citations:true"]
    meta = {k: front[k] for k in ("title", "subtitle") if k in front}
    document = "---\n" + yaml.safe_dump(meta, allow_unicode=True) + "---\n\n" + markdown
    return pypandoc.convert_text(document, "html5", format="markdown", extra_args=args, cworkdir=str(cwd))


def check_output(output: Path) -> None:
    """Before any cell runs: the report's file can be written where asked (not a folder, a writable place)."""
    if output.is_dir():
        raise ValueError(f"-o {output} is a folder: name the report's file, e.g. -o {output / 'report.html'}")
    probe = output.with_name(output.name + ".partial")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write the report to {output} ({err.strerror}): choose a writable -o") from None


def check_pandoc() -> None:
    """Before any cell runs: Pandoc, which turns the executed report into HTML, is there."""
    import pypandoc

    try:
        pypandoc.get_pandoc_version()
    except OSError:
        raise ValueError("Pandoc is not installed, and the report's HTML is made by it: pip install -c "
                         "requirements.txt pypandoc_binary (make setup installs it)") from None


def render(
    qmd: str | Path = "report.qmd", output: str | Path | None = None, params: dict | None = None, log=print
) -> Path:
    """Execute and export `qmd` to a self-contained HTML file; returns its path."""
    from papermill.parameterize import parameterize_notebook

    qmd = Path(qmd).resolve()
    if not qmd.is_file():
        raise FileNotFoundError(f"report source not found: {qmd}")
    output = Path(output) if output else qmd.parent / "_output" / (qmd.stem + ".html")
    check_output(output)
    check_pandoc()
    front, nb = load_qmd(qmd)
    if params:
        check_params(nb, params, qmd.name)
        nb = parameterize_notebook(nb, params)
    started = time.time()
    log(f"executing {qmd.name} ...")
    execute(nb, qmd.parent)
    figures = number_figures(nb)
    html_format = (front.get("format") or {}).get("html") or {}
    defaults = {"code-fold": html_format.get("code-fold", False), **front.get("execute", {})}  # cells override both
    markdown, images = to_markdown(nb, defaults, figures)
    markdown = resolve_xrefs(markdown, figures, number_sections(markdown))
    page = pandoc_html(markdown, front, qmd.parent)
    for i, png in enumerate(images):
        page = page.replace(f'src="IMAGE{i}.png"', f'src="data:image/png;base64,{base64.b64encode(png).decode()}"')
    tmp = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(page)
    os.replace(tmp, output)  # a failed render never leaves a complete-looking report
    log(f"rendered {output} in {time.time() - started:.0f} s")
    return output
