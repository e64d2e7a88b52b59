"""Decoding: the label space and its trie, exact enumeration vs `generate`, and the
per-token log-probabilities used by GRPO, checked against independent uncached computations.

Every model here is the tiny random Llama with the real SmolLM2 tokenizer (the session fixture `tiny`
from conftest.py, never modified: tests that change a model work on a deep copy); never the bundled model.
"""

import copy
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from pokerlib import LABELS, make_splits
from pokerlib.labels import LabelSpace
from pokerlib.logprobs import completion_logits, encode_prompts, position_ids, prompt_pass
from pokerlib.rewards import extract_strict
from pokerlib.rollout import completion_mask, exact_rollout, generate_rollout, sample_exact
from pokerlib.sequence_logprobs import exact_label_logprobs, rollout_token_logprobs

# --- fixtures and independent reference computations ------------------------------------------


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prompts():
    train, _ = make_splits("balanced", 1, 1, seed=3)
    # Prompts of different token lengths, so batches are left-padded.
    return [train[0].prompt, train[1].prompt + " Think step by step, then answer.", "Hand: AS KS\nAnswer:"]


def sharpened(model, factor: float = 4.0):
    """A copy whose logits are `factor` times larger: a far-from-uniform label distribution.

    The tiny random model is nearly uniform over the 16 label sequences (every probability 0.04-0.08),
    so a frequency test on it could not tell the exact distribution from a uniform one.
    """
    sharp = copy.deepcopy(model)
    with torch.no_grad():
        sharp.model.norm.weight.mul_(factor)
    return sharp


def reference_logits(model, batch, rows, tokens, mask):
    """Logits predicting each completion token, from one uncached forward over [prompt, completion].

    Left padding is handled the way `generate` does it: the attention mask, and positions that count
    only real tokens (cumsum(mask) - 1). Only the last T + 1 positions go through the output layer.
    """
    T = tokens.shape[1]
    ids = torch.cat([batch.ids[rows], tokens], dim=1)
    attention = torch.cat([batch.mask[rows], mask.to(batch.mask.dtype)], dim=1)
    positions = (attention.long().cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False, logits_to_keep=T + 1)
    return out.logits[:, :T].double()


def reference_logprobs(model, batch, rows, tokens, mask, allowed=None):
    """(N, T) log p(token | prompt, previous tokens), 0 off the mask; over the full vocabulary, or
    renormalized over `allowed(previous tokens)` when given. Also the (N, T) entropies."""
    logits = reference_logits(model, batch, rows, tokens, mask)
    if allowed is None:
        full = F.log_softmax(logits, dim=-1)
        logp = full.gather(-1, tokens[..., None]).squeeze(-1)
        entropy = -(full.exp() * full).sum(-1)
        return logp * mask, entropy * mask
    logp = torch.zeros(tokens.shape, dtype=torch.float64)
    entropy = torch.zeros(tokens.shape, dtype=torch.float64)
    for n in range(tokens.shape[0]):
        for t in range(tokens.shape[1]):
            if not mask[n, t]:
                continue
            choices = allowed(tokens[n, :t].tolist())
            assert int(tokens[n, t]) in choices
            lp = F.log_softmax(logits[n, t, choices], dim=-1)
            logp[n, t] = lp[choices.index(int(tokens[n, t]))]
            entropy[n, t] = -(lp.exp() * lp).sum()
    return logp, entropy


def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's goodness-of-fit p-value; categories expected fewer than 5 times are pooled."""
    counts, probs = counts.double(), probs.double() / probs.sum()
    expected = counts.sum() * probs
    small = expected < 5
    obs = torch.cat([counts[~small], counts[small].sum().view(1)]) if small.any() else counts
    exp = torch.cat([expected[~small], expected[small].sum().view(1)]) if small.any() else expected
    stat = ((obs - exp) ** 2 / exp).sum()
    df = torch.tensor(len(obs) - 1, dtype=torch.float64)
    return torch.special.gammaincc(df / 2, stat / 2).item()


def sequence_index(space, tokens, mask):
    """Index in space.sequences of each completion (its tokens up to and including eos), or -1."""
    lookup = {seq: i for i, seq in enumerate(space.sequences)}
    return [lookup.get(tuple(t[m].tolist()), -1) for t, m in zip(tokens, mask, strict=True)]


def positional_paths(space):
    """Every completion the positional rule allows, up to and including eos."""
    paths, stack = [], [()]
    while stack:
        prefix = stack.pop()
        for token in space.allowed(prefix, "positional"):
            path = prefix + (token,)
            if token == space.eos_id:
                paths.append(path)
            else:
                assert len(path) <= space.max_len
                stack.append(path)
    return paths


# --- the label space and its trie ----------------------------------------------------------------


def test_label_space_holds_every_label_with_and_without_a_leading_space(tiny, space):
    _, tokenizer = tiny
    eos = tokenizer.eos_token_id
    assert space.eos_id == eos
    assert space.pad_id == tokenizer.pad_token_id != eos
    expected = {}
    for i, label in enumerate(LABELS):
        for text in (label, " " + label):
            expected[tuple(tokenizer(text, add_special_tokens=False).input_ids) + (eos,)] = i
    assert len(expected) == 16  # SmolLM2 tokenizes all 16 texts differently
    assert dict(zip(space.sequences, space.label_of, strict=True)) == expected
    assert space.num_sequences == 16
    for seq, label_index in zip(space.sequences, space.label_of, strict=True):
        assert seq[-1] == eos and eos not in seq[:-1]
        assert tokenizer.decode(seq[:-1]).strip() == LABELS[label_index]
    # The padded tensors hold the same sequences.
    for i, seq in enumerate(space.sequences):
        assert space.ids[i][space.mask[i]].tolist() == list(seq)
        assert space.mask[i].sum() == len(seq)
        assert not space.mask[i, len(seq) :].any()
    assert space.label_index.tolist() == space.label_of
    assert sorted(Counter(space.label_of).values()) == [2] * 8


def test_trie_paths_are_exactly_the_label_sequences(space):
    paths, stack = [], [()]
    while stack:
        prefix = stack.pop()
        options = space.allowed(prefix, "constrained")
        assert options and len(set(options)) == len(options)
        for token in options:
            path = prefix + (token,)
            if token == space.eos_id:
                paths.append(path)
            else:
                assert len(path) < space.max_len
                stack.append(path)
    assert len(paths) == len(set(paths))
    assert set(paths) == set(space.sequences)


def test_trie_prefix_of_a_label_only_continues_into_that_label(space):
    for seq, label in zip(space.sequences, space.label_of, strict=True):
        for t in range(1, len(seq)):
            reachable = {s for s in space.sequences if s[:t] == seq[:t]}
            assert {space.label_of[space.sequences.index(s)] for s in reachable} == {label}
            assert space.allowed(seq[:t], "constrained") == [seq[t]] or len(reachable) > 1


def test_allowed_modes(space):
    assert space.allowed((), "free") is None
    assert space.allowed([], "constrained") == space.allowed((), "constrained")
    assert sorted(space.allowed((), "constrained")) == sorted({s[0] for s in space.sequences})
    with pytest.raises(ValueError, match="constrained"):
        space.allowed((), "greedy")


def test_positional_rule_allows_two_house_and_the_trie_does_not(tiny, space):
    _, tokenizer = tiny
    two = tokenizer("two", add_special_tokens=False).input_ids
    house = tokenizer(" house", add_special_tokens=False).input_ids
    mixed = (*two, *house, space.eos_id)
    for t in range(len(mixed)):
        assert mixed[t] in space.allowed(mixed[:t], "positional")
    assert tokenizer.decode(mixed[:-1]) == "two house"
    assert extract_strict(tokenizer.decode(mixed[:-1])) is None
    assert mixed not in space.sequences
    assert not all(mixed[t] in space.allowed(mixed[:t], "constrained") for t in range(len(mixed)))


def test_positional_paths_are_a_strict_superset_of_the_labels(tiny, space):
    _, tokenizer = tiny
    paths = set(positional_paths(space))
    assert set(space.sequences) <= paths
    mixed = {p for p in paths if p not in set(space.sequences)}
    assert mixed
    texts = {tokenizer.decode(p[:-1]) for p in mixed}
    assert "two house" in texts
    assert all(extract_strict(text) is None for text in texts)


# --- sampling: constrained never mixes labels, positional does -----------------------------------


@pytest.fixture(scope="module")
def constrained_sample(tiny, space, prompts):
    """400 trie-constrained completions of one prompt, sampled by `generate` from a sharpened copy."""
    model, tokenizer = tiny
    sharp = sharpened(model)
    batch = encode_prompts(tokenizer, prompts[:1])
    torch.manual_seed(1234)
    rollout = generate_rollout(sharp, tokenizer, batch, space, "constrained", 400, max_new_tokens=8)
    with torch.no_grad():
        exact = exact_label_logprobs(sharp, prompt_pass(sharp, batch), space)
    return rollout, exact[0]


def test_positional_sampling_produces_mixed_labels(tiny, space, prompts):
    model, tokenizer = tiny
    batch = encode_prompts(tokenizer, prompts[:2])
    torch.manual_seed(0)
    rollout = generate_rollout(model, tokenizer, batch, space, "positional", 16, max_new_tokens=8)
    assert rollout.tokens.shape[0] == 32
    index = sequence_index(space, rollout.tokens, rollout.mask)
    mixed = [n for n, i in enumerate(index) if i < 0]
    assert mixed, "positional decoding should have produced a non-label completion"
    for n in mixed:
        seq = rollout.tokens[n][rollout.mask[n]].tolist()
        # A genuine output of the positional rule, and invalid under the strict reading.
        assert all(seq[t] in space.allowed(seq[:t], "positional") for t in range(len(seq)))
        assert extract_strict(rollout.texts[n]) is None
    assert sum(extract_strict(text) is None for text in rollout.texts) == len(mixed)


def test_constrained_sampling_never_mixes_labels(tiny, space, constrained_sample):
    _, tokenizer = tiny
    rollout, _ = constrained_sample
    index = sequence_index(space, rollout.tokens, rollout.mask)
    assert min(index) >= 0
    for n, i in enumerate(index):
        assert extract_strict(rollout.texts[n]) == LABELS[space.label_of[i]]
    assert len(set(index)) >= 8  # many different labels were actually sampled


def test_greedy_constrained_generate_picks_the_most_likely_label(tiny, space, prompts):
    model, tokenizer = tiny
    batch = encode_prompts(tokenizer, prompts)
    rollout = generate_rollout(model, tokenizer, batch, space, "constrained", 1, max_new_tokens=8, do_sample=False)
    with torch.no_grad():
        exact = exact_label_logprobs(model, prompt_pass(model, batch), space)
    assert sequence_index(space, rollout.tokens, rollout.mask) == exact.argmax(-1).tolist()


# --- exact enumeration against generate ----------------------------------------------------------


def test_exact_label_logprobs_equal_generate_scores(tiny, space, prompts):
    """Each sampled sequence's log-probability under `generate` with the trie (processed scores,
    log-softmaxed, summed over its tokens including eos) equals the enumeration's entry."""
    model, tokenizer = tiny
    batch = encode_prompts(tokenizer, prompts)
    assert len(set(batch.lengths.tolist())) == 3  # left padding in play
    with torch.no_grad():
        exact = exact_label_logprobs(model, prompt_pass(model, batch), space)
    assert exact.shape == (3, space.num_sequences)
    torch.testing.assert_close(exact.exp().sum(-1), torch.ones(3), atol=1e-5, rtol=0)

    width, G = batch.ids.shape[1], 16

    def allowed(_, ids):
        return space.allowed(ids[width:].tolist(), "constrained")

    torch.manual_seed(7)
    out = model.generate(
        input_ids=batch.ids,
        attention_mask=batch.mask,
        prefix_allowed_tokens_fn=allowed,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        num_return_sequences=G,
        max_new_tokens=8,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    generated = out.sequences[:, width:]
    seen = set()
    for n in range(generated.shape[0]):
        tokens = generated[n].tolist()
        end = tokens.index(space.eos_id)
        seq = tuple(tokens[: end + 1])
        assert seq in space.sequences
        logp = sum(F.log_softmax(out.scores[t][n].double(), dim=-1)[tokens[t]] for t in range(end + 1))
        b, s = n // G, space.sequences.index(seq)
        seen.add((b, s))
        assert logp.item() == pytest.approx(exact[b, s].item(), abs=1e-5)
    assert len(seen) >= 20


def test_exact_label_logprobs_equal_an_uncached_forward(tiny, space, prompts):
    """All 16 sequences of each prompt, teacher-forced: trie-renormalized, summed over tokens."""
    model, tokenizer = tiny
    batch = encode_prompts(tokenizer, prompts)
    B, S = len(prompts), space.num_sequences
    with torch.no_grad():
        exact = exact_label_logprobs(model, prompt_pass(model, batch), space)
        rows = torch.arange(B).repeat_interleave(S)
        tokens, mask = space.ids.repeat(B, 1), space.mask.repeat(B, 1)
        ref, _ = reference_logprobs(model, batch, rows, tokens, mask, lambda p: space.allowed(p, "constrained"))
    torch.testing.assert_close(exact.double(), ref.sum(-1).view(B, S), atol=1e-5, rtol=0)


def test_exact_label_logprobs_on_a_trie_that_branches_after_the_root(tiny, prompts):
    """SmolLM2's labels all differ at their first token; a hand-made trie exercises the other path."""
    model, tokenizer = tiny
    eos = tokenizer.eos_token_id
    sequences = [(100, 200, eos), (100, 201, 300, eos), (100, 201, 301, eos), (102, eos), (103, 200, eos)]
    texts = [tokenizer.decode(seq[:-1]) for seq in sequences]
    custom = LabelSpace(sequences, [0, 1, 2, 3, 4], eos, tokenizer.pad_token_id, texts)
    assert custom.branches_after_root
    batch = encode_prompts(tokenizer, prompts)
    B, S = len(prompts), len(sequences)
    with torch.no_grad():
        exact = exact_label_logprobs(model, prompt_pass(model, batch), custom)
        rows = torch.arange(B).repeat_interleave(S)
        tokens, mask = custom.ids.repeat(B, 1), custom.mask.repeat(B, 1)
        ref, _ = reference_logprobs(model, batch, rows, tokens, mask, lambda p: custom.allowed(p, "constrained"))
    assert torch.isfinite(exact).all()
    torch.testing.assert_close(exact.double(), ref.sum(-1).view(B, S), atol=1e-5, rtol=0)
    torch.testing.assert_close(exact.exp().sum(-1), torch.ones(B), atol=1e-5, rtol=0)


def test_constrained_generate_frequencies_match_the_exact_distribution(space, constrained_sample):
    """400 `generate` samples against exp(enumeration): Pearson chi-square, pooled below 5 expected.

    Seeded, so deterministic; the threshold p > 0.001 is the usual goodness-of-fit level, and the same
    counts against the uniform distribution (what a broken normalization would look like on a nearly
    uniform model) are rejected at p < 1e-6, so the test has the power to fail.
    """
    rollout, exact = constrained_sample
    index = torch.tensor(sequence_index(space, rollout.tokens, rollout.mask))
    counts = torch.bincount(index, minlength=space.num_sequences)
    probs = exact.exp()
    assert probs.max() / probs.min() > 10  # the sharpened distribution is far from uniform
    assert chi_square_pvalue(counts, probs) > 1e-3
    assert chi_square_pvalue(counts, torch.ones_like(probs)) < 1e-6
    # Empirical frequencies within 4 binomial standard deviations of each probability.
    freq = counts.double() / counts.sum()
    sd = (probs.double() * (1 - probs.double()) / counts.sum()).sqrt()
    assert ((freq - probs.double()).abs() <= 4 * sd + 1e-9).all()


def test_sample_exact_frequencies_match_the_probabilities(tiny, space, prompts):
    model, tokenizer = tiny
    sharp = sharpened(model)
    batch = encode_prompts(tokenizer, prompts)
    with torch.no_grad():
        label_logp = exact_label_logprobs(sharp, prompt_pass(sharp, batch), space)
    generator = torch.Generator().manual_seed(99)
    draws = sample_exact(label_logp, 20000, generator)
    assert draws.shape == (3, 20000)
    assert draws.dtype == torch.long
    for b in range(3):
        counts = torch.bincount(draws[b], minlength=space.num_sequences)
        assert chi_square_pvalue(counts, label_logp[b].exp()) > 1e-3
        assert chi_square_pvalue(counts, torch.ones(space.num_sequences)) < 1e-6
    # Same generator seed, same draws.
    again = sample_exact(label_logp, 20000, torch.Generator().manual_seed(99))
    assert torch.equal(draws, again)


def test_sample_exact_on_a_hand_made_distribution():
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.125, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    draws = sample_exact(probs.log(), 8000, torch.Generator().manual_seed(0))
    assert (draws[1] == 4).all()
    counts = torch.bincount(draws[0], minlength=5)
    assert counts[4] == 0
    assert chi_square_pvalue(counts[:4], probs[0, :4]) > 1e-3


# --- per-token log-probabilities -----------------------------------------------------------------


@pytest.fixture(scope="module")
def rollouts(tiny, space, prompts):
    """Rollouts of each kind over a left-padded batch of 3 prompts: generated positional (mixed lengths,
    mixed labels), generated constrained, and every label sequence through exact_rollout."""
    model, tokenizer = tiny
    batch = encode_prompts(tokenizer, prompts)
    torch.manual_seed(5)
    positional = generate_rollout(model, tokenizer, batch, space, "positional", 6, max_new_tokens=8)
    constrained = generate_rollout(model, tokenizer, batch, space, "constrained", 6, max_new_tokens=8)
    exact = exact_rollout(space, torch.arange(space.num_sequences).repeat(3, 1))
    return batch, {"positional": positional, "constrained": constrained, "exact": exact}


RULE = {"positional": "positional", "constrained": "constrained", "exact": "constrained"}


@pytest.mark.parametrize("kind", ["positional", "constrained", "exact"])
@pytest.mark.parametrize("logprob_space", ["full", "constrained"])
def test_rollout_token_logprobs_equal_an_uncached_forward(tiny, space, rollouts, kind, logprob_space):
    model, _ = tiny
    batch, by_kind = rollouts
    rollout = by_kind[kind]
    with torch.no_grad():
        logp, entropy = rollout_token_logprobs(model, prompt_pass(model, batch), rollout, logprob_space)
        rule = None if logprob_space == "full" else (lambda p: space.allowed(p, RULE[kind]))
        ref_logp, ref_entropy = reference_logprobs(model, batch, rollout.rows, rollout.tokens, rollout.mask, rule)
    assert logp.shape == rollout.tokens.shape == entropy.shape
    torch.testing.assert_close(logp.double(), ref_logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy.double(), ref_entropy, atol=1e-4, rtol=0)
    if logprob_space == "full":
        assert (logp[rollout.mask] < 0).all()  # every counted token, eos included, carries probability
    else:
        assert (logp[:, 0] < 0).all()


def test_packed_completions_match_separate_forwards_in_value_and_gradient(tiny, space, prompts):
    """Completions of one prompt share a packed row: unordered rows, a prompt with no completion,
    duplicates and different lengths must give each completion's own logits, and the same gradient."""
    model, tokenizer = tiny
    policy = copy.deepcopy(model).requires_grad_(True)
    batch = encode_prompts(tokenizer, prompts)
    picks = [(2, 6), (0, 9), (2, 6), (0, 0), (2, 14)]  # (prompt row, label sequence): prompt 1 has none
    rows = torch.tensor([r for r, _ in picks])
    tokens, mask = space.ids[[s for _, s in picks]], space.mask[[s for _, s in picks]]
    assert len(set(mask.sum(1).tolist())) > 1

    def grads(logits):
        policy.zero_grad(set_to_none=True)
        F.log_softmax(logits.float(), -1).gather(-1, tokens[..., None]).squeeze(-1)[mask].sum().backward()
        return [p.grad.clone() for p in policy.parameters()]

    packed = completion_logits(policy, prompt_pass(policy, batch), rows, tokens, mask)
    separate = reference_logits(policy, batch, rows, tokens, mask)
    assert packed.shape == separate.shape
    torch.testing.assert_close(packed[mask].double(), separate[mask], atol=1e-5, rtol=0)
    for a, b in zip(grads(packed), grads(separate), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_exact_rollout_structure(tiny, space):
    _, tokenizer = tiny
    seq_index = torch.tensor([[3, 3, 9], [0, 15, 7]])
    rollout = exact_rollout(space, seq_index)
    assert rollout.rows.tolist() == [0, 0, 0, 1, 1, 1]
    assert rollout.seq_index.tolist() == [3, 3, 9, 0, 15, 7]
    for n, s in enumerate(rollout.seq_index.tolist()):
        seq = space.sequences[s]
        assert rollout.tokens[n][rollout.mask[n]].tolist() == list(seq)
        assert extract_strict(rollout.texts[n]) == LABELS[space.label_of[s]]


# --- end-of-sequence is counted, padding is not --------------------------------------------------


def test_completion_mask_on_hand_written_tensors():
    eos, pad = 2, 0
    tokens = torch.tensor(
        [
            [5, 2, pad, pad, pad],  # early eos
            [5, 6, 7, 8, 9],  # no eos within max_new_tokens: everything counts
            [2, 2, 2, pad, pad],  # only the first eos counts
            [5, 6, 2, 7, 2],  # anything after the first eos is not counted
            [pad, 5, 2, pad, pad],  # the pad id is not special: only eos ends a completion
        ]
    )
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1],
            [1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
        ],
        dtype=torch.bool,
    )
    mask = completion_mask(tokens, eos)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_generated_rollout_counts_eos_and_not_padding(tiny, space, rollouts):
    model, tokenizer = tiny
    batch, by_kind = rollouts
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    for kind in ("positional", "constrained"):
        rollout = by_kind[kind]
        lengths = rollout.mask.sum(-1)
        assert lengths.min() < lengths.max(), "want completions that end at different positions"
        for n in range(len(rollout.tokens)):
            tokens, mask = rollout.tokens[n].tolist(), rollout.mask[n]
            end = tokens.index(eos)
            assert mask[: end + 1].all() and not mask[end + 1 :].any()
            assert all(tok == pad for tok in tokens[end + 1 :])
            assert rollout.texts[n] == tokenizer.decode(tokens[:end], skip_special_tokens=True)
            if kind == "constrained":
                assert tuple(tokens[: end + 1]) in space.sequences
        with torch.no_grad():
            pp = prompt_pass(model, batch)
            full, full_entropy = rollout_token_logprobs(model, pp, rollout, "full")
            constrained, _ = rollout_token_logprobs(model, pp, rollout, "constrained")
        assert (full[~rollout.mask] == 0).all() and (constrained[~rollout.mask] == 0).all()
        assert (full_entropy[~rollout.mask] == 0).all()
        eos_position = lengths - 1
        eos_logp = full.gather(1, eos_position[:, None]).squeeze(1)
        assert (eos_logp < 0).all()  # the end-of-sequence token is scored in the full space
        # and the sequence's log-probability includes it
        without_eos = (full * rollout.mask).sum(-1) - eos_logp
        assert (full.sum(-1) < without_eos).all()


def test_left_padding_gives_the_same_logprobs_as_no_padding(tiny, space, prompts):
    model, tokenizer = tiny
    short, long = prompts[0], prompts[1]
    alone = encode_prompts(tokenizer, [short])
    padded = encode_prompts(tokenizer, [short, long])
    assert padded.mask[0, 0] == 0 and padded.lengths[0] == alone.lengths[0] < padded.lengths[1]
    S = space.num_sequences
    with torch.no_grad():
        pp_alone, pp_padded = prompt_pass(model, alone), prompt_pass(model, padded)
        exact_alone = exact_label_logprobs(model, pp_alone, space)
        exact_padded = exact_label_logprobs(model, pp_padded, space)
        torch.testing.assert_close(exact_padded[0], exact_alone[0], atol=1e-5, rtol=0)
        ro_alone = exact_rollout(space, torch.arange(S)[None])
        ro_padded = exact_rollout(space, torch.arange(S).repeat(2, 1))
        for logprob_space in ("full", "constrained"):
            lp_alone, _ = rollout_token_logprobs(model, pp_alone, ro_alone, logprob_space)
            lp_padded, _ = rollout_token_logprobs(model, pp_padded, ro_padded, logprob_space)
            torch.testing.assert_close(lp_padded[:S], lp_alone, atol=1e-5, rtol=0)


def test_missing_position_ids_only_shift_rotary_positions_so_logits_agree(tiny, prompts):
    """The original passed no position ids for left-padded rows. Rotary embeddings see only the distance
    between tokens and padding shifts a whole row alike, so the report can say this flaw was harmless."""
    model, tokenizer = tiny
    batch = encode_prompts(tokenizer, prompts[:3])
    assert (batch.mask == 0).any(), "want a left-padded batch"
    with torch.no_grad():
        with_ids = model(input_ids=batch.ids, attention_mask=batch.mask, position_ids=position_ids(batch.mask))
        without = model(input_ids=batch.ids, attention_mask=batch.mask)
    real = batch.mask.bool()
    torch.testing.assert_close(with_ids.logits[real], without.logits[real], atol=1e-4, rtol=0)
    shifted = (position_ids(batch.mask) != torch.arange(batch.ids.shape[1])).any()
    assert shifted, "the two runs must use different absolute positions"
