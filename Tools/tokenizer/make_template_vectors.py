"""Chat-template vectors for Tests/Data/tokenizer, rendered by transformers' apply_chat_template.

  USE_TORCH=0 PYTHONPATH=/tmp/tok-pins-gen2 python3 Tools/tokenizer/make_template_vectors.py gen2
  USE_TORCH=0 PYTHONPATH=/tmp/tok-pins-gen3 python3 Tools/tokenizer/make_template_vectors.py gen3
gen3 also writes extra-templates.jsonl: templates of our own that use Jinja features beyond the
two generations' templates, rendered with the gen3 tokenizer's special tokens.
Each line: {"template"?: source, "messages", "tools"?, "add_generation_prompt", "kwargs", "text"} or
{..., "error": message} when transformers refuses to render.
"""
import copy
import json
import sys
from pathlib import Path

import transformers
from transformers import AutoTokenizer

gen = sys.argv[1]
root = Path(__file__).resolve().parents[2]
tok = AutoTokenizer.from_pretrained(str(root.parent / "shared" / "minimind" / gen))
out_dir = root / "Tests" / "Data" / "tokenizer"

users = ["你好，请介绍一下你自己。", "What is in this picture?\nBe brief.", "<image>\n描述一下这个图像的内容。",
         "  spaces around  ", "Tell me a joke about cats 🐱", "第二个问题：1+1=?", "",
         "<tool_response>\n{\"temp\": 20}\n</tool_response>"]
assistants = ["我是一个AI助手。", "A cat.\n", "<think>\nThe user asks about a photo.\n</think>\n\nIt shows a dog.",
              "<think>\n\n</think>\n\n好的。", "\n\nleading newlines", "</think>only closing tag answer",
              "<think>step 1\nstep 2</think>answer with think inline"]
systems = ["You are MiniMind, a helpful assistant.", "你是一个乐于助人的助手。", ""]
tools = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "城市"},
                                                                                       "days": {"type": "integer"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "search", "description": "Web search \"quoted\"",
                                      "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
]


def conversations():
    convs = []
    for i, u in enumerate(users):
        convs.append([{"role": "user", "content": u}])
        convs.append([{"role": "system", "content": systems[i % 3]}, {"role": "user", "content": u}])
    for i in range(8):
        conv = []
        if i % 2 == 0:
            conv.append({"role": "system", "content": systems[i % 3]})
        for t in range(1 + i % 3):
            conv.append({"role": "user", "content": users[(i + t) % len(users)]})
            conv.append({"role": "assistant", "content": assistants[(i + t) % len(assistants)]})
        conv.append({"role": "user", "content": users[(i + 5) % len(users)]})
        convs.append(conv)
    convs.append([{"role": "user", "content": "q"}, {"role": "assistant", "content": "final answer", "reasoning_content": "\nthinking hard\n"}])
    convs.append([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "system", "content": "late system"},
                  {"role": "user", "content": "q2"}])
    convs.append([{"role": "user", "content": [{"type": "text", "text": "list content"}]}, {"role": "assistant", "content": "ok"}])
    return convs


def tool_conversations():
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京", "days": 3}}}]}
    call_text = {"role": "assistant", "content": "<think>\nneed weather\n</think>\n\nLet me check.",
                 "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                                {"name": "search", "arguments": {"q": "Paris events"}}]}
    return [
        [{"role": "user", "content": "天气怎么样？"}],
        [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Beijing?"}, call,
         {"role": "tool", "content": "{\"temp\": 20}"}],
        [{"role": "user", "content": "Paris?"}, call_text, {"role": "tool", "content": "sunny"}, {"role": "tool", "content": "concert"},
         {"role": "assistant", "content": "Sunny, and a concert."}, {"role": "user", "content": "thanks"}],
        [{"role": "user", "content": "q"}, call],
    ]


def render(messages, tools=None, add_generation_prompt=True, template=None, **kwargs):
    record = {"messages": messages, "add_generation_prompt": add_generation_prompt, "kwargs": kwargs}
    if tools is not None:
        record["tools"] = tools
    if template is not None:
        record["template"] = template
    try:
        record["text"] = tok.apply_chat_template(copy.deepcopy(messages), tools=copy.deepcopy(tools) if tools else tools,
                                                 tokenize=False, add_generation_prompt=add_generation_prompt,
                                                 chat_template=template, **kwargs)
    except Exception as e:  # the template itself refused (raise_exception, undefined attribute)
        record["error"] = f"{type(e).__name__}: {e}"
    return record


records = []
for k, conv in enumerate(conversations()):
    for agp in (True, False):
        if gen == "gen3":
            flags = [{}, {"open_thinking": True}, {"open_thinking": False}][k % 3]
            records.append(render(conv, add_generation_prompt=agp, **flags))
        else:
            records.append(render(conv, add_generation_prompt=agp))
if gen == "gen3":
    for conv in tool_conversations():
        records.append(render(conv, tools=tools, add_generation_prompt=True))
        records.append(render(conv, tools=tools, add_generation_prompt=False, open_thinking=True))
        records.append(render(conv, tools=None, add_generation_prompt=True))

with open(out_dir / f"{gen}-templates.jsonl", "w", encoding="utf-8") as f:
    f.write(json.dumps({"generator": "make_template_vectors.py", "transformers": transformers.__version__}) + "\n")
    for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(gen, len(records), "renders,", sum("error" in r for r in records), "errors")

if gen == "gen3":
    extra = [
        # Loop variables, for-if/else, comments, filters on strings, conditional expressions.
        """{%- set sys = messages[0].content|trim if messages[0].role == 'system' else 'Default system.' -%}
{{ bos_token }}[SYS] {{ sys }}
{% for m in messages if m.role != 'system' %}
  {%- if loop.first %}{# first turn #}<first>{% endif -%}
  [{{ loop.index }}/{{ loop.length }}|{{ loop.revindex0 }}] {{ m.role|upper }}: {{ m.content|default('(empty)')|trim|lower }}
  {%- if not loop.last %} | {% endif %}
{% else %}
no messages
{% endfor %}
{%- if add_generation_prompt %}[ASSISTANT]{{ eos_token|length }}{% endif %}
""",
        # tojson with indent, map/join, items(), tuple unpacking, not in, raise_exception, slices.
        """{%- if tools is defined and tools %}
Tools: {{ tools | map(attribute='function') | map(attribute='name') | join(', ') }}
{%- for t in tools %}
{{ t | tojson(indent=2) }}
{%- endfor %}
{% endif %}
{%- for m in messages %}
{%- if m.role not in ['user', 'assistant', 'system', 'tool'] %}{{ raise_exception('bad role ' ~ m.role) }}{% endif %}
<{{ m.role }}>{{ m.content[::-1] if reverse_text is defined and reverse_text else m.content[:40] }}</{{ m.role }}>
{%- if m.tool_calls is defined %}
{%- for call in m.tool_calls %}{% if call.function is defined %}{% set call = call.function %}{% endif %}{% if call.arguments is mapping %}{% for k, v in call.arguments.items() %} {{ k }}={{ v|tojson }}{% endfor %}{% else %} raw={{ call.arguments }}{% endif %}{% endfor %}
{%- endif %}
{% endfor %}
{{- messages[-1].content[1:-1:2] }}|{{ (messages|length) ** 2 }}""",
        # namespace, break/continue, str methods, arithmetic, literals, whitespace control variants.
        """{%- set ns = namespace(count=0, last_user='') %}
{%- for m in messages %}
    {%- if m.role == 'assistant' %}{% continue %}{% endif %}
    {%- set ns.count = ns.count + 1 %}
    {%- set ns.last_user = m.content if m.content is string else '' %}
    {%- if ns.count > 3 %}{% break %}{% endif %}
{%- endfor %}
users={{ ns.count }} first={{ ns.last_user.split(' ')[0]|lower }} words={{ ns.last_user.split()|length }}
{{ ns.last_user.replace('a', 'A') }} {{ ns.last_user.startswith('Hello') }} {{ ns.last_user.endswith(('?', '.')) }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 * 3 + 1 }} {{ 10 / 4 }} {{ -3 }} {{ 'ab' * 3 }}
{{ messages|length > 2 and 'long' or 'short' }} {{ {'a': 1, 'b': [1, 2.5, none, true]} }} {{ [1, 'x', "it's"] }} {{ none }} {{ 'x' in 'xyz' }} {{ 3 not in [1, 2] }}
    {% if true -%}
  indented block   
    {%- endif %}
{%+ if false %}never{% endif +%}
  kept
{#- comment -#}
{% set greeting %}Hi {{ ns.count }}{% endset %}{{ greeting|upper }} {{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.rsplit(' ', 1) }}
{%- if open_thinking is defined and open_thinking is true %} thinking{% elif open_thinking is false %} not thinking{% else %} unset{% endif %}
end
""",
    ]
    extra_convs = [c for c in conversations()[:: 3]] + [
        [{"role": "system", "content": "  sys  "}, {"role": "user", "content": "Hello there, friend?"},
         {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "And again a question."}],
        [{"role": "user", "content": "x"}, {"role": "bogus", "content": "y"}],
        tool_conversations()[1],
    ]
    recs = []
    for ti, template in enumerate(extra):
        for ci, conv in enumerate(extra_convs):
            flags = [{}, {"open_thinking": True}, {"open_thinking": False}, {"reverse_text": True}][(ti + ci) % 4]
            recs.append(render(conv, tools=tools if ci % 2 else None, add_generation_prompt=bool(ci % 2), template=template, **flags))
    with open(out_dir / "extra-templates.jsonl", "w", encoding="utf-8") as f:
        f.write(json.dumps({"generator": "make_template_vectors.py", "transformers": transformers.__version__}) + "\n")
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print("extra", len(recs), "renders,", sum("error" in r for r in recs), "errors")
