// CSV/TSV: delimiter detection and RFC 4180 parsing into one table whose first row is the header.
#include <algorithm>
#include <string>
#include <vector>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

std::vector<std::vector<std::string>> Split(std::string_view s, char delim) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, field_started = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < s.size() && s[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field += c;
      }
    } else if (c == '"' && !field_started) {
      quoted = true;
      field_started = true;
    } else if (c == delim) {
      row.push_back(std::move(field));
      field.clear();
      field_started = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      row.push_back(std::move(field));
      field.clear();
      field_started = false;
      bool empty = std::all_of(row.begin(), row.end(), [](auto& f) { return f.empty(); });
      if (!empty) rows.push_back(std::move(row));
      row.clear();
    } else {
      field += c;
      field_started = true;
    }
  }
  if (field_started || !field.empty() || !row.empty()) {
    row.push_back(std::move(field));
    bool empty = std::all_of(row.begin(), row.end(), [](auto& f) { return f.empty(); });
    if (!empty) rows.push_back(std::move(row));
  }
  return rows;
}

// The candidate that splits the first rows most consistently into the most columns.
char DetectDelimiter(std::string_view s) {
  std::string_view sample = s.substr(0, 16384);
  char best = ',';
  double best_score = -1;
  for (char d : {',', ';', '\t', '|'}) {
    auto rows = Split(sample, d);
    if (rows.size() > 20) rows.resize(20);
    if (rows.size() > 2) rows.pop_back();  // the sample may cut the last row short
    if (rows.empty()) continue;
    size_t mode_cols = 0, mode_count = 0;
    for (auto& r : rows) {
      size_t count = std::count_if(rows.begin(), rows.end(),
                                   [&](auto& o) { return o.size() == r.size(); });
      if (count > mode_count || (count == mode_count && r.size() > mode_cols)) {
        mode_count = count;
        mode_cols = r.size();
      }
    }
    if (mode_cols < 2) continue;
    double score = static_cast<double>(mode_count) / rows.size() * 1000 + mode_cols;
    if (score > best_score) {
      best_score = score;
      best = d;
    }
  }
  return best;
}

}  // namespace

Result<std::vector<Block>> ParseCsv(std::string_view utf8, char forced_delimiter) {
  char delim = forced_delimiter != '\0' ? forced_delimiter : DetectDelimiter(utf8);
  DocBuilder doc;
  doc.Table(Split(utf8, delim), true);
  return doc.Take();
}

}  // namespace yunzhi::knowledge::internal
