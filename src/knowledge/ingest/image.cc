// Raster images: decoded by leptonica (PNG, JPEG, TIFF incl. multi-page, BMP, GIF, WebP), OCR'd.
#include <leptonica/allheaders.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "knowledge/ingest/formats.h"

namespace yunzhi::knowledge::internal {
namespace {

// Above this, images are scaled down before OCR: a 600 dpi A3 scan is about 70 Mpixels, and
// tesseract's memory and time grow with the pixel count, not the text.
constexpr double kMaxOcrPixels = 40e6;
// Images declaring more pixels than this are refused before decoding (a 32-bit copy would take
// 1.2 GB).
constexpr double kMaxDecodePixels = 300e6;

struct PixDeleter {
  void operator()(Pix* p) const { pixDestroy(&p); }
};
using PixPtr = std::unique_ptr<Pix, PixDeleter>;

void QuietLeptonica() {
  static const bool quiet = [] {
    setMsgSeverity(L_SEVERITY_NONE);
    return true;
  }();
  (void)quiet;
}

// OCR of one decoded image.
Result<std::string> OcrPix(Pix* pix, const std::string& languages) {
  PixPtr gray(pixConvertTo8(pix, 0));
  if (!gray) return InvalidArgumentError("cannot convert image to greyscale");
  double n_pixels = static_cast<double>(pixGetWidth(gray.get())) * pixGetHeight(gray.get());
  if (n_pixels > kMaxOcrPixels) {
    float scale = static_cast<float>(std::sqrt(kMaxOcrPixels / n_pixels));
    PixPtr smaller(pixScale(gray.get(), scale, scale));
    if (!smaller) return InvalidArgumentError("cannot scale image");
    gray = std::move(smaller);
  } else if (pixGetWidth(gray.get()) < 1000 && pixGetHeight(gray.get()) < 1000) {
    // Small pictures (screenshots at 72-96 dpi) read better at twice the size.
    PixPtr bigger(pixScaleGrayLI(gray.get(), 2.0f, 2.0f));
    if (bigger) gray = std::move(bigger);
  }
  int w = pixGetWidth(gray.get());
  int h = pixGetHeight(gray.get());
  // Leptonica packs pixels into 32-bit words (byte order differs from memory order on x86):
  // copy out plain rows.
  std::vector<uint8_t> rows(static_cast<size_t>(w) * static_cast<size_t>(h));
  l_uint32* data = pixGetData(gray.get());
  int wpl = pixGetWpl(gray.get());
  for (int y = 0; y < h; ++y) {
    l_uint32* line = data + static_cast<ptrdiff_t>(y) * wpl;
    for (int x = 0; x < w; ++x) {
      rows[static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)] =
          static_cast<uint8_t>(GET_DATA_BYTE(line, x));
    }
  }
  return OcrGray(rows.data(), w, h, w, languages);
}

}  // namespace

Result<Parsed> ParseImage(std::string_view bytes, const Context& ctx) {
  QuietLeptonica();
  Parsed out;
  DocBuilder doc;
  const auto* data = reinterpret_cast<const l_uint8*>(bytes.data());
  l_int32 format = IFF_UNKNOWN;
  findFileFormatBuffer(data, &format);
  // Check the declared size before decoding: a few kilobytes of PNG can claim gigapixels.
  l_int32 w = 0, h = 0, bps = 0, spp = 0, iscmap = 0, fmt_hdr = 0;
  if (pixReadHeaderMem(data, bytes.size(), &fmt_hdr, &w, &h, &bps, &spp, &iscmap) == 0 &&
      static_cast<double>(w) * static_cast<double>(h) > kMaxDecodePixels) {
    return Error(Code::kPayloadTooLarge,
                 fmt::format("image of {}x{} pixels exceeds the limit of {:.0f} Mpixels", w, h,
                             kMaxDecodePixels / 1e6));
  }
  std::vector<PixPtr> frames;
  if (format == IFF_TIFF || format == IFF_TIFF_G4 || format == IFF_TIFF_G3 ||
      format == IFF_TIFF_LZW || format == IFF_TIFF_ZIP || format == IFF_TIFF_PACKBITS ||
      format == IFF_TIFF_RLE || format == IFF_TIFF_JPEG) {
    size_t offset = 0;
    do {
      if (static_cast<int>(frames.size()) >= ctx.options.max_pages) {
        return Error(Code::kPayloadTooLarge,
                     fmt::format("image has more than {} frames", ctx.options.max_pages));
      }
      Pix* p = pixReadMemFromMultipageTiff(data, bytes.size(), &offset);
      if (p == nullptr) break;
      frames.emplace_back(p);
    } while (offset != 0);
  } else {
    Pix* p = pixReadMem(data, bytes.size());
    if (p != nullptr) frames.emplace_back(p);
  }
  if (frames.empty()) return InvalidArgumentError("corrupt or unreadable image");
  out.page_count = static_cast<int>(frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    if (!ctx.options.ocr) break;
    if (out.ocr_page_count >= ctx.options.max_ocr_pages) {
      out.warnings.push_back(fmt::format("frames after {} not OCR'd: limit reached", i));
      break;
    }
    doc.SetPage(static_cast<int>(i) + 1);
    YZ_ASSIGN_OR_RETURN(std::string text, OcrPix(frames[i].get(), ctx.options.ocr_languages));
    AddTextParagraphs(doc, text);
    ++out.ocr_page_count;
  }
  out.blocks = doc.Take();
  return out;
}

}  // namespace yunzhi::knowledge::internal
