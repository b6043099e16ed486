// Markdown with cmark-gfm and its table extension: headings, paragraphs, list items, code, tables.
#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <cmark-gfm.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

bool IsType(cmark_node* n, const char* name) {
  const char* t = cmark_node_get_type_string(n);
  return t != nullptr && std::strcmp(t, name) == 0;
}

// Text of the inline content under `n`.
// `depth` bounds the recursion on pathologically nested input.
void InlineText(cmark_node* n, std::string& out, int depth = 0) {
  if (depth > 200) return;
  for (cmark_node* c = cmark_node_first_child(n); c != nullptr; c = cmark_node_next(c)) {
    switch (cmark_node_get_type(c)) {
      case CMARK_NODE_TEXT:
      case CMARK_NODE_CODE:
      case CMARK_NODE_HTML_INLINE: {
        const char* lit = cmark_node_get_literal(c);
        if (lit != nullptr && cmark_node_get_type(c) != CMARK_NODE_HTML_INLINE) out += lit;
        break;
      }
      case CMARK_NODE_SOFTBREAK:
      case CMARK_NODE_LINEBREAK:
        out += ' ';
        break;
      default:
        InlineText(c, out, depth + 1);
    }
  }
}

void Walk(cmark_node* n, int list_depth, DocBuilder& doc) {
  if (list_depth > 200) return;  // nested lists / quotes: keep the stack bounded
  for (cmark_node* c = cmark_node_first_child(n); c != nullptr; c = cmark_node_next(c)) {
    switch (cmark_node_get_type(c)) {
      case CMARK_NODE_HEADING: {
        std::string t;
        InlineText(c, t);
        doc.Heading(cmark_node_get_heading_level(c), t);
        break;
      }
      case CMARK_NODE_PARAGRAPH: {
        std::string t;
        InlineText(c, t);
        doc.Add(BlockKind::kParagraph, t);
        break;
      }
      case CMARK_NODE_CODE_BLOCK: {
        const char* lit = cmark_node_get_literal(c);
        doc.Add(BlockKind::kCode, lit != nullptr ? lit : "");
        break;
      }
      case CMARK_NODE_LIST:
        Walk(c, list_depth + 1, doc);
        break;
      case CMARK_NODE_ITEM: {
        // The item's own paragraphs make its text; nested lists become deeper items.
        std::string t;
        for (cmark_node* p = cmark_node_first_child(c); p != nullptr; p = cmark_node_next(p)) {
          if (cmark_node_get_type(p) == CMARK_NODE_PARAGRAPH || cmark_node_get_type(p) == CMARK_NODE_HEADING) {
            if (!t.empty()) t += ' ';
            InlineText(p, t);
          }
        }
        doc.Add(BlockKind::kListItem, t, list_depth > 0 ? list_depth - 1 : 0);
        for (cmark_node* p = cmark_node_first_child(c); p != nullptr; p = cmark_node_next(p)) {
          auto type = cmark_node_get_type(p);
          if (type == CMARK_NODE_LIST) {
            Walk(p, list_depth + 1, doc);
          } else if (type == CMARK_NODE_CODE_BLOCK) {
            const char* lit = cmark_node_get_literal(p);
            doc.Add(BlockKind::kCode, lit != nullptr ? lit : "");
          }
        }
        break;
      }
      default:
        if (IsType(c, "table")) {
          std::vector<std::vector<std::string>> rows;
          bool header = false;
          for (cmark_node* r = cmark_node_first_child(c); r != nullptr; r = cmark_node_next(r)) {
            if (!IsType(r, "table_row")) continue;
            if (rows.empty() && cmark_gfm_extensions_get_table_row_is_header(r)) header = true;
            std::vector<std::string> row;
            for (cmark_node* cell = cmark_node_first_child(r); cell != nullptr; cell = cmark_node_next(cell)) {
              std::string t;
              InlineText(cell, t);
              row.push_back(std::move(t));
            }
            rows.push_back(std::move(row));
          }
          doc.Table(std::move(rows), header);
        } else if (cmark_node_get_type(c) == CMARK_NODE_BLOCK_QUOTE) {
          Walk(c, list_depth + 1, doc);  // counted as depth so nested quotes stay bounded
        } else if (cmark_node_get_type(c) == CMARK_NODE_HTML_BLOCK) {
          // Raw HTML inside Markdown (lists, tables) is content too: parse it as HTML.
          const char* lit = cmark_node_get_literal(c);
          auto blocks = ParseHtml(lit != nullptr ? lit : "");
          if (!blocks) break;
          for (Block& b : *blocks) {
            if (b.kind == BlockKind::kTable) doc.Table(std::move(b.rows), b.has_header_row);
            else if (b.kind == BlockKind::kHeading) doc.Heading(b.level, std::move(b.text));
            else doc.Add(b.kind, std::move(b.text), b.level);
          }
        }
        // Thematic breaks carry no text worth keeping.
    }
  }
}

}  // namespace

Result<std::vector<Block>> ParseMarkdown(std::string_view utf8) {
  static std::once_flag registered;
  std::call_once(registered, [] { cmark_gfm_core_extensions_ensure_registered(); });
  std::unique_ptr<cmark_parser, decltype(&cmark_parser_free)> parser(
      cmark_parser_new(CMARK_OPT_DEFAULT), &cmark_parser_free);
  if (cmark_syntax_extension* table = cmark_find_syntax_extension("table")) {
    cmark_parser_attach_syntax_extension(parser.get(), table);
  }
  cmark_parser_feed(parser.get(), utf8.data(), utf8.size());
  std::unique_ptr<cmark_node, decltype(&cmark_node_free)> root(cmark_parser_finish(parser.get()),
                                                               &cmark_node_free);
  DocBuilder doc;
  if (root) Walk(root.get(), 0, doc);
  return doc.Take();
}

}  // namespace yunzhi::knowledge::internal
