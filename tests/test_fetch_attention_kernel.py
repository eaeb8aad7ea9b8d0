"""scripts/fetch_attention_kernel.py, the image's build step for flash attention: the parts that need
no Hub (which commit, which build, the folder it leaves) and that the job's fact module reads that
folder the way the kernels package will. The download itself runs in the image build."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub.hf_api import GitRefInfo

from cli_tuner.facts import attention

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "fetch_attention_kernel.py"
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(scope="module")
def fetch():
    spec = importlib.util.spec_from_file_location("fetch_attention_kernel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def this_torch_build() -> str:
    import torch

    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    backend = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    return f"torch{major}{minor}-cxx11-{backend}-x86_64-linux"


def test_its_defaults_are_the_pins_the_job_checks(fetch):
    assert (fetch.REPO, fetch.VERSION) == (attention.KERNEL_REPO, attention.KERNEL_VERSION)


def test_the_commit_is_the_version_branchs(fetch):
    branches = [GitRefInfo(name="main", ref="refs/heads/main", target_commit="a" * 40),
                GitRefInfo(name="v2", ref="refs/heads/v2", target_commit=COMMIT),
                GitRefInfo(name="v3", ref="refs/heads/v3", target_commit="b" * 40)]
    assert fetch.branch_commit(branches, 2) == COMMIT
    with pytest.raises(fetch.FetchError, match="no branch v4; the repo has v2, v3"):
        fetch.branch_commit(branches, 4)


def test_the_build_is_the_one_kernels_picks_for_this_torch(fetch):
    names = ["torch212-cxx11-cu126-x86_64-linux", this_torch_build(), "torch213-cxx11-cu130-aarch64-linux", "junk"]
    assert fetch.pick_build(names) == this_torch_build()
    with pytest.raises(fetch.FetchError, match="no build for torch"):
        fetch.pick_build(["torch212-cxx11-cu126-x86_64-linux"])


def test_the_folder_it_leaves_is_what_the_job_finds_through_local_kernels(fetch, tmp_path):
    dest = tmp_path / "flash-attn2"
    build = dest / "build" / this_torch_build()
    with pytest.raises(fetch.FetchError, match="no kernel module"):
        fetch.check_fetched(dest, this_torch_build())
    (build / "flash_attn2").mkdir(parents=True)
    (build / "flash_attn2" / "__init__.py").write_text("")
    fetch.check_fetched(dest, this_torch_build())
    record = json.loads(fetch.write_record(dest, fetch.REPO, 2, COMMIT, this_torch_build()).read_text())
    assert record == {"repo": fetch.REPO, "version": 2, "commit": COMMIT, "build": this_torch_build()}
    found = attention.detect({"LOCAL_KERNELS": f"{fetch.REPO}={dest}", "HF_HUB_CACHE": str(tmp_path / "none")})
    assert found.kind == attention.HUB_KERNEL and found.revision == COMMIT and found.kernel_path == str(build)


def test_a_failure_is_one_error_line_and_exit_1(tmp_path):
    """Offline here: the Hub cannot be asked, and the script says so in one line."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--dest", str(tmp_path / "k")], capture_output=True,
                          text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {attention.KERNEL_REPO} v2: ")
