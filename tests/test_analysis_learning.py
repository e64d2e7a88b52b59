"""The objectives story read from runs: weights on lost prompts, time to accuracy, the search table."""

import math

import pandas as pd
import pytest

from analysis import tables
from analysis.learning import (
    best_of,
    group_weight,
    time_to_target,
    weight_on_lost_prompts,
)
from analysis.runs import load_seeds
from pokerlib.objectives import objective_weight
from pokerlib.oracle import LABELS
from pokerlib.tools.params import ROOT


def log_with_gold_probs(rows: list[dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{f"gold_prob/{label}": row.get(label, 0.5) for label in LABELS} for row in rows])


def grpo_weight_by_hand(p: float, g: int) -> float:
    """GRPO's c_G(p) with the unbiased group std (its small epsilon neglected): E_K[sqrt(K(G-K)(G-1)/G^3)] / (1-p)."""
    mean = sum(
        math.comb(g, k) * p**k * (1 - p) ** (g - k) * math.sqrt(k * (g - k) * (g - 1) / g**3) for k in range(g + 1)
    )
    return mean / (1 - p)


def test_group_weight_has_the_closed_forms_of_each_objective_and_tends_to_c_of_p():
    g = 256
    for p in (0.001, 0.01, 0.3, 0.9):
        assert group_weight(p, "maxrl", g) == pytest.approx(1 - (1 - p) ** (g - 1), rel=1e-9)
        assert group_weight(p, "rft_normalized", g) == pytest.approx(1 - (1 - p) ** g, rel=1e-9)
        assert group_weight(p, "dr_grpo", g, weight=2.5) == pytest.approx(2.5 * p * (g - 1) / g, rel=1e-9)
        assert group_weight(p, "grpo", g) == pytest.approx(grpo_weight_by_hand(p, g), rel=3e-3)  # epsilon: std >= 1/16
        assert group_weight(p, "sft", g) == 1.0
        assert group_weight(p, "online_rft", g, weight=2.5) == pytest.approx(p, rel=1e-9)
        # min(1, x) + max(1, x) = 1 + x for every K, and MaxRL's advantage times x is GRPO's times sqrt(G/(G-1))
        neglect, overpush = group_weight(p, "maxrl_neglect", g), group_weight(p, "maxrl_overpush", g)
        grpo_unscaled = grpo_weight_by_hand(p, g) * math.sqrt(g / (g - 1))
        assert neglect + overpush == pytest.approx(group_weight(p, "maxrl", g) + grpo_unscaled, rel=3e-3)
        assert neglect <= group_weight(p, "maxrl", g) <= overpush
    assert group_weight(0.3, "grpo", 4096) == pytest.approx(objective_weight(0.3, "grpo"), rel=1e-3)  # G -> infinity
    # bounded where c(p) is not: a logged probability that rounded past 1 gives GRPO's largest weight, (G-1)/sqrt(G)
    assert group_weight(1.000001, "grpo", g) == pytest.approx((g - 1) / math.sqrt(g), rel=3e-3)
    assert group_weight(0.0, "maxrl", g) == 0.0  # no rewarded sample, no update


def test_grpo_puts_little_weight_on_a_lost_prompt_and_maxrl_nearly_its_fair_share():
    g = 256
    log = log_with_gold_probs([{"flush": 0.001}, {}])
    grpo = weight_on_lost_prompts(log, "grpo", g)
    c_lost, c_other = grpo_weight_by_hand(0.001, g), grpo_weight_by_hand(0.5, g)  # the 7 others have p = 0.5
    assert grpo[0] == pytest.approx(c_lost / (c_lost + 7 * c_other), rel=3e-3)
    assert grpo[1] == 0.0  # no prompt lost
    maxrl_lost, maxrl_other = 1 - 0.999 ** (g - 1), 1 - 0.5 ** (g - 1)
    assert weight_on_lost_prompts(log, "maxrl", g)[0] == pytest.approx(maxrl_lost / (maxrl_lost + 7 * maxrl_other))
    # dr_grpo: c = w p (G-1)/G, with flush's weight 2.0 and the others' own weights
    weights = {
        "high card": 1.0,
        "one pair": 1.0,
        "two pair": 1.5,
        "three of a kind": 2.0,
        "straight": 2.0,
        "flush": 2.0,
        "full house": 2.5,
        "four of a kind": 3.0,
    }
    others = sum(0.5 * w for label, w in weights.items() if label != "flush")
    assert weight_on_lost_prompts(log, "dr_grpo", g)[0] == pytest.approx(2.0 * 0.001 / (2.0 * 0.001 + others))


def test_time_to_accuracy_sums_training_seconds_up_to_the_first_evaluation_at_the_target():
    log = pd.DataFrame(
        {
            "step": [1, 2, 3, 4],
            "step_seconds": [1.0, 2.0, 3.0, 4.0],
            "val_accuracy": [float("nan"), 0.5, float("nan"), 0.9],
        }
    )
    assert time_to_target(log, 0.85) == (10.0, 0.9, 4, True)
    assert time_to_target(log, 0.4) == (3.0, 0.5, 2, True)
    assert time_to_target(log, 0.95) == (10.0, 0.9, 4, False)  # never reached: the best, and when
    with pytest.raises(ValueError, match="no validation accuracy"):
        time_to_target(log.drop(columns="val_accuracy"), 0.5)


def test_search_table_on_the_smoke_search(smoke_runs):
    search = {key: load_seeds(smoke_runs / "search", key) for key in ("grpo", "maxrl")}
    table = tables.search(search, ROOT / "params" / "search.yaml")
    assert set(table["setting"]) == {"grpo", "maxrl"}
    assert all(len(runs) == 3 for runs in search.values())
    means = {k: sum(r.eval["finetuned"]["accuracy"] for r in runs) / 3 for k, runs in search.items()}
    assert list(table["setting"]) == sorted(means, key=means.get, reverse=True)
    assert best_of(search, ("maxrl", "rft_normalized")) == "maxrl"
    assert best_of(search, ("grpo", "dr_grpo")) == "grpo"
    with pytest.raises(ValueError, match="no setting"):
        best_of(search, ("rft_normalized",))


def test_a_search_run_that_scored_the_test_hands_is_refused(smoke_runs):
    search = {"grpo": load_seeds(smoke_runs / "search", "grpo")}
    search["grpo"][0].eval["split"] = "test"
    with pytest.raises(ValueError, match="validation hands"):
        tables.search(search, ROOT / "params" / "search.yaml")


def test_each_objective_gets_the_rate_of_its_best_mean_validation_accuracy():
    from conftest import record

    from analysis.learning import chosen_rates

    def runs(objective, rate, accuracies):
        params = {"objective": "sft"} if objective == "sft" else {"advantage": objective}
        return [record(params={**params, "learning_rate": rate, "seed": seed},
                       eval={"split": "validation", "finetuned": {"accuracy": a}}) for seed, a in enumerate(accuracies)]

    lr_runs = {
        "grpo_lr3e-5": runs("grpo", 3e-5, [0.6, 0.7]), "grpo_lr1e-4": runs("grpo", 1e-4, [0.5, 0.9]),
        "sft_lr1e-4": runs("sft", 1e-4, [0.75, 0.75]), "sft_lr3e-4": runs("sft", 3e-4, [0.5, 1.0]),
    }
    table = chosen_rates(lr_runs)
    chosen = dict(zip(table[table["chosen"]]["objective"], table[table["chosen"]]["learning_rate"], strict=True))
    assert chosen == {"grpo": 1e-4, "sft": 1e-4}  # grpo: 0.70 > 0.65; sft: a tie at 0.75 goes to the smaller rate
    assert table["seeds"].tolist() == [2, 2, 2, 2]
    peeked = {"grpo_lr3e-5": [record(params={"learning_rate": 3e-5}, eval={"split": "test", "finetuned": {}})]}
    with pytest.raises(ValueError, match="must score the validation hands"):
        chosen_rates(peeked)
