// UTF-8 and byte-level helpers shared by the tokenizers (private to the engine).
//
// Thread safety: pure functions over immutable tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine::internal {

// The length of the valid UTF-8 sequence starting at text[pos] (1..4), or 0 when the bytes there
// are not a valid, complete sequence (a stray continuation byte, an overlong or surrogate
// encoding, a truncated sequence). Precondition: pos < text.size().
size_t ValidUtf8SequenceLength(std::string_view text, size_t pos);

// Appends the UTF-8 encoding of `code_point` (precondition: a Unicode scalar value).
void AppendUtf8(uint32_t code_point, std::string* out);

// The replacement character U+FFFD, as written for bytes that are not valid UTF-8.
inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// How many bytes at the end of `text` are a proper prefix of a valid UTF-8 sequence that more
// bytes could still complete (0..3).
size_t IncompleteUtf8Tail(std::string_view text);

// Appends `text` to `out` with every maximal invalid subsequence replaced by U+FFFD (as the
// Unicode standard recommends and as Python's / Rust's lossy decoders do).
void AppendUtf8Lossy(std::string_view text, std::string* out);

// GPT-2's reversible byte <-> unicode mapping, used in byte-level BPE vocab files so that every
// byte is a printable character: printable Latin-1 bytes map to themselves, the others (controls,
// space, ...) to U+0100.. in byte order ("Ġ" = U+0120 is the space).
// The UTF-8 text of the character standing for `byte`.
std::string_view ByteToUnicode(uint8_t byte);
// Converts mapped text back to bytes. Returns false (and leaves `out` unspecified) when some
// character is not one of the 256 mapped characters.
bool UnicodeToBytes(std::string_view mapped, std::string* out);

// Unicode normalisation (ICU) of the valid UTF-8 runs of `text`; invalid bytes are copied as
// they are. Returns false, leaving `out` untouched, when nothing changes (the common case: all
// ASCII, or already normalised); otherwise sets `out` to the normalised text.
bool NormalizeUtf8(std::string_view text, UnicodeNormalization form, std::string* out);

}  // namespace yunzhi::engine::internal
