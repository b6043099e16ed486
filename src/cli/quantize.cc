#include "cli/quantize.h"

#include <chrono>
#include <cstdio>

#include "yunzhi/engine/quantize.h"

namespace yunzhi::cli {

int RunQuantize(const GlobalFlags& /*flags*/, const QuantizeFlags& quantize) {
  Result<engine::QuantizeTarget> target = engine::ParseQuantizeTarget(quantize.type);
  if (!target) return PrintError(target.error());

  engine::QuantizeOptions options;
  options.target = *target;
  const auto start = std::chrono::steady_clock::now();
  if (!quantize.quiet) {
    options.progress = [](const engine::QuantizeProgress& p) {
      if (p.n_done_tensors == 0) {
        std::fprintf(stderr, "quantizing %lld tensors, %.1f MiB of tensor data to write\n",
                     static_cast<long long>(p.n_tensors),
                     static_cast<double>(p.out_bytes_total) / (1 << 20));
      } else {
        std::fprintf(stderr, "[%4lld/%4lld] %-40.*s %5.*s -> %-5.*s\n",
                     static_cast<long long>(p.n_done_tensors), static_cast<long long>(p.n_tensors),
                     static_cast<int>(p.tensor_name.size()), p.tensor_name.data(),
                     static_cast<int>(engine::TypeName(p.from_type).size()),
                     engine::TypeName(p.from_type).data(),
                     static_cast<int>(engine::TypeName(p.to_type).size()),
                     engine::TypeName(p.to_type).data());
      }
      return true;
    };
  }
  Result<engine::QuantizeStats> stats =
      engine::QuantizeModel(quantize.in_path, quantize.out_path, options);
  if (!stats) return PrintError(stats.error());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("wrote %s (%s): %lld tensors (%lld quantized), %.1f MiB -> %.1f MiB in %.1f s\n",
              quantize.out_path.c_str(), engine::QuantizeTargetName(*target).data(),
              static_cast<long long>(stats->n_tensors),
              static_cast<long long>(stats->n_quantized_tensors),
              static_cast<double>(stats->in_tensor_bytes) / (1 << 20),
              static_cast<double>(stats->out_file_bytes) / (1 << 20), seconds);
  return 0;
}

}  // namespace yunzhi::cli
