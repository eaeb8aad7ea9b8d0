"""Evaluation never takes a run down: a config whose eval split packs into no eval batch, while
anything needs eval metrics (metric_for_best_model, best-model tracking, early stopping, eval_steps),
is refused with exit 3 before any model loads, or its slice is grown until it holds one batch."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, data_sets, make_locked_data, run_folders

H100 = REPO / "configs" / "training_config_h100.yaml"
SMOKE_OVERLAY = REPO / "configs" / "axolotl_smoke_test.yaml"


@pytest.mark.slow  # no training: the whole data check of 400 examples with the real Mistral tokenizer
def test_a_rehearsal_of_the_h100_smoke_setup_is_refused_before_loading(tmp_path):
    """The H100 config under sdpa (no flash-attn on the machine) with 5 val examples: Axolotl packs
    them into 0 eval batches and metric_for_best_model would raise KeyError at the first evaluation.
    The rehearsal refuses it with exit 3 before any model loads, in one line that names file, counts and fix."""
    from conftest import require_reference, run_entrypoint

    files = make_locked_data(tmp_path / "data", train=400, val=5, test=8)
    result = run_entrypoint("rehearse", "--config", str(H100), "--overlay", str(SMOKE_OVERLAY),
                            "--set", "attn_implementation=sdpa", *data_sets(files),
                            "--tokenizer", str(require_reference("mistral")),
                            "--output-root", str(tmp_path / "outputs"), env={"WANDB_API_KEY": ""})
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    assert str(files["val"]) in errors[0] and "5 examples" in errors[0] and "make 1 packed bin" in errors[0]
    assert "eval batch" in errors[0] and "eval_sample_packing: false" in errors[0]
    assert "rehearsal model" not in output and "preparation" not in result.stdout
    assert not any((tmp_path / "outputs").glob("rehearse-*/checkpoint-*"))


@pytest.mark.slow
def test_a_rehearsal_under_real_batches_grows_its_eval_slice_and_evaluates(tmp_path):
    """The pod's eval batching (sdpa: 4 bins per eval batch) at the rehearsal's 512-token rows: its
    first 4 val examples make one bin, so it evaluates as many as one eval batch takes, and gets eval_loss."""
    from conftest import require_reference, run_entrypoint

    # 500 val examples of ~27 Mistral tokens fill the 4 bins of 4096 the pod's eval batch takes
    files = make_locked_data(tmp_path / "data", train=400, val=500, test=8)
    result = run_entrypoint("rehearse", "--config", str(H100), "--overlay", str(SMOKE_OVERLAY),
                            "--set", "attn_implementation=sdpa", *data_sets(files),
                            "--tokenizer", str(require_reference("mistral")),
                            "--output-root", str(tmp_path / "outputs"), env={"WANDB_API_KEY": ""})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    (said,) = [line for line in result.stdout.splitlines() if "rehearsal eval slice: " in line]
    assert "4 packed bins of 512 tokens" in said, said
    (run,) = run_folders(tmp_path / "outputs")
    history = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    assert any("eval_loss" in entry for entry in history), history

# ----------------------------------------------------------------------------- the arithmetic, against Axolotl

from cli_tuner import config  # noqa: E402
from cli_tuner.batching import epoch, eval_batches  # noqa: E402
from cli_tuner.checks import data_report  # noqa: E402
from cli_tuner.commands import rehearse as rehearse_command, smoke as smoke_command  # noqa: E402
from cli_tuner.training import slices  # noqa: E402
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
        return len(epoch.generated_batches(sampler))
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
    cfg, asked = loaded.axolotl, int(loaded.settings.val_examples)
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


# ----------------------------------------------------------------------------- refusals and grown slices

PACKING = REPO / "configs" / "overlays" / "packing.yaml"


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_validate_refuses_a_config_that_makes_no_eval_batch_exit_3(tmp_path, mistral_tokenizer_dir):
    from conftest import run_entrypoint

    files = make_locked_data(tmp_path / "data", train=40, val=5, test=4)
    result = run_entrypoint("validate", "--config", str(H100), "--set", "attn_implementation=sdpa", *data_sets(files),
                            "--set", f"tokenizer_config={mistral_tokenizer_dir}")
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: {files['val']}: 5 examples (") and "make 1 packed bin;" in line, line
    assert "4 packed bins of 4096 tokens" in line and "eval_sample_packing: false" in line, line
    # The config as shipped (flash attention: one bin per eval batch) validates on the same data.
    shipped = run_entrypoint("validate", "--config", str(H100), *data_sets(files),
                             "--set", f"tokenizer_config={mistral_tokenizer_dir}")
    assert shipped.returncode == 0, shipped.stdout[-2000:] + shipped.stderr[-2000:]


def test_full_refuses_before_any_model_loads_exit_3(capsys, tmp_path, mistral_tokenizer_dir, monkeypatch):
    from cli_tuner import cli

    monkeypatch.chdir(tmp_path)
    files = make_locked_data(tmp_path / "data", train=40, val=5, test=4)
    outputs = tmp_path / "outputs"
    code = cli.main(["full", "--config", str(H100), "--set", "attn_implementation=sdpa", *data_sets(files),
                     "--set", f"tokenizer_config={mistral_tokenizer_dir}", "--output-root", str(outputs), "--skip-checks"])
    captured = capsys.readouterr()
    assert code == 3, captured.err[-2000:]
    (line,) = error_lines(captured.err)
    assert line.startswith(f"error: {files['val']}: 5 examples (") and "eval batch" in line, line
    assert run_folders(outputs) == []  # no run folder, no model


def packed_sdpa(files, tokenizer_dir, smoke: bool, *sets):
    from cli_tuner.checks import preflight

    overlays = [str(PACKING)] + ([str(SMOKE_OVERLAY)] if smoke else [])
    loaded = config.load(REPO / "configs" / "axolotl_config.yaml", overlays=overlays, sets=[
        # real batches of 2 bins of 256 tokens: 5 examples of ~40 tokens fill one bin
        "attn_implementation=sdpa", "micro_batch_size=2", "sequence_len=256", "sample_packing_bin_size=200",
        *[s for s in data_sets(files) if s != "--set"], f"tokenizer_config={tokenizer_dir}", *sets])
    return preflight.prepare((smoke_command if smoke else rehearse_command).SPEC, loaded, check_environment=False)


def test_smoke_slice_grows_val_to_one_eval_batch_and_says_so(capsys, tmp_path, qwen_tokenizer_dir):
    from cli_tuner.commands import training_mode

    files = make_locked_data(tmp_path / "data", train=80, val=30, test=4)
    plan = packed_sdpa(files, qwen_tokenizer_dir, True)
    report = training_mode.check_data(plan, str(tmp_path / "out"), None)
    capsys.readouterr()
    slices.size_from_settings(plan.loaded, report)
    grown = plan.loaded.settings.val_examples
    said = [line for line in capsys.readouterr().out.splitlines() if "val examples" in line]
    assert grown > 5 and len(said) == 1 and f"smoke slice: {grown} val examples, not 5" in said[0], said
    assert "2 packed bins of 256 tokens" in said[0]
    val = report.val_lengths[0]
    assert eval_batches_axolotl_makes(plan.loaded.axolotl, val[:grown]) >= 1
    assert eval_batches_axolotl_makes(plan.loaded.axolotl, val[:grown - 1]) == 0


def test_smoke_is_refused_when_the_whole_val_file_makes_no_eval_batch(tmp_path, qwen_tokenizer_dir):
    from cli_tuner.commands import training_mode
    from cli_tuner.errors import DataError

    files = make_locked_data(tmp_path / "data", train=80, val=5, test=4)
    plan = packed_sdpa(files, qwen_tokenizer_dir, True)
    report = training_mode.check_data(plan, str(tmp_path / "out"), None)
    with pytest.raises(DataError, match=r"val.jsonl: 5 examples \(\d+ tokens\) make 1 packed bin; one eval batch takes "
                                        r"2 packed bins of 256 tokens"):
        slices.size_from_settings(plan.loaded, report)


def test_the_rehearsal_grows_its_eval_slice_to_one_eval_batch(capsys, tmp_path, qwen_tokenizer_dir):
    from cli_tuner.commands import training_mode
    from cli_tuner.training import rehearsal, slices

    files = make_locked_data(tmp_path / "data", train=80, val=30, test=4)
    plan = packed_sdpa(files, qwen_tokenizer_dir, False)
    report = training_mode.check_data(plan, str(tmp_path / "out"), None)
    cfg, _ = rehearsal.rehearsal_config(plan.loaded.axolotl, tmp_path / "model", 2, None, "config")
    val_examples = slices.rehearsal_eval_examples(plan.loaded, cfg, report, rehearsal.VAL_EXAMPLES)
    assert val_examples > rehearsal.VAL_EXAMPLES
    assert "rehearsal eval slice: " in capsys.readouterr().out
    assert eval_batches_axolotl_makes(cfg, report.val_lengths[0][:val_examples]) >= 1
    _, divergences = rehearsal.rehearsal_config(plan.loaded.axolotl, tmp_path / "model", 2, None, "config",
                                                val_examples=val_examples)
    (sliced,) = [d for d in divergences if d["key"] == "test_datasets"]
    assert sliced["rehearsal"] == f"the first {val_examples} of each file"
