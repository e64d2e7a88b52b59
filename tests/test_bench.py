"""The benchmark on the tiny model: every method runs and updates, the table and the memory floor add up."""

import json

import torch

from pokerlib.config import RunConfig
from pokerlib.data import make_splits
from pokerlib.model import frozen_copy
from pokerlib.tools.bench import format_floor, format_table, main, memory_floor, original_step
from pokerlib.train import make_optimizer


def test_original_step_runs_backward_and_the_optimizer_on_every_weight(tiny, space):
    model, tokenizer = tiny
    policy = frozen_copy(model).requires_grad_(True)
    cfg = RunConfig(model="tiny", batch_size=2, num_generations=4, decoding="constrained")
    optimizer = make_optimizer(policy, cfg)
    torch.manual_seed(0)
    train, _ = make_splits("balanced", 2, 1, seed=0)
    original_step(policy, optimizer, tokenizer, space, train[:2], cfg)
    states = [optimizer.state[p] for p in policy.parameters()]
    assert all(s and s["step"].item() == 1 for s in states)  # one backward reached every weight, one update


def test_memory_floor_counts_weights_gradients_and_adamw_state_exactly(tiny):
    model, _ = tiny
    policy = frozen_copy(model).requires_grad_(True)
    reference = frozen_copy(model).to(torch.bfloat16)
    optimizer = make_optimizer(policy, RunConfig(model="tiny"))
    params = list(policy.parameters())
    n = sum(p.numel() for p in params)
    sum(p.float().sum() for p in params).backward()
    optimizer.step()
    floor = memory_floor(policy, reference, optimizer, libraries_bytes=10**9)
    assert floor["policy"] == floor["gradients"] == n * 4 / 1e9
    assert floor["reference"] == n * 2 / 1e9  # bfloat16
    # AdamW keeps two float32 moments per weight and a one-element float32 step count per tensor
    assert floor["optimizer_state"] == (2 * n * 4 + 4 * len(params)) / 1e9
    assert floor["libraries"] == 1.0
    parts = [v for k, v in floor.items() if not k.startswith("total")]
    assert abs(floor["total"] - sum(parts)) < 1e-12
    assert abs(floor["total_without_reference"] - (floor["total"] - floor["reference"])) < 1e-12


def test_bench_writes_every_method_at_every_group_size(pokerlib_cache, tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(model="tiny", repeats=1, out=str(out), shapes=("original", "v4"))
    record = json.loads(out.read_text())
    rows = record["rows"]
    methods = ["original", "ours", "ours_constrained", "floor_sft", "limit"]
    v4 = ["ours_constrained", "ours_constrained_unshared", "ours_constrained_other_attention", "floor_sft", "limit"]
    assert [(r["shape"], r["G"], r["method"]) for r in rows] == (
        [("original", g, m) for g in (4, 16) for m in methods] + [("v4", 256, m) for m in v4]
    )
    for r in rows:
        assert r["B"] == (4 if r["shape"] == "original" else 8)
        assert r["precision"] == "float32" and r["seconds"] > 0 and r["peak_rss_gb"] > 0
        baseline = next(o for o in rows if o["G"] == r["G"] and o["method"] == r["speedup_over"])
        assert r["speedup_over"] == ("original" if r["shape"] == "original" else "ours_constrained_unshared")
        assert abs(r["speedup"] - baseline["seconds"] / r["seconds"]) < 1e-9
        limit = next(o for o in rows if o["G"] == r["G"] and o["method"] == "limit")
        assert abs(r["times_limit"] - r["seconds"] / limit["seconds"]) < 1e-9
    floor = record["memory_floor"]
    assert set(floor) == {"libraries", "policy", "reference", "gradients", "optimizer_state", "total",
                          "total_without_reference"}
    assert floor["policy"] == floor["reference"] == floor["gradients"] > 0
    assert abs(floor["total"] - floor["reference"] - floor["total_without_reference"]) < 1e-12
    assert record["processor"] and record["native_bf16"] in (True, False)
    assert set(record["matmul_gflops"]) == {"float32", "bfloat16"} and min(record["matmul_gflops"].values()) > 0
    assert next(r for r in rows if r["method"] == "ours_constrained_other_attention")["attention"] == "eager"
    printed = capsys.readouterr().out
    for shape in ("original", "v4"):
        assert format_table([r for r in rows if r["shape"] == shape]) in printed
    assert format_floor(floor) in printed


def test_bench_auto_precision_adds_bf16_only_where_the_cpu_has_it():
    from pokerlib.kernels import native_bf16
    from pokerlib.tools.bench import resolve_precisions

    expected = ["float32", "bf16"] if native_bf16(torch.device("cpu")) else ["float32"]
    assert resolve_precisions(["auto"]) == expected
    assert resolve_precisions(["float32", "bf16"]) == ["float32", "bf16"]


def test_the_limit_is_every_linear_layers_three_products_and_an_update_that_changes_no_weight(tiny):
    from pokerlib.tools.limit import linear_layers, matmul_flops, matmul_limit

    model, _ = tiny
    policy = frozen_copy(model).requires_grad_(True)
    optimizer = make_optimizer(policy, RunConfig(model="tiny", learning_rate=1e-3))
    layers = linear_layers(policy)
    head = policy.get_output_embeddings()
    assert head in layers and len(layers) == 7 * policy.config.num_hidden_layers + 1  # q k v o gate up down, head
    body = sum(m.in_features * m.out_features for m in layers if m is not head)
    assert matmul_flops(policy, rows=10, head_rows=2) == 6 * (10 * body + 2 * head.in_features * head.out_features)
    before = [p.detach().clone() for p in policy.parameters()]
    for bf16 in (False, True):
        matmul_limit(policy, optimizer, rows=10, head_rows=2, bf16=bf16)()
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3] and all(p.grad is None for p in policy.parameters())
    assert all(optimizer.state[p]["step"].item() == 2 for p in policy.parameters())  # two real AdamW updates
