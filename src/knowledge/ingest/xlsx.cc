// XLSX (SpreadsheetML): each sheet a heading and a table. Cell values as written in the file:
// shared and inline strings, numbers in their stored form, booleans as TRUE/FALSE. Dates are
// stored as serial numbers and stay numbers (the number format that would say "date" is not
// applied).
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <string>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

// A sheet beyond this many cells (rows x used columns) is refused: a few sparse cells far apart
// must not turn into a dense table of gigabytes.
constexpr size_t kMaxCellsPerSheet = size_t{4} << 20;

void InlineText(const pugi::xml_node& n, std::string& out, int depth) {
  if (depth > 16) return;
  for (pugi::xml_node c : n.children()) {
    std::string_view name = LocalName(c);
    if (name == "t") {
      out += c.text().get();
    } else if (name == "r") {
      InlineText(c, out, depth + 1);
    }
    // rPh (phonetic guides) is not part of the text.
  }
}

// "BC12" -> column 54 (0-based); -1 when malformed.
int ColumnOf(std::string_view ref) {
  int col = 0;
  size_t i = 0;
  while (i < ref.size() && std::isalpha(static_cast<unsigned char>(ref[i]))) {
    col = col * 26 + (std::toupper(static_cast<unsigned char>(ref[i])) - 'A' + 1);
    if (col > 16384) return -1;
    ++i;
  }
  return i == 0 ? -1 : col - 1;
}

}  // namespace

Result<Parsed> ParseXlsx(ZipReader& zip, const Context& ctx) {
  pugi::xml_document workbook;
  YZ_RETURN_IF_ERROR(LoadXmlPart(zip, "xl/workbook.xml", workbook));
  auto rels = ReadRelationships(zip, "xl/workbook.xml");

  std::vector<std::string> shared;
  if (zip.Has("xl/sharedStrings.xml")) {
    pugi::xml_document sst;
    YZ_RETURN_IF_ERROR(LoadXmlPart(zip, "xl/sharedStrings.xml", sst));
    for (pugi::xml_node si : sst.document_element().children()) {
      if (LocalName(si) != "si") continue;
      std::string s;
      InlineText(si, s, 0);
      shared.push_back(std::move(s));
    }
  }

  Parsed out;
  DocBuilder doc;
  pugi::xml_node sheets = LocalChild(workbook.document_element(), "sheets");
  int n_sheet = 0;
  for (pugi::xml_node sheet : sheets.children()) {
    if (LocalName(sheet) != "sheet") continue;
    if (++n_sheet > ctx.options.max_pages) {
      return Error(Code::kPayloadTooLarge,
                   fmt::format("workbook has more than {} sheets", ctx.options.max_pages));
    }
    std::string name = sheet.attribute("name").value();
    auto rel = rels.find(LocalAttr(sheet, "id").value());
    if (rel == rels.end() || !zip.Has(rel->second)) {
      out.warnings.push_back(fmt::format("sheet '{}' has no worksheet part", name));
      continue;
    }
    pugi::xml_document ws;
    YZ_RETURN_IF_ERROR(LoadXmlPart(zip, rel->second, ws));
    pugi::xml_node data = LocalChild(ws.document_element(), "sheetData");
    if (!data) continue;  // a chart sheet
    // row -> (col -> value); only non-empty cells are kept.
    std::map<int, std::map<int, std::string>> cells;
    int next_row = 0;
    for (pugi::xml_node row : data.children()) {
      if (LocalName(row) != "row") continue;
      int r = row.attribute("r").as_int(next_row + 1) - 1;
      if (r < 0 || r > (1 << 20)) continue;
      next_row = r + 1;
      int next_col = 0;
      for (pugi::xml_node c : row.children()) {
        if (LocalName(c) != "c") continue;
        int col = c.attribute("r") ? ColumnOf(c.attribute("r").value()) : next_col;
        if (col < 0) col = next_col;
        next_col = col + 1;
        std::string_view type = c.attribute("t").value();
        std::string v = LocalChild(c, "v").text().get();
        std::string value;
        if (type == "s") {
          long long idx = std::strtoll(v.c_str(), nullptr, 10);
          if (!v.empty() && idx >= 0 && static_cast<unsigned long long>(idx) < shared.size()) {
            value = shared[static_cast<size_t>(idx)];
          }
        } else if (type == "inlineStr") {
          InlineText(LocalChild(c, "is"), value, 0);
        } else if (type == "b") {
          value = v == "1" ? "TRUE" : v == "0" ? "FALSE" : v;
        } else {
          value = v;  // n, str (formula result), e (error like #DIV/0!), d (ISO date)
        }
        value = CollapseSpace(value);
        if (!value.empty()) cells[r][col] = std::move(value);
      }
    }
    out.page_count = n_sheet;
    doc.Heading(1, name.empty() ? fmt::format("Sheet {}", n_sheet) : name);
    if (cells.empty()) continue;
    int min_col = 1 << 20, max_col = -1;
    for (auto& [r, row] : cells) {
      min_col = std::min(min_col, row.begin()->first);
      max_col = std::max(max_col, row.rbegin()->first);
    }
    size_t n_cols = static_cast<size_t>(max_col - min_col + 1);
    if (n_cols * cells.size() > kMaxCellsPerSheet) {
      return Error(Code::kPayloadTooLarge,
                   fmt::format("sheet '{}' spans {} rows x {} columns; the limit is {} cells",
                               name, cells.size(), n_cols, kMaxCellsPerSheet));
    }
    // Empty rows are dropped; columns keep their positions so cells stay under their header.
    std::vector<std::vector<std::string>> rows;
    for (auto& [r, row] : cells) {
      std::vector<std::string> line(n_cols);
      for (auto& [c, v] : row) line[static_cast<size_t>(c - min_col)] = std::move(v);
      rows.push_back(std::move(line));
    }
    doc.Table(std::move(rows), true);
  }
  out.page_count = n_sheet;
  out.blocks = doc.Take();
  return out;
}

}  // namespace yunzhi::knowledge::internal
