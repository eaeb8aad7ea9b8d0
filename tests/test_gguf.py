"""`export --format gguf` for real: a rehearsal's tiny adapter and base through llama.cpp's own
converters (from the pinned llama-cpp-python sdist), loaded by the real llama-cpp-python on the CPU:
the base with the LoRA GGUF, the merged f16 file and the quantized one; greedy parity with
transformers + PEFT; `ask --gguf`."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import run_entrypoint

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp", reason="the gguf extra (llama-cpp-python) is not installed: "
                                "pip install -e '.[gguf]' -c requirements-lock.txt")

# Fixed prompts for the parity check; the prompt text is the trained chat template's.
PROMPTS = ["list files by size", "show free disk space", "count lines in notes.txt", "print the date"]
FIRST_TOKENS = 4


@pytest.fixture(scope="module")
def gguf_export(finished_rehearsal):
    result = run_entrypoint("export", "--run", str(finished_rehearsal), "--format", "gguf", timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = finished_rehearsal / "gguf"
    assert result.stdout.strip().splitlines()[-1] == str(folder)
    return folder


@pytest.fixture(scope="module")
def base_gguf(finished_rehearsal, tmp_path_factory):
    """The tiny base model as GGUF f16, with the same converter (what Ollama's own base would be)."""
    from cli_tuner.serving import llama_cpp as converters

    target = tmp_path_factory.mktemp("base-gguf") / "base-f16.gguf"
    return converters.convert_model(finished_rehearsal / "rehearsal-model", target, [])


def test_the_export_writes_adapter_f16_q4_k_m_and_modelfiles_with_sizes_and_hashes(gguf_export):
    record = json.loads((gguf_export / "export.json").read_text())
    assert set(record["files"]) == {"adapter-f16.gguf", "model-f16.gguf", "model-Q4_K_M.gguf", "Modelfile",
                                    "Modelfile.adapter"}
    for name, entry in record["files"].items():
        data = (gguf_export / name).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    for name in ("adapter-f16.gguf", "model-f16.gguf", "model-Q4_K_M.gguf"):
        assert (gguf_export / name).read_bytes()[:4] == b"GGUF"
    assert record["files"]["model-Q4_K_M.gguf"]["bytes"] < record["files"]["model-f16.gguf"]["bytes"]
    assert record["converter"]["llama_cpp_python"] == "0.3.36" and record["converter"]["llama_cpp_commit"]
    modelfile = (gguf_export / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-Q4_K_M.gguf\n") and 'PARAMETER stop "' in modelfile
    assert "ADAPTER ./adapter-f16.gguf" in (gguf_export / "Modelfile.adapter").read_text()
    assert not (gguf_export / "merged-hf").exists()


def greedy_tokens_transformers(run, prompts):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run / "phase2-final"))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(run / "rehearsal-model")),
                                      str(run / "phase2-final")).eval()
    out = {}
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            generated = model.generate(torch.tensor([ids]), max_new_tokens=FIRST_TOKENS, do_sample=False)
        out[prompt] = (ids, generated[0, len(ids):].tolist())
    return out


def greedy_tokens_llama(model_path, ids, lora_path=None):
    llm = llama_cpp.Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None, n_ctx=512,
                          seed=0, verbose=False)
    tokens = []
    for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
        tokens.append(token)
        if len(tokens) == FIRST_TOKENS:
            break
    return tokens


def test_f16_gguf_with_the_adapter_and_merged_f16_agree_with_transformers(finished_rehearsal, gguf_export, base_gguf):
    expected = greedy_tokens_transformers(finished_rehearsal, PROMPTS)
    for prompt, (ids, tokens) in expected.items():  # transformers stops early at EOS; llama.cpp yields it too
        assert greedy_tokens_llama(base_gguf, ids, gguf_export / "adapter-f16.gguf")[:len(tokens)] == tokens, prompt
        assert greedy_tokens_llama(gguf_export / "model-f16.gguf", ids)[:len(tokens)] == tokens, prompt


def test_the_quantized_file_generates_on_the_cpu(gguf_export):
    llm = llama_cpp.Llama(model_path=str(gguf_export / "model-Q4_K_M.gguf"), n_ctx=256, verbose=False)
    out = llm.create_completion("ls", max_tokens=4, temperature=0.0)
    assert out["usage"]["completion_tokens"] >= 1


def test_ask_with_the_gguf_backend_prints_a_command_and_its_verdict(gguf_export):
    result = run_entrypoint("ask", "--gguf", str(gguf_export / "model-Q4_K_M.gguf"), "list files by size", "--json")
    assert result.returncode in (0, 8), result.stderr
    answer = json.loads(result.stdout)
    assert answer["backend"] == "gguf" and answer["verdict"] in ("safe", "caution", "dangerous")
    assert isinstance(answer["parses"], bool) and answer["latency"]["total_seconds"] > 0
    result = run_entrypoint("ask", "--gguf", str(gguf_export / "model-f16.gguf"), "list files by size")
    lines = result.stdout.splitlines()
    assert any(line.startswith("verdict: ") for line in lines) and any(line.startswith("parses: ") for line in lines)
