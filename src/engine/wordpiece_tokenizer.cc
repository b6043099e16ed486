// WordPiece ("bert" vocabs: BERT, BGE, ...), as Hugging Face's BertNormalizer, BertPreTokenizer
// and WordPiece model do it:
//   1. normalise: drop control characters, turn whitespace into spaces, put spaces around CJK
//      ideographs, decompose and drop non-spacing marks, lower-case (each step as configured);
//   2. split into words at whitespace (dropped) and punctuation (each mark a word of its own);
//   3. cut each word greedily into the longest vocab pieces from the left, pieces after the first
//      spelled with the "##" prefix; a word that cannot be cut completely, or that is longer than
//      max_input_chars_per_word, becomes one unknown token.
// The character classes come from ICU, so they follow the Unicode standard as HF's (Rust's) do.
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>
#include <unicode/ustring.h>
#include <unicode/utf8.h>

#include "engine/tokenizer_state.h"
#include "engine/tokenizer_unicode.h"

namespace yunzhi::engine::internal {
namespace {

// Code point at text[*pos], advancing *pos; an invalid byte reads as U+FFFD (one byte).
UChar32 NextCodePoint(std::string_view text, size_t* pos) {
  const size_t n = ValidUtf8SequenceLength(text, *pos);
  if (n == 0) {
    ++*pos;
    return 0xFFFD;
  }
  UChar32 c;
  int32_t i = 0;
  U8_NEXT_UNSAFE(reinterpret_cast<const uint8_t*>(text.data() + *pos), i, c);
  *pos += n;
  return c;
}

void AppendCodePoint(UChar32 c, std::string* out) { AppendUtf8(static_cast<uint32_t>(c), out); }

// HF: tab, newline and carriage return are whitespace, not control; other C* categories
// (control, format, unassigned, private use, surrogate) are control.
bool IsControl(UChar32 c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  switch (u_charType(c)) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_UNASSIGNED:
    case U_PRIVATE_USE_CHAR:
    case U_SURROGATE:
      return true;
    default:
      return false;
  }
}

bool IsWhitespace(UChar32 c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || u_isUWhiteSpace(c);
}

// ASCII punctuation (which includes symbols such as "$", "+", "^") or a Unicode P* character.
bool IsPunctuation(UChar32 c) {
  if ((c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
      (c >= 0x7B && c <= 0x7E)) {
    return true;
  }
  switch (u_charType(c)) {
    case U_CONNECTOR_PUNCTUATION:
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

// The CJK Unified Ideographs blocks BERT treats as words of their own (not kana or hangul).
bool IsChineseChar(UChar32 c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Full lower-case mapping of one character, without context (HF lower-cases character by
// character, so a final sigma stays σ). "İ" becomes "i̇" (two characters).
void AppendLower(UChar32 c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c));
    return;
  }
  UChar src[2];
  int32_t src_len = 0;
  U16_APPEND_UNSAFE(src, src_len, c);
  UChar dest[8];
  UErrorCode status = U_ZERO_ERROR;
  const int32_t n = u_strToLower(dest, 8, src, src_len, "", &status);
  if (U_FAILURE(status) || n > 8) {
    AppendCodePoint(c, out);
    return;
  }
  for (int32_t i = 0; i < n;) {
    UChar32 lower;
    U16_NEXT_UNSAFE(dest, i, lower);
    AppendCodePoint(lower, out);
  }
}

// BertNormalizer.
std::string Normalize(const WordPieceOptions& options, std::string_view text) {
  std::string cleaned;
  cleaned.reserve(text.size() + 8);
  for (size_t pos = 0; pos < text.size();) {
    const UChar32 c = NextCodePoint(text, &pos);
    if (options.clean_text) {
      if (c == 0 || c == 0xFFFD || IsControl(c)) continue;
      if (IsWhitespace(c)) {
        cleaned.push_back(' ');
        continue;
      }
    }
    if (options.handle_chinese_chars && IsChineseChar(c)) {
      cleaned.push_back(' ');
      AppendCodePoint(c, &cleaned);
      cleaned.push_back(' ');
      continue;
    }
    AppendCodePoint(c, &cleaned);
  }

  if (options.strip_accents) {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(status);
    if (U_SUCCESS(status) && nfd != nullptr) {
      std::string decomposed;
      icu::StringByteSink<std::string> sink(&decomposed);
      nfd->normalizeUTF8(0, icu::StringPiece(cleaned.data(), static_cast<int32_t>(cleaned.size())),
                         sink, nullptr, status);
      if (U_SUCCESS(status)) {
        std::string stripped;
        stripped.reserve(decomposed.size());
        for (size_t pos = 0; pos < decomposed.size();) {
          const UChar32 c = NextCodePoint(decomposed, &pos);
          if (u_charType(c) != U_NON_SPACING_MARK) AppendCodePoint(c, &stripped);
        }
        cleaned = std::move(stripped);
      }
    }
  }

  if (!options.lowercase) return cleaned;
  std::string lowered;
  lowered.reserve(cleaned.size());
  for (size_t pos = 0; pos < cleaned.size();) AppendLower(NextCodePoint(cleaned, &pos), &lowered);
  return lowered;
}

// Cuts one word into pieces (greedy longest match first) and appends them.
void EncodeWord(const TokenizerState& state, std::string_view word,
                const std::vector<size_t>& bounds, std::string* candidate,
                std::vector<int32_t>* out) {
  const WordPieceOptions& options = state.vocab.wordpiece;
  const size_t n_chars = bounds.size() - 1;
  auto unknown = [&] {
    if (state.unk_fallback_id >= 0) out->push_back(state.unk_fallback_id);
  };
  if (n_chars > static_cast<size_t>(std::max(options.max_input_chars_per_word, 0))) {
    unknown();
    return;
  }
  const size_t first_out = out->size();
  for (size_t start = 0; start < n_chars;) {
    const std::string_view prefix =
        start > 0 ? std::string_view(options.continuing_subword_prefix) : std::string_view();
    int32_t found = -1;
    size_t end = n_chars;
    for (; end > start; --end) {
      const size_t n_bytes = bounds[end] - bounds[start];
      if (prefix.size() + n_bytes > state.wordpiece_max_piece_bytes) continue;
      candidate->assign(prefix);
      candidate->append(word.substr(bounds[start], n_bytes));
      found = state.text_to_id.Find(*candidate);
      if (found >= 0) break;
    }
    if (found < 0) {
      out->resize(first_out);
      unknown();
      return;
    }
    out->push_back(found);
    start = end;
  }
}

}  // namespace

Status BuildWordPiece(TokenizerState* state) {
  const Vocab& vocab = state->vocab;
  const std::string& prefix = vocab.wordpiece.continuing_subword_prefix;
  state->pieces.resize(vocab.tokens.size());
  state->byte_to_id.fill(-1);
  state->wordpiece_max_piece_bytes = 0;
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    const VocabToken& token = vocab.tokens[id];
    switch (token.type) {
      case TokenType::kNormal:
      case TokenType::kUserDefined:
      case TokenType::kByte:
      case TokenType::kUnused:
        if (token.type != TokenType::kUnused) {
          state->text_to_id.Insert(token.text, static_cast<int32_t>(id));
          state->wordpiece_max_piece_bytes =
              std::max(state->wordpiece_max_piece_bytes, token.text.size());
        }
        if (!prefix.empty() && token.text.size() > prefix.size() &&
            token.text.compare(0, prefix.size(), prefix) == 0) {
          state->pieces[id] = token.text.substr(prefix.size());
        } else {
          state->pieces[id] = " " + token.text;
        }
        break;
      case TokenType::kControl:
      case TokenType::kUnknown:
        state->pieces[id] = token.text;
        break;
    }
  }
  return OkStatus();
}

void EncodeWordPiece(const TokenizerState& state, std::string_view text,
                     std::vector<int32_t>* out) {
  const std::string normalized = Normalize(state.vocab.wordpiece, text);
  // BertPreTokenizer: words end at whitespace and around each punctuation mark.
  std::string candidate;
  std::vector<size_t> bounds;  // byte offsets of the current word's characters, plus its end
  size_t word_start = 0;
  auto flush = [&](size_t word_end) {
    if (bounds.empty()) return;
    bounds.push_back(word_end);
    for (size_t& b : bounds) b -= word_start;
    EncodeWord(state, std::string_view(normalized).substr(word_start, word_end - word_start),
               bounds, &candidate, out);
    bounds.clear();
  };
  for (size_t pos = 0; pos < normalized.size();) {
    const size_t char_start = pos;
    const UChar32 c = NextCodePoint(normalized, &pos);
    if (IsWhitespace(c)) {
      flush(char_start);
      continue;
    }
    if (IsPunctuation(c)) {
      flush(char_start);
      word_start = char_start;
      bounds.push_back(char_start);
      flush(pos);
      continue;
    }
    if (bounds.empty()) word_start = char_start;
    bounds.push_back(char_start);
  }
  flush(normalized.size());
}

}  // namespace yunzhi::engine::internal
