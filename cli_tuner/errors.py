"""User-facing errors: each class carries its exit code, each instance one line of advice.

The exit codes are part of the public interface (README "Exit codes"); keep them stable.
"""

from __future__ import annotations

EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_CONFIG = 4
EXIT_ENVIRONMENT = 5
EXIT_CHECKPOINT_GATE = 6
EXIT_REFUSED = 7  # the run failed the same way too often; starting it again would only bill
EXIT_DANGEROUS_ANSWER = 8  # `ask`: the model's command is dangerous; shown as refused, never run
EXIT_INTERRUPTED = 130


class CliTunerError(Exception):
    """An error the user can fix. The message is printed as one line on stderr."""

    exit_code = EXIT_UNEXPECTED

    def __init__(self, message: str, details: list[str] | None = None, record: str | None = None):
        super().__init__(message)
        self.message = message
        # Lines printed before the final one, e.g. every config problem when the message names the
        # first: library code raises them, only the command line prints.
        self.details = list(details or [])
        # The error line a run's records keep (provenance, attempts.json), when it is not the message:
        # without the advice, so the same failure reads the same on every attempt.
        self.record = record

    def __str__(self) -> str:
        return self.message

    # Set by a command when something must follow the error line (stop the pod, stay up): called
    # with the exit code after the line is shown, returns the code to exit with.
    then = None


class UsageError(CliTunerError):
    exit_code = EXIT_USAGE


class DataError(CliTunerError):
    """Dataset integrity or format problem (hash mismatch, malformed line, missing file)."""

    exit_code = EXIT_DATA


class ConfigError(CliTunerError):
    exit_code = EXIT_CONFIG


class EnvironmentProblem(CliTunerError):
    """The machine cannot run the job: missing package, wrong GPU, no disk, read-only output."""

    exit_code = EXIT_ENVIRONMENT


class TokenizerNotFound(EnvironmentProblem):
    """No tokenizer where the job looks (a folder, the shared data folder, the HF cache) and no hub to fetch it from."""


class CheckpointGateFailed(CliTunerError):
    """The trained adapter failed the quality gate (syntax rate, dangerous commands)."""

    exit_code = EXIT_CHECKPOINT_GATE


class Interrupted(CliTunerError):
    """Training stopped on SIGTERM/SIGINT; the last checkpoint is kept for resume."""

    exit_code = EXIT_INTERRUPTED


class TrainingFailed(CliTunerError):
    """`axolotl train` exited non-zero: maybe transient (a restart resumes), maybe not (attempts cap it)."""

    exit_code = EXIT_UNEXPECTED


class AlreadyFinished(UsageError):
    """The run folder holds a run that ended (succeeded or failed the gate); it is never retrained."""


class RunFolderBusy(UsageError):
    """Another live process holds the run folder's lock."""


class RepeatedFailure(CliTunerError):
    """The run's last attempts failed with the same error: a restart would fail again."""

    exit_code = EXIT_REFUSED
