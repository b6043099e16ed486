#include "api/multipart.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace yunzhi::api {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The value of parameter `key` in a header value like `form-data; name="f"; filename="a.pdf"`.
// Handles quoted strings with backslash escapes and RFC 5987 `filename*=UTF-8''...`.
std::string Param(std::string_view header, std::string_view key) {
  std::string extended;
  size_t pos = 0;
  while (pos < header.size()) {
    size_t semi = header.find(';', pos);
    if (semi == std::string_view::npos) break;
    pos = semi + 1;
    while (pos < header.size() && header[pos] == ' ') ++pos;
    size_t eq = header.find('=', pos);
    if (eq == std::string_view::npos) break;
    std::string name = Lower(Trim(header.substr(pos, eq - pos)));
    pos = eq + 1;
    std::string value;
    if (pos < header.size() && header[pos] == '"') {
      ++pos;
      while (pos < header.size() && header[pos] != '"') {
        // Browsers send Windows paths with raw backslashes: only \" is an escape.
        if (header[pos] == '\\' && pos + 1 < header.size() && header[pos + 1] == '"') ++pos;
        value += header[pos++];
      }
      ++pos;
    } else {
      size_t end = header.find(';', pos);
      value = std::string(Trim(header.substr(pos, end == std::string_view::npos ? end : end - pos)));
      pos = end == std::string_view::npos ? header.size() : end;
    }
    if (name == key) return value;
    if (name == std::string(key) + "*") {
      // charset'lang'percent-encoded
      size_t q = value.find('\'');
      size_t q2 = q == std::string::npos ? q : value.find('\'', q + 1);
      std::string enc = q2 == std::string::npos ? value : value.substr(q2 + 1);
      std::string decoded;
      for (size_t i = 0; i < enc.size(); ++i) {
        if (enc[i] == '%' && i + 2 < enc.size() && std::isxdigit(static_cast<unsigned char>(enc[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(enc[i + 2]))) {
          decoded += static_cast<char>(std::stoi(enc.substr(i + 1, 2), nullptr, 16));
          i += 2;
        } else {
          decoded += enc[i];
        }
      }
      extended = decoded;
    }
  }
  return extended;
}

}  // namespace

Result<std::string> MultipartBoundary(std::string_view content_type) {
  std::string lower = Lower(content_type);
  if (lower.rfind("multipart/form-data", 0) != 0) {
    return Error(Code::kUnsupportedMediaType,
                 fmt::format("expected multipart/form-data, got '{}'", content_type));
  }
  std::string boundary = Param(content_type, "boundary");
  if (boundary.empty() || boundary.size() > 200) {
    return InvalidArgumentError("multipart/form-data without a valid boundary parameter");
  }
  return boundary;
}

Result<std::vector<FormPart>> ParseMultipart(std::string_view body, std::string_view boundary) {
  const std::string delim = "--" + std::string(boundary);
  std::vector<FormPart> parts;
  size_t pos = body.find(delim);
  if (pos == std::string_view::npos) {
    return InvalidArgumentError("malformed multipart body: the boundary never appears");
  }
  pos += delim.size();
  for (;;) {
    if (body.substr(pos, 2) == "--") return parts;  // closing delimiter
    // Rest of the delimiter line.
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string_view::npos) {
      return InvalidArgumentError("malformed multipart body: unterminated boundary line");
    }
    pos = eol + 2;
    FormPart part;
    bool disposition = false;
    for (;;) {
      eol = body.find("\r\n", pos);
      if (eol == std::string_view::npos) {
        return InvalidArgumentError("malformed multipart body: unterminated part headers");
      }
      std::string_view line = body.substr(pos, eol - pos);
      pos = eol + 2;
      if (line.empty()) break;
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string name = Lower(Trim(line.substr(0, colon)));
      std::string_view value = Trim(line.substr(colon + 1));
      if (name == "content-disposition") {
        disposition = true;
        part.name = Param(value, "name");
        part.filename = Param(value, "filename");
      } else if (name == "content-type") {
        part.content_type = std::string(value);
      }
    }
    if (!disposition) {
      return InvalidArgumentError("malformed multipart body: a part has no Content-Disposition");
    }
    const std::string next = "\r\n" + delim;
    size_t end = body.find(next, pos);
    if (end == std::string_view::npos) {
      return InvalidArgumentError("malformed multipart body: a part is not terminated by the "
                                  "boundary");
    }
    part.data = std::string(body.substr(pos, end - pos));
    parts.push_back(std::move(part));
    pos = end + next.size();
  }
}

}  // namespace yunzhi::api
