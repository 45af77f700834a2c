"""PD disaggregation's prefill-done -> decode-start latency under load, and the KV transfer's
bandwidth. Starts a prefill and a decode `epserve serve` (the README's layout by default: EP 2
on each side, DP attention on the decode side), then, at each concurrency level, sends requests
the way SGLang's router does (the same body, with bootstrap_host/port/room, to both servers at
once) and reads from the servers' /metrics, as the differences over the level:

- handoff p50/p99/mean: the decode server's epserve:pd_handoff_latency_seconds, per request from
  the prefill server's answer reaching the decode server (KV flushed into its pages, first token
  sampled) to the start of the request's first decode step. The quantiles are interpolated inside
  the histogram's buckets (bounds 1 ms x 1.62^i), as Prometheus' histogram_quantile does;
- transfer p50 and MB/s: the prefill server's sglang:kv_transfer_latency_ms (first token ready ->
  puts complete at the decode ranks) and KV bytes / transfer time summed over the level.

Standard library only:

    python3 bench/serving/bench_pd_handoff.py [--model-path models/default] [--concurrency 1,4,16]
"""

import argparse
import concurrent.futures
import json
import pathlib
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=300):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Server:
    def __init__(self, args, extra):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="pd-bench-", suffix=".log", delete=False)
        cmd = [args.binary, "serve", "--model-path", args.model_path, "--port", str(self.port),
               "--log-level", "warning"] + extra
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"epserve serve exited:\n{pathlib.Path(self.log.name).read_text()}")
            try:
                if http("GET", self.url + "/health", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("epserve serve did not become healthy")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def scrape(server):
    """{sample name with labels stripped (plus le for buckets): value}"""
    text = http("GET", server.url + "/metrics", timeout=30)[1]
    out = {}
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:]+)\{([^}]*)\} (\S+)$', line)
        if not m:
            continue
        le = re.search(r'le="([^"]+)"', m.group(2))
        out[m.group(1) + (f"[{le.group(1)}]" if le else "")] = float(m.group(3))
    return out


def quantile(before, after, name, q):
    """histogram_quantile over the buckets' differences between two scrapes."""
    buckets = []
    for key, value in after.items():
        if key.startswith(name + "_bucket["):
            le = key[len(name) + 8:-1]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets.append((bound, value - before.get(key, 0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 0)
        lower, below = bound, cumulative
    return lower


def delta(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-path", default=str(REPO / "models" / "default"))
    p.add_argument("--binary", default=str(REPO / "build" / "src" / "epserve"))
    p.add_argument("--prefill-args", default="--tp 2 --ep-size 2")
    p.add_argument("--decode-args", default="--tp 2 --ep-size 2 --enable-dp-attention --dp-size 2")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--requests-per-level", type=int, default=0,
                   help="requests at each level; default: max(16, 4 x concurrency)")
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=16)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    bootstrap = free_port()
    prefill = Server(args, ["--disaggregation-mode", "prefill", "--disaggregation-bootstrap-port",
                            str(bootstrap)] + args.prefill_args.split())
    decode = Server(args, ["--disaggregation-mode", "decode"] + args.decode_args.split())
    rng = random.Random(args.seed)
    try:
        prefill.wait()
        decode.wait()

        def one(prompt):
            body = {"input_ids": prompt, "bootstrap_host": "127.0.0.1", "bootstrap_port": bootstrap,
                    "bootstrap_room": rng.getrandbits(62),
                    "sampling_params": {"temperature": 0, "max_new_tokens": args.output_len,
                                        "ignore_eos": True}}
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                pf = pool.submit(http, "POST", prefill.url + "/generate", body)
                df = pool.submit(http, "POST", decode.url + "/generate", body)
                (ps, pt), (ds, dt) = pf.result(), df.result()
            if ps != 200 or ds != 200:
                raise RuntimeError(f"prefill {ps}: {pt[:200]}; decode {ds}: {dt[:200]}")

        def prompts(n):
            return [[rng.randint(100, args.vocab_size - 100) for _ in range(args.input_len)]
                    for _ in range(n)]

        for prompt in prompts(4):  # warm-up: connections, page faults
            one(prompt)
        print(f"model {args.model_path}; prefill: {args.prefill_args}; decode: {args.decode_args}; "
              f"{args.input_len} prompt tokens, {args.output_len} new tokens per request")
        print(f"{'conc':>4} {'reqs':>5} {'s':>6} {'handoff p50 ms':>15} {'p99 ms':>8} "
              f"{'mean ms':>8} {'transfer p50 ms':>16} {'KV MB/s':>8} {'KV MB/req':>9}")
        for level in [int(c) for c in args.concurrency.split(",")]:
            n = args.requests_per_level or max(16, 4 * level)
            work = prompts(n)
            d0, p0 = scrape(decode), scrape(prefill)
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(level) as pool:
                list(pool.map(one, work))
            seconds = time.perf_counter() - start
            d1, p1 = scrape(decode), scrape(prefill)
            h = "epserve:pd_handoff_latency_seconds"
            count = delta(d0, d1, h + "_count")
            mean = delta(d0, d1, h + "_sum") / count if count else float("nan")
            kv_bytes = delta(p0, p1, "sglang:kv_transfer_bytes_total")
            kv_ms = delta(p0, p1, "sglang:kv_transfer_latency_ms_sum")
            print(f"{level:>4} {n:>5} {seconds:>6.1f} "
                  f"{1e3 * quantile(d0, d1, h, 0.5):>15.2f} {1e3 * quantile(d0, d1, h, 0.99):>8.2f} "
                  f"{1e3 * mean:>8.2f} "
                  f"{quantile(p0, p1, 'sglang:kv_transfer_latency_ms', 0.5):>16.2f} "
                  f"{kv_bytes / 1e6 / (kv_ms / 1e3) if kv_ms > 0 else float('nan'):>8.0f} "
                  f"{kv_bytes / 1e6 / n:>9.2f}")
            assert count == n, f"{count} handoffs observed for {n} requests"
    finally:
        decode.stop()
        prefill.stop()


if __name__ == "__main__":
    main()
