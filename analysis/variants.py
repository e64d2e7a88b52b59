"""The one place that names the reference variants: display names, colours and roles in the report.

Switching the report to another set of reference runs means editing this file only.
"""

from __future__ import annotations

from pokerlib.tools.params import ORIGINAL_VARIANTS  # noqa: F401  (the original's budgets, listed once)

# key -> (display name, colour). Colours are the Okabe-Ito palette, distinguishable with colour blindness;
# every figure of the report and the README draws a variant in its colour here.
STYLES: dict[str, tuple[str, str]] = {
    "v1_buggy_reward": ("v1 buggy reward", "#999999"),
    "v2_balanced": ("v2 balanced", "#E69F00"),
    "v3_balanced_kl": ("v3 balanced + KL", "#CC79A7"),
    "v4_grpo": ("v4 GRPO", "#0072B2"),
    "v4_maxrl": ("v4 MaxRL", "#D55E00"),  # vermillion: never a second blue beside GRPO's
    "v4_sft": ("v4 SFT yardstick", "#009E73"),
}
EXTENDED_VARIANTS = ("v4_grpo", "v4_maxrl", "v4_sft")  # beyond the original: the v4 budget
GRPO_BEST = "v4_grpo"  # the best GRPO setting (chosen by the search, on validation hands)
REWARD_ONLY_BEST: str | None = "v4_maxrl"  # the best objective that learns from rewards alone
SFT = "v4_sft"  # the supervised yardstick
SEARCH_BASE_PARAMS = "params/v4_budget.yaml"  # what the search entries override

NAMES = {key: name for key, (name, _) in STYLES.items()}
COLORS = {key: colour for key, (_, colour) in STYLES.items()}
# c(p) curves of the objectives (no runs needed): one colour per objective.
OBJECTIVE_COLORS = {
    "grpo": "#0072B2", "dr_grpo": "#56B4E9", "maxrl": "#D55E00", "maxrl_neglect": "#E69F00",
    "maxrl_overpush": "#CC79A7", "rft": "#882255", "rft_normalized": "#882255", "online_rft": "#000000",
    "sft": "#009E73",
}


def name(key: str) -> str:
    """A variant's display name; any other run folder keeps its own name."""
    return NAMES.get(key, key)


def color(key: str) -> str | None:
    """A variant's colour, or None to let matplotlib pick one for runs outside the reference set."""
    return COLORS.get(key)
