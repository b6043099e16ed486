#!/usr/bin/env python3
"""Reference renderings of chat templates by Python's Jinja2, set up as Hugging Face does.

transformers renders chat templates with an ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True) plus the loopcontrols extension and its `{% generation %}` tag, replaces the
`tojson` filter with plain json.dumps(ensure_ascii=False), and adds the globals raise_exception
and strftime_now. It calls template.render(messages=..., tools=..., documents=...,
add_generation_prompt=..., **special_tokens, **kwargs). This script does the same, with a fixed
clock so that strftime_now agrees with the C++ side.

Usage: render_chat_template.py TEMPLATE [TEMPLATE ...]
  TEMPLATE is a .jinja file, or a tokenizer_config.json whose "chat_template" is used (with its
  bos_token / eos_token).

Prints one JSON document on stdout:
  {"jinja2_version": ..., "now_epoch_seconds": ...,
   "templates": [{"name", "path", "source", "bos_token", "eos_token",
                  "cases": [{"scenario", "input": {...}, "ok": true, "output": "..."} |
                            {"scenario", "input": {...}, "ok": false, "error_type", "error"}]}]}
Each case's "input" holds exactly the variables passed to render (besides the tokens), so the
C++ test renders the same data. Exits non-zero when Jinja2 is missing or a template is unreadable.
"""

import calendar
import copy
import datetime
import json
import os
import sys

try:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError as e:  # a missing reference must fail the test loudly, never skip it
    sys.stderr.write(f"render_chat_template.py: cannot import jinja2 ({e}); "
                     "install Debian's python3-jinja2\n")
    sys.exit(3)

# The clock strftime_now reads (UTC on the C++ side).
FIXED_NOW = datetime.datetime(2024, 7, 26, 9, 5, 3)

# .jinja files carry no special tokens; these stand in for them.
DEFAULT_BOS = "<s>"
DEFAULT_EOS = "</s>"


class GenerationTag(Extension):
    """Hugging Face's `{% generation %}...{% endgeneration %}`: renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# ---- scenario data ----

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER_1 = {"role": "user", "content": "Hello! What's 2+2?"}
ASSISTANT_1 = {"role": "assistant", "content": "2 + 2 = 4."}
USER_2 = {"role": "user", "content": "And 3*3? Answer in \"quotes\" and 中文."}
ASSISTANT_2 = {"role": "assistant", "content": "\"9\" — 九。"}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string",
                             "description": "City and country, e.g. Paris, France"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                         "description": "Temperature unit"},
                "days": {"type": "integer", "description": "Days of forecast", "default": 1,
                         "minimum": 1, "maximum": 7},
            },
            "required": ["location"],
        },
    },
}

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_documents",
        "description": "Search the knowledge base.  ",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for (中文 ok)"},
                "top_k": {"type": "number", "description": "How many results", "default": 2.5},
                "tags": {"type": "array", "items": {"type": "string"},
                         "description": "Filter by tags"},
                "filters": {"type": "object", "description": "Field filters",
                            "additionalProperties": {"type": "string"}},
                "exact": {"type": "boolean", "description": "Exact match only",
                          "default": False},
            },
            "required": ["query"],
        },
        "return": {"type": "array", "description": "Matching passages"},
    },
}

UNION_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {
            "type": "object",
            "properties": {"key": {"type": ["string", "null"], "description": "The key"}},
            "required": ["key"],
        },
    },
}


def tool_call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER_CALL = tool_call("call12345", "get_weather", {"location": "Paris, France",
                                                      "unit": "celsius"})
SEARCH_CALL = tool_call("call67890", "search_documents",
                        {"query": "天气 \"Paris\"", "top_k": 3, "tags": ["travel", "météo"],
                         "filters": {"lang": "fr"}, "exact": True})
WEATHER_RESULT = {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
                  "content": "{\"temperature\": 22, \"condition\": \"sunny\"}"}
SEARCH_RESULT = {"role": "tool", "tool_call_id": "call67890", "name": "search_documents",
                 "content": "Paris: 22°C, ensoleillé."}
WEATHER_QUESTION = {"role": "user", "content": "What's the weather like in Paris today?"}


def scenario(name, messages, add_generation_prompt=True, tools=None, documents=None, **extra):
    return {"name": name, "messages": messages, "tools": tools, "documents": documents,
            "add_generation_prompt": add_generation_prompt, "extra": extra}


SCENARIOS = [
    scenario("single_turn", [USER_1]),
    scenario("single_turn_no_generation_prompt", [USER_1], add_generation_prompt=False),
    scenario("system_single_turn", [SYSTEM, USER_1]),
    scenario("system_single_turn_no_generation_prompt", [SYSTEM, USER_1],
             add_generation_prompt=False),
    scenario("system_only", [SYSTEM]),
    scenario("multi_turn", [SYSTEM, USER_1, ASSISTANT_1, USER_2]),
    scenario("multi_turn_no_system", [USER_1, ASSISTANT_1, USER_2]),
    scenario("multi_turn_no_system_no_generation_prompt",
             [USER_1, ASSISTANT_1, USER_2, ASSISTANT_2], add_generation_prompt=False),
    scenario("multi_turn_assistant_last", [SYSTEM, USER_1, ASSISTANT_1],
             add_generation_prompt=False),
    scenario("no_messages", []),
    scenario("content_parts", [
        {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hello! "},
                                     {"type": "text", "text": "What's 2+2?"}]},
        ASSISTANT_1,
        {"role": "user", "content": [{"type": "text", "text": "And 3*3?"}]},
    ]),
    scenario("content_parts_no_system", [
        {"role": "user", "content": [{"type": "text", "text": "Describe Paris."}]},
    ]),
    scenario("image_part", [
        {"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]},
    ]),
    scenario("unicode_and_special_text", [
        SYSTEM,
        {"role": "user",
         "content": "Quotes ' \" and \\ backslash,\ttab,\nnewline, emoji 😀, 中文, "
                    "{{ not a tag }} {% neither %} </s> <|im_end|>"},
    ]),
    scenario("whitespace_content", [
        {"role": "system", "content": "  \n System with padding.\n\n"},
        {"role": "user", "content": "\n\n  Hi there  \n"},
        {"role": "assistant", "content": "\n<think>\nhidden\n</think>\n\n  Hello.  \n"},
        {"role": "user", "content": " \u3000 full-width space \u3000 "},
    ]),
    scenario("tools_defined_no_call", [SYSTEM, WEATHER_QUESTION],
             tools=[WEATHER_TOOL, SEARCH_TOOL]),
    scenario("tool_call_then_result", [
        SYSTEM, WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        WEATHER_RESULT,
    ], tools=[WEATHER_TOOL, SEARCH_TOOL]),
    scenario("tool_call_full_exchange", [
        SYSTEM, WEATHER_QUESTION,
        {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL]},
        WEATHER_RESULT,
        {"role": "assistant", "content": "It's 22 °C and sunny in Paris."},
        {"role": "user", "content": "Thanks! Anything about travel?"},
    ], tools=[WEATHER_TOOL, SEARCH_TOOL]),
    scenario("tool_call_no_system", [
        WEATHER_QUESTION,
        {"role": "assistant", "content": "Let me check.", "tool_calls": [WEATHER_CALL]},
        WEATHER_RESULT,
    ], tools=[WEATHER_TOOL]),
    scenario("parallel_tool_calls", [
        SYSTEM, WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL, SEARCH_CALL]},
        WEATHER_RESULT, SEARCH_RESULT,
    ], tools=[WEATHER_TOOL, SEARCH_TOOL]),
    scenario("tool_call_no_generation_prompt", [
        WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        WEATHER_RESULT,
        {"role": "assistant", "content": "Sunny, 22 °C."},
    ], add_generation_prompt=False, tools=[WEATHER_TOOL]),
    scenario("tool_union_type", [WEATHER_QUESTION], tools=[UNION_TOOL]),
    scenario("reasoning_in_content", [
        USER_1,
        {"role": "assistant", "content": "<think>\nTwo plus two.\n</think>\n\n2 + 2 = 4."},
        USER_2,
    ]),
    scenario("reasoning_content_field", [
        USER_1,
        {"role": "assistant", "content": "2 + 2 = 4.", "reasoning_content": "Two plus two."},
        USER_2,
        {"role": "assistant", "content": "9", "reasoning_content": "Three times three."},
    ], add_generation_prompt=False),
    scenario("enable_thinking_false", [USER_1], enable_thinking=False),
    scenario("enable_thinking_true", [SYSTEM, USER_1], enable_thinking=True),
    scenario("system_think_flag", [
        {"role": "system", "content": "Be brief. /no_think"}, USER_1]),
    scenario("documents_and_controls", [USER_1],
             documents=[{"doc_id": 1, "text": "Paris is the capital of France."},
                        {"doc_id": "b", "text": "It has 2.1 million inhabitants."}],
             controls={"citations": True, "length": "short"}),
    scenario("granite_thinking", [USER_1], thinking=True),
    scenario("llama_builtin_tools", [
        SYSTEM, WEATHER_QUESTION,
        {"role": "assistant", "content": None,
         "tool_calls": [tool_call("call24680", "brave_search", {"query": "Paris weather"})]},
        {"role": "tool", "tool_call_id": "call24680", "content": "Sunny."},
    ], tools=[WEATHER_TOOL], builtin_tools=["brave_search", "code_interpreter"],
       date_string="01 Jan 2025"),
    scenario("tools_in_system_prompt", [SYSTEM, WEATHER_QUESTION], tools=[WEATHER_TOOL],
             tools_in_user_message=False),
    scenario("roles_not_alternating", [SYSTEM, USER_1, USER_2]),
    scenario("assistant_first", [ASSISTANT_1, USER_1]),
]


def load_template(path):
    """Returns (name, source, bos_token, eos_token)."""
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        source = config["chat_template"]
        if isinstance(source, list):  # named templates: use "default"
            source = next(t["template"] for t in source if t["name"] == "default")

        def token(key):
            value = config.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            return value

        name = os.path.basename(os.path.dirname(path)) + "/tokenizer_config.json"
        return name, source, token("bos_token"), token("eos_token")
    with open(path, encoding="utf-8") as f:
        source = f.read()
    return os.path.basename(path), source, DEFAULT_BOS, DEFAULT_EOS


def render_cases(env, source, bos_token, eos_token):
    cases = []
    try:
        template = env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        return [{"scenario": "<parse>", "ok": False, "error_type": type(e).__name__,
                 "error": str(e)}]
    tokens = {}
    if bos_token is not None:
        tokens["bos_token"] = bos_token
    if eos_token is not None:
        tokens["eos_token"] = eos_token
    for s in SCENARIOS:
        kwargs = dict(tokens)
        kwargs.update(copy.deepcopy(s["extra"]))
        case = {"scenario": s["name"],
                "input": {"messages": s["messages"], "tools": s["tools"],
                          "documents": s["documents"],
                          "add_generation_prompt": s["add_generation_prompt"],
                          "extra": s["extra"]}}
        try:
            output = template.render(messages=copy.deepcopy(s["messages"]),
                                     tools=copy.deepcopy(s["tools"]),
                                     documents=copy.deepcopy(s["documents"]),
                                     add_generation_prompt=s["add_generation_prompt"], **kwargs)
            case.update({"ok": True, "output": output})
        except Exception as e:  # noqa: BLE001 -- any failure is a valid reference outcome
            case.update({"ok": False, "error_type": type(e).__name__, "error": str(e)})
        cases.append(case)
    return cases


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    env = make_environment()
    templates = []
    for path in argv[1:]:
        name, source, bos_token, eos_token = load_template(path)
        templates.append({"name": name, "path": path, "source": source, "bos_token": bos_token,
                          "eos_token": eos_token,
                          "cases": render_cases(env, source, bos_token, eos_token)})
    json.dump({"jinja2_version": jinja2.__version__,
               "python_version": sys.version.split()[0],
               "now_epoch_seconds": calendar.timegm(FIXED_NOW.timetuple()),
               "templates": templates}, sys.stdout, ensure_ascii=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
