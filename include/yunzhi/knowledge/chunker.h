// Chunking: splits an extracted document into retrieval units that follow its structure.
//
// Rules (ChunkDocument):
// - A heading ends the current chunk; a chunk never contains a heading (the headings above it
//   are its `section_path`), so chunks never span sections. Consecutive blocks of one section
//   (paragraphs, list items, code) are packed together while they fit; a block that fits in a
//   chunk of its own is never cut to fill the previous chunk: it starts the next one.
// - A block too long for one chunk is split at sentence ends (。！？ and .!? followed by space, and
//   newlines), a sentence too long at spaces or between CJK characters, and a run without either
//   at code point boundaries (never inside a UTF-8 sequence).
// - Overlap: when a section continues into a new chunk, that chunk starts with the last whole
//   sentences (pieces) of the previous chunk that fit in `overlap_tokens`.
// - Non-table chunks are exact spans of the Markdown rendering: for them
//   `text == doc.ToMarkdown().substr(char_start, char_end - char_start)`, overlap included (the
//   span starts where the overlapping sentences start). Blocks packed together keep the "\n\n"
//   between them as rendered.
// - Tables are split by rows; each table chunk is the Markdown header row + separator line
//   followed by whole rows, so `text` is the header lines plus a span of rows: the span
//   [char_start, char_end) covers exactly the rows after the header lines (for the first chunk of
//   a table it starts at the header). A row alone above the limit is split like a paragraph and
//   every piece is preceded by the header lines. Tables are never packed with other blocks.
// - n_tokens = CountTokens(text) <= max_tokens, except a table chunk whose header lines take
//   nearly the whole limit (then rows are packed up to max_tokens / 2 beside the header).
// - page is the page of the chunk's first piece (with overlap, possibly the previous block's).
//
// Errors: kInvalidArgument when max_tokens < 16, overlap_tokens < 0 or overlap_tokens >=
// max_tokens. A document without text gives no chunks (not an error).
// Thread safety: ChunkDocument is a pure function.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/knowledge/ingest.h"

namespace yunzhi::knowledge {

struct ChunkOptions {
  int max_tokens = 400;     // CountTokens units (text_analysis.h)
  int overlap_tokens = 50;  // carried over from the previous chunk of the same section
};

struct Chunk {
  std::string text;                       // what is indexed, embedded and quoted in citations
  std::vector<std::string> section_path;  // headings above it, outermost first
  int page = 0;                           // page of its first block (0: no pages)
  size_t char_start = 0, char_end = 0;    // span of ExtractedDocument::ToMarkdown() it covers
  int n_tokens = 0;                       // CountTokens(text)
};

Result<std::vector<Chunk>> ChunkDocument(const ExtractedDocument& doc, const ChunkOptions& options);

}  // namespace yunzhi::knowledge
