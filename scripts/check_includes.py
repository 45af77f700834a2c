#!/usr/bin/env python3
"""Checks that every module under src/ includes only the modules it may (docs/architecture.md).

A module is a directory under src/ (kernels/cpu counts as kernels). `#include "mod/..."` in a
file of module M is allowed when mod is M or is listed in ALLOWED[M]. Some third-party headers are
confined to the files that wrap them. Exit status 1 and one line per violation when a rule is
broken.

  scripts/check_includes.py                       check the tree
  scripts/check_includes.py --plant FILE:HEADER   also pretend FILE includes HEADER (the CTest
                                                  test that shows the check fails on a wrong include)
"""

import argparse
import pathlib
import re
import sys

# Lower layers first; a module may include only modules listed for it.
ALLOWED = {
    "core": set(),
    "io": {"core"},
    "kernels": {"core"},
    "comm": {"core"},
    "tokenizer": {"core", "io"},
    "media": {"core", "io"},
    "ep": {"core", "comm", "kernels"},
    # make_model writes a whole model directory, tokenizer files included.
    "model": {"core", "io", "kernels", "comm", "ep", "tokenizer"},
    "eplb": {"core", "io", "kernels", "comm", "ep", "model"},
    "runtime": {"core", "io", "kernels", "comm", "ep", "eplb", "model", "tokenizer"},
    "server": {"core", "io", "comm", "eplb", "runtime", "tokenizer", "media"},
    "disagg": {"core", "io", "comm", "runtime", "server"},
    # The router routes HTTP requests over servers; it reuses the server's HTTP layer.
    "router": {"core", "server"},
    "cli": {"core", "io", "kernels", "comm", "ep", "eplb", "model", "runtime", "server",
            "tokenizer", "disagg", "router", "media"},
}

# Third-party headers that only the files wrapping them may include: (pattern, allowed prefixes).
CONFINED = [
    (re.compile(r"[<\"]httplib\.h[>\"]"), ("src/server/http.cpp", "src/router/http_client.cpp")),
    (re.compile(r"[<\"](ucp|ucs)/"), ("src/comm/",)),
    (re.compile(r"[<\"](zmq\.h|zmq\.hpp|sodium\.h)[>\"]"), ("src/runtime/ipc.cpp",)),
    (re.compile(r"[<\"]pcre2\.h[>\"]"), ("src/tokenizer/",)),
    (re.compile(r"[<\"]png\.h[>\"]"), ("src/media/png_decode.cpp",)),
    (re.compile(r"[<\"](jpeglib|jerror)\.h[>\"]"), ("src/media/jpeg_decode.cpp",)),
    (re.compile(r"[<\"]webp/"), ("src/media/webp_decode.cpp",)),
    (re.compile(r"[<\"]gif_lib\.h[>\"]"), ("src/media/gif_decode.cpp",)),
    (re.compile(r"[<\"]stb_image\.h[>\"]"), ("src/media/stb_decode.cpp",)),
]

INCLUDE = re.compile(r'^\s*#\s*include\s+([<"][^>"]+[>"])', re.M)


def module_of(rel):
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 else None


def violations(root, planted):
    found = []
    files = sorted(p for p in (root / "src").rglob("*") if p.suffix in (".h", ".cpp", ".cu", ".cuh"))
    for path in files:
        rel = path.relative_to(root).as_posix()
        module = module_of(rel)
        if module is None:
            continue
        includes = INCLUDE.findall(path.read_text(errors="replace"))
        includes += [f'"{h}"' for f, h in planted if f == rel]
        for inc in includes:
            for pattern, owners in CONFINED:
                if pattern.search(inc) and not rel.startswith(owners):
                    found.append(f"{rel}: includes {inc}, which only {', '.join(owners)} may include")
            if not inc.startswith('"') or "/" not in inc:
                continue
            target = inc.strip('"').split("/")[0]
            if target == module or target not in ALLOWED:
                continue
            if module not in ALLOWED:
                found.append(f"{rel}: module {module} is not in scripts/check_includes.py ALLOWED")
            elif target not in ALLOWED[module]:
                found.append(f"{rel}: includes {inc}; {module} may include only "
                             f"{', '.join(sorted(ALLOWED[module])) or 'nothing outside itself'}")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=pathlib.Path(__file__).resolve().parents[1], type=pathlib.Path)
    parser.add_argument("--plant", action="append", default=[], metavar="FILE:HEADER")
    args = parser.parse_args()
    planted = [tuple(p.split(":", 1)) for p in args.plant]
    found = violations(args.root, planted)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} include rule(s) broken (docs/architecture.md)")
        return 1
    print("include rules hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
