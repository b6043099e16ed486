// Tool-call syntaxes: detection, parsing (batch = streaming), forced-call grammars.
#include "yunzhi/engine/tool_calls.h"

#include <algorithm>
#include <set>
#include <utility>

#include <boost/json.hpp>

#include "json_schema.h"

namespace yunzhi::engine {
namespace {

namespace bj = boost::json;
namespace jg = json_grammar;

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]";
constexpr std::string_view kMistralArgs = "[ARGS]";
constexpr std::string_view kMistralCallId = "[CALL_ID]";

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Length of the longest suffix of `text` that is a proper prefix of `marker`.
size_t PartialMarkerSuffix(std::string_view text, std::string_view marker) {
  size_t max = std::min(text.size(), marker.size() - 1);
  for (size_t n = max; n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

// End of the JSON object or array starting at text[pos] (after the closing bracket), or npos.
size_t ScanJsonContainer(std::string_view text, size_t pos) {
  if (pos >= text.size() || (text[pos] != '{' && text[pos] != '[')) return std::string_view::npos;
  int depth = 0;
  bool in_string = false;
  for (size_t i = pos; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

std::optional<bj::value> ParseJson(std::string_view text) {
  boost::system::error_code ec;
  bj::value v = bj::parse(text, ec);
  if (ec) return std::nullopt;
  return v;
}

// Arguments given as an object, or as a string holding an object.
std::optional<std::string> ArgumentsText(const bj::value& v) {
  if (v.is_object()) return bj::serialize(v);
  if (v.is_string()) {
    auto inner = ParseJson(v.as_string());
    if (inner && inner->is_object()) return bj::serialize(*inner);
  }
  return std::nullopt;
}

// {"name": "...", "arguments" | "parameters": {...}}
std::optional<ToolCall> CallFromValue(const bj::value& v) {
  if (!v.is_object()) return std::nullopt;
  const bj::object& o = v.as_object();
  const bj::value* name = o.if_contains("name");
  if (name == nullptr || !name->is_string() || name->as_string().empty()) return std::nullopt;
  const bj::value* args = o.if_contains("arguments");
  if (args == nullptr) args = o.if_contains("parameters");
  std::optional<std::string> text;
  if (args == nullptr) {
    text = "{}";
  } else {
    text = ArgumentsText(*args);
  }
  if (!text) return std::nullopt;
  return ToolCall{std::string(name->as_string()), std::move(*text)};
}

std::optional<ToolCall> CallFromText(std::string_view text) {
  auto v = ParseJson(Trim(text));
  if (!v) return std::nullopt;
  return CallFromValue(*v);
}

// Qwen3-Coder's XML body: <function=NAME>\n<parameter=P>\nVALUE\n</parameter>\n...</function>.
// A value that parses as a JSON object, array, number, boolean or null is that value; any other
// text is a string (the template writes strings raw).
std::optional<ToolCall> CallFromXml(std::string_view body) {
  constexpr std::string_view kFunction = "<function=";
  constexpr std::string_view kParameter = "<parameter=";
  constexpr std::string_view kParameterEnd = "</parameter>";
  constexpr std::string_view kFunctionEnd = "</function>";
  std::string_view rest = Trim(body);
  if (!rest.starts_with(kFunction)) return std::nullopt;
  size_t gt = rest.find('>');
  if (gt == std::string_view::npos) return std::nullopt;
  std::string_view name = rest.substr(kFunction.size(), gt - kFunction.size());
  if (name.empty() || name.find_first_of("<>\n") != std::string_view::npos) return std::nullopt;
  rest = Trim(rest.substr(gt + 1));
  bj::object args;
  while (rest.starts_with(kParameter)) {
    size_t pgt = rest.find('>');
    if (pgt == std::string_view::npos) return std::nullopt;
    std::string_view key = rest.substr(kParameter.size(), pgt - kParameter.size());
    if (key.empty()) return std::nullopt;
    rest = rest.substr(pgt + 1);
    size_t end = rest.find(kParameterEnd);
    if (end == std::string_view::npos) return std::nullopt;
    std::string_view value = rest.substr(0, end);
    if (value.starts_with('\n')) value.remove_prefix(1);
    if (value.ends_with('\n')) value.remove_suffix(1);
    std::optional<bj::value> parsed = ParseJson(value);
    if (parsed && !parsed->is_string()) {
      args[key] = std::move(*parsed);
    } else {
      args[key] = bj::string(value);
    }
    rest = Trim(rest.substr(end + kParameterEnd.size()));
  }
  if (rest != kFunctionEnd) return std::nullopt;
  return ToolCall{std::string(name), bj::serialize(args)};
}

// Llama 3: one or more call objects separated by whitespace or ';'.
std::optional<std::vector<ToolCall>> LlamaCalls(std::string_view text) {
  text = Trim(text);
  if (text.starts_with(kPythonTag)) text = Trim(text.substr(kPythonTag.size()));
  std::vector<ToolCall> calls;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = ScanJsonContainer(text, pos);
    if (end == std::string_view::npos) return std::nullopt;
    auto call = CallFromText(text.substr(pos, end - pos));
    if (!call) return std::nullopt;
    calls.push_back(std::move(*call));
    pos = end;
    while (pos < text.size() && (IsSpace(text[pos]) || text[pos] == ';')) ++pos;
  }
  if (calls.empty()) return std::nullopt;
  return calls;
}

// Mistral: `segment` is the text after the first [TOOL_CALLS].
std::optional<std::vector<ToolCall>> MistralCalls(std::string_view segment) {
  std::vector<ToolCall> calls;
  std::string_view rest = Trim(segment);
  if (rest.starts_with('[')) {  // [{"name": ..., "arguments": ...}, ...]
    auto v = ParseJson(rest);
    if (!v || !v->is_array() || v->as_array().empty()) return std::nullopt;
    for (const bj::value& item : v->as_array()) {
      auto call = CallFromValue(item);
      if (!call) return std::nullopt;
      calls.push_back(std::move(*call));
    }
    return calls;
  }
  // name[CALL_ID]id[ARGS]{...}[TOOL_CALLS]name[ARGS]{...}
  for (;;) {
    size_t args = rest.find(kMistralArgs);
    if (args == std::string_view::npos) return std::nullopt;
    std::string_view head = rest.substr(0, args);
    size_t id = head.find(kMistralCallId);
    std::string_view name = Trim(head.substr(0, id));
    if (name.empty() || name.find_first_of(" \n\t[]{}\"") != std::string_view::npos)
      return std::nullopt;
    size_t json_begin = args + kMistralArgs.size();
    while (json_begin < rest.size() && IsSpace(rest[json_begin])) ++json_begin;
    size_t json_end = ScanJsonContainer(rest, json_begin);
    if (json_end == std::string_view::npos) return std::nullopt;
    auto v = ParseJson(rest.substr(json_begin, json_end - json_begin));
    if (!v) return std::nullopt;
    auto arguments = ArgumentsText(*v);
    if (!arguments) return std::nullopt;
    calls.push_back({std::string(name), std::move(*arguments)});
    rest = Trim(rest.substr(json_end));
    if (rest.empty()) return calls;
    if (!rest.starts_with(kMistralCalls)) return std::nullopt;
    rest = Trim(rest.substr(kMistralCalls.size()));
  }
}

void Append(ParsedOutput& out, ParsedOutput more) {
  out.content += more.content;
  for (ToolCall& c : more.tool_calls) out.tool_calls.push_back(std::move(c));
}

}  // namespace

ToolCallSyntax DetectToolCallSyntax(std::string_view t) {
  if (t.find(kMistralArgs) != std::string_view::npos &&
      t.find(kMistralCalls) != std::string_view::npos)
    return ToolCallSyntax::kMistralArgs;
  if (t.find(kMistralCalls) != std::string_view::npos) return ToolCallSyntax::kMistral;
  if (t.find(kHermesOpen) != std::string_view::npos) return ToolCallSyntax::kHermes;
  if (t.find(kPythonTag) != std::string_view::npos) return ToolCallSyntax::kLlama3Json;
  if (t.find("tool_calls") != std::string_view::npos &&
      t.find("\"parameters\"") != std::string_view::npos)
    return ToolCallSyntax::kLlama3Json;
  return ToolCallSyntax::kNone;
}

ToolCallStreamParser::ToolCallStreamParser(ToolCallSyntax syntax) : syntax_(syntax) {}

ParsedOutput ToolCallStreamParser::Push(std::string_view piece) {
  buf_.append(piece);
  return Drain(false);
}

ParsedOutput ToolCallStreamParser::Finish() {
  ParsedOutput out = Drain(true);
  buf_.clear();
  in_call_ = started_ = llama_call_ = false;
  return out;
}

ParsedOutput ToolCallStreamParser::Drain(bool final) {
  ParsedOutput out;
  switch (syntax_) {
    case ToolCallSyntax::kNone:
      out.content = std::move(buf_);
      buf_.clear();
      return out;
    case ToolCallSyntax::kLlama3Json: {
      if (!started_) {
        size_t first = 0;
        while (first < buf_.size() && IsSpace(buf_[first])) ++first;
        std::string_view rest = std::string_view(buf_).substr(first);
        if (rest.empty() ||
            (!final && rest.size() < kPythonTag.size() && kPythonTag.starts_with(rest))) {
          if (final) {
            out.content = std::move(buf_);
            buf_.clear();
          }
          return out;
        }
        started_ = true;
        llama_call_ = rest.starts_with('{') || rest.starts_with(kPythonTag);
      }
      if (!llama_call_) {
        out.content = std::move(buf_);
        buf_.clear();
        return out;
      }
      if (!final) return out;
      if (auto calls = LlamaCalls(buf_)) {
        out.tool_calls = std::move(*calls);
      } else {
        out.content = std::move(buf_);
      }
      buf_.clear();
      return out;
    }
    case ToolCallSyntax::kMistral:
    case ToolCallSyntax::kMistralArgs: {
      if (!in_call_) {
        size_t pos = buf_.find(kMistralCalls);
        if (pos == std::string::npos) {
          size_t hold = final ? 0 : PartialMarkerSuffix(buf_, kMistralCalls);
          out.content = buf_.substr(0, buf_.size() - hold);
          buf_.erase(0, buf_.size() - hold);
          return out;
        }
        out.content = buf_.substr(0, pos);
        buf_.erase(0, pos + kMistralCalls.size());
        in_call_ = true;
      }
      if (!final) return out;
      if (auto calls = MistralCalls(buf_)) {
        out.tool_calls = std::move(*calls);
      } else {
        out.content += std::string(kMistralCalls) + buf_;
      }
      buf_.clear();
      in_call_ = false;
      return out;
    }
    case ToolCallSyntax::kHermes:
      for (;;) {
        if (!in_call_) {
          size_t pos = buf_.find(kHermesOpen);
          if (pos == std::string::npos) {
            size_t hold = final ? 0 : PartialMarkerSuffix(buf_, kHermesOpen);
            out.content += buf_.substr(0, buf_.size() - hold);
            buf_.erase(0, buf_.size() - hold);
            return out;
          }
          out.content += buf_.substr(0, pos);
          buf_.erase(0, pos + kHermesOpen.size());
          in_call_ = true;
        }
        size_t close = buf_.find(kHermesClose);
        if (close == std::string::npos && !final) return out;
        std::string_view body = std::string_view(buf_).substr(0, close);
        std::optional<ToolCall> call = CallFromText(body);
        if (!call) call = CallFromXml(body);
        if (call) {
          out.tool_calls.push_back(std::move(*call));
        } else {
          out.content += kHermesOpen;
          out.content += body;
          if (close != std::string::npos) out.content += kHermesClose;
        }
        buf_.erase(0, close == std::string::npos ? buf_.size() : close + kHermesClose.size());
        in_call_ = false;
        if (close == std::string::npos) return out;
      }
  }
  return out;
}

ParsedOutput ParseToolCalls(ToolCallSyntax syntax, std::string_view text) {
  ToolCallStreamParser parser(syntax);
  ParsedOutput out = parser.Push(text);
  Append(out, parser.Finish());
  return out;
}

Result<std::unique_ptr<JsonConstraint>> MakeToolCallConstraint(
    const Tokenizer& tokenizer, ToolCallSyntax syntax, std::span<const ToolSpec> tools,
    std::optional<std::string> forced_name, const JsonConstraintOptions& options) {
  if (syntax == ToolCallSyntax::kNone) syntax = ToolCallSyntax::kHermes;
  if (tools.empty()) return InvalidArgumentError("tool_choice needs at least one tool", "tools");
  std::set<std::string> seen;
  for (const ToolSpec& t : tools) {
    if (t.name.empty()) return InvalidArgumentError("a tool has an empty name", "tools");
    if (!seen.insert(t.name).second)
      return InvalidArgumentError("duplicate tool name '" + t.name + "'", "tools");
  }
  if (forced_name && seen.count(*forced_name) == 0)
    return InvalidArgumentError("tool_choice names unknown function '" + *forced_name + "'",
                                "tool_choice");
  const bool raw_names = syntax == ToolCallSyntax::kMistralArgs;
  jg::GrammarBuilder builder;
  // (name literal as written, arguments node), sorted like the literal set sorts them.
  std::vector<std::pair<std::string, int32_t>> entries;
  for (const ToolSpec& t : tools) {
    if (forced_name && t.name != *forced_name) continue;
    if (raw_names && t.name.find_first_of(" \n\t[]{}\"") != std::string::npos)
      return InvalidArgumentError("tool name '" + t.name +
                                      "' cannot be written in this model's "
                                      "tool-call syntax",
                                  "tools");
    int32_t node = builder.AnyObject();
    if (!Trim(t.parameters).empty()) {
      auto compiled = builder.AddSchema(t.parameters);
      if (!compiled) {
        Error e = compiled.error();
        e.message = "tool '" + t.name + "' parameters: " + e.message;
        e.param = "tools";
        return e;
      }
      node = *compiled;
    }
    entries.emplace_back(raw_names ? t.name : jg::QuoteJson(t.name), node);
  }
  std::sort(entries.begin(), entries.end());
  std::vector<std::string> names;
  std::vector<int32_t> branches;
  for (auto& [name, node] : entries) {
    names.push_back(name);
    branches.push_back(node);
  }
  jg::Node names_node;
  names_node.kind = jg::NodeKind::kLiterals;
  names_node.literals = names;
  int32_t names_id = builder.AddNode(std::move(names_node));

  auto marker = [&](std::string_view text) {
    std::optional<int32_t> id = tokenizer.FindAddedToken(text);
    builder.AddSequenceText(std::string(text), id ? *id : -1);
  };
  auto call_object = [&](std::string_view args_key) {
    jg::Node call;
    call.kind = jg::NodeKind::kObject;
    call.properties = {{"\"name\"", names_id, true}, {jg::QuoteJson(args_key), branches[0], true}};
    call.discriminated = branches;
    return builder.AddNode(std::move(call));
  };
  switch (syntax) {
    case ToolCallSyntax::kNone:
    case ToolCallSyntax::kHermes:
      marker(kHermesOpen);
      builder.AddSequenceText("\n");
      builder.AddSequenceValue(call_object("arguments"));
      builder.AddSequenceText("\n");
      marker(kHermesClose);
      break;
    case ToolCallSyntax::kLlama3Json:
      builder.AddSequenceValue(call_object("parameters"));
      break;
    case ToolCallSyntax::kMistral: {
      marker(kMistralCalls);
      jg::Node list;
      list.kind = jg::NodeKind::kArray;
      list.items = call_object("arguments");
      list.min_items = 1;
      list.max_items = 1;
      builder.AddSequenceValue(builder.AddNode(std::move(list)));
      break;
    }
    case ToolCallSyntax::kMistralArgs:
      marker(kMistralCalls);
      builder.AddSequenceValue(names_id);
      marker(kMistralArgs);
      builder.AddSequenceDiscriminated(branches);
      break;
  }
  YZ_ASSIGN_OR_RETURN(jg::Grammar grammar, builder.Finalize());
  return jg::MakeGrammarConstraint(tokenizer, std::move(grammar), options.end_token_ids,
                                   options.max_whitespace_bytes);
}

}  // namespace yunzhi::engine
