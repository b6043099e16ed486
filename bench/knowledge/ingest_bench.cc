// Ingestion throughput per format on the test documents (../shared/testdata/docs), one thread.
//
//   knowledge_ingest_bench [--docs DIR] [--seconds S]
//
// For each format the documents of its folder are extracted over and over for at least S seconds
// (default 2) and the program prints MB/s of input and pages/s (PDF pages, slides, sheets, image
// frames; formats without pages print "-"). OCR is measured separately: text-layer PDFs run with
// OCR off, the scanned PDFs and the images with OCR on. A plain program, not a test: speed is
// never asserted.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "yunzhi/knowledge/ingest.h"

namespace {

namespace fs = std::filesystem;
using yunzhi::knowledge::Extract;
using yunzhi::knowledge::ExtractOptions;

struct Doc {
  std::string name;
  std::string bytes;
};

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// PDFs whose pages have no (or almost no) text layer: they are measured as OCR.
const std::set<std::string> kScannedPdfs = {"tika-testOCR.pdf", "docling-ocr_test.pdf",
                                            "chatchat-ocr_test.pdf", "unstructured-single_table.pdf"};

struct Row {
  std::string label;
  std::vector<Doc> docs;
  ExtractOptions options;
};

void Run(const Row& row, double min_seconds) {
  if (row.docs.empty()) return;
  // One warm-up pass (libmagic database, OCR engine initialisation).
  for (const Doc& d : row.docs) (void)Extract(d.bytes, d.name, row.options);
  size_t n_bytes = 0, n_docs = 0, n_errors = 0;
  long n_pages = 0, n_ocr_pages = 0;
  auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  do {
    for (const Doc& d : row.docs) {
      auto doc = Extract(d.bytes, d.name, row.options);
      n_bytes += d.bytes.size();
      ++n_docs;
      if (!doc) {
        ++n_errors;
        continue;
      }
      n_pages += doc->page_count;
      n_ocr_pages += doc->ocr_page_count;
    }
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < min_seconds);
  char pages[32] = "-";
  if (n_pages > 0) std::snprintf(pages, sizeof pages, "%.1f", n_pages / elapsed);
  char ocr[32] = "-";
  if (n_ocr_pages > 0) std::snprintf(ocr, sizeof ocr, "%.2f", n_ocr_pages / elapsed);
  std::printf("| %-22s | %5zu | %8.2f | %8.1f | %8s | %8s | %6.2f |\n", row.label.c_str(),
              row.docs.size(), n_bytes / elapsed / 1e6, n_docs / elapsed, pages, ocr,
              1e3 * elapsed / static_cast<double>(n_docs));
  if (n_errors > 0) std::printf("  (%zu extractions failed)\n", n_errors);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path docs = fs::path(YUNZHI_TESTDATA_DIR) / "docs";
  double seconds = 2.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--docs") == 0) docs = argv[i + 1];
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
  }
  ExtractOptions no_ocr;
  no_ocr.ocr = false;
  ExtractOptions with_ocr;
  std::vector<Row> rows = {
      {"pdf (text layer)", {}, no_ocr}, {"pdf (scanned, OCR)", {}, with_ocr},
      {"images (OCR)", {}, with_ocr},   {"docx", {}, no_ocr},
      {"xlsx", {}, no_ocr},             {"pptx", {}, no_ocr},
      {"epub", {}, no_ocr},             {"html", {}, no_ocr},
      {"markdown", {}, no_ocr},         {"txt", {}, no_ocr},
      {"csv", {}, no_ocr},
  };
  const char* dirs[] = {"pdf", "pdf", "images", "docx", "xlsx", "pptx", "epub", "html", "md", "txt", "csv"};
  for (size_t r = 0; r < rows.size(); ++r) {
    if (!fs::exists(docs / dirs[r])) continue;
    for (auto& e : fs::directory_iterator(docs / dirs[r])) {
      std::string name = e.path().filename().string();
      if (name == "unstructured-password.pdf") continue;
      bool scanned = kScannedPdfs.count(name) != 0;
      if (r == 0 && scanned) continue;
      if (r == 1 && !scanned) continue;
      rows[r].docs.push_back({name, ReadFile(e.path())});
    }
  }
  std::printf("| format                 | files |     MB/s |   docs/s |  pages/s | OCR pg/s | ms/doc |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& row : rows) Run(row, seconds);
  return 0;
}
