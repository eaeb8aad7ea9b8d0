"""Whether the Hugging Face hub can be reached, decided once per process.

`HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) set: no. Otherwise one HEAD request to the hub's endpoint
with a short timeout. A machine without network then costs about a second instead of the hub
client's retries, and the job never asks the hub for what the answer says it cannot get.
"""

from __future__ import annotations

import os
import threading

PROBE_SECONDS = 1.5
DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

_answer: dict[str, bool] = {}  # endpoint -> reachable


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def switched_off() -> str | None:
    """The variable that turns the hub off, when one does (the hub client's own truth values)."""
    for name in OFFLINE_SWITCHES:
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return name
    return None


def online() -> bool:
    if switched_off():
        return False
    url = endpoint()
    if url not in _answer:
        _answer[url] = _reachable(url)
    return _answer[url]


def why_offline() -> str:
    """Why `online()` said no, for an error line."""
    name = switched_off()
    if name:
        return f"{name}=1"
    return f"no answer from {endpoint()} within {PROBE_SECONDS:g} s"


def _reachable(url: str) -> bool:
    """One HEAD request: any HTTP answer (an error status included) means the hub is there. A bare TCP
    connect is not enough: some networks accept every connection and answer nothing."""
    import urllib.error
    import urllib.request

    result = {"ok": False}

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_SECONDS).close()
            result["ok"] = True
        except urllib.error.HTTPError:
            result["ok"] = True
        except (OSError, ValueError):  # URLError, timeouts, TLS failures, a malformed endpoint
            pass

    # A thread bounds the name lookup too, which the request's timeout does not cover.
    probe = threading.Thread(target=ask, daemon=True)
    probe.start()
    probe.join(PROBE_SECONDS + 0.5)
    return result["ok"]
