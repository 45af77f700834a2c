"""epserve against llama.cpp on one machine: greedy agreement, then interleaved A/B runs of the
engine (batch-1 decode, prefill 512 and 2048, batch-16 decode) and of the servers (1/4/16
concurrent streamed requests), each engine on the same cores with the same thread count and BF16
weights. Prints every figure with its median and spread and the ratio epserve / llama.cpp, writes
a JSON file of all runs and a PNG plot of output throughput against concurrency.

Run through bench/peers/run.sh, which builds llama.cpp and converts the models first.
"""

import argparse
import asyncio
import json
import os
import pathlib
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

import aiohttp


def cpus(threads):
    return f"0-{threads - 1}"


def pinned(args, cmd):
    return ["taskset", "-c", cpus(args.threads)] + cmd


def llama_env(args):
    # llama.cpp's OpenMP threads spin at barriers (OMP_WAIT_POLICY=active by default); on a shared
    # machine whose cores other jobs also use, a descheduled spinner stalls every step (10-50x
    # slower measured on the 2-core VM at load 5). --llama-omp-wait-policy passive avoids that.
    env = dict(os.environ)
    if args.llama_omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.llama_omp_wait_policy
    return env


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return r.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- servers

class Server:
    def __init__(self, name, cmd, port, env=None):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(f"/tmp/peers_{name}_{port}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited; see {self.log.name}")
            try:
                import urllib.request
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.3)
        raise SystemExit(f"{name} did not become healthy")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_epserve(args, model):
    port = free_port()
    cmd = pinned(args, [args.epserve, "serve", "--model-path", model, "--port", str(port),
                        "--log-level", "warning"] + args.epserve_server_args.split())
    return Server("epserve", cmd, port)


def start_llama(args, gguf):
    port = free_port()
    ctx = args.max_concurrency_top * (args.input_len + args.output_len + 64)
    cmd = pinned(args, [str(args.llama_bin / "llama-server"), "-m", gguf, "--port", str(port),
                        "-t", str(args.threads), "-tb", str(args.threads), "-np",
                        str(args.max_concurrency_top), "-c", str(max(ctx, 4096)), "--no-webui",
                        # one HTTP thread per streamed request (the default follows the core
                        # count, which on 2 cores serializes concurrent streams)
                        "--threads-http", str(args.max_concurrency_top + 4)])
    return Server("llama", cmd, port, env=llama_env(args))


async def post_json(url, body):
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body) as r:
            text = await r.text()
            if r.status != 200:
                raise SystemExit(f"{url}: HTTP {r.status}: {text[:500]}")
            return json.loads(text)


# Without ignore_eos: llama-server's ignore_eos also bans the end-of-generation tokens (a -inf
# logit bias) while SGLang's and epserve's only keep generating, so greedy runs would part at the
# first position where EOS is the argmax. Both stop at EOS; a trailing EOS is not compared.
def greedy_epserve(server, ids, n, eos):
    body = {"input_ids": ids, "sampling_params": {"max_new_tokens": n, "temperature": 0}}
    out = asyncio.run(post_json(server.url + "/generate", body))["output_ids"]
    return out[:-1] if out and out[-1] in eos else out


def greedy_llama(server, ids, n, eos):
    body = {"prompt": ids, "n_predict": n, "temperature": 0, "return_tokens": True,
            "cache_prompt": False}
    out = asyncio.run(post_json(server.url + "/completion", body))["tokens"]
    return out[:-1] if out and out[-1] in eos else out


def prompts_for(seed, count, length, vocab):
    import random
    rng = random.Random(seed)
    return [[rng.randint(100, vocab - 100) for _ in range(length)] for _ in range(count)]


async def one_request(session, url, prompt, output_len, result):
    body = {"model": "peers", "prompt": prompt, "max_tokens": output_len, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    last, chunks = None, 0
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
                chunks += 1
                if last is None:
                    result["ttft"] = now - start
                else:
                    result["itl"].append(now - last)
                last = now
            if event.get("usage"):
                result["completion_tokens"] = event["usage"]["completion_tokens"]
    result.setdefault("completion_tokens", chunks)
    result["latency"] = time.perf_counter() - start


async def load(url, prompts, concurrency, output_len):
    results = [{"itl": []} for _ in prompts]
    limit = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
        async def gated(p, res):
            async with limit:
                await one_request(session, url, p, output_len, res)
        start = time.perf_counter()
        await asyncio.gather(*(gated(p, r) for p, r in zip(prompts, results)))
        duration = time.perf_counter() - start
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise SystemExit(f"{url}: {len(errors)} requests failed: {errors[0]}")
    if any("ttft" not in r for r in results):
        raise SystemExit(f"{url}: a request streamed no text (its tokens have none)")
    ttft = [r["ttft"] for r in results]
    itl = [x for r in results for x in r["itl"]]
    return {"output_tok_s": sum(r["completion_tokens"] for r in results) / duration,
            "ttft_p50_ms": statistics.median(ttft) * 1e3,
            "ttft_mean_ms": statistics.fmean(ttft) * 1e3,
            "itl_p50_ms": statistics.median(itl) * 1e3 if itl else float("nan")}


# ---------------------------------------------------------------------------- engine runs

def epserve_one_batch(args, model, batch, input_len, output_len):
    out = run(pinned(args, [args.epserve, "bench-one-batch", "--model-path", model, "--batch-size",
                            str(batch), "--input-len", str(input_len), "--output-len", str(output_len),
                            "--num-threads", str(args.threads)]))
    prefill = float(re.search(r"prefill: [0-9.]+ s, ([0-9.]+) tokens/s", out).group(1))
    decode = float(re.search(r"decode: [0-9.]+ s, ([0-9.]+) tokens/s", out).group(1))
    return prefill, decode


def llama_bench(args, gguf, n_prompt, n_gen):
    out = run(pinned(args, [str(args.llama_bin / "llama-bench"), "-m", gguf, "-t", str(args.threads),
                            "-p", str(n_prompt), "-n", str(n_gen), "-r", "1", "-o", "json"]), env=llama_env(args))
    rows = json.loads(out)
    return rows[0]["avg_ts"]


def llama_batched(args, gguf, batch, input_len, output_len):
    ctx = batch * (input_len + output_len) + 256
    out = run(pinned(args, [str(args.llama_bin / "llama-batched-bench"), "-m", gguf, "-t",
                            str(args.threads), "-tb", str(args.threads), "-c", str(ctx), "-npp",
                            str(input_len), "-ntg", str(output_len), "-npl", str(batch)]), env=llama_env(args))
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[0] == str(input_len) and cells[2] == str(batch):
            return float(cells[7])  # S_TG t/s
    raise SystemExit("llama-batched-bench: no result row in\n" + out)


ENGINE_CASES = [
    # name, epserve (batch, input, output, which), llama
    ("batch-1 decode tok/s", (1, 16, 128, "decode"), ("bench", 0, 128)),
    ("prefill 512 tok/s", (1, 512, 1, "prefill"), ("bench", 512, 0)),
    ("prefill 2048 tok/s", (1, 2048, 1, "prefill"), ("bench", 2048, 0)),
    ("batch-16 decode tok/s", (16, 128, 32, "decode"), ("batched", 16, (128, 32))),
]


def engine_case(args, which, case, model, gguf):
    name, e, l = case
    if which == "epserve":
        prefill, decode = epserve_one_batch(args, model, e[0], e[1], e[2])
        return prefill if e[3] == "prefill" else decode
    if l[0] == "bench":
        return llama_bench(args, gguf, l[1], l[2])
    return llama_batched(args, gguf, l[1], l[2][0], l[2][1])


# ---------------------------------------------------------------------------- report

def summary(values):
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med * 100 if med else 0.0
    return med, spread


def fmt_row(name, a, b, higher_is_better=True):
    (ma, sa), (mb, sb) = summary(a), summary(b)
    ratio = ma / mb if mb else float("nan")
    return f"| {name} | {ma:.1f} (±{sa:.0f}%) | {mb:.1f} (±{sb:.0f}%) | {ratio:.2f} |"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epserve", required=True)
    p.add_argument("--llama-bin", required=True, type=pathlib.Path)
    p.add_argument("--default-model", required=True)
    p.add_argument("--default-gguf", required=True)
    p.add_argument("--bench-model")
    p.add_argument("--bench-gguf")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--requests-per-client", type=int, default=4)
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--epserve-server-args", default="")
    p.add_argument("--llama-omp-wait-policy", default="",
                   help="OMP_WAIT_POLICY for llama.cpp's processes (passive on a shared machine)")
    p.add_argument("--skip-engine", action="store_true")
    p.add_argument("--skip-serving", action="store_true")
    p.add_argument("--out", default="peers_results")
    args = p.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    args.max_concurrency_top = max(concurrencies)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"threads": args.threads, "repeats": args.repeats,
               "llama_omp_wait_policy": args.llama_omp_wait_policy or "default (active)", "uptime_before": run(["uptime"]).strip()}
    print("load:", results["uptime_before"], flush=True)

    # 1. Greedy agreement on the default model.
    config = json.loads((pathlib.Path(args.default_model) / "config.json").read_text())
    vocab = config["vocab_size"]
    eos = config.get("eos_token_id", [])
    eos = set(eos if isinstance(eos, list) else [eos])
    ep = start_epserve(args, args.default_model)
    ll = start_llama(args, args.default_gguf)
    try:
        agree = []
        for i, n in enumerate([8, 33, 100, 17, 64]):
            ids = prompts_for(7 + i, 1, n, vocab)[0]
            a, b = greedy_epserve(ep, ids, 32, eos), greedy_llama(ll, ids, 32, eos)
            first = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), None)
            if first is None and len(a) != len(b):
                first = min(len(a), len(b))
            status = "agree" if first is None else f"disagree at position {first}"
            print(f"greedy, prompt of {n} tokens, up to 32 new ({len(a)} / {len(b)} before EOS): "
                  f"{status}", flush=True)
            agree.append({"prompt_len": n, "epserve": a, "llama": b, "first_diff": first})
        results["greedy"] = agree

        # 2. Serving on the default model, interleaved. (Not the bench model: most ids it
        #    generates lie beyond its 1024-id tokenizer and stream no text to time.)
        serving = {c: {"epserve": [], "llama": []} for c in concurrencies}
        if not args.skip_serving:
            for server in (ep, ll):  # warm-up
                asyncio.run(load(server.url, prompts_for(99, 4, args.input_len, vocab), 4, 8))
            for rep in range(args.repeats):
                for c in concurrencies:
                    prompts = prompts_for(1000 * rep + c, c * args.requests_per_client, args.input_len, vocab)
                    order = (ep, ll) if rep % 2 == 0 else (ll, ep)
                    for server in order:
                        r = asyncio.run(load(server.url, prompts, c, args.output_len))
                        serving[c][server.name].append(r)
                        print(f"serving rep {rep} conc {c:2d} {server.name:8s} out {r['output_tok_s']:8.1f} tok/s  "
                              f"TTFT p50 {r['ttft_p50_ms']:7.1f} mean {r['ttft_mean_ms']:7.1f} ms  "
                              f"ITL p50 {r['itl_p50_ms']:6.2f} ms", flush=True)
        results["serving"] = serving
    finally:
        ep.stop()
        ll.stop()

    # 3. Engine runs on the bench model, interleaved.
    engine = {}
    if not args.skip_engine and args.bench_model:
        for case in ENGINE_CASES:
            engine[case[0]] = {"epserve": [], "llama": []}
        for rep in range(args.repeats):
            for case in ENGINE_CASES:
                order = ("epserve", "llama") if rep % 2 == 0 else ("llama", "epserve")
                for which in order:
                    v = engine_case(args, which, case, args.bench_model, args.bench_gguf)
                    engine[case[0]][which].append(v)
                    print(f"engine rep {rep} {case[0]:24s} {which:8s} {v:9.1f}", flush=True)
    results["engine"] = engine
    results["uptime_after"] = run(["uptime"]).strip()

    lines = ["| measure | epserve | llama.cpp | epserve / llama.cpp |", "|---|---|---|---|"]
    for name, v in engine.items():
        lines.append(fmt_row(name + " (bench model)", v["epserve"], v["llama"]))
    for c, v in results["serving"].items():
        if not v["epserve"]:
            continue
        for key, label in [("output_tok_s", "output tok/s"), ("ttft_p50_ms", "TTFT p50 ms"),
                           ("ttft_mean_ms", "TTFT mean ms"), ("itl_p50_ms", "ITL p50 ms")]:
            lines.append(fmt_row(f"serving {c} concurrent (default model), {label}",
                                 [r[key] for r in v["epserve"]], [r[key] for r in v["llama"]]))
    table = "\n".join(lines)
    print(f"\nmedian of {args.repeats} interleaved runs (± = (max - min) / median), {args.threads} threads")
    print(table)
    print("load:", results["uptime_after"])
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "table.md").write_text(table + "\n")
    if results["serving"] and any(v["epserve"] for v in results["serving"].values()):
        plot(results["serving"], out_dir / "throughput_vs_concurrency.png", args)
    return 0


def plot(serving, path, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cs = sorted(serving)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, label in [("epserve", "epserve serve"), ("llama", "llama-server")]:
        med = [statistics.median(r["output_tok_s"] for r in serving[c][name]) for c in cs]
        lo = [min(r["output_tok_s"] for r in serving[c][name]) for c in cs]
        hi = [max(r["output_tok_s"] for r in serving[c][name]) for c in cs]
        ax.errorbar(cs, med, yerr=[[m - l for m, l in zip(med, lo)], [h - m for m, h in zip(med, hi)]],
                    marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(cs)
    ax.set_xticklabels([str(c) for c in cs])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("output tokens/s")
    ax.set_title(f"default model, {args.threads} threads, BF16, "
                 f"{args.input_len}+{args.output_len} tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print("plot:", path)


if __name__ == "__main__":
    sys.exit(main())
