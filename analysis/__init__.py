"""Reading complete runs for the report and the README: loading, seed aggregation, information measures.

Kept out of `pokerlib` on purpose: data flows one way (library -> runs -> report), and editing these
helpers must not change the library's code version, which would mark the committed runs stale.
"""

from .runs import (
    NAMES,
    ORIGINAL,
    answer_counts,
    best_constant_accuracy,
    confusion_frame,
    format_ci,
    load_run,
    load_seeds,
    mean_ci,
    mutual_information_bits,
    shuffled_mutual_information_bits,
    train_minutes_range,
)

__all__ = [
    "NAMES",
    "ORIGINAL",
    "answer_counts",
    "best_constant_accuracy",
    "confusion_frame",
    "format_ci",
    "load_run",
    "load_seeds",
    "mean_ci",
    "mutual_information_bits",
    "shuffled_mutual_information_bits",
    "train_minutes_range",
]
