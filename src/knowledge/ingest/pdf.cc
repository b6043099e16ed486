// PDF with poppler-cpp: the text layer page by page in reading order; pages without one are
// rendered and OCR'd.
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-image.h>
#include <poppler/cpp/poppler-page-renderer.h>
#include <poppler/cpp/poppler-page.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

constexpr double kOcrDpi = 300.0;
// Pages whose rendering would exceed this many pixels are rendered at a lower resolution.
constexpr double kMaxRenderPixels = 40e6;

void QuietPoppler() {
  static const bool quiet = [] {
    // poppler reports syntax problems of damaged files on stderr; they become our error instead.
    poppler::set_debug_error_function([](const std::string&, void*) {}, nullptr);
    return true;
  }();
  (void)quiet;
}

std::string Utf8(const poppler::ustring& s) {
  poppler::byte_array b = s.to_utf8();
  return std::string(b.begin(), b.end());
}

Result<std::string> OcrPage(const poppler::page& page, const std::string& languages) {
  poppler::rectf box = page.page_rect(poppler::media_box);
  double w_in = std::max(1.0, std::abs(box.width())) / 72.0;
  double h_in = std::max(1.0, std::abs(box.height())) / 72.0;
  // PDF caps pages at 200 inches a side; anything larger is damaged or hostile.
  if (!(w_in <= 200 && h_in <= 200)) return InvalidArgumentError("PDF page too large to render");
  double dpi = kOcrDpi;
  if (w_in * h_in * dpi * dpi > kMaxRenderPixels) dpi = std::sqrt(kMaxRenderPixels / (w_in * h_in));
  poppler::page_renderer renderer;
  renderer.set_render_hint(poppler::page_renderer::antialiasing, true);
  renderer.set_render_hint(poppler::page_renderer::text_antialiasing, true);
  renderer.set_image_format(poppler::image::format_gray8);
  poppler::image img = renderer.render_page(&page, dpi, dpi);
  if (!img.is_valid() || img.format() != poppler::image::format_gray8) {
    return InvalidArgumentError("cannot render PDF page for OCR");
  }
  return OcrGray(reinterpret_cast<const uint8_t*>(img.const_data()), img.width(), img.height(),
                 img.bytes_per_row(), languages);
}

}  // namespace

Result<Parsed> ParsePdf(std::string_view bytes, const Context& ctx) {
  QuietPoppler();
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return Error(Code::kPayloadTooLarge, "PDF too large");
  }
  if (bytes.substr(0, 1024).find("%PDF-") == std::string_view::npos) {
    return InvalidArgumentError("corrupt PDF: no %PDF- header");
  }
  std::unique_ptr<poppler::document> pdf(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!pdf) {
    return InvalidArgumentError(
        "corrupt PDF: the cross-reference table or document catalog cannot be read");
  }
  if (pdf->is_locked()) return InvalidArgumentError("document is password-protected");
  int n_pages = pdf->pages();
  if (n_pages < 0) return InvalidArgumentError("corrupt PDF: no page tree");
  if (n_pages > ctx.options.max_pages) {
    return Error(Code::kPayloadTooLarge, fmt::format("PDF has {} pages; the limit is {}", n_pages,
                                                     ctx.options.max_pages));
  }
  Parsed out;
  out.page_count = n_pages;
  DocBuilder doc;
  for (int i = 0; i < n_pages; ++i) {
    std::unique_ptr<poppler::page> page(pdf->create_page(i));
    if (!page) {
      out.warnings.push_back(fmt::format("page {} cannot be read", i + 1));
      continue;
    }
    doc.SetPage(i + 1);
    // The non-raw, non-physical layout follows poppler's reading order: columns are read one
    // after the other, and text blocks are separated by blank lines.
    std::string text = Utf8(page->text(poppler::rectf(), poppler::page::non_raw_non_physical_layout));
    AddTextParagraphs(doc, text);
    // A scanned page, or a page that is mostly a picture: its text is in the pixels.
    if (!ctx.options.ocr ||
        CountVisibleChars(text) >= static_cast<size_t>(std::max(1, ctx.options.ocr_sparse_text_chars))) {
      continue;
    }
    if (out.ocr_page_count >= ctx.options.max_ocr_pages) {
      out.warnings.push_back(fmt::format("page {} not OCR'd: limit of {} OCR pages reached", i + 1,
                                         ctx.options.max_ocr_pages));
      continue;
    }
    Result<std::string> ocr = OcrPage(*page, ctx.options.ocr_languages);
    if (!ocr) {
      // A language set that is not installed is the caller's mistake; a bad page is not.
      if (ocr.error().param == "ocr_languages") return ocr.error();
      out.warnings.push_back(fmt::format("page {}: {}", i + 1, ocr.error().message));
      continue;
    }
    AddTextParagraphs(doc, *ocr);
    ++out.ocr_page_count;
  }
  out.blocks = doc.Take();
  return out;
}

}  // namespace yunzhi::knowledge::internal
