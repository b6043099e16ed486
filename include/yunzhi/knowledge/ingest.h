// Ingestion: turns the bytes of an uploaded document into structured text.
//
// The format is decided by content: libmagic on the bytes, and for zip containers the parts
// inside (word/document.xml, xl/workbook.xml, ppt/presentation.xml, an EPUB mimetype). The file
// name only refines a text subtype (Markdown, CSV, JSON are all "text/plain" to libmagic). Text is
// decoded to UTF-8 from whatever charset it came in (BOM, HTML meta, MIME charset, or detection:
// UTF-16/32, GB18030, cp1252). The output keeps structure that retrieval and citations need:
// headings and the section path above each block, list items, code, tables as rows of cells,
// and the 1-based page (PDF page, slide, image frame) of each block.
//
// Formats: plain text, Markdown (GFM tables), HTML, CSV/TSV, JSON, PDF (text layer in poppler's
// reading order, paragraphs split on blank-line gaps, no headings; pages with little or no text
// are also rendered at 300 dpi and OCR'd), images (PNG, JPEG, TIFF incl. multi-page, BMP, GIF,
// WebP: OCR with tesseract, English + simplified Chinese, spaces between CJK characters removed),
// DOCX (heading styles and outline levels, numbered paragraphs as list items, merged cells
// repeated, headers/footers once), XLSX (a heading and a table per sheet; values as stored, so
// dates stay serial numbers), PPTX ("Slide N" heading, title as sub-heading, page = slide),
// pictures in DOCX/PPTX OCR'd when the document/slide has little or no text, EPUB (spine order,
// through the HTML parser), e-mail (RFC 5322 + MIME; Subject heading, From/To/Cc/Date lines, the
// plain body preferred over HTML, supported attachments extracted recursively under an
// "Attachment: name" heading; a failing attachment becomes a warning). Legacy binary formats
// (.doc, .ppt, .xls, .rtf, .odt) are refused.
//
// Errors: kInvalidArgument for empty, corrupt or unsupported input (the message names the
// problem or the detected MIME type, e.g. "unsupported format application/msword", "document is
// password-protected"); kPayloadTooLarge when a limit of ExtractOptions is exceeded (bytes, pages,
// zip expansion or entry count). Bad input never crashes or hangs.
//
// Thread safety: Extract is safe to call from several threads at once. OCR engines are shared
// through an internal pool (one engine per concurrent OCR call, kept for reuse).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
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
  // Pages of a paged format (PDF pages, slides, image frames, spreadsheet sheets); 0 otherwise.
  int page_count = 0;
  // How many of those pages (or pictures) went through OCR.
  int ocr_page_count = 0;
  // Problems that did not fail the document, e.g. an e-mail attachment that could not be read.
  std::vector<std::string> warnings;

  // Markdown rendering: headings as '#', list items as '-', code fenced, tables as Markdown
  // tables (header row + separator; the first row is used as header when none is marked).
  std::string ToMarkdown() const;
  // The same rendering; when `block_spans` is not null it receives, for each block in order, the
  // byte span [first, second) of its rendering in the result, without the blank line after it
  // (an empty span where a block renders to nothing, e.g. a table without cells).
  std::string ToMarkdown(std::vector<std::pair<size_t, size_t>>* block_spans) const;
};

// Limits and switches for one Extract call. Defaults suit an upload endpoint.
struct ExtractOptions {
  // Input larger than this is refused with kPayloadTooLarge.
  size_t max_bytes = size_t{256} << 20;
  // Documents with more pages (PDF pages, slides, sheets, TIFF frames) are refused.
  int max_pages = 5000;
  // Run OCR on images and on PDF pages without a text layer. When false those yield no text.
  bool ocr = true;
  // A PDF page, a slide, or a whole DOCX whose own text has fewer visible characters than this
  // is OCR'd as well (PDF: the rendered page; Office: its pictures), so that a scan or screenshot
  // with a caption is not lost. 1 = OCR only when there is no text at all.
  int ocr_sparse_text_chars = 64;
  // OCR stops after this many pages or frames of one document (about 0.3 s each on one core);
  // the rest yield no text and a warning. Bounds the time a scanned book can take.
  int max_ocr_pages = 1000;
  // Tesseract language set ("+"-joined traineddata names under the tessdata directory).
  std::string ocr_languages = "eng+chi_sim";
  // HTML/XML elements nested deeper than this are flattened (their text kept, structure
  // dropped); XML parts of Office files nested deeper are refused.
  int max_nesting = 512;
  // Zip containers (DOCX, XLSX, PPTX, EPUB): total bytes inflated, 0 = 8 * max_bytes; entries.
  size_t max_zip_inflated_bytes = 0;
  int max_zip_entries = 20000;
  // E-mail attachments nested inside attachments deeper than this are skipped (with a warning).
  int max_attachment_depth = 4;
};

// Extracts structured text from the bytes of one document. `file_name_hint` (may be empty) is
// used only to tell text subtypes apart; it never overrides what the content says.
// Errors: kInvalidArgument for empty input, corrupt input, a password-protected PDF, or an
// unsupported format (the message names the detected MIME type, e.g. "unsupported format
// application/msword"); kPayloadTooLarge when `options` limits are exceeded.
Result<ExtractedDocument> Extract(std::string_view bytes, std::string_view file_name_hint = {},
                                  const ExtractOptions& options = {});

}  // namespace yunzhi::knowledge
