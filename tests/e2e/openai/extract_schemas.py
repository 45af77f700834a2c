"""Extracts the component schemas the end-to-end tests validate against (and everything they
reference) from OpenAI's openapi.yaml into schemas.json, so CI needs neither the 3 MB document nor
PyYAML. Run by a developer when the document changes:

    python3 tests/e2e/openai/extract_schemas.py /path/to/openapi.yaml
"""

import json
import pathlib
import sys

import yaml

ROOTS = ["CreateCompletionResponse", "CreateChatCompletionResponse", "CreateChatCompletionStreamResponse",
         "ListModelsResponse", "Model", "ErrorResponse"]


def refs(node, out):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            out.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)


def strip_docs(node):
    if isinstance(node, dict):
        return {k: strip_docs(v) for k, v in node.items()
                if k not in ("description", "x-oaiMeta", "example", "examples", "title")}
    if isinstance(node, list):
        return [strip_docs(v) for v in node]
    return node


def main(path):
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path) as f:
        spec = yaml.load(f, Loader=loader)
    schemas = spec["components"]["schemas"]
    keep, pending = set(), list(ROOTS)
    while pending:
        name = pending.pop()
        if name in keep:
            continue
        keep.add(name)
        found = set()
        refs(schemas[name], found)
        pending.extend(found - keep)
    out = {"info": {"source": "OpenAI openapi.yaml " + str(spec["info"].get("version")), "license": "MIT"},
           "components": {"schemas": {n: strip_docs(schemas[n]) for n in sorted(keep)}}}
    target = pathlib.Path(__file__).with_name("schemas.json")
    target.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{len(keep)} schemas -> {target}")


if __name__ == "__main__":
    main(sys.argv[1])
