"""Chaos benchmark: a fallback chain with a flaky, a dead and a healthy upstream.

Three stub upstreams (``bench/stub_upstream.py`` in fault mode, each in its own
process, loopback only):

* ``flaky``   answers HTTP 500 to a random 30 % of chat requests (seeded RNG);
* ``dead``    answers HTTP 503 to every chat request, and counts each one with
              its unix time (a down upstream that still tells us what it got);
* ``healthy`` answers every request normally.

Each gateway (modelplane, then LiteLLM's proxy, one worker each) gets the chain
first → second → last (flaky → dead → healthy) and a "healthy chain" that goes
straight to the healthy stub. The load generator (``bench/loadgen.py``) sends
``--servings`` (10,000) requests at ``--concurrency`` (8) in flight through the
healthy chain, then the same number through the chaos chain, and counts
statuses and valid ``chat.completion`` bodies. The stubs report, per phase,
how many requests they got (``GET /__stats``), so the script can tell how many
requests went to the dead upstream after the breaker (modelplane) or cooldown
(LiteLLM) should have taken it out.

    python bench/chaos.py                   # both gateways, 10,000 servings each way
    python bench/chaos.py --quick           # 1,000 servings
    python bench/chaos.py --only litellm    # or --only modelplane

Results: one table on stdout, everything in ``bench/results/chaos.json``.
See bench/README.md ("Chaos") for what each row means.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_overhead import (
    BENCH_DIR,
    HOST,
    LITELLM_MASTER_KEY,
    LOADGEN,
    MODELPLANE_KEY,
    STUB,
    BenchError,
    LiteLLM,
    Modelplane,
    Procs,
    add_gateway_arguments,
    cpu_busy,
    fmt,
    free_port,
    log,
    machine_info,
    markdown_table,
    tail,
    wait_line,
)

RESULTS = BENCH_DIR / "results" / "chaos.json"
ADMIN_KEY = "sk-bench-admin"
UPSTREAMS = ("flaky", "dead", "healthy")

# The resilience settings of the modelplane config, which the LiteLLM config mirrors as far as it can.
RETRY_ATTEMPTS = 2  # tries per model, the first included
RETRY_INITIAL = 0.01
RETRY_MAX = 0.1
BREAKER_WINDOW = 10
BREAKER_MIN_REQUESTS = 10
BREAKER_FAILURE_RATE = 0.5
BREAKER_COOLDOWN = 5

CLIENT_CPU: int | None = None


# --------------------------------------------------------------------------
# stubs


class Stubs:
    """The three upstreams of one gateway's run (fresh ones per gateway: same seed, same failures)."""

    def __init__(self, args: argparse.Namespace, tmp: Path, procs: Procs, tag: str) -> None:
        self.ports: dict[str, int] = {}
        self.cmds: dict[str, str] = {}
        for name in UPSTREAMS:
            port = free_port()
            cmd = [sys.executable, "-u", str(STUB), "--host", HOST, "--port", str(port)]
            if name == "flaky":
                cmd += ["--fail-rate", str(args.fail_rate), "--fail-status", "500", "--seed", str(args.seed)]
            elif name == "dead":
                cmd += ["--fail-rate", "1", "--fail-status", "503"]
            else:
                cmd += ["--stats"]
            if CLIENT_CPU is not None:
                cmd += ["--cpu", str(CLIENT_CPU)]
            log_path = tmp / f"stub-{tag}-{name}.log"
            p = procs.start(f"stub-{name}", cmd, log_path)
            wait_line(p, log_path, "READY", 30, f"stub {name}")
            self.ports[name] = port
            self.cmds[name] = shlex.join(cmd)

    def stats(self) -> dict[str, dict]:
        out = {}
        for name, port in self.ports.items():
            with urllib.request.urlopen(f"http://{HOST}:{port}/__stats", timeout=10) as r:
                out[name] = json.loads(r.read())
        return out


def delta(after: dict, before: dict, t0: float, t1: float) -> dict:
    """What one stub got between two /__stats snapshots (times: those within [t0, t1])."""
    d = {k: after[k] - before[k] for k in ("requests", "chat", "ok", "failed")}
    d["chat_times"] = after["chat_times"][len(before["chat_times"]) :]
    d["fail_times"] = after["fail_times"][len(before["fail_times"]) :]
    return d


# --------------------------------------------------------------------------
# gateways


class ModelplaneChaos(Modelplane):
    models = {"healthy": "healthy", "chaos": "chaos"}  # feature names

    def __init__(self, args, tmp, procs, stubs: Stubs) -> None:
        super().__init__(args, tmp, procs, stubs.ports["healthy"])
        self.stubs = stubs

    def prepare(self) -> None:
        key_hash = hashlib.sha256(MODELPLANE_KEY.encode()).hexdigest()
        admin_hash = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
        p = self.stubs.ports
        cfg = f"""\
providers:
  flaky: {{kind: openai, base_url: "http://{HOST}:{p["flaky"]}/v1", api_key: sk-x}}
  dead: {{kind: openai, base_url: "http://{HOST}:{p["dead"]}/v1", api_key: sk-x}}
  healthy: {{kind: openai, base_url: "http://{HOST}:{p["healthy"]}/v1", api_key: sk-x}}
models:
  first: {{provider: flaky, name: bench-model, price: {{input: 0.15, output: 0.6}}}}
  second: {{provider: dead, name: bench-model, price: {{input: 0.15, output: 0.6}}}}
  last: {{provider: healthy, name: bench-model, price: {{input: 0.15, output: 0.6}}}}
features:
  chaos: {{route: {{strategy: single, models: [first, second, last]}}}}
  healthy: {{route: {{strategy: single, models: [last]}}}}
resilience:
  retry: {{attempts: {RETRY_ATTEMPTS}, initial: {RETRY_INITIAL}, max: {RETRY_MAX}}}
  breaker: {{window: {BREAKER_WINDOW}, min_requests: {BREAKER_MIN_REQUESTS}, \
failure_rate: {BREAKER_FAILURE_RATE}, cooldown: {BREAKER_COOLDOWN}}}
keys:
  - {{hash: "sha256:{key_hash}", tenant: bench, tier: default}}
  - {{hash: "sha256:{admin_hash}", tenant: bench-admin, tier: default, admin: true, name: bench-admin}}
tiers:
  default: {{revenue_per_serving: 0}}
ledger: {{url: "sqlite:///{self.tmp}/ledger.db"}}
"""
        self.config_path = self.tmp / "modelplane-chaos.yaml"
        self.config_path.write_text(cfg)


class LiteLLMChaos(LiteLLM):
    models = {"healthy": "last", "chaos": "first"}  # model_names
    cooldown_mode = "allowed_fails"

    def __init__(self, args, tmp, procs, stubs: Stubs) -> None:
        super().__init__(args, tmp, procs, stubs.ports["healthy"])
        self.stubs = stubs

    def router_settings(self) -> dict[str, Any]:
        rs: dict[str, Any] = {
            "fallbacks": [{"first": ["second", "last"]}],
            # num_retries counts retries, modelplane's `attempts` counts tries: 2 tries = 1 retry
            "num_retries": RETRY_ATTEMPTS - 1,
            "retry_after": 0,  # the minimum wait before a retry (an int, in seconds)
            "cooldown_time": BREAKER_COOLDOWN,
        }
        if self.cooldown_mode == "allowed_fails":
            # cooldown once a deployment has more than `allowed_fails` failures (counted in a
            # cache entry that lives `cooldown_time` seconds): 9 → it cools down at the 10th
            # failure, as a breaker with min_requests 10 opens on a dead upstream.
            rs["allowed_fails"] = BREAKER_MIN_REQUESTS - 1
        return rs

    def prepare(self) -> None:
        super().prepare()  # installs LiteLLM if needed, writes the logging config
        p = self.stubs.ports
        model_list = "".join(
            f"""\
  - model_name: {model_name}
    litellm_params:
      model: openai/bench-model
      api_base: http://{HOST}:{p[upstream]}/v1
      api_key: sk-x
"""
            for model_name, upstream in (("first", "flaky"), ("second", "dead"), ("last", "healthy"))
        )
        rs = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in self.router_settings().items())
        self.config_path.write_text(f"""\
model_list:
{model_list}router_settings:
{rs}litellm_settings:
  set_verbose: false
  json_logs: false
  telemetry: false
general_settings:
  master_key: {LITELLM_MASTER_KEY}
""")

    def retry_env(self) -> dict[str, str]:
        env = {
            # LiteLLM's backoff before a retry on a one-deployment model group:
            # min(max(INITIAL_RETRY_DELAY * 2^n, retry_after), MAX_RETRY_DELAY) + JITTER * random();
            # defaults 0.5 s, 8 s and 0.75 s. Set to modelplane's initial/max, no added jitter.
            "INITIAL_RETRY_DELAY": str(RETRY_INITIAL),
            "MAX_RETRY_DELAY": str(RETRY_MAX),
            "JITTER": "0",
        }
        if self.cooldown_mode == "rate":
            # no allowed_fails: LiteLLM's default per-minute failure-rate cooldown; a model group of
            # one deployment is exempt from the rate rule and cools down only when 100 % of at least
            # SINGLE_DEPLOYMENT_TRAFFIC_FAILURE_THRESHOLD (default 1,000) calls this minute failed.
            env.update(
                {
                    "SINGLE_DEPLOYMENT_TRAFFIC_FAILURE_THRESHOLD": str(BREAKER_MIN_REQUESTS),
                    "DEFAULT_FAILURE_THRESHOLD_PERCENT": str(BREAKER_FAILURE_RATE),
                    "DEFAULT_FAILURE_THRESHOLD_MINIMUM_REQUESTS": str(BREAKER_MIN_REQUESTS),
                }
            )
        return env

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(self.retry_env())
        return env


class LiteLLMChaosRate(LiteLLMChaos):
    """The same, with LiteLLM's per-minute failure-rate cooldown (env-tuned) instead of allowed_fails."""

    name = "litellm-rate"
    cooldown_mode = "rate"


GATEWAYS = {"modelplane": ModelplaneChaos, "litellm": LiteLLMChaos, "litellm-rate": LiteLLMChaosRate}
LABELS = {"modelplane": "modelplane", "litellm": "LiteLLM (allowed_fails)", "litellm-rate": "LiteLLM (rate, env)"}


# --------------------------------------------------------------------------
# load and breaker observation


def run_load(
    url: str, model: str, api_key: str, n: int, concurrency: int, duration: float = 0.0, timeout: float = 3600.0
) -> dict:
    """One load-generator run (``n`` requests, or ``duration`` seconds when given).

    Unlike gateway_overhead.loadgen, error answers are results here, not failures of the run.
    """
    cmd = [
        sys.executable,
        str(LOADGEN),
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--model",
        model,
        "--api-key",
        api_key,
        *(["--duration", str(duration)] if duration else ["--requests", str(n)]),
        "--check-body",
    ]
    if CLIENT_CPU is not None:
        cmd += ["--cpu", str(CLIENT_CPU)]
    try:
        cp = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"load generator timed out after {timeout:.0f} s: {shlex.join(cmd)}") from e
    if cp.returncode != 0:
        raise BenchError(f"load generator failed ({cp.returncode}): {shlex.join(cmd)}\n{cp.stderr.decode()[-3000:]}")
    r = json.loads(cp.stdout)
    statuses = {int(k): v for k, v in r["statuses"].items()}
    r["sent"] = sum(statuses.values()) + r["errors"]
    r["status_5xx"] = sum(v for k, v in statuses.items() if 500 <= k < 600)
    r["status_other"] = sum(v for k, v in statuses.items() if k != 200 and not 500 <= k < 600)
    r["success_rate"] = r["ok"] / r["sent"] if r["sent"] else 0.0
    r["command"] = shlex.join(cmd)
    return r


class HealthPoller(threading.Thread):
    """Polls modelplane's GET /admin/health during the chaos phase for the breakers' states.

    It finds every object in the answer with a breaker state (``"breaker"`` or ``"state"``:
    closed, open or half_open) and maps it to an upstream by its names (``second``/``dead``,
    ``first``/``flaky``, ``last``/``healthy``); per upstream it keeps the first moment it saw the
    breaker not closed, the breaker's own ``opened_at`` then, and the state changes.
    """

    STATES = ("closed", "open", "half_open", "half-open")

    def __init__(self, url: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.stop_evt = threading.Event()
        self.first_status: int | str | None = None
        self.polls = 0
        self.breakers: dict[str, dict[str, Any]] = {}
        self.last_body: Any = None

    @classmethod
    def views(cls, obj: Any) -> dict[str, dict]:
        found: dict[str, dict] = {}

        def upstream(label: str) -> str | None:
            for u, names in (
                ("dead", ("dead", "second")),
                ("flaky", ("flaky", "first")),
                ("healthy", ("healthy", "last")),
            ):
                if any(n in label for n in names):
                    return u
            return None

        def walk(o: Any, path: str) -> None:
            if isinstance(o, dict):
                state = next(
                    (o[k] for k in ("breaker", "state") if isinstance(o.get(k), str) and o[k] in cls.STATES), None
                )
                if state is not None:
                    label = " ".join(str(o[k]) for k in ("deployment", "key", "model", "provider") if k in o) or path
                    u = upstream(label)
                    if u is not None and u not in found:
                        found[u] = {"state": state, "opened_at": o.get("opened_at"), "label": label}
                for k, v in o.items():
                    walk(v, f"{path}/{k}")
            elif isinstance(o, list):
                for v in o:
                    walk(v, path)

        walk(obj, "")
        return found

    def poll(self) -> None:
        req = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        now = time.time()
        body = None
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                body = json.loads(r.read())
                status: int | str = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except Exception as e:
            status = type(e).__name__
        self.polls += 1
        if self.first_status is None:
            self.first_status = status
        if body is None:
            return
        self.last_body = body
        for u, v in self.views(body).items():
            b = self.breakers.setdefault(
                u, {"label": v["label"], "first_open_seen": None, "first_opened_at": None, "transitions": []}
            )
            if not b["transitions"] or b["transitions"][-1][1] != v["state"]:
                b["transitions"].append((now, v["state"], v["opened_at"]))
            if v["state"] != "closed" and b["first_open_seen"] is None:
                b["first_open_seen"] = now
                oa = v["opened_at"]
                b["first_opened_at"] = oa if isinstance(oa, (int, float)) else None

    def run(self) -> None:
        while not self.stop_evt.is_set():
            self.poll()
            if self.first_status == 404 and self.polls >= 3:
                return  # no /admin/health in this build
            self.stop_evt.wait(self.interval)

    def result(self) -> dict:
        return {
            "url": self.url,
            "first_status": self.first_status,
            "polls": self.polls,
            "breakers": {u: b | {"transitions": b["transitions"][:200]} for u, b in self.breakers.items()},
            "last_body": self.last_body,
        }


def bursts(times: list[float], gap: float = 1.0) -> list[int]:
    """Sizes of the groups of requests separated by more than ``gap`` seconds."""
    out: list[int] = []
    prev = None
    for t in times:
        if prev is None or t - prev > gap:
            out.append(0)
        out[-1] += 1
        prev = t
    return out


# --------------------------------------------------------------------------
# one gateway


def bench_gateway(gw_cls: type, args: argparse.Namespace, tmp: Path, procs: Procs) -> dict:
    name = gw_cls.name
    stubs = Stubs(args, tmp, procs, name)
    gw = gw_cls(args, tmp, procs, stubs)
    res: dict[str, Any] = {"name": name, "version": gw.version(), "stubs": stubs.cmds}
    res["startup_s"] = gw.start()
    res["command"] = gw.cmdline
    res["config"] = gw.config_path.read_text()
    if isinstance(gw, LiteLLMChaos):
        res["env"] = gw.retry_env()
        res["cooldown_mode"] = gw.cooldown_mode
    assert gw.proc is not None

    def check_alive() -> None:
        if gw.proc.poll() is not None:
            raise BenchError(f"{name} died (code {gw.proc.returncode})\n{tail(gw.log_path)}")

    # warm-up on the healthy chain only (the chaos chain's upstreams must start cold)
    if args.warmup:
        w = run_load(gw.url, gw.models["healthy"], gw.api_key, args.warmup, args.concurrency)
        log(f"{name}: warm-up {args.warmup} on the healthy chain: statuses {w['statuses']}")
        check_alive()

    phases: dict[str, Any] = {}
    for phase in ("healthy", "chaos"):
        before = stubs.stats()
        poller = None
        if phase == "chaos" and name == "modelplane":
            poller = HealthPoller(f"{gw.url}/admin/health")
            poller.start()
        amount = f"{args.duration:g} s" if args.duration else f"{args.servings:,} servings"
        log(f"{name}: {phase} chain, {amount} at {args.concurrency} in flight")
        t0 = time.time()
        r = run_load(gw.url, gw.models[phase], gw.api_key, args.servings, args.concurrency, args.duration)
        t1 = time.time()
        if poller is not None:
            poller.stop_evt.set()
            poller.join(5)
            poller.poll()  # one more after the run: a run shorter than the poll interval still gets one
            r["admin_health"] = poller.result()
        check_alive()
        after = stubs.stats()
        r["t0"], r["t1"] = t0, t1
        r["upstreams"] = {u: delta(after[u], before[u], t0, t1) for u in UPSTREAMS}
        log(
            f"{name}: {phase}: success {r['success_rate']:.2%} statuses {r['statuses']} errors {r['errors']} "
            f"invalid {r.get('invalid_200', 0)}; p50 {fmt(r['p50_ms'], '.2f')} ms p99 {fmt(r['p99_ms'], '.2f')} ms; "
            f"upstream chat requests "
            + ", ".join(f"{u} {r['upstreams'][u]['chat']}" for u in UPSTREAMS)
            + f"; {r['wall_s']:.1f} s"
        )
        if r["samples"]:
            log(f"{name}: {phase}: samples {r['samples']}")
        phases[phase] = r
    res["phases"] = phases
    res["shutdown"] = gw.stop()
    for p in list(procs.procs):
        if p[0].startswith("stub-"):
            procs.stop(p[1])
            procs.procs.remove(p)
    summarize(res)
    return res


def summarize(res: dict) -> None:
    h, c = res["phases"]["healthy"], res["phases"]["chaos"]
    dead = c["upstreams"]["dead"]
    times = dead["chat_times"]
    s: dict[str, Any] = {
        "servings": c["sent"],
        "success_rate": c["success_rate"],
        "ok": c["ok"],
        "status_5xx": c["status_5xx"],
        "status_other": c["status_other"],
        "transport_errors": c["errors"],
        "invalid_200": c.get("invalid_200", 0),
        "healthy_success_rate": h["success_rate"],
        "healthy_p50_ms": h["p50_ms"],
        "healthy_p99_ms": h["p99_ms"],
        "chaos_p50_ms": c["p50_ms"],
        "chaos_p99_ms": c["p99_ms"],
        "added_p50_ms": None if c["p50_ms"] is None or h["p50_ms"] is None else c["p50_ms"] - h["p50_ms"],
        "added_p99_ms": None if c["p99_ms"] is None or h["p99_ms"] is None else c["p99_ms"] - h["p99_ms"],
        "dead_requests": dead["chat"],
        "dead_beyond_learning": max(0, dead["chat"] - BREAKER_MIN_REQUESTS),
        # what a breaker that opens after min_requests and then lets one probe through per cooldown sends
        "dead_expected_correct_breaker": BREAKER_MIN_REQUESTS + c["wall_s"] / BREAKER_COOLDOWN,
        "dead_learning_done_at_s": (times[BREAKER_MIN_REQUESTS - 1] - c["t0"])
        if len(times) >= BREAKER_MIN_REQUESTS
        else None,
        "dead_bursts_after_learning": bursts(times[BREAKER_MIN_REQUESTS:]),
        "dead_per_second": _per_second(times, c["t0"], c["t1"]),
        "flaky_requests": c["upstreams"]["flaky"]["chat"],
        "flaky_failed": c["upstreams"]["flaky"]["failed"],
        "healthy_upstream_requests": c["upstreams"]["healthy"]["chat"],
        "chaos_wall_s": c["wall_s"],
        "healthy_wall_s": h["wall_s"],
        "chaos_rps": c["rps"],
        "healthy_rps": h["rps"],
        "dead_after_open": None,
        "breaker_opened_at_s": None,
    }
    ah = c.get("admin_health")
    for u, b in ((ah or {}).get("breakers") or {}).items():
        # the breaker's own opened_at when it gives one, else the first poll that saw it not closed
        opened = b.get("first_opened_at") or b.get("first_open_seen")
        if opened is None:
            continue
        s[f"{u}_breaker_opened_at_s"] = opened - c["t0"]
        s[f"{u}_breaker_opened_source"] = "opened_at" if b.get("first_opened_at") else "first poll not closed"
        s[f"{u}_breaker_states"] = [st for _, st, _ in b["transitions"]]
        if u == "dead":
            s["breaker_opened_at_s"] = opened - c["t0"]
            s["dead_after_open"] = sum(1 for t in times if t > opened)
    for k in ("chat_times", "fail_times"):
        for u in UPSTREAMS:
            c["upstreams"][u].pop(k, None)
            h["upstreams"][u].pop(k, None)
    res["summary"] = s


def _per_second(times: list[float], t0: float, t1: float) -> list[int]:
    n = max(1, int(t1 - t0) + 1)
    out = [0] * n
    for t in times:
        i = min(n - 1, max(0, int(t - t0)))
        out[i] += 1
    return out


# --------------------------------------------------------------------------
# output


def build_table(out: dict) -> tuple[list[str], list[list[str]]]:
    g = out["gateways"]
    cols = [n for n in GATEWAYS if n in g]
    header = ["metric"] + [LABELS[n] for n in cols]

    def val(n: str, key: str, spec: str) -> str:
        return fmt(g[n]["summary"].get(key), spec)

    def pct(n: str) -> str:
        s = g[n]["summary"]
        return f"{s['success_rate']:.2%} ({s['ok']:,}/{s['servings']:,})"

    def dead_after(n: str) -> str:
        s = g[n]["summary"]
        if s["dead_after_open"] is None:
            return "—"
        return f"{s['dead_after_open']:,} (opened at {s['breaker_opened_at_s']:.2f} s)"

    def bursts_row(n: str) -> str:
        b = g[n]["summary"]["dead_bursts_after_learning"]
        return f"{len(b)} ({max(b) if b else 0} max)"

    def failures(n: str) -> str:
        s = g[n]["summary"]
        return f"{s['status_5xx']:,} / {s['status_other']:,} / {s['transport_errors'] + s['invalid_200']:,}"

    def both(n: str, k1: str, k2: str, spec: str) -> str:
        return f"{val(n, k1, spec)} / {val(n, k2, spec)}"

    rows: list[tuple[str, Any]] = [
        ("success rate, chaos chain", pct),
        ("5xx / other non-200 / transport or invalid, chaos", failures),
        ("p50 healthy chain (ms)", lambda n: val(n, "healthy_p50_ms", ".2f")),
        ("p99 healthy chain (ms)", lambda n: val(n, "healthy_p99_ms", ".2f")),
        ("p50 chaos chain (ms)", lambda n: val(n, "chaos_p50_ms", ".2f")),
        ("p99 chaos chain (ms)", lambda n: val(n, "chaos_p99_ms", ".2f")),
        ("added p50 (ms)", lambda n: val(n, "added_p50_ms", "+.2f")),
        ("added p99 (ms)", lambda n: val(n, "added_p99_ms", "+.2f")),
        ("requests to dead upstream", lambda n: val(n, "dead_requests", ",d")),
        (f"… beyond the first {BREAKER_MIN_REQUESTS} (learning)", lambda n: val(n, "dead_beyond_learning", ",d")),
        ("… after the breaker first opened", dead_after),
        ("… a correct breaker: min_requests + run/cooldown", lambda n: val(n, "dead_expected_correct_breaker", ".0f")),
        ("… bursts after learning (>1 s apart)", bursts_row),
        (
            "requests to flaky upstream (of which 500)",
            lambda n: f"{val(n, 'flaky_requests', ',d')} ({val(n, 'flaky_failed', ',d')})",
        ),
        ("requests to healthy upstream, chaos", lambda n: val(n, "healthy_upstream_requests", ",d")),
        (
            "run time healthy / chaos (s)",
            lambda n: f"{val(n, 'healthy_wall_s', '.1f')} / {val(n, 'chaos_wall_s', '.1f')}",
        ),
        (
            "throughput healthy / chaos (req/s)",
            lambda n: f"{val(n, 'healthy_rps', ',.0f')} / {val(n, 'chaos_rps', ',.0f')}",
        ),
    ]
    body = [[label] + [f(n) for n in cols] for label, f in rows]
    return header, body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["modelplane", "litellm"], help="benchmark only this gateway")
    ap.add_argument("--quick", action="store_true", help="1,000 servings per chain instead of 10,000")
    ap.add_argument("--servings", type=int, default=10_000, help="servings per chain (healthy, chaos)")
    ap.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="run each chain this many seconds instead of --servings (to span several breaker cooldowns)",
    )
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    ap.add_argument("--warmup", type=int, default=500, help="unrecorded servings on the healthy chain first")
    ap.add_argument("--fail-rate", type=float, default=0.3, help="share of the flaky upstream's 500s")
    ap.add_argument("--seed", type=int, default=42, help="seed of the flaky upstream's RNG")
    ap.add_argument(
        "--litellm-cooldown",
        choices=["allowed_fails", "rate", "both"],
        default="allowed_fails",
        help="LiteLLM cooldown trigger: allowed_fails=9 (default), its per-minute failure-rate rule "
        "(env-tuned, see bench/README.md), or both (two LiteLLM runs, two columns)",
    )
    add_gateway_arguments(ap, RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.servings = min(args.servings, 1_000)
        args.warmup = min(args.warmup, 200)

    global CLIENT_CPU
    CLIENT_CPU = args.client_cpu if args.client_cpu >= 0 and (os.cpu_count() or 1) > 1 else None

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    command_line = shlex.join([sys.executable, *sys.argv])
    print(f"command: {command_line}", flush=True)
    busy_start = cpu_busy()
    if busy_start > 0.2:
        log(f"WARNING: the machine is busy ({busy_start:.0%} of all CPUs in use before the start); figures will be off")
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="mp-chaos-"))
    procs = Procs()
    out: dict[str, Any] = {
        "command": command_line,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            k: getattr(args, k)
            for k in (
                "servings",
                "duration",
                "concurrency",
                "warmup",
                "fail_rate",
                "seed",
                "litellm_cooldown",
                "client_cpu",
            )
        }
        | {
            "retry": {"attempts": RETRY_ATTEMPTS, "initial": RETRY_INITIAL, "max": RETRY_MAX},
            "breaker": {
                "window": BREAKER_WINDOW,
                "min_requests": BREAKER_MIN_REQUESTS,
                "failure_rate": BREAKER_FAILURE_RATE,
                "cooldown": BREAKER_COOLDOWN,
            },
            "dead_upstream": "HTTP 503 to every chat request",
        },
        "gateways": {},
    }
    try:
        gws: list[type] = []
        if args.only in (None, "modelplane"):
            gws.append(ModelplaneChaos)
        if args.only in (None, "litellm"):
            if args.litellm_cooldown in ("allowed_fails", "both"):
                gws.append(LiteLLMChaos)
            if args.litellm_cooldown in ("rate", "both"):
                gws.append(LiteLLMChaosRate)
        for cls in gws:
            try:
                out["gateways"][cls.name] = bench_gateway(cls, args, tmp, procs)
            except BenchError as e:
                # one gateway failing to run (e.g. a config it does not know yet) should not hide the other
                log(f"ERROR ({cls.name}): {e}")
                out.setdefault("errors", {})[cls.name] = str(e)
                procs.stop_all()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        procs.stop_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    out["elapsed_s"] = time.monotonic() - t_start
    out["cpu_busy_before_start"] = busy_start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if out["gateways"]:
        header, body = build_table(out)
        out["table"] = {"header": header, "rows": body}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")

    print()
    print(f"command:    {command_line}")
    m = out["machine"]
    print(f"machine:    {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, Linux {m['kernel']}, Python {m['python']}")
    for n, r in out["gateways"].items():
        print(f"{n + ':':11} {r['version']}  ({r['command']})")
        if "env" in r:
            print(f"{'':11} env: {' '.join(f'{k}={v}' for k, v in r['env'].items())}")
    amount = f"{args.duration:g} s" if args.duration else f"{args.servings:,} servings"
    print(
        f"load:       {amount} per chain at {args.concurrency} in flight "
        f"(after {args.warmup} warm-up on the healthy chain); flaky 500 rate {args.fail_rate:.0%} "
        f"(seed {args.seed}); dead answers 503; LiteLLM cooldown trigger: {args.litellm_cooldown}"
    )
    if out["gateways"]:
        print()
        print(markdown_table(header, body))
        print()
    for n, r in out["gateways"].items():
        ah = r["phases"]["chaos"].get("admin_health")
        for u, b in ((ah or {}).get("breakers") or {}).items():
            if u in ("dead", "flaky"):
                sm = r["summary"]
                opened = sm.get(f"{u}_breaker_opened_at_s")
                print(
                    f"breaker:    {n} {b['label']}: states {' → '.join(sm.get(f'{u}_breaker_states') or ['?'])}"
                    + (f"; first opened {opened:.2f} s into the chaos run" if opened is not None else "")
                )
        if ah is not None and "dead" not in ah.get("breakers", {}):
            print(
                f"note:       {n}: GET /admin/health gave no breaker state for the dead deployment "
                f"(first answer: {ah.get('first_status')}, {ah.get('polls')} polls)"
            )
    for n, e in out.get("errors", {}).items():
        print(f"ERROR:      {n}: {e.splitlines()[0]}")
    print(f"results:    {args.out}   (total {out['elapsed_s']:.0f} s)")
    if busy_start > 0.2:
        print(f"WARNING:    {busy_start:.0%} of the CPUs were busy before the start: something else was running")
    return 1 if out.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
