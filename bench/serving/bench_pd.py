"""Serving with and without prefill/decode disaggregation at the same total ranks (issue 15): each
layout runs behind `epserve router`, and the same requests (random token prompts and output
lengths, streamed through /v1/completions) are sent at each concurrency. Layouts alternate
(A B A B ...) and each (layout, repeat) holds the benchmark lock only while it runs; every process
started here runs in its own session and is killed with its ranks at the end (or on a signal).

    python3 -m venv build/bench-venv && build/bench-venv/bin/pip install aiohttp
    build/bench-venv/bin/python bench/serving/bench_pd.py --repeats 3 --out /tmp/pd.json

Layouts (the default model, models/default):
  plain-ep4         one server, --tp 4 --ep-size 4, behind `epserve router --worker-urls`
  plain-ep4-dpattn  one server, --tp 4 --ep-size 4 --enable-dp-attention --dp-size 4, same router
  pd-ep2-ep2        prefill --tp 2 --ep-size 2 and decode --tp 2 --ep-size 2, behind
                    `epserve router --pd-disaggregation` (each server sees every core)
  pd-ep2-ep2-split  the same with the cores split: the prefill server (taskset) on the first
                    half of the cores, the decode server on the second half
"""

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import pathlib
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import aiohttp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_serving import one_request, percentile  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
EP2 = ["--tp", "2", "--ep-size", "2"]
EP4 = ["--tp", "4", "--ep-size", "4"]
LAYOUTS = ("plain-ep4", "plain-ep4-dpattn", "pd-ep2-ep2", "pd-ep2-ep2-split")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """The servers and the router of one layout; stop() ends each process group (the ranks too)."""

    def __init__(self, binary, log_dir):
        self.binary, self.log_dir, self.procs = binary, log_dir, []

    def start(self, name, args, cores=None):
        log = open(self.log_dir / f"{name}.log", "w")
        prefix = ["taskset", "-c", ",".join(map(str, cores))] if cores else []
        proc = subprocess.Popen(prefix + [self.binary] + args, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def wait_healthy(self, base, what, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise SystemExit(f"{name} exited ({proc.returncode}):\n{tail}")
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(base + "/health", timeout=2).status == 200:
                    return
            time.sleep(0.2)
        raise SystemExit(f"{what} did not become healthy")

    def stop(self):
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Ranks outlive a killed parent only in its process group: make sure none is left.
        for _, proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs = []


def launch(layout, procs, model):
    """Starts `layout`; returns the router's base URL."""
    serve = ["serve", "--model-path", model, "--log-level", "warning"]
    router_port = free_port()
    router = ["router", "--port", str(router_port), "--policy", "round_robin",
              "--worker-startup-check-interval", "1", "--log-level", "warning"]
    if layout.startswith("plain"):
        port = free_port()
        extra = EP4 + (["--enable-dp-attention", "--dp-size", "4"] if layout.endswith("dpattn")
                       else [])
        procs.start("server", serve + ["--port", str(port)] + extra)
        procs.wait_healthy(f"http://127.0.0.1:{port}", "the server")
        router += ["--worker-urls", f"http://127.0.0.1:{port}"]
    else:
        pport, dport, bport = free_port(), free_port(), free_port()
        cores = sorted(os.sched_getaffinity(0))
        half = max(1, len(cores) // 2)
        split = layout.endswith("split")
        procs.start("prefill", serve + ["--port", str(pport), "--disaggregation-mode", "prefill",
                                        "--disaggregation-bootstrap-port", str(bport)] + EP2,
                    cores[:half] if split else None)
        procs.start("decode", serve + ["--port", str(dport), "--disaggregation-mode", "decode"] + EP2,
                    cores[half:] if split else None)
        procs.wait_healthy(f"http://127.0.0.1:{pport}", "the prefill server")
        procs.wait_healthy(f"http://127.0.0.1:{dport}", "the decode server")
        router += ["--pd-disaggregation", "--prefill", f"http://127.0.0.1:{pport}", str(bport),
                   "--decode", f"http://127.0.0.1:{dport}"]
    procs.start("router", router)
    base = f"http://127.0.0.1:{router_port}"
    procs.wait_healthy(base, "the router")
    return base


def requests_for(args, concurrency, seed):
    """Prompts of token ids and output lengths, each uniform in [ratio x L, L] (SGLang's random
    dataset with --random-range-ratio)."""
    rng = random.Random(seed)
    n = max(args.min_prompts, args.prompts_per_slot * concurrency)
    out = []
    for _ in range(n):
        in_len = rng.randint(int(args.input_len * args.range_ratio), args.input_len)
        out_len = rng.randint(int(args.output_len * args.range_ratio), args.output_len)
        out.append(([rng.randint(100, args.vocab_size - 100) for _ in range(in_len)], out_len))
    return out


async def run_level(base, reqs, concurrency):
    results = [{"itl": []} for _ in reqs]
    gate = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        async def gated(prompt, out_len, result):
            async with gate:
                await one_request(session, base, prompt, out_len, result)

        start = time.perf_counter()
        await asyncio.gather(*(gated(p, n, r) for (p, n), r in zip(reqs, results)))
        duration = time.perf_counter() - start
    return results, duration


def summarize(results, duration):
    done = [r for r in results if "error" not in r and "completion_tokens" in r]
    ttft = [r["ttft"] * 1e3 for r in done if "ttft" in r]
    itl = [x * 1e3 for r in done for x in r["itl"]]
    inp = sum(r["prompt_tokens"] for r in done)
    outp = sum(r["completion_tokens"] for r in done)
    return {
        "completed": len(done), "failed": len(results) - len(done),
        "errors": [r["error"] for r in results if "error" in r][:3],
        "duration_s": duration,
        "output_tok_s": outp / duration, "total_tok_s": (inp + outp) / duration,
        "ttft_mean_ms": statistics.fmean(ttft) if ttft else float("nan"),
        "ttft_p50_ms": percentile(ttft, 0.5), "ttft_p99_ms": percentile(ttft, 0.99),
        "itl_mean_ms": statistics.fmean(itl) if itl else float("nan"),
        "itl_p50_ms": percentile(itl, 0.5), "itl_p99_ms": percentile(itl, 0.99),
    }


@contextlib.contextmanager
def bench_lock(path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_layout(args, layout, repeat, log_dir):
    procs = Processes(args.binary, log_dir)
    rows = []
    with bench_lock(args.lock):
        load_before = os.getloadavg()[0]
        try:
            base = launch(layout, procs, args.model_path)
            warm = requests_for(args, 1, seed=999)[:2]
            asyncio.run(run_level(base, warm, 1))
            for c in args.concurrency:
                reqs = requests_for(args, c, seed=args.seed + c)
                results, duration = asyncio.run(run_level(base, reqs, c))
                row = {"layout": layout, "repeat": repeat, "concurrency": c,
                       **summarize(results, duration)}
                rows.append(row)
                print(f"{layout:17s} rep {repeat} conc {c:2d}: out {row['output_tok_s']:8.1f} "
                      f"tok/s, total {row['total_tok_s']:8.1f} tok/s, TTFT mean/p50/p99 "
                      f"{row['ttft_mean_ms']:.1f}/{row['ttft_p50_ms']:.1f}/{row['ttft_p99_ms']:.1f}"
                      f" ms, ITL mean/p50/p99 {row['itl_mean_ms']:.2f}/{row['itl_p50_ms']:.2f}/"
                      f"{row['itl_p99_ms']:.2f} ms, failed {row['failed']}", flush=True)
        finally:
            procs.stop()
        load_after = os.getloadavg()[0]
    for row in rows:
        row["load_before"], row["load_after"] = load_before, load_after
    return rows


METRICS = [("output_tok_s", "output tok/s", "{:.0f}"), ("total_tok_s", "total tok/s", "{:.0f}"),
           ("ttft_mean_ms", "TTFT mean ms", "{:.1f}"), ("ttft_p50_ms", "TTFT p50 ms", "{:.1f}"),
           ("ttft_p99_ms", "TTFT p99 ms", "{:.1f}"), ("itl_mean_ms", "ITL mean ms", "{:.2f}"),
           ("itl_p50_ms", "ITL p50 ms", "{:.2f}"), ("itl_p99_ms", "ITL p99 ms", "{:.2f}")]


def table(rows):
    """Markdown: per concurrency and measure, each layout's median over the repeats with its
    spread ((max - min) / median), and each layout's ratio to the first layout's median."""
    layouts = list(dict.fromkeys(r["layout"] for r in rows))
    lines = ["| conc | measure | " + " | ".join(layouts) + " | " +
             " | ".join(f"{l} / {layouts[0]}" for l in layouts[1:]) + " |",
             "|---" * (2 + 2 * len(layouts) - 1) + "|"]
    for c in sorted({r["concurrency"] for r in rows}):
        for key, name, fmt in METRICS:
            meds, cells = [], []
            for l in layouts:
                vals = [r[key] for r in rows if r["layout"] == l and r["concurrency"] == c]
                med = statistics.median(vals) if vals else float("nan")
                spread = (max(vals) - min(vals)) / med * 100 if vals and med else float("nan")
                meds.append(med)
                cells.append(f"{fmt.format(med)} (±{spread:.0f}%)")
            ratios = [f"{m / meds[0]:.2f}" if meds[0] else "-" for m in meds[1:]]
            lines.append(f"| {c} | {name} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    loads = [r["load_before"] for r in rows] + [r["load_after"] for r in rows]
    lines.append(f"\nload average (1 min) before/after each layout run: {min(loads):.1f}-{max(loads):.1f}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=str(REPO / "build" / "src" / "epserve"))
    p.add_argument("--model-path", default=str(REPO / "models" / "default"))
    p.add_argument("--layouts", nargs="+", default=["plain-ep4", "pd-ep2-ep2"], choices=LAYOUTS)
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--range-ratio", type=float, default=0.5)
    p.add_argument("--prompts-per-slot", type=int, default=3,
                   help="requests per level = this x concurrency (at least --min-prompts)")
    p.add_argument("--min-prompts", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lock", default="/tmp/epserve-bench.lock")
    p.add_argument("--log-dir", default="/tmp/epserve-bench-pd")
    p.add_argument("--out", help="write every row as JSON here")
    p.add_argument("--table-from", help="print the table of an earlier --out file and stop")
    args = p.parse_args()
    if args.table_from:
        print(table(json.loads(pathlib.Path(args.table_from).read_text())))
        return 0
    config = json.loads((pathlib.Path(args.model_path) / "config.json").read_text())
    args.vocab_size = config["vocab_size"]
    log_dir = pathlib.Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)

    # A signal ends the run through the finally blocks (which stop every process).
    def interrupted(sig, _):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, interrupted)

    rows = []
    for repeat in range(args.repeats):
        order = args.layouts if repeat % 2 == 0 else list(reversed(args.layouts))
        for layout in order:
            rows += run_layout(args, layout, repeat, log_dir)
            if args.out:
                pathlib.Path(args.out).write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
