#include "api/openai_types.h"

#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <unordered_map>
#include <utility>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/api/http.h"
#include "yunzhi/base/ids.h"
#include "yunzhi/hub/registry.h"

namespace yunzhi::api {
namespace {

namespace json = boost::json;
using engine::TemplateValue;

// ---- error messages, worded as OpenAI words them

std::string_view KindName(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
      return "an integer";
    case json::kind::double_:
      return "a decimal";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "a value";
}

Error TypeError(std::string_view param, std::string_view expected, const json::value& got) {
  return Error(Code::kInvalidArgument,
               fmt::format("Invalid type for '{}': expected {}, but got {} instead.", param,
                           expected, KindName(got)),
               std::string(param), "invalid_type");
}

Error MissingError(std::string_view param) {
  return Error(Code::kInvalidArgument, fmt::format("Missing required parameter: '{}'.", param),
               std::string(param), "missing_required_parameter");
}

Error ValueError(std::string_view param, std::string message,
                 std::string detail = "invalid_value") {
  return Error(Code::kInvalidArgument, std::move(message), std::string(param), std::move(detail));
}

Error EnumError(std::string_view param, std::string_view value,
                std::initializer_list<std::string_view> allowed) {
  std::string list;
  size_t i = 0;
  for (std::string_view a : allowed) {
    if (i > 0) list += allowed.size() == 2 ? " " : ", ";
    if (i > 0 && i + 1 == allowed.size()) list += "and ";
    list += fmt::format("'{}'", a);
    ++i;
  }
  return ValueError(param,
                    fmt::format("Invalid value: '{}'. Supported values are: {}.", value, list));
}

Error UnsupportedError(std::string_view param, std::string message) {
  return ValueError(param, std::move(message), "unsupported_value");
}

// "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 instead."
Error RangeError(std::string_view param, bool is_integer, bool above, double limit, double got) {
  const std::string_view what = is_integer ? "integer" : "decimal";
  return ValueError(
      param,
      fmt::format("Invalid '{}': {} {} value. Expected a value {} {}, but got {} instead.", param,
                  what, above ? "above maximum" : "below minimum", above ? "<=" : ">=", limit, got),
      fmt::format("{}_{}_value", what, above ? "above_max" : "below_min"));
}

std::string Path(std::string_view prefix, std::string_view key) {
  if (prefix.empty()) return std::string(key);
  return fmt::format("{}.{}", prefix, key);
}

std::string Index(std::string_view prefix, size_t i) { return fmt::format("{}[{}]", prefix, i); }

// ---- typed field access. Absent and null are the same ("not given") except where noted.

const json::value* Field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return nullptr;
  return &it->value();
}

Result<std::optional<std::string>> GetString(const json::object& o, std::string_view key,
                                             std::string_view param) {
  const json::value* v = Field(o, key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return TypeError(param, "a string", *v);
  return std::optional<std::string>(std::string(v->as_string()));
}

Result<std::optional<bool>> GetBool(const json::object& o, std::string_view key,
                                    std::string_view param) {
  const json::value* v = Field(o, key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_bool()) return TypeError(param, "a boolean", *v);
  return std::optional<bool>(v->as_bool());
}

Result<double> AsNumber(const json::value& v, std::string_view param) {
  if (v.is_int64()) return static_cast<double>(v.as_int64());
  if (v.is_uint64()) return static_cast<double>(v.as_uint64());
  if (v.is_double()) return v.as_double();
  return TypeError(param, "a number", v);
}

// An integer; a double without a fraction is accepted (JavaScript has one number type).
Result<int64_t> AsInt(const json::value& v, std::string_view param) {
  if (v.is_int64()) return v.as_int64();
  if (v.is_uint64()) {
    if (v.as_uint64() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return RangeError(param, true, true, static_cast<double>(std::numeric_limits<int64_t>::max()),
                        static_cast<double>(v.as_uint64()));
    }
    return static_cast<int64_t>(v.as_uint64());
  }
  if (v.is_double()) {
    const double d = v.as_double();
    // 2^63 is exactly representable; anything at or above it does not fit.
    if (std::isfinite(d) && std::trunc(d) == d && d >= -9.223372036854775808e18 &&
        d < 9.223372036854775808e18) {
      return static_cast<int64_t>(d);
    }
  }
  return TypeError(param, "an integer", v);
}

Result<std::optional<double>> GetNumber(const json::object& o, std::string_view key,
                                        std::string_view param, double lo, double hi) {
  const json::value* v = Field(o, key);
  if (v == nullptr) return std::optional<double>();
  YZ_ASSIGN_OR_RETURN(double d, AsNumber(*v, param));
  if (d < lo) return RangeError(param, false, false, lo, d);
  if (d > hi) return RangeError(param, false, true, hi, d);
  return std::optional<double>(d);
}

Result<std::optional<int64_t>> GetInt(const json::object& o, std::string_view key,
                                      std::string_view param, int64_t lo, int64_t hi) {
  const json::value* v = Field(o, key);
  if (v == nullptr) return std::optional<int64_t>();
  YZ_ASSIGN_OR_RETURN(int64_t i, AsInt(*v, param));
  if (i < lo)
    return RangeError(param, true, false, static_cast<double>(lo), static_cast<double>(i));
  if (i > hi) return RangeError(param, true, true, static_cast<double>(hi), static_cast<double>(i));
  return std::optional<int64_t>(i);
}

Result<std::string> RequiredString(const json::object& o, std::string_view key,
                                   std::string_view param) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return MissingError(param);
  if (!it->value().is_string()) return TypeError(param, "a string", it->value());
  return std::string(it->value().as_string());
}

Result<std::string> ParseModel(const json::object& body) {
  YZ_ASSIGN_OR_RETURN(std::string model, RequiredString(body, "model", "model"));
  if (model.empty()) return ValueError("model", "'model' must not be empty.");
  return model;
}

// ^[a-zA-Z0-9_-]{1,64}$: OpenAI's rule for function and schema names.
Status CheckName(std::string_view name, std::string_view param) {
  bool ok = !name.empty() && name.size() <= 64;
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-');
  }
  if (!ok) {
    return ValueError(param, fmt::format("Invalid '{}': string does not match pattern. Expected a "
                                         "string of 1 to 64 characters that matches the pattern "
                                         "'^[a-zA-Z0-9_-]+$'.",
                                         param));
  }
  return OkStatus();
}

// Boost.JSON keeps object members in insertion order, so the template sees the client's order.
// Nesting is bounded by the parser's depth limit.
TemplateValue ToTemplateValue(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return {};
    case json::kind::bool_:
      return v.as_bool();
    case json::kind::int64:
      return v.as_int64();
    case json::kind::uint64:
      if (v.as_uint64() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return static_cast<int64_t>(v.as_uint64());
      }
      return static_cast<double>(v.as_uint64());
    case json::kind::double_:
      return v.as_double();
    case json::kind::string:
      return std::string_view(v.as_string());
    case json::kind::array: {
      TemplateValue::Array a;
      a.reserve(v.as_array().size());
      for (const auto& e : v.as_array()) a.push_back(ToTemplateValue(e));
      return a;
    }
    case json::kind::object: {
      TemplateValue::Object o;
      o.reserve(v.as_object().size());
      for (const auto& kv : v.as_object()) {
        o.emplace_back(std::string(kv.key()), ToTemplateValue(kv.value()));
      }
      return o;
    }
  }
  return {};
}

// ---- messages

// The text of a content array: text parts (and, for the assistant, refusal parts) joined with
// "\n". Images, audio and files cannot reach a text-only model.
Result<std::string> JoinContentParts(const json::array& parts, std::string_view role,
                                     const std::string& param) {
  if (parts.empty()) {
    return ValueError(param,
                      fmt::format("Invalid '{}': empty array. Expected an array with minimum "
                                  "length 1, but got an empty array instead.",
                                  param),
                      "empty_array");
  }
  std::string text;
  for (size_t j = 0; j < parts.size(); ++j) {
    const std::string part_param = Index(param, j);
    if (!parts[j].is_object()) return TypeError(part_param, "an object", parts[j]);
    const json::object& part = parts[j].as_object();
    YZ_ASSIGN_OR_RETURN(std::string type, RequiredString(part, "type", Path(part_param, "type")));
    std::string_view field;
    if (type == "text") {
      field = "text";
    } else if (type == "refusal" && role == "assistant") {
      field = "refusal";
    } else {
      return UnsupportedError(Path(part_param, "type"),
                              fmt::format("unsupported content part type '{}'", type));
    }
    YZ_ASSIGN_OR_RETURN(std::string piece, RequiredString(part, field, Path(part_param, field)));
    if (j > 0) text += '\n';
    text += piece;
  }
  return text;
}

Result<TemplateValue> ParseToolCalls(const json::value& v, const std::string& param) {
  if (!v.is_array()) return TypeError(param, "an array", v);
  TemplateValue::Array calls;
  for (size_t j = 0; j < v.as_array().size(); ++j) {
    const json::value& cv = v.as_array()[j];
    const std::string call_param = Index(param, j);
    if (!cv.is_object()) return TypeError(call_param, "an object", cv);
    const json::object& call = cv.as_object();
    YZ_ASSIGN_OR_RETURN(std::string id, RequiredString(call, "id", Path(call_param, "id")));
    YZ_ASSIGN_OR_RETURN(auto type, GetString(call, "type", Path(call_param, "type")));
    if (type && *type != "function") {
      return UnsupportedError(Path(call_param, "type"),
                              fmt::format("unsupported tool call type '{}'", *type));
    }
    const std::string fn_param = Path(call_param, "function");
    const json::value* fv = Field(call, "function");
    if (fv == nullptr) return MissingError(fn_param);
    if (!fv->is_object()) return TypeError(fn_param, "an object", *fv);
    const json::object& fn = fv->as_object();
    YZ_ASSIGN_OR_RETURN(std::string name, RequiredString(fn, "name", Path(fn_param, "name")));
    const std::string args_param = Path(fn_param, "arguments");
    YZ_ASSIGN_OR_RETURN(std::string args_text, RequiredString(fn, "arguments", args_param));
    // Templates print arguments with tojson or iterate over them, so they need the object, not
    // the string. An empty string is what some clients send for a call without arguments.
    TemplateValue args = TemplateValue::Object{};
    if (args_text.find_first_not_of(" \t\r\n") != std::string::npos) {
      auto parsed = TemplateValue::ParseJson(args_text);
      if (!parsed) {
        return ValueError(args_param, fmt::format("Invalid '{}': not valid JSON ({}).", args_param,
                                                  parsed.error().message));
      }
      if (!parsed->is_object()) {
        return ValueError(args_param,
                          fmt::format("Invalid '{}': expected a JSON object.", args_param));
      }
      args = std::move(*parsed);
    }
    TemplateValue::Object function{{"name", std::move(name)}, {"arguments", std::move(args)}};
    calls.push_back(TemplateValue::Object{
        {"id", std::move(id)}, {"type", "function"}, {"function", std::move(function)}});
  }
  return TemplateValue(std::move(calls));
}

Result<TemplateValue> ParseMessage(const json::value& v, size_t i) {
  const std::string param = Index("messages", i);
  if (!v.is_object()) return TypeError(param, "an object", v);
  const json::object& m = v.as_object();
  const std::string role_param = Path(param, "role");
  YZ_ASSIGN_OR_RETURN(std::string role, RequiredString(m, "role", role_param));
  if (role != "system" && role != "developer" && role != "user" && role != "assistant" &&
      role != "tool" && role != "function") {
    return EnumError(role_param, role,
                     {"system", "assistant", "user", "function", "tool", "developer"});
  }
  TemplateValue::Object out;
  // Chat templates know "system"; "developer" is OpenAI's newer name for the same thing.
  out.emplace_back("role", role == "developer" ? std::string("system") : role);

  const std::string content_param = Path(param, "content");
  auto cit = m.find("content");
  std::string content;
  if (cit == m.end() || cit->value().is_null()) {
    // The assistant may send only tool calls; a function result may be null (spec).
    if (role != "assistant" && role != "function") {
      if (cit == m.end()) return MissingError(content_param);
      return TypeError(content_param, "one of a string or array of objects", cit->value());
    }
  } else if (cit->value().is_string()) {
    content = std::string(cit->value().as_string());
  } else if (cit->value().is_array()) {
    YZ_ASSIGN_OR_RETURN(content, JoinContentParts(cit->value().as_array(), role, content_param));
  } else {
    return TypeError(content_param, "one of a string or array of objects", cit->value());
  }
  out.emplace_back("content", std::move(content));

  YZ_ASSIGN_OR_RETURN(auto name, GetString(m, "name", Path(param, "name")));
  if (role == "function" && !name) return MissingError(Path(param, "name"));
  if (name) out.emplace_back("name", std::move(*name));

  if (role == "assistant") {
    if (const json::value* tc = Field(m, "tool_calls")) {
      YZ_ASSIGN_OR_RETURN(TemplateValue calls, ParseToolCalls(*tc, Path(param, "tool_calls")));
      // An empty list is left out: templates test `message.tool_calls is defined`.
      if (!calls.as_array().empty()) out.emplace_back("tool_calls", std::move(calls));
    }
    YZ_ASSIGN_OR_RETURN(auto reasoning,
                        GetString(m, "reasoning_content", Path(param, "reasoning_content")));
    if (reasoning) out.emplace_back("reasoning_content", std::move(*reasoning));
  }
  if (role == "tool") {
    // Required by the spec, but templates that do not print it work without; be lenient.
    YZ_ASSIGN_OR_RETURN(auto id, GetString(m, "tool_call_id", Path(param, "tool_call_id")));
    if (id) out.emplace_back("tool_call_id", std::move(*id));
  }
  return TemplateValue(std::move(out));
}

Result<TemplateValue> ParseMessages(const json::object& body) {
  auto it = body.find("messages");
  if (it == body.end() || it->value().is_null()) return MissingError("messages");
  if (!it->value().is_array()) return TypeError("messages", "an array", it->value());
  const json::array& arr = it->value().as_array();
  if (arr.empty()) {
    return ValueError("messages", "'messages' must contain at least one message", "empty_array");
  }
  TemplateValue::Array out;
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    YZ_ASSIGN_OR_RETURN(TemplateValue m, ParseMessage(arr[i], i));
    out.push_back(std::move(m));
  }
  return TemplateValue(std::move(out));
}

// ---- tools

struct ParsedTools {
  std::vector<ToolFunction> tools;
  TemplateValue value;  // null when none
};

Result<ParsedTools> ParseTools(const json::object& body) {
  ParsedTools out;
  const json::value* v = Field(body, "tools");
  if (v == nullptr) return out;
  if (!v->is_array()) return TypeError("tools", "an array", *v);
  const json::array& arr = v->as_array();
  if (arr.empty()) return out;
  TemplateValue::Array values;
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string param = Index("tools", i);
    if (!arr[i].is_object()) return TypeError(param, "an object", arr[i]);
    const json::object& tool = arr[i].as_object();
    YZ_ASSIGN_OR_RETURN(std::string type, RequiredString(tool, "type", Path(param, "type")));
    if (type == "custom") {
      return UnsupportedError(Path(param, "type"),
                              "custom tools are not supported; use function tools");
    }
    if (type != "function") return EnumError(Path(param, "type"), type, {"function", "custom"});
    const std::string fn_param = Path(param, "function");
    const json::value* fv = Field(tool, "function");
    if (fv == nullptr) return MissingError(fn_param);
    if (!fv->is_object()) return TypeError(fn_param, "an object", *fv);
    const json::object& fn = fv->as_object();
    ToolFunction t;
    YZ_ASSIGN_OR_RETURN(t.name, RequiredString(fn, "name", Path(fn_param, "name")));
    YZ_RETURN_IF_ERROR(CheckName(t.name, Path(fn_param, "name")));
    for (const auto& other : out.tools) {
      if (other.name == t.name) {
        return ValueError(Path(fn_param, "name"),
                          fmt::format("Invalid '{}': duplicate function name '{}'.",
                                      Path(fn_param, "name"), t.name));
      }
    }
    YZ_ASSIGN_OR_RETURN(auto description,
                        GetString(fn, "description", Path(fn_param, "description")));
    t.description = description.value_or("");
    if (const json::value* p = Field(fn, "parameters")) {
      if (!p->is_object()) return TypeError(Path(fn_param, "parameters"), "an object", *p);
      t.parameters_json = json::serialize(*p);
    }
    YZ_ASSIGN_OR_RETURN(auto strict, GetBool(fn, "strict", Path(fn_param, "strict")));
    t.strict = strict.value_or(false);
    out.tools.push_back(std::move(t));
    values.push_back(ToTemplateValue(arr[i]));
  }
  out.value = std::move(values);
  return out;
}

Result<ToolChoice> ParseToolChoice(const json::object& body,
                                   const std::vector<ToolFunction>& tools) {
  ToolChoice choice;
  choice.mode = tools.empty() ? ToolChoice::Mode::kNone : ToolChoice::Mode::kAuto;
  const json::value* v = Field(body, "tool_choice");
  if (v == nullptr) return choice;
  const Error no_tools = ValueError(
      "tool_choice",
      "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.");
  if (v->is_string()) {
    const std::string_view s = v->as_string();
    if (s == "none") {
      choice.mode = ToolChoice::Mode::kNone;
    } else if (s == "auto") {
      // Without tools "auto" can only mean "answer in text": harmless, accepted.
      choice.mode = tools.empty() ? ToolChoice::Mode::kNone : ToolChoice::Mode::kAuto;
    } else if (s == "required") {
      if (tools.empty()) return no_tools;
      choice.mode = ToolChoice::Mode::kRequired;
    } else {
      return EnumError("tool_choice", s, {"none", "auto", "required"});
    }
    return choice;
  }
  if (!v->is_object()) return TypeError("tool_choice", "a string or an object", *v);
  const json::object& o = v->as_object();
  YZ_ASSIGN_OR_RETURN(std::string type, RequiredString(o, "type", "tool_choice.type"));
  if (type != "function") {
    return UnsupportedError("tool_choice.type",
                            fmt::format("unsupported tool_choice type '{}'", type));
  }
  const json::value* fv = Field(o, "function");
  if (fv == nullptr) return MissingError("tool_choice.function");
  if (!fv->is_object()) return TypeError("tool_choice.function", "an object", *fv);
  YZ_ASSIGN_OR_RETURN(choice.function_name,
                      RequiredString(fv->as_object(), "name", "tool_choice.function.name"));
  if (tools.empty()) return no_tools;
  bool found = false;
  for (const auto& t : tools) found = found || t.name == choice.function_name;
  if (!found) {
    return ValueError("tool_choice.function.name",
                      fmt::format("Invalid value for 'tool_choice': no function named '{}' was "
                                  "given in 'tools'.",
                                  choice.function_name));
  }
  choice.mode = ToolChoice::Mode::kFunction;
  return choice;
}

Result<ResponseFormat> ParseResponseFormat(const json::object& body) {
  ResponseFormat rf;
  const json::value* v = Field(body, "response_format");
  if (v == nullptr) return rf;
  if (!v->is_object()) return TypeError("response_format", "an object", *v);
  const json::object& o = v->as_object();
  YZ_ASSIGN_OR_RETURN(std::string type, RequiredString(o, "type", "response_format.type"));
  if (type == "text") return rf;
  if (type == "json_object") {
    rf.type = ResponseFormat::Type::kJsonObject;
    return rf;
  }
  if (type != "json_schema") {
    return EnumError("response_format.type", type, {"text", "json_object", "json_schema"});
  }
  rf.type = ResponseFormat::Type::kJsonSchema;
  const json::value* sv = Field(o, "json_schema");
  if (sv == nullptr) return MissingError("response_format.json_schema");
  if (!sv->is_object()) return TypeError("response_format.json_schema", "an object", *sv);
  const json::object& js = sv->as_object();
  YZ_ASSIGN_OR_RETURN(rf.schema_name,
                      RequiredString(js, "name", "response_format.json_schema.name"));
  YZ_RETURN_IF_ERROR(CheckName(rf.schema_name, "response_format.json_schema.name"));
  if (const json::value* schema = Field(js, "schema")) {
    if (!schema->is_object()) {
      return TypeError("response_format.json_schema.schema", "an object", *schema);
    }
    rf.schema_json = json::serialize(*schema);
  }
  YZ_ASSIGN_OR_RETURN(auto strict, GetBool(js, "strict", "response_format.json_schema.strict"));
  rf.strict = strict.value_or(false);
  return rf;
}

// ---- sampling and the other shared fields

Result<std::vector<std::string>> ParseStop(const json::object& body) {
  std::vector<std::string> stop;
  const json::value* v = Field(body, "stop");
  if (v == nullptr) return stop;
  if (v->is_string()) {
    if (!v->as_string().empty()) stop.emplace_back(v->as_string());
    return stop;
  }
  if (!v->is_array()) return TypeError("stop", "one of a string or array of strings", *v);
  const json::array& arr = v->as_array();
  if (arr.size() > kMaxStopSequences) {
    return ValueError("stop",
                      fmt::format("Invalid 'stop': array too long. Expected an array with maximum "
                                  "length {}, but got an array with length {} instead.",
                                  kMaxStopSequences, arr.size()),
                      "array_above_max_length");
  }
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string()) return TypeError(Index("stop", i), "a string", arr[i]);
    if (!arr[i].as_string().empty()) stop.emplace_back(arr[i].as_string());
  }
  return stop;
}

Result<std::unordered_map<int32_t, float>> ParseLogitBias(const json::object& body) {
  std::unordered_map<int32_t, float> bias;
  const json::value* v = Field(body, "logit_bias");
  if (v == nullptr) return bias;
  if (!v->is_object()) return TypeError("logit_bias", "an object", *v);
  for (const auto& kv : v->as_object()) {
    const std::string_view key = kv.key();
    // A token id in decimal: digits only, no sign, no spaces, fits in int32.
    int64_t id = 0;
    bool ok = !key.empty() && key.size() <= 10;
    for (char c : key) {
      ok = ok && c >= '0' && c <= '9';
      if (ok) id = id * 10 + (c - '0');
    }
    ok = ok && id <= std::numeric_limits<int32_t>::max();
    if (!ok) {
      return ValueError("logit_bias",
                        fmt::format("Invalid key in 'logit_bias': '{}'. Keys must be token ids "
                                    "(non-negative integers written as strings).",
                                    key));
    }
    const std::string param = fmt::format("logit_bias.{}", key);
    YZ_ASSIGN_OR_RETURN(double b, AsNumber(kv.value(), param));
    if (!(b >= -100.0 && b <= 100.0)) {
      return ValueError("logit_bias",
                        fmt::format("Invalid value for 'logit_bias': the bias {} for token {} is "
                                    "outside [-100, 100].",
                                    b, key));
    }
    bias[static_cast<int32_t>(id)] = static_cast<float>(b);
  }
  return bias;
}

// The fields chat and completions share. `chat` selects the differences: chat has
// max_completion_tokens, max_tokens >= 1 and no default; completions max_tokens >= 0, default 16.
Status ParseGenerationParams(const json::object& body, bool chat, GenerationParams* p) {
  engine::SamplingParams& s = p->sampling;
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

  YZ_ASSIGN_OR_RETURN(auto temperature, GetNumber(body, "temperature", "temperature", 0.0, 2.0));
  if (temperature) s.temperature = static_cast<float>(*temperature);
  YZ_ASSIGN_OR_RETURN(auto top_p, GetNumber(body, "top_p", "top_p", 0.0, 1.0));
  if (top_p) {
    if (*top_p == 0.0) {
      // OpenAI accepts 0: only the most likely token survives, which is greedy decoding.
      s.temperature = 0.0f;
      s.top_p = 1.0f;
    } else {
      s.top_p = static_cast<float>(*top_p);
    }
  }
  if (const json::value* seed = Field(body, "seed")) {
    // The full int64 range, and uint64 as sent by clients that use unsigned seeds; the sampler
    // takes the 64 bits either way.
    if (seed->is_uint64()) {
      s.seed = seed->as_uint64();
    } else {
      YZ_ASSIGN_OR_RETURN(int64_t v, AsInt(*seed, "seed"));
      s.seed = static_cast<uint64_t>(v);
    }
  }
  YZ_ASSIGN_OR_RETURN(auto presence,
                      GetNumber(body, "presence_penalty", "presence_penalty", -2.0, 2.0));
  if (presence) s.presence_penalty = static_cast<float>(*presence);
  YZ_ASSIGN_OR_RETURN(auto frequency,
                      GetNumber(body, "frequency_penalty", "frequency_penalty", -2.0, 2.0));
  if (frequency) s.frequency_penalty = static_cast<float>(*frequency);
  YZ_ASSIGN_OR_RETURN(s.logit_bias, ParseLogitBias(body));

  // vLLM / Ollama extensions.
  YZ_ASSIGN_OR_RETURN(auto top_k, GetInt(body, "top_k", "top_k", -1, kInt32Max));
  if (top_k) s.top_k = static_cast<int32_t>(*top_k);
  YZ_ASSIGN_OR_RETURN(auto min_p, GetNumber(body, "min_p", "min_p", 0.0, 1.0));
  if (min_p) s.min_p = static_cast<float>(*min_p);
  YZ_ASSIGN_OR_RETURN(auto repetition,
                      GetNumber(body, "repetition_penalty", "repetition_penalty", 0.0, 1e9));
  if (repetition) {
    if (*repetition == 0.0) {
      return ValueError("repetition_penalty",
                        "Invalid 'repetition_penalty': expected a value > 0, but got 0 instead.");
    }
    s.repetition_penalty = static_cast<float>(*repetition);
  }
  YZ_ASSIGN_OR_RETURN(auto ignore_eos, GetBool(body, "ignore_eos", "ignore_eos"));
  p->ignore_eos = ignore_eos.value_or(false);
  if (const json::value* ka = Field(body, "keep_alive")) {
    YZ_ASSIGN_OR_RETURN(int64_t ms, ParseKeepAliveMs(*ka));
    p->keep_alive_ms = ms;
  }
  YZ_ASSIGN_OR_RETURN(auto user, GetString(body, "user", "user"));
  p->user = user.value_or("");

  YZ_ASSIGN_OR_RETURN(auto n, GetInt(body, "n", "n", 1, kMaxChoices));
  p->n = static_cast<int32_t>(n.value_or(1));
  YZ_ASSIGN_OR_RETURN(p->stop, ParseStop(body));

  if (chat) {
    YZ_ASSIGN_OR_RETURN(auto max_tokens, GetInt(body, "max_tokens", "max_tokens", 1, kInt32Max));
    YZ_ASSIGN_OR_RETURN(auto max_completion, GetInt(body, "max_completion_tokens",
                                                    "max_completion_tokens", 1, kInt32Max));
    // max_completion_tokens replaces the deprecated max_tokens; when both come, it wins.
    if (max_completion) {
      p->max_tokens = static_cast<int32_t>(*max_completion);
    } else if (max_tokens) {
      p->max_tokens = static_cast<int32_t>(*max_tokens);
    }
  } else {
    YZ_ASSIGN_OR_RETURN(auto max_tokens, GetInt(body, "max_tokens", "max_tokens", 0, kInt32Max));
    p->max_tokens = static_cast<int32_t>(max_tokens.value_or(kDefaultCompletionMaxTokens));
  }

  YZ_ASSIGN_OR_RETURN(auto stream, GetBool(body, "stream", "stream"));
  p->stream = stream.value_or(false);
  if (const json::value* so = Field(body, "stream_options")) {
    if (!so->is_object()) return TypeError("stream_options", "an object", *so);
    if (!p->stream) {
      return ValueError("stream_options",
                        "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    }
    YZ_ASSIGN_OR_RETURN(auto include_usage,
                        GetBool(so->as_object(), "include_usage", "stream_options.include_usage"));
    p->include_usage = include_usage.value_or(false);
  }
  return OkStatus();
}

Result<std::vector<int32_t>> ParseTokenIds(const json::array& arr, std::string_view param) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string p = Index(param, i);
    if (!arr[i].is_number()) return TypeError(p, "an integer", arr[i]);
    YZ_ASSIGN_OR_RETURN(int64_t id, AsInt(arr[i], p));
    if (id < 0) return RangeError(p, true, false, 0, static_cast<double>(id));
    if (id > std::numeric_limits<int32_t>::max()) {
      return RangeError(p, true, true, std::numeric_limits<int32_t>::max(),
                        static_cast<double>(id));
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

Result<std::vector<CompletionPrompt>> ParsePrompt(const json::object& body) {
  constexpr std::string_view kExpected =
      "one of a string, array of strings, array of integers, or array of arrays of integers";
  auto it = body.find("prompt");
  if (it == body.end() || it->value().is_null()) return MissingError("prompt");
  const json::value& v = it->value();
  std::vector<CompletionPrompt> prompts;
  if (v.is_string()) {
    prompts.emplace_back(std::string(v.as_string()));
    return prompts;
  }
  if (!v.is_array()) return TypeError("prompt", kExpected, v);
  const json::array& arr = v.as_array();
  if (arr.empty()) {
    return ValueError("prompt",
                      "Invalid 'prompt': empty array. Expected an array with minimum length 1, "
                      "but got an empty array instead.",
                      "empty_array");
  }
  if (arr[0].is_string()) {
    for (size_t i = 0; i < arr.size(); ++i) {
      if (!arr[i].is_string()) return TypeError(Index("prompt", i), "a string", arr[i]);
      prompts.emplace_back(std::string(arr[i].as_string()));
    }
  } else if (arr[0].is_number()) {
    YZ_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseTokenIds(arr, "prompt"));
    prompts.emplace_back(std::move(ids));
  } else if (arr[0].is_array()) {
    for (size_t i = 0; i < arr.size(); ++i) {
      const std::string p = Index("prompt", i);
      if (!arr[i].is_array()) return TypeError(p, "an array of integers", arr[i]);
      if (arr[i].as_array().empty()) {
        return ValueError(p,
                          fmt::format("Invalid '{}': empty array. Expected an array with minimum "
                                      "length 1, but got an empty array instead.",
                                      p),
                          "empty_array");
      }
      YZ_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseTokenIds(arr[i].as_array(), p));
      prompts.emplace_back(std::move(ids));
    }
  } else {
    return TypeError("prompt[0]", "one of a string, an integer, or an array of integers", arr[0]);
  }
  return prompts;
}

// ---- keep_alive

int64_t MsFromDouble(double ms) {
  if (ms < 0) return -1;
  // Beyond ~292 million years: as good as forever.
  if (!(ms < 9e18)) return -1;
  return static_cast<int64_t>(std::llround(ms));
}

// ---- responses

json::value Str(std::string_view s) { return json::value(json::string(ToValidUtf8(s))); }

// A float logprob written with its shortest decimal form (-0.1, not -0.10000000149011612), and
// -9999.0 for -inf or anything below (OpenAI's "very unlikely"; JSON has no infinity).
json::value LogprobValue(float lp) {
  if (!(lp >= -9999.0f) || !std::isfinite(lp)) return -9999.0;
  return std::strtod(fmt::format("{}", lp).c_str(), nullptr);
}

json::value OptLogprob(const std::optional<float>& lp) {
  if (!lp) return nullptr;
  return LogprobValue(*lp);
}

json::array Bytes(std::string_view token) {
  json::array a;
  a.reserve(token.size());
  for (char c : token) a.emplace_back(static_cast<int64_t>(static_cast<unsigned char>(c)));
  return a;
}

json::object UsageObject(const Usage& u) {
  json::object o;
  o["prompt_tokens"] = u.prompt_tokens;
  o["completion_tokens"] = u.completion_tokens;
  o["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  o["prompt_tokens_details"] = {{"cached_tokens", u.cached_prompt_tokens}, {"audio_tokens", 0}};
  o["completion_tokens_details"] = {{"reasoning_tokens", u.reasoning_tokens},
                                    {"audio_tokens", 0},
                                    {"accepted_prediction_tokens", 0},
                                    {"rejected_prediction_tokens", 0}};
  return o;
}

json::object Envelope(const ResponseMeta& meta, std::string_view object) {
  json::object o;
  o["id"] = Str(meta.id);
  o["object"] = object;
  o["created"] = meta.created_s;
  o["model"] = Str(meta.model);
  if (!meta.system_fingerprint.empty()) o["system_fingerprint"] = Str(meta.system_fingerprint);
  return o;
}

// {"content": [ChatCompletionTokenLogprob...], "refusal": null}, or null.
json::value ChatLogprobs(const std::optional<std::vector<TokenLogprob>>& logprobs) {
  if (!logprobs) return nullptr;
  json::array content;
  content.reserve(logprobs->size());
  for (const auto& t : *logprobs) {
    json::array top;
    top.reserve(t.top_logprobs.size());
    for (const auto& alt : t.top_logprobs) {
      top.push_back(json::object{{"token", Str(alt.token)},
                                 {"logprob", LogprobValue(alt.logprob)},
                                 {"bytes", Bytes(alt.token)}});
    }
    content.push_back(json::object{{"token", Str(t.token)},
                                   {"logprob", OptLogprob(t.logprob)},
                                   {"bytes", Bytes(t.token)},
                                   {"top_logprobs", std::move(top)}});
  }
  return json::object{{"content", std::move(content)}, {"refusal", nullptr}};
}

// The legacy completions shape: parallel arrays.
json::value LegacyLogprobs(const std::optional<std::vector<TokenLogprob>>& logprobs) {
  if (!logprobs) return nullptr;
  json::array tokens, token_logprobs, top_logprobs, text_offset;
  for (const auto& t : *logprobs) {
    tokens.push_back(Str(t.token));
    token_logprobs.push_back(OptLogprob(t.logprob));
    if (!t.logprob) {
      top_logprobs.emplace_back(nullptr);
    } else {
      json::object top;
      // Two tokens may decode to the same text; the first (more likely) one is kept.
      for (const auto& alt : t.top_logprobs) {
        top.emplace(ToValidUtf8(alt.token), LogprobValue(alt.logprob));
      }
      top_logprobs.push_back(std::move(top));
    }
    text_offset.emplace_back(t.text_offset);
  }
  return json::object{{"tokens", std::move(tokens)},
                      {"token_logprobs", std::move(token_logprobs)},
                      {"top_logprobs", std::move(top_logprobs)},
                      {"text_offset", std::move(text_offset)}};
}

json::value FinishValue(const std::optional<FinishReason>& reason) {
  if (!reason) return nullptr;
  return json::string(FinishReasonName(*reason));
}

json::object CompletionChoiceObject(const CompletionChoice& c) {
  return json::object{{"index", c.index},
                      {"text", Str(c.text)},
                      {"logprobs", LegacyLogprobs(c.logprobs)},
                      {"finish_reason", FinishValue(c.finish_reason)}};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Requests

Result<ChatCompletionRequest> ParseChatCompletionRequest(const json::object& body) {
  ChatCompletionRequest r;
  YZ_ASSIGN_OR_RETURN(r.model, ParseModel(body));
  YZ_ASSIGN_OR_RETURN(r.messages, ParseMessages(body));
  YZ_ASSIGN_OR_RETURN(ParsedTools tools, ParseTools(body));
  r.tools = std::move(tools.tools);
  r.tools_value = std::move(tools.value);
  YZ_ASSIGN_OR_RETURN(r.tool_choice, ParseToolChoice(body, r.tools));
  YZ_ASSIGN_OR_RETURN(auto parallel, GetBool(body, "parallel_tool_calls", "parallel_tool_calls"));
  r.parallel_tool_calls = parallel.value_or(true);
  YZ_ASSIGN_OR_RETURN(r.response_format, ParseResponseFormat(body));
  if (const json::value* kw = Field(body, "chat_template_kwargs")) {
    if (!kw->is_object()) return TypeError("chat_template_kwargs", "an object", *kw);
    r.chat_template_kwargs = std::move(ToTemplateValue(*kw).as_object());
  }
  YZ_RETURN_IF_ERROR(ParseGenerationParams(body, /*chat=*/true, &r.params));

  YZ_ASSIGN_OR_RETURN(auto logprobs, GetBool(body, "logprobs", "logprobs"));
  YZ_ASSIGN_OR_RETURN(auto top_logprobs,
                      GetInt(body, "top_logprobs", "top_logprobs", 0, engine::kMaxTopLogprobs));
  if (top_logprobs.value_or(0) > 0 && !logprobs.value_or(false)) {
    return ValueError("top_logprobs",
                      "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                      "'top_logprobs' is used.");
  }
  r.params.sampling.logprobs = logprobs.value_or(false);
  r.params.sampling.top_logprobs = static_cast<int32_t>(top_logprobs.value_or(0));
  return r;
}

Result<CompletionRequest> ParseCompletionRequest(const json::object& body) {
  CompletionRequest r;
  YZ_ASSIGN_OR_RETURN(r.model, ParseModel(body));
  YZ_ASSIGN_OR_RETURN(r.prompts, ParsePrompt(body));
  YZ_ASSIGN_OR_RETURN(r.suffix, GetString(body, "suffix", "suffix"));
  YZ_ASSIGN_OR_RETURN(auto echo, GetBool(body, "echo", "echo"));
  r.echo = echo.value_or(false);
  YZ_RETURN_IF_ERROR(ParseGenerationParams(body, /*chat=*/false, &r.params));

  if (const json::value* lp = Field(body, "logprobs")) {
    // The legacy API's logprobs is a count, not chat's boolean.
    if (lp->is_bool()) return TypeError("logprobs", "an integer", *lp);
    YZ_ASSIGN_OR_RETURN(auto n, GetInt(body, "logprobs", "logprobs", 0, kMaxCompletionLogprobs));
    r.logprobs = static_cast<int32_t>(*n);
    r.params.sampling.logprobs = true;
    r.params.sampling.top_logprobs = *r.logprobs;
  }
  YZ_ASSIGN_OR_RETURN(auto best_of, GetInt(body, "best_of", "best_of", 0, 20));
  if (best_of && *best_of != r.params.n) {
    return UnsupportedError(
        "best_of",
        fmt::format("Invalid 'best_of': only best_of equal to n is supported (got best_of={}, "
                    "n={}); leave best_of out and use n.",
                    *best_of, r.params.n));
  }
  return r;
}

Result<TokenizeRequest> ParseTokenizeRequest(const json::object& body) {
  TokenizeRequest r;
  YZ_ASSIGN_OR_RETURN(r.model, ParseModel(body));
  const bool has_prompt = Field(body, "prompt") != nullptr;
  const bool has_messages = Field(body, "messages") != nullptr;
  if (has_prompt == has_messages) {
    return ValueError(has_prompt ? "messages" : "prompt",
                      "Exactly one of 'prompt' and 'messages' must be given.");
  }
  if (has_prompt) {
    YZ_ASSIGN_OR_RETURN(r.prompt, GetString(body, "prompt", "prompt"));
  } else {
    YZ_ASSIGN_OR_RETURN(r.messages, ParseMessages(body));
    YZ_ASSIGN_OR_RETURN(ParsedTools tools, ParseTools(body));
    r.tools_value = std::move(tools.value);
    YZ_ASSIGN_OR_RETURN(auto agp, GetBool(body, "add_generation_prompt", "add_generation_prompt"));
    r.add_generation_prompt = agp.value_or(true);
  }
  YZ_ASSIGN_OR_RETURN(auto special, GetBool(body, "add_special_tokens", "add_special_tokens"));
  // The text form adds BOS like any prompt; a chat template writes its own special tokens.
  r.add_special_tokens = special.value_or(has_prompt);
  YZ_ASSIGN_OR_RETURN(auto strs, GetBool(body, "return_token_strs", "return_token_strs"));
  r.return_token_strs = strs.value_or(false);
  return r;
}

Result<DetokenizeRequest> ParseDetokenizeRequest(const json::object& body) {
  DetokenizeRequest r;
  YZ_ASSIGN_OR_RETURN(r.model, ParseModel(body));
  auto it = body.find("tokens");
  if (it == body.end() || it->value().is_null()) return MissingError("tokens");
  if (!it->value().is_array()) return TypeError("tokens", "an array of integers", it->value());
  YZ_ASSIGN_OR_RETURN(r.tokens, ParseTokenIds(it->value().as_array(), "tokens"));
  return r;
}

Result<int64_t> ParseKeepAliveMs(const json::value& v) {
  if (v.is_number()) {
    YZ_ASSIGN_OR_RETURN(double seconds, AsNumber(v, "keep_alive"));
    return MsFromDouble(seconds * 1000.0);
  }
  if (!v.is_string()) return TypeError("keep_alive", "a string or a number", v);
  // A duration ("5m", "1h30m") or a bare number of seconds in a string, as the registry's
  // per-model setting takes it.
  return hub::ParseKeepAliveMs(v.as_string());
}

// ---------------------------------------------------------------------------------------------
// Responses

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kToolCalls:
      return "tool_calls";
    case FinishReason::kContentFilter:
      return "content_filter";
  }
  return "stop";
}

std::string ChatCompletionJson(const ResponseMeta& meta, std::span<const ChatChoice> choices,
                               const Usage& usage) {
  json::object o = Envelope(meta, "chat.completion");
  json::array arr;
  arr.reserve(choices.size());
  for (const auto& c : choices) {
    json::object message;
    message["role"] = "assistant";
    message["content"] = c.content ? Str(*c.content) : json::value(nullptr);
    message["refusal"] = nullptr;
    if (c.reasoning_content) message["reasoning_content"] = Str(*c.reasoning_content);
    if (!c.tool_calls.empty()) {
      json::array calls;
      for (const auto& tc : c.tool_calls) {
        calls.push_back(json::object{
            {"id", Str(tc.id)},
            {"type", "function"},
            {"function", json::object{{"name", Str(tc.name)}, {"arguments", Str(tc.arguments)}}}});
      }
      message["tool_calls"] = std::move(calls);
    }
    arr.push_back(json::object{{"index", c.index},
                               {"message", std::move(message)},
                               {"logprobs", ChatLogprobs(c.logprobs)},
                               {"finish_reason", FinishReasonName(c.finish_reason)}});
  }
  o["choices"] = std::move(arr);
  o["usage"] = UsageObject(usage);
  return json::serialize(o);
}

std::string ChatCompletionChunkJson(const ResponseMeta& meta, std::span<const ChatDelta> deltas,
                                    bool include_usage) {
  json::object o = Envelope(meta, "chat.completion.chunk");
  json::array arr;
  arr.reserve(deltas.size());
  for (const auto& d : deltas) {
    json::object delta;
    if (d.role) delta["role"] = Str(*d.role);
    if (d.content) delta["content"] = Str(*d.content);
    if (d.reasoning_content) delta["reasoning_content"] = Str(*d.reasoning_content);
    if (!d.tool_calls.empty()) {
      json::array calls;
      for (const auto& tc : d.tool_calls) {
        json::object call{{"index", tc.index}};
        if (tc.id) {
          call["id"] = Str(*tc.id);
          call["type"] = "function";
        }
        json::object fn;
        if (tc.name) fn["name"] = Str(*tc.name);
        if (tc.arguments) fn["arguments"] = Str(*tc.arguments);
        call["function"] = std::move(fn);
        calls.push_back(std::move(call));
      }
      delta["tool_calls"] = std::move(calls);
    }
    arr.push_back(json::object{{"index", d.index},
                               {"delta", std::move(delta)},
                               {"logprobs", ChatLogprobs(d.logprobs)},
                               {"finish_reason", FinishValue(d.finish_reason)}});
  }
  o["choices"] = std::move(arr);
  if (include_usage) o["usage"] = nullptr;
  return json::serialize(o);
}

std::string ChatCompletionUsageChunkJson(const ResponseMeta& meta, const Usage& usage) {
  json::object o = Envelope(meta, "chat.completion.chunk");
  o["choices"] = json::array();
  o["usage"] = UsageObject(usage);
  return json::serialize(o);
}

std::string TextCompletionJson(const ResponseMeta& meta, std::span<const CompletionChoice> choices,
                               const Usage& usage) {
  json::object o = Envelope(meta, "text_completion");
  json::array arr;
  arr.reserve(choices.size());
  for (const auto& c : choices) {
    json::object choice = CompletionChoiceObject(c);
    // A finished response always has a reason; a missing one is the caller's slip, not null.
    if (!c.finish_reason) choice["finish_reason"] = "stop";
    arr.push_back(std::move(choice));
  }
  o["choices"] = std::move(arr);
  o["usage"] = UsageObject(usage);
  return json::serialize(o);
}

std::string TextCompletionChunkJson(const ResponseMeta& meta,
                                    std::span<const CompletionChoice> choices, bool include_usage) {
  json::object o = Envelope(meta, "text_completion");
  json::array arr;
  arr.reserve(choices.size());
  for (const auto& c : choices) arr.push_back(CompletionChoiceObject(c));
  o["choices"] = std::move(arr);
  if (include_usage) o["usage"] = nullptr;
  return json::serialize(o);
}

std::string TextCompletionUsageChunkJson(const ResponseMeta& meta, const Usage& usage) {
  json::object o = Envelope(meta, "text_completion");
  o["choices"] = json::array();
  o["usage"] = UsageObject(usage);
  return json::serialize(o);
}

std::string TokenizeResponseJson(std::span<const int32_t> tokens, int64_t max_model_len,
                                 const std::vector<std::string>* token_strs) {
  json::object o;
  o["count"] = static_cast<int64_t>(tokens.size());
  o["max_model_len"] = max_model_len;
  json::array ids;
  ids.reserve(tokens.size());
  for (int32_t t : tokens) ids.emplace_back(t);
  o["tokens"] = std::move(ids);
  if (token_strs != nullptr) {
    json::array strs;
    strs.reserve(token_strs->size());
    for (const auto& s : *token_strs) strs.push_back(Str(s));
    o["token_strs"] = std::move(strs);
  }
  return json::serialize(o);
}

std::string DetokenizeResponseJson(std::string_view text) {
  json::object o;
  o["prompt"] = Str(text);
  return json::serialize(o);
}

std::string NewResponseId(std::string_view prefix) {
  std::string id = NewId(prefix);
  id[prefix.size()] = '-';
  return id;
}

std::string NewToolCallId() { return NewId("call"); }

std::string StreamErrorJson(const Error& error) { return HttpResponse::FromError(error).body; }

std::string ToValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = byte(i);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Length of the sequence and the range of its second byte (Unicode Table 3-7), which rules
    // out overlong forms, surrogates and code points above U+10FFFF.
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    // The maximal ill-formed subpart ends at the first byte that cannot continue the sequence;
    // it becomes one U+FFFD.
    size_t k = i + 1;
    if (len > 0 && k < s.size() && byte(k) >= lo && byte(k) <= hi) {
      ++k;
      while (k < i + len && k < s.size() && byte(k) >= 0x80 && byte(k) <= 0xBF) ++k;
    }
    if (len > 0 && k == i + len) {
      out.append(s.substr(i, len));
    } else {
      out += kReplacement;
    }
    i = k;
  }
  return out;
}

}  // namespace yunzhi::api
