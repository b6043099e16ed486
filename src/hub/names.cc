// Model names: `[namespace/]name[:tag]`.
#include <cctype>
#include <string>

#include <fmt/format.h>

#include "yunzhi/hub/registry.h"

namespace yunzhi::hub {
namespace {

constexpr size_t kMaxPartChars = 64;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}
bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Why `part` is not a valid namespace/name/tag, or "" when it is.
std::string PartProblem(std::string_view part, std::string_view what) {
  if (part.empty()) return fmt::format("the {} is empty", what);
  if (part.size() > kMaxPartChars) {
    return fmt::format("the {} is longer than {} characters", what, kMaxPartChars);
  }
  for (char c : part) {
    if (c >= 'A' && c <= 'Z') return fmt::format("the {} must be lowercase", what);
  }
  if (!IsAlnum(part.front())) {
    return fmt::format("the {} must start with a lowercase letter or a digit", what);
  }
  for (char c : part) {
    if (!IsNameChar(c)) {
      return fmt::format("the {} may hold only lowercase letters, digits, '.', '_' and '-'", what);
    }
  }
  return {};
}

}  // namespace

Status ValidateModelName(std::string_view name) {
  std::string_view rest = name;
  std::string problem;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    problem = PartProblem(rest.substr(0, slash), "namespace");
    rest.remove_prefix(slash + 1);
  }
  if (problem.empty()) {
    std::string_view tag;
    bool has_tag = false;
    if (size_t colon = rest.find(':'); colon != std::string_view::npos) {
      tag = rest.substr(colon + 1);
      rest = rest.substr(0, colon);
      has_tag = true;
    }
    problem = PartProblem(rest, "name");
    if (problem.empty() && has_tag) problem = PartProblem(tag, "tag");
  }
  if (problem.empty()) return OkStatus();
  return InvalidArgumentError(
      fmt::format("invalid model name '{}': {} (expected [namespace/]name[:tag], each part 1-{} "
                  "lowercase letters, digits, '.', '_' or '-', starting with a letter or digit)",
                  name.substr(0, 200), problem, kMaxPartChars),
      "name");
}

Result<std::string> DefaultModelName(const std::filesystem::path& source) {
  std::filesystem::path p = source.lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "dir/" names the directory
  std::string base = p.filename().string();
  std::string lower;
  for (char c : base) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.size() > 5 && lower.ends_with(".gguf")) lower.resize(lower.size() - 5);
  std::string out;
  for (char c : lower) {
    if (IsNameChar(c)) {
      out += c;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  // Trim to something that starts and ends with a letter or digit.
  size_t begin = 0;
  while (begin < out.size() && !IsAlnum(out[begin])) ++begin;
  out = out.substr(begin);
  if (out.size() > kMaxPartChars) out.resize(kMaxPartChars);
  while (!out.empty() && !IsAlnum(out.back())) out.pop_back();
  if (out.empty() || !ValidateModelName(out)) {
    return InvalidArgumentError(
        fmt::format("cannot derive a model name from '{}': give one (--name / \"name\")",
                    source.string()),
        "name");
  }
  return out;
}

}  // namespace yunzhi::hub
