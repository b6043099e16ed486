// UTF-8 text helpers with Python `str` semantics, for the chat-template interpreter.
//
// Jinja2 templates run on Python strings, which are sequences of code points: `len`, indexing,
// slicing, `strip()` and `upper()` all work per code point and know Unicode whitespace. Our
// strings are UTF-8 bytes; these helpers give them the same meaning. Bytes that are not valid
// UTF-8 are carried through unchanged: each decodes to a lone surrogate U+DC80..U+DCFF (Python's
// "surrogateescape" idea) and encodes back to the same byte, so nothing is lost or replaced.
//
// Case mapping covers ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and fullwidth Latin,
// one code point to one code point; other scripts (CJK has no case) are left unchanged.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace yunzhi::engine::jinja::utf8 {

// Decodes the code point starting at text[pos] (precondition: pos < text.size()) and stores its
// length in bytes in *length. An invalid byte b decodes to 0xDC00 | b with length 1.
uint32_t Decode(std::string_view text, size_t pos, size_t* length);

// Appends the encoding of `code_point`; 0xDC80..0xDCFF append the raw byte they stand for.
void Append(uint32_t code_point, std::string* out);

// The code points of `text`.
std::vector<uint32_t> ToCodePoints(std::string_view text);
std::string FromCodePoints(const std::vector<uint32_t>& code_points);

// Number of code points in `text` (Python `len(s)`).
size_t Length(std::string_view text);

// True when every byte is ASCII (then bytes and code points coincide).
bool IsAscii(std::string_view text);

// Python `str.isspace()` for one code point.
bool IsSpace(uint32_t code_point);
// Simple case mapping (see the file comment for the scripts covered).
uint32_t ToUpper(uint32_t code_point);
uint32_t ToLower(uint32_t code_point);
bool IsUpper(uint32_t code_point);
bool IsLower(uint32_t code_point);
// Letters: ASCII and the cased scripts above, plus CJK ideographs, kana and Hangul syllables.
bool IsAlpha(uint32_t code_point);
// ASCII digits and fullwidth digits.
bool IsDigit(uint32_t code_point);
// Whether Python's repr() shows the character as is (approximation: controls, format
// characters, separators other than the ASCII space, private use and noncharacters are escaped).
bool IsPrintable(uint32_t code_point);

std::string Upper(std::string_view text);
std::string Lower(std::string_view text);

// Python `s.strip()` / `lstrip()` / `rstrip()` without arguments.
std::string_view StripSpace(std::string_view text, bool left, bool right);
// Python `s.strip(chars)` etc.: removes leading/trailing code points contained in `chars`.
std::string_view StripChars(std::string_view text, std::string_view chars, bool left, bool right);

}  // namespace yunzhi::engine::jinja::utf8
