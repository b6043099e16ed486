#include "engine/tokenizer_unicode.h"

#include <algorithm>
#include <array>
#include <utility>

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

namespace yunzhi::engine::internal {
namespace {

enum class Scan { kValid, kInvalid, kTruncated };

// Examines the UTF-8 sequence starting at text[pos] following the well-formedness table of the
// Unicode standard (chapter 3, table 3-7). Sets *n to the sequence length (kValid), to the length
// of the maximal invalid subpart, at least 1 (kInvalid), or to the bytes present (kTruncated: a
// valid prefix cut off by the end of the text).
Scan ScanUtf8(std::string_view text, size_t pos, size_t* n) {
  const auto b0 = static_cast<uint8_t>(text[pos]);
  if (b0 < 0x80) {
    *n = 1;
    return Scan::kValid;
  }
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlong forms
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    *n = 1;
    return Scan::kInvalid;
  }
  for (size_t i = 1; i < len; ++i) {
    if (pos + i >= text.size()) {
      *n = i;
      return Scan::kTruncated;
    }
    const auto b = static_cast<uint8_t>(text[pos + i]);
    const uint8_t min = i == 1 ? lo : 0x80;
    const uint8_t max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) {
      *n = i;
      return Scan::kInvalid;
    }
  }
  *n = len;
  return Scan::kValid;
}

struct ByteLevelTables {
  std::array<std::string, 256> byte_to_text;
  std::array<int16_t, 512> code_point_to_byte;  // every mapped code point is < 512

  ByteLevelTables() {
    code_point_to_byte.fill(-1);
    uint32_t next_unprintable = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? b : next_unprintable++;
      AppendUtf8(cp, &byte_to_text[b]);
      code_point_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables tables;
  return tables;
}

}  // namespace

size_t ValidUtf8SequenceLength(std::string_view text, size_t pos) {
  size_t n = 0;
  return ScanUtf8(text, pos, &n) == Scan::kValid ? n : 0;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
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

size_t IncompleteUtf8Tail(std::string_view text) {
  // A sequence is at most 4 bytes long, so only a lead byte among the last 3 can be incomplete.
  const size_t first = text.size() > 3 ? text.size() - 3 : 0;
  for (size_t pos = first; pos < text.size(); ++pos) {
    const auto b = static_cast<uint8_t>(text[pos]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: not a start
    size_t n = 0;
    if (ScanUtf8(text, pos, &n) == Scan::kTruncated) return text.size() - pos;
  }
  return 0;
}

void AppendUtf8Lossy(std::string_view text, std::string* out) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t n = 0;
    if (ScanUtf8(text, pos, &n) == Scan::kValid) {
      out->append(text.substr(pos, n));
    } else {
      out->append(kReplacementChar);
    }
    pos += n;
  }
}

std::string_view ByteToUnicode(uint8_t byte) { return Tables().byte_to_text[byte]; }

bool UnicodeToBytes(std::string_view mapped, std::string* out) {
  const ByteLevelTables& tables = Tables();
  out->clear();
  size_t pos = 0;
  while (pos < mapped.size()) {
    const auto b0 = static_cast<uint8_t>(mapped[pos]);
    uint32_t cp;
    if (b0 < 0x80) {
      cp = b0;
      pos += 1;
    } else if ((b0 & 0xE0) == 0xC0 && pos + 1 < mapped.size() &&
               (static_cast<uint8_t>(mapped[pos + 1]) & 0xC0) == 0x80) {
      cp = ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(mapped[pos + 1]) & 0x3Fu);
      pos += 2;
    } else {
      return false;  // every mapped character is below U+0800: one or two bytes
    }
    if (cp >= tables.code_point_to_byte.size() || tables.code_point_to_byte[cp] < 0) return false;
    out->push_back(static_cast<char>(tables.code_point_to_byte[cp]));
  }
  return true;
}

bool NormalizeUtf8(std::string_view text, UnicodeNormalization form, std::string* out) {
  if (form == UnicodeNormalization::kNone) return false;
  // ASCII is invariant under every normalisation form: the fast path for most text.
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return static_cast<uint8_t>(c) < 0x80; })) {
    return false;
  }
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = form == UnicodeNormalization::kNfc
                                           ? icu::Normalizer2::getNFCInstance(status)
                                           : icu::Normalizer2::getNFKCInstance(status);
  if (U_FAILURE(status) || normalizer == nullptr) return false;  // ICU data missing: leave as is
  // ICU requires well-formed input: normalise each maximal valid run on its own.
  std::string result;
  bool changed = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = pos;
    while (end < text.size()) {
      const size_t n = ValidUtf8SequenceLength(text, end);
      if (n == 0) break;
      end += n;
    }
    const std::string_view run = text.substr(pos, end - pos);
    status = U_ZERO_ERROR;
    const icu::StringPiece piece(run.data(), static_cast<int32_t>(run.size()));
    if (!run.empty() && !normalizer->isNormalizedUTF8(piece, status)) {
      std::string normalized;
      icu::StringByteSink<std::string> sink(&normalized);
      status = U_ZERO_ERROR;
      normalizer->normalizeUTF8(0, piece, sink, nullptr, status);
      if (U_SUCCESS(status)) {
        result.append(normalized);
        changed = true;
      } else {
        result.append(run);
      }
    } else {
      result.append(run);
    }
    if (end < text.size()) {  // copy the invalid byte(s) through
      result.push_back(text[end]);
      ++end;
    }
    pos = end;
  }
  if (!changed) return false;
  *out = std::move(result);
  return true;
}

}  // namespace yunzhi::engine::internal
