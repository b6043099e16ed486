// knowledge::Extract: sniff the format, decode the charset, hand over to one parser.
#include "yunzhi/knowledge/ingest.h"

#include <magic.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge {
namespace {

using internal::CollapseSpace;

// One libmagic handle per thread: a magic_t is not safe to share, and loading the database costs
// a few milliseconds, too much to repeat per document.
struct MagicCloser {
  void operator()(magic_t m) const { magic_close(m); }
};

std::string SniffMime(std::string_view bytes) {
  thread_local std::unique_ptr<std::remove_pointer_t<magic_t>, MagicCloser> cookie = [] {
    magic_t m = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
    if (m != nullptr && magic_load(m, nullptr) != 0) {
      magic_close(m);
      m = nullptr;
    }
    return std::unique_ptr<std::remove_pointer_t<magic_t>, MagicCloser>(m);
  }();
  if (!cookie) return "application/octet-stream";
  const char* mime = magic_buffer(cookie.get(), bytes.data(), bytes.size());
  return mime != nullptr ? mime : "application/octet-stream";
}

std::string Extension(std::string_view name) {
  size_t slash = name.find_last_of("/\\");
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return "";
  std::string ext(name.substr(dot + 1));
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

bool LooksLikeHtml(std::string_view utf8) {
  std::string head(utf8.substr(0, 1024));
  std::transform(head.begin(), head.end(), head.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return head.find("<html") != std::string::npos || head.find("<!doctype html") != std::string::npos;
}


}  // namespace

namespace internal {

std::string CollapseSpace(std::string_view s) {
  std::string out;
  bool space = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    // U+00A0 (&nbsp;) counts as space: HTML pages use it to pad empty cells and paragraphs.
    bool nbsp = c == '\xC2' && i + 1 < s.size() && s[i + 1] == '\xA0';
    if (nbsp || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      if (nbsp) ++i;
      space = !out.empty();
    } else {
      if (space) out.push_back(' ');
      space = false;
      out.push_back(c);
    }
  }
  return out;
}

void DocBuilder::Heading(int level, std::string text) {
  text = CollapseSpace(text);
  if (text.empty()) return;
  level = std::clamp(level, 1, 6);
  while (!headings_.empty() && headings_.back().first >= level) headings_.pop_back();
  Block b;
  b.kind = BlockKind::kHeading;
  b.level = level;
  b.text = text;
  Stamp(b);
  blocks_.push_back(std::move(b));
  headings_.emplace_back(level, std::move(text));
}

void DocBuilder::Add(BlockKind kind, std::string text, int level) {
  if (kind != BlockKind::kCode) text = CollapseSpace(text);
  if (text.find_first_not_of(" \n\r\t") == std::string::npos) return;
  Block b;
  b.kind = kind;
  b.level = level;
  b.text = std::move(text);
  Stamp(b);
  blocks_.push_back(std::move(b));
}

void DocBuilder::Table(std::vector<std::vector<std::string>> rows, bool has_header_row) {
  if (rows.empty()) return;
  Block b;
  b.kind = BlockKind::kTable;
  for (auto& row : rows) {
    for (auto& cell : row) cell = CollapseSpace(cell);
    std::string line;
    for (auto& cell : row) {
      if (!line.empty()) line += " | ";
      line += cell;
    }
    if (!b.text.empty()) b.text += '\n';
    b.text += line;
  }
  b.rows = std::move(rows);
  b.has_header_row = has_header_row;
  Stamp(b);
  blocks_.push_back(std::move(b));
}

void DocBuilder::Stamp(Block& b) const {
  for (auto& h : headings_) b.section_path.push_back(h.second);
  b.page = page_;
}

void DocBuilder::Append(std::vector<Block> blocks) {
  std::vector<std::string> prefix;
  for (auto& h : headings_) prefix.push_back(h.second);
  for (Block& b : blocks) {
    b.section_path.insert(b.section_path.begin(), prefix.begin(), prefix.end());
    if (b.page == 0) b.page = page_;
    blocks_.push_back(std::move(b));
  }
}

Result<std::vector<Block>> ParsePlainText(std::string_view utf8) {
  DocBuilder doc;
  std::string para;
  size_t pos = 0;
  while (pos <= utf8.size()) {
    size_t nl = utf8.find('\n', pos);
    std::string_view line = utf8.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (line.find_first_not_of(" \t\r\f") == std::string_view::npos) {
      doc.Add(BlockKind::kParagraph, std::move(para));
      para.clear();
    } else {
      if (!para.empty()) para += '\n';
      para += line;
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  doc.Add(BlockKind::kParagraph, std::move(para));
  return doc.Take();
}

}  // namespace internal

std::string ExtractedDocument::ToMarkdown() const { return ToMarkdown(nullptr); }

std::string ExtractedDocument::ToMarkdown(std::vector<std::pair<size_t, size_t>>* block_spans) const {
  std::string out;
  if (block_spans != nullptr) block_spans->clear();
  auto cell = [](std::string s) {
    std::string r;
    for (char c : s) {
      if (c == '|') r += "\\|";
      else if (c == '\n') r += ' ';
      else r += c;
    }
    return r;
  };
  for (const Block& b : blocks) {
    const size_t block_start = out.size();
    switch (b.kind) {
      case BlockKind::kHeading:
        out += std::string(static_cast<size_t>(std::clamp(b.level, 1, 6)), '#') + " " + b.text + "\n\n";
        break;
      case BlockKind::kParagraph:
        out += b.text + "\n\n";
        break;
      case BlockKind::kListItem:
        out += std::string(static_cast<size_t>(b.level) * 2, ' ') + "- " + b.text + "\n\n";
        break;
      case BlockKind::kCode:
        out += "```\n" + b.text + (b.text.ends_with('\n') ? "" : "\n") + "```\n\n";
        break;
      case BlockKind::kTable: {
        size_t n_cols = 0;
        for (auto& r : b.rows) n_cols = std::max(n_cols, r.size());
        if (n_cols == 0) break;
        for (size_t i = 0; i < b.rows.size(); ++i) {
          out += "|";
          for (size_t c = 0; c < n_cols; ++c) {
            out += " " + (c < b.rows[i].size() ? cell(b.rows[i][c]) : std::string()) + " |";
          }
          out += "\n";
          if (i == 0) {
            out += "|";
            for (size_t c = 0; c < n_cols; ++c) out += " --- |";
            out += "\n";
          }
        }
        out += "\n";
        break;
      }
    }
    if (block_spans != nullptr) {
      // Every non-empty rendering above ends with a blank line ("\n\n"), not part of the span.
      const size_t end = out.size() > block_start + 2 ? out.size() - 2 : block_start;
      block_spans->emplace_back(block_start, end);
    }
  }
  return out;
}

namespace {

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

bool IsRasterImage(std::string_view mime) {
  for (std::string_view m : {"image/png", "image/jpeg", "image/tiff", "image/bmp", "image/x-ms-bmp",
                             "image/gif", "image/webp", "image/x-portable-pixmap",
                             "image/x-portable-greymap", "image/x-portable-bitmap", "image/jp2"}) {
    if (mime == m) return true;
  }
  return false;
}

ExtractedDocument FromParsed(std::string mime, internal::Parsed p) {
  ExtractedDocument doc;
  doc.mime_type = std::move(mime);
  doc.blocks = std::move(p.blocks);
  doc.page_count = p.page_count;
  doc.ocr_page_count = p.ocr_page_count;
  doc.warnings = std::move(p.warnings);
  return doc;
}

// A zip container: the parts inside say what it is (libmagic does not always look that far).
Result<ExtractedDocument> ExtractZip(std::string_view bytes, const internal::Context& ctx,
                                     const std::string& sniffed) {
  YZ_ASSIGN_OR_RETURN(auto zip, internal::ZipReader::Open(bytes, ctx.options));
  if (zip->Has("mimetype")) {
    YZ_ASSIGN_OR_RETURN(std::string m, zip->Read("mimetype"));
    m = CollapseSpace(m.substr(0, 200));
    if (m == "application/epub+zip") {
      YZ_ASSIGN_OR_RETURN(auto p, internal::ParseEpub(*zip, ctx));
      return FromParsed(m, std::move(p));
    }
    if (!m.empty()) return InvalidArgumentError(fmt::format("unsupported format {}", m));
  }
  if (zip->Has("word/document.xml")) {
    YZ_ASSIGN_OR_RETURN(auto p, internal::ParseDocx(*zip, ctx));
    return FromParsed("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                      std::move(p));
  }
  if (zip->Has("xl/workbook.xml")) {
    YZ_ASSIGN_OR_RETURN(auto p, internal::ParseXlsx(*zip, ctx));
    return FromParsed("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                      std::move(p));
  }
  if (zip->Has("ppt/presentation.xml")) {
    YZ_ASSIGN_OR_RETURN(auto p, internal::ParsePptx(*zip, ctx));
    return FromParsed("application/vnd.openxmlformats-officedocument.presentationml.presentation",
                      std::move(p));
  }
  if (zip->Has("META-INF/container.xml")) {
    YZ_ASSIGN_OR_RETURN(auto p, internal::ParseEpub(*zip, ctx));
    return FromParsed("application/epub+zip", std::move(p));
  }
  return InvalidArgumentError(fmt::format("unsupported format {}", sniffed));
}

Result<ExtractedDocument> ExtractText(std::string_view bytes, std::string_view file_name_hint,
                                      const std::string& ext, std::string mime,
                                      const ExtractOptions& options) {
  ExtractedDocument doc;
  bool wide = internal::LooksLikeWideText(bytes);
  std::string declared = (mime == "text/html" || ext == "html" || ext == "htm")
                             ? internal::HtmlMetaCharset(bytes) : std::string();
  Result<std::string> utf8 = internal::DecodeToUtf8(bytes, declared, &doc.charset);
  if (!utf8) return utf8.error();
  // UTF-16/32 input: sniff again on the decoded text to learn the subtype.
  if (wide) mime = SniffMime(*utf8);

  Result<std::vector<Block>> blocks = std::vector<Block>{};
  if (ext == "md" || ext == "markdown") {
    doc.mime_type = "text/markdown";
    blocks = internal::ParseMarkdown(*utf8);
  } else if (ext == "csv" || ext == "tsv" || mime == "text/csv") {
    doc.mime_type = ext == "tsv" ? "text/tab-separated-values" : "text/csv";
    blocks = internal::ParseCsv(*utf8, ext == "tsv" ? '\t' : '\0');
  } else if (ext == "json" || mime == "application/json") {
    doc.mime_type = "application/json";
    blocks = internal::ParseJson(*utf8);
  } else if (mime == "text/html" || ext == "html" || ext == "htm" || LooksLikeHtml(*utf8)) {
    doc.mime_type = "text/html";
    blocks = internal::ParseHtml(*utf8, options.max_nesting);
  } else {
    doc.mime_type = "text/plain";
    blocks = internal::ParsePlainText(*utf8);
  }
  if (!blocks) return blocks.error();
  doc.blocks = std::move(*blocks);
  return doc;
}

Result<ExtractedDocument> Dispatch(std::string_view bytes, std::string_view file_name_hint,
                                   const internal::Context& ctx) {
  const ExtractOptions& options = ctx.options;
  if (bytes.empty()) return InvalidArgumentError("empty document");
  if (bytes.size() > options.max_bytes) {
    return Error(Code::kPayloadTooLarge, fmt::format("document of {} bytes exceeds the limit of {}",
                                                     bytes.size(), options.max_bytes));
  }
  std::string ext = Extension(file_name_hint);
  std::string mime = SniffMime(bytes);
  if (mime == "text/rtf" || mime == "application/rtf") {
    return InvalidArgumentError(fmt::format("unsupported format {}", mime));
  }
  if (mime == "application/pdf" || StartsWith(bytes, "%PDF-")) {
    YZ_ASSIGN_OR_RETURN(auto p, internal::ParsePdf(bytes, ctx));
    return FromParsed("application/pdf", std::move(p));
  }
  if (IsRasterImage(mime)) {
    YZ_ASSIGN_OR_RETURN(auto p, internal::ParseImage(bytes, ctx));
    return FromParsed(mime, std::move(p));
  }
  if (StartsWith(bytes, std::string_view("PK\x03\x04", 4)) || mime == "application/zip" ||
      mime.find("openxmlformats") != std::string::npos || mime == "application/epub+zip") {
    return ExtractZip(bytes, ctx, mime);
  }
  bool wide = internal::LooksLikeWideText(bytes);
  bool text = mime.substr(0, 5) == "text/" || mime == "application/json" ||
              mime == "application/csv" || wide;
  if (mime == "message/rfc822" || (text && !wide && (ext == "eml" || internal::LooksLikeEmail(bytes)))) {
    YZ_ASSIGN_OR_RETURN(auto p, internal::ParseEmail(bytes, ctx));
    return FromParsed("message/rfc822", std::move(p));
  }
  if (!text) return InvalidArgumentError(fmt::format("unsupported format {}", mime));
  return ExtractText(bytes, file_name_hint, ext, mime, options);
}

}  // namespace

namespace internal {

Result<ExtractedDocument> ExtractNested(std::string_view bytes, std::string_view name_hint,
                                        const Context& ctx) {
  return Dispatch(bytes, name_hint, ctx);
}

}  // namespace internal

Result<ExtractedDocument> Extract(std::string_view bytes, std::string_view file_name_hint,
                                  const ExtractOptions& options) {
  internal::Context ctx{options, 0};
  return Dispatch(bytes, file_name_hint, ctx);
}

}  // namespace yunzhi::knowledge
