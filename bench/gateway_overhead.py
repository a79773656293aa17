"""Gateway overhead benchmark: modelplane vs LiteLLM's proxy in front of one stub.

What it does (everything on 127.0.0.1, every server in its own process):

1. starts ``bench/stub_upstream.py``, a very cheap OpenAI-compatible upstream;
2. measures the direct-to-stub latency at 1 request in flight (the baseline);
3. for each gateway (modelplane, then LiteLLM), one worker each, in front of
   that same stub:
   * warms up, drives the total number of servings to the RSS warm-up point
     (``--rss-warmup``, default 5,000) and reads the RSS (VmRSS of the
     process and all its descendants, from /proc);
   * latency at 1 in flight (``--latency-requests``, default 3,000);
   * throughput at 8 and at 64 in flight (``--throughput-seconds`` each,
     default 10 s);
   * drives the total to ``--servings`` (default 100,000; LiteLLM:
     ``--litellm-servings``, default 20,000 because it serves ~170 req/s)
     at 8 in flight, sampling RSS along the way, and reads the final RSS;
4. prints one table (added latency = gateway - direct, p50 and p99; req/s at
   8 and 64 in flight; RSS after warm-up and at the end; RSS growth) with the
   ratios, and writes everything to ``bench/results/gateway_overhead.json``.

The load generator (``bench/loadgen.py``) runs as a separate process for
every phase, with raw keep-alive connections, one per in-flight request.

LiteLLM is installed by this script into ``bench/.venv-litellm`` (only when it
is not there yet) from PyPI, and run with ``LITELLM_LOCAL_MODEL_COST_MAP=True``,
a master key, one worker and no database.

    python bench/gateway_overhead.py               # full run, both gateways
    python bench/gateway_overhead.py --quick       # fast iteration
    python bench/gateway_overhead.py --only litellm
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
STUB = BENCH_DIR / "stub_upstream.py"
LOADGEN = BENCH_DIR / "loadgen.py"
RESULTS = BENCH_DIR / "results" / "gateway_overhead.json"
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
# litellm 1.103.0 and later (as of this writing, up to 1.109.1) require
# certifi>=2026.10.19, which PyPI does not have, so they do not install.
LITELLM_VERSION = "1.102.4"

MODELPLANE_KEY = "sk-bench-key"
LITELLM_MASTER_KEY = "sk-bench-master"
HOST = "127.0.0.1"
# CPU the stub and the load generator are pinned to (None: not pinned); the
# gateway under test is never pinned.
CLIENT_CPU: int | None = None


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# small helpers


def log(msg: str) -> None:
    ts = time.strftime("%H:%M:%S")
    sys.stderr.write(f"[{ts}] {msg}\n")
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may contain spaces/parentheses: split after the last ')'
        rest = stat[stat.rfind(b")") + 2 :].split()
        ppid = int(rest[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and all its descendants, in MB (10^6 bytes)."""
    total_kb = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except OSError:
            pass
    return total_kb * 1024 / 1e6


class Procs:
    """Every subprocess this script starts, each in its own session, killed on exit."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log_path, "wb") as logf:
            p = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(log_path.parent),
                start_new_session=True,
            )
        self.procs.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, grace: float = 10.0) -> dict:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds; say how it went."""
        if p.poll() is not None:
            return {"exit_code": p.returncode, "stop_s": 0.0, "killed": False}
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        killed = False
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
        return {"exit_code": p.returncode, "stop_s": round(time.monotonic() - t0, 2), "killed": killed}

    def stop_all(self) -> None:
        for _, p in reversed(self.procs):
            self.stop(p)
        self.procs.clear()


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def wait_http_ok(url: str, proc: subprocess.Popen, log_path: Path, timeout: float, name: str) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took."""
    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise BenchError(
                f"{name} exited with code {proc.returncode} before it was ready.\n"
                f"--- last lines of {log_path} ---\n{tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.25)
    raise BenchError(
        f"{name} was not ready at {url} within {timeout:.0f} s (last answer: {last}).\n"
        f"--- last lines of {log_path} ---\n{tail(log_path)}"
    )


def wait_line(proc: subprocess.Popen, log_path: Path, needle: str, timeout: float, name: str) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if needle in log_path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise BenchError(f"{name} did not start.\n--- {log_path} ---\n{tail(log_path)}")


def loadgen(
    url: str,
    concurrency: int,
    *,
    requests: int = 0,
    duration: float = 0.0,
    warmup: int = 0,
    model: str,
    api_key: str | None,
    timeout: float = 900.0,
) -> dict:
    cmd = [sys.executable, str(LOADGEN), "--url", url, "--concurrency", str(concurrency), "--model", model]
    if api_key:
        cmd += ["--api-key", api_key]
    if duration:
        cmd += ["--duration", str(duration)]
    else:
        cmd += ["--requests", str(requests)]
    if warmup:
        cmd += ["--warmup", str(warmup)]
    if CLIENT_CPU is not None:
        cmd += ["--cpu", str(CLIENT_CPU)]
    try:
        cp = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"load generator timed out after {timeout:.0f} s: {shlex.join(cmd)}") from e
    if cp.returncode != 0:
        raise BenchError(f"load generator failed ({cp.returncode}): {shlex.join(cmd)}\n{cp.stderr.decode()[-3000:]}")
    res = json.loads(cp.stdout)
    res["sent"] = res["ok"] + res["errors"] + sum(v for k, v in res["statuses"].items() if k != "200") + warmup
    if res["errors"] or set(res["statuses"]) - {"200"} or res["ok"] == 0:
        raise BenchError(
            f"requests to {url} failed: statuses={res['statuses']} errors={res['error_kinds']}\n"
            f"samples: {res['samples']}"
        )
    return res


# --------------------------------------------------------------------------
# gateways


class Gateway:
    name = ""
    model = ""
    api_key: str | None = None

    def __init__(self, args: argparse.Namespace, tmp: Path, procs: Procs, stub_port: int) -> None:
        self.args, self.tmp, self.procs, self.stub_port = args, tmp, procs, stub_port
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = tmp / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def version(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready_url(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        pass

    def start(self) -> float:
        self.prepare()
        cmd = self.command()
        self.cmdline = shlex.join(cmd)
        log(f"{self.name}: starting: {self.cmdline}")
        self.proc = self.procs.start(self.name, cmd, self.log_path, env=self.env())
        took = wait_http_ok(self.ready_url(), self.proc, self.log_path, self.args.startup_timeout, self.name)
        log(f"{self.name}: ready in {took:.1f} s (pid {self.proc.pid}, port {self.port})")
        return took

    def stop(self) -> dict:
        return self.procs.stop(self.proc) if self.proc is not None else {}


class Modelplane(Gateway):
    name = "modelplane"
    model = "bench"  # a feature name
    api_key = MODELPLANE_KEY

    def binary(self) -> str:
        if self.args.modelplane_bin:
            return self.args.modelplane_bin
        cand = Path(sys.executable).parent / "modelplane"
        if cand.exists():
            return str(cand)
        found = shutil.which("modelplane")
        if found:
            return found
        raise BenchError(
            f"no `modelplane` console script next to {sys.executable} (install the repo: "
            f"pip install -e {REPO_DIR}), or pass --only litellm"
        )

    def version(self) -> str:
        v = "unknown"
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            v = version("modelplane")
        with contextlib.suppress(Exception):
            rev = subprocess.run(
                ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            if rev:
                v += f" (git {rev})"
        return v

    def prepare(self) -> None:
        key_hash = hashlib.sha256(MODELPLANE_KEY.encode()).hexdigest()
        cfg = f"""\
providers:
  stub: {{kind: openai, base_url: "http://{HOST}:{self.stub_port}/v1", api_key: sk-stub}}
models:
  bench-model: {{provider: stub, name: bench-model,
                 price: {{input: 0.15, cached_input: 0.075, output: 0.60}}}}
features:
  bench: {{route: {{strategy: single, models: [bench-model]}}}}
keys:
  - {{hash: "sha256:{key_hash}", tenant: bench, tier: default}}
tiers:
  default: {{revenue_per_serving: 0}}
ledger: {{url: "sqlite:///{self.tmp}/ledger.db"}}
"""
        self.config_path = self.tmp / "modelplane.yaml"
        self.config_path.write_text(cfg)

    def command(self) -> list[str]:
        return (
            [
                self.binary(),
                "serve",
                "--config",
                str(self.config_path),
                "--host",
                HOST,
                "--port",
                str(self.port),
            ]
            if self.args.modelplane_host_flag
            else [self.binary(), "serve", "--config", str(self.config_path), "--port", str(self.port)]
        )

    def ready_url(self) -> str:
        return f"{self.url}/readyz"


class LiteLLM(Gateway):
    name = "litellm"
    model = "bench-model"
    api_key = LITELLM_MASTER_KEY

    @property
    def venv(self) -> Path:
        return Path(self.args.litellm_venv)

    def ensure_installed(self) -> None:
        exe = self.venv / "bin" / "litellm"
        if exe.exists():
            return
        log(f"litellm: creating {self.venv} and installing litellm[proxy]=={self.args.litellm_version} from PyPI")
        if not (self.venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=300)
        pip = [str(self.venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, f"litellm[proxy]=={self.args.litellm_version}"], check=True, timeout=1800)
        if not exe.exists():
            raise BenchError(f"litellm installed but {exe} is missing")

    def version(self) -> str:
        self.ensure_installed()  # a fresh checkout has no LiteLLM venv yet
        cp = subprocess.run(
            [
                str(self.venv / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return cp.stdout.strip() or "unknown"

    def prepare(self) -> None:
        self.ensure_installed()
        self.config_path = self.tmp / "litellm.yaml"
        self.config_path.write_text(f"""\
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-model
      api_base: http://{HOST}:{self.stub_port}/v1
      api_key: sk-stub
litellm_settings:
  set_verbose: false
  json_logs: false
  telemetry: false
general_settings:
  master_key: {LITELLM_MASTER_KEY}
""")
        # uvicorn logging as by default, minus the per-request access log line
        # (modelplane writes none either; this only favours LiteLLM).
        self.log_config_path = self.tmp / "litellm-log.json"
        self.log_config_path.write_text(
            json.dumps(
                {
                    "version": 1,
                    "disable_existing_loggers": False,
                    "formatters": {"default": {"format": "%(levelname)s %(name)s: %(message)s"}},
                    "handlers": {
                        "default": {
                            "class": "logging.StreamHandler",
                            "formatter": "default",
                            "stream": "ext://sys.stderr",
                        }
                    },
                    "loggers": {
                        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
                        "uvicorn.error": {"level": "INFO"},
                        "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
                    },
                }
            )
        )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "LITELLM_TELEMETRY": "False",
                "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
                "DISABLE_ADMIN_UI": "True",
            }
        )
        env.pop("DATABASE_URL", None)
        env.pop("VIRTUAL_ENV", None)
        return env

    def command(self) -> list[str]:
        return [
            str(self.venv / "bin" / "litellm"),
            "--config",
            str(self.config_path),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--num_workers",
            "1",
            "--telemetry",
            "False",
            "--log_config",
            str(self.log_config_path),
        ]

    def ready_url(self) -> str:
        return f"{self.url}/health/liveliness"


# --------------------------------------------------------------------------
# the benchmark


def bench_gateway(gw: Gateway, args: argparse.Namespace, servings_target: int) -> dict:
    res: dict[str, Any] = {"name": gw.name, "version": gw.version()}
    snap0 = cpu_snapshot()
    t_start = time.monotonic()
    res["startup_s"] = gw.start()
    res["command"] = gw.cmdline
    assert gw.proc is not None
    pid = gw.proc.pid
    served = 0

    def lg(conc: int, **kw: Any) -> dict:
        nonlocal served
        r = loadgen(gw.url, conc, model=gw.model, api_key=gw.api_key, **kw)
        served += r["sent"]
        if gw.proc.poll() is not None:
            raise BenchError(f"{gw.name} died (code {gw.proc.returncode})\n{tail(gw.log_path)}")
        return r

    rss_samples: list[tuple[int, float]] = [(0, rss_mb(pid))]
    log(f"{gw.name}: RSS after start {rss_samples[0][1]:.1f} MB; warming up")
    # warm-up: both concurrency levels, then up to the RSS warm-up point
    lg(1, requests=200)
    lg(64, requests=min(2000, max(64, args.rss_warmup // 4)))
    if served < args.rss_warmup:
        lg(8, requests=args.rss_warmup - served)
    rss_samples.append((served, rss_mb(pid)))

    r1 = lg(1, requests=args.latency_requests, warmup=50)
    res["latency_c1"] = r1
    log(f"{gw.name}: 1 in flight: p50 {r1['p50_ms']:.3f} ms p99 {r1['p99_ms']:.3f} ms ({r1['rps']:.0f} req/s)")
    for c in (8, 64):
        r = lg(c, duration=args.throughput_seconds, warmup=c * 4)
        res[f"throughput_c{c}"] = r
        log(f"{gw.name}: {c} in flight: {r['rps']:.0f} req/s (p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms)")
    # The growth baseline is read once every load level has run: bounded buffers (pools, the
    # ledger's queue) reach their high-water mark at 64 in flight, and that is not a leak.
    rss_warm = rss_mb(pid)
    rss_samples.append((served, rss_warm))
    res["rss_warmup_servings"] = served
    log(f"{gw.name}: RSS after {served} servings and every load level {rss_warm:.1f} MB")

    # drive the total up to the target, sampling RSS on the way
    remaining = servings_target - served
    if remaining > 0:
        chunks = max(1, min(10, remaining // 1000))
        log(f"{gw.name}: driving to {servings_target} servings ({remaining} more, 8 in flight)")
        fill_ok, fill_wall = 0, 0.0
        for i in range(chunks):
            n = remaining // chunks + (1 if i < remaining % chunks else 0)
            r = lg(8, requests=n)
            fill_ok += r["ok"]
            fill_wall += r["wall_s"]
            rss_samples.append((served, rss_mb(pid)))
        res["fill_rps_c8"] = fill_ok / fill_wall if fill_wall else None
    rss_end = rss_mb(pid)
    rss_samples.append((served, rss_end))
    res.update(
        servings=served,
        rss_warm_mb=rss_warm,
        rss_end_mb=rss_end,
        rss_growth_mb=rss_end - rss_warm,
        rss_samples=rss_samples,
        processes=len(process_tree(pid)),
    )
    # growth per 10k servings: least-squares slope over the samples after warm-up
    pts = [(s, m) for s, m in rss_samples if s >= res["rss_warmup_servings"]]
    if len(pts) >= 3 and pts[-1][0] > pts[0][0]:
        mx = sum(s for s, _ in pts) / len(pts)
        my = sum(m for _, m in pts) / len(pts)
        den = sum((s - mx) ** 2 for s, _ in pts)
        res["rss_slope_mb_per_10k"] = (sum((s - mx) * (m - my) for s, m in pts) / den * 10_000) if den else 0.0
    log(
        f"{gw.name}: {served} servings; RSS {rss_warm:.1f} -> {rss_end:.1f} MB "
        f"({rss_end - rss_warm:+.1f} MB); took {time.monotonic() - t_start:.0f} s"
    )
    res["foreign_cpu_share"] = foreign_share(snap0, cpu_snapshot())
    if res["foreign_cpu_share"] > 0.05:
        log(f"WARNING: other processes used {res['foreign_cpu_share']:.0%} of the CPUs during the {gw.name} run")
    res["shutdown"] = st = gw.stop()
    log(
        f"{gw.name}: stopped on SIGTERM in {st.get('stop_s')} s, exit code {st.get('exit_code')}"
        + (" (had to SIGKILL)" if st.get("killed") else "")
    )
    return res


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0 or num <= 0:
        return None
    return num / den


def build_table(out: dict) -> tuple[list[str], list[list[str]]]:
    g = out["gateways"]
    mp, ll = g.get("modelplane"), g.get("litellm")

    def get(r: dict | None, key: str) -> float | None:
        if r is None:
            return None
        return r.get(key)

    rows = [
        ("added latency p50 @1 in flight (ms)", "added_p50_ms", ".3f", "lower"),
        ("added latency p99 @1 in flight (ms)", "added_p99_ms", ".3f", "lower"),
        ("throughput @8 in flight (req/s)", "rps_c8", ",.0f", "higher"),
        ("throughput @64 in flight (req/s)", "rps_c64", ",.0f", "higher"),
        ("RSS after warm-up (MB)", "rss_warm_mb", ".1f", "lower"),
        ("RSS at end (MB)", "rss_end_mb", ".1f", "lower"),
        ("RSS growth, warm-up → end (MB)", "rss_growth_mb", "+.1f", "growth"),
        ("servings at end", "servings", ",d", "none"),
    ]
    header = ["metric", "modelplane", "LiteLLM", "ratio"]
    body = []
    for label, key, spec, kind in rows:
        a, b = get(mp, key), get(ll, key)
        if kind == "lower":
            rt = ratio(b, a)
        elif kind == "higher":
            rt = ratio(a, b)
        else:
            rt = None
        body.append([label, fmt(a, spec), fmt(b, spec), "—" if rt is None else f"{rt:.1f}x"])
    return header, body


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r):
        return (
            "| "
            + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            + " |"
        )

    sep = "| " + " | ".join(("-" * w) if i == 0 else ("-" * (w - 1) + ":") for i, w in enumerate(widths)) + " |"
    return "\n".join([line(header), sep] + [line(r) for r in body])


def summarize(r: dict, direct: dict) -> None:
    r["added_p50_ms"] = r["latency_c1"]["p50_ms"] - direct["p50_ms"]
    r["added_p99_ms"] = r["latency_c1"]["p99_ms"] - direct["p99_ms"]
    r["rps_c8"] = r["throughput_c8"]["rps"]
    r["rps_c64"] = r["throughput_c64"]["rps"]


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat); 0.0 if unknown."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle

    try:
        t1, i1 = read()
        time.sleep(seconds)
        t2, i2 = read()
    except OSError:
        return 0.0
    return 1.0 - (i2 - i1) / (t2 - t1) if t2 > t1 else 0.0


def cpu_snapshot() -> tuple[int, int, int]:
    """(all CPU ticks, busy ticks, ticks used by this script and its processes, reaped ones included)."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    total = sum(vals[:8])  # guest time is already counted in user/nice
    busy = total - vals[3] - (vals[4] if len(vals) > 4 else 0)
    ours = 0
    for p in process_tree(os.getpid()):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(b")") + 2 :].split()
        ours += sum(int(x) for x in rest[11:15])  # utime stime cutime cstime
    return total, busy, ours


def foreign_share(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """Share of all CPU time between two snapshots used by processes that are not ours."""
    dt = b[0] - a[0]
    return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / dt) if dt > 0 else 0.0


def machine_info() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    mem = None
    with contextlib.suppress(OSError):
        with open("/proc/meminfo") as f:
            kib = next((int(ln.split()[1]) for ln in f if ln.startswith("MemTotal:")), 0)
        mem = round(kib / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def add_gateway_arguments(ap: argparse.ArgumentParser, results: Path) -> None:
    """The options every gateway-vs-LiteLLM benchmark takes: where the gateways are, pinning, output."""
    ap.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for a gateway to be ready")
    ap.add_argument("--modelplane-bin", help="modelplane executable (default: the one next to this Python)")
    ap.add_argument("--modelplane-host-flag", action="store_true", help="also pass --host 127.0.0.1 to modelplane")
    ap.add_argument("--litellm-venv", default=str(LITELLM_VENV), help="virtualenv for LiteLLM (created if missing)")
    ap.add_argument("--litellm-version", default=LITELLM_VERSION, help="litellm version to install")
    ap.add_argument(
        "--client-cpu",
        type=int,
        default=(os.cpu_count() or 1) - 1,
        help="pin the stubs and the load generator to this CPU (default: the last one; -1: no pinning)",
    )
    ap.add_argument("--out", default=str(results), help="JSON results file")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["modelplane", "litellm"], help="benchmark only this gateway")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="fast iteration: 500 latency requests, 3 s throughput, 5,000 servings, warm-up point 1,000",
    )
    ap.add_argument("--servings", type=int, default=100_000, help="total servings for modelplane (default 100,000)")
    ap.add_argument(
        "--litellm-servings",
        type=int,
        default=20_000,
        help="total servings for LiteLLM (default 20,000: 100,000 at ~170 req/s takes ~10 min)",
    )
    ap.add_argument("--rss-warmup", type=int, default=5_000, help="servings before the first RSS reading")
    ap.add_argument("--latency-requests", type=int, default=3_000, help="requests at 1 in flight")
    ap.add_argument("--throughput-seconds", type=float, default=5.0, help="seconds at 8 and at 64 in flight")
    add_gateway_arguments(ap, RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.latency_requests = min(args.latency_requests, 500)
        args.throughput_seconds = min(args.throughput_seconds, 3.0)
        args.servings = min(args.servings, 5_000)
        args.litellm_servings = min(args.litellm_servings, 5_000)
        args.rss_warmup = min(args.rss_warmup, 1_000)

    global CLIENT_CPU
    CLIENT_CPU = args.client_cpu if args.client_cpu >= 0 and (os.cpu_count() or 1) > 1 else None

    # turn SIGTERM into a normal exit so the finally-block cleans up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored

    command_line = shlex.join([sys.executable, *sys.argv])
    print(f"command: {command_line}", flush=True)
    busy_start = cpu_busy()
    if busy_start > 0.2:
        log(f"WARNING: the machine is busy ({busy_start:.0%} of all CPUs in use before the start); figures will be off")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="mp-bench-"))
    procs = Procs()
    out: dict[str, Any] = {
        "command": command_line,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            k: getattr(args, k)
            for k in (
                "servings",
                "litellm_servings",
                "rss_warmup",
                "latency_requests",
                "throughput_seconds",
                "quick",
                "client_cpu",
            )
        },
        "gateways": {},
    }
    try:
        stub_port = free_port()
        stub_log = tmp / "stub.log"
        stub_cmd = [sys.executable, "-u", str(STUB), "--host", HOST, "--port", str(stub_port)]
        if CLIENT_CPU is not None:
            stub_cmd += ["--cpu", str(CLIENT_CPU)]
        stub = procs.start("stub", stub_cmd, stub_log)
        wait_line(stub, stub_log, "READY", 30, "stub")
        stub_url = f"http://{HOST}:{stub_port}"

        def measure_direct(when: str) -> dict:
            d = loadgen(stub_url, 1, requests=args.latency_requests, warmup=5000, model="bench-model", api_key=None)
            d["when"] = when
            log(f"direct to stub ({when}), 1 in flight: p50 {d['p50_ms']:.3f} ms, p99 {d['p99_ms']:.3f} ms")
            out["direct_runs"].append(d)
            return d

        out["direct_runs"] = []
        measure_direct("start")

        gateways: list[Gateway] = []
        if args.only in (None, "modelplane"):
            gateways.append(Modelplane(args, tmp, procs, stub_port))
        if args.only in (None, "litellm"):
            gateways.append(LiteLLM(args, tmp, procs, stub_port))
        for gw in gateways:
            target = args.litellm_servings if gw.name == "litellm" else args.servings
            measure_direct(f"before {gw.name}")
            out["gateways"][gw.name] = bench_gateway(gw, args, target)
        measure_direct("end")
        # the baseline: the lowest direct p50 (p99) seen, which makes the added latency conservative
        runs = out["direct_runs"]
        direct = {"p50_ms": min(d["p50_ms"] for d in runs), "p99_ms": min(d["p99_ms"] for d in runs)}
        out["direct"] = direct
        for r in out["gateways"].values():
            summarize(r, direct)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as e:
        log(f"ERROR: {e}")
        return 1
    finally:
        procs.stop_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    out["elapsed_s"] = time.monotonic() - t0
    out["cpu_busy_before_start"] = busy_start
    noisy = {n: r["foreign_cpu_share"] for n, r in out["gateways"].items() if r["foreign_cpu_share"] > 0.05}
    header, body = build_table(out)
    out["table"] = {"header": header, "rows": body}
    mp, ll = out["gateways"].get("modelplane"), out["gateways"].get("litellm")
    checks = {}
    if mp and ll:
        checks["added_p50_ratio"] = ratio(ll["added_p50_ms"], mp["added_p50_ms"])
        checks["rps_c8_ratio"] = ratio(mp["rps_c8"], ll["rps_c8"])
    if mp:
        # "no memory growth": under 5 MB (or 3 %) from the warm-up point to the end
        checks["modelplane_no_growth"] = mp["rss_growth_mb"] <= max(5.0, 0.03 * mp["rss_warm_mb"])
    out["checks"] = checks

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")

    print()
    print(f"command:    {command_line}")
    m = out["machine"]
    print(f"machine:    {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, Linux {m['kernel']}, Python {m['python']}")
    for name, r in out["gateways"].items():
        print(f"{name + ':':11} {r['version']}  ({r['command']})")
    runs = ", ".join(f"{d['p50_ms']:.3f}/{d['p99_ms']:.3f}" for d in out["direct_runs"])
    print(
        f"direct:     stub at 1 in flight, baseline p50 {direct['p50_ms']:.3f} ms, "
        f"p99 {direct['p99_ms']:.3f} ms "
        f"(lowest of {len(out['direct_runs'])} runs, p50/p99: {runs})"
    )
    print(
        f"pinning:    stub and load generator on CPU {CLIENT_CPU}; gateways not pinned"
        if CLIENT_CPU is not None
        else "pinning:    none"
    )
    print(
        f"servings:   modelplane {args.servings:,}, LiteLLM {args.litellm_servings:,}; "
        f"RSS warm-up point {args.rss_warmup:,}; one worker each"
    )
    print()
    print(markdown_table(header, body))
    print()
    if "added_p50_ratio" in checks:
        for key, label in (("added_p50_ratio", "added p50 @1"), ("rps_c8_ratio", "throughput @8")):
            v = checks[key]
            print(f"target >=20x on {label}: {fmt(v, '.1f')}x {'PASS' if v and v >= 20 else 'FAIL'}")
    if "modelplane_no_growth" in checks:
        print(
            f"target no memory growth (modelplane): {'PASS' if checks['modelplane_no_growth'] else 'FAIL'} "
            f"({mp['rss_growth_mb']:+.1f} MB over {mp['servings'] - mp['rss_warmup_servings']:,} servings)"
        )
    print(f"results:    {args.out}   (total {out['elapsed_s']:.0f} s)")
    if busy_start > 0.2:
        print(f"WARNING:    {busy_start:.0%} of the CPUs were busy before the start: something else was running")
    for n, share in noisy.items():
        print(f"WARNING:    other processes used {share:.0%} of the CPUs during the {n} run: its figures are off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
