"""Several processes decide together when to checkpoint and when to stop.

Saving a checkpoint is collective (every rank writes its RNG state, FSDP and ZeRO their shards) and
so is every training step: a rank that stops or saves alone leaves the others waiting at a
collective until the launcher kills them. A signal reaches each rank at its own moment and a timed
checkpoint reads each rank's clock, so the ranks can disagree by a step. This callback, last in the
list, takes the maximum of every rank's `should_save` and `should_training_stop` at the end of each
step (one 2-element all-reduce), so all ranks save and stop at the same step.
"""

from __future__ import annotations

from transformers import TrainerCallback


class RankAgreementCallback(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return control
        flags = torch.tensor([float(bool(control.should_save)), float(bool(control.should_training_stop))],
                             device=args.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        control.should_save = bool(flags[0].item())
        control.should_training_stop = bool(flags[1].item())
        return control
