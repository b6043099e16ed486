// A read-only memory mapping of a whole file: how the engine reads weights without copying them.
//
// The mapping is private and read-only (PROT_READ, MAP_PRIVATE): pages are loaded on first touch
// and shared with the page cache, so several models mapping one file cost its size once. An
// empty file is a valid MappedFile with size() == 0 and data() == nullptr.
//
// Caveat: if another process truncates the file while it is mapped, touching the lost pages
// raises SIGBUS. Files in the hub's blob store are immutable (content-addressed), which is what
// makes mapping them safe.
//
// Ownership: a MappedFile owns its mapping (RAII) and is move-only; the mapping is released when
// the object is destroyed. Pointers into it stay valid across moves.
// Thread safety: all const methods may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "yunzhi/base/status.h"

namespace yunzhi::engine {

class MappedFile {
 public:
  // Access-pattern hints passed to madvise(2). They change performance only, never results.
  enum class Advice {
    kNormal,      // MADV_NORMAL
    kSequential,  // MADV_SEQUENTIAL: read once front to back (e.g. checksumming, converting)
    kRandom,      // MADV_RANDOM: no read-ahead (e.g. sparse lookups in a large file)
    kWillNeed,    // MADV_WILLNEED: start reading now (e.g. weights about to be used)
    kDontNeed,    // MADV_DONTNEED: drop the pages from this mapping (they are re-read on touch)
    // MADV_HUGEPAGE: read the file into the page cache in 2 MiB folios and map them as 2 MiB
    // pages, where the kernel and file system can (weights streamed every token: one core reads
    // ~7% faster from 2 MiB pages). Apply before the pages are first touched.
    kHugePages,
  };

  // Maps the file at `path` read-only.
  // Errors: kNotFound when it does not exist; kInvalidArgument when it is a directory or not a
  // regular file; kUnavailable for any other failure (permissions, I/O, mmap). Messages name the
  // path and the OS error.
  static Result<MappedFile> Open(const std::string& path);

  MappedFile() = default;  // empty: size() == 0
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

  // Applies `advice` to the byte range [offset, offset + length) of the file, clipped to the
  // file (the range is widened to whole pages). A failing madvise is ignored: hints are
  // best-effort. No-op on an empty mapping.
  void Advise(Advice advice, size_t offset = 0, size_t length = SIZE_MAX) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  void Reset();

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace yunzhi::engine
