"""Eval runner benchmark: `modelplane eval run` vs promptfoo on the same 500 cases, same stub, same concurrency.

What it does (everything on 127.0.0.1):

1. starts ``bench/stub_upstream.py`` (``--stats``: it counts the chat requests it answers),
   pinned to the last CPU like the other benchmarks;
2. writes one deterministic suite of ``--cases`` (500) cases twice: as a modelplane suite
   and as a promptfoo config. Case i asks "Question i: tell me about <topic>."; its
   assertions are string checks (contains, icontains, regex, starts-with, not-contains)
   against the stub's fixed reply, no judge; every 10th case also asks for "refund", which
   the reply lacks, so both tools must report exactly 450 of 500 passing — the script
   checks that, and that a cold run reaches the stub once per case and a warm one never;
3. per round (``--rounds``, 3), for each tool: a run with the cache off (``--no-cache``),
   a cold run (empty cache directory, the cache on), then a warm run (same cache). The
   modelplane target is the feature ``bench`` through the full gateway pipeline in-process
   (the headline: what users run), and, in extra rows, the model ``bench-model`` directly;
4. measures each run as a whole process from spawn to exit (interpreter start-up
   included): wall time, CPU time (user + system, from wait4: the figure other load on
   the machine distorts least), and peak memory = the sum over the process tree of each
   process's peak RSS (VmHWM from /proc, sampled every 25 ms; the main process's exact
   ru_maxrss from wait4) — the same method for both tools;
5. prints one table (medians over the rounds) with the ratios, and writes everything
   to ``bench/results/evals.json``.

promptfoo is installed by this script from npm into ``bench/.promptfoo/`` (only when it
is not there yet), pinned to ``PROMPTFOO_VERSION``, and run with telemetry, update checks
and sharing off, its config directory (results database) and cache in the temp dir.
Node.js 20.20+ is needed; without ``node``/``npm`` the script says how to install them.

    python bench/evals.py                    # full run (~2 min)
    python bench/evals.py --rounds 1         # quick look
    python bench/evals.py --only promptfoo   # or --only modelplane
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_overhead import (
    BENCH_DIR,
    HOST,
    REPO_DIR,
    STUB,
    BenchError,
    Procs,
    free_port,
    log,
    machine_info,
    markdown_table,
    process_tree,
    tail,
    wait_line,
)

RESULTS = BENCH_DIR / "results" / "evals.json"
PROMPTFOO_DIR = BENCH_DIR / ".promptfoo"
# The last promptfoo release that runs on Node 20 (0.122.0 and later need Node >= 22.22).
PROMPTFOO_VERSION = "0.121.20"
REPLY = "Hello! This is a fixed reply from the benchmark stub."  # what bench/stub_upstream.py answers
TOPICS = ("refunds", "shipping", "passwords", "invoices", "upgrades", "outages", "privacy", "billing")
MODES = ("no-cache", "cold", "warm")


# --------------------------------------------------------------------------
# the suite, written for both tools


def cases(n: int) -> list[dict[str, Any]]:
    """n deterministic cases in promptfoo's test shape (modelplane's suite format reads the same)."""
    checks = [
        {"type": "contains", "value": "fixed reply"},
        {"type": "icontains", "value": "HELLO"},
        {"type": "regex", "value": r"^Hello!.*stub\.$"},
        {"type": "starts-with", "value": "Hello!"},
        {"type": "not-contains", "value": "error"},
    ]
    out = []
    for i in range(n):
        asserts = [checks[(i + k) % len(checks)] for k in range(3)]
        if i % 10 == 9:
            asserts = [*asserts, {"type": "icontains", "value": "refund"}]  # fails: the reply has no "refund"
        out.append({"description": f"case {i}", "vars": {"i": i, "topic": TOPICS[i % len(TOPICS)]}, "assert": asserts})
    return out


PROMPT = "Question {{i}}: tell me about {{topic}}."


def expected_passes(n: int) -> int:
    return n - n // 10


def write_modelplane(tmp: Path, stub_port: int, n: int) -> dict[str, Path]:
    config = tmp / "modelplane.yaml"
    config.write_text(f"""\
providers:
  stub: {{kind: openai, base_url: "http://{HOST}:{stub_port}/v1", api_key: sk-stub}}
models:
  bench-model: {{provider: stub, name: bench-model,
                 price: {{input: 0.15, cached_input: 0.075, output: 0.60}}}}
features:
  bench: {{route: {{strategy: single, models: [bench-model]}}}}
tiers:
  default: {{revenue_per_serving: 0}}
ledger: {{url: "sqlite:///{tmp}/ledger.db"}}
""")
    suites = {}
    for target, spec in (("feature", {"feature": "bench"}), ("model", {"model": "bench-model"})):
        path = tmp / f"suite-{target}.yaml"  # JSON is YAML: both loaders read it
        path.write_text(
            json.dumps({"description": f"bench {target}", "target": spec, "prompts": [PROMPT], "tests": cases(n)})
        )
        suites[target] = path
    return {"config": config, **suites}


def write_promptfoo(tmp: Path, stub_port: int, n: int) -> Path:
    path = tmp / "promptfooconfig.yaml"  # JSON written, which is YAML too
    path.write_text(
        json.dumps(
            {
                "description": "bench",
                "prompts": [PROMPT],
                "providers": [
                    {
                        "id": "openai:chat:bench-model",
                        "config": {"apiBaseUrl": f"http://{HOST}:{stub_port}/v1", "apiKey": "sk-stub"},
                    }
                ],
                "tests": cases(n),
            }
        )
    )
    return path


# --------------------------------------------------------------------------
# measuring one process tree


class Peak:
    """Samples the peak RSS (VmHWM) of every process in a tree until stopped."""

    def __init__(self, pid: int, interval: float = 0.025) -> None:
        self.pid, self.interval = pid, interval
        self.hwm_kb: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pids = [self.pid]
        last_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_scan > 0.2:  # a full /proc scan costs ~5 ms: only every 200 ms
                pids, last_scan = process_tree(self.pid), now
            for p in pids:
                kb = _hwm_kb(p)
                if kb:
                    self.hwm_kb[p] = max(self.hwm_kb.get(p, 0), kb)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float) -> dict[str, Any]:
    """Run `cmd` to completion; wall time, exit code and peak memory of its process tree."""
    with open(log_path, "wb") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env)
        peak = Peak(proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        peak.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    peaks = dict(peak.hwm_kb)
    peaks[proc.pid] = max(peaks.get(proc.pid, 0), usage.ru_maxrss)  # ru_maxrss: KiB on Linux
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),  # the tree's (waited-for) processes
        "exit_code": proc.returncode,
        "peak_rss_mb": round(sum(peaks.values()) * 1024 / 1e6, 1),
        "processes": len(peaks),
        "main_maxrss_mb": round(usage.ru_maxrss * 1024 / 1e6, 1),
        "timed_out": wall >= timeout,
    }


def stub_chats(port: int) -> int:
    with urllib.request.urlopen(f"http://{HOST}:{port}/__stats", timeout=5) as r:
        return int(json.loads(r.read())["chat"])


# --------------------------------------------------------------------------
# the two tools


def modelplane_bin(args: argparse.Namespace) -> str:
    if args.modelplane_bin:
        return str(args.modelplane_bin)
    cand = Path(sys.executable).parent / "modelplane"
    found = str(cand) if cand.exists() else shutil.which("modelplane")
    if not found:
        raise BenchError(f"no `modelplane` next to {sys.executable}: pip install -e {REPO_DIR}, or --only promptfoo")
    return found


def modelplane_run(
    args: argparse.Namespace, files: dict[str, Path], target: str, mode: str, home: Path, run_id: str
) -> tuple[list[str], dict[str, str], Path]:
    runs = home / "runs"
    cmd = [
        modelplane_bin(args),
        "eval",
        "run",
        str(files[target]),
        "--config",
        str(files["config"]),
        "--concurrency",
        str(args.concurrency),
        "--runs-dir",
        str(runs),
        "--run-id",
        run_id,
    ]
    if mode == "no-cache":
        cmd.append("--no-cache")
    env = {**os.environ, "MODELPLANE_HOME": str(home), "NO_COLOR": "1"}
    return cmd, env, runs / f"{run_id}.json"


def modelplane_passes(path: Path) -> tuple[int, int]:
    run = json.loads(path.read_bytes())
    return sum(bool(c["passed"]) for c in run["cases"]), len(run["cases"])


def ensure_promptfoo(version: str) -> Path:
    exe = PROMPTFOO_DIR / "node_modules" / ".bin" / "promptfoo"
    installed = PROMPTFOO_DIR / "node_modules" / "promptfoo" / "package.json"
    if exe.exists() and installed.exists() and json.loads(installed.read_text()).get("version") == version:
        return exe
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise BenchError(
            "promptfoo needs Node.js 20.20+ and npm, and this machine has no `node`/`npm` on PATH. Install them "
            "(Debian/Ubuntu: `sudo apt-get install -y nodejs npm`, or from https://nodejs.org) and rerun, "
            "or pass --only modelplane"
        )
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    log(f"promptfoo: installing promptfoo@{version} from npm into {PROMPTFOO_DIR} (node {node_version}, ~1-3 min)")
    PROMPTFOO_DIR.mkdir(parents=True, exist_ok=True)
    pkg = PROMPTFOO_DIR / "package.json"
    if not pkg.exists():
        pkg.write_text('{"name": "bench-promptfoo", "private": true}\n')
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"promptfoo@{version}"],
        cwd=PROMPTFOO_DIR,
        check=True,
        timeout=1200,
    )
    if not exe.exists():
        raise BenchError(f"npm install finished but {exe} is missing")
    return exe


def promptfoo_run(
    args: argparse.Namespace, exe: Path, config: Path, mode: str, state: Path, cache: Path, out: Path
) -> tuple[list[str], dict[str, str]]:
    cmd = [
        str(exe),
        "eval",
        "-c",
        str(config),
        "--max-concurrency",
        str(args.concurrency),
        "--no-table",
        "--no-progress-bar",
        "-o",
        str(out),
    ]
    if mode == "no-cache":
        cmd.append("--no-cache")
    env = {
        **os.environ,
        "PROMPTFOO_CONFIG_DIR": str(state),
        "PROMPTFOO_CACHE_PATH": str(cache),
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_DISABLE_SHARING": "1",
        "PROMPTFOO_DISABLE_REMOTE_GENERATION": "1",
        # its debug/error log files: 0.121.20 sometimes crashes at exit writing them ("write after end")
        "PROMPTFOO_DISABLE_DEBUG_LOG": "1",
        "PROMPTFOO_DISABLE_ERROR_LOG": "1",
        "PROMPTFOO_SELF_HOSTED": "1",
        "OPENAI_API_KEY": "sk-stub",
        "NO_COLOR": "1",
    }
    return cmd, env


def promptfoo_passes(path: Path) -> tuple[int, int]:
    stats = json.loads(path.read_bytes())["results"]["stats"]
    return int(stats["successes"]), int(stats["successes"]) + int(stats["failures"]) + int(stats.get("errors", 0))


# --------------------------------------------------------------------------
# the benchmark


def one(
    name: str, cmd: list[str], env: dict[str, str], tmp: Path, args: argparse.Namespace, stub_port: int
) -> dict[str, Any]:
    log_path = tmp / f"{name}.log"
    before = stub_chats(stub_port)
    r = measure(cmd, env, log_path, args.timeout)
    r["upstream_requests"] = stub_chats(stub_port) - before
    r["command"] = shlex.join(cmd)
    if r["timed_out"]:
        raise BenchError(f"{name} timed out after {args.timeout} s\n--- {log_path} ---\n{tail(log_path)}")
    log(
        f"{name}: {r['wall_s']:.2f} s (CPU {r['cpu_s']:.2f} s), peak {r['peak_rss_mb']:.0f} MB, "
        f"{r['upstream_requests']} upstream requests, exit {r['exit_code']}"
    )
    return r


def check(name: str, r: dict[str, Any], mode: str, passes: tuple[int, int], n: int, log_path: Path) -> None:
    """Both tools must do the same work: every case asked (cold) or none (warm), 90% pass."""
    r["passed"], r["cases"] = passes
    want_requests = 0 if mode == "warm" else n
    problems = []
    if passes != (expected_passes(n), n):
        problems.append(f"{passes[0]} of {passes[1]} cases passed, expected {expected_passes(n)} of {n}")
    if r["upstream_requests"] != want_requests:
        problems.append(f"{r['upstream_requests']} upstream requests, expected {want_requests}")
    if problems:
        raise BenchError(f"{name}: " + "; ".join(problems) + f"\n--- {log_path} ---\n{tail(log_path)}")


def bench_modelplane(args: argparse.Namespace, tmp: Path, stub_port: int, rnd: int) -> dict[str, dict[str, Any]]:
    files = write_modelplane(tmp, stub_port, args.cases)
    out: dict[str, dict[str, Any]] = {}
    for target in args.targets:
        home = tmp / f"mp-home-{target}-{rnd}"  # a fresh MODELPLANE_HOME: an empty eval cache
        for mode in MODES:
            name = f"modelplane-{target}-{mode}-r{rnd}"
            cmd, env, run_file = modelplane_run(args, files, target, mode, home, name)
            r = one(name, cmd, env, tmp, args, stub_port)
            if r["exit_code"] != 0:
                raise BenchError(f"{name}: exit code {r['exit_code']}\n{tail(tmp / f'{name}.log')}")
            check(name, r, mode, modelplane_passes(run_file), args.cases, tmp / f"{name}.log")
            out[f"modelplane:{target}:{mode}"] = r
    return out


def bench_promptfoo(
    args: argparse.Namespace, tmp: Path, stub_port: int, rnd: int, exe: Path
) -> dict[str, dict[str, Any]]:
    config = write_promptfoo(tmp, stub_port, args.cases)
    state = tmp / "pf-state"  # its results database: kept across rounds, like modelplane's ledger
    cache = tmp / f"pf-cache-{rnd}"
    out: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        name = f"promptfoo-{mode}-r{rnd}"
        result = tmp / f"{name}.json"
        cmd, env = promptfoo_run(args, exe, config, mode, state, cache, result)
        r = one(name, cmd, env, tmp, args, stub_port)
        if r["exit_code"] not in (0, 100):  # 100: "some tests failed" — 50 fail on purpose
            raise BenchError(f"{name}: exit code {r['exit_code']}\n{tail(tmp / f'{name}.log')}")
        check(name, r, mode, promptfoo_passes(result), args.cases, tmp / f"{name}.log")
        out[f"promptfoo:{mode}"] = r
    return out


def medians(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    keys = sorted({k for r in rounds for k in r})
    return {
        k: {
            m: statistics.median(r[k][m] for r in rounds if k in r)
            for m in ("wall_s", "cpu_s", "peak_rss_mb", "main_maxrss_mb")
        }
        for k in keys
    }


def build_table(med: dict[str, dict[str, float]], targets: list[str]) -> str:
    pf = {mode: med.get(f"promptfoo:{mode}") for mode in MODES}
    header = ["", *[f"modelplane ({t})" for t in targets], "promptfoo", *[f"ratio ({t})" for t in targets]]
    body = []
    for mode in MODES:
        for metric, label, unit in (
            ("wall_s", "wall time", "s"),
            ("cpu_s", "CPU time", "s"),
            ("peak_rss_mb", "peak memory", "MB"),
        ):
            row = [f"{label}, {mode} ({unit})"]
            mp = [med.get(f"modelplane:{t}:{mode}", {}).get(metric) for t in targets]
            ref = (pf[mode] or {}).get(metric)
            row += [_fmt(v, metric) for v in mp]
            row.append(_fmt(ref, metric))
            row += [f"{ref / v:.1f}x" if v and ref else "-" for v in mp]
            body.append(row)
    return markdown_table(header, body)


def _fmt(v: float | None, metric: str) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if metric == "peak_rss_mb" else f"{v:.2f}"


def start_stub(procs: Procs, tmp: Path, cpu: int) -> int:
    port = free_port()
    cmd = [sys.executable, "-u", str(STUB), "--host", HOST, "--port", str(port), "--stats"]
    if cpu >= 0:
        cmd += ["--cpu", str(cpu)]
    log_path = tmp / "stub.log"
    p = procs.start("stub", cmd, log_path)
    wait_line(p, log_path, "READY", 30, "stub")
    return port


def tool_versions(args: argparse.Namespace, exe: Path | None) -> dict[str, str]:
    out = {}
    if "modelplane" in args.tools:
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            out["modelplane"] = version("modelplane")
        rev = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        out["modelplane"] = f"{out.get('modelplane', 'unknown')} (git {rev.stdout.strip() or '?'})"
    if exe is not None:
        out["promptfoo"] = PROMPTFOO_VERSION
        out["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="each measurement is the median over the rounds")
    ap.add_argument("--only", choices=("modelplane", "promptfoo"), help="run one tool only")
    ap.add_argument("--targets", default="feature,model", help="modelplane targets: feature (pipeline), model (direct)")
    ap.add_argument("--modelplane-bin", help="modelplane executable (default: the one next to this Python)")
    ap.add_argument("--promptfoo-version", default=PROMPTFOO_VERSION)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take")
    ap.add_argument("--client-cpu", type=int, default=(os.cpu_count() or 1) - 1, help="pin the stub here; -1: no")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (suites, configs, logs)")
    args = ap.parse_args(argv)
    args.tools = [args.only] if args.only else ["modelplane", "promptfoo"]
    args.targets = [t for t in args.targets.split(",") if t]
    exe = ensure_promptfoo(args.promptfoo_version) if "promptfoo" in args.tools else None
    tmp = Path(tempfile.mkdtemp(prefix="mp-bench-evals-"))
    procs = Procs()
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        stub_port = start_stub(procs, tmp, args.client_cpu)
        for rnd in range(args.rounds):
            log(f"round {rnd + 1} of {args.rounds}")
            runs: dict[str, dict[str, Any]] = {}
            if "modelplane" in args.tools:
                runs |= bench_modelplane(args, tmp, stub_port, rnd)
            if exe is not None:
                runs |= bench_promptfoo(args, tmp, stub_port, rnd, exe)
            rounds.append(runs)
    except BenchError as exc:
        log(f"FAILED: {exc}")
        log(f"temp dir kept: {tmp}")
        procs.stop_all()
        return 1
    finally:
        procs.stop_all()
    med = medians(rounds)
    table = build_table(med, args.targets if "modelplane" in args.tools else [])
    result = {
        "benchmark": "evals",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": tool_versions(args, exe),
        "cases": args.cases,
        "concurrency": args.concurrency,
        "rounds": rounds,
        "median": med,
        "table": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table)
    log(f"results: {args.out}")
    if args.keep_tmp:
        log(f"temp dir: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
