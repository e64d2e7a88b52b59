"""The report: offline rendering from smoke and reference runs, and a real headless-browser check."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from pokerlib.tools.render import cell_options, tex_to_mathml
from pokerlib.tools.runner import ROOT, VARIANTS

HEADINGS = [
    "The task",
    "GRPO in one screen",
    "Version 1: a reward that never read the answer",
    "Constrained decoding: a trie, not a position rule",
    "Results at the original's budget",
    "Beyond the original: a budget that learns",
    "What did it learn?",
    "Ablations",
    "Discussion",
    "Appendix: the search behind v4",
]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRE_BROWSER = os.environ.get("POKERLIB_REQUIRE_BROWSER") == "1"  # set by .ci/run


def test_cell_options_are_split_off():
    source = '#| echo: false\n#| fig-cap: "A: b"\n#| tags: [parameters]\nx = 1\n#| not: an option'
    options, code = cell_options(source)
    assert options == {"echo": False, "fig-cap": "A: b", "tags": ["parameters"]}
    assert code == "x = 1\n#| not: an option"


def test_math_becomes_mathml_and_prices_do_not():
    out = tex_to_mathml("Loss $\\log \\pi$ costs $5 and $$A_i = r_i$$ done")
    assert out.count("<math") == 2 and 'display="block"' in out and "$5" in out


@pytest.fixture(scope="module")
def smoke_report(smoke_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    run_cli("render", "report.qmd", "-P", f"runs_dir={smoke_runs}", "-o", str(out))
    return out


def check_html(html: str) -> None:
    for heading in HEADINGS:
        assert f">{heading}<" in html, heading
    assert "Traceback" not in html and "Error" not in re.sub(r"<[^>]+>", "", html).split("What this reproduction")[0]
    assert "$$" not in html and html.count("<math") >= 10
    assert re.findall(r"<(?:script|link)\b[^>]*>", html) == []  # nothing to fetch: self-contained
    assert html.count('src="data:image/png;base64,') >= 5


def test_report_renders_from_smoke_runs(smoke_report):
    html = smoke_report.read_text()
    check_html(html)
    assert "2,598,960" in html or "2598960" in html
    for name in ("v1 buggy reward", "v2 balanced", "v3 balanced + KL"):
        assert name in html


def test_report_renders_from_reference_runs(tmp_path):
    expected = [f"{v}/seed{s}" for v in (*VARIANTS, "v4_extended") for s in range(3)]
    expected += ["v4_sft/seed0", "v4_sft/seed1", "search/base"]
    if not all((ROOT / "results" / run / "COMPLETE").is_file() for run in expected):
        pytest.fail("the committed reference runs are missing from results/: run `make report`")
    out = tmp_path / "report.html"
    run_cli("render", "report.qmd", "-P", "runs_dir=results", "-o", str(out))
    check_html(out.read_text())


def test_render_errors_name_the_problem(tmp_path):
    missing = run_cli("render", "report.qmd", "-P", f"runs_dir={tmp_path}", "-o", str(tmp_path / "r.html"), check=False)
    assert missing.returncode == 1 and "no runs of v1_buggy_reward" in missing.stderr and "run-all" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_in_a_real_browser(smoke_report, tmp_path):
    if not Path(CHROMIUM).is_file():
        if REQUIRE_BROWSER:
            pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does this)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(smoke_report.as_uri(), wait_until="load")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        math = page.eval_on_selector_all("math", "ms => ms.map(m => m.getBoundingClientRect().width)")
        headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent.replace('¶', '').trim())")
        text = page.inner_text("body")
        page.screenshot(path=str(ROOT / "_output" / "report-screenshot.png"), full_page=True)
        page.screenshot(path=str(tmp_path / "shot.png"))
        browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert len(widths) >= 5 and all(w > 0 for w in widths)
    assert len(math) >= 10 and all(w > 0 for w in math), math  # laid out as math, not raw TeX
    assert "\\frac" not in text and "$$" not in text
    for heading in HEADINGS:
        assert heading in headings
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def test_readme_numbers_come_from_the_committed_runs():
    import importlib.util
    import json

    from pokerlib.tools.bench import format_floor, format_table

    spec = importlib.util.spec_from_file_location("readme_assets", ROOT / "scripts" / "readme_assets.py")
    assets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(assets)
    readme = (ROOT / "README.md").read_text()
    assert assets.results_table(ROOT / "results") in readme
    assert assets.run_costs(ROOT / "results") in readme
    figure = ROOT / "results" / "accuracy_curves.png"
    assert figure.stat().st_size > 10_000 and "results/accuracy_curves.png" in readme
    bench = json.loads((ROOT / "results" / "bench.json").read_text())
    assert format_table(bench["rows"]) in readme
    assert format_floor(bench["memory_floor"]) in readme
