"""The step's kernels: the prompts' shared prefix computed once, the attention implementation, the precision.

Each speed change must leave the computation what it was: the shared-prefix pass is checked against each
prompt's own uncached forward pass (values and gradients), eager attention against SDPA on the packed
completions, and `bf16: auto` against the hardware it reads.
"""

import copy

import pytest
import torch
from test_decoding import reference_logits

from pokerlib import make_splits
from pokerlib.config import RunConfig
from pokerlib.kernels import attention_for, native_bf16, uses_bf16
from pokerlib.logprobs import completion_logits, encode_prompts, prompt_pass, prompt_rows, shared_prefix_length
from pokerlib.run import prepare

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hands():
    """Eight training prompts of the real template, of different token lengths (so rows are padded)."""
    train, _ = make_splits("balanced", 2, 1, seed=0)
    return [e.prompt for e in train[:8]]


def test_the_shared_prefix_is_the_prompts_common_leading_tokens(tiny, hands):
    _, tokenizer = tiny
    ids = [tokenizer(text, add_special_tokens=False).input_ids for text in hands]
    common = next(i for i in range(min(map(len, ids))) if len({row[i] for row in ids}) > 1)
    batch = encode_prompts(tokenizer, hands)
    assert len(set(batch.lengths.tolist())) > 1
    assert shared_prefix_length(batch) == common
    assert tokenizer.decode(ids[0][:common]) == "Classify this 5-card poker hand.\n\nHand:"
    assert prompt_rows(batch) == common + len(hands) * (max(map(len, ids)) - common)
    assert shared_prefix_length(encode_prompts(tokenizer, hands[:1])) == 0  # one prompt: nothing to share
    unrelated = encode_prompts(tokenizer, [hands[0], "Hand: AS KS\nAnswer:"])
    assert shared_prefix_length(unrelated) == 0 and prompt_rows(unrelated) == unrelated.ids.numel()


def test_a_shared_prefix_pass_gives_each_prompt_its_own_forward_values_and_gradients(tiny, hands):
    model, tokenizer = tiny
    policy = copy.deepcopy(model).requires_grad_(True)
    batch = encode_prompts(tokenizer, hands)
    shared = prompt_pass(policy, batch, share_prefix=True)
    assert torch.equal(shared.batch.lengths, batch.lengths)  # the laid-out rows keep each prompt's tokens
    for i, text in enumerate(hands):
        with torch.no_grad():
            alone = prompt_pass(policy, encode_prompts(tokenizer, [text]), share_prefix=False)
        torch.testing.assert_close(shared.last_logits[i], alone.last_logits[0], atol=1e-5, rtol=0)
    weights = torch.linspace(-1, 1, shared.last_logits.shape[1])
    (shared.last_logits @ weights).sum().backward()
    via_shared = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()
    unshared = prompt_pass(policy, batch, share_prefix=False)
    (unshared.last_logits @ weights).sum().backward()
    for a, b in zip(via_shared, (p.grad for p in policy.parameters()), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_completions_on_a_shared_prefix_cache_match_one_uncached_forward(tiny, space, hands):
    model, tokenizer = tiny
    batch = encode_prompts(tokenizer, hands)
    S = space.num_sequences
    rows = torch.arange(len(hands)).repeat_interleave(S)
    tokens, mask = space.ids.repeat(len(hands), 1), space.mask.repeat(len(hands), 1)
    with torch.no_grad():
        packed = completion_logits(model, prompt_pass(model, batch, share_prefix=True), rows, tokens, mask)
        reference = reference_logits(model, batch, rows, tokens, mask)
    torch.testing.assert_close(packed.double()[mask], reference[mask], atol=1e-5, rtol=0)


def test_eager_attention_reads_the_packed_completions_mask_as_sdpa_does(tiny, space, hands):
    """Eager attention adds its mask to the scores: a boolean mask would add 0 or 1 and attend everywhere."""
    model, tokenizer = tiny
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    batch = encode_prompts(tokenizer, hands[:3])
    rows = torch.arange(3).repeat_interleave(space.num_sequences)
    tokens, mask = space.ids.repeat(3, 1), space.mask.repeat(3, 1)
    with torch.no_grad():
        by_sdpa = completion_logits(model, prompt_pass(model, batch), rows, tokens, mask)
        by_eager = completion_logits(eager, prompt_pass(eager, batch), rows, tokens, mask)
    torch.testing.assert_close(by_eager[mask], by_sdpa[mask], atol=1e-5, rtol=0)


def test_bf16_auto_follows_the_hardware_and_other_values_fail_before_any_work():
    cpu = torch.device("cpu")
    assert uses_bf16("auto", cpu) == native_bf16(cpu)
    assert uses_bf16(True, cpu) and not uses_bf16(False, cpu)
    assert RunConfig(bf16="auto").bf16 == "auto"
    with pytest.raises(ValueError, match="bf16 must be true, false or 'auto'"):
        RunConfig(bf16="yes")
    with pytest.raises(TypeError, match="bf16"):
        RunConfig(bf16=1)


def test_the_attention_kernel_is_the_measured_one_unless_chosen(tiny):
    cpu = torch.device("cpu")
    assert attention_for("auto", cpu, False) == "sdpa"  # measured: faster than eager in float32 on the CPU
    assert attention_for("eager", cpu, False) == "eager"
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        RunConfig(attn_implementation="flash")
    run = prepare(RunConfig(model="tiny", attn_implementation="eager", n_per_class_train=1, n_per_class_eval=1))
    assert run.kernels == {"precision": "float32", "attention": "eager"}
