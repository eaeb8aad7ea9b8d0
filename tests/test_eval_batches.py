"""Evaluation never takes a run down: a config whose eval split packs into no eval batch, while
anything needs eval metrics (metric_for_best_model, best-model tracking, early stopping, eval_steps),
is refused with exit 3 before any model loads, or its slice is grown until it holds one batch."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, data_sets, make_locked_data, run_folders

H100 = REPO / "configs" / "training_config_h100.yaml"
SMOKE_OVERLAY = REPO / "configs" / "axolotl_smoke_test.yaml"


@pytest.mark.slow
def test_a_rehearsal_of_the_h100_smoke_setup_evaluates_or_is_refused_before_loading(tmp_path):
    """The H200 run of 2026-12-04: the H100 config under sdpa (no flash-attn on the machine), 5 val
    examples; Axolotl packed them into 0 eval batches and metric_for_best_model raised KeyError."""
    from conftest import require_reference, run_entrypoint

    files = make_locked_data(tmp_path / "data", train=400, val=5, test=8)
    result = run_entrypoint("rehearse", "--config", str(H100), "--overlay", str(SMOKE_OVERLAY),
                            "--set", "attn_implementation=sdpa", *data_sets(files),
                            "--tokenizer", str(require_reference("mistral")),
                            "--output-root", str(tmp_path / "outputs"), env={"WANDB_API_KEY": ""})
    output = result.stdout + result.stderr
    if result.returncode == 3:  # refused before any model loads, in one line that names file, counts and fix
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output[-3000:]
        assert str(files["val"]) in errors[0] and "eval batch" in errors[0] and "eval_sample_packing: false" in errors[0]
        assert "rehearsal model" not in output and "preparation" not in result.stdout
        return
    assert result.returncode == 0, output[-3000:]
    (run,) = run_folders(tmp_path / "outputs")
    history = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    assert any("eval_loss" in entry for entry in history), history


# ----------------------------------------------------------------------------- the arithmetic, against Axolotl

from cli_tuner import config  # noqa: E402
from cli_tuner.checks import data_report, eval_batches  # noqa: E402
from test_config_matrix import CONFIGS, NOT_FOR, OVERLAYS, TOKENIZER_OF, ids  # noqa: E402

# Each shipped pair, as validate/full and as smoke resolves it; and under sdpa, the setting of a CUDA
# machine without flash attention (the H200 run; the fallback of issue 21c), where packed configs get
# Axolotl's real batches.
PAIRS = [(c, o) for c in CONFIGS for o in OVERLAYS if (c.name, o.name if o else None) not in NOT_FOR]
CASES = [(c, o, smoke, sets) for c, o in PAIRS for smoke in (False, True) for sets in ((), ("attn_implementation=sdpa",))]


def resolved(config_path, overlay, smoke: bool, sets=()) -> config.LoadedConfig:
    overlays = ([str(overlay)] if overlay else []) + ([str(SMOKE_OVERLAY)] if smoke else [])
    return config.load(config_path, overlays=overlays, sets=list(sets))


@pytest.fixture(scope="module")
def val_lengths():
    """Token lengths of the shipped sample val split, rendered with each model's real template."""
    from conftest import require_reference

    from cli_tuner import tokenizer as tokenizer_loader

    lengths = {}
    for name in ("qwen", "mistral"):
        tok = tokenizer_loader.load(str(require_reference(name)))
        problems = data_report.Problems()
        examples = data_report.read_split("val", REPO / "data" / "processed" / "val.jsonl", problems)
        loaded = config.load(REPO / "configs" / "axolotl_config.yaml")
        measured = data_report.measure(tok, data_report.chat_template_for(loaded, tok), examples, problems)
        lengths[name] = [m.total for m in measured]
    return lengths


def eval_batches_axolotl_makes(cfg: dict, lengths: list[int]) -> int:
    """Eval batches as Axolotl 0.19's trainer builds them, from Axolotl's own validated config: the eval set
    shuffled by `datasets` with the seed, long examples truncated, then its MultipackBatchSampler
    (packed eval) or a DataLoader of eval_batch_size (unpacked)."""
    import copy

    import datasets
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, SequentialSampler

    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.samplers.multipack import MultipackBatchSampler

    checked = validate_config(DictDefault(copy.deepcopy(cfg)))
    table = datasets.Dataset.from_dict({"length": lengths})
    if checked.shuffle_merged_datasets:
        table = table.shuffle(seed=checked.seed)
    ordered = [min(x, checked.sequence_len) for x in table["length"]]  # excess_length_strategy: truncate
    micro = checked.micro_batch_size
    if checked.sample_packing and checked.eval_sample_packing is not False:
        real = checked.multipack_real_batches if checked.multipack_real_batches is not None \
            else not checked.attn_supports_packing
        sampler = MultipackBatchSampler(SequentialSampler(range(len(ordered))), batch_size=micro if real else 1,
                                        batch_max_len=checked.sequence_len if real else micro * checked.sequence_len,
                                        lengths=np.array(ordered), bin_size=checked.sample_packing_bin_size,
                                        group_size=checked.sample_packing_group_size,
                                        sequential=bool(checked.sample_packing_sequentially), drop_last=True,
                                        num_processes=1)
        return len(sampler.generate_batches())
    drop_last = checked.dataloader_drop_last if checked.dataloader_drop_last is not None else \
        bool(checked.sample_packing and checked.eval_sample_packing is False)
    loader = DataLoader(torch.zeros(len(ordered)), batch_size=checked.eval_batch_size or micro, drop_last=drop_last)
    return len(loader)


@pytest.mark.parametrize("config_path,overlay,smoke,sets", CASES, ids=ids)
def test_eval_batch_count_is_axolotls(config_path, overlay, smoke, sets, val_lengths):
    cfg = resolved(config_path, overlay, smoke, sets).axolotl
    sample = val_lengths[TOKENIZER_OF[config_path.name]]
    # Every slice of the sample val split, and NL2Bash-sized ones built from its real lengths.
    for lengths in [sample[:n] for n in range(1, len(sample) + 1)] + [sample * 10, sample * 40]:
        assert eval_batches.batches(cfg, lengths) == eval_batches_axolotl_makes(cfg, lengths), len(lengths)


@pytest.mark.parametrize("config_path,overlay,sets", [(c, o, s) for c, o, smoke, s in CASES if smoke], ids=ids)
def test_smoke_slice_holds_one_eval_batch(config_path, overlay, sets, val_lengths):
    loaded = resolved(config_path, overlay, True, sets)
    cfg, asked = loaded.axolotl, int(loaded.tuner["val_examples"])
    lengths = val_lengths[TOKENIZER_OF[config_path.name]] * 40  # NL2Bash-sized val split
    count = eval_batches.examples_for_one_batch(cfg, [lengths], at_least=asked)
    assert count is not None and count >= asked
    assert eval_batches_axolotl_makes(cfg, lengths[:count]) >= 1
    if count > asked:  # grown only when the asked slice really is short, and no further than needed
        assert eval_batches_axolotl_makes(cfg, lengths[:count - 1]) == 0


def test_the_h200_run_made_no_eval_batch_and_is_refused(val_lengths):
    """H100 config + smoke overlay under sdpa, 5 val examples: 0 eval batches, as Axolotl logged
    (gather_len_batches: [0]); the sample val split as a whole is short too, so it is refused."""
    cfg = resolved(H100, None, True, ("attn_implementation=sdpa",)).axolotl
    sample = val_lengths["mistral"]
    assert eval_batches_axolotl_makes(cfg, sample[:5]) == 0 == eval_batches.batches(cfg, sample[:5])
    assert eval_batches.examples_for_one_batch(cfg, [sample], at_least=5) is None
    line = eval_batches.refusal(cfg, sample, "val.jsonl", "h100.yaml")
    assert line.startswith(f"val.jsonl: {len(sample)} examples (") and "make 1 packed bin;" in line
    assert "4 packed bins of 4096 tokens" in line and "metric_for_best_model" in line
    assert "eval_sample_packing: false" in line and "multipack_real_batches: false" in line
    # With flash attention (the config as shipped) one bin is one eval batch: nothing to refuse.
    assert eval_batches.refusal(resolved(H100, None, True).axolotl, sample[:5], "val.jsonl", "h100.yaml") is None


def test_nothing_is_refused_when_nothing_evaluates(val_lengths):
    cfg = resolved(H100, None, True, ("attn_implementation=sdpa", "eval_steps=null", "eval_strategy=no",
                                      "metric_for_best_model=null")).axolotl
    assert eval_batches.evaluates(cfg) == []
    assert eval_batches.refusal(cfg, val_lengths["mistral"][:5], "val.jsonl", "h100.yaml") is None


def test_the_eval_need_follows_the_resolved_attention_keys():
    """steps.attention_packs decides, from the resolved config: a fallback that writes sdpa +
    multipack_real_batches: false gets one bin per eval batch, like flash attention."""
    flash = resolved(H100, None, True).axolotl
    sdpa = resolved(H100, None, True, ("attn_implementation=sdpa",)).axolotl
    fallback = resolved(H100, None, True, ("attn_implementation=sdpa", "multipack_real_batches=false")).axolotl
    assert eval_batches.batching(flash) == eval_batches.batching(fallback)
    assert eval_batches.batching(flash).batch_size == 1 and eval_batches.batching(sdpa).batch_size == 4
