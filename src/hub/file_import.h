// Putting one model file into the blob store without a second copy where possible (private to
// src/hub/).
//
// The blob store's own PutFile always copies. Here, when the source is on the blob store's file
// system, it is hashed where it is and then hard-linked (link(2) of the open file) straight to
// the blob's final name: atomic, and the file is complete already. Across file systems, or when
// hard links are refused (fs.protected_hardlinks, a file system without them), the bytes are
// copied into a temp file while they are hashed and renamed into place, as PutFile does. Either
// way a blob appears under its name only complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>

#include "yunzhi/base/status.h"
#include "yunzhi/store/blob_store.h"

namespace yunzhi::hub::internal {

struct StoredFile {
  store::BlobInfo blob;
  bool created = false;  // the blob did not exist before this call
  bool linked = false;   // the blob (if created) is a hard link to the source, not a copy
};

// Called after each chunk with the number of bytes just read; an error (e.g. kCancelled) stops
// the import with that error.
using ChunkFn = std::function<Status(uint64_t n_bytes)>;

// Stores the regular file at `source` (symlinks followed). Errors: kNotFound (missing source),
// kInvalidArgument (not a regular file), kFailedPrecondition (the file changed while it was
// read), kUnavailable (I/O), or the error of `on_chunk`. Nothing is left behind on error.
Result<StoredFile> StoreFile(store::BlobStore& blobs, const std::filesystem::path& source,
                             const ChunkFn& on_chunk);

// Makes `link` a hard link to the blob `digest` (a symlink when hard links fail).
// Errors: kUnavailable.
Status LinkBlob(const store::BlobStore& blobs, std::string_view digest,
                const std::filesystem::path& link);

}  // namespace yunzhi::hub::internal
