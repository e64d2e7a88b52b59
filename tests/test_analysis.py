"""The report's arithmetic: intervals over seeds, mutual information, and reading seed folders."""

import math

import pandas as pd
import pytest
from conftest import fake_run, record

from analysis import (
    best_constant_accuracy,
    format_ci,
    load_seeds,
    mean_ci,
    mutual_information_bits,
    shuffled_mutual_information_bits,
)
from pokerlib import LABELS


def test_mean_ci_is_the_student_t_interval():
    mean, half = mean_ci([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2)
    assert half == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-4)  # t(0.975, 2 df) * sd / sqrt(n)
    assert mean_ci([2.0, 2.0]) == (2.0, 0.0)
    assert math.isnan(mean_ci([0.5])[1])
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])
    # non-breaking spaces: "0.200 ±" never ends a line with "0.248" on the next
    assert format_ci([0.1, 0.2, 0.3]) == "0.200\u00a0±\u00a00.248" and format_ci([0.5], 2) == "0.50"


def confusion(pairs: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    table = {gold: dict.fromkeys([*LABELS, "invalid"], 0) for gold in LABELS}
    for (gold, answer), n in pairs.items():
        table[gold][answer] = n
    return table


def test_mutual_information_of_perfect_constant_and_prior_answers():
    perfect = confusion({(label, label): 50 for label in LABELS})
    assert mutual_information_bits(perfect) == pytest.approx(3.0)  # log2(8)
    constant = confusion({(label, "one pair"): 50 for label in LABELS})
    assert mutual_information_bits(constant) == pytest.approx(0.0)
    # A prior that ignores the hand: every class split 30/20 between two labels -> independent, 0 bits.
    prior = confusion({**{(g, "high card"): 30 for g in LABELS}, **{(g, "flush"): 20 for g in LABELS}})
    assert mutual_information_bits(prior) == pytest.approx(0.0, abs=1e-12)
    # Two equally likely classes told apart perfectly (the other six absent): exactly 1 bit.
    half = confusion({("high card", "high card"): 50, ("one pair", "one pair"): 50})
    assert mutual_information_bits(half) == pytest.approx(1.0)
    assert best_constant_accuracy(perfect) == pytest.approx(1 / 8)


def test_shuffled_mutual_information_is_the_estimators_floor():
    gold = [label for label in LABELS for _ in range(50)]
    answers = list(gold)  # perfect answers: 3 bits; shuffled, only the plug-in bias remains
    floor = shuffled_mutual_information_bits(gold, answers, permutations=20)
    assert 0.05 < floor < 0.3  # about (8-1)(8-1) / (2 * 400 * ln 2) = 0.09 bits
    assert floor == shuffled_mutual_information_bits(gold, answers, permutations=20)  # seeded
    # A slice of a table keeps its row labels; pairs must still be made by position.
    table = pd.DataFrame({"label": ["flush"] * 10 + gold, "predicted": ["flush"] * 10 + answers}).iloc[10:]
    assert shuffled_mutual_information_bits(table["label"], table["predicted"], permutations=20) == floor


def test_load_seeds_orders_by_seed_number_and_refuses_incomplete_runs(tmp_path):
    for seed in (10, 2):
        fake_run(tmp_path / "v2_balanced" / f"seed{seed}", seed)
    assert [r.params["seed"] for r in load_seeds(tmp_path, "v2_balanced")] == [2, 10]
    (tmp_path / "v2_balanced" / "seed2" / "COMPLETE").unlink()
    with pytest.raises(FileNotFoundError, match="is not a complete run"):
        load_seeds(tmp_path, "v2_balanced")
    with pytest.raises(FileNotFoundError, match="no runs of v3_balanced_kl"):
        load_seeds(tmp_path, "v3_balanced_kl")


def test_one_number_format_and_plain_tables():
    from analysis.formatting import ci, num, table_html

    assert (
        num(0.3475) == "0.347"
        and num(0.3485) == ci([0.3485])
        and num(float("nan")) == "–"
        and num(2598960) == "2,598,960"
    )
    html = table_html(pd.DataFrame({"variant": ["a", "b"], "accuracy": [0.12345, 1.0]}))
    assert html.count("<tr>") == 3 and html.count("<th>") == 2  # one header row, no index column
    assert "<td>0.123</td>" in html and "<td>1.000</td>" in html


def test_every_variant_has_one_name_and_one_colour():
    from analysis import variants

    roles = {*variants.ORIGINAL_VARIANTS, *variants.EXTENDED_VARIANTS, variants.GRPO_BEST, variants.SFT}
    assert roles <= set(variants.STYLES)
    assert len(set(variants.NAMES.values())) == len(variants.STYLES)
    assert len(set(variants.COLORS.values())) == len(variants.STYLES)
    assert variants.name("search/base") == "search/base" and variants.color("other") is None


def test_objective_weight_figure_draws_the_library_curves():
    from analysis.figures import objective_weights
    from pokerlib.objectives import objective_weight

    fig = objective_weights()
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    grpo = lines["GRPO: √(p/(1−p))"]
    p, c = grpo.get_xdata()[100], grpo.get_ydata()[100]
    assert c == pytest.approx(objective_weight(p, "grpo")) == pytest.approx(math.sqrt(p / (1 - p)))
    assert set(lines["SFT: 1"].get_ydata()) == {1.0}


def test_mean_curve_ends_where_the_first_seed_stopped():
    """A seed that stopped early must not leave the 'mean of 3 seeds' line to the others."""
    from matplotlib import pyplot as plt

    from analysis.figures import seed_curves

    logs = [pd.DataFrame({"step": range(1, n + 1), "reward": [float(i)] * n}) for i, n in enumerate((6, 4, 6))]
    runs = [record(log=log) for log in logs]
    fig, ax = plt.subplots()
    seed_curves(ax, runs, "reward", 1, "v4_grpo")
    mean, *seeds = ax.get_lines()
    assert list(mean.get_xdata()) == [1, 2, 3, 4] and set(mean.get_ydata()) == {1.0}  # (0 + 1 + 2) / 3
    assert [len(line.get_xdata()) for line in seeds] == [6, 6, 6]  # the seeds' own lines run to their ends
    plt.close(fig)


def test_learned_names_the_largest_confusion_and_the_labels_never_given():
    from analysis import story

    row = dict.fromkeys([*LABELS, "invalid"], 0)
    confusion = {label: {**row, label: 5} for label in LABELS}  # every hand right ...
    confusion["straight"] = {**row, "high card": 4, "one pair": 1}  # ... but straights: 4 called high card
    run = record(params={"seed": 2}, eval={"finetuned": {"confusion": confusion}})
    assert story.learned({"v4_grpo": [run]}) == (
        "*v4 GRPO* (seed 2) calls 4 of its 5 *straight* hands *high card*, and never answers *straight*."
    )


def test_fallen_types_lists_the_hand_types_a_run_lost_with_their_peaks():
    from analysis import story

    frames = {
        "v4_grpo": pd.DataFrame({"gold_prob/flush": [0.1, 0.9, 0.005], "gold_prob/straight": [0.1, 0.5, 0.6]}),
        "v4_maxrl": pd.DataFrame({"gold_prob/flush": [0.1, 0.3, 0.4], "gold_prob/straight": [0.1, 0.5, 0.7]}),
    }
    assert story.fallen_types(frames) == (
        "Seed 0 of *v4 GRPO* ended with 1 of 2 hand types below p(gold) = 0.01, each after having risen: "
        "*flush* (peak 0.90); the lowest final p(gold) of any hand type was 0.40 in *v4 MaxRL*."
    )


def test_controlled_pair_only_when_the_parameters_differ_in_the_advantage_alone():
    from analysis import story

    def runs(**params):
        return [record(params={"seed": 0, "learning_rate": 1e-4, **params})]

    same = {"v4_grpo": runs(advantage="grpo"), "v4_maxrl": runs(advantage="maxrl")}
    assert "differ in `advantage` alone" in story.controlled_pair(same)
    other = {"v4_grpo": runs(advantage="grpo"), "v4_maxrl": runs(advantage="maxrl", learning_rate=1e-5)}
    assert story.controlled_pair(other) == ""
