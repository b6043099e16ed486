// Helpers shared by the ingestion tests: test documents, token recall, table lookups.
#pragma once

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "yunzhi/knowledge/ingest.h"

namespace yunzhi::knowledge::testing {

inline std::filesystem::path Docs() {
  return std::filesystem::path(YUNZHI_TESTDATA_DIR) / "docs";
}

inline std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Lowercased tokens: runs of ASCII letters/digits, and each non-ASCII code point on its own, so
// Chinese compares per character.
inline std::multiset<std::string> Tokens(std::string_view s) {
  std::multiset<std::string> out;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) out.insert(cur);
    cur.clear();
  };
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    if (c < 0x80) {
      if (std::isalnum(c)) cur.push_back(static_cast<char>(std::tolower(c)));
      else flush();
      ++i;
    } else {
      size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
      flush();
      out.insert(std::string(s.substr(i, len)));
      i += len;
    }
  }
  flush();
  return out;
}

// Fraction of the expected tokens (with multiplicity) found in the actual text.
inline double Recall(std::string_view expected, std::string_view actual) {
  auto want = Tokens(expected);
  auto have = Tokens(actual);
  if (want.empty()) return 1.0;
  size_t hit = 0;
  for (auto it = want.begin(); it != want.end(); it = want.upper_bound(*it)) {
    hit += std::min(want.count(*it), have.count(*it));
  }
  return static_cast<double>(hit) / static_cast<double>(want.size());
}

// True when one row of one table in `doc` holds all of `cells` (exact cell texts, any order).
inline bool SomeRowHas(const ExtractedDocument& doc, const std::vector<std::string>& cells) {
  for (const Block& b : doc.blocks) {
    if (b.kind != BlockKind::kTable) continue;
    for (const auto& row : b.rows) {
      if (std::all_of(cells.begin(), cells.end(), [&](const std::string& c) {
            return std::find(row.begin(), row.end(), c) != row.end();
          })) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace yunzhi::knowledge::testing
