"""The label space as token sequences, and the decoding constraints over it .

Each label is tokenized with and without a leading space and ends in end-of-sequence. `trie`
allows, after a prefix, only the tokens that continue some sequence with that prefix, so labels
cannot mix; `positional` (the original's rule) allows at position t any token found at position
t of any sequence, so "two house" is possible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .oracle import LABELS

DECODING_MODES = ("constrained", "positional", "free")


@dataclass
class LabelSpace:
    """The S = 2 * 8 label token sequences, padded into tensors, and their trie."""

    sequences: list[tuple[int, ...]]  # each ends with eos
    label_of: list[int]  # index into LABELS
    eos_id: int
    pad_id: int
    texts: list[str]  # each sequence decoded without its eos: what a completion says
    children: dict[tuple[int, ...], list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self.children = {}
        for seq in self.sequences:
            for t in range(len(seq)):
                nxt = self.children.setdefault(seq[:t], [])
                if seq[t] not in nxt:
                    nxt.append(seq[t])
        self.max_len = max(len(s) for s in self.sequences)
        self.ids = torch.full((len(self.sequences), self.max_len), self.pad_id, dtype=torch.long)
        self.mask = torch.zeros((len(self.sequences), self.max_len), dtype=torch.bool)
        for i, seq in enumerate(self.sequences):
            self.ids[i, : len(seq)] = torch.tensor(seq)
            self.mask[i, : len(seq)] = True
        self.label_index = torch.tensor(self.label_of)
        self.positional = [sorted({s[t] for s in self.sequences if len(s) > t}) for t in range(self.max_len)]
        self.allowed_ids, self.allowed_valid = self._allowed_table()

    @property
    def num_sequences(self) -> int:
        return len(self.sequences)

    @property
    def branches_after_root(self) -> bool:
        """Whether any non-empty prefix has several continuations (then later tokens carry probability)."""
        return any(len(c) > 1 for prefix, c in self.children.items() if prefix)

    def label_probs(self, seq_logp: torch.Tensor) -> torch.Tensor:
        """(B, 8) probability of each label: its sequences' probabilities (with and without a space) summed."""
        probs = seq_logp.detach().float().exp().cpu()
        index = self.label_index.expand(len(probs), -1)
        return torch.zeros(len(probs), len(LABELS)).scatter_add_(1, index, probs)

    def greedy_labels(self, seq_logp: torch.Tensor) -> torch.Tensor:
        """(B,) label index of the most probable sequence: what greedy decoding answers (no later branching)."""
        return self.label_index[seq_logp.detach().argmax(dim=1).cpu()]

    def allowed(self, generated: list[int] | tuple[int, ...], mode: str) -> list[int] | None:
        """Tokens allowed after `generated` completion tokens; None means every token (free)."""
        if mode == "free":
            return None
        if mode == "constrained":
            return self.children.get(tuple(generated), [self.eos_id])
        if mode == "positional":
            t = len(generated)
            return self.positional[t] if t < self.max_len else [self.eos_id]
        raise ValueError(f"unknown decoding mode {mode!r}: use one of {', '.join(DECODING_MODES)}")

    def _allowed_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For each sequence s and position t, the trie's allowed ids at that prefix, padded: (S, L, K)."""
        width = max(len(c) for c in self.children.values())
        ids = torch.zeros((self.num_sequences, self.max_len, width), dtype=torch.long)
        valid = torch.zeros_like(ids, dtype=torch.bool)
        for s, seq in enumerate(self.sequences):
            for t in range(len(seq)):
                options = self.children[seq[:t]]
                ids[s, t, : len(options)] = torch.tensor(options)
                valid[s, t, : len(options)] = True
        return ids, valid


def build_label_space(tokenizer) -> LabelSpace:
    """Tokenize every label with and without a leading space, then end-of-sequence."""
    sequences, label_of = [], []
    for i, label in enumerate(LABELS):
        for text in (label, " " + label):
            ids = tuple(tokenizer(text, add_special_tokens=False).input_ids) + (tokenizer.eos_token_id,)
            if ids not in sequences:
                sequences.append(ids)
                label_of.append(i)
    texts = [tokenizer.decode(seq[:-1]) for seq in sequences]
    return LabelSpace(sequences, label_of, tokenizer.eos_token_id, tokenizer.pad_token_id, texts)
