"""The training shape of an Axolotl config, read once, with Axolotl's own defaults.

Memory, step and eval-batch arithmetic, calibration, throughput and the data report all need the
row length, the batch and the packing. Each reads them here, so a key the config leaves out counts
as what Axolotl trains with, not a guess of the reader's. The defaults are Axolotl 0.19's pydantic
schema (axolotl/utils/schemas/config.py and training.py):

- `sequence_len: int = Field(default=512)` (config.py)
- `micro_batch_size: int | None = Field(default=1)`, `gradient_accumulation_steps: ... default=1`,
  `eval_batch_size: ... default=None` ("defaults to value of micro_batch_size") (training.py)
- `sample_packing`, `eval_sample_packing`, `pad_to_sequence_len`: `bool | None`, default None (config.py)
- `num_epochs: float = Field(default=1.0)` (training.py); `max_steps: int | None`, default None (config.py)
- `val_set_size: float | None = Field(default=0.0)`, "how much of the dataset to set aside as
  evaluation. 1 = 100%" (config.py); Axolotl refuses it beside `test_datasets` (validation.py)

A value of the wrong type or not positive reads as the default: the config rules
(checks/config_rules.py) report it, and arithmetic on a shape never raises.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE_LEN = 512
MICRO_BATCH_SIZE = 1
GRADIENT_ACCUMULATION_STEPS = 1
NUM_EPOCHS = 1.0


def _positive(cfg: dict, key: str, default):
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return default
    return value


@dataclass(frozen=True)
class TrainingShape:
    sequence_len: int = SEQUENCE_LEN
    micro_batch_size: int = MICRO_BATCH_SIZE
    gradient_accumulation_steps: int = GRADIENT_ACCUMULATION_STEPS
    eval_batch_size: int = MICRO_BATCH_SIZE        # Axolotl: micro_batch_size when unset
    sample_packing: bool = False
    eval_sample_packing: bool = False              # packed eval: packed training, unless turned off
    pad_to_sequence_len: bool = False
    num_epochs: float = NUM_EPOCHS
    max_steps: int | None = None                   # None: num_epochs decides the length
    held_out: float = 0.0                          # share of train set aside for evaluation (val_set_size)

    @classmethod
    def of(cls, cfg: dict) -> TrainingShape:
        micro = int(_positive(cfg, "micro_batch_size", MICRO_BATCH_SIZE))
        packing = bool(cfg.get("sample_packing"))
        max_steps = _positive(cfg, "max_steps", None)
        held_out = float(_positive(cfg, "val_set_size", 0.0)) if not cfg.get("test_datasets") else 0.0
        return cls(
            sequence_len=int(_positive(cfg, "sequence_len", SEQUENCE_LEN)),
            micro_batch_size=micro,
            gradient_accumulation_steps=int(_positive(cfg, "gradient_accumulation_steps", GRADIENT_ACCUMULATION_STEPS)),
            eval_batch_size=int(_positive(cfg, "eval_batch_size", micro)),
            sample_packing=packing,
            eval_sample_packing=packing and cfg.get("eval_sample_packing") is not False,
            pad_to_sequence_len=bool(cfg.get("pad_to_sequence_len")),
            num_epochs=float(_positive(cfg, "num_epochs", NUM_EPOCHS)),
            max_steps=int(max_steps) if max_steps is not None else None,
            held_out=min(held_out, 1.0),
        )

    def trained_examples(self, examples: int) -> int:
        """Of `examples` train examples, those Axolotl trains on once it has set `held_out` aside."""
        return int(examples * (1 - self.held_out))

    @property
    def micro_batch_tokens(self) -> int:
        """Token slots of the largest micro batch: rows are cut or dropped at sequence_len."""
        return self.sequence_len * self.micro_batch_size

    @property
    def examples_per_step(self) -> int:
        """Unpacked rows one optimizer step of one process takes."""
        return self.micro_batch_size * self.gradient_accumulation_steps
