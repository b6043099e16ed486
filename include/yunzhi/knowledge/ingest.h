// Ingestion: turns the bytes of an uploaded document into structured text.
//
// The format is decided by content sniffing (libmagic on the bytes); the file name only refines
// a text subtype (Markdown, CSV, JSON are all "text/plain" to libmagic). Text is decoded to UTF-8
// from whatever charset it came in (BOM, HTML meta, or detection: UTF-16/32, GB18030, cp1252).
// The output keeps structure that retrieval and citations need: headings and the section path
// above each block, list items, code, and tables as rows of cells.
//
// Formats: plain text, Markdown (GFM tables), HTML, CSV/TSV, JSON. Office, PDF and images are
// recognised and refused with kUnimplemented; legacy binary formats (.doc, .ppt, .xls, .rtf, ...)
// with kInvalidArgument naming the detected MIME type.
//
// Thread safety: Extract is safe to call from several threads at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::knowledge {

enum class BlockKind { kHeading, kParagraph, kListItem, kTable, kCode };

struct Block {
  BlockKind kind = BlockKind::kParagraph;
  // Heading level 1..6 for kHeading; list nesting depth (0 = top) for kListItem; else 0.
  int level = 0;
  // The text of the block (UTF-8). For a table: the cells joined, one row per line.
  std::string text;
  // kTable only: rows of cells. When `has_header_row`, rows[0] is the header.
  std::vector<std::vector<std::string>> rows;
  bool has_header_row = false;
  // 1-based page number; 0 when the format has no pages.
  int page = 0;
  // The texts of the headings above this block, outermost first.
  std::vector<std::string> section_path;
};

struct ExtractedDocument {
  std::string mime_type;  // as sniffed and refined, e.g. "text/markdown", "text/csv"
  std::string charset;    // the source charset the text was decoded from, e.g. "UTF-16LE"
  std::vector<Block> blocks;

  // Markdown rendering: headings as '#', list items as '-', code fenced, tables as Markdown
  // tables (header row + separator; the first row is used as header when none is marked).
  std::string ToMarkdown() const;
};

// Extracts structured text from the bytes of one document. `file_name_hint` (may be empty) is
// used only to tell text subtypes apart; it never overrides what the content says.
// Errors: kInvalidArgument for empty input, corrupt input, or an unsupported format (the message
// names the detected MIME type, e.g. "unsupported format application/msword"); kUnimplemented
// for formats planned but not built yet (DOCX, XLSX, PPTX, PDF, images).
Result<ExtractedDocument> Extract(std::string_view bytes, std::string_view file_name_hint = {});

}  // namespace yunzhi::knowledge
