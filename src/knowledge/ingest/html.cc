// HTML with gumbo: headings, paragraphs, list items, tables, code; script and style dropped.
#include <gumbo.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <string>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

bool IsBlock(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3:
    case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6: case GUMBO_TAG_UL: case GUMBO_TAG_OL:
    case GUMBO_TAG_LI: case GUMBO_TAG_TABLE: case GUMBO_TAG_PRE: case GUMBO_TAG_BLOCKQUOTE:
    case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_HEADER: case GUMBO_TAG_FOOTER:
    case GUMBO_TAG_NAV: case GUMBO_TAG_MAIN: case GUMBO_TAG_ASIDE: case GUMBO_TAG_BR:
    case GUMBO_TAG_DL: case GUMBO_TAG_DT: case GUMBO_TAG_DD: case GUMBO_TAG_TR: case GUMBO_TAG_FORM:
    case GUMBO_TAG_HR: case GUMBO_TAG_BODY: case GUMBO_TAG_CENTER: case GUMBO_TAG_FIGURE:
    case GUMBO_TAG_ADDRESS: case GUMBO_TAG_CAPTION:
      return true;
    default:
      return false;
  }
}

bool IsSkipped(GumboTag t) {
  return t == GUMBO_TAG_SCRIPT || t == GUMBO_TAG_STYLE || t == GUMBO_TAG_NOSCRIPT ||
         t == GUMBO_TAG_TEMPLATE || t == GUMBO_TAG_HEAD;
}

// `depth` bounds the recursion on pathologically nested input.
// Input is flattened to max_nesting (default 512) levels before parsing, so this only guards
// callers that raise max_nesting very high.
constexpr int kMaxWalkDepth = 4096;

void AllText(const GumboNode* n, std::string& out, int depth = 0) {
  if (depth > kMaxWalkDepth) return;
  if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_WHITESPACE || n->type == GUMBO_NODE_CDATA) {
    out += n->v.text.text;
    return;
  }
  if (n->type != GUMBO_NODE_ELEMENT) return;
  if (IsSkipped(n->v.element.tag)) return;
  bool block = IsBlock(n->v.element.tag);
  if (block) out += ' ';
  const GumboVector& kids = n->v.element.children;
  for (unsigned i = 0; i < kids.length; ++i) {
    AllText(static_cast<const GumboNode*>(kids.data[i]), out, depth + 1);
  }
  if (block) out += ' ';
}

class Walker {
 public:
  explicit Walker(DocBuilder& doc) : doc_(doc) {}

  void Walk(const GumboNode* n, int list_depth, int depth) {
    if (depth > kMaxWalkDepth) return;  // pathological nesting: keep the stack bounded
    if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_WHITESPACE || n->type == GUMBO_NODE_CDATA) {
      inline_ += n->v.text.text;
      return;
    }
    if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_DOCUMENT && n->type != GUMBO_NODE_TEMPLATE) return;
    const GumboVector& kids = n->type == GUMBO_NODE_DOCUMENT ? n->v.document.children
                                                              : n->v.element.children;
    if (n->type == GUMBO_NODE_DOCUMENT) {
      for (unsigned i = 0; i < kids.length; ++i) Walk(Child(kids, i), list_depth, depth + 1);
      Flush();
      return;
    }
    GumboTag tag = n->v.element.tag;
    if (IsSkipped(tag)) return;
    switch (tag) {
      case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3:
      case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6: {
        Flush();
        std::string t;
        AllText(n, t);
        doc_.Heading(static_cast<int>(tag - GUMBO_TAG_H1) + 1, t);
        return;
      }
      case GUMBO_TAG_PRE: {
        Flush();
        std::string t;
        AllText(n, t);
        doc_.Add(BlockKind::kCode, t);
        return;
      }
      case GUMBO_TAG_TABLE: {
        Flush();
        Table(n);
        return;
      }
      case GUMBO_TAG_UL: case GUMBO_TAG_OL: {
        Flush();
        for (unsigned i = 0; i < kids.length; ++i) Walk(Child(kids, i), list_depth + 1, depth + 1);
        return;
      }
      case GUMBO_TAG_LI: {
        Flush();
        // Text of the item without its nested lists; those follow as deeper items.
        std::string t;
        for (unsigned i = 0; i < kids.length; ++i) {
          const GumboNode* c = Child(kids, i);
          if (c->type == GUMBO_NODE_ELEMENT &&
              (c->v.element.tag == GUMBO_TAG_UL || c->v.element.tag == GUMBO_TAG_OL ||
               c->v.element.tag == GUMBO_TAG_TABLE)) {
            continue;
          }
          AllText(c, t);
        }
        doc_.Add(BlockKind::kListItem, t, list_depth > 0 ? list_depth - 1 : 0);
        for (unsigned i = 0; i < kids.length; ++i) {
          const GumboNode* c = Child(kids, i);
          if (c->type == GUMBO_NODE_ELEMENT &&
              (c->v.element.tag == GUMBO_TAG_UL || c->v.element.tag == GUMBO_TAG_OL ||
               c->v.element.tag == GUMBO_TAG_TABLE)) {
            Walk(c, list_depth, depth + 1);
          }
        }
        return;
      }
      default:
        break;
    }
    bool block = IsBlock(tag);
    if (block) Flush();
    for (unsigned i = 0; i < kids.length; ++i) Walk(Child(kids, i), list_depth, depth + 1);
    if (block) Flush();
  }

 private:
  static const GumboNode* Child(const GumboVector& v, unsigned i) {
    return static_cast<const GumboNode*>(v.data[i]);
  }

  void Flush() {
    doc_.Add(BlockKind::kParagraph, inline_);
    inline_.clear();
  }

  void CollectRows(const GumboNode* n, std::vector<std::vector<std::string>>& rows, bool& header,
                   bool in_thead) {
    const GumboVector& kids = n->v.element.children;
    for (unsigned i = 0; i < kids.length; ++i) {
      const GumboNode* c = Child(kids, i);
      if (c->type != GUMBO_NODE_ELEMENT) continue;
      GumboTag t = c->v.element.tag;
      if (t == GUMBO_TAG_THEAD || t == GUMBO_TAG_TBODY || t == GUMBO_TAG_TFOOT) {
        CollectRows(c, rows, header, t == GUMBO_TAG_THEAD);
      } else if (t == GUMBO_TAG_TR) {
        std::vector<std::string> row;
        bool all_th = true;
        const GumboVector& cells = c->v.element.children;
        for (unsigned k = 0; k < cells.length; ++k) {
          const GumboNode* cell = Child(cells, k);
          if (cell->type != GUMBO_NODE_ELEMENT) continue;
          if (cell->v.element.tag != GUMBO_TAG_TD && cell->v.element.tag != GUMBO_TAG_TH) continue;
          if (cell->v.element.tag != GUMBO_TAG_TH) all_th = false;
          std::string text;
          AllText(cell, text);
          row.push_back(CollapseSpace(text));
          // colspan: repeat the cell so columns stay aligned.
          if (GumboAttribute* span = gumbo_get_attribute(&cell->v.element.attributes, "colspan")) {
            int n_span = std::atoi(span->value);
            for (int s = 1; s < n_span && s < 64; ++s) row.push_back(row.back());
          }
        }
        if (row.empty()) continue;
        if (rows.empty() && (all_th || in_thead)) header = true;
        rows.push_back(std::move(row));
      }
    }
  }

  void Table(const GumboNode* n) {
    std::vector<std::vector<std::string>> rows;
    bool header = false;
    CollectRows(n, rows, header, false);
    doc_.Table(std::move(rows), header);
  }

  DocBuilder& doc_;
  std::string inline_;
};

bool IsVoidTag(std::string_view name) {
  for (std::string_view v : {"br", "img", "hr", "meta", "link", "input", "area", "base", "col",
                             "embed", "param", "source", "track", "wbr"}) {
    if (name.size() == v.size() &&
        std::equal(name.begin(), name.end(), v.begin(),
                   [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; })) {
      return true;
    }
  }
  return false;
}

// Drops the tags of elements nested deeper than `max_nesting` (a space stands in for each), so
// their text stays but gumbo never builds the deep tree. Returns "" when nothing is that deep.
// The depth count is approximate (no implied end tags), which only errs towards flattening.
std::string FlattenDeepTags(std::string_view html, int max_nesting) {
  int depth = 0;
  bool too_deep = false;
  for (size_t i = 0; i + 1 < html.size() && !too_deep; ++i) {
    if (html[i] != '<') continue;
    if (std::isalpha(static_cast<unsigned char>(html[i + 1]))) {
      size_t e = i + 1;
      while (e < html.size() && std::isalnum(static_cast<unsigned char>(html[e]))) ++e;
      size_t close = html.find('>', e);
      bool self_closing = close != std::string_view::npos && close > 0 && html[close - 1] == '/';
      if (!self_closing && !IsVoidTag(html.substr(i + 1, e - i - 1))) ++depth;
      too_deep = depth > max_nesting;
    } else if (html[i + 1] == '/') {
      depth = std::max(0, depth - 1);
    }
  }
  if (!too_deep) return "";
  std::string out;
  out.reserve(html.size());
  depth = 0;
  for (size_t i = 0; i < html.size(); ++i) {
    bool open = html[i] == '<' && i + 1 < html.size() &&
                std::isalpha(static_cast<unsigned char>(html[i + 1]));
    bool end = html[i] == '<' && i + 1 < html.size() && html[i + 1] == '/';
    if (!open && !end) {
      out.push_back(html[i]);
      continue;
    }
    size_t close = html.find('>', i);
    if (close == std::string_view::npos) close = html.size() - 1;
    std::string_view tag = html.substr(i, close - i + 1);
    bool keep;
    if (open) {
      size_t e = i + 1;
      while (e < html.size() && std::isalnum(static_cast<unsigned char>(html[e]))) ++e;
      bool grows = tag.size() < 2 || tag[tag.size() - 2] != '/';
      grows = grows && !IsVoidTag(html.substr(i + 1, e - i - 1));
      keep = depth < max_nesting;
      if (grows) ++depth;
    } else {
      keep = depth <= max_nesting;
      depth = std::max(0, depth - 1);
    }
    if (keep) {
      out += tag;
    } else {
      out.push_back(' ');
    }
    i = close;
  }
  return out;
}

}  // namespace

Result<std::vector<Block>> ParseHtml(std::string_view utf8, int max_nesting) {
  // gumbo frees its tree recursively: the nesting it sees stays bounded whatever the caller asks.
  std::string flat = FlattenDeepTags(utf8, std::clamp(max_nesting, 1, kMaxWalkDepth / 2));
  if (!flat.empty()) utf8 = flat;
  std::unique_ptr<GumboOutput, void (*)(GumboOutput*)> out(
      gumbo_parse_with_options(&kGumboDefaultOptions, utf8.data(), utf8.size()),
      [](GumboOutput* o) { gumbo_destroy_output(&kGumboDefaultOptions, o); });
  if (!out) return InvalidArgumentError("corrupt HTML");
  DocBuilder doc;
  Walker(doc).Walk(out->document, 0, 0);
  return doc.Take();
}

}  // namespace yunzhi::knowledge::internal
