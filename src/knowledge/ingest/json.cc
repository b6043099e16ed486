// JSON: objects and arrays rendered as readable "path: value" list items, nesting as depth.
#include <string>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

std::string Scalar(const boost::json::value& v) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_null()) return "null";
  return boost::json::serialize(v);
}

void Render(const boost::json::value& v, const std::string& label, int depth, DocBuilder& doc) {
  if (depth > 64) return;  // deeply nested input: stop rather than recurse without bound
  if (v.is_object()) {
    if (!label.empty()) doc.Add(BlockKind::kListItem, label + ":", depth - 1 < 0 ? 0 : depth - 1);
    for (const auto& kv : v.get_object()) {
      Render(kv.value(), std::string(kv.key()), label.empty() ? depth : depth + 1, doc);
    }
  } else if (v.is_array()) {
    if (!label.empty()) doc.Add(BlockKind::kListItem, label + ":", depth - 1 < 0 ? 0 : depth - 1);
    int d = label.empty() ? depth : depth + 1;
    for (const auto& item : v.get_array()) {
      if (item.is_object() || item.is_array()) {
        Render(item, {}, d, doc);
      } else {
        doc.Add(BlockKind::kListItem, Scalar(item), d);
      }
    }
  } else {
    std::string text = label.empty() ? Scalar(v) : label + ": " + Scalar(v);
    if (label.empty() && depth == 0) doc.Add(BlockKind::kParagraph, text);
    else doc.Add(BlockKind::kListItem, text, depth);
  }
}

}  // namespace

Result<std::vector<Block>> ParseJson(std::string_view utf8) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(utf8, ec);
  if (ec) return InvalidArgumentError(fmt::format("corrupt JSON: {}", ec.message()));
  DocBuilder doc;
  Render(v, {}, 0, doc);
  return doc.Take();
}

}  // namespace yunzhi::knowledge::internal
