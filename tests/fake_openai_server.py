"""A real HTTP server on 127.0.0.1 speaking OpenAI's chat-completions protocol, for labeling tests.

    server = FakeOpenAI().start()          # free port; server.url == "http://127.0.0.1:<port>/v1"
    server.script += [("429", 1.0), ("malformed", "text"), ("delay", 2.0), ("500", None),
                      ("status", (400, "bad key {auth}"))]   # next chat requests, in order
    server.die_after(3)                    # stop listening after the 3rd answered chat request
    server.stop(); FakeOpenAI(port=server.port).start()   # restart on the same port

Run alone (to try the Labeling tab offline): `python tests/fake_openai_server.py --port 8089` serves
http://127.0.0.1:8089/v1 (model `fake-model`) until killed.

Default answers: a labeling prompt ("Feature N fires ...") gets `{"label": "word<N>", ...}`; a scoring prompt
gets the snippets that contain the label's word, so a correct label scores 100%; a fuzzing prompt gets the
snippets whose <<highlights>> contain it. Every request is recorded
(`server.requests`: path, headers, JSON body) so tests can check what the client sent.
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default listen backlog of 5 drops bursts of concurrent connects
    daemon_threads = True


def default_answer(messages: list[dict]) -> str:
    prompt = "\n".join(m["content"] for m in messages)
    if "For each numbered snippet" in prompt:
        word = re.search(r'described as: "([^"]+)"', prompt).group(1)
        hits = [int(n) for n, text in re.findall(r"^(\d+)\. (.*)$", prompt, re.M)
                if re.search(rf"\b{re.escape(word)}\b", text)]
        return json.dumps({"activating": hits})
    if "highlighted correctly" in prompt:  # fuzzing: correct where a <<highlight>> holds the label's word
        word = re.search(r'described as: "([^"]+)"', prompt).group(1)
        hits = [int(n) for n, text in re.findall(r"^(\d+)\. (.*)$", prompt, re.M)
                if any(re.search(rf"\b{re.escape(word)}\b", span) for span in re.findall(r"<<(.*?)>>", text))]
        return json.dumps({"correct": hits})
    index = re.search(r"Feature (\d+) fires", prompt)
    n = index.group(1) if index else "?"
    return f'Sure! Here it is:\n```json\n{{"label": "word{n}", "category": "lexical", ' \
           f'"description": "Fires on the word word{n}."}}\n```'


class FakeOpenAI:
    def __init__(self, port: int = 0, answer=default_answer, models=("fake-model",), latency: float = 0.0):
        self.answer = answer
        self.latency = latency  # seconds every chat answer takes, like a real LLM (for benchmarks)
        self.models = None if models is None else list(models)  # None: no /v1/models route (some servers)
        self.script: list[tuple[str, object]] = []
        self.requests: list[dict] = []
        self.chat_answered = 0
        self._die_after: int | None = None
        self._lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", port), self._handler_class())
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.alive = False

    def start(self) -> "FakeOpenAI":
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.alive = True
        return self

    def stop(self) -> None:
        if self.alive:
            self.alive = False
            self.httpd.shutdown()
            self.httpd.server_close()

    def die_after(self, n: int) -> None:
        self._die_after = n

    def next_behaviour(self) -> tuple[str, object]:
        with self._lock:
            return self.script.pop(0) if self.script else ("ok", None)

    def _count_answer(self) -> None:
        with self._lock:
            self.chat_answered += 1
            dying = self._die_after is not None and self.chat_answered >= self._die_after
        if dying:  # close the listening socket now: later requests are refused, like a crashed server
            self.alive = False
            self.httpd.server_close()
            threading.Thread(target=self.httpd.shutdown, daemon=True).start()

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

            def do_GET(self):
                server.requests.append({"path": self.path, "body": None,
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
                if self.path.rstrip("/").endswith("/models") and server.models is not None:
                    self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in server.models]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                server.requests.append({"path": self.path, "body": body,
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
                kind, arg = server.next_behaviour()
                if kind == "429":
                    return self._send(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                                      {"Retry-After": str(arg)})
                if kind == "500":
                    return self._send(500, {"error": {"message": "server error"}})
                if kind == "status":  # arg = (code, message); "{auth}" echoes the Authorization header back
                    code, message = arg
                    message = message.replace("{auth}", self.headers.get("Authorization", ""))
                    return self._send(code, {"error": {"message": message, "type": "invalid_request_error"}})
                if kind == "delay":
                    time.sleep(float(arg))
                time.sleep(server.latency)
                text = str(arg) if kind == "malformed" else server.answer(body.get("messages", []))
                prompt_tokens = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "fake-model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                              "total_tokens": prompt_tokens + len(text.split())}})
                server._count_answer()

        return Handler


class FakeFeatures:
    """Extraction results in the shape of docs/CONTRACTS.md "Features results", in memory: feature `i`'s
    examples all peak on the token " word<i>" (so the default answers label and score it correctly)."""

    def __init__(self, n: int = 6, dead: tuple = (), n_top: int = 14, n_quantile: int = 3):
        self.n_features, self.dead = n, set(dead)
        self.n_top, self.n_quantile = n_top, n_quantile
        self.reads = 0

    def table(self) -> list[dict]:
        return [{"index": i, "frequency": 0.0 if i in self.dead else 0.002, "mean_activation": 1.0,
                 "max_activation": 0.0 if i in self.dead else 5.0, "dead": i in self.dead, "dense": False,
                 "label": None} for i in range(self.n_features)]

    def _example(self, i: int, k: int, scale: float) -> dict:
        tokens = [" The", " report", " says", f" word{i}", " again", f" (ctx{k})", "\n", " end"]
        acts = [0.0, 0.0, 0.1 * scale, 5.0 * scale, 0.4 * scale, 0.0, 0.0, 0.0]
        return {"tokens": tokens, "acts": acts, "peak": 3, "context_id": 1000 * i + k}

    def feature(self, i: int) -> dict:
        self.reads += 1
        if i in self.dead:
            return {"top_examples": [], "quantile_examples": [], "histogram": {"edges": [], "counts": []},
                    "top_logits": [], "bottom_logits": [], "frequency": 0.0, "max_activation": 0.0,
                    "mean_activation": 0.0}
        top = [self._example(i, k, 1.0 - 0.03 * k) for k in range(self.n_top)]
        quant = [{"quantile": q, "examples": [self._example(i, 100 + 10 * j + m, 0.3) for m in range(self.n_quantile)]}
                 for j, q in enumerate(("0.5-0.75", "0.75-0.9"))]
        return {"top_examples": top, "quantile_examples": quant, "histogram": {"edges": [0, 1], "counts": [3]},
                "top_logits": [[f" word{i}s", 2.5], [" again", 1.0]], "bottom_logits": [[" never", -2.0]],
                "frequency": 0.002, "max_activation": 5.0, "mean_activation": 1.0}


def main(argv: list[str] | None = None) -> None:
    """`python tests/fake_openai_server.py [--port N] [--host H]`: serve until killed (Ctrl-C or a signal)."""
    import argparse

    ap = argparse.ArgumentParser(description="A fake OpenAI-compatible chat server for trying labeling offline")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one, printed)")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds each chat answer waits")
    args = ap.parse_args(argv)
    server = FakeOpenAI(port=args.port, latency=args.latency).start()
    print(f"fake OpenAI-compatible server at {server.url} (model fake-model); Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
