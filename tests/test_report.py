"""The report: the Pandoc renderer's parts, the page rendered from the committed runs, and a headless browser."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from pokerlib.tools.params import ROOT
from pokerlib.tools.render import (
    cell_options,
    check_params,
    load_qmd,
    number_sections,
    parameter_names,
    resolve_xrefs,
)

HEADINGS = [
    "Summary",
    "The task",
    "The objective",
    "Version 1: a reward that never read the answer",
    "Constrained decoding: a trie, not a position rule",
    "Results at the original's budget",
    "Beyond the original: why GRPO learns less than supervised learning",
    "What did it learn?",
    "Class weights under std scaling",
    "Discussion",
    "References",
    "Appendix: the search",
]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRE_BROWSER = os.environ.get("POKERLIB_REQUIRE_BROWSER") == "1"  # set by .ci/run
SCREENSHOTS = ROOT / "_output" / "screenshots"
# Quarto's documented document options (html format and execution) that the report may use.
QUARTO_OPTIONS = {
    "title", "subtitle", "format", "execute", "bibliography", "link-citations", "jupyter",
    "toc", "number-sections", "code-fold", "embed-resources", "html-math-method", "theme",
    "echo", "warning",
}  # fmt: skip


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_cell_options_are_split_off():
    source = '#| echo: false\n#| fig-cap: "A: b"\n#| tags: [parameters]\nx = 1\n#| not: an option'
    options, code = cell_options(source)
    assert options == {"echo": False, "fig-cap": "A: b", "tags": ["parameters"]}
    assert code == "x = 1\n#| not: an option"


def test_sections_and_figures_are_referenced_by_number():
    markdown = (
        "## Summary {.unnumbered}\n\n## A {#sec-a}\n\n```\n## not a heading\n```\n\n### B {#sec-b}\n\n## C {#sec-c}"
    )
    sections = number_sections(markdown)
    assert sections == {"sec-a": "1", "sec-b": "1.1", "sec-c": "2"}
    text = resolve_xrefs("see @sec-b and @fig-x, mail a@b.c", {"fig-x": 3}, sections)
    assert text == "see [Section 1.1](#sec-b) and [Figure 3](#fig-x), mail a@b.c"
    with pytest.raises(ValueError, match="@fig-missing"):
        resolve_xrefs("@fig-missing.", {}, sections)


def test_report_options_and_parameters_cell_follow_quarto():
    front, nb = load_qmd(ROOT / "report.qmd")
    used = set(front) | set(front["format"]["html"]) | set(front["execute"])
    assert used <= QUARTO_OPTIONS, used - QUARTO_OPTIONS
    assert front["format"]["html"]["toc"] and front["format"]["html"]["number-sections"]
    first = next(c for c in nb.cells if c.cell_type == "code")  # papermill injects right after it
    assert first.metadata["quarto"] == {"label": "params", "tags": ["parameters"], "include": False}
    assert parameter_names(nb) == ["runs_dir", "extra_runs"]
    check_params(nb, {"runs_dir": "x"}, "report.qmd")
    with pytest.raises(ValueError, match="did you mean 'runs_dir'"):
        check_params(nb, {"run_dir": "x"}, "report.qmd")
    assert yaml.safe_load((ROOT / "_quarto.yml").read_text())["format"]["html"]["toc"]


def test_prose_states_no_number_by_hand():
    """Numbers in the hand-written prose are names or constants checked here; the rest is generated."""
    _, nb = load_qmd(ROOT / "report.qmd")
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for pattern in (r"```.*?```", r"\$\$.*?\$\$", r"\$[^$\n]+\$", r"`[^`\n]+`", r"\[@[^]]+\]", r"@\w+", r"\{#[^}]+\}"):
        text = re.sub(pattern, " ", text, flags=re.S)
    text = text.replace("SmolLM2-135M", " ").replace("A-2-3-4-5", " ").replace("Q-K-A-2-3", " ")
    text = re.sub(r"Version 1|\bv[1-4]\b", " ", text)  # names: of the first version, and of the variants
    from analysis.formatting import t975
    from pokerlib import LABELS

    allowed = {
        "5-card": len("2H 2D 2C 9S 9H".split()) == 5,
        "95%": t975(3) == 4.303,  # the intervals' level: the 0.975 quantile of Student's t
        "3": math.log2(len(LABELS)) == 3,  # bits of a perfect answer over eight balanced labels
        "0": True,
    }
    stated = re.findall(r"\S*\d\S*", text)
    assert stated and {s.rstrip(".,") for s in stated} <= {k for k, ok in allowed.items() if ok}, stated


@pytest.fixture(scope="module")
def reference_report(tmp_path_factory) -> Path:
    """The report rendered from the committed reference runs (about two minutes on a shared 2-core machine)."""
    if not (ROOT / "results" / "v2_balanced" / "seed0" / "COMPLETE").is_file():
        pytest.fail("the committed reference runs are missing from results/")
    out = tmp_path_factory.mktemp("report") / "report.html"
    proc = run_cli("render", "report.qmd", "-P", "runs_dir=results", "-o", str(out))
    assert "TCP without encryption" not in proc.stdout + proc.stderr
    return out


def check_html(html: str) -> None:
    for heading in HEADINGS:
        assert f"{heading}</h2>".replace("'", "\u2019") in html, heading  # Pandoc's typographic apostrophe
    assert "Traceback" not in html and "?@" not in html
    assert "$$" not in html and html.count("<math") >= 10
    assert re.findall(r"<(?:script|link)\b[^>]*>", html) == []  # nothing to fetch: self-contained
    assert html.count('src="data:image/png;base64,') >= 8
    assert 'id="TOC"' in html and 'class="header-section-number"' in html and 'id="refs"' in html
    assert "arXiv:2402.03300" in html and "2602.02710" in html
    for function in ("group_advantages", "grpo_loss"):  # the library's code, folded
        assert re.search(rf"pokerlib.objectives.{function}</code>\s*</summary>", html), function
    assert html.count('<details class="code-fold">') >= 10  # every shown cell folded
    assert "injected-parameters" not in html and "runs_dir = " not in html  # both parameter cells hidden


def test_report_renders_from_reference_runs(reference_report):
    check_html(reference_report.read_text())


def test_report_renders_from_smoke_runs(smoke_runs, tmp_path):
    out = tmp_path / "report.html"
    run_cli("render", "report.qmd", "-P", f"runs_dir={smoke_runs}", "-o", str(out))
    check_html(out.read_text())


def t_interval(values: list[float]) -> str:
    """mean ± half-width of the 95% t interval, computed here independently of analysis/."""
    quantile = {2: 12.706, 3: 4.303}[len(values)]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.3f}\u00a0±\u00a0{quantile * sd / math.sqrt(len(values)):.3f}"


def test_summary_numbers_and_ranking_match_the_runs(reference_report):
    from analysis.variants import GRPO_BEST, REWARD_ONLY_BEST, SFT

    html = reference_report.read_text()
    summary = html[html.index('id="summary"') : html.index('id="sec-task"')]

    def accuracy(variant: str) -> tuple[str, float]:
        folders = sorted((ROOT / "results" / variant).glob("seed*/eval.json"))
        values = [json.loads(f.read_text())["finetuned"]["accuracy"] for f in folders]
        return t_interval(values), sum(values) / len(values)

    for variant in ("v2_balanced", "v3_balanced_kl", GRPO_BEST, REWARD_ONLY_BEST, SFT):
        stated, _ = accuracy(variant)
        assert f"<strong>{stated}</strong>" in summary, (variant, stated)
    rewards = [json.loads(f.read_text())["finetuned"]["mean_reward"] for f in sorted(
        (ROOT / "results" / "v1_buggy_reward").glob("seed*/eval.json"))]  # fmt: skip
    assert f"<strong>{t_interval(rewards)}</strong>" in summary
    ranking = "below" if accuracy(GRPO_BEST)[1] < accuracy(SFT)[1] else "above"
    assert f"{ranking} the supervised yardstick" in text_of(summary)
    v2, v4 = (yaml.safe_load((ROOT / f"results/{v}/seed0/params.yaml").read_text()) for v in ("v2_balanced", GRPO_BEST))
    for key, words in (("num_steps", "steps"), ("batch_size", "prompts per step"), ("learning_rate", "learning rate")):
        more = {True: ("more", "higher"), False: ("fewer", "lower")}[v4[key] > v2[key]]
        assert v4[key] == v2[key] or any(f"{m} {words}" in text_of(summary) for m in more), key


def test_render_errors_name_the_problem(tmp_path):
    out = tmp_path / "r.html"
    typo = run_cli("render", "report.qmd", "-P", "run_dir=results", "-o", str(out), check=False)
    assert typo.returncode == 1 and "did you mean 'runs_dir'" in typo.stderr
    missing = run_cli("render", "report.qmd", "-P", f"runs_dir={tmp_path}", "-o", str(out), check=False)
    assert missing.returncode == 1 and "no runs of v1_buggy_reward" in missing.stderr and "run-all" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert not out.exists()


PAGE_CHECKS = """() => {
  const vw = document.documentElement.clientWidth, main = document.querySelector('main').getBoundingClientRect();
  const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > vw + 1)
    .map(e => e.tagName + (e.id ? '#' + e.id : ''));
  const tables = [...document.querySelectorAll('main table')]
    .filter(t => t.getBoundingClientRect().right > main.right + 1)
    .map(t => t.querySelector('th').textContent);
  const toc = [...document.querySelectorAll('#TOC a')].map(a => a.getAttribute('href'))
    .filter(h => !h.startsWith('#') || !document.getElementById(decodeURIComponent(h.slice(1))));
  const figures = [...document.querySelectorAll('figure')].map(f => f.querySelector('figcaption')?.textContent ?? '');
  const loose = [...document.querySelectorAll('img')].filter(i => !i.closest('figure')).length;
  const images = [...document.querySelectorAll('img')].map(i => i.complete ? i.naturalWidth : 0);
  const maths = [...document.querySelectorAll('math')].map(m => m.getBoundingClientRect().width);
  return {wide, tables, toc, tocCount: document.querySelectorAll('#TOC a').length, figures, loose, images, maths,
          scrollWidth: document.documentElement.scrollWidth, vw};
}"""


def test_report_in_a_real_browser(reference_report):
    if not Path(CHROMIUM).is_file():
        if REQUIRE_BROWSER:
            pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does this)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    from analysis import load_seeds
    from analysis.story import headline
    from analysis.variants import EXTENDED_VARIANTS, ORIGINAL_VARIANTS

    groups = {v: load_seeds(ROOT / "results", v) for v in (*ORIGINAL_VARIANTS, *EXTENDED_VARIANTS)}
    numbers = [v for k, v in headline(groups).items() if k.endswith(("accuracy", " reward"))]
    errors, requests = [], []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]  # fmt: skip
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(reference_report.as_uri(), wait_until="load")
        page.screenshot(path=str(SCREENSHOTS / "first-screen.png"))
        visible = page.evaluate(
            """(numbers) => numbers.map(n => [...document.querySelectorAll('#summary strong')]
                 .some(s => s.textContent === n && s.getBoundingClientRect().bottom <= window.innerHeight))""",
            numbers,
        )
        result = page.evaluate(PAGE_CHECKS)
        for i, figure in enumerate(page.query_selector_all("figure"), 1):
            figure.screenshot(path=str(SCREENSHOTS / f"figure-{i}.png"))
        browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert all(visible), dict(zip(numbers, visible, strict=True))  # the headline numbers on the first screen
    assert result["tocCount"] >= len(HEADINGS) and result["toc"] == []
    assert result["wide"] == [] and result["scrollWidth"] <= result["vw"], result["wide"]
    assert result["tables"] == [], result["tables"]
    assert len(result["figures"]) >= 8 and result["loose"] == 0
    assert [int(re.match(r"Figure (\d+):", c).group(1)) for c in result["figures"]] == list(
        range(1, len(result["figures"]) + 1)
    )
    assert all(w > 0 for w in result["images"])
    assert len(result["maths"]) >= 10 and all(w > 0 for w in result["maths"])


def _readme_assets():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_assets", ROOT / "scripts" / "readme_assets.py")
    assets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(assets)
    return assets


def test_readme_numbers_come_from_the_committed_runs():
    from pokerlib.tools.bench import format_floor, format_table

    assets = _readme_assets()
    readme = (ROOT / "README.md").read_text()
    assert assets.fill(readme, assets.blocks(ROOT / "results")) == readme  # every generated block is current
    figure = ROOT / "results" / "accuracy_curves.png"
    assert figure.stat().st_size > 10_000 and "results/accuracy_curves.png" in readme
    bench = json.loads((ROOT / "results" / "bench.json").read_text())
    for shape in {r["shape"] for r in bench["rows"]}:  # one table per shape: the original's and v4's
        assert format_table([r for r in bench["rows"] if r["shape"] == shape]) in readme
    assert format_floor(bench["memory_floor"]) in readme
    one_thread = json.loads((ROOT / "results" / "bench_v4_1thread.json").read_text())
    step = next(r for r in one_thread["rows"] if r["method"] == "ours_constrained")
    assert f"| {one_thread['threads']} | " in readme and f"{step['seconds']:.2f} s" in readme


def test_regeneration_time_counts_only_the_stretches_with_runs_going(tmp_path):
    """An interrupted `make reference` resumed later: the pause between sittings is not wall time it needed."""
    assets = _readme_assets()

    def run(folder: str, started: str, finished: str, version: str = "abc (git 1)", wall: float = 0.0) -> None:
        path = tmp_path / folder
        path.mkdir(parents=True)
        (path / "STARTED").write_text(json.dumps({"started": f"2026-11-30 {started}"}))
        (path / "COMPLETE").write_text(json.dumps({"finished": f"2026-11-30 {finished}", "code_version": version}))
        (path / "env.json").write_text(json.dumps({"wall_seconds": wall, "torch_threads": 1}))
        (path / "params.yaml").write_text("num_steps: 100\n")

    run("v4_maxrl/seed0", "06:00:00", "06:30:00")
    run("v4_maxrl/seed1", "06:10:00", "06:50:00")  # overlaps the first: one stretch 06:00-06:50
    run("v2_balanced/seed0", "08:00:00", "08:10:00")  # after a pause of 70 minutes
    text = assets.regeneration(tmp_path)
    assert "All 3 runs were made by one version of the library (abc), in 2 sittings" in text
    assert "06:00–06:50, 2026-11-30 08:00–08:10): 60 minutes of wall time" in text
    run("v2_balanced/seed1", "08:05:00", "08:20:00", version="def (git 2)")
    assert "These 4 runs were made by 2 versions" in assets.regeneration(tmp_path)

    assert assets.search_cost(tmp_path) == ""
    run("search/grpo/seed0", "00:00:00", "21:00:00", wall=600)  # started at 20:50 by its own wall time
    run("search/grpo/seed1", "00:00:00", "21:05:00", wall=900)  # 20:50-21:05, overlapping
    run("search/rft/seed0", "00:00:00", "22:00:00", wall=300)  # 21:55-22:00
    text = assets.search_cost(tmp_path)
    assert "3 runs of 100 steps, 1 torch thread(s) each): 30 minutes of run time, 20 minutes of wall time" in text
