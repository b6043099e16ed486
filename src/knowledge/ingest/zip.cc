// Zip containers in memory (libzip) with limits, and the OPC relationship parts of Office files.
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <string>

#include <fmt/format.h>
#include <pugixml.hpp>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {

Result<std::unique_ptr<ZipReader>> ZipReader::Open(std::string_view bytes, const ExtractOptions& o) {
  std::unique_ptr<ZipReader> r(new ZipReader());
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (src == nullptr) {
    zip_error_fini(&error);
    return InternalError("cannot create zip source");
  }
  zip_t* z = zip_open_from_source(src, ZIP_RDONLY, &error);
  if (z == nullptr) {
    std::string msg = zip_error_strerror(&error);
    zip_source_free(src);
    zip_error_fini(&error);
    return InvalidArgumentError(fmt::format("corrupt zip container: {}", msg));
  }
  zip_error_fini(&error);
  r->zip_ = z;
  r->source_ = src;
  zip_int64_t n = zip_get_num_entries(z, 0);
  if (n > o.max_zip_entries) {
    return Error(Code::kPayloadTooLarge,
                 fmt::format("zip container has {} entries; the limit is {}", n, o.max_zip_entries));
  }
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* name = zip_get_name(z, static_cast<zip_uint64_t>(i), 0);
    if (name == nullptr) continue;
    r->names_.emplace_back(name);
    r->index_.emplace(name, i);
  }
  r->budget_bytes_ = o.max_zip_inflated_bytes != 0 ? o.max_zip_inflated_bytes : o.max_bytes * 8;
  return r;
}

ZipReader::~ZipReader() {
  // zip_discard frees the source that zip_open_from_source took over.
  if (zip_ != nullptr) zip_discard(static_cast<zip_t*>(zip_));
}

bool ZipReader::Has(const std::string& name) const { return index_.count(name) != 0; }

Result<std::string> ZipReader::Read(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return InvalidArgumentError(fmt::format("zip part {} is missing", name));
  zip_t* z = static_cast<zip_t*>(zip_);
  zip_file_t* f = zip_fopen_index(z, static_cast<zip_uint64_t>(it->second), 0);
  if (f == nullptr) {
    return InvalidArgumentError(
        fmt::format("cannot open zip part {}: {}", name, zip_strerror(z)));
  }
  std::string out;
  char buf[65536];
  // The declared size may lie (zip bombs): count what is actually inflated.
  for (;;) {
    zip_int64_t got = zip_fread(f, buf, sizeof buf);
    if (got < 0) {
      std::string msg = zip_file_strerror(f);
      zip_fclose(f);
      return InvalidArgumentError(fmt::format("damaged zip part {}: {}", name, msg));
    }
    if (got == 0) break;
    if (static_cast<uint64_t>(got) > budget_bytes_) {
      zip_fclose(f);
      return Error(Code::kPayloadTooLarge,
                   "zip container inflates beyond the limit (possible zip bomb)");
    }
    budget_bytes_ -= static_cast<uint64_t>(got);
    out.append(buf, static_cast<size_t>(got));
  }
  zip_fclose(f);
  return out;
}

std::string ResolvePartPath(const std::string& part, const std::string& target) {
  std::string path;
  if (!target.empty() && target[0] == '/') {
    path = target.substr(1);
  } else {
    size_t slash = part.rfind('/');
    path = (slash == std::string::npos ? "" : part.substr(0, slash + 1)) + target;
  }
  // Percent-decoding (EPUB hrefs) and normalisation of "." and "..".
  std::string decoded;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size() && std::isxdigit(static_cast<unsigned char>(path[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(path[i + 2]))) {
      decoded.push_back(static_cast<char>(std::stoi(path.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else if (path[i] == '#') {
      break;  // fragment
    } else {
      decoded.push_back(path[i]);
    }
  }
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos <= decoded.size()) {
    size_t next = decoded.find('/', pos);
    if (next == std::string::npos) next = decoded.size();
    std::string seg = decoded.substr(pos, next - pos);
    if (seg == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!seg.empty() && seg != ".") {
      parts.push_back(seg);
    }
    pos = next + 1;
  }
  std::string out;
  for (auto& p : parts) {
    if (!out.empty()) out += '/';
    out += p;
  }
  return out;
}

pugi::xml_attribute LocalAttr(const pugi::xml_node& n, std::string_view local) {
  for (pugi::xml_attribute a : n.attributes()) {
    std::string_view name = a.name();
    size_t colon = name.find(':');
    if ((colon == std::string_view::npos ? name : name.substr(colon + 1)) == local) return a;
  }
  return {};
}

pugi::xml_node LocalChild(const pugi::xml_node& n, std::string_view local) {
  for (pugi::xml_node c : n.children()) {
    if (c.type() == pugi::node_element && LocalName(c) == local) return c;
  }
  return {};
}

Status LoadXmlPart(ZipReader& zip, const std::string& part, pugi::xml_document& xml) {
  YZ_ASSIGN_OR_RETURN(std::string bytes, zip.Read(part));
  pugi::xml_parse_result r = xml.load_buffer(bytes.data(), bytes.size());
  if (!r) {
    return InvalidArgumentError(fmt::format("malformed XML in {}: {} at offset {}", part,
                                            r.description(), r.offset));
  }
  return OkStatus();
}

std::map<std::string, std::string> ReadRelationships(ZipReader& zip, const std::string& part) {
  std::map<std::string, std::string> rels;
  size_t slash = part.rfind('/');
  std::string dir = slash == std::string::npos ? "" : part.substr(0, slash + 1);
  std::string file = slash == std::string::npos ? part : part.substr(slash + 1);
  std::string rels_part = dir + "_rels/" + file + ".rels";
  if (!zip.Has(rels_part)) return rels;
  auto bytes = zip.Read(rels_part);
  if (!bytes) return rels;
  pugi::xml_document xml;
  if (!xml.load_buffer(bytes->data(), bytes->size())) return rels;
  for (pugi::xml_node r : xml.document_element().children()) {
    std::string id = r.attribute("Id").value();
    std::string target = r.attribute("Target").value();
    if (id.empty() || target.empty()) continue;
    if (std::string(r.attribute("TargetMode").value()) == "External") continue;
    rels[id] = ResolvePartPath(part, target);
  }
  return rels;
}

}  // namespace yunzhi::knowledge::internal
