"""Several processes: strategy overlays x shipped configs through `validate`, the engines' rules with
their sources, node and port settings, the batch arithmetic, and the per-GPU memory estimate
checked against AnswerDotAI's published per-GPU peaks (docs/multi-gpu.md).

Published figures (AnswerDotAI/fsdp_qlora, benchmarks_03_2024.md, "Case Study: A Dual 3090"):
Llama-2 7B QLoRA on 2 GPUs, gradient checkpointing (reentrant), LoRA r64 on q,k,v,gate,up,down,
AdamW, bf16; "Peak Memory (GiB)" per GPU:
  FSDP  batch 1, context 512: 4.98    FSDP  batch 1, context 2048: 5.21
  FSDP  batch 4, context 2048: 11.22  FSDP  batch 10, context 2048: 20.97
  DDP   batch 8, context 2048: 20.94  (their "DDP" is FSDP's no-shard mode: a full replica per GPU)
"""

from __future__ import annotations

import pytest

from cli_tuner import cli
from cli_tuner.checks import distributed
from cli_tuner.estimates import memory, memory_sharding
from cli_tuner.checks.distributed import Topology
from bench.multi_gpu_memory import (ANSWERDOTAI, LLAMA2_7B, PUBLISHED_PER_GPU, PUBLISHED_RESERVED_AFTER_WRAP, RTX3090,
                                    at_rest_after_wrap, training_peak)
from conftest import REPO

FOUR_BIT_CONFIGS = ("configs/axolotl_config.yaml", "configs/training_config_h100.yaml")
OVERLAYS = ("configs/overlays/ddp.yaml", "configs/overlays/fsdp2-qlora.yaml", "configs/overlays/deepspeed-zero2.yaml")
STRATEGY = {"ddp.yaml": "ddp", "fsdp2-qlora.yaml": "fsdp2", "deepspeed-zero2.yaml": "zero2"}


def run_cli(capsys, monkeypatch, *argv: str) -> tuple[int, str]:
    monkeypatch.chdir(REPO)
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("processes", [2, 8])
@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("config", FOUR_BIT_CONFIGS)
def test_every_strategy_overlay_resolves_for_every_4bit_config(capsys, monkeypatch, config, overlay, processes):
    code, out = run_cli(capsys, monkeypatch, "validate", "--config", config, "--overlay", overlay,
                        "--gpus", str(processes), "--no-data-report")
    assert code == 0, out
    strategy = STRATEGY[overlay.rsplit("/", 1)[1]]
    assert f"strategy: {strategy} on {processes} processes" in out
    assert f"x {processes} processes" in out and "effective batch" in out
    assert f"per GPU, {processes} x {strategy}" in out


def test_the_m4_config_on_several_processes_is_refused_with_its_reason(capsys, monkeypatch):
    code, out = run_cli(capsys, monkeypatch, "validate", "--config", "configs/training_config_m4.yaml",
                        "--overlay", "configs/overlays/ddp.yaml", "--gpus", "2", "--no-data-report")
    assert code == 4
    assert "needs CUDA GPUs" in out and "MPS" in out


def test_fsdp2_with_bitsandbytes_8bit_adam_is_refused_naming_axolotl(capsys, monkeypatch):
    code, out = run_cli(capsys, monkeypatch, "validate", "--overlay", "configs/overlays/fsdp2-qlora.yaml",
                        "--set", "optimizer=adamw_bnb_8bit", "--gpus", "2", "--no-data-report")
    assert code == 4
    assert "FSDP2 not compatible with adamw_bnb_8bit" in out


def test_fsdp_and_deepspeed_together_are_refused(capsys, monkeypatch):
    code, out = run_cli(capsys, monkeypatch, "validate", "--overlay", "configs/overlays/fsdp2-qlora.yaml",
                        "--overlay", "configs/overlays/deepspeed-zero2.yaml", "--gpus", "2", "--no-data-report")
    assert code == 4
    assert "deepspeed and fsdp cannot be used together" in out


def test_qlora_zero3_without_reentrant_checkpointing_is_refused_with_its_source(tmp_path):
    ds = tmp_path / "zero3.json"
    ds.write_text('{"zero_optimization": {"stage": 3}}')
    cfg = {"adapter": "qlora", "deepspeed": str(ds), "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    problems = distributed.rules(cfg, Topology(nproc_per_node=2), "cuda")
    errors = [p for p in problems if p.level == "error"]
    assert len(errors) == 1 and "warn_qlora_zero3_w_use_reentrant" in errors[0].message
    assert distributed.strategy_of(cfg) == "zero3"


def test_a_missing_or_stageless_deepspeed_config_is_an_error(tmp_path):
    assert "cannot read" in distributed.deepspeed_stage({"deepspeed": str(tmp_path / "nope.json")})[1]
    (tmp_path / "bad.json").write_text('{"zero_optimization": {}}')
    assert "stage must be 0-3" in distributed.deepspeed_stage({"deepspeed": str(tmp_path / "bad.json")})[1]
    assert distributed.deepspeed_stage({"deepspeed": str(REPO / "configs/deepspeed/zero2.json")}) == (2, None)


def test_the_cpu_rehearsal_refuses_sharded_strategies():
    cfg = {"fsdp_version": 2, "fsdp_config": {"reshard_after_forward": True}}
    problems = distributed.rules(cfg, Topology(nproc_per_node=2, cpu=True), None)
    assert any("DDP over gloo only" in p.message for p in problems if p.level == "error")


@pytest.mark.parametrize("topology,key", [
    (Topology(nproc_per_node=0), "--gpus"),
    (Topology(nproc_per_node=2, nnodes=2, node_rank=2, master_addr="10.0.0.1"), "--node-rank"),
    (Topology(nproc_per_node=2, nnodes=2, node_rank=1), "--master-addr"),
    (Topology(nproc_per_node=2, master_port=80), "--master-port"),
    (Topology(nproc_per_node=2, master_port=70000), "--master-port"),
])
def test_node_and_port_settings_are_validated(topology, key):
    assert [p.key for p in distributed.topology_problems(topology)] == [key]


def test_a_two_machine_topology_is_valid():
    topology = Topology(nproc_per_node=4, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29500)
    assert distributed.topology_problems(topology) == [] and topology.world_size == 8


def test_no_processes_on_the_command_line_is_a_usage_error(capsys, monkeypatch):
    with pytest.raises(SystemExit) as exited:  # argparse's exit 2, as for any malformed option
        run_cli(capsys, monkeypatch, "estimate-memory", "--gpus", "0")
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("--gpus:") == 1 and "not a positive whole number" in err


# ------------------------------------------------------------------ batch arithmetic

def test_effective_batch_is_micro_x_accumulation_x_processes_and_advice_keeps_it():
    batch = distributed.batch_of({"micro_batch_size": 1, "gradient_accumulation_steps": 4}, 2)
    assert batch.effective == 8 and batch.config_effective == 4  # the config on one GPU
    own = {"micro_batch_size": 1, "gradient_accumulation_steps": 4}
    batch = distributed.batch_of(own, 2, own)
    assert batch.effective == 8 and batch.config_effective == 4
    assert "--set gradient_accumulation_steps=2 keeps it" in batch.advice()
    assert distributed.batch_of({**own, "gradient_accumulation_steps": 2}, 2, own).advice() is None


def test_no_whole_accumulation_says_so_and_gives_the_nearest():
    own = {"micro_batch_size": 4, "gradient_accumulation_steps": 4}
    advice = distributed.batch_of(own, 8, own).advice()
    assert "no whole accumulation" in advice and "gradient_accumulation_steps=1" in advice


def test_validate_prints_the_accumulation_that_keeps_the_config_batch(capsys, monkeypatch):
    code, out = run_cli(capsys, monkeypatch, "validate", "--gpus", "2", "--no-data-report")
    assert code == 0
    assert "effective batch 8 = micro batch 1 x accumulation 4 x 2 processes" in out
    assert "--set gradient_accumulation_steps=2 keeps it" in out


# ------------------------------------------------------------------ per-GPU memory

@pytest.mark.parametrize("strategy,batch,sequence,published", [p for p in PUBLISHED_PER_GPU if p[2] == 2048])
def test_per_gpu_training_peak_matches_answerdotai_fsdp_qlora_benchmarks(strategy, batch, sequence, published):
    # Their train.py loads each rank's quantized shard itself, so the comparison is the training peak
    # (Axolotl's loading peak is not theirs). 20%: their FSDP1 flat parameters, LoRA dtype and allocator
    # differ from Axolotl 0.19's FSDP2, and the table gives one run per point.
    assert training_peak(strategy, batch, sequence) == pytest.approx(published, rel=0.20)


def test_answerdotai_short_rows_miss_only_what_their_fsdp1_holds_at_rest():
    # At batch 1 x 512 the peak is mostly the model at rest, and theirs is larger than this model's FSDP2
    # split: 3.72 GiB reserved after wrapping (their page) against the estimate's weights, adapters and
    # gathered root. What training adds on top must not be underestimated: the whole shortfall is at rest.
    published_peak = dict(((s, b, c), p) for s, b, c, p in PUBLISHED_PER_GPU)[("fsdp2", 1, 512)]
    assert at_rest_after_wrap() < PUBLISHED_RESERVED_AFTER_WRAP
    assert training_peak("fsdp2", 1, 512) - at_rest_after_wrap() >= published_peak - PUBLISHED_RESERVED_AFTER_WRAP


def test_fsdp2_shards_what_ddp_replicates():
    one = memory.estimate(dict(ANSWERDOTAI, micro_batch_size=1, sequence_len=512), LLAMA2_7B, RTX3090, with_advice=False)
    ddp = memory_sharding.per_gpu_parts(one, LLAMA2_7B, "ddp", 4)
    fsdp = memory_sharding.per_gpu_parts(one, LLAMA2_7B, "fsdp2", 4)
    zero = memory_sharding.per_gpu_parts(one, LLAMA2_7B, "zero2", 4)
    assert ddp["quantized_weights"] == one.parts["quantized_weights"] == zero["quantized_weights"]
    assert fsdp["quantized_weights"] == pytest.approx(one.parts["quantized_weights"] / 4)
    for key in ("gradients", "optimizer_states"):
        assert fsdp[key] == zero[key] == pytest.approx(one.parts[key] / 4)
        assert ddp[key] == one.parts[key]
    assert ddp["ddp_buckets"] == one.parts["gradients"]
    assert fsdp["activations"] == ddp["activations"] == zero["activations"]  # per process, never shrink
    assert sum(fsdp.values()) < sum(zero.values()) < sum(ddp.values())


def test_more_fsdp_processes_lower_the_per_gpu_peak():
    assert training_peak("fsdp2", 1, 512, 8) < training_peak("fsdp2", 1, 512, 2)


def test_estimate_memory_takes_gpus_and_strategy(capsys, monkeypatch):
    code, out = run_cli(capsys, monkeypatch, "estimate-memory", "--gpus", "2", "--strategy", "fsdp2")
    assert code == 0
    assert "per GPU, 2 x fsdp2" in out and "FSDP gathered root" in out
    code, out = run_cli(capsys, monkeypatch, "estimate-memory", "--gpus", "2", "--strategy", "zero2")
    assert code == 0 and "ZeRO fp32 master weights" in out


# ------------------------------------------------------------------ launcher, calibration, resume

def test_one_process_keeps_the_python_launcher_and_several_use_torchrun(tmp_path):
    import sys

    from cli_tuner.training import launcher

    single = launcher.command(tmp_path / "c.yaml", Topology())
    assert single[-2:] == ["--launcher", "python"] and single[0] == sys.executable
    two = launcher.command(tmp_path / "c.yaml", Topology(nproc_per_node=4, nnodes=2, node_rank=1,
                                                         master_addr="10.0.0.5", master_port=29500))
    assert two[two.index("--launcher") + 1] == "torchrun"
    assert two[two.index("--") + 1:] == ["--nproc-per-node=4", "--nnodes=2", "--node-rank=1",
                                         "--master-addr=10.0.0.5", "--master-port=29500"]


def test_the_cpu_ranks_get_accelerate_cpu_and_this_pythons_torchrun():
    import sys
    from pathlib import Path

    from cli_tuner.training import launcher

    env = launcher.environment({"PATH": "/usr/bin"}, Topology(nproc_per_node=2, cpu=True))
    assert env["ACCELERATE_USE_CPU"] == "true"
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert "ACCELERATE_USE_CPU" not in launcher.environment({}, Topology(nproc_per_node=2))  # GPUs: NCCL


def test_calibration_is_keyed_by_processes_and_strategy():
    from cli_tuner.estimates import calibration

    one = calibration.entry_key("c" * 16, "d" * 16, "RTX A5000")
    assert one == f"{'c' * 16}-{'d' * 16}-RTX A5000"  # the key one GPU always had
    assert calibration.entry_key("c" * 16, "d" * 16, "RTX A5000", 4, "fsdp2").endswith("-4xfsdp2")
    assert calibration.entry_key("c" * 16, "d" * 16, "RTX A5000", 2, "ddp") != one


def _checkpoint(path, ranks):
    import json

    path.mkdir(parents=True)
    for name in ("adapter_config.json", "optimizer.pt", "scheduler.pt"):
        (path / name).write_text("x")
    (path / "adapter_model.bin").write_text("x")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    for rank in ranks:
        (path / f"rng_state_{rank}.pth").write_text("x")


def test_a_checkpoint_is_complete_only_when_every_rank_wrote_its_part(tmp_path):
    from cli_tuner.training import run_folder

    _checkpoint(tmp_path / "checkpoint-2", [0, 1])
    assert run_folder.checkpoint_problem(tmp_path / "checkpoint-2", "ddp", range(2)) is None
    _checkpoint(tmp_path / "checkpoint-4", [0])
    assert "rng_state_1.pth" in run_folder.checkpoint_problem(tmp_path / "checkpoint-4", "ddp", range(2))
    said = []
    assert run_folder.newest_complete_checkpoint(tmp_path, said.append, "ddp", range(2)).name == "checkpoint-2"
    assert "not every rank" in said[0]


def test_resume_on_another_world_size_or_strategy_is_refused_in_one_line(tmp_path):
    import json

    from cli_tuner.errors import UsageError
    from cli_tuner.training import run_folder

    identity = run_folder.Identity("full", "c" * 64, "d" * 64)
    run = tmp_path / identity.default_run_id()
    _checkpoint(run / "checkpoint-2", [0, 1])
    record = {**identity.record(), "status": "interrupted", "layout": {"world_size": 2, "strategy": "ddp"}}
    (run / "provenance.json").write_text(json.dumps(record))
    for layout in (run_folder.Layout(4, "ddp", range(4)), run_folder.Layout(2, "fsdp2", range(2))):
        with pytest.raises(UsageError) as refused:
            run_folder.open_run(tmp_path, identity, None, False, True, say=lambda _: None, layout=layout)
        assert "written by 2 processes with ddp" in refused.value.message and "\n" not in refused.value.message
    folder = run_folder.open_run(tmp_path, identity, None, False, True, say=lambda _: None,
                                 layout=run_folder.Layout(2, "ddp", range(2)))
    assert folder.resume_from.name == "checkpoint-2"
    folder.lock.release()


def test_sharded_strategies_go_through_torchrun_even_on_one_gpu(tmp_path):
    from cli_tuner.training import launcher

    assert launcher.uses_torchrun(launcher.command(tmp_path / "c.yaml", Topology(), "fsdp2"))
    assert not launcher.uses_torchrun(launcher.command(tmp_path / "c.yaml", Topology(), "ddp"))


def test_signals_reach_every_rank_under_torchrun_and_only_the_trainer_alone(tmp_path):
    import subprocess
    import sys
    import time

    from cli_tuner.training import launcher

    # A stand-in launcher with two children: the signal goes to the children under torchrun.
    code = ("import subprocess,sys,time\n"
            "kids=[subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']) for _ in range(2)]\n"
            "print('ready', flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        ranks = launcher.ranks_of(parent.pid)
        assert len(ranks) == 2
        assert sorted(launcher.deliver(15, parent.pid, through_torchrun=True)) == sorted(ranks)
        time.sleep(0.5)
        assert parent.poll() is None  # the launcher itself was not signalled
        assert launcher.deliver(15, parent.pid, through_torchrun=False) == [parent.pid]
        parent.wait(timeout=10)
    finally:
        parent.kill()
