// Charset detection and conversion to UTF-8 with ICU.
#include <unicode/ucnv.h>
#include <unicode/ucsdet.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// The BOM's charset and length, or {"", 0}. UTF-32LE must be tested before UTF-16LE: its BOM
// starts with the UTF-16LE one.
std::pair<std::string, size_t> Bom(std::string_view b) {
  if (StartsWith(b, std::string_view("\xEF\xBB\xBF", 3))) return {"UTF-8", 3};
  if (StartsWith(b, std::string_view("\xFF\xFE\x00\x00", 4))) return {"UTF-32LE", 4};
  if (StartsWith(b, std::string_view("\x00\x00\xFE\xFF", 4))) return {"UTF-32BE", 4};
  if (StartsWith(b, std::string_view("\xFF\xFE", 2))) return {"UTF-16LE", 2};
  if (StartsWith(b, std::string_view("\xFE\xFF", 2))) return {"UTF-16BE", 2};
  return {"", 0};
}

// UTF-16/32 without a BOM: mostly-ASCII text has zero bytes in fixed positions.
std::string WideWithoutBom(std::string_view b) {
  size_t n = std::min<size_t>(b.size(), 4096) & ~size_t{3};
  if (n < 8) return "";
  size_t zero_at[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < n; ++i) {
    if (b[i] == '\0') ++zero_at[i % 4];
  }
  size_t q = n / 4;
  auto most = [&](size_t k) { return zero_at[k] * 10 >= q * 7; };
  if (most(1) && most(2) && most(3) && zero_at[0] * 10 < q) return "UTF-32LE";
  if (most(0) && most(1) && most(2) && zero_at[3] * 10 < q) return "UTF-32BE";
  if (most(1) && most(3) && zero_at[0] + zero_at[2] < q / 5) return "UTF-16LE";
  if (most(0) && most(2) && zero_at[1] + zero_at[3] < q / 5) return "UTF-16BE";
  return "";
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += len;
  }
  return true;
}

Result<std::string> Convert(std::string_view bytes, const std::string& from) {
  UErrorCode status = U_ZERO_ERROR;
  int32_t need = ucnv_convert("UTF-8", from.c_str(), nullptr, 0, bytes.data(),
                              static_cast<int32_t>(bytes.size()), &status);
  if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status)) {
    return InvalidArgumentError(fmt::format("cannot decode text as {}: {}", from, u_errorName(status)));
  }
  std::string out(static_cast<size_t>(need) + 1, '\0');
  status = U_ZERO_ERROR;
  int32_t got = ucnv_convert("UTF-8", from.c_str(), out.data(), static_cast<int32_t>(out.size()),
                             bytes.data(), static_cast<int32_t>(bytes.size()), &status);
  if (U_FAILURE(status)) {
    return InvalidArgumentError(fmt::format("cannot decode text as {}: {}", from, u_errorName(status)));
  }
  out.resize(static_cast<size_t>(got));
  return out;
}

std::string Detect(std::string_view bytes) {
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<UCharsetDetector, decltype(&ucsdet_close)> det(ucsdet_open(&status),
                                                                  &ucsdet_close);
  if (U_FAILURE(status)) return "";
  ucsdet_setText(det.get(), bytes.data(), static_cast<int32_t>(std::min<size_t>(bytes.size(), 1 << 16)),
                 &status);
  const UCharsetMatch* m = ucsdet_detect(det.get(), &status);
  if (U_FAILURE(status) || m == nullptr) return "";
  const char* name = ucsdet_getName(m, &status);
  return U_FAILURE(status) || name == nullptr ? "" : name;
}

}  // namespace

bool LooksLikeWideText(std::string_view bytes) {
  std::string bom = Bom(bytes).first;
  return (!bom.empty() && bom != "UTF-8") || !WideWithoutBom(bytes).empty();
}

std::string HtmlMetaCharset(std::string_view bytes) {
  std::string head(bytes.substr(0, 4096));
  std::transform(head.begin(), head.end(), head.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  size_t p = head.find("charset=");
  if (p == std::string::npos) return "";
  p += 8;
  while (p < head.size() && (head[p] == '"' || head[p] == '\'' || head[p] == ' ')) ++p;
  size_t e = p;
  while (e < head.size() && (std::isalnum(static_cast<unsigned char>(head[e])) || head[e] == '-' ||
                             head[e] == '_')) {
    ++e;
  }
  return head.substr(p, e - p);
}

Result<std::string> DecodeToUtf8(std::string_view bytes, std::string_view declared,
                                 std::string* charset_out) {
  auto [bom, bom_len] = Bom(bytes);
  std::string from = bom;
  if (!from.empty()) {
    bytes.remove_prefix(bom_len);
  } else if (std::string wide = WideWithoutBom(bytes); !wide.empty()) {
    from = wide;
  } else if (IsValidUtf8(bytes)) {
    from = "UTF-8";
  } else {
    std::string d(declared);
    // A page that says UTF-8 but is not, or says Latin-1: browsers read both as windows-1252.
    if (d == "utf-8" || d == "utf8" || d == "iso-8859-1" || d == "latin1" || d == "us-ascii") d.clear();
    if (d == "gb2312" || d == "gbk") d = "GB18030";
    from = !d.empty() ? d : Detect(bytes);
    if (from.empty() || from == "ISO-8859-1" || from == "UTF-8") from = "windows-1252";
    if (from == "GB2312" || from == "GBK") from = "GB18030";
  }
  *charset_out = from;
  if (from == "UTF-8") return std::string(bytes);
  return Convert(bytes, from);
}

}  // namespace yunzhi::knowledge::internal
