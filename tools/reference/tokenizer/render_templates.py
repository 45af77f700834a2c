#!/usr/bin/env python3
"""Renders every chat template fixture with Python jinja2 over a set of conversations, into
tests/data/tokenizers/templates/expected.jsonl (one JSON object per rendering:
template, messages, add_generation_prompt, kwargs, and rendered or error).

The environment is the one transformers' apply_chat_template builds (trim_blocks, lstrip_blocks,
loop controls, the `generation` tag, tojson = json.dumps(ensure_ascii=False, ...), globals
raise_exception, strftime_now, namespace, dict), except that it is jinja2's SandboxedEnvironment
rather than ImmutableSandboxedEnvironment, so Kimi's templates may append to / pop from lists (the
immutable sandbox refuses that, which breaks Kimi tool calls).

Usage (from the repository root): tools/reference/tokenizer/render_templates.py
"""
import json
import os
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import SandboxedEnvironment

ROOT = "tests/data/tokenizers"

# template name -> (template source file or tokenizer_config.json with chat_template, config
# supplying the special tokens)
TEMPLATES = {
    "qwen3": ("templates/qwen3.jinja", "small/qwen3/tokenizer_config.json"),
    "deepseek_v3_1": ("templates/deepseek_v3_1.jinja", "small/deepseek_v3/tokenizer_config.json"),
    "kimi_k2_instruct": ("templates/kimi_k2_instruct.jinja", "small/kimi_k2/tokenizer_config.json"),
    "kimi_k2_thinking": ("templates/kimi_k2_thinking.jinja", "small/kimi_k2/tokenizer_config.json"),
    "deepseek_v3": ("deepseek_v3/tokenizer_config.json", "deepseek_v3/tokenizer_config.json"),
    "qwen2_5": ("qwen2_5/tokenizer_config.json", "qwen2_5/tokenizer_config.json"),
}


class Generation(jinja2.ext.Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    env = SandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                               extensions=[Generation, jinja2.ext.loopcontrols])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda f: datetime.now().strftime(f)
    env.globals["dict"] = dict
    return env


def token(config, key):
    v = config.get(key)
    if isinstance(v, dict):
        return v.get("content")
    return v


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "days": {"type": "integer"}},
                   "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "description": "Adds",
                                      "parameters": {"type": "object", "properties": {
                                          "a": {"type": "number"}, "b": {"type": "number"}}}}}]


def call(name, args, as_string=True, cid="call_1"):
    return {"id": cid, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args) if as_string else args}}


def conversations():
    u = lambda c: {"role": "user", "content": c}
    a = lambda c: {"role": "assistant", "content": c}
    s = lambda c: {"role": "system", "content": c}
    t = lambda c, **kw: {"role": "tool", "content": c, **kw}
    weather = call("get_weather", {"city": "Paris", "days": 3})
    return [
        ([u("Hello!")], {}),
        ([s("You are a helpful assistant."), u("What is 2+2?")], {}),
        ([s("Be brief."), u("Hi"), a("Hello! How can I help?"), u("Tell me a joke.")], {}),
        ([s("First system."), s("Second system."), u("Go")], {}),
        ([u("Solve x+1=2"), a("<think>\nx = 2 - 1\n</think>\n\nx = 1"), u("And x+2=2?")], {}),
        ([u("Why?"), {"role": "assistant", "content": "Because.", "reasoning_content": "Think."},
          u("Ok")], {}),
        ([u("Weather in Paris?"), {"role": "assistant", "content": "", "tool_calls": [weather]},
          t('{"temp": 18}', tool_call_id="call_1"), a("It is 18 degrees.")], {}),
        ([u("Weather in Paris?"),
          {"role": "assistant", "content": "Let me check.",
           "tool_calls": [call("get_weather", {"city": "Paris"}, as_string=False)]},
          t('{"temp": 18}')], {}),
        ([u("Add 1+2 and get weather"),
          {"role": "assistant", "content": "", "tool_calls": [
              call("add", {"a": 1, "b": 2}, cid="c1"), call("get_weather", {"city": "Oslo"}, cid="c2")]},
          t("3", tool_call_id="c1"), t('{"temp": -2}', tool_call_id="c2")], {}),
        ([u("Emoji 👍🏽 and 中文 and\nnewlines\n\n  indented")], {}),
        ([u("Literal <|im_start|> and <｜User｜> and [BOS] tokens")], {}),
        ([u(""), a(""), u("still here")], {}),
        ([u("What's the weather?")], {"tools": TOOLS}),
        ([s("sys"), u("Use tools"), {"role": "assistant", "content": "", "tool_calls": [weather]},
          t("sunny")], {"tools": TOOLS}),
        ([u("Hi"), a("Hello")], {}),
        ([u(f"turn {i}") if i % 2 == 0 else a(f"reply {i}") for i in range(11)], {}),
        ([{"role": "user", "content": "Hi", "name": "alice"}, a("Hi Alice")], {}),
        ([u("q1"), a("<think>r1</think>a1"), u("q2"), a("<think>r2</think>a2"), u("q3")], {}),
        ([s("Sys with 'quotes' and \"double\" and \\ backslash"), u("{{ not a tag }} {% nope %}")], {}),
        ([u("Tabs\tand trailing spaces   "), a("   leading spaces")], {}),
        ([u("Unicode: café naïve Ω ≈ ∑ 𝔘 ｆｕｌｌ")], {}),
        ([u("Multi\n\nparagraph\n\n\nquestion?")], {"tools": TOOLS[:1]}),
    ]


def kwargs_variants(name):
    if name == "qwen3":
        return [{}, {"enable_thinking": True}, {"enable_thinking": False}]
    if name == "deepseek_v3_1":
        return [{}, {"thinking": True}, {"thinking": False}]
    return [{}]


def main():
    env = environment()
    out = []
    for name, (source_file, config_file) in TEMPLATES.items():
        path = os.path.join(ROOT, source_file)
        config = json.load(open(os.path.join(ROOT, config_file), encoding="utf-8"))
        if source_file.endswith(".json"):
            source = json.load(open(path, encoding="utf-8"))["chat_template"]
        else:
            source = open(path, encoding="utf-8").read()
        tmpl = env.from_string(source)
        specials = {k: token(config, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")
                    if token(config, k) is not None}
        for messages, extra in conversations():
            for variant in kwargs_variants(name):
                for agp in (True, False):
                    kwargs = {**extra, **variant}
                    record = {"template": name, "messages": messages, "add_generation_prompt": agp,
                              "kwargs": kwargs}
                    try:
                        variables = {"messages": json.loads(json.dumps(messages)), "tools": None,
                                     "documents": None, "add_generation_prompt": agp, **specials,
                                     **json.loads(json.dumps(kwargs))}
                        record["rendered"] = tmpl.render(**variables)
                    except Exception as e:  # the C++ renderer must fail too
                        record["error"] = f"{type(e).__name__}: {e}"
                    out.append(record)
    with open(os.path.join(ROOT, "templates", "expected.jsonl"), "w", encoding="utf-8") as f:
        for r in out:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    errors = sum("error" in r for r in out)
    print(f"{len(out)} renderings ({errors} raise) written")


if __name__ == "__main__":
    main()
