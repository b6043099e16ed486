// PPTX (PresentationML): slides in presentation order, each a "Slide N" heading with its title
// placeholder as a sub-heading, text frames as paragraphs or list items, tables as tables;
// pictures are OCR'd when a slide has no text. `page` is the slide number.
#include <algorithm>
#include <set>
#include <string>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

void RunText(const pugi::xml_node& p, std::string& out) {
  for (pugi::xml_node c : p.children()) {
    std::string_view name = LocalName(c);
    if (name == "r" || name == "fld") {
      out += LocalChild(c, "t").text().get();
    } else if (name == "br") {
      out += '\n';
    }
  }
}

class SlideWalker {
 public:
  SlideWalker(const Context& ctx, DocBuilder& doc) : ctx_(ctx), doc_(doc) {}

  Status Tree(const pugi::xml_node& tree, int depth) {
    if (depth > ctx_.options.max_nesting) return InvalidArgumentError("PPTX nested too deeply");
    for (pugi::xml_node n : tree.children()) {
      std::string_view name = LocalName(n);
      if (name == "sp") {
        Shape(n);
      } else if (name == "grpSp") {
        YZ_RETURN_IF_ERROR(Tree(n, depth + 1));
      } else if (name == "graphicFrame") {
        pugi::xml_node data = LocalChild(LocalChild(n, "graphic"), "graphicData");
        if (pugi::xml_node tbl = LocalChild(data, "tbl")) Table(tbl);
      } else if (name == "pic") {
        pugi::xml_node blip = LocalChild(LocalChild(n, "blipFill"), "blip");
        if (std::string id = LocalAttr(blip, "embed").value(); !id.empty()) images_.push_back(id);
      } else if (name == "AlternateContent") {
        // Take the first choice (what current PowerPoint writes).
        if (pugi::xml_node choice = LocalChild(n, "Choice")) YZ_RETURN_IF_ERROR(Tree(choice, depth + 1));
      }
    }
    return OkStatus();
  }

  void Shape(const pugi::xml_node& sp) {
    pugi::xml_node ph = LocalChild(LocalChild(LocalChild(sp, "nvSpPr"), "nvPr"), "ph");
    std::string ph_type = ph ? ph.attribute("type").value() : "";
    bool title = ph_type == "title" || ph_type == "ctrTitle";
    // Body placeholders are bulleted unless a paragraph says otherwise.
    bool body = ph && (ph_type.empty() || ph_type == "body" || ph_type == "obj");
    pugi::xml_node tx = LocalChild(sp, "txBody");
    if (!tx) return;
    if (title) {
      std::string t;
      for (pugi::xml_node p : tx.children()) {
        if (LocalName(p) != "p") continue;
        if (!t.empty()) t += ' ';
        RunText(p, t);
      }
      n_text_chars_ += CountVisibleChars(t);
      doc_.Heading(2, t);
      return;
    }
    for (pugi::xml_node p : tx.children()) {
      if (LocalName(p) != "p") continue;
      std::string t;
      RunText(p, t);
      if (CollapseSpace(t).empty()) continue;
      n_text_chars_ += CountVisibleChars(t);
      pugi::xml_node ppr = LocalChild(p, "pPr");
      int level = ppr.attribute("lvl").as_int(0);
      bool bullet = LocalChild(ppr, "buChar") || LocalChild(ppr, "buAutoNum") ||
                    (body && !LocalChild(ppr, "buNone"));
      doc_.Add(bullet ? BlockKind::kListItem : BlockKind::kParagraph, t,
               bullet ? std::clamp(level, 0, 8) : 0);
    }
  }

  void Table(const pugi::xml_node& tbl) {
    std::vector<std::vector<std::string>> rows;
    for (pugi::xml_node tr : tbl.children()) {
      if (LocalName(tr) != "tr") continue;
      std::vector<std::string> row;
      for (pugi::xml_node tc : tr.children()) {
        if (LocalName(tc) != "tc") continue;
        std::string text;
        for (pugi::xml_node p : LocalChild(tc, "txBody").children()) {
          if (LocalName(p) != "p") continue;
          if (!text.empty()) text += ' ';
          RunText(p, text);
        }
        text = CollapseSpace(text);
        n_text_chars_ += CountVisibleChars(text);
        // Cells covered by a merge repeat the text of the merged cell, so rows stay aligned.
        bool h_merged = tc.attribute("hMerge").as_bool(false);
        bool v_merged = tc.attribute("vMerge").as_bool(false);
        size_t col = row.size();
        if (h_merged && !row.empty()) text = row.back();
        if (v_merged && !rows.empty() && col < rows.back().size()) text = rows.back()[col];
        row.push_back(std::move(text));
      }
      if (!row.empty()) rows.push_back(std::move(row));
    }
    doc_.Table(std::move(rows), true);
  }

  size_t n_text_chars() const { return n_text_chars_; }
  const std::vector<std::string>& images() const { return images_; }

 private:
  const Context& ctx_;
  DocBuilder& doc_;
  std::vector<std::string> images_;
  size_t n_text_chars_ = 0;
};

}  // namespace

Result<Parsed> ParsePptx(ZipReader& zip, const Context& ctx) {
  pugi::xml_document pres;
  YZ_RETURN_IF_ERROR(LoadXmlPart(zip, "ppt/presentation.xml", pres));
  auto rels = ReadRelationships(zip, "ppt/presentation.xml");
  std::vector<std::string> slides;
  for (pugi::xml_node id : LocalChild(pres.document_element(), "sldIdLst").children()) {
    // sldId carries both id="256" and r:id="rId2": the relationship is the prefixed one.
    std::string rid;
    for (pugi::xml_attribute a : id.attributes()) {
      std::string_view name = a.name();
      if (name.size() > 3 && name.ends_with(":id")) rid = a.value();
    }
    auto it = rels.find(rid);
    if (it != rels.end() && zip.Has(it->second)) slides.push_back(it->second);
  }
  if (static_cast<int>(slides.size()) > ctx.options.max_pages) {
    return Error(Code::kPayloadTooLarge, fmt::format("presentation has {} slides; the limit is {}",
                                                     slides.size(), ctx.options.max_pages));
  }
  Parsed out;
  out.page_count = static_cast<int>(slides.size());
  DocBuilder doc;
  for (size_t i = 0; i < slides.size(); ++i) {
    int number = static_cast<int>(i) + 1;
    doc.SetPage(number);
    doc.Heading(1, fmt::format("Slide {}", number));
    pugi::xml_document xml;
    YZ_RETURN_IF_ERROR(LoadXmlPart(zip, slides[i], xml));
    pugi::xml_node tree = LocalChild(LocalChild(xml.document_element(), "cSld"), "spTree");
    SlideWalker walker(ctx, doc);
    YZ_RETURN_IF_ERROR(walker.Tree(tree, 0));
    size_t sparse = static_cast<size_t>(std::max(1, ctx.options.ocr_sparse_text_chars));
    if (walker.n_text_chars() >= sparse || !ctx.options.ocr || walker.images().empty()) continue;
    // A slide that is (almost) only pictures: OCR them.
    auto slide_rels = ReadRelationships(zip, slides[i]);
    std::set<std::string> done;
    bool any = false;
    for (const std::string& id : walker.images()) {
      auto it = slide_rels.find(id);
      if (it == slide_rels.end() || !done.insert(it->second).second || !zip.Has(it->second)) continue;
      YZ_ASSIGN_OR_RETURN(std::string bytes, zip.Read(it->second));
      auto image = ParseImage(bytes, ctx);
      if (!image) {
        out.warnings.push_back(fmt::format("slide {} picture: {}", number, image.error().message));
        continue;
      }
      for (Block& b : image->blocks) b.page = number;
      doc.Append(std::move(image->blocks));
      any = true;
    }
    if (any) ++out.ocr_page_count;
  }
  out.blocks = doc.Take();
  return out;
}

}  // namespace yunzhi::knowledge::internal
