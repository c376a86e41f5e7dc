"""A scripted model server for driving the real agent CLIs offline.

It speaks just enough of three wire protocols for each CLI to run a whole
task against it (AGENT-CLIS.md records what each CLI sends):

- Anthropic Messages, streamed (Claude Code): ``POST /v1/messages``;
- OpenAI Responses, streamed (Codex): ``POST /v1/responses``;
- OpenAI Chat Completions, streamed or not (aider through litellm):
  ``POST /v1/chat/completions``.

What the model "says" is a scenario: a list of turns, plain data, one per
model call, in order::

    [{"write": "hello.txt", "content": "hi\\n"},   # the protocol's file-writing tool call
     {"write": "../outside.txt", "content": "x"},   # a path that leaves the working directory
     {"fail": 401}, {"fail": 500},                  # the provider's error answer with that status
     {"fail": 500, "times": 3},                     # the same answer to three calls (CLIs retry)
     {"sleep": 30, "answer": "late"},               # a model that takes its time
     {"answer": "Done."}]                           # plain text: the CLI's task ends

A turn may carry ``"usage": [input_tokens, output_tokens]``. Once the
scenario is spent, every call gets ``{"answer": "Done."}``. Every request is
recorded (``requests``), with the usage served for it, for the test to assert.
A Messages call without tools is a side call of Claude Code's (a title, a
quota check: none is made with its nonessential traffic off): it gets short
text and uses no turn.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Turn = Mapping[str, Any]

DEFAULT_USAGE = (1200, 300)
DONE: Turn = {"answer": "Done."}
_PRIMARY_DIR = re.compile(r"Primary working directory: (\S+)")


@dataclass
class Recorded:
    """One request as the stub saw it, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    protocol: str = ""
    turn: Turn | None = None  # None for a side call or an unknown path
    status: int = 200
    usage: tuple[int, int] = (0, 0)


@dataclass
class _Script:
    turns: list[Turn]
    next_turn: int = 0
    played: int = 0  # times the current turn was played
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> Turn:
        with self.lock:
            if self.next_turn >= len(self.turns):
                return DONE
            turn = self.turns[self.next_turn]
            self.played += 1
            if self.played >= int(turn.get("times", 1)):
                self.next_turn, self.played = self.next_turn + 1, 0
            return turn


class ModelStub:
    """The server, on 127.0.0.1 at a free port, answering from a scenario in its own threads."""

    def __init__(self, scenario: Sequence[Turn], model: str = "stub-model") -> None:
        self.script = _Script(list(scenario))
        self.model = model
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="modelstub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> ModelStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def record(self, entry: Recorded) -> None:
        with self._lock:
            self.requests.append(entry)

    def usage_served(self) -> tuple[int, int]:
        """Input and output tokens over every answer, side calls included (CLIs count those too)."""
        return (sum(r.usage[0] for r in self.requests), sum(r.usage[1] for r in self.requests))

    def as_json(self) -> list[dict[str, Any]]:
        return [{"method": r.method, "path": r.path, "protocol": r.protocol, "turn": r.turn, "status": r.status,
                 "usage": list(r.usage), "headers": r.headers, "body": r.body} for r in self.requests]


# --- HTTP --------------------------------------------------------------------


def _handler_for(stub: ModelStub) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.stub = stub
    return Handler


class _Handler(BaseHTTPRequestHandler):
    stub: ModelStub
    protocol_version = "HTTP/1.1"  # keep-alive with chunked streams, as the real APIs do

    def log_message(self, format: str, *args: Any) -> None:  # the test's output stays readable
        pass

    def do_GET(self) -> None:
        self.stub.record(Recorded("GET", self.path, _headers(self), None, status=404))
        self._json(404, {"error": {"message": f"{self.path} is not served by the model stub", "type": "not_found"}})

    def do_HEAD(self) -> None:
        self.stub.record(Recorded("HEAD", self.path, _headers(self), None, status=404))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else _read_chunked(self)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        entry = Recorded("POST", self.path, _headers(self), body)
        route = self.path.split("?")[0].rstrip("/")
        protocols = {"/v1/messages": _Anthropic, "/v1/responses": _Responses, "/v1/chat/completions": _Chat}
        protocol = protocols.get(route)
        if protocol is None or not isinstance(body, dict):
            entry.status = 404
            self.stub.record(entry)
            self._json(404, {"error": {"message": f"POST {route} is not served by the model stub",
                                       "type": "not_found"}})
            return
        entry.protocol = protocol.name
        protocol(self, body, entry).answer()
        self.stub.record(entry)

    # -- writing answers --

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, chunks: Iterator[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for text in chunks:
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    return {k.lower(): v for k, v in handler.headers.items()}


def _read_chunked(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" not in (handler.headers.get("Transfer-Encoding") or ""):
        return b""
    out = bytearray()
    while True:
        size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            handler.rfile.readline()
            return bytes(out)
        out += handler.rfile.read(size)
        handler.rfile.readline()


def _sse(event: str, payload: Mapping[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _usage(turn: Turn) -> tuple[int, int]:
    used = turn.get("usage") or DEFAULT_USAGE
    return int(used[0]), int(used[1])


def _absolute(workdir: str | None, path: str) -> str:
    """``path`` as an absolute path, resolved against the CLI's working directory."""
    if posixpath.isabs(path) or not workdir:
        return path
    return posixpath.normpath(posixpath.join(workdir, path))


def _openai_error(status: int) -> dict[str, Any]:
    if status == 401:
        return {"error": {"message": "Incorrect API key provided: stub-key.", "type": "invalid_request_error",
                          "code": "invalid_api_key", "param": None}}
    return {"error": {"message": f"The server had an error while processing your request ({status}).",
                      "type": "server_error", "code": None, "param": None}}


# --- the three protocols -----------------------------------------------------


class _Protocol:
    """One answer: the scenario's next turn (or a side call's text) in this protocol's words."""

    name = ""

    def __init__(self, handler: _Handler, body: dict[str, Any], entry: Recorded) -> None:
        self.handler = handler
        self.body = body
        self.entry = entry
        self.model = str(body.get("model") or handler.stub.model)

    def answer(self) -> None:
        if self.is_side_call():
            turn: Turn = {"answer": "Side answer.", "usage": (50, 5)}
        else:
            turn = self.handler.stub.script.take()
            self.entry.turn = turn
        if "sleep" in turn:
            time.sleep(float(turn["sleep"]))
        if "fail" in turn:
            self.entry.status = int(turn["fail"])
            self.handler._json(self.entry.status, self.error(self.entry.status))
            return
        self.entry.usage = _usage(turn)
        if "write" in turn:
            self.reply_tool_write(str(turn["write"]), str(turn.get("content", "")))
        else:
            self.reply_text(str(turn.get("answer", "Done.")))

    def is_side_call(self) -> bool:
        return False

    def error(self, status: int) -> dict[str, Any]:
        raise NotImplementedError

    def reply_text(self, text: str) -> None:
        raise NotImplementedError

    def reply_tool_write(self, path: str, content: str) -> None:
        raise NotImplementedError


class _Anthropic(_Protocol):
    name = "anthropic"

    def is_side_call(self) -> bool:
        # The task's calls carry Claude Code's tools; a quota probe or a title request does not.
        return not self.body.get("tools")

    def error(self, status: int) -> dict[str, Any]:
        kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}
        messages = {401: "invalid x-api-key", 500: "Internal server error"}
        return {"type": "error", "error": {"type": kinds.get(status, "api_error"),
                                           "message": messages.get(status, f"stub error {status}")}}

    def reply_text(self, text: str) -> None:
        self._message([{"type": "text", "text": text}], "end_turn")

    def reply_tool_write(self, path: str, content: str) -> None:
        # Claude Code's file tools take absolute paths; its system prompt names the working directory.
        workdir = _first_match(_PRIMARY_DIR, self.body.get("system"))
        tool_input = {"file_path": _absolute(workdir, path), "content": content}
        self._message([{"type": "tool_use", "id": _new_id("toolu"), "name": "Write", "input": tool_input}],
                      "tool_use")

    def _message(self, blocks: list[dict[str, Any]], stop_reason: str) -> None:
        input_tokens, output_tokens = self.entry.usage
        message_id = _new_id("msg")
        if not self.body.get("stream"):
            self.handler._json(200, {
                "id": message_id, "type": "message", "role": "assistant", "model": self.model, "content": blocks,
                "stop_reason": stop_reason, "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
            return
        self.handler._stream(self._events(message_id, blocks, stop_reason, input_tokens, output_tokens))

    def _events(self, message_id: str, blocks: list[dict[str, Any]], stop_reason: str,
                input_tokens: int, output_tokens: int) -> Iterator[str]:
        yield _sse("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1}}})
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}})
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                start = {**block, "input": {}}
                yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": start})
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                     "usage": {"output_tokens": output_tokens}})
        yield _sse("message_stop", {"type": "message_stop"})


class _Responses(_Protocol):
    name = "responses"

    def error(self, status: int) -> dict[str, Any]:
        return _openai_error(status)

    def reply_text(self, text: str) -> None:
        item_id = _new_id("msg")
        item = {"type": "message", "id": item_id, "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
        delta = {"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                 "content_index": 0, "delta": text}
        self.handler._stream(self._events(item, delta))

    def reply_tool_write(self, path: str, content: str) -> None:
        # The shell command runs in Codex's working directory: a relative path is resolved there.
        command = f"printf %s {shlex.quote(content)} > {shlex.quote(path)}"
        name, arguments = self._shell_call(command)
        item = {"type": "function_call", "id": _new_id("fc"), "call_id": _new_id("call"), "status": "completed",
                "name": name, "arguments": json.dumps(arguments)}
        self.handler._stream(self._events(item, None))

    def _shell_call(self, command: str) -> tuple[str, dict[str, Any]]:
        """The shell tool this request offers: Codex names it by model family."""
        tools = {str(t.get("name")) for t in self.body.get("tools") or [] if isinstance(t, dict)}
        if "exec_command" in tools or not tools:
            return "exec_command", {"cmd": command}
        if "shell_command" in tools:
            return "shell_command", {"command": command}
        return "shell", {"command": ["bash", "-lc", command]}

    def _events(self, item: dict[str, Any], delta: dict[str, Any] | None) -> Iterator[str]:
        response_id = _new_id("resp")
        input_tokens, output_tokens = self.entry.usage
        shell = {"id": response_id, "object": "response", "created_at": int(time.time()), "model": self.model,
                 "status": "in_progress", "output": []}
        yield _sse("response.created", {"type": "response.created", "response": shell})
        yield _sse("response.in_progress", {"type": "response.in_progress", "response": shell})
        started = {**item, "status": "in_progress"}
        if item["type"] == "message":
            started["content"] = []
        elif item["type"] == "function_call":
            started["arguments"] = ""
        yield _sse("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                  "item": started})
        if delta is not None:
            yield _sse(delta["type"], delta)
        yield _sse("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                 "item": item})
        usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": input_tokens + output_tokens}
        yield _sse("response.completed", {"type": "response.completed", "response": {
            **shell, "status": "completed", "output": [item], "usage": usage}})


class _Chat(_Protocol):
    name = "chat"

    def error(self, status: int) -> dict[str, Any]:
        return _openai_error(status)

    def reply_text(self, text: str) -> None:
        self._completion(text)

    def reply_tool_write(self, path: str, content: str) -> None:
        # aider's "whole" edit format, the one it uses for a model it does not know: the path
        # on its own line, then the whole new file in a fence.
        body = content if content.endswith("\n") else content + "\n"
        self._completion(f"{path}\n```\n{body}```\n")

    def _completion(self, text: str) -> None:
        input_tokens, output_tokens = self.entry.usage
        usage = {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                 "total_tokens": input_tokens + output_tokens}
        completion_id = _new_id("chatcmpl")
        created = int(time.time())
        if not self.body.get("stream"):
            self.handler._json(200, {
                "id": completion_id, "object": "chat.completion", "created": created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": usage})
            return

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
            payload = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                       "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                       **extra}
            return f"data: {json.dumps(payload)}\n\n"

        def chunks() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""}, None)
            yield chunk({"content": text}, None)
            yield chunk({}, "stop")
            usage_chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                           "model": self.model, "choices": [], "usage": usage}
            yield f"data: {json.dumps(usage_chunk)}\n\n"
            yield "data: [DONE]\n\n"

        self.handler._stream(chunks())


def _first_match(pattern: re.Pattern[str], value: Any) -> str | None:
    """The first capture of ``pattern`` in any string of a JSON value (system prompts are strings or blocks)."""
    if isinstance(value, str):
        match = pattern.search(value)
        return match.group(1) if match else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        if (found := _first_match(pattern, item)) is not None:
            return found
    return None


def _main() -> None:
    """``python tests/modelstub.py SCENARIO.json``: serve a scenario by hand, to poke at a CLI."""
    import sys

    scenario = json.loads(open(sys.argv[1]).read()) if len(sys.argv) > 1 else []
    with ModelStub(scenario) as stub:
        print(stub.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        for entry in stub.as_json():
            print(json.dumps(entry)[:2000], file=sys.stderr)


if __name__ == "__main__":
    _main()
