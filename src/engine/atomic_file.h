// Writing a file so that readers see either the old content or the complete new one.
//
// Private to the engine (used by the GGUF and safetensors writers). Thread safety: one object per
// thread; distinct objects may write distinct paths concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "yunzhi/base/status.h"

namespace yunzhi::engine::internal {

// Writes to a temporary file beside `path` (same directory, so the rename cannot cross file
// systems); Commit() fsyncs it, renames it over `path` and fsyncs the directory. Destroying an
// uncommitted writer removes the temporary file.
class AtomicFileWriter {
 public:
  // Errors: kUnavailable (naming the path and the OS error) when the temporary cannot be created.
  static Result<AtomicFileWriter> Create(const std::string& path);

  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  // Appends bytes. Errors: kUnavailable on a write error (e.g. disk full).
  Status Append(std::span<const uint8_t> bytes);
  Status Append(std::string_view bytes) {
    return Append({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  }
  // Appends `n` zero bytes.
  Status AppendZeros(uint64_t n);
  // Makes the file visible under its final name. Errors: kUnavailable.
  Status Commit();

 private:
  AtomicFileWriter(std::string path, std::string tmp_path, int fd)
      : path_(std::move(path)), tmp_path_(std::move(tmp_path)), fd_(fd) {}

  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
};

}  // namespace yunzhi::engine::internal
