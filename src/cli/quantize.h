// `yunzhi quantize IN OUT --type q4_k_m` (or q8_0, q6_k, ...: QuantizeTargetNames): converts a GGUF file or a Hugging
// Face model directory into a quantised GGUF file (see yunzhi/engine/quantize.h for the recipe).
#pragma once

#include <string>

#include "cli/common.h"

namespace yunzhi::cli {

struct QuantizeFlags {
  std::string in_path;
  std::string out_path;
  std::string type = "q4_k_m";
  bool quiet = false;  // no per-tensor progress on stderr
};

// Runs the conversion, printing progress to stderr and a summary to stdout. Returns the process
// exit code: 0 on success, 2 for invalid arguments, 1 for other errors (message on stderr).
int RunQuantize(const GlobalFlags& flags, const QuantizeFlags& quantize);

}  // namespace yunzhi::cli
