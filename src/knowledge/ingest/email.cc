// E-mail (RFC 5322 + MIME): Subject as heading, From/To/Cc/Date lines, the body (text/plain
// preferred over text/html), and attachments extracted recursively under their own heading.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

constexpr int kMaxMimeDepth = 32;
constexpr size_t kMaxParts = 1000;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

struct Header {
  std::string name;  // lowercased
  std::string value;
};

// Splits a MIME entity at the first empty line; unfolds continuation lines.
void SplitEntity(std::string_view entity, std::vector<Header>* headers, std::string_view* body) {
  size_t pos = 0;
  *body = {};
  while (pos < entity.size()) {
    size_t nl = entity.find('\n', pos);
    size_t end = nl == std::string_view::npos ? entity.size() : nl;
    std::string_view line = entity.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t next = nl == std::string_view::npos ? entity.size() : nl + 1;
    if (line.empty()) {
      *body = entity.substr(next);
      return;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !headers->empty()) {
      headers->back().value += ' ';
      headers->back().value += Trim(line);
    } else if (size_t colon = line.find(':'); colon != std::string_view::npos && colon > 0) {
      headers->push_back({Lower(Trim(line.substr(0, colon))), std::string(Trim(line.substr(colon + 1)))});
    } else {
      // Not a header line: the headers ended without an empty line.
      *body = entity.substr(pos);
      return;
    }
    pos = next;
  }
}

std::string HeaderValue(const std::vector<Header>& hs, std::string_view name) {
  for (auto& h : hs) {
    if (h.name == name) return h.value;
  }
  return "";
}

// "text/plain; charset=\"UTF-8\"; name=a.txt" -> type "text/plain" and parameters.
std::string ParamOf(std::string_view value, std::string_view param) {
  std::string lower = Lower(value);
  size_t pos = 0;
  while ((pos = lower.find(';', pos)) != std::string::npos) {
    ++pos;
    size_t eq = lower.find('=', pos);
    if (eq == std::string::npos) break;
    std::string key(Trim(std::string_view(lower).substr(pos, eq - pos)));
    size_t vstart = eq + 1;
    while (vstart < value.size() && value[vstart] == ' ') ++vstart;
    std::string v;
    size_t vend;
    if (vstart < value.size() && value[vstart] == '"') {
      vend = value.find('"', vstart + 1);
      if (vend == std::string_view::npos) vend = value.size();
      v = std::string(value.substr(vstart + 1, vend - vstart - 1));
    } else {
      vend = value.find(';', vstart);
      if (vend == std::string_view::npos) vend = value.size();
      v = std::string(Trim(value.substr(vstart, vend - vstart)));
    }
    // RFC 2231 "filename*=utf-8''name%20x" is reduced to its percent-decoded value.
    if (key == std::string(param) + "*") {
      size_t q = v.find("''");
      std::string raw = q == std::string::npos ? v : v.substr(q + 2);
      std::string dec;
      for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '%' && i + 2 < raw.size() && std::isxdigit(static_cast<unsigned char>(raw[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(raw[i + 2]))) {
          dec.push_back(static_cast<char>(std::stoi(raw.substr(i + 1, 2), nullptr, 16)));
          i += 2;
        } else {
          dec.push_back(raw[i]);
        }
      }
      return dec;
    }
    if (key == param) return v;
    pos = vend;
  }
  return "";
}

std::string MediaType(std::string_view value) {
  return Lower(Trim(value.substr(0, value.find(';'))));
}

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string DecodeQuotedPrintable(std::string_view s, bool header) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (header && c == '_') {
      out.push_back(' ');
    } else if (c == '=' && i + 1 < s.size()) {
      if (s[i + 1] == '\n') {
        ++i;  // soft line break
      } else if (s[i + 1] == '\r' && i + 2 < s.size() && s[i + 2] == '\n') {
        i += 2;
      } else if (i + 2 < s.size() && HexVal(s[i + 1]) >= 0 && HexVal(s[i + 2]) >= 0) {
        out.push_back(static_cast<char>(HexVal(s[i + 1]) * 16 + HexVal(s[i + 2])));
        i += 2;
      } else {
        out.push_back(c);
      }
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string DecodeBase64(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+' || c == '-') v = 62;
    else if (c == '/' || c == '_') v = 63;
    else if (c == '=') break;
    else continue;  // line breaks and junk
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string ToUtf8(std::string_view bytes, std::string_view charset) {
  std::string used;
  auto r = DecodeToUtf8(bytes, Lower(charset), &used);
  return r ? *r : std::string(bytes);
}

// RFC 2047 encoded words: "=?utf-8?B?5Lit5paH?= =?utf-8?Q?caf=C3=A9?=". Whitespace between two
// encoded words is dropped.
std::string DecodeHeader(std::string_view v) {
  std::string out;
  size_t pos = 0;
  bool last_encoded = false;
  while (pos < v.size()) {
    size_t start = v.find("=?", pos);
    if (start == std::string_view::npos) {
      out += v.substr(pos);
      break;
    }
    size_t q1 = v.find('?', start + 2);
    size_t q2 = q1 == std::string_view::npos ? q1 : v.find('?', q1 + 1);
    size_t end = q2 == std::string_view::npos ? q2 : v.find("?=", q2 + 1);
    if (end == std::string_view::npos || q2 != q1 + 2) {
      out += v.substr(pos, start + 2 - pos);
      pos = start + 2;
      last_encoded = false;
      continue;
    }
    std::string_view between = v.substr(pos, start - pos);
    if (!(last_encoded && Trim(between).empty())) out += between;
    std::string charset(v.substr(start + 2, q1 - start - 2));
    if (size_t star = charset.find('*'); star != std::string::npos) charset.resize(star);  // language
    char enc = static_cast<char>(std::toupper(static_cast<unsigned char>(v[q1 + 1])));
    std::string_view text = v.substr(q2 + 1, end - q2 - 1);
    std::string raw = enc == 'B' ? DecodeBase64(text) : DecodeQuotedPrintable(text, true);
    out += ToUtf8(raw, charset);
    pos = end + 2;
    last_encoded = true;
  }
  return out;
}

struct Part {
  std::string type;      // lowercased media type
  std::string charset;
  std::string filename;  // decoded; empty for inline bodies
  bool attachment = false;
  std::string content;   // transfer-decoded bytes
};

void Walk(std::string_view entity, int depth, bool in_alternative, std::vector<Part>* parts) {
  if (depth > kMaxMimeDepth || parts->size() >= kMaxParts) return;
  std::vector<Header> headers;
  std::string_view body;
  SplitEntity(entity, &headers, &body);
  std::string ctype = HeaderValue(headers, "content-type");
  std::string type = ctype.empty() ? "text/plain" : MediaType(ctype);
  if (type.rfind("multipart/", 0) == 0) {
    std::string boundary = ParamOf(ctype, "boundary");
    if (boundary.empty()) return;
    std::string delim = "--" + boundary;
    bool alt = type == "multipart/alternative";
    size_t pos = body.find(delim);
    while (pos != std::string_view::npos) {
      size_t line_end = body.find('\n', pos);
      if (body.substr(pos + delim.size(), 2) == "--" || line_end == std::string_view::npos) break;
      size_t next = body.find("\n" + delim, line_end);
      std::string_view child = body.substr(line_end + 1, next == std::string_view::npos
                                                             ? std::string_view::npos
                                                             : next - line_end - 1);
      Walk(child, depth + 1, alt, parts);
      pos = next == std::string_view::npos ? next : next + 1;
    }
    return;
  }
  Part p;
  p.type = type;
  p.charset = ParamOf(ctype, "charset");
  std::string disposition = HeaderValue(headers, "content-disposition");
  p.filename = DecodeHeader(ParamOf(disposition, "filename"));
  if (p.filename.empty()) p.filename = DecodeHeader(ParamOf(ctype, "name"));
  p.attachment = MediaType(disposition) == "attachment" || !p.filename.empty() ||
                 (type != "text/plain" && type != "text/html" && !in_alternative);
  std::string cte = Lower(Trim(HeaderValue(headers, "content-transfer-encoding")));
  if (cte == "base64") {
    p.content = DecodeBase64(body);
  } else if (cte == "quoted-printable") {
    p.content = DecodeQuotedPrintable(body, false);
  } else {
    p.content = std::string(body);
  }
  parts->push_back(std::move(p));
}

}  // namespace

bool LooksLikeEmail(std::string_view bytes) {
  std::vector<Header> headers;
  std::string_view body;
  SplitEntity(bytes.substr(0, 64 * 1024), &headers, &body);
  if (headers.empty() || headers.size() > 500) return false;
  bool from = false;
  int others = 0;
  for (auto& h : headers) {
    if (h.name.find(' ') != std::string::npos) return false;
    if (h.name == "from") from = true;
    if (h.name == "to" || h.name == "subject" || h.name == "date" || h.name == "message-id" ||
        h.name == "mime-version" || h.name == "received") {
      ++others;
    }
  }
  return from && others >= 2;
}

Result<Parsed> ParseEmail(std::string_view bytes, const Context& ctx) {
  std::vector<Header> headers;
  std::string_view body;
  SplitEntity(bytes, &headers, &body);
  if (headers.empty()) return InvalidArgumentError("corrupt e-mail: no header fields");
  std::vector<Part> parts;
  Walk(bytes, 0, false, &parts);

  Parsed out;
  DocBuilder doc;
  std::string subject = DecodeHeader(HeaderValue(headers, "subject"));
  doc.Heading(1, subject.empty() ? "(no subject)" : subject);
  for (auto [name, label] : {std::pair{"from", "From"}, {"to", "To"}, {"cc", "Cc"}, {"date", "Date"}}) {
    std::string v = DecodeHeader(HeaderValue(headers, name));
    if (!v.empty()) doc.Add(BlockKind::kParagraph, fmt::format("{}: {}", label, v));
  }
  // Body: the first text/plain part that is not an attachment; else the first text/html one.
  const Part* plain = nullptr;
  const Part* html = nullptr;
  for (const Part& p : parts) {
    if (p.attachment) continue;
    if (p.type == "text/plain" && plain == nullptr) plain = &p;
    if (p.type == "text/html" && html == nullptr) html = &p;
  }
  if (plain != nullptr) {
    auto blocks = ParsePlainText(ToUtf8(plain->content, plain->charset));
    if (blocks) doc.Append(std::move(*blocks));
  } else if (html != nullptr) {
    std::string charset = html->charset.empty() ? HtmlMetaCharset(html->content) : html->charset;
    auto blocks = ParseHtml(ToUtf8(html->content, charset), ctx.options.max_nesting);
    if (blocks) doc.Append(std::move(*blocks));
  }
  for (const Part& p : parts) {
    if (!p.attachment || p.content.empty()) continue;
    std::string name = p.filename.empty() ? p.type : p.filename;
    if (ctx.depth + 1 > ctx.options.max_attachment_depth) {
      out.warnings.push_back(fmt::format("attachment {}: nested too deeply, skipped", name));
      continue;
    }
    Context inner{ctx.options, ctx.depth + 1};
    auto sub = ExtractNested(p.content, p.filename, inner);
    if (!sub) {
      out.warnings.push_back(fmt::format("attachment {}: {}", name, sub.error().message));
      continue;
    }
    doc.Heading(2, fmt::format("Attachment: {}", name));
    for (Block& b : sub->blocks) b.page = 0;
    doc.Append(std::move(sub->blocks));
    out.ocr_page_count += sub->ocr_page_count;
    for (auto& w : sub->warnings) out.warnings.push_back(fmt::format("attachment {}: {}", name, w));
  }
  out.blocks = doc.Take();
  return out;
}

}  // namespace yunzhi::knowledge::internal
