// OCR with tesseract: a pool of initialised engines, and clean-up of the text it returns.
#include <dlfcn.h>
#include <tesseract/baseapi.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

constexpr const char* kTessdataDir = "/usr/share/tesseract-ocr/5/tessdata";

// TessBaseAPI::Init loads the language models (~0.3 s for eng+chi_sim), far more than one page
// takes to recognise, so engines are kept and reused. One engine serves one call at a time.
class EnginePool {
 public:
  static EnginePool& Get() {
    static EnginePool* pool = new EnginePool();  // never destroyed: engines may outlive main
    return *pool;
  }

  Result<std::unique_ptr<tesseract::TessBaseAPI>> Acquire(const std::string& languages) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < idle_.size(); ++i) {
        if (idle_[i].first == languages) {
          auto api = std::move(idle_[i].second);
          idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
          return api;
        }
      }
    }
    // Names become file paths under the tessdata directory: letters, digits, '_' and '+' only.
    bool valid = !languages.empty() && std::all_of(languages.begin(), languages.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '+';
    });
    if (!valid) {
      return InvalidArgumentError(fmt::format("invalid OCR language list '{}'", languages),
                                  "ocr_languages");
    }
    auto api = std::make_unique<tesseract::TessBaseAPI>();
    if (api->Init(kTessdataDir, languages.c_str(), tesseract::OEM_LSTM_ONLY) != 0) {
      return InvalidArgumentError(
          fmt::format("OCR languages '{}' are not installed under {}", languages, kTessdataDir),
          "ocr_languages");
    }
    // The API defaults to one uniform block of text (PSM_SINGLE_BLOCK), which garbles tables and
    // multi-column pages; automatic layout analysis is what the tesseract CLI does.
    api->SetPageSegMode(tesseract::PSM_AUTO);
    // Tesseract prints diagnostics ("Estimating resolution ...") unless told not to.
    api->SetVariable("debug_file", "/dev/null");
    return api;
  }

  void Release(const std::string& languages, std::unique_ptr<tesseract::TessBaseAPI> api) {
    api->Clear();
    std::lock_guard<std::mutex> lock(mu_);
    size_t cap = std::max(2u, std::thread::hardware_concurrency());
    if (idle_.size() < cap) idle_.emplace_back(languages, std::move(api));
  }

 private:
  std::mutex mu_;  // guards idle_
  std::vector<std::pair<std::string, std::unique_ptr<tesseract::TessBaseAPI>>> idle_;
};

// Decodes one UTF-8 code point at s[i]; sets `len`. Invalid bytes count as one-byte U+FFFD.
char32_t DecodeAt(std::string_view s, size_t i, size_t* len) {
  unsigned char c = s[i];
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return 0xFFFD;
  }
  char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *len = n;
  return cp;
}

bool IsCjk(char32_t c) {
  return (c >= 0x2E80 && c <= 0x2FDF) ||  // radicals
         (c >= 0x3000 && c <= 0x303F) ||  // CJK punctuation
         (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0xFF00 && c <= 0xFFEF) ||  // full-width forms
         (c >= 0x20000 && c <= 0x2FA1F);
}

// Tesseract parallelises inside one page with OpenMP. On a busy machine (the server OCRs several
// documents at once, next to inference) that threading costs far more than it gains: measured
// 8x slower on 2 shared cores. One thread per OCR call is set through the OpenMP runtime that
// tesseract loaded, looked up at run time so that we do not link OpenMP ourselves. The setting is
// a per-thread ICV in libgomp, so it is applied on each calling thread.
void SingleThreadedOpenMp() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  using SetFn = void (*)(int);
  if (auto set = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "omp_set_max_active_levels"))) set(0);
}

}  // namespace

std::string JoinCjk(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool prev_cjk = false;  // the last non-space character written was CJK
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ' ' || s[i] == '\t') {
      size_t j = i;
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
      bool next_cjk = false;
      if (j < s.size()) {
        size_t len;
        next_cjk = IsCjk(DecodeAt(s, j, &len));
      }
      if (!(prev_cjk && next_cjk)) out.append(s.substr(i, j - i));
      i = j;
      continue;
    }
    size_t len;
    char32_t cp = DecodeAt(s, i, &len);
    prev_cjk = IsCjk(cp);
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

size_t CountVisibleChars(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = s[i];
    if ((c & 0xC0) == 0x80 || std::isspace(c)) continue;  // continuation byte or space
    ++n;
  }
  return n;
}

void AddTextParagraphs(DocBuilder& doc, std::string_view text) {
  std::string para;
  size_t pos = 0;
  auto flush = [&] {
    doc.Add(BlockKind::kParagraph, JoinCjk(CollapseSpace(para)));
    para.clear();
  };
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (line.find_first_not_of(" \t\r\f") == std::string_view::npos) {
      flush();
    } else {
      if (!para.empty()) para += '\n';
      para += line;
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  flush();
}

Result<std::string> OcrGray(const uint8_t* pixels, int width, int height, int bytes_per_line,
                            const std::string& languages) {
  if (width < 3 || height < 3) return std::string();
  SingleThreadedOpenMp();
  YZ_ASSIGN_OR_RETURN(auto api, EnginePool::Get().Acquire(languages));
  api->SetImage(pixels, width, height, 1, bytes_per_line);
  api->SetSourceResolution(300);
  std::unique_ptr<char[]> text(api->GetUTF8Text());
  std::string out = text ? JoinCjk(text.get()) : std::string();
  EnginePool::Get().Release(languages, std::move(api));
  return out;
}

}  // namespace yunzhi::knowledge::internal
