// The model registry from the command line: import, list, show, rm. Like the other management
// commands they work on the data dir whether or not a server runs on it (they never take the
// ServerLock; SQLite and the blob store's atomic renames keep them safe beside the server).
#pragma once

#include <string>

#include "cli/common.h"

namespace yunzhi::cli {

struct ImportFlags {
  std::string path;  // GGUF file or Hugging Face directory
  std::string name;  // empty: derived from the path
  bool replace = false;
};

// `yunzhi import PATH [--name NS/NAME] [--replace]`: progress on stderr, the record on stdout.
int RunImport(const GlobalFlags& flags, const ImportFlags& import);
// `yunzhi list`: a table of the models.
int RunList(const GlobalFlags& flags);
// `yunzhi show NAME [--json]`: one model's record and files.
int RunShow(const GlobalFlags& flags, const std::string& name, bool json);
// `yunzhi rm NAME`: removes a model (and its blobs unless shared).
int RunRemove(const GlobalFlags& flags, const std::string& name);

// "494M", "1.2B", "260K": a parameter count as people write it.
std::string FormatParams(int64_t n_params);
// "1.2 GB", "494 MB", "12 KB", "900 B" (decimal units).
std::string FormatBytes(int64_t n_bytes);

}  // namespace yunzhi::cli
