#!/usr/bin/env python3
"""Renders small feature templates with jinja2 (the environment of render_templates.py) into
tests/data/tokenizers/templates/jinja_cases.json for tests/unit/tokenizer/jinja_test.cpp.

Usage (from the repository root): tools/reference/tokenizer/jinja_cases.py
"""
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render_templates import environment  # noqa: E402

CASES = [
 [
  "{% for i in [1,2,3] %}{% if loop.first %}{% set x = 5 %}{% endif %}[{{ x }}]{% endfor %}|{{ x }}",
  {}
 ],
 [
  "{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = x + 10 %}{{ x }},{% endfor %}|{{ x }}",
  {}
 ],
 [
  "  {% if True %}\n  x\n  {% endif %}\n",
  {}
 ],
 [
  "a {% if True %}b{% endif %} c\n\n",
  {}
 ],
 [
  "{{ [1, 'a', None, True, 1.5, \"it's\"] }}",
  {}
 ],
 [
  "{{ 1e20 }} {{ 0.1 }} {{ 1/3 }} {{ 10/2 }} {{ 7//2 }} {{ -7 % 3 }} {{ 2**10 }} {{ 1e-5 }} {{ 123456789012345678.0 }}",
  {}
 ],
 [
  "{{ {'b': [1, 2.5, None], 'a': 'é\"\\n'}|tojson }}|{{ {'b': 1, 'a': 2}|tojson(indent=2) }}|{{ x|tojson(separators=(',', ':'), sort_keys=True) }}",
  {
   "x": {
    "z": 1,
    "y": [
     True,
     False
    ]
   }
  }
 ],
 [
  "{% for m in xs %}{{ loop.index }}/{{ loop.length }}{{ '' if loop.last else ',' }}{% endfor %}",
  {
   "xs": [
    5,
    6,
    7
   ]
  }
 ],
 [
  "{{ xs[::-1] }} {{ xs[1:] }} {{ xs[-1] }} {{ 'héllo'[1:3] }} {{ 'abc'[::-1] }}",
  {
   "xs": [
    1,
    2,
    3
   ]
  }
 ],
 [
  "{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
  {}
 ],
 [
  "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bo') }} {{ greet('Al', punct='?') }}",
  {}
 ],
 [
  "{{ x is defined }} {{ y is none }} {{ 'a' in 'cat' }} {{ 3 not in [1, 2] }} {{ x is string }} {{ 2 is even }}",
  {
   "x": "s",
   "y": None
  }
 ],
 [
  "{{ '  a b  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'xxhixx'.strip('x') }}|{{ 'Hello'.startswith(('He', 'x')) }}|{{ 'a-b'.replace('-', '+') }}|{{ 'hello world'.title() }}|{{ 'AbC'.lower() }}",
  {}
 ],
 [
  "{%- for k, v in d.items() -%}{{ k }}={{ v }};{%- endfor %}",
  {
   "d": {
    "b": 1,
    "a": 2
   }
  }
 ],
 [
  "{{ xs|map(attribute='n')|join(', ') }} {{ xs|selectattr('n', 'gt', 1)|list|length }} {{ xs|first }}",
  {
   "xs": [
    {
     "n": 1
    },
    {
     "n": 2
    },
    {
     "n": 3
    }
   ]
  }
 ],
 [
  "{% for x in xs if x > 1 %}{{ x }}{% else %}none{% endfor %}|{% for x in [] %}{{ x }}{% else %}empty{% endfor %}",
  {
   "xs": [
    1,
    2,
    3
   ]
  }
 ],
 [
  "{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
  {
   "xs": [
    1,
    2,
    3,
    4,
    5
   ]
  }
 ],
 [
  "{% set a, b = [1, 2] %}{{ a + b }} {{ 'x' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1] + [2] }}",
  {}
 ],
 [
  "{% set block %}inner {{ 1 + 1 }}{% endset %}[{{ block }}]",
  {}
 ],
 [
  "{{ undefined_thing }}|{{ undefined_thing|default('dflt') }}|{{ ''|default('x', True) }}|{{ d.missing }}|{{ none.x }}",
  {
   "d": {}
  }
 ],
 [
  "line1\n{# comment #}\nline2\n  {#- c -#}  \nline3",
  {}
 ],
 [
  "{%- if a -%}\n  A\n{%- elif b -%}\n  B\n{%- else -%}\n  C\n{%- endif -%}\n!",
  {
   "b": True
  }
 ],
 [
  "{{ \"a\\tb\\u00e9\\x41\" }}{{ 'it\\'s' }}",
  {}
 ],
 [
  "{% raw %}{{ not parsed }}{% endraw %}",
  {}
 ],
 [
  "{{ 'a' if False }}|{{ 'a' if x else 'b' }}|{{ not x and True or 'z' }}",
  {
   "x": 0
  }
 ],
 [
  "{{ 5|string + 'x' }} {{ '12'|int + 1 }} {{ 3.7|int }} {{ 2|float }} {{ -3|abs }} {{ [3,1,2]|sort }} {{ ['b','A','a']|sort }} {{ [1,2,3]|sum }}",
  {}
 ],
 [
  "{{ 'a\\nb'|indent(2) }}|{{ 'a\\nb'|indent(2, True) }}|{{ '  x  '|trim }}|{{ 'x'|upper }}",
  {}
 ],
 [
  "{% generation %}gen {{ 1 }}{% endgeneration %}",
  {}
 ],
 [
  "{{ d.get('k', 'none') }} {{ d.keys()|list }} {{ d['a'] }} {{ d.a }} {{ xs.append(4) }}{{ xs }} {{ xs.pop(0) }} {{ xs }}",
  {
   "d": {
    "a": 1
   },
   "xs": [
    1,
    2,
    3
   ]
  }
 ]
]


def main():
    env = environment()
    out = []
    for source, variables in CASES:
        rendered = env.from_string(source).render(**copy.deepcopy(variables))
        out.append({"source": source, "vars": variables, "rendered": rendered})
    with open("tests/data/tokenizers/templates/jinja_cases.json", "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(f"{len(out)} cases written")


if __name__ == "__main__":
    main()
