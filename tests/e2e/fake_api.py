"""A loopback stand-in for the Anthropic Messages API that makes the real Claude Code CLI run scripted
Bash commands.

Scripts are keyed by a session tag: the first user prompt of a session contains ``[session:<tag>]``
(see :func:`tag_prompt`), and that session receives the commands of ``scripts[tag]``, one per turn.
Requests without a tag never get a command: Claude Code 2.0.x sends "Warmup" requests for its
sub-agents that offer Bash too, and those must not run anything. An unknown tag gets an empty script.

The server is stateless with respect to the conversation: the next command is chosen by counting the
Bash ``tool_use`` blocks already present in the request's history, so a retried request gets the same
answer and sessions never interfere with one another.

For ``POST /v1/messages``:
  * ``tools`` offers Bash, fewer tool uses in history than script entries -> the next command as a
    ``tool_use`` (stop_reason ``tool_use``);
  * ``tools`` offers Bash, script exhausted -> text ``DONE_TEXT`` (stop_reason ``end_turn``);
  * no Bash tool or no session tag (titles, warmups, file-path extraction...) -> a short text.
Streaming requests (``"stream": true``) get server-sent events; others get one JSON message.
``POST /v1/messages/count_tokens`` is answered; every other path gets a 404 JSON error and is logged.
Every request is recorded in :attr:`FakeAnthropicAPI.requests`.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TAG_RE = re.compile(r"\[session:([A-Za-z0-9_.-]+)\]")
DONE_TEXT = "All scripted commands have run."
SIDE_TEXT = "e2e"

# A script entry is a Bash command, or the whole Bash tool input (e.g. {"command": ..., "timeout": 5000}).
ScriptEntry = str | dict[str, Any]


def tag_prompt(tag: str, prompt: str = "Run the commands you are given.") -> str:
    """A prompt that routes a session to ``scripts[tag]``."""
    if not TAG_RE.fullmatch(f"[session:{tag}]"):
        raise ValueError(f"bad session tag {tag!r}")
    return f"[session:{tag}] {prompt}"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text if not JSON, or None
    time: float
    tag: str | None = None
    kind: str = "other"  # "tool_use", "done", "side", "count_tokens", "other"
    response: Any = None  # what was sent back (a message dict), for debugging


@dataclass
class _Turn:
    kind: str
    message: dict[str, Any]


@dataclass
class FakeAnthropicAPI:
    scripts: dict[str, list[ScriptEntry]] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeAnthropicAPI:
        api = self

        class Handler(_Handler):
            fake = api

        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-anthropic-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAnthropicAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The value for ANTHROPIC_BASE_URL."""
        return f"http://{self.host}:{self.port}"

    # -- scripts and inspection ------------------------------------------------------------------
    def set_script(self, tag: str, commands: Sequence[ScriptEntry]) -> None:
        with self._lock:
            self.scripts[tag] = list(commands)

    def requests_for(self, tag: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.tag == tag]

    def sent_commands(self, tag: str) -> list[str]:
        """Distinct commands handed to session ``tag`` as tool uses, in order."""
        out: list[str] = []
        for r in self.requests_for(tag):
            if r.kind == "tool_use":
                cmd = _tool_use_block(r.response)["input"]["command"]
                idx = _count_bash_tool_uses(r.body)
                if idx == len(out):
                    out.append(cmd)
        return out

    def tool_results(self, tag: str) -> list[str]:
        """The text of every Bash tool_result session ``tag`` sent back (from its longest history)."""
        reqs = [r for r in self.requests_for(tag) if r.kind in ("tool_use", "done")]
        if not reqs:
            return []
        body = max(reqs, key=lambda r: len(r.body.get("messages", []))).body
        results: list[str] = []
        for msg in body.get("messages", []):
            if msg.get("role") != "user" or not isinstance(msg.get("content"), list):
                continue
            for block in msg["content"]:
                if block.get("type") == "tool_result":
                    results.append(_block_text(block.get("content")))
        return results

    def other_paths(self) -> list[str]:
        with self._lock:
            return [f"{r.method} {r.path}" for r in self.requests if r.kind == "other"]

    # -- the model ---------------------------------------------------------------------------------
    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def _answer_messages(self, body: dict[str, Any], rec: RecordedRequest) -> _Turn:
        model = body.get("model") or "claude-sonnet-4-5"
        tools = body.get("tools") or []
        has_bash = any(isinstance(t, dict) and t.get("name") == "Bash" for t in tools)
        tag = _session_tag(body)
        rec.tag = tag
        if not has_bash or tag is None:
            return _Turn("side", _text_message(model, SIDE_TEXT))
        with self._lock:
            script = self.scripts.get(tag, [])
        n = _count_bash_tool_uses(body)
        if n >= len(script):
            return _Turn("done", _text_message(model, DONE_TEXT))
        entry = script[n]
        tool_input = {"command": entry} if isinstance(entry, str) else dict(entry)
        return _Turn("tool_use", _tool_use_message(model, tool_input, n))


# -- message construction ----------------------------------------------------------------------------
def _msg_id() -> str:
    return "msg_e2e" + secrets.token_hex(10)


def _usage(out_tokens: int = 1) -> dict[str, int]:
    return {
        "input_tokens": 10,
        "output_tokens": out_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _text_message(model: str, text: str) -> dict[str, Any]:
    return {
        "id": _msg_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _usage(),
    }


def _tool_use_message(model: str, tool_input: dict[str, Any], n: int) -> dict[str, Any]:
    block = {
        "type": "tool_use",
        "id": f"toolu_e2e{n:03d}{secrets.token_hex(8)}",
        "name": "Bash",
        "input": tool_input,
    }
    return {
        "id": _msg_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": _usage(),
    }


def _sse(message: dict[str, Any]) -> bytes:
    """The server-sent events that stream ``message`` the way the real API does."""
    events: list[tuple[str, dict[str, Any]]] = []
    start = dict(message, content=[], stop_reason=None, usage=_usage(0))
    events.append(("message_start", {"type": "message_start", "message": start}))
    for i, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": dict(block, input={})},
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                    },
                )
            )
        else:
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "text_delta", "text": block["text"]},
                    },
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


# -- request inspection --------------------------------------------------------------------------------
def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _session_tag(body: dict[str, Any]) -> str | None:
    """The tag in the first user message that has one (Claude Code prepends reminders to the prompt)."""
    for msg in body.get("messages", []):
        if msg.get("role") != "user":
            continue
        m = TAG_RE.search(_block_text(msg.get("content")))
        if m:
            return m.group(1)
    return None


def _count_bash_tool_uses(body: dict[str, Any]) -> int:
    n = 0
    for msg in body.get("messages", []):
        if msg.get("role") == "assistant" and isinstance(msg.get("content"), list):
            n += sum(1 for b in msg["content"] if b.get("type") == "tool_use" and b.get("name") == "Bash")
    return n


def _tool_use_block(message: dict[str, Any]) -> dict[str, Any]:
    return next(b for b in message["content"] if b["type"] == "tool_use")


# -- HTTP ------------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The CLI exits without closing its keep-alive connections: resets are normal, not errors.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAnthropicAPI
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are recorded, not printed

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        enc = self.headers.get("Content-Encoding", "").lower()
        if enc == "gzip":
            data = gzip.decompress(data)
        elif enc == "deflate":
            data = zlib.decompress(data)
        return data

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", "req_e2e" + secrets.token_hex(8))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _handle(self) -> None:
        raw = self._read_body() if self.command in ("POST", "PUT", "PATCH") else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = self.path.split("?", 1)[0]
        rec = RecordedRequest(self.command, self.path, dict(self.headers.items()), body, time.time())
        self.fake._record(rec)
        if self.command == "POST" and path == "/v1/messages" and isinstance(body, dict):
            turn = self.fake._answer_messages(body, rec)
            rec.kind, rec.response = turn.kind, turn.message
            if body.get("stream"):
                self._send(200, _sse(turn.message), "text/event-stream; charset=utf-8")
            else:
                self._send_json(200, turn.message)
        elif self.command == "POST" and path == "/v1/messages/count_tokens":
            rec.kind = "count_tokens"
            self._send_json(200, {"input_tokens": 10})
        else:
            self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle
