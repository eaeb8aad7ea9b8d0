"""One count of a run's optimizer steps (issue 31, point 6): the config checks, validate's projection
and full's decision all print batching.steps.total_steps, which counts packed rows and every process."""

from __future__ import annotations

from cli_tuner.batching import steps
from cli_tuner.checks import config_rules
from cli_tuner.estimates import calibration

PACKED = {"sample_packing": True, "sequence_len": 2048, "micro_batch_size": 1, "gradient_accumulation_steps": 4,
          "num_epochs": 3, "test_datasets": [{"path": "val.jsonl"}], "save_steps": 500}


def test_packed_steps_count_tokens_not_examples():
    packed = steps.total_steps(PACKED, 11_241, mean_example_tokens=66.0)
    assert packed == 3 * -(-11_241 * 66 // int(2048 * 4 * steps.PACKED_FILL))
    unpacked = steps.total_steps({**PACKED, "sample_packing": False}, 11_241)
    assert packed < unpacked / 10  # a packed micro batch holds ~30 of these examples
    # without the data's lengths a packed count is unknown, never the unpacked one
    assert steps.total_steps(PACKED, 11_241) is None


def test_the_processes_share_the_steps():
    one = steps.total_steps(PACKED, 11_241, mean_example_tokens=66.0)
    two = steps.total_steps(PACKED, 11_241, mean_example_tokens=66.0, processes=2)
    assert two == 3 * -(-11_241 * 66 // int(2 * 2048 * 4 * steps.PACKED_FILL)) and two < one
    assert steps.total_steps({**PACKED, "sample_packing": False}, 800, processes=2) == 3 * 100
    assert steps.total_steps({**PACKED, "max_steps": 7}, 800, processes=2) == 7  # max_steps is the count


def test_the_config_checks_print_no_packing_blind_count():
    """The H100 config's validate said "save_steps: 500 never fires in the ~42 steps", then projected
    time "for 3 steps": the 42 counted examples, not packed rows."""
    assert not any(p.key == "save_steps" for p in config_rules.numbers(PACKED, 11_241))
    count = steps.total_steps(PACKED, 11_241, mean_example_tokens=66.0)
    (problem,) = [p for p in config_rules.step_problems(PACKED, count) if p.key == "save_steps"]
    assert f"~{count} steps" in problem.message


def test_full_and_validate_project_the_same_steps():
    entry = {"measured": {"mean_example_tokens": 66.0}}
    for processes in (1, 2):
        assert calibration.full_steps(PACKED, 11_241, entry, processes) == steps.total_steps(
            PACKED, 11_241, 66.0, processes)
