#include "engine/jinja/lexer.h"

#include <cstdio>
#include <limits>

#include "engine/jinja/utf8.h"
#include "engine/jinja/value.h"

namespace yunzhi::engine::jinja {
namespace {

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsAsciiDigit(c); }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Operators, longest first so that "**" wins over "*".
constexpr std::string_view kOperators[] = {
    "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
    "]",  "(",  ")",  "{",  "}",  ">",  "<", "=", ".", ":", "|", ",", ";",
};

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(source) {}

  std::vector<Token> Run() {
    while (pos_ < src_.size()) LexRoot();
    Token eof;
    eof.type = TokenType::kEof;
    eof.offset = static_cast<uint32_t>(src_.size());
    tokens_.push_back(std::move(eof));
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void Error(std::string message, size_t offset) const {
    throw TemplateError(TemplateError::Kind::kSyntax, std::move(message),
                        static_cast<uint32_t>(offset));
  }

  bool At(size_t pos, std::string_view s) const { return src_.substr(pos, s.size()) == s; }

  // Python's `\s*` from `pos`; returns the position after the whitespace.
  size_t SkipSpace(size_t pos) const {
    while (pos < src_.size()) {
      size_t len = 0;
      if (!utf8::IsSpace(utf8::Decode(src_, pos, &len))) break;
      pos += len;
    }
    return pos;
  }

  // Whether src_[begin, end) is non-empty and all whitespace (`\s+` fullmatch).
  bool AllSpace(size_t begin, size_t end) const { return begin < end && SkipSpace(begin) >= end; }

  void Emit(TokenType type, std::string text, size_t offset) {
    Token t;
    t.type = type;
    t.text = std::move(text);
    t.offset = static_cast<uint32_t>(offset);
    tokens_.push_back(std::move(t));
  }

  // Emits the text src_[begin, end) that precedes a tag, after whitespace control.
  // `sign` is the tag's '-', '+' or 0; `lstrip` whether lstrip_blocks applies to this tag kind.
  void EmitText(size_t begin, size_t end, char sign, bool lstrip) {
    if (sign == '-') {
      std::string_view text = utf8::StripSpace(src_.substr(begin, end - begin), false, true);
      end = begin + text.size();
    } else if (sign != '+' && lstrip) {
      size_t nl = src_.substr(begin, end - begin).rfind('\n');
      size_t line_start = nl == std::string_view::npos ? begin : begin + nl + 1;
      if ((line_start > begin || line_starting_) && AllSpace(line_start, end)) end = line_start;
    }
    if (end > begin) Emit(TokenType::kData, std::string(src_.substr(begin, end - begin)), begin);
  }

  // Ends a tag whose end delimiter occupies [pos, delim_end): applies `-` / trim_blocks and
  // records whether the consumed text ended a line (for the next lstrip decision).
  void FinishTag(size_t delim_end, char end_sign, bool trim) {
    size_t after = delim_end;
    if (end_sign == '-') {
      after = SkipSpace(delim_end);
    } else if (end_sign != '+' && trim && after < src_.size() && src_[after] == '\n') {
      ++after;
    }
    line_starting_ = after > 0 && src_[after - 1] == '\n';
    pos_ = after;
  }

  void LexRoot() {
    size_t start = pos_;
    size_t tag = std::string_view::npos;
    for (size_t i = pos_; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        tag = i;
        break;
      }
    }
    if (tag == std::string_view::npos) {
      Emit(TokenType::kData, std::string(src_.substr(start)), start);
      pos_ = src_.size();
      return;
    }
    char kind = src_[tag + 1];
    char sign = 0;
    if (tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+')) {
      sign = src_[tag + 2];
    }
    size_t body = tag + 2 + (sign ? 1 : 0);
    if (kind == '#') {
      EmitText(start, tag, sign, /*lstrip=*/true);
      LexComment(body);
    } else if (kind == '%') {
      size_t raw_body = 0;
      char raw_end_sign = 0;
      size_t raw_open_end = MatchRawOpen(body, &raw_end_sign, &raw_body);
      EmitText(start, tag, sign, /*lstrip=*/true);
      if (raw_open_end != 0) {
        LexRaw(raw_open_end, raw_end_sign);
      } else {
        Emit(TokenType::kBlockBegin, "{%", tag);
        LexTag(body, /*block=*/true);
      }
    } else {
      EmitText(start, tag, sign, /*lstrip=*/false);
      Emit(TokenType::kVariableBegin, "{{", tag);
      LexTag(body, /*block=*/false);
    }
  }

  // Matches `\s*raw\s*(-%}\s*|%})` at `pos`. Returns the end of the match (0 if none).
  size_t MatchRawOpen(size_t pos, char* end_sign, size_t* body) const {
    size_t p = SkipSpace(pos);
    if (!At(p, "raw")) return 0;
    p = SkipSpace(p + 3);
    if (At(p, "-%}")) {
      *end_sign = '-';
      return SkipSpace(p + 3);
    }
    if (At(p, "%}")) {
      *end_sign = 0;
      return p + 2;
    }
    return 0;
  }

  void LexRaw(size_t content_begin, char open_end_sign) {
    line_starting_ = content_begin > 0 && src_[content_begin - 1] == '\n';
    // Find `{%[-+]?\s*endraw\s*(+%}|-%}\s*|%}\n?)`.
    for (size_t i = content_begin; i + 1 < src_.size(); ++i) {
      if (src_[i] != '{' || src_[i + 1] != '%') continue;
      size_t p = i + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = SkipSpace(p);
      if (!At(p, "endraw")) continue;
      p = SkipSpace(p + 6);
      char end_sign = 0;
      size_t delim_end = 0;
      if (At(p, "+%}") || At(p, "-%}")) {
        end_sign = src_[p];
        delim_end = p + 3;
      } else if (At(p, "%}")) {
        delim_end = p + 2;
      } else {
        continue;
      }
      EmitText(content_begin, i, sign, /*lstrip=*/true);
      FinishTag(delim_end, end_sign, /*trim=*/true);
      return;
    }
    Error("Missing end of raw directive", content_begin);
  }

  void LexComment(size_t body) {
    for (size_t i = body; i + 1 < src_.size(); ++i) {
      if (src_[i] != '#' || src_[i + 1] != '}') continue;
      char end_sign = 0;
      if (i > body && (src_[i - 1] == '-' || src_[i - 1] == '+')) end_sign = src_[i - 1];
      FinishTag(i + 2, end_sign, /*trim=*/true);
      return;
    }
    Error("Missing end of comment tag", body);
  }

  void LexTag(size_t pos, bool block) {
    std::vector<char> balance;  // expected closing brackets
    for (;;) {
      if (pos >= src_.size()) {
        Error(block ? "unexpected end of template, expected '%}'"
                    : "unexpected end of template, expected '}}'",
              pos);
      }
      if (balance.empty()) {
        if (block) {
          if (At(pos, "+%}") || At(pos, "-%}")) {
            Emit(TokenType::kBlockEnd, "%}", pos);
            FinishTag(pos + 3, src_[pos], /*trim=*/true);
            return;
          }
          if (At(pos, "%}")) {
            Emit(TokenType::kBlockEnd, "%}", pos);
            FinishTag(pos + 2, 0, /*trim=*/true);
            return;
          }
        } else {
          if (At(pos, "-}}")) {
            Emit(TokenType::kVariableEnd, "}}", pos);
            FinishTag(pos + 3, '-', /*trim=*/false);
            return;
          }
          if (At(pos, "}}")) {
            Emit(TokenType::kVariableEnd, "}}", pos);
            FinishTag(pos + 2, 0, /*trim=*/false);
            return;
          }
        }
      }
      size_t next = SkipSpace(pos);
      if (next != pos) {
        pos = next;
        continue;
      }
      if (size_t end = MatchFloat(pos); end != 0) {
        pos = end;
        continue;
      }
      if (size_t end = MatchInteger(pos); end != 0) {
        pos = end;
        continue;
      }
      char c = src_[pos];
      if (IsNameStart(c)) {
        size_t end = pos + 1;
        while (end < src_.size() && IsNameChar(src_[end])) ++end;
        Emit(TokenType::kName, std::string(src_.substr(pos, end - pos)), pos);
        pos = end;
        continue;
      }
      if (c == '\'' || c == '"') {
        pos = LexString(pos);
        continue;
      }
      bool matched = false;
      for (std::string_view op : kOperators) {
        if (!At(pos, op)) continue;
        matched = true;
        if (op == "{" || op == "(" || op == "[") {
          balance.push_back(op == "{" ? '}' : (op == "(" ? ')' : ']'));
        } else if (op == "}" || op == ")" || op == "]") {
          if (balance.empty()) Error("unexpected '" + std::string(op) + "'", pos);
          char expected = balance.back();
          balance.pop_back();
          if (expected != op[0]) {
            Error(
                "unexpected '" + std::string(op) + "', expected '" + std::string(1, expected) + "'",
                pos);
          }
        }
        Emit(TokenType::kOperator, std::string(op), pos);
        pos += op.size();
        break;
      }
      if (!matched) {
        size_t len = 0;
        utf8::Decode(src_, pos, &len);
        Error("unexpected char " + StringRepr(src_.substr(pos, len)), pos);
      }
    }
  }

  // `(\d+_)*\d+` at pos: returns the end, or pos when there is no digit.
  size_t MatchDigits(size_t pos) const {
    size_t p = pos;
    if (p >= src_.size() || !IsAsciiDigit(src_[p])) return pos;
    while (p < src_.size() && IsAsciiDigit(src_[p])) ++p;
    while (p + 1 < src_.size() && src_[p] == '_' && IsAsciiDigit(src_[p + 1])) {
      ++p;
      while (p < src_.size() && IsAsciiDigit(src_[p])) ++p;
    }
    return p;
  }

  size_t MatchFloat(size_t pos) {
    if (pos > 0 && src_[pos - 1] == '.') return 0;
    size_t int_end = MatchDigits(pos);
    if (int_end == pos) return 0;
    size_t p = int_end;
    bool has_fraction = false;
    if (p < src_.size() && src_[p] == '.') {
      size_t frac_end = MatchDigits(p + 1);
      if (frac_end != p + 1) {
        has_fraction = true;
        p = frac_end;
      }
    }
    bool has_exponent = false;
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      size_t exp_end = MatchDigits(q);
      if (exp_end != q) {
        has_exponent = true;
        p = exp_end;
      }
    }
    if (!has_fraction && !has_exponent) return 0;
    std::string text;
    for (size_t i = pos; i < p; ++i) {
      if (src_[i] != '_') text.push_back(src_[i]);
    }
    Token t;
    t.type = TokenType::kFloat;
    t.text = std::string(src_.substr(pos, p - pos));
    t.float_value = std::strtod(text.c_str(), nullptr);
    t.offset = static_cast<uint32_t>(pos);
    tokens_.push_back(std::move(t));
    return p;
  }

  size_t MatchInteger(size_t pos) {
    char c = src_[pos];
    if (!IsAsciiDigit(c)) return 0;
    int base = 10;
    size_t p = pos;
    std::string digits;
    auto take = [&](auto is_digit) {
      // (_?d)+ : an optional underscore before each digit.
      for (;;) {
        size_t q = p;
        if (q < src_.size() && src_[q] == '_') ++q;
        if (q < src_.size() && is_digit(src_[q])) {
          digits.push_back(src_[q]);
          p = q + 1;
        } else {
          break;
        }
      }
    };
    char prefix = pos + 1 < src_.size() ? static_cast<char>(src_[pos + 1] | 0x20) : 0;
    if (c == '0' && (prefix == 'b' || prefix == 'o' || prefix == 'x')) {
      base = prefix == 'b' ? 2 : (prefix == 'o' ? 8 : 16);
      p = pos + 2;
      take([base](char d) {
        int v = HexValue(d);
        return v >= 0 && v < base;
      });
      if (digits.empty()) {
        p = pos + 1;  // just the "0"
        digits = "0";
        base = 10;
      }
    } else if (c == '0') {
      digits = "0";
      p = pos + 1;
      take([](char d) { return d == '0'; });
    } else {
      digits.push_back(c);
      p = pos + 1;
      take(IsAsciiDigit);
    }
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    int64_t value = 0;
    for (char d : digits) {
      int64_t digit = HexValue(d);
      if (value > (kMax - digit) / base) Error("integer literal too large", pos);
      value = value * base + digit;
    }
    Token t;
    t.type = TokenType::kInteger;
    t.text = std::string(src_.substr(pos, p - pos));
    t.int_value = value;
    t.offset = static_cast<uint32_t>(pos);
    tokens_.push_back(std::move(t));
    return p;
  }

  // Lexes a quoted string at pos; returns the position after it.
  size_t LexString(size_t pos) {
    char quote = src_[pos];
    size_t p = pos + 1;
    while (p < src_.size() && src_[p] != quote) {
      if (src_[p] == '\\') {
        if (p + 1 >= src_.size()) break;
        size_t len = 0;
        utf8::Decode(src_, p + 1, &len);
        p += 1 + len;
      } else {
        ++p;
      }
    }
    if (p >= src_.size()) Error("unexpected char " + StringRepr(std::string(1, quote)), pos);
    Token t;
    t.type = TokenType::kString;
    t.text = Unescape(src_.substr(pos + 1, p - pos - 1), pos);
    t.offset = static_cast<uint32_t>(pos);
    tokens_.push_back(std::move(t));
    return p + 1;
  }

  // Python's `s.encode("ascii", "backslashreplace").decode("unicode-escape")`, as Jinja2
  // applies to string literals.
  std::string Unescape(std::string_view s, size_t offset) const {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      if (s[i] != '\\') {
        out.push_back(s[i++]);
        continue;
      }
      size_t len = 0;
      uint32_t c = utf8::Decode(s, i + 1, &len);
      i += 1 + len;
      switch (c) {
        case '\n':
          break;
        case '\\':
        case '\'':
        case '"':
          out.push_back(static_cast<char>(c));
          break;
        case 'a':
          out.push_back('\a');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'x':
        case 'u':
        case 'U': {
          size_t n_digits = c == 'x' ? 2 : (c == 'u' ? 4 : 8);
          uint32_t cp = 0;
          for (size_t k = 0; k < n_digits; ++k) {
            int h = i + k < s.size() ? HexValue(s[i + k]) : -1;
            if (h < 0) {
              Error(std::string("truncated \\") + static_cast<char>(c) +
                        std::string(n_digits, 'X') + " escape",
                    offset);
            }
            cp = cp * 16 + static_cast<uint32_t>(h);
          }
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            Error("illegal Unicode character in string literal", offset);
          }
          i += n_digits;
          utf8::Append(cp, &out);
          break;
        }
        case 'N':
          Error("\\N{...} escapes are not supported", offset);
        default:
          if (c >= '0' && c <= '7') {
            uint32_t cp = c - '0';
            for (int k = 0; k < 2 && i < s.size() && s[i] >= '0' && s[i] <= '7'; ++k, ++i) {
              cp = cp * 8 + static_cast<uint32_t>(s[i] - '0');
            }
            utf8::Append(cp, &out);
          } else if (c >= 0x80) {
            // backslashreplace turned the character into \xNN / \uNNNN / \UNNNNNNNN, and the
            // backslash before it escaped that backslash: the result is the escape text.
            char buf[16];
            if (c < 0x100) {
              std::snprintf(buf, sizeof(buf), "\\x%02x", c);
            } else if (c < 0x10000) {
              std::snprintf(buf, sizeof(buf), "\\u%04x", c);
            } else {
              std::snprintf(buf, sizeof(buf), "\\U%08x", c);
            }
            out += buf;
          } else {
            out.push_back('\\');  // unknown escapes stay as written
            utf8::Append(c, &out);
          }
      }
    }
    return out;
  }

  std::string_view src_;
  size_t pos_ = 0;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::string NormalizeSource(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::vector<Token> Tokenize(std::string_view normalized_source) {
  return Lexer(normalized_source).Run();
}

SourcePosition PositionOf(std::string_view source, uint32_t offset) {
  SourcePosition p{1, 1};
  size_t end = std::min<size_t>(offset, source.size());
  size_t line_start = 0;
  for (size_t i = 0; i < end; ++i) {
    if (source[i] == '\n') {
      ++p.line;
      line_start = i + 1;
    }
  }
  p.column = static_cast<int>(utf8::Length(source.substr(line_start, end - line_start))) + 1;
  return p;
}

}  // namespace yunzhi::engine::jinja
