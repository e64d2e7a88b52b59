"""Held-out evaluation with greedy decoding: reward, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .config import RunConfig
from .data import Example
from .labels import LabelSpace
from .logprobs import encode_prompts, forward_precision, prompt_pass
from .oracle import LABELS
from .rewards import compute_rewards, extract_strict
from .rollout import generate_rollout
from .sequence_logprobs import exact_label_logprobs

INVALID = "invalid"


@torch.no_grad()
def greedy_completions(model, tokenizer, space: LabelSpace, prompts: list[str], cfg: RunConfig) -> list[str]:
    """Greedy completions. For the trie, greedy is the argmax first token when later nodes are forced."""
    device = next(model.parameters()).device
    batch = encode_prompts(tokenizer, prompts, device)
    if cfg.decoding == "constrained" and not space.branches_after_root:
        pp = prompt_pass(model, batch)
        best = exact_label_logprobs(model, pp, space).argmax(dim=1).tolist()
        return [space.texts[s] for s in best]
    rollout = generate_rollout(model, tokenizer, batch, space, cfg.decoding, 1, cfg.max_new_tokens, do_sample=False)
    return rollout.texts


def summarize(rows: list[dict]) -> dict:
    """mean_reward, accuracy, per_class_accuracy, confusion (gold -> predicted -> count), valid_label_rate."""
    predicted_labels = [*LABELS, INVALID]
    confusion = {gold: dict.fromkeys(predicted_labels, 0) for gold in LABELS}
    for row in rows:
        confusion[row["label"]][row["predicted"]] += 1
    per_class = {
        gold: (confusion[gold][gold] / sum(confusion[gold].values())) if sum(confusion[gold].values()) else None
        for gold in LABELS
    }
    n = len(rows)
    return {
        "n": n,
        "mean_reward": sum(r["reward"] for r in rows) / n,
        "accuracy": sum(r["predicted"] == r["label"] for r in rows) / n,
        "per_class_accuracy": per_class,
        "confusion": confusion,
        "valid_label_rate": sum(r["predicted"] != INVALID for r in rows) / n,
    }


def evaluate(model, tokenizer, space: LabelSpace, examples: list[Example], cfg: RunConfig, desc: str = "eval"):
    """(summary, per-example rows) of greedy decoding on `examples`, rewarded as in training."""
    rows = []
    size = cfg.eval_batch_size
    for start in tqdm(range(0, len(examples), size), desc=desc, leave=False):
        chunk = examples[start : start + size]
        with forward_precision(model, cfg.bf16):
            texts = greedy_completions(model, tokenizer, space, [e.prompt for e in chunk], cfg)
        rewards, extracted = compute_rewards(
            [e.prompt for e in chunk], texts, [e.label for e in chunk], cfg.reward, cfg.class_weights
        )
        for e, text, reward, got in zip(chunk, texts, rewards.tolist(), extracted, strict=True):
            rows.append(
                {
                    "hand": e.hand,
                    "label": e.label,
                    "completion": text,
                    "predicted": extract_strict(text) or INVALID,
                    "reward_label": got or "",
                    "reward": reward,
                }
            )
    return summarize(rows), rows
