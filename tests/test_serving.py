"""vLLM's limits on real PEFT adapter configs, the Modelfile's template against apply_chat_template,
and `ask` against a small OpenAI-compatible server on loopback (no model needed for these)."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli_tuner.serving import modelfile, vllm
from conftest import find_reference, require_reference, run_entrypoint

# ------------------------------------------------------------------ vLLM's limits


def peft_config(**changes) -> dict:
    from peft import LoraConfig

    settings = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    settings.update(changes)
    return LoraConfig(**settings).to_dict()


def test_the_shipped_configs_adapters_pass_vllms_limits():
    assert vllm.violations(peft_config(), "Qwen2ForCausalLM") == []
    mistral = peft_config(r=16, target_modules=sorted(vllm.PROJECTIONS))
    assert vllm.violations(mistral, "MistralForCausalLM") == []


@pytest.mark.parametrize("changes, names, fix", [
    ({"modules_to_save": ["lm_head", "embed_tokens"]}, "modules_to_save", "lora_modules_to_save unset"),
    ({"use_dora": True}, "use_dora", "peft_use_dora unset"),
    ({"bias": "lora_only"}, "bias", "bias none"),
    ({"r": 1024}, "rank 1024", "lora_r <= 512"),
    ({"r": 8, "rank_pattern": {"q_proj": 640}}, "rank 640", "lora_r <= 512"),
    ({"target_modules": ["q_proj", "embed_tokens", "lm_head"]}, "['embed_tokens', 'lm_head']", "lora_target_modules"),
])
def test_each_broken_limit_is_one_line_with_its_fix(changes, names, fix):
    (line,) = vllm.violations(peft_config(**changes), "Qwen2ForCausalLM")
    assert names in line and fix in line and "\n" not in line


def test_an_unknown_architecture_is_named():
    (line,) = vllm.violations(peft_config(), "GPT2LMHeadModel")
    assert "GPT2LMHeadModel" in line


@pytest.mark.parametrize("rank, flag", [(1, 1), (8, 8), (9, 16), (16, 16), (17, 32), (300, 320), (512, 512), (513, None)])
def test_max_lora_rank_is_the_smallest_value_vllm_allows(rank, flag):
    assert vllm.max_lora_rank(rank) == flag


# ------------------------------------------------------------------ the Modelfile's template

def go_render(template: str, prompt: str, system: str | None) -> str:
    """Go text/template semantics for the only actions a generated TEMPLATE may hold."""
    import re

    actions = set(re.findall(r"\{\{[^}]*\}\}", template))
    assert actions <= {"{{ if .System }}", "{{ else }}", "{{ end }}", "{{ .System }}", "{{ .Prompt }}"}, actions
    if template.startswith("{{ if .System }}"):
        with_system, rest = template[len("{{ if .System }}"):].split("{{ else }}", 1)
        assert rest.endswith("{{ end }}")
        template = with_system if system else rest[:-len("{{ end }}")]
    return template.replace("{{ .System }}", system or "").replace("{{ .Prompt }}", prompt)


REQUESTS = ["list files by size", "find *.py files changed today", 'print "hello" & exit', "ünïcödé {{ braces }}"]


@pytest.mark.parametrize("key", ["qwen", "mistral"])
def test_modelfile_template_renders_what_apply_chat_template_renders(key):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(require_reference(key)))
    template = modelfile.chat_template(tokenizer)
    text = modelfile.modelfile("./model.gguf", template)
    go = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    for request in REQUESTS:
        messages = [{"role": "user", "content": request}]
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert template.bos + go_render(go, request, None) == expected
        if template.with_system is not None:
            system = [{"role": "system", "content": "Answer with one command."}] + messages
            expected = tokenizer.apply_chat_template(system, tokenize=False, add_generation_prompt=True)
            assert template.bos + go_render(go, request, "Answer with one command.") == expected
    stops = [line for line in text.splitlines() if line.startswith("PARAMETER stop ")]
    assert stops and all(json.loads(line.split(" ", 2)[2]) in tokenizer.all_special_tokens for line in stops)
    assert "PARAMETER temperature 0" in text and "PARAMETER top_k 1" in text


def test_qwens_default_system_prompt_is_in_the_template_and_mistral_has_no_double_bos():
    from transformers import AutoTokenizer

    qwen, mistral = find_reference("qwen"), find_reference("mistral")
    if not (qwen and mistral):
        require_reference("qwen" if not qwen else "mistral")
    qwen_template = modelfile.chat_template(AutoTokenizer.from_pretrained(str(qwen)))
    assert "You are Qwen" in qwen_template.without_system and qwen_template.stops[0] == "<|im_end|>"
    mistral_template = modelfile.chat_template(AutoTokenizer.from_pretrained(str(mistral)))
    assert mistral_template.bos == "<s>" and not mistral_template.go_template().startswith("<s>")
    assert mistral_template.stops == ("</s>",)


# ------------------------------------------------------------------ ask against a loopback endpoint

class FakeServer(BaseHTTPRequestHandler):
    reply = "ls -lS"
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeServer.seen.append(body)
        if body.get("model") != "cli-tuner":
            self.send_error(404, "model not found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in (self.reply[:3], self.reply[3:]):
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeServer.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_ask_an_endpoint_prints_the_command_and_its_verdict(endpoint):
    FakeServer.reply = "ls -lS"
    result = run_entrypoint("ask", "--endpoint", endpoint, "list files by size", "--verbose")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ls -lS" and lines[1] == "verdict: safe" and lines[2] == "parses: yes"
    assert lines[3] == "shellcheck: clean" and lines[4].startswith("latency: ") and "first token" in lines[4]
    (body,) = FakeServer.seen
    assert body["messages"] == [{"role": "user", "content": "list files by size"}] and body["temperature"] == 0


def test_ask_json_is_one_object(endpoint):
    FakeServer.reply = "```bash\nfind . -name '*.log' -mtime +7\n```"
    result = run_entrypoint("ask", "--endpoint", endpoint, "old logs", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["command"] == "find . -name '*.log' -mtime +7" and answer["verdict"] == "safe"
    assert answer["parses"] is True and answer["refused"] is False and answer["backend"] == "endpoint"


def test_a_dangerous_answer_is_refused_with_the_reason_and_exit_8(endpoint):
    FakeServer.reply = "sudo rm -rf /"
    result = run_entrypoint("ask", "--endpoint", endpoint, "clean the disk")
    assert result.returncode == 8
    lines = result.stdout.splitlines()
    assert lines[0] == "REFUSED (dangerous): sudo rm -rf /"
    assert lines[1].startswith("verdict: dangerous (") and "root" in lines[1]


def test_a_reply_that_does_not_parse_says_so(endpoint):
    FakeServer.reply = "ls -la | "
    result = run_entrypoint("ask", "--endpoint", endpoint, "list", "--json")
    answer = json.loads(result.stdout)
    assert answer["parses"] is False and answer["parse_problems"]


def test_a_wrong_model_name_or_no_server_is_one_line_exit_5(endpoint):
    result = run_entrypoint("ask", "--endpoint", endpoint, "--model", "other", "list files")
    assert result.returncode == 5 and "HTTP 404" in result.stderr and "--model other" in result.stderr
    result = run_entrypoint("ask", "--endpoint", "http://127.0.0.1:9/v1", "list files")
    assert result.returncode == 5 and result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_lora_without_gguf_is_a_usage_error():
    result = run_entrypoint("ask", "--endpoint", "http://127.0.0.1:9", "--lora", "a.gguf", "list files")
    assert result.returncode == 2 and "--lora" in result.stderr


# ------------------------------------------------------------------ on a finished rehearsal (slow)

@pytest.mark.slow
def test_vllm_export_writes_the_adapter_folder_and_a_command_within_the_limits(finished_rehearsal):
    result = run_entrypoint("export", "--run", str(finished_rehearsal), "--format", "vllm")
    assert result.returncode == 0, result.stderr
    folder = finished_rehearsal / "vllm"
    command = result.stdout.strip().splitlines()[-1]
    record = json.loads((folder / "export.json").read_text())
    config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    assert command.split()[:3] == ["vllm", "serve", record["base_model"]] and "--enable-lora" in command
    assert f"--lora-modules cli-tuner={folder / 'adapter'}" in command
    assert f"--max-lora-rank {vllm.max_lora_rank(config['r'])}" in command
    assert (folder / "serve-command.txt").read_text().strip() == command
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    assert vllm.violations(config, "Qwen2ForCausalLM") == []


@pytest.mark.slow
def test_vllm_export_refuses_an_adapter_vllm_would_refuse_and_writes_nothing(finished_rehearsal, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_rehearsal / "phase2-final", run / "phase2-final")
    config_path = run / "phase2-final" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config.update(modules_to_save=["lm_head"], r=1024)
    config_path.write_text(json.dumps(config))
    result = run_entrypoint("export", "--run", str(run), "--format", "vllm",
                            "--base-model", str(finished_rehearsal / "rehearsal-model"))
    assert result.returncode == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and "modules_to_save" in lines[0] and "rank 1024" in lines[1]
    assert lines[2].startswith("error: ") and "vLLM would refuse" in lines[2]
    assert not (run / "vllm").exists()


@pytest.mark.slow
def test_not_enough_disk_stops_before_anything_is_written(finished_rehearsal, tmp_path):
    # A base model whose weights outgrow any disk: a sparse file reads as huge and costs nothing.
    base = tmp_path / "huge-base"
    base.mkdir()
    for name in ("config.json",):
        (base / name).write_text((finished_rehearsal / "rehearsal-model" / name).read_text())
    with (base / "model.safetensors").open("wb") as handle:
        handle.truncate(1 << 43)  # 8 TiB: more than any test disk, within ext4's file size limit
    out = tmp_path / "out"
    result = run_entrypoint("export", "--run", str(finished_rehearsal), "--format", "gguf", "--base-model", str(base),
                            "--output", str(out))
    assert result.returncode == 5
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: not enough disk for the GGUF export") and "GiB" in line
    assert not out.exists()
