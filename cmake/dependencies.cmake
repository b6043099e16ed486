# Third-party libraries: Debian packages only (see scripts/deps.sh for the install list).
include_guard(GLOBAL)

find_package(Threads REQUIRED)
find_package(Boost 1.81.0 EXACT REQUIRED CONFIG COMPONENTS json url)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(tl-expected REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(ICU_UC REQUIRED IMPORTED_TARGET icu-uc)
# knowledge/ingest: charset detection (ICU i18n), format sniffing, HTML, Markdown with GFM tables.
# cmark-gfm through pkg-config: Debian's CMake config for it is broken (see DEPENDENCIES.md).
pkg_check_modules(ICU_I18N REQUIRED IMPORTED_TARGET icu-i18n)
pkg_check_modules(MAGIC REQUIRED IMPORTED_TARGET libmagic)
pkg_check_modules(GUMBO REQUIRED IMPORTED_TARGET gumbo)
pkg_check_modules(CMARK_GFM REQUIRED IMPORTED_TARGET libcmark-gfm)
# knowledge/ingest: PDF text layer, OCR (English + simplified Chinese), OOXML/EPUB (zip + XML).
# libzip through pkg-config: Debian's CMake config for it is broken (see DEPENDENCIES.md).
pkg_check_modules(POPPLER_CPP REQUIRED IMPORTED_TARGET poppler-cpp)
pkg_check_modules(TESSERACT REQUIRED IMPORTED_TARGET tesseract)
pkg_check_modules(LEPTONICA REQUIRED IMPORTED_TARGET lept)
pkg_check_modules(LIBZIP REQUIRED IMPORTED_TARGET libzip)
pkg_check_modules(PUGIXML REQUIRED IMPORTED_TARGET pugixml)
# knowledge: the vector index (header-only hnswlib 0.6).
find_path(HNSWLIB_INCLUDE_DIR hnswlib/hnswlib.h REQUIRED)

if(YUNZHI_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
if(YUNZHI_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
