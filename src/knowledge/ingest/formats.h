// Private: the per-format parsers behind knowledge::Extract and the helpers they share.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <pugixml.hpp>

#include "yunzhi/base/status.h"
#include "yunzhi/knowledge/ingest.h"

namespace yunzhi::knowledge::internal {

// Appends blocks and keeps the section path in step with the headings seen so far.
class DocBuilder {
 public:
  void Heading(int level, std::string text);
  void Add(BlockKind kind, std::string text, int level = 0);
  void Table(std::vector<std::vector<std::string>> rows, bool has_header_row);
  // Appends blocks parsed elsewhere (an EPUB chapter, an e-mail attachment): their section paths
  // are prefixed with the headings open here.
  void Append(std::vector<Block> blocks);
  // Page number stamped on the blocks added from now on (0 = none).
  void SetPage(int page) { page_ = page; }
  bool empty() const { return blocks_.empty(); }
  std::vector<Block> Take() { return std::move(blocks_); }

 private:
  void Stamp(Block& b) const;
  std::vector<Block> blocks_;
  std::vector<std::pair<int, std::string>> headings_;  // (level, text) of the open sections
  int page_ = 0;
};

// Collapses runs of whitespace to one space and trims both ends.
std::string CollapseSpace(std::string_view s);

// Charset handling (charset.cc). DecodeToUtf8 converts `bytes` to UTF-8; `declared` (may be empty)
// is a charset named by the document itself (HTML meta). Sets `charset_out` to what was used.
Result<std::string> DecodeToUtf8(std::string_view bytes, std::string_view declared,
                                 std::string* charset_out);
// True when the bytes start with a UTF-16/32 BOM or look like UTF-16/32 without one.
bool LooksLikeWideText(std::string_view bytes);
// The charset named by an HTML <meta> in the first bytes, or "".
std::string HtmlMetaCharset(std::string_view bytes);

Result<std::vector<Block>> ParsePlainText(std::string_view utf8);
Result<std::vector<Block>> ParseMarkdown(std::string_view utf8);
// Tags nested deeper than `max_nesting` are dropped (their text kept) before gumbo sees the page:
// gumbo's tree building is quadratic on pathological nesting.
Result<std::vector<Block>> ParseHtml(std::string_view utf8, int max_nesting = 512);
Result<std::vector<Block>> ParseCsv(std::string_view utf8, char forced_delimiter);
Result<std::vector<Block>> ParseJson(std::string_view utf8);

// ---- Binary formats ----

// State shared by one Extract call and the documents nested in it (e-mail attachments, pictures
// inside Office files).
struct Context {
  const ExtractOptions& options;
  int depth = 0;  // nesting of attachments
};

// What a binary parser returns besides its blocks.
struct Parsed {
  std::vector<Block> blocks;
  int page_count = 0;
  int ocr_page_count = 0;
  std::vector<std::string> warnings;
};

// Dispatches on content (ingest.cc); used for attachments.
Result<ExtractedDocument> ExtractNested(std::string_view bytes, std::string_view name_hint,
                                        const Context& ctx);

// A zip archive in memory with limits on entry count and total bytes inflated (zip.cc).
class ZipReader {
 public:
  static Result<std::unique_ptr<ZipReader>> Open(std::string_view bytes, const ExtractOptions& o);
  ~ZipReader();
  bool Has(const std::string& name) const;
  // The entry's bytes; kInvalidArgument when missing or damaged, kPayloadTooLarge past the budget.
  Result<std::string> Read(const std::string& name);
  const std::vector<std::string>& names() const { return names_; }

 private:
  ZipReader() = default;
  void* zip_ = nullptr;     // zip_t*
  void* source_ = nullptr;  // zip_source_t*
  std::vector<std::string> names_;
  std::map<std::string, int64_t> index_;
  uint64_t budget_bytes_ = 0;  // what may still be inflated
};

// Resolves `target` of an OPC relationship relative to the folder of `part` ("word/document.xml").
std::string ResolvePartPath(const std::string& part, const std::string& target);
// Reads an OPC .rels part: relationship id -> resolved target path.
std::map<std::string, std::string> ReadRelationships(ZipReader& zip, const std::string& part);

// The element name without its namespace prefix ("w:p" -> "p").
inline std::string_view LocalName(const pugi::xml_node& n) {
  std::string_view name = n.name();
  size_t colon = name.find(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}
// The attribute whose name without prefix is `local`, or an empty attribute.
pugi::xml_attribute LocalAttr(const pugi::xml_node& n, std::string_view local);
// The first child element whose local name is `local`, or an empty node.
pugi::xml_node LocalChild(const pugi::xml_node& n, std::string_view local);
// Parses one XML part of the zip into `xml`. kInvalidArgument when missing or malformed.
Status LoadXmlPart(ZipReader& zip, const std::string& part, pugi::xml_document& xml);

Result<Parsed> ParseDocx(ZipReader& zip, const Context& ctx);
Result<Parsed> ParseXlsx(ZipReader& zip, const Context& ctx);
Result<Parsed> ParsePptx(ZipReader& zip, const Context& ctx);
Result<Parsed> ParseEpub(ZipReader& zip, const Context& ctx);
Result<Parsed> ParsePdf(std::string_view bytes, const Context& ctx);
// Raster images through leptonica + OCR (image.cc). Multi-page TIFF gives one page per frame.
Result<Parsed> ParseImage(std::string_view bytes, const Context& ctx);
Result<Parsed> ParseEmail(std::string_view bytes, const Context& ctx);
// True when the bytes start like an RFC 5322 message (header fields incl. From and one more).
bool LooksLikeEmail(std::string_view bytes);

// OCR (ocr.cc). Recognises an 8-bit grey image; returns UTF-8 text with the spaces tesseract puts
// between CJK characters removed. Engines are pooled per language set. Thread-safe.
Result<std::string> OcrGray(const uint8_t* pixels, int width, int height, int bytes_per_line,
                            const std::string& languages);
// Removes spaces (and tabs) that sit between two CJK characters.
std::string JoinCjk(std::string_view utf8);
// Visible (non-space) code points in UTF-8 text.
size_t CountVisibleChars(std::string_view utf8);
// Splits OCR or PDF page text into paragraphs on blank lines; adds them to `doc`.
void AddTextParagraphs(DocBuilder& doc, std::string_view text);

}  // namespace yunzhi::knowledge::internal
