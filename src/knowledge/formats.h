// Private: the per-format parsers behind knowledge::Extract and the helpers they share.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/knowledge/ingest.h"

namespace yunzhi::knowledge::internal {

// Appends blocks and keeps the section path in step with the headings seen so far.
class DocBuilder {
 public:
  void Heading(int level, std::string text);
  void Add(BlockKind kind, std::string text, int level = 0);
  void Table(std::vector<std::vector<std::string>> rows, bool has_header_row);
  std::vector<Block> Take() { return std::move(blocks_); }

 private:
  std::vector<Block> blocks_;
  std::vector<std::pair<int, std::string>> headings_;  // (level, text) of the open sections
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
Result<std::vector<Block>> ParseHtml(std::string_view utf8);
Result<std::vector<Block>> ParseCsv(std::string_view utf8, char forced_delimiter);
Result<std::vector<Block>> ParseJson(std::string_view utf8);

}  // namespace yunzhi::knowledge::internal
