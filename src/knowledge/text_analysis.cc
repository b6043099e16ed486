// Analysis: ICU word segments -> NFKC case-folded terms -> Porter stems.
#include "yunzhi/knowledge/text_analysis.h"

#include <algorithm>
#include <array>
#include <climits>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include <unicode/brkiter.h>
#include <unicode/normalizer2.h>
#include <unicode/ubrk.h>
#include <unicode/unistr.h>
#include <unicode/utext.h>

#include "yunzhi/base/status.h"

namespace yunzhi::knowledge {
namespace {

// Decodes one code point at `i` (advancing it). Invalid bytes decode as U+FFFD, one byte each,
// so callers always make progress and never read past the end.
char32_t NextCodePoint(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int n = b0 >= 0xF0 && b0 < 0xF5 ? 3 : b0 >= 0xE0 ? 2 : b0 >= 0xC2 && b0 < 0xE0 ? 1 : -1;
  if (n < 0 || i + static_cast<size_t>(n) >= s.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = b0 & (n == 1 ? 0x1F : n == 2 ? 0x0F : 0x07);
  for (int k = 1; k <= n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  i += static_cast<size_t>(n) + 1;
  return cp;
}

bool IsCjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x3040 && c <= 0x30FF) ||  // Hiragana, Katakana
         (c >= 0xAC00 && c <= 0xD7AF) || (c >= 0x1100 && c <= 0x11FF) ||  // Hangul
         (c >= 0x3130 && c <= 0x318F) ||  // Hangul compatibility jamo
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x3134F) ||
         (c >= 0x31F0 && c <= 0x31FF) || (c >= 0xFF66 && c <= 0xFF9F);  // Katakana ext, half-width
}

bool IsUnifiedHan(char32_t c) { return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF); }

bool IsSpace(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200B) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000 || c == 0xFEFF || c < 0x20 || c == 0x7F;
}

// Punctuation and symbols (0.5 token each); everything else non-space and non-CJK is a letter.
bool IsPunct(char32_t c) {
  if (c < 0x80) return !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_');
  return (c >= 0xA1 && c <= 0xBF && c != 0xAA && c != 0xB5 && c != 0xBA) || c == 0xD7 || c == 0xF7 ||
         (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x205E) ||
         (c >= 0x20A0 && c <= 0x20CF) || (c >= 0x2190 && c <= 0x2BFF) ||
         (c >= 0x3001 && c <= 0x303F) || (c >= 0xFE30 && c <= 0xFE4F) ||
         (c >= 0xFF01 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) ||
         (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65) || c == 0xFFFD ||
         (c >= 0x1F000 && c <= 0x1FAFF) || (c >= 0x2500 && c <= 0x25FF);
}

const icu::Normalizer2* NfkcCasefold() {
  static const icu::Normalizer2* n = [] {
    UErrorCode st = U_ZERO_ERROR;
    const icu::Normalizer2* r = icu::Normalizer2::getNFKCCasefoldInstance(st);
    YZ_CHECK(U_SUCCESS(st) && r != nullptr);
    return r;
  }();
  return n;
}

// One word break iterator per thread, cloned from a shared prototype (creation loads the rules
// and dictionaries, which is far too slow to do per call).
icu::BreakIterator* ThreadWordIterator() {
  static icu::BreakIterator* prototype = [] {
    UErrorCode st = U_ZERO_ERROR;
    icu::BreakIterator* it = icu::BreakIterator::createWordInstance(icu::Locale::getRoot(), st);
    YZ_CHECK(U_SUCCESS(st) && it != nullptr);
    return it;
  }();
  thread_local std::unique_ptr<icu::BreakIterator> mine(prototype->clone());
  return mine.get();
}

bool IsStopword(std::string_view w) {
  // Lucene's classic English stop set.
  static const std::unordered_set<std::string_view> kStop = {
      "a",    "an",    "and",   "are",  "as",   "at",   "be",    "but",  "by",
      "for",  "if",    "in",    "into", "is",   "it",   "no",    "not",  "of",
      "on",   "or",    "such",  "that", "the",  "their", "then", "there", "these",
      "they", "this",  "to",    "was",  "will", "with"};
  return w.size() <= 5 && kStop.contains(w);
}

constexpr size_t kMaxTermBytes = 256;

class TermEmitter {
 public:
  TermEmitter(std::string_view text, const AnalyzerOptions& options, const TermSink& sink)
      : text_(text), options_(options), sink_(sink) {}

  // A word segment [start, end) of the text. Returns false when the sink asked to stop.
  bool Segment(size_t start, size_t end) {
    if (options_.cjk == CjkSegmentation::kCharacters) {
      // Split CJK characters off as single terms; the runs between them stay words.
      size_t i = start, run = start;
      bool any_cjk = false;
      while (i < end) {
        size_t at = i;
        char32_t c = NextCodePoint(text_.substr(0, end), i);
        if (!IsCjk(c)) continue;
        any_cjk = true;
        if (run < at && !Word(run, at)) return false;
        if (!Word(at, i)) return false;
        run = i;
      }
      if (any_cjk) return run >= end || Word(run, end);
    }
    return Word(start, end);
  }

 private:
  bool Word(size_t start, size_t end) {
    std::string_view surface = text_.substr(start, end - start);
    Normalize(surface);
    // NFKC can turn a segment into nothing (default ignorables) or into punctuation only.
    if (!std::any_of(buf_.begin(), buf_.end(), [](char c) {
          auto u = static_cast<unsigned char>(c);
          return u >= 0x80 || (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z');
        })) {
      return true;
    }
    if (buf_.size() > kMaxTermBytes) {  // e.g. a base64 blob: keep a prefix, whole characters
      size_t cut = kMaxTermBytes;
      while (cut > 0 && (static_cast<unsigned char>(buf_[cut]) & 0xC0) == 0x80) --cut;
      buf_.resize(cut);
    }
    if (options_.stopwords && IsStopword(buf_)) return true;
    if (options_.stem && buf_.size() > 2 &&
        std::all_of(buf_.begin(), buf_.end(), [](char c) { return c >= 'a' && c <= 'z'; })) {
      buf_ = PorterStem(buf_);
    }
    return sink_(buf_, start, end);
  }

  void Normalize(std::string_view s) {
    buf_.clear();
    bool ascii = true, han = true;
    for (size_t i = 0; i < s.size() && (ascii || han);) {
      auto b = static_cast<unsigned char>(s[i]);
      if (b >= 0x80) ascii = false;
      char32_t c = NextCodePoint(s, i);
      if (!IsUnifiedHan(c)) han = false;
    }
    if (ascii) {
      buf_.reserve(s.size());
      for (char c : s) buf_ += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      return;
    }
    if (han) {  // unified ideographs are unchanged by NFKC_Casefold
      buf_.assign(s);
      return;
    }
    UErrorCode st = U_ZERO_ERROR;
    icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
    icu::UnicodeString folded = NfkcCasefold()->normalize(u, st);
    if (U_FAILURE(st)) {
      buf_.assign(s);
      return;
    }
    folded.toUTF8String(buf_);
    // NFKC may introduce spaces (e.g. U+3380 "pA" is fine, but some compatibility forms expand
    // with a space); a term never contains whitespace.
    buf_.erase(std::remove(buf_.begin(), buf_.end(), ' '), buf_.end());
  }

  std::string_view text_;
  const AnalyzerOptions& options_;
  const TermSink& sink_;
  std::string buf_;
};

// Runs the word break iterator over one piece (at most INT32_MAX bytes) starting at `base`.
bool SegmentPiece(std::string_view text, size_t base, size_t len, TermEmitter& emitter) {
  UErrorCode st = U_ZERO_ERROR;
  UText ut = UTEXT_INITIALIZER;
  utext_openUTF8(&ut, text.data() + base, static_cast<int64_t>(len), &st);
  if (U_FAILURE(st)) return true;
  icu::BreakIterator* it = ThreadWordIterator();
  it->setText(&ut, st);
  bool ok = true;
  if (U_SUCCESS(st)) {
    int32_t start = it->first();
    for (int32_t end = it->next(); end != icu::BreakIterator::DONE; start = end, end = it->next()) {
      if (it->getRuleStatus() < UBRK_WORD_NONE_LIMIT) continue;
      if (!emitter.Segment(base + static_cast<size_t>(start), base + static_cast<size_t>(end))) {
        ok = false;
        break;
      }
    }
  }
  // Detach the iterator from our stack UText before it goes away.
  UText empty = UTEXT_INITIALIZER;
  UErrorCode st2 = U_ZERO_ERROR;
  utext_openUTF8(&empty, "", 0, &st2);
  it->setText(&empty, st2);
  utext_close(&empty);
  utext_close(&ut);
  return ok;
}

}  // namespace

bool ForEachTerm(std::string_view utf8, const AnalyzerOptions& options, const TermSink& sink) {
  TermEmitter emitter(utf8, options, sink);
  // ICU indexes are 32-bit: feed very large inputs in pieces cut at whitespace where possible.
  constexpr size_t kPiece = size_t{1} << 30;
  size_t pos = 0;
  while (pos < utf8.size()) {
    size_t len = utf8.size() - pos;
    if (len > kPiece) {
      len = kPiece;
      size_t cut = utf8.find_last_of(" \n\t", pos + len);
      if (cut != std::string_view::npos && cut > pos + len / 2) len = cut + 1 - pos;
      while (len > 1 && (static_cast<unsigned char>(utf8[pos + len]) & 0xC0) == 0x80) --len;
    }
    if (!SegmentPiece(utf8, pos, len, emitter)) return false;
    pos += len;
  }
  return true;
}

std::vector<Term> Analyze(std::string_view utf8, const AnalyzerOptions& options) {
  std::vector<Term> terms;
  ForEachTerm(utf8, options, [&](std::string_view text, size_t start, size_t end) {
    terms.push_back(Term{std::string(text), start, end});
    return true;
  });
  return terms;
}

size_t CountTokens(std::string_view utf8) {
  size_t tenths = 0;
  size_t run = 0;  // code points in the current letter/digit run
  auto end_run = [&] {
    if (run > 0) tenths += 13 * ((run + 9) / 10);
    run = 0;
  };
  for (size_t i = 0; i < utf8.size();) {
    auto b = static_cast<unsigned char>(utf8[i]);
    if (b < 0x80) {  // fast path
      ++i;
      if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '_') {
        ++run;
      } else {
        end_run();
        if (b > ' ' && b != 0x7F) tenths += 5;
      }
      continue;
    }
    char32_t c = NextCodePoint(utf8, i);
    if (IsCjk(c)) {
      end_run();
      tenths += 10;
    } else if (IsSpace(c)) {
      end_run();
    } else if (IsPunct(c)) {
      end_run();
      tenths += 5;
    } else if (c >= 0x300 && c <= 0x36F) {
      // combining marks belong to the letter before them
    } else {
      ++run;
    }
  }
  end_run();
  return (tenths + 5) / 10;
}

std::string BuildMatchQuery(std::string_view user_query, const AnalyzerOptions& options) {
  std::string out;
  std::unordered_set<std::string> seen;
  ForEachTerm(user_query, options, [&](std::string_view text, size_t start, size_t end) {
    if (!seen.emplace(text).second) return true;
    if (!out.empty()) out += " OR ";
    out += '"';
    for (char c : user_query.substr(start, end - start)) {
      if (c == '"') out += '"';
      out += c;
    }
    out += '"';
    return true;
  });
  return out;
}

}  // namespace yunzhi::knowledge
