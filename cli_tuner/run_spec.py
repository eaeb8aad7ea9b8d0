"""What one training verb does, said once: its command module builds a frozen `RunSpec`.

Preflight, the environment checks, the slices, the pipeline, the measurements and the finish
setting read these fields; none of them asks which verb runs. The name is only a label: the run
folder's prefix and provenance's `mode`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RunSpec:
    name: str                          # the label: run folder prefix, provenance's `mode`, messages
    # preflight depth
    detects_machine: bool = True       # detect this machine and check its environment
    on_gpu: bool = True                # trains on this machine's GPU: device checks, memory on it, the
                                       # flash-attention source and the CUDA probes
    checks_target: bool = True         # checks the config against cli_tuner.target (a CPU rehearsal has none)
    # which slices
    slices_from_settings: bool = False  # trains and evaluates on the first cli_tuner.train_examples /
                                        # val_examples, grown to one optimizer step and one eval batch
    # which launcher and model
    cpu_rehearsal: bool = False        # a tiny model of the same architecture on the CPU (training.rehearsal)
    # evaluation and publication
    publishes: bool = False            # copies the final adapter to phase2-final/ and checks it on the test split
    gated: bool = False                # the quality gate decides the exit code (else it is only recorded)
    baseline: bool = False             # the base model answers too, when cli_tuner.baseline asks
    check_sample: int | None = None    # test prompts the check answers (None: all of them)
    # what is measured
    counts_flops: bool = True          # FLOPs per token for the MFU (a tiny stand-in model's would be the wrong ones)
    # lifecycle
    stops_pod_when_attended: bool = False  # on RunPod, on_finish auto stops the pod even when started by hand

    def as_record(self) -> dict:
        return asdict(self)
