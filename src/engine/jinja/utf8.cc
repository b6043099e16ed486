#include "engine/jinja/utf8.h"

#include <algorithm>

namespace yunzhi::engine::jinja::utf8 {
namespace {

constexpr uint32_t kEscapeBase = 0xDC00;

bool IsContinuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// Offsets of the one-to-one case pairs outside ASCII. Each range maps [first, last] of the upper
// case letters to lower case by adding `delta` (only for code points where `step` divides the
// distance from `first`, for the alternating upper/lower layouts of Latin Extended-A).
struct CaseRange {
  uint32_t first;
  uint32_t last;
  int32_t delta;
  uint32_t step;  // 1: contiguous block; 2: pairs (upper at even offset, lower right after it)
};

constexpr CaseRange kUpperToLower[] = {
    {0x00C0, 0x00D6, 32, 1}, {0x00D8, 0x00DE, 32, 1}, {0x0100, 0x012F, 1, 2},
    {0x0132, 0x0137, 1, 2},  {0x0139, 0x0148, 1, 2},  {0x014A, 0x0177, 1, 2},
    {0x0179, 0x017E, 1, 2},  {0x0391, 0x03A1, 32, 1}, {0x03A3, 0x03AB, 32, 1},
    {0x0400, 0x040F, 80, 1}, {0x0410, 0x042F, 32, 1}, {0x0460, 0x0481, 1, 2},
    {0x048A, 0x04BF, 1, 2},  {0xFF21, 0xFF3A, 32, 1},
};

}  // namespace

uint32_t Decode(std::string_view text, size_t pos, size_t* length) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size();
  unsigned char b0 = s[pos];
  if (b0 < 0x80) {
    *length = 1;
    return b0;
  }
  size_t need = 0;
  uint32_t cp = 0;
  uint32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    need = 1, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    need = 2, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    need = 3, cp = b0 & 0x07, min = 0x10000;
  } else {
    *length = 1;
    return kEscapeBase | b0;
  }
  if (pos + need >= n) {
    *length = 1;
    return kEscapeBase | b0;
  }
  for (size_t i = 1; i <= need; ++i) {
    if (!IsContinuation(s[pos + i])) {
      *length = 1;
      return kEscapeBase | b0;
    }
    cp = (cp << 6) | (s[pos + i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    *length = 1;
    return kEscapeBase | b0;
  }
  *length = need + 1;
  return cp;
}

void Append(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp >= 0xDC80 && cp <= 0xDCFF) {
    out->push_back(static_cast<char>(cp & 0xFF));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<uint32_t> ToCodePoints(std::string_view text) {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  for (size_t pos = 0, len = 0; pos < text.size(); pos += len)
    cps.push_back(Decode(text, pos, &len));
  return cps;
}

std::string FromCodePoints(const std::vector<uint32_t>& code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (uint32_t cp : code_points) Append(cp, &out);
  return out;
}

size_t Length(std::string_view text) {
  size_t n = 0;
  for (size_t pos = 0, len = 0; pos < text.size(); pos += len, ++n) Decode(text, pos, &len);
  return n;
}

bool IsAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool IsSpace(uint32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint32_t ToLower(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  if (cp == 0x0178) return 0x00FF;  // Ÿ
  if (cp == 0x0130) return 'i';     // İ (Python gives "i̇"; one code point is our limit)
  for (const CaseRange& r : kUpperToLower) {
    if (cp >= r.first && cp <= r.last && (cp - r.first) % r.step == 0) {
      return static_cast<uint32_t>(static_cast<int32_t>(cp) + r.delta);
    }
  }
  return cp;
}

uint32_t ToUpper(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'a' && cp <= 'z') ? cp - 32 : cp;
  if (cp == 0x00FF) return 0x0178;
  if (cp == 0x00B5) return 0x039C;  // µ
  if (cp == 0x0131) return 'I';     // ı
  if (cp == 0x017F) return 'S';     // ſ
  if (cp == 0x03C2) return 0x03A3;  // final sigma
  for (const CaseRange& r : kUpperToLower) {
    int64_t upper = static_cast<int64_t>(cp) - r.delta;
    if (upper >= r.first && upper <= r.last && (upper - r.first) % r.step == 0) {
      return static_cast<uint32_t>(upper);
    }
  }
  return cp;
}

bool IsUpper(uint32_t cp) { return ToLower(cp) != cp; }
bool IsLower(uint32_t cp) { return ToUpper(cp) != cp || cp == 0x00DF; }

bool IsAlpha(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  if (IsUpper(cp) || IsLower(cp)) return true;
  return (cp >= 0x00AA && cp <= 0x00BA && (cp == 0xAA || cp == 0xBA)) ||
         (cp >= 0x3040 && cp <= 0x30FF && cp != 0x30FB) ||  // kana
         (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
         (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
         (cp >= 0x20000 && cp <= 0x3134F);
}

bool IsDigit(uint32_t cp) { return (cp >= '0' && cp <= '9') || (cp >= 0xFF10 && cp <= 0xFF19); }

bool IsPrintable(uint32_t cp) {
  if (cp < 0x20 || cp == 0x7F) return false;
  if (cp < 0x7F) return true;
  if (cp <= 0xA0 || cp == 0xAD) return false;      // C1 controls, no-break space, soft hyphen
  if (cp >= 0xDC80 && cp <= 0xDCFF) return false;  // undecodable bytes
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
      (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF || cp == 0x061C ||
      cp == 0x180E || (cp >= 0xFFF9 && cp <= 0xFFFB)) {
    return false;
  }
  if ((cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000) return false;            // private use
  if ((cp & 0xFFFE) == 0xFFFE || (cp >= 0xFDD0 && cp <= 0xFDEF)) return false;  // nonchars
  if (cp >= 0xE0000 && cp <= 0xE007F) return false;                             // tags
  return true;
}

std::string Upper(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0, len = 0; pos < text.size(); pos += len) {
    uint32_t cp = Decode(text, pos, &len);
    if (cp == 0x00DF) {  // ß -> SS, as Python does
      out += "SS";
      continue;
    }
    Append(ToUpper(cp), &out);
  }
  return out;
}

namespace {

// Approximates Unicode's Case_Ignorable for the final-sigma rule.
bool IsCaseIgnorable(uint32_t cp) {
  return cp == '\'' || cp == '.' || cp == ':' || cp == '^' || cp == '`' || cp == 0xB7 ||
         cp == 0x2019 || (cp >= 0x0300 && cp <= 0x036F);
}

bool IsCased(uint32_t cp) { return IsUpper(cp) || IsLower(cp); }

}  // namespace

std::string Lower(std::string_view text) {
  std::vector<uint32_t> cps = ToCodePoints(text);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    uint32_t cp = cps[i];
    if (cp == 0x03A3) {
      // Python's Final_Sigma: a capital sigma that ends a word lowers to final sigma.
      size_t before = i;
      while (before > 0 && IsCaseIgnorable(cps[before - 1])) --before;
      size_t after = i + 1;
      while (after < cps.size() && IsCaseIgnorable(cps[after])) ++after;
      bool final =
          before > 0 && IsCased(cps[before - 1]) && !(after < cps.size() && IsCased(cps[after]));
      Append(final ? 0x03C2 : 0x03C3, &out);
      continue;
    }
    Append(ToLower(cp), &out);
  }
  return out;
}

namespace {

template <typename Pred>
std::string_view StripIf(std::string_view text, bool left, bool right, Pred pred) {
  size_t begin = 0;
  size_t end = text.size();
  if (left) {
    while (begin < end) {
      size_t len = 0;
      if (!pred(Decode(text, begin, &len))) break;
      begin += len;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && end - start < 4 &&
             IsContinuation(static_cast<unsigned char>(text[start]))) {
        --start;
      }
      size_t len = 0;
      uint32_t cp = Decode(text, start, &len);
      if (start + len != end) {  // the tail was not one well-formed sequence: one raw byte
        start = end - 1;
        cp = Decode(text, start, &len);
      }
      if (!pred(cp)) break;
      end = start;
    }
  }
  return text.substr(begin, end - begin);
}

}  // namespace

std::string_view StripSpace(std::string_view text, bool left, bool right) {
  return StripIf(text, left, right, IsSpace);
}

std::string_view StripChars(std::string_view text, std::string_view chars, bool left, bool right) {
  std::vector<uint32_t> set = ToCodePoints(chars);
  return StripIf(text, left, right, [&set](uint32_t cp) {
    return std::find(set.begin(), set.end(), cp) != set.end();
  });
}

}  // namespace yunzhi::engine::jinja::utf8
