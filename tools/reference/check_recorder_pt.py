"""Reads epserve's expert distribution dumps (.pt) with real torch, as SGLang's tools do, and
compares each with the JSON dump written beside it. Not run by CI (it needs torch); CI checks the
archive's structure without torch (tests/unit/eplb/torch_archive_check.py).

    python check_recorder_pt.py DUMP.pt [DUMP.pt ...]     each with DUMP.json beside it
    python check_recorder_pt.py --serve BINARY MODEL      start `epserve serve` in every recorder
                                                          mode, record a request, dump, check

For each file: torch.load(path, weights_only=True) and torch.load(..., mmap=True) give the same
dict as the JSON (tensors as .tolist()), with SGLang's dtypes (int32 counts and top-k ids, an
int64 map). Exit status 1 on any difference."""

import json
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import torch

INT32_KEYS = {"logical_count", "global_physical_count", "topk_ids_of_layer"}


def plain(value, key=None):
    if isinstance(value, torch.Tensor):
        expected = torch.int32 if key in INT32_KEYS else torch.int64
        assert value.dtype == expected, f"{key}: {value.dtype}, expected {expected}"
        assert value.is_contiguous() and value.device.type == "cpu", key
        return value.tolist()
    if isinstance(value, dict):
        return {k: plain(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, key) for v in value]
    return value


def check(pt_path):
    pt_path = pathlib.Path(pt_path)
    expected = json.loads(pt_path.with_suffix(".json").read_text())
    for mmap in (False, True):
        loaded = torch.load(pt_path, weights_only=True, mmap=mmap)
        assert isinstance(loaded["logical_count"], torch.Tensor)
        got = plain(loaded)
        assert got == expected, f"{pt_path} (mmap={mmap}) differs from its JSON"
        assert list(got) == list(expected), "keys in another order"
    shape = tuple(loaded["logical_count"].shape)
    print(f"ok {pt_path.name}: {expected['recorder_mode']}, logical_count {shape}, "
          f"{len(expected.get('records', []))} records")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=120):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def serve_and_dump(binary, model):
    paths = []
    for mode, layout in [("stat", ["--tp", "2", "--ep-size", "2"]), ("stat_approx", []),
                         ("per_pass", []), ("per_token", ["--tp", "2", "--ep-size", "2"])]:
        folder = tempfile.mkdtemp(prefix=f"epserve-pt-{mode}-")
        port = free_port()
        server = subprocess.Popen(
            [binary, "serve", "--model-path", model, "--port", str(port), *layout,
             "--expert-distribution-recorder-mode", mode,
             "--expert-distribution-recorder-format", "both",
             "--expert-distribution-recorder-dir", folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if get(base + "/health", 2) is not None:
                        break
                except OSError:
                    time.sleep(0.2)
            get(base + "/start_expert_distribution_record")
            body = json.dumps({"text": "Hello there, how are",
                               "sampling_params": {"max_new_tokens": 4}}).encode()
            urllib.request.urlopen(urllib.request.Request(
                base + "/generate", data=body, headers={"Content-Type": "application/json"}),
                timeout=120).read()
            answer = get(base + "/dump_expert_distribution_record")
            written = answer.split("Written to ")[1].strip().split(" and ")
            paths.append(next(p for p in written if p.endswith(".pt")))
        finally:
            server.terminate()
            server.wait(timeout=60)
    return paths


def main(argv):
    print(f"torch {torch.__version__}")
    paths = serve_and_dump(argv[1], argv[2]) if argv[0] == "--serve" else argv
    for path in paths:
        check(path)


if __name__ == "__main__":
    main(sys.argv[1:])
