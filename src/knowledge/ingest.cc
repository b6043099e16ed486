// knowledge::Extract: sniff the format, decode the charset, hand over to one parser.
#include "yunzhi/knowledge/ingest.h"

#include <magic.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "knowledge/formats.h"

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

bool IsPlanned(std::string_view mime) {
  return mime == "application/pdf" || mime.substr(0, 6) == "image/" ||
         mime.find("openxmlformats") != std::string_view::npos || mime == "application/epub+zip" ||
         mime == "application/zip";
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
  for (auto& h : headings_) b.section_path.push_back(h.second);
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
  for (auto& h : headings_) b.section_path.push_back(h.second);
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
  for (auto& h : headings_) b.section_path.push_back(h.second);
  blocks_.push_back(std::move(b));
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

std::string ExtractedDocument::ToMarkdown() const {
  std::string out;
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
  }
  return out;
}

Result<ExtractedDocument> Extract(std::string_view bytes, std::string_view file_name_hint) {
  if (bytes.empty()) return InvalidArgumentError("empty document");
  std::string ext = Extension(file_name_hint);
  std::string mime = SniffMime(bytes);
  bool wide = internal::LooksLikeWideText(bytes);
  bool text = mime.substr(0, 5) == "text/" || mime == "application/json" ||
              mime == "application/csv" || wide;
  if (mime == "text/rtf" || mime == "application/rtf") {
    return InvalidArgumentError(fmt::format("unsupported format {}", mime));
  }
  if (!text) {
    if (IsPlanned(mime)) {
      return Error(Code::kUnimplemented, fmt::format("format {} is not supported yet", mime));
    }
    return InvalidArgumentError(fmt::format("unsupported format {}", mime));
  }
  // A text file named .eml is an e-mail (libmagic often says text/plain); not handled yet.
  if (ext == "eml" || mime == "message/rfc822") {
    return InvalidArgumentError("unsupported format message/rfc822");
  }

  ExtractedDocument doc;
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
    blocks = internal::ParseHtml(*utf8);
  } else {
    doc.mime_type = "text/plain";
    blocks = internal::ParsePlainText(*utf8);
  }
  if (!blocks) return blocks.error();
  doc.blocks = std::move(*blocks);
  return doc;
}

}  // namespace yunzhi::knowledge
