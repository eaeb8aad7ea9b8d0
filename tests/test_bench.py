"""The benchmark's counting logic, the packing overlay, and that packed examples stay apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import bench_tokens, chat_lengths
from cli_tuner.batching import epoch as epoch_batching
from cli_tuner.batching.epoch import BatchingPlan, count_epoch
from conftest import REPO

# Short, uneven lengths like NL2Bash's (40-400 tokens), plus one too long for 512.
RNG = np.random.default_rng(0)
LENGTHS = np.concatenate([RNG.integers(30, 200, size=600), [700]])


def packed_plan(**overrides) -> BatchingPlan:
    values = dict(sequence_len=512, micro_batch_size=2, gradient_accumulation_steps=4, sample_packing=True,
                  pad_to_sequence_len=True, attn_implementation="flash_attention_2",
                  excess_length_strategy="truncate")
    values.update(overrides)
    return BatchingPlan(**values)


def rows_of(plan: BatchingPlan, lengths=LENGTHS) -> list[int]:
    kept = epoch_batching.apply_length_policy(lengths, plan)
    batches = epoch_batching.packed_batches(kept, plan)
    return [int(kept[bin_].sum()) for batch in batches for bin_ in batch]


@pytest.mark.parametrize("attention", ["flash_attention_2", "sdpa"])
def test_packed_rows_never_exceed_their_capacity(attention):
    plan = packed_plan(attn_implementation=attention)
    rows = rows_of(plan)
    capacity = epoch_batching.row_capacity(plan)
    assert capacity == (1024 if attention == "flash_attention_2" else 512)
    assert max(rows) <= capacity
    assert max(rows) > capacity * 0.9  # bins are filled, not one example each


def test_efficiency_is_real_over_processed_and_padding_counts_as_processed():
    count = count_epoch(LENGTHS, packed_plan())
    assert count.efficiency == count.real_tokens / count.processed_tokens
    assert count.processed_tokens >= count.real_tokens
    # Each varlen row is padded up to a multiple of sequence_len, so processed is a multiple of it.
    assert count.processed_tokens % 512 == 0
    assert count.as_dict()["token_efficiency"] == round(count.efficiency, 4)


def test_padded_to_sequence_len_processes_every_example_as_a_full_row():
    plan = BatchingPlan(sequence_len=512, micro_batch_size=1, gradient_accumulation_steps=4,
                        pad_to_sequence_len=True, excess_length_strategy="truncate")
    count = count_epoch(LENGTHS, plan)
    assert count.examples == len(LENGTHS)
    assert count.processed_tokens == len(LENGTHS) * 512
    assert count.real_tokens == int(np.minimum(LENGTHS, 512).sum())  # the 700-token example is truncated
    assert count.optimizer_steps == -(-len(LENGTHS) // 4)


def test_no_padding_with_micro_batch_one_processes_only_real_tokens():
    plan = BatchingPlan(sequence_len=512, micro_batch_size=1, pad_to_sequence_len=False)
    count = count_epoch(LENGTHS, plan)
    assert count.processed_tokens == count.real_tokens
    assert count.dropped_examples == 1  # excess_length_strategy drop (Axolotl's default) removes the 700


def test_pad_to_batch_max_pads_each_batch_to_its_longest_row():
    plan = BatchingPlan(sequence_len=512, micro_batch_size=2, pad_to_sequence_len=False)
    count = count_epoch([10, 30, 20, 20], plan, seed=0)
    order = np.random.default_rng(0).permutation(4)
    lengths = np.array([10, 30, 20, 20])[order]
    assert count.processed_tokens == 2 * max(lengths[:2]) + 2 * max(lengths[2:])
    assert count.real_tokens == 80


def test_packing_reaches_high_efficiency_where_padding_wastes_most_tokens():
    padded = count_epoch(LENGTHS, BatchingPlan(sequence_len=512, pad_to_sequence_len=True, excess_length_strategy="truncate"))
    packed = count_epoch(LENGTHS, packed_plan(sequence_len=2048, micro_batch_size=1))
    assert padded.efficiency < 0.3
    assert packed.efficiency > 0.95
    assert packed.optimizer_steps < padded.optimizer_steps / 10


def test_bin_size_caps_examples_per_row():
    """Axolotl's sample_packing_bin_size (200) limits a bin however much room is left."""
    tiny = np.full(1000, 10)
    capped = epoch_batching.packed_batches(tiny, packed_plan(sequence_len=4096, micro_batch_size=1))
    assert max(len(bin_) for batch in capped for bin_ in batch) == 200
    wider = epoch_batching.packed_batches(tiny, packed_plan(sequence_len=4096, micro_batch_size=1, bin_size=500))
    assert max(len(bin_) for batch in wider for bin_ in batch) == 409  # 4096 // 10


def test_plan_reads_an_axolotl_config():
    plan = BatchingPlan.from_axolotl({"sequence_len": 4096, "micro_batch_size": 4, "gradient_accumulation_steps": 4,
                                      "sample_packing": True, "flash_attention": True})
    assert plan.attn_implementation == "flash_attention_2"
    assert not plan.real_batches
    assert plan.token_slots_per_step == 65536
    assert "16384" in plan.describe()
    assert BatchingPlan.from_axolotl({"sequence_len": 512, "attn_implementation": "sdpa",
                                      "sample_packing": True}).real_batches


def test_tokenized_lengths_match_the_chat_template(qwen_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir))
    rows = [{"messages": [{"role": "user", "content": "list files"}, {"role": "assistant", "content": "ls -la"}]},
            {"messages": [{"role": "user", "content": "disk usage of this folder, human units"},
                          {"role": "assistant", "content": "du -sh ."}]}]
    cfg = {"chat_template": "tokenizer_default", "sequence_len": 512,
           "datasets": [{"path": "x", "type": "chat_template", "field_messages": "messages",
                         "roles_to_train": ["assistant"], "train_on_eos": "turn"}]}
    lengths = chat_lengths.tokenized_lengths(rows, tokenizer, cfg)
    expected = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]) for r in rows]
    assert lengths.total.tolist() == expected
    # Loss on the assistant turn only: the command and its end-of-turn token, not the prompt.
    assert all(0 < t < n for t, n in zip(lengths.trainable, lengths.total))


def test_nl2bash_rows_pair_each_description_with_its_command(tmp_path):
    (tmp_path / "all.nl").write_text("list files\n\nshow the date\n")
    (tmp_path / "all.cm").write_text("ls\nrm -rf /tmp/x\ndate\n")
    rows = chat_lengths.load_rows(tmp_path)
    assert [r["messages"][1]["content"] for r in rows] == ["ls", "date"]  # the pair with no description is left out


def test_tokenizer_dir_prefers_explicit_then_map_then_shared_default(tmp_path, monkeypatch):
    qwen = "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert chat_lengths.tokenizer_dir_for(qwen, qwen, {}, explicit="/x") == "/x"
    assert chat_lengths.tokenizer_dir_for(qwen, qwen, {qwen: "/mapped"}) == "/mapped"
    # The shared default when that folder exists, else the hub id (a fresh clone has no ../shared).
    monkeypatch.setitem(chat_lengths.DEFAULT_TOKENIZER_DIRS, qwen, tmp_path)
    assert chat_lengths.tokenizer_dir_for(qwen, qwen, {}) == str(tmp_path)
    monkeypatch.setitem(chat_lengths.DEFAULT_TOKENIZER_DIRS, qwen, tmp_path / "absent")
    assert chat_lengths.tokenizer_dir_for(qwen, qwen, {}) == qwen
    assert chat_lengths.tokenizer_dir_for("org/unknown", "org/unknown", {}) == "org/unknown"


def test_packing_overlay_passes_axolotl_and_the_job_checks(locked_data):
    """The overlay validates, packs with an isolating attention and lets the epochs set the schedule."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    from cli_tuner import config
    from cli_tuner.checks import config_rules as config_checks
    from cli_tuner.facts import gpus, models as model_facts

    sets = [f"datasets.0.path={locked_data['train']}", f"test_datasets.0.path={locked_data['val']}"]
    loaded = config.load(REPO / "configs/axolotl_config.yaml", overlays=[REPO / "configs/overlays/packing.yaml"], sets=sets)
    facts = model_facts.lookup(loaded.base_model)
    problems = config_checks.all_problems(loaded, facts, gpus.resolve_target("a5000", None))
    assert [p.line() for p in problems if p.level == "error"] == []
    resolved = validate_config(DictDefault(dict(loaded.axolotl)))
    assert resolved.sample_packing and resolved.attn_decontaminates_packing and resolved.attn_supports_packing
    assert resolved.max_steps is None and resolved.warmup_steps is None and resolved.warmup_ratio == 0.1
    assert [v.name for v in bench_tokens.variants_of("configs/axolotl_config.yaml", config.load(
        REPO / "configs/axolotl_config.yaml").axolotl)] == ["shipped", "packed"]


def test_packed_examples_do_not_attend_to_each_other():
    """What Axolotl relies on for sdpa packing: no attention mask, position_ids restarting at 0 per
    example, and transformers builds a block-diagonal mask from them. transformers does so only
    without a KV cache, so the model config goes through Axolotl's own check_model_config, which
    turns use_cache off for training. The logits of example B are then the same packed behind A as
    alone; with position_ids running on (no restart) they are not."""
    import torch
    from axolotl.loaders.utils import check_model_config
    from axolotl.utils.dict import DictDefault
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=128)
    config._attn_implementation = "sdpa"
    check_model_config(DictDefault({"adapter": "lora"}), config)
    assert config.use_cache is False
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    first, second = torch.randint(0, 128, (1, 7)), torch.randint(0, 128, (1, 5))
    packed = torch.cat([first, second], dim=1)
    restart = torch.cat([torch.arange(7), torch.arange(5)]).unsqueeze(0)
    with torch.no_grad():
        alone = model(input_ids=second, position_ids=torch.arange(5).unsqueeze(0)).logits
        isolated = model(input_ids=packed, position_ids=restart).logits[:, 7:]
        leaked = model(input_ids=packed, position_ids=torch.arange(12).unsqueeze(0)).logits[:, 7:]
    torch.testing.assert_close(isolated, alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(leaked, alone, atol=1e-3)


def test_bench_prints_json_for_a_config_on_a_small_dataset(tmp_path, qwen_tokenizer_dir, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"print number {i}"},
                                                     {"role": "assistant", "content": f"echo {i}"}]}) + "\n"
                            for i in range(1000)))
    code = bench_tokens.main(["--config", "configs/axolotl_config.yaml", "--dataset", f"tiny={data}",
                              "--tokenizer", str(qwen_tokenizer_dir), "--json"])
    assert code == 0
    results = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert set(results) == {"shipped", "packed"}
    assert results["shipped"]["processed_tokens"] == 1000 * 512
    assert results["packed"]["token_efficiency"] > 0.9 > 0.2 > results["shipped"]["token_efficiency"]
    assert results["packed"]["optimizer_steps"] < results["shipped"]["optimizer_steps"]
    assert results["shipped"]["est_seconds_per_epoch"] > results["packed"]["est_seconds_per_epoch"] > 0
