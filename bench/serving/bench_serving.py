"""Serving benchmark in the style of SGLang's bench_serving: random prompts of a given input and
output length sent to `epserve serve` at a request rate (Poisson) or a fixed concurrency, streamed
through the OpenAI completions API with aiohttp. Prints input and output tokens/s, TTFT and
inter-token latency (p50/p99), then the limit measured in the same run: the engine without the
server (`epserve bench-one-batch` on a batch of the same shape), and the ratio.

SGLang's own bench_serving needs `pip install sglang` (torch and CUDA wheels), which a CPU machine
without a GPU cannot use; this script measures the same quantities with aiohttp.

    python3 -m venv build/bench-venv && build/bench-venv/bin/pip install aiohttp
    build/bench-venv/bin/python bench/serving/bench_serving.py --model-path DIR \
        --num-prompts 256 --input-len 128 --output-len 64 --max-concurrency 32
"""

import argparse
import asyncio
import json
import os
import pathlib
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

import aiohttp

REPO = pathlib.Path(__file__).resolve().parents[2]


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def one_request(session, url, prompt, output_len, result):
    body = {"model": "bench", "prompt": prompt, "max_tokens": output_len, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    last = None
    async with session.post(url + "/v1/completions", json=body) as r:
        if r.status != 200:
            result["error"] = f"HTTP {r.status}: {(await r.text())[:200]}"
            return
        async for raw in r.content:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            now = time.perf_counter()
            if event.get("choices") and event["choices"][0].get("text"):
                if last is None:
                    result["ttft"] = now - start
                else:
                    result["itl"].append(now - last)
                last = now
            if event.get("usage"):
                result["prompt_tokens"] = event["usage"]["prompt_tokens"]
                result["completion_tokens"] = event["usage"]["completion_tokens"]
    result["latency"] = time.perf_counter() - start


async def scheduler_stats(url):
    """Per-group scheduler counters from /get_server_info: steps, forward and scheduling seconds."""
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/get_server_info") as r:
            info = await r.json()
    states = info.get("internal_states", [])
    return states if isinstance(states, list) else [states]


async def run_load(args, prompts):
    results = [{"itl": []} for _ in prompts]
    limit = asyncio.Semaphore(args.max_concurrency or len(prompts))
    rng = random.Random(args.seed)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        async def gated(prompt, result):
            async with limit:
                await one_request(session, args.base_url, prompt, args.output_len, result)

        tasks = []
        start = time.perf_counter()
        for prompt, result in zip(prompts, results):
            tasks.append(asyncio.create_task(gated(prompt, result)))
            if args.request_rate != float("inf"):
                await asyncio.sleep(rng.expovariate(args.request_rate))
        await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
    return results, duration


def random_prompts(args):
    # Token ids drawn from the middle of the vocabulary: exactly input_len tokens each.
    rng = random.Random(args.seed)
    return [[rng.randint(100, args.vocab_size - 100) for _ in range(args.input_len)]
            for _ in range(args.num_prompts)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_server(args):
    port = free_port()
    cmd = [args.binary, "serve", "--model-path", args.model_path, "--port", str(port),
           "--log-level", "warning"] + args.server_args.split()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300

    async def healthy():
        async with aiohttp.ClientSession() as s:
            while time.time() < deadline:
                if proc.poll() is not None:
                    raise SystemExit("epserve serve exited:\n" + proc.stderr.read())
                try:
                    async with s.get(base + "/health") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            raise SystemExit("epserve serve did not become healthy")

    asyncio.run(healthy())
    return proc, base


def engine_limit(args, batch):
    """Output tokens/s of the engine alone on one batch of the same shape (no HTTP, no scheduler
    queueing): the ceiling the server's output rate is compared with."""
    cmd = [args.binary, "bench-one-batch", "--model-path", args.model_path, "--batch-size", str(batch),
           "--input-len", str(args.input_len), "--output-len", str(args.output_len)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    prefill = float(re.search(r"prefill: ([0-9.]+) s", out).group(1))
    decode = float(re.search(r"decode: ([0-9.]+) s", out).group(1))
    return batch * args.output_len / (prefill + decode), out.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-path", required=True, help="model directory (launched here unless --base-url)")
    p.add_argument("--base-url", help="an already running server; default: launch epserve serve")
    p.add_argument("--binary", default=str(REPO / "build" / "src" / "epserve"))
    p.add_argument("--server-args", default="", help="extra flags for epserve serve")
    p.add_argument("--num-prompts", type=int, default=128)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--request-rate", type=float, default=float("inf"), help="requests/s (Poisson); inf: all at once")
    p.add_argument("--max-concurrency", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-limit", action="store_true", help="skip the engine-only measurement")
    args = p.parse_args()

    config = json.loads((pathlib.Path(args.model_path) / "config.json").read_text())
    args.vocab_size = config["vocab_size"]
    prompts = random_prompts(args)
    proc = None
    if args.base_url is None:
        proc, args.base_url = launch_server(args)
    try:
        before = asyncio.run(scheduler_stats(args.base_url))
        results, duration = asyncio.run(run_load(args, prompts))
        after = asyncio.run(scheduler_stats(args.base_url))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    errors = [r["error"] for r in results if "error" in r]
    done = [r for r in results if "error" not in r and "completion_tokens" in r]
    input_tokens = sum(r["prompt_tokens"] for r in done)
    output_tokens = sum(r["completion_tokens"] for r in done)
    ttft = [r["ttft"] for r in done if "ttft" in r]
    itl = [x for r in done for x in r["itl"]]
    concurrency = args.max_concurrency or args.num_prompts
    print(f"requests: {len(done)} completed, {len(errors)} failed, in {duration:.2f} s "
          f"(input {args.input_len}, output {args.output_len}, rate {args.request_rate}, "
          f"max concurrency {concurrency})")
    for e in errors[:3]:
        print("  error:", e)
    print(f"input throughput:  {input_tokens / duration:10.1f} tok/s")
    print(f"output throughput: {output_tokens / duration:10.1f} tok/s")
    print(f"TTFT   p50 {percentile(ttft, 0.5) * 1e3:8.1f} ms   p99 {percentile(ttft, 0.99) * 1e3:8.1f} ms")
    print(f"ITL    p50 {percentile(itl, 0.5) * 1e3:8.2f} ms   p99 {percentile(itl, 0.99) * 1e3:8.2f} ms")
    print(f"E2E    p50 {percentile([r['latency'] for r in done], 0.5):8.3f} s")
    for group, (b, a) in enumerate(zip(before, after)):
        steps = a["steps"] - b["steps"]
        fwd = a["forward_seconds"] - b["forward_seconds"]
        sched = a["schedule_seconds"] - b["schedule_seconds"]
        if steps > 0:
            print(f"scheduler (group {group}): {steps} steps, forward {fwd / steps * 1e3:.2f} ms/step, "
                  f"scheduling {sched / steps * 1e3:.3f} ms/step = {sched / (fwd + sched) * 100:.2f} % of the step")
    if not args.no_limit:
        limit, _ = engine_limit(args, min(concurrency, args.num_prompts))
        print(f"limit: engine alone (bench-one-batch, batch {min(concurrency, args.num_prompts)}): "
              f"{limit:10.1f} output tok/s")
        print(f"ratio: server / engine = {output_tokens / duration / limit:.2f}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
