"""Where things are and what files are called: one place, so a name never means two things.

`provenance.json` is only ever the run record; the data manifest has its own name. A
"checkpoint" is the trainer's resumable state; the quality check of an adapter is "evaluation".
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = REPO_ROOT / "configs"
REQUIREMENTS = REPO_ROOT / "requirements.txt"
SMOKE_OVERLAY = CONFIGS_DIR / "axolotl_smoke_test.yaml"
DEFAULT_CONFIG = "configs/axolotl_config.yaml"
DEFAULT_DATA_DIR = Path("data/processed")
DEFAULT_OUTPUT_ROOT = "outputs"  # the run folders' parent when neither --output-root nor OUTPUT_ROOT says

# The data manifest (SHA256 of every split). Data locked before the rename has the old name.
MANIFEST_FILE = "manifest.json"
LEGACY_MANIFEST_FILE = "provenance.json"

# Files of a run folder.
PROVENANCE_FILE = "provenance.json"       # the run record: what ran, on what, how it ended
IDENTITY_FILE = "run_identity.json"       # written when the folder is made, before any slow step
RESOLVED_CONFIG = "resolved_config.yaml"  # exactly what Axolotl receives
TRAIN_LOG = "train.log"
PROGRESS_FILE = "progress.json"           # written by the Axolotl plugin inside the trainer
MEASUREMENT_INPUTS_FILE = "measurement_inputs.json"  # FLOPs per token and GPU peak, for the plugin
MEASUREMENTS_FILE = "measurements.json"   # peak GPU memory, tokens/s, step time, MFU, measured in the trainer
EVAL_FILE = "eval.json"
FINAL_DIR = "phase2-final"
REHEARSAL_MODEL_DIR = "rehearsal-model"
PREPARED_DIR = "prepared"                 # beside the run folders: tokenized data, keyed by data hash
DATA_REPORT_FILE = "data_report.json"
CALIBRATION_FILE = "calibration.json"     # in the output root: smoke's measurements, keyed by config, data, GPU
LOCK_FILE = "run.lock"                    # flock'd by the one process training in the folder; names it
ATTEMPTS_FILE = "attempts.json"           # every start of the run and how it ended


def job_pid_file(output_root: Path, pid: int) -> Path:
    """In the output root, one per running training job: docker/start.sh forwards a pod stop to these pids."""
    return Path(output_root) / f".job-{pid}.pid"


# Environment the job sets for the trainer process (read by the Axolotl plugin there).
CHECKPOINT_MINUTES_ENV = "CLI_TUNER_CHECKPOINT_EVERY_MINUTES"
