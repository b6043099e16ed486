// EPUB: the OPF spine gives the reading order; each XHTML document goes through the HTML parser.
#include <map>
#include <string>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {

Result<Parsed> ParseEpub(ZipReader& zip, const Context& ctx) {
  pugi::xml_document container;
  YZ_RETURN_IF_ERROR(LoadXmlPart(zip, "META-INF/container.xml", container));
  std::string opf_path;
  for (pugi::xml_node rf : LocalChild(container.document_element(), "rootfiles").children()) {
    if (LocalName(rf) != "rootfile") continue;
    std::string media = rf.attribute("media-type").value();
    if (media.empty() || media == "application/oebps-package+xml") {
      opf_path = ResolvePartPath("", rf.attribute("full-path").value());
      break;
    }
  }
  if (opf_path.empty() || !zip.Has(opf_path)) {
    return InvalidArgumentError("corrupt EPUB: META-INF/container.xml names no package document");
  }
  pugi::xml_document opf;
  YZ_RETURN_IF_ERROR(LoadXmlPart(zip, opf_path, opf));
  std::map<std::string, std::pair<std::string, std::string>> manifest;  // id -> (path, media type)
  for (pugi::xml_node item : LocalChild(opf.document_element(), "manifest").children()) {
    if (LocalName(item) != "item") continue;
    manifest[item.attribute("id").value()] = {
        ResolvePartPath(opf_path, item.attribute("href").value()),
        item.attribute("media-type").value()};
  }
  Parsed out;
  DocBuilder doc;
  int n_docs = 0;
  for (pugi::xml_node ref : LocalChild(opf.document_element(), "spine").children()) {
    if (LocalName(ref) != "itemref") continue;
    auto it = manifest.find(ref.attribute("idref").value());
    if (it == manifest.end() || !zip.Has(it->second.first)) continue;
    const auto& [path, media] = it->second;
    if (media.find("html") == std::string::npos && media.find("xml") == std::string::npos) continue;
    if (++n_docs > ctx.options.max_pages) {
      return Error(Code::kPayloadTooLarge,
                   fmt::format("EPUB has more than {} spine documents", ctx.options.max_pages));
    }
    YZ_ASSIGN_OR_RETURN(std::string bytes, zip.Read(path));
    std::string charset;
    auto utf8 = DecodeToUtf8(bytes, HtmlMetaCharset(bytes), &charset);
    if (!utf8) {
      out.warnings.push_back(fmt::format("{}: {}", path, utf8.error().message));
      continue;
    }
    auto blocks = ParseHtml(*utf8, ctx.options.max_nesting);
    if (!blocks) {
      out.warnings.push_back(fmt::format("{}: {}", path, blocks.error().message));
      continue;
    }
    doc.Append(std::move(*blocks));
  }
  if (n_docs == 0) return InvalidArgumentError("corrupt EPUB: the spine lists no documents");
  out.blocks = doc.Take();
  return out;
}

}  // namespace yunzhi::knowledge::internal
