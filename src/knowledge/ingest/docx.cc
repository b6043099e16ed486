// DOCX (WordprocessingML): headings from styles and outline levels, numbered paragraphs as list
// items, tables with merged cells aligned, headers and footers once; pictures are OCR'd when the
// document has no text of its own.
#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

struct StyleInfo {
  int heading_level = 0;  // 1..9, 0 = not a heading
  bool numbered = false;
};

// Heading level from a style name or id: "heading 2", "Heading2", "Title", "标题 1".
int HeadingLevelFromName(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (name == "title") return 1;
  for (std::string_view prefix : {"heading", "标题"}) {
    if (name.rfind(prefix, 0) == 0) {
      std::string rest = CollapseSpace(name.substr(prefix.size()));
      if (rest.size() == 1 && rest[0] >= '1' && rest[0] <= '9') return rest[0] - '0';
    }
  }
  return 0;
}

std::map<std::string, StyleInfo> ReadStyles(ZipReader& zip) {
  std::map<std::string, StyleInfo> styles;
  pugi::xml_document xml;
  if (!zip.Has("word/styles.xml") || !LoadXmlPart(zip, "word/styles.xml", xml)) return styles;
  std::map<std::string, std::string> based_on;
  for (pugi::xml_node s : xml.document_element().children()) {
    if (LocalName(s) != "style") continue;
    std::string id = LocalAttr(s, "styleId").value();
    StyleInfo info;
    info.heading_level = HeadingLevelFromName(LocalAttr(LocalChild(s, "name"), "val").value());
    if (info.heading_level == 0) info.heading_level = HeadingLevelFromName(id);
    pugi::xml_node ppr = LocalChild(s, "pPr");
    if (pugi::xml_node ol = LocalChild(ppr, "outlineLvl"); ol && info.heading_level == 0) {
      int lvl = LocalAttr(ol, "val").as_int(9);
      if (lvl >= 0 && lvl < 9) info.heading_level = lvl + 1;
    }
    info.numbered = static_cast<bool>(LocalChild(ppr, "numPr"));
    if (pugi::xml_node b = LocalChild(s, "basedOn")) based_on[id] = LocalAttr(b, "val").value();
    styles[id] = info;
  }
  // Inherit heading level through basedOn (a few levels are enough; cycles are cut).
  for (auto& [id, info] : styles) {
    std::string cur = id;
    for (int hop = 0; hop < 8 && info.heading_level == 0; ++hop) {
      auto b = based_on.find(cur);
      if (b == based_on.end()) break;
      cur = b->second;
      auto parent = styles.find(cur);
      if (parent != styles.end()) info.heading_level = parent->second.heading_level;
    }
  }
  return styles;
}

// True for a table cell that continues a vertical merge from the row above.
bool ContinuesMerge(const pugi::xml_node& tc) {
  pugi::xml_node vmerge = LocalChild(LocalChild(tc, "tcPr"), "vMerge");
  return vmerge && std::string_view(LocalAttr(vmerge, "val").value()) != "restart";
}

class DocxWalker {
 public:
  DocxWalker(ZipReader& zip, const Context& ctx, std::map<std::string, StyleInfo> styles,
             std::map<std::string, std::string> rels)
      : zip_(zip), ctx_(ctx), styles_(std::move(styles)), rels_(std::move(rels)) {}

  Status Body(const pugi::xml_node& body, int depth) {
    if (depth > ctx_.options.max_nesting) return InvalidArgumentError("DOCX nested too deeply");
    for (pugi::xml_node n : body.children()) {
      std::string_view name = LocalName(n);
      if (name == "p") {
        Paragraph(n);
      } else if (name == "tbl") {
        YZ_RETURN_IF_ERROR(Table(n, depth + 1));
      } else if (name == "sdt" || name == "customXml" || name == "smartTag") {
        // Content controls and custom XML wrap ordinary paragraphs and tables.
        pugi::xml_node content = LocalChild(n, "sdtContent");
        YZ_RETURN_IF_ERROR(Body(content ? content : n, depth + 1));
      }
    }
    return OkStatus();
  }

  // Text of a paragraph, table cell or any subtree: runs, tabs and breaks; deleted text and
  // field instructions are not text.
  void Text(const pugi::xml_node& n, std::string& out, int depth) {
    if (depth > ctx_.options.max_nesting) return;
    for (pugi::xml_node c : n.children()) {
      if (c.type() != pugi::node_element) continue;
      std::string_view name = LocalName(c);
      if (name == "t") {
        out += c.text().get();
      } else if (name == "tab") {
        out += '\t';
      } else if (name == "br" || name == "cr") {
        out += '\n';
      } else if (name == "p") {
        if (!out.empty()) out += '\n';
        Text(c, out, depth + 1);
      } else if (name == "tc" && ContinuesMerge(c)) {
        // Word shows the merged cell's text; whatever a continuation cell holds is hidden.
        out += ' ';
      } else if (name == "blip") {
        if (std::string id = LocalAttr(c, "embed").value(); !id.empty()) images_.push_back(id);
      } else if (name == "imagedata") {
        if (std::string id = LocalAttr(c, "id").value(); !id.empty()) images_.push_back(id);
      } else if (name != "delText" && name != "instrText" && name != "pPr" && name != "rPr" &&
                 name != "Fallback") {
        Text(c, out, depth + 1);
      }
    }
  }

  void Paragraph(const pugi::xml_node& p) {
    std::string text;
    Text(p, text, 0);
    pugi::xml_node ppr = LocalChild(p, "pPr");
    std::string style = LocalAttr(LocalChild(ppr, "pStyle"), "val").value();
    StyleInfo info;
    if (auto it = styles_.find(style); it != styles_.end()) info = it->second;
    if (info.heading_level == 0) info.heading_level = HeadingLevelFromName(style);
    if (pugi::xml_node ol = LocalChild(ppr, "outlineLvl")) {
      int lvl = LocalAttr(ol, "val").as_int(9);
      if (lvl >= 0 && lvl < 9) info.heading_level = lvl + 1;
    }
    pugi::xml_node num = LocalChild(ppr, "numPr");
    if (CollapseSpace(text).empty()) return;
    n_text_chars_ += CountVisibleChars(text);
    if (info.heading_level > 0) {
      doc_.Heading(std::min(info.heading_level, 6), text);
    } else if (num || info.numbered) {
      int level = LocalAttr(LocalChild(num, "ilvl"), "val").as_int(0);
      // numId 0 means "numbering removed".
      if (num && LocalAttr(LocalChild(num, "numId"), "val").as_int(1) == 0) {
        doc_.Add(BlockKind::kParagraph, text);
      } else {
        doc_.Add(BlockKind::kListItem, text, std::clamp(level, 0, 8));
      }
    } else {
      doc_.Add(BlockKind::kParagraph, text);
    }
  }

  Status Table(const pugi::xml_node& tbl, int depth) {
    if (depth > ctx_.options.max_nesting) return InvalidArgumentError("DOCX nested too deeply");
    std::vector<std::vector<std::string>> rows;
    // Column of each cell that continues a vertical merge takes the text of the cell above.
    for (pugi::xml_node tr : tbl.children()) {
      if (LocalName(tr) != "tr") continue;
      std::vector<std::string> row;
      for (pugi::xml_node tc : tr.children()) {
        std::string_view name = LocalName(tc);
        if (name == "sdt") tc = LocalChild(LocalChild(tc, "sdtContent"), "tc");
        if (!tc || LocalName(tc) != "tc") continue;
        pugi::xml_node tcpr = LocalChild(tc, "tcPr");
        int span = std::clamp(LocalAttr(LocalChild(tcpr, "gridSpan"), "val").as_int(1), 1, 64);
        bool continues = ContinuesMerge(tc);
        std::string text;
        if (!continues) Text(tc, text, depth + 1);
        text = CollapseSpace(text);
        n_text_chars_ += CountVisibleChars(text);
        size_t col = row.size();
        if (continues && !rows.empty() && col < rows.back().size()) text = rows.back()[col];
        for (int k = 0; k < span; ++k) row.push_back(text);
      }
      if (!row.empty()) rows.push_back(std::move(row));
    }
    doc_.Table(std::move(rows), true);
    return OkStatus();
  }

  // Headers and footers: their text once, however many sections repeat them.
  void HeadersAndFooters(std::string_view which) {
    std::set<std::string> seen;
    for (const std::string& name : zip_.names()) {
      if (name.rfind(fmt::format("word/{}", which), 0) != 0 || !name.ends_with(".xml")) continue;
      pugi::xml_document xml;
      if (!LoadXmlPart(zip_, name, xml)) continue;
      for (pugi::xml_node p : xml.document_element().children()) {
        if (LocalName(p) == "tbl") {
          // Tables keep their cells (and drop text Word hides in continued merged cells).
          std::string text;
          Text(p, text, 0);
          if (seen.insert(CollapseSpace(text)).second) (void)Table(p, 1);
          continue;
        }
        std::string text;
        Text(p, text, 0);
        text = CollapseSpace(text);
        if (!text.empty() && seen.insert(text).second) {
          n_text_chars_ += CountVisibleChars(text);
          doc_.Add(BlockKind::kParagraph, text);
        }
      }
    }
  }

  // When the document has (almost) no text, its pictures are what it says: OCR them.
  Status OcrImages(Parsed& out) {
    size_t sparse = static_cast<size_t>(std::max(1, ctx_.options.ocr_sparse_text_chars));
    if (n_text_chars_ >= sparse || !ctx_.options.ocr) return OkStatus();
    std::set<std::string> done;
    for (const std::string& id : images_) {
      auto it = rels_.find(id);
      if (it == rels_.end() || !done.insert(it->second).second || !zip_.Has(it->second)) continue;
      YZ_ASSIGN_OR_RETURN(std::string bytes, zip_.Read(it->second));
      auto image = ParseImage(bytes, ctx_);
      if (!image) {
        out.warnings.push_back(fmt::format("picture {}: {}", it->second, image.error().message));
        continue;
      }
      out.ocr_page_count += image->ocr_page_count;
      for (Block& b : image->blocks) b.page = 0;
      doc_.Append(std::move(image->blocks));
    }
    return OkStatus();
  }

  DocBuilder& doc() { return doc_; }

 private:
  ZipReader& zip_;
  const Context& ctx_;
  std::map<std::string, StyleInfo> styles_;
  std::map<std::string, std::string> rels_;
  DocBuilder doc_;
  std::vector<std::string> images_;  // relationship ids of pictures, in document order
  size_t n_text_chars_ = 0;  // visible characters of text (not pictures) seen so far
};

}  // namespace

Result<Parsed> ParseDocx(ZipReader& zip, const Context& ctx) {
  pugi::xml_document xml;
  YZ_RETURN_IF_ERROR(LoadXmlPart(zip, "word/document.xml", xml));
  pugi::xml_node body = LocalChild(xml.document_element(), "body");
  if (!body) return InvalidArgumentError("corrupt DOCX: word/document.xml has no body");
  DocxWalker walker(zip, ctx, ReadStyles(zip), ReadRelationships(zip, "word/document.xml"));
  walker.HeadersAndFooters("header");
  YZ_RETURN_IF_ERROR(walker.Body(body, 0));
  walker.HeadersAndFooters("footer");
  Parsed out;
  YZ_RETURN_IF_ERROR(walker.OcrImages(out));
  out.blocks = walker.doc().Take();
  return out;
}

}  // namespace yunzhi::knowledge::internal
