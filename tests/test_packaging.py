"""Packaging: pyproject.toml and its `cli-tuner` command, the pins it shares with the lock, and the
setup script's translation of pip's settings for uv."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO, run_entrypoint, write_chat_split

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def pins(path: Path) -> dict[str, str]:
    """{normalized name: version} of a requirements file; every requirement must be an exact pin."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: {line!r} is not pinned with =="
        found[normalize(match[1])] = match[2]
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pyproject_declares_the_package_its_command_and_python():
    project = PYPROJECT["project"]
    assert project["name"] == "cli-tuner" and project["requires-python"] == "==3.11.*"
    assert project["scripts"] == {"cli-tuner": "cli_tuner.cli:main"}
    assert set(project["dynamic"]) == {"dependencies", "optional-dependencies"} and "dependencies" not in project
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    # The RunPod SDK is an extra: only the CUDA image (and the dev venv, for its tests) installs it.
    assert dynamic["optional-dependencies"] == {"runpod": {"file": ["requirements-runpod.txt"]},
                                                "dev": {"file": ["requirements-dev.txt", "requirements-runpod.txt"]},
                                                "gguf": {"file": ["requirements-gguf.txt"]}}
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["cli_tuner", "cli_tuner.*"]
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"


def test_requirements_are_pinned_and_agree_with_the_lock():
    direct, lock = pins(REPO / "requirements.txt"), pins(REPO / "requirements-lock.txt")
    pins(REPO / "requirements-dev.txt")  # pinned too
    gguf = pins(REPO / "requirements-gguf.txt")
    assert all(lock.get(name) == version for name, version in gguf.items()), gguf
    assert "torch" not in lock  # its build differs by image; its version is requirements.txt's
    disagree = {name: (version, lock.get(name)) for name, version in direct.items()
                if name != "torch" and lock.get(name) != version}
    assert disagree == {}, f"requirements.txt vs requirements-lock.txt: {disagree}"
    extra = pins(REPO / "requirements-runpod.txt")
    assert set(extra) == {"runpod"} and "runpod" not in direct and extra["runpod"] == lock["runpod"]
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert f"TORCH_VERSION={direct['torch']} " in setup


def installed() -> metadata.Distribution | None:
    """cli-tuner as installed in the venv running the tests (not an egg-info in the checkout)."""
    found = list(metadata.distributions(name="cli-tuner", path=site.getsitepackages()))
    return found[0] if found else None


def console_script() -> Path:
    """The venv's cli-tuner, installed from this checkout; skips with what to run otherwise."""
    script = Path(sys.executable).parent / "cli-tuner"
    dist = installed()
    if not script.is_file() or dist is None:
        pytest.skip(f"{script} is not installed in this venv; run `bash scripts/setup.sh` (it installs the "
                    "project into .venv), or `pip install -e .` in a venv of your own")
    source = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    if source.rstrip("/") != REPO.as_uri():
        pytest.skip(f"this venv's cli-tuner is installed from {source or 'a wheel'}, not {REPO}; "
                    "run `bash scripts/setup.sh` in this checkout")
    return script


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(console_script()), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_installed_requirements_are_requirements_txt():
    dist = installed()
    if dist is None:
        pytest.skip("cli-tuner is not installed in this venv; run `bash scripts/setup.sh`")
    required = {normalize(r.split("==")[0]): r.split("==")[1] for r in dist.requires or [] if "extra ==" not in r}
    assert required == pins(REPO / "requirements.txt")


def test_cli_tuner_help_is_the_entrypoints_help(tmp_path):
    result = run_script("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ours = run_entrypoint("--help").stdout
    # each names itself as typed, in the usage and the examples; otherwise the help is the same
    assert result.stdout.startswith("usage: cli-tuner ") and ours.startswith("usage: entrypoint.py ")
    assert "python entrypoint.py rehearse" in ours and "python entrypoint.py" not in result.stdout
    assert result.stdout.split("\n\n", 1)[1] == ours.split("\n\n", 1)[1].replace("python entrypoint.py ", "cli-tuner ")
    assert "lock-data" in result.stdout and "rehearse" in result.stdout


def test_cli_tuner_locks_data_in_another_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    write_chat_split(tmp_path / "mine" / "train.jsonl", 5)
    result = run_script("lock-data", "--data-dir", "mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "mine" / "manifest.json").read_text())
    expected = hashlib.sha256((tmp_path / "mine" / "train.jsonl").read_bytes()).hexdigest()
    assert manifest["files"]["train.jsonl"]["sha256"] == expected and manifest["files"]["train.jsonl"]["lines"] == 5


def test_cli_tuner_elsewhere_asks_for_a_config(tmp_path):
    """The default --config is relative to the current folder: outside the repo, the user is told."""
    result = run_script("validate", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr.strip() == (f"error: configs/axolotl_config.yaml: config file not found (resolved against "
                                     f"{tmp_path}); run from the project folder, or give the file's absolute path")


def test_the_files_the_job_reads_from_the_checkout_are_found_from_any_folder(tmp_path):
    """The smoke overlay and doctor's requirements.txt sit beside the package, not in the current folder."""
    console_script()  # skips unless this checkout is installed in the venv
    probe = "import cli_tuner.paths as p; print(p.SMOKE_OVERLAY); print(p.REQUIREMENTS)"
    shown = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": ""}).stdout.split()
    assert shown == [str(REPO / "configs" / "axolotl_smoke_test.yaml"), str(REPO / "requirements.txt")]


def test_multiprocess_starts_a_spawn_pool():
    """datasets' save_to_disk (Axolotl's data preparation) starts a multiprocess spawn pool.
    multiprocess ships one pure wheel per Python minor; its py310 wheel, which an installer can
    pick for 3.11, fails right here (fork_exec() takes exactly 23 arguments (21 given))."""
    import multiprocess

    with multiprocess.get_context("spawn").Pool(1) as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]


# ---- scripts/setup.sh and its pip-to-uv translation

def pip_to_uv():
    spec = importlib.util.spec_from_file_location("pip_to_uv", REPO / "scripts" / "pip_to_uv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# `pip config list` on the machine this was built on.
PIP_CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.disable-pip-version-check='1'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels /opt/global-only'
"""


def test_pip_settings_become_uv_options_and_variables():
    module = pip_to_uv()
    args, env, notes = module.translate(module.parse(PIP_CONFIG_LIST.splitlines()), environ={})
    assert args == ["--index", "https://pypi.org/simple",  # the main index first: see pip_to_uv's docstring
                    "--index", "file:///opt/pypi/simple", "--index", "file:///opt/pypi-more/simple",
                    "--find-links", "/opt/wheels",  # PIP_FIND_LINKS wins over the config file, as in pip
                    "--constraint", "/etc/xdg/pip/constraints.txt",
                    "--index-strategy", "unsafe-best-match"]  # pip's rule: the best version of all indexes
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "UV_HTTP_TIMEOUT": "180"}
    assert notes == []


def test_a_uv_setting_of_the_user_wins_and_unknown_pip_settings_are_named():
    module = pip_to_uv()
    settings = module.parse(PIP_CONFIG_LIST.splitlines() + ["install.index-url='https://mirror.example/simple'",
                                                             "global.prefer-binary='true'"])
    args, env, notes = module.translate(settings, environ={"UV_FIND_LINKS": "/a,/b", "SSL_CERT_FILE": "/mine.pem",
                                                           "UV_INDEX_STRATEGY": "first-index"})
    assert args[:4] == ["--default-index", "https://mirror.example/simple", "--index", "https://mirror.example/simple"]
    assert args[args.index("--find-links"):][:4] == ["--find-links", "/a", "--find-links", "/b"]
    assert "--index-strategy" not in args and "SSL_CERT_FILE" not in env
    assert notes == ["note: pip setting prefer-binary='true' has no uv counterpart here; uv ignores it"]


def test_the_rendered_bash_survives_spaces_and_quotes(tmp_path):
    module = pip_to_uv()
    text = module.render(["--find-links", "/opt/my wheels", "--constraint", "it's.txt"], {"UV_HTTP_TIMEOUT": "60"})
    shown = subprocess.run(["bash", "-c", 'UV_PIP_ARGS=(); eval "$1"; printf "%s\\n" "${UV_PIP_ARGS[@]}" "$UV_HTTP_TIMEOUT"',
                            "-", text], capture_output=True, text=True, check=True).stdout
    assert shown.splitlines() == ["--find-links", "/opt/my wheels", "--constraint", "it's.txt", "60"]


def test_the_helper_reads_a_saved_pip_config_list(tmp_path):
    saved = tmp_path / "pip-config.txt"
    saved.write_text(PIP_CONFIG_LIST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "SSL_"))}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "pip_to_uv.py"), "--from", str(saved)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    assert "UV_PIP_ARGS+=(--index https://pypi.org/simple --index file:///opt/pypi/simple" in result.stdout
    assert "export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in result.stdout


def setup_copy(tmp_path: Path) -> Path:
    """setup.sh in a folder of its own: it works in the folder above its own, never this checkout."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    return tmp_path / "scripts" / "setup.sh"


def test_setup_refuses_a_python_that_is_not_3_11(tmp_path):
    fake = tmp_path / "python3.12"
    fake.write_text('#!/bin/sh\n[ "$1" = -V ] && { echo "Python 3.12.4"; exit 0; }\nexit 1\n')
    fake.chmod(0o755)
    result = subprocess.run(["bash", str(setup_copy(tmp_path))], env={**os.environ, "PYTHON": str(fake)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 5
    assert result.stderr.strip() == ("error: Python 3.11 is required (axolotl 0.19.0 supports 3.11; found Python "
                                     "3.12.4); install it or set PYTHON=/path/to/python3.11")
    assert not (tmp_path / ".venv").exists()


def test_setup_refuses_an_unknown_option(tmp_path):
    result = subprocess.run(["bash", str(setup_copy(tmp_path)), "--devv"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown option '--devv'; usage: bash scripts/setup.sh [--dev]"


def test_ci_requires_the_reference_data_and_runs_both_readme_test_commands():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "CLI_TUNER_REQUIRE_REFERENCE_DATA=1" in ci and "\nbash scripts/setup.sh --dev\n" in ci
    assert ".venv/bin/python -m pytest \"$@\"" in ci
    for selection in ('-q -n auto -m "not slow"', "-q -n auto -m slow"):  # the quick suite, then the tests that train
        assert f".venv/bin/python -m pytest {selection}" in readme
        assert f"\nrun_tests {selection} --durations=15\n" in ci  # each test's cost, in CI's own output
