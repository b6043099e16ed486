// Structure-following chunker: see chunker.h for the rules. Everything is computed on the
// Markdown rendering, so chunk offsets are exact by construction.
#include "yunzhi/knowledge/chunker.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "yunzhi/knowledge/text_analysis.h"

namespace yunzhi::knowledge {
namespace {

struct Span {
  size_t start = 0, end = 0;
};

bool IsContinuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

bool IsAsciiSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// The code point starting at byte `i` of s (0 for invalid sequences).
char32_t CodePointAt(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return b0;
  size_t n = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : b0 >= 0xC0 ? 1 : 0;
  if (n == 0 || i + n >= s.size()) return 0;
  char32_t cp = b0 & (n == 1 ? 0x1F : n == 2 ? 0x0F : 0x07);
  for (size_t k = 1; k <= n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

size_t NextBoundary(std::string_view s, size_t i) {
  ++i;
  while (i < s.size() && IsContinuation(s[i])) ++i;
  return i;
}

bool IsCjkChar(char32_t c) {
  return (c >= 0x2E80 && c <= 0x9FFF) || (c >= 0xAC00 && c <= 0xD7AF) || (c >= 0xF900 && c <= 0xFAFF) ||
         (c >= 0xFF00 && c <= 0xFFEF) || (c >= 0x20000 && c <= 0x3134F);
}

bool IsCjkTerminator(char32_t c) { return c == U'。' || c == U'！' || c == U'？'; }
bool IsClosingMark(char32_t c) {
  return c == U'”' || c == U'’' || c == U'」' || c == U'』' || c == U'）' || c == U'》' || c == '"' ||
         c == '\'' || c == ')';
}

class Chunker {
 public:
  Chunker(const ExtractedDocument& doc, const ChunkOptions& options)
      : doc_(doc), max_(static_cast<size_t>(options.max_tokens)),
        overlap_(static_cast<size_t>(options.overlap_tokens)) {}

  std::vector<Chunk> Run() {
    std::vector<std::pair<size_t, size_t>> spans;
    md_ = doc_.ToMarkdown(&spans);
    for (size_t i = 0; i < doc_.blocks.size() && i < spans.size(); ++i) {
      const Block& b = doc_.blocks[i];
      Span span = Trim({spans[i].first, spans[i].second});
      if (b.kind == BlockKind::kHeading) {
        Flush();
        continue;
      }
      if (span.start >= span.end) continue;
      if (!cur_.empty() && b.section_path != cur_path_) Flush();
      if (b.kind == BlockKind::kTable) {
        Flush();
        AddTable(b, span);
        continue;
      }
      AddBlock(b, span);
    }
    Flush();
    return std::move(chunks_);
  }

 private:
  struct Piece {
    Span span;
    int page = 0;
  };

  size_t Tokens(size_t start, size_t end) const {
    return CountTokens(std::string_view(md_).substr(start, end - start));
  }

  Span Trim(Span s) const {
    while (s.start < s.end && IsAsciiSpace(md_[s.start])) ++s.start;
    while (s.end > s.start && IsAsciiSpace(md_[s.end - 1])) --s.end;
    return s;
  }

  // Sentences of a block: after 。！？ (and closing marks after them), after .!? followed by
  // whitespace, and after newlines. Pieces are trimmed; empty ones dropped.
  std::vector<Span> Sentences(Span block) const {
    std::vector<Span> out;
    const std::string_view s(md_);
    size_t start = block.start, i = block.start;
    auto cut = [&](size_t at) {
      Span p = Trim({start, at});
      if (p.start < p.end) out.push_back(p);
      start = at;
    };
    while (i < block.end) {
      const char32_t c = CodePointAt(s, i);
      size_t next = NextBoundary(s, i);
      bool boundary = false;
      if (c == '\n') {
        boundary = true;
      } else if (IsCjkTerminator(c) || c == '.' || c == '!' || c == '?') {
        while (next < block.end && IsClosingMark(CodePointAt(s, next))) next = NextBoundary(s, next);
        boundary = IsCjkTerminator(c) || next >= block.end || IsAsciiSpace(s[next]);
      }
      i = next;
      if (boundary) cut(i);
    }
    cut(block.end);
    return out;
  }

  // Splits a span whose tokens exceed `budget` at spaces / CJK character boundaries, or at code
  // point boundaries when a run has neither.
  std::vector<Span> SplitLong(Span span, size_t budget) const {
    std::vector<Span> out;
    const std::string_view s(md_);
    size_t pos = span.start;
    while (pos < span.end) {
      if (Tokens(pos, span.end) <= budget) {
        out.push_back({pos, span.end});
        break;
      }
      // Look at a window only: a token never needs more than ~64 bytes, so the cut is inside
      // it unless the window is mostly whitespace (then its end is an acceptable cut too).
      size_t window_end = std::min(span.end, pos + 64 * budget + 64);
      while (window_end < span.end && IsContinuation(s[window_end])) ++window_end;
      std::vector<size_t> bounds;  // code point boundaries after pos
      for (size_t i = NextBoundary(s, pos); i <= window_end; i = NextBoundary(s, i)) {
        bounds.push_back(i);
        if (i >= window_end) break;
      }
      // The largest boundary whose prefix fits (token counts grow with the prefix).
      size_t lo = 0, hi = bounds.size();  // answer in [0, hi): bounds[0] always fits (>= 16 tokens)
      while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (Tokens(pos, bounds[mid]) <= budget) lo = mid;
        else hi = mid;
      }
      size_t fit = bounds[lo];
      // Prefer the last word boundary at or before `fit`.
      size_t cut = fit;
      for (size_t k = lo + 1; k-- > 0;) {
        size_t b = bounds[k];
        if (b >= span.end) break;
        const char32_t before = CodePointAt(s, k == 0 ? pos : bounds[k - 1]);
        const char32_t after = CodePointAt(s, b);
        if (IsAsciiSpace(s[b]) || IsAsciiSpace(s[b - 1]) || IsCjkChar(before) || IsCjkChar(after)) {
          cut = b;
          break;
        }
      }
      Span piece = Trim({pos, cut});
      if (piece.start < piece.end) out.push_back(piece);
      pos = cut;
      while (pos < span.end && IsAsciiSpace(s[pos])) ++pos;
    }
    return out;
  }

  void AddBlock(const Block& b, Span block) {
    std::vector<Piece> pieces;
    for (Span sentence : Sentences(block)) {
      if (Tokens(sentence.start, sentence.end) <= max_) {
        pieces.push_back({sentence, b.page});
      } else {
        for (Span p : SplitLong(sentence, max_)) pieces.push_back({p, b.page});
      }
    }
    if (pieces.empty()) return;
    if (cur_.empty()) cur_path_ = b.section_path;
    const size_t block_tokens = Tokens(pieces.front().span.start, pieces.back().span.end);
    if (!cur_.empty() && block_tokens <= max_ &&
        Tokens(cur_.front().span.start, pieces.back().span.end) > max_) {
      // A block that fits in a chunk of its own is not cut: it starts the next chunk (after the
      // overlap that still fits with it).
      StartNext(pieces.back().span.end);
    }
    for (const Piece& p : pieces) Add(p);
  }

  void Add(const Piece& p) {
    if (!cur_.empty() && Tokens(cur_.front().span.start, p.span.end) > max_) StartNext(p.span.end);
    cur_.push_back(p);
  }

  // Emits the current chunk and keeps as overlap its tail pieces that fit in `overlap_` tokens
  // and still leave room for the text up to `next_end`.
  void StartNext(size_t next_end) {
    Emit();
    size_t keep = cur_.size();
    while (keep > 0) {
      const size_t start = cur_[keep - 1].span.start;
      if (Tokens(start, cur_.back().span.end) > overlap_ || Tokens(start, next_end) > max_) break;
      --keep;
    }
    if (keep == 0) keep = cur_.size();  // never carry a whole chunk over
    cur_.erase(cur_.begin(), cur_.begin() + static_cast<std::ptrdiff_t>(keep));
  }

  void Emit() {
    if (cur_.empty()) return;
    Chunk c;
    c.char_start = cur_.front().span.start;
    c.char_end = cur_.back().span.end;
    c.text = md_.substr(c.char_start, c.char_end - c.char_start);
    c.section_path = cur_path_;
    c.page = cur_.front().page;
    c.n_tokens = static_cast<int>(CountTokens(c.text));
    chunks_.push_back(std::move(c));
  }

  void Flush() {
    Emit();
    cur_.clear();
  }

  void AddTable(const Block& b, Span table) {
    // Lines of the rendered table: header, separator, then one line per row.
    std::vector<Span> lines;
    for (size_t pos = table.start; pos < table.end;) {
      size_t nl = md_.find('\n', pos);
      if (nl == std::string::npos || nl > table.end) nl = table.end;
      lines.push_back({pos, nl});
      pos = nl + 1;
    }
    if (lines.size() <= 2) {
      EmitTable(b, "", table, table.start);
      return;
    }
    const std::string header = md_.substr(lines[0].start, lines[1].end - lines[0].start) + "\n";
    const size_t header_tokens = CountTokens(header);
    // One token of slack: the header's and the row's rounded counts may each round down.
    size_t budget = max_ > header_tokens + 9 ? max_ - header_tokens - 1 : std::max<size_t>(max_ / 2, 8);
    auto fits = [&](size_t start, size_t end) {
      return CountTokens(header + md_.substr(start, end - start)) <= max_ || Tokens(start, end) <= budget;
    };
    bool first = true;
    size_t row = 2;
    while (row < lines.size()) {
      if (!fits(lines[row].start, lines[row].end)) {  // one oversized row: split it
        for (Span p : SplitLong(lines[row], budget)) {
          EmitTable(b, header, p, first ? table.start : p.start);
          first = false;
        }
        ++row;
        continue;
      }
      size_t last = row;
      while (last + 1 < lines.size() && fits(lines[row].start, lines[last + 1].end)) ++last;
      Span rows{lines[row].start, lines[last].end};
      EmitTable(b, header, rows, first ? table.start : rows.start);
      first = false;
      row = last + 1;
    }
  }

  // A table chunk: `header` (empty for the first chunk, whose span starts at the header) and
  // the rows in `rows`; its span is [span_start, rows.end).
  void EmitTable(const Block& b, const std::string& header, Span rows, size_t span_start) {
    Chunk c;
    c.char_start = span_start;
    c.char_end = rows.end;
    if (span_start < rows.start) {
      c.text = md_.substr(span_start, rows.end - span_start);
    } else {
      c.text = header + md_.substr(rows.start, rows.end - rows.start);
    }
    c.section_path = b.section_path;
    c.page = b.page;
    c.n_tokens = static_cast<int>(CountTokens(c.text));
    chunks_.push_back(std::move(c));
  }

  const ExtractedDocument& doc_;
  const size_t max_, overlap_;
  std::string md_;
  std::vector<Piece> cur_;  // pieces of the chunk being built (one section)
  std::vector<std::string> cur_path_;
  std::vector<Chunk> chunks_;
};

}  // namespace

Result<std::vector<Chunk>> ChunkDocument(const ExtractedDocument& doc, const ChunkOptions& options) {
  if (options.max_tokens < 16) {
    return InvalidArgumentError(fmt::format("max_tokens must be at least 16 (got {})", options.max_tokens),
                                "max_tokens");
  }
  if (options.overlap_tokens < 0 || options.overlap_tokens >= options.max_tokens) {
    return InvalidArgumentError(fmt::format("overlap_tokens must be in [0, max_tokens) (got {} with "
                                            "max_tokens {})",
                                            options.overlap_tokens, options.max_tokens),
                                "overlap_tokens");
  }
  return Chunker(doc, options).Run();
}

}  // namespace yunzhi::knowledge
