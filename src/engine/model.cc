// Model: the front door (Load dispatches to GGUF or HF) and what both formats share: checking
// hyper-parameters, binding tensors under their internal names, RoPE frequencies.
#include "yunzhi/engine/model.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mman.h>

#include "engine/arch/arch.h"
#include "engine/model_loader.h"
#include "engine/model_state.h"

namespace yunzhi::engine {

std::string_view ArchitectureName(Architecture arch) {
  switch (arch) {
    case Architecture::kLlama:
      return "llama";
    case Architecture::kMistral:
      return "mistral";
    case Architecture::kQwen2:
      return "qwen2";
    case Architecture::kQwen3:
      return "qwen3";
  }
  return "?";
}

Result<Architecture> ParseArchitecture(std::string_view name) {
  for (Architecture a :
       {Architecture::kLlama, Architecture::kMistral, Architecture::kQwen2, Architecture::kQwen3}) {
    if (name == ArchitectureName(a)) return a;
  }
  return UnimplementedError(
      fmt::format("unknown architecture '{}' (supported: llama, mistral, qwen2, qwen3)", name));
}

namespace internal {

std::vector<float> ComputeInvFreq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  const RopeConfig& r = c.rope;
  for (int64_t i = 0; i < half; ++i) {
    double freq = std::pow(static_cast<double>(r.theta),
                           -2.0 * static_cast<double>(i) / static_cast<double>(c.head_dim));
    if (!r.freq_factors.empty()) {
      freq /= r.freq_factors[static_cast<size_t>(i)];
    } else if (r.scaling == RopeScaling::kLinear) {
      freq /= r.factor;
    } else if (r.scaling == RopeScaling::kLlama3) {
      // Llama 3.1: long wavelengths (low frequencies) are slowed down by `factor`, short ones
      // kept, and the band between is interpolated smoothly.
      const double old_ctx = static_cast<double>(r.original_context_tokens);
      const double low_wavelen = old_ctx / r.low_freq_factor;
      const double high_wavelen = old_ctx / r.high_freq_factor;
      const double wavelen = 2.0 * M_PI / freq;
      if (wavelen > low_wavelen) {
        freq /= r.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        freq = (1.0 - smooth) * freq / r.factor + smooth * freq;
      }
    }
    inv[static_cast<size_t>(i)] = static_cast<float>(freq);
  }
  return inv;
}

Status ValidateConfig(const std::string& file, const ModelConfig& c) {
  auto bad = [&](std::string what) {
    return InvalidArgumentError(fmt::format("{}: {}", file, what));
  };
  if (c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.n_ff <= 0 ||
      c.head_dim <= 0) {
    return bad(fmt::format(
        "hyper-parameters must be positive: n_embd {}, n_layer {}, n_head {}, n_head_kv {}, "
        "n_ff {}, head_dim {}",
        c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff, c.head_dim));
  }
  if (c.n_layer > 4096 || c.n_head > 4096 || c.n_embd > (1 << 20) || c.n_ff > (1 << 22) ||
      c.head_dim > 4096) {
    return bad("implausibly large hyper-parameters");
  }
  if (c.n_head % c.n_head_kv != 0) {
    return bad(
        fmt::format("n_head ({}) is not a multiple of n_head_kv ({})", c.n_head, c.n_head_kv));
  }
  if (c.head_dim % 2 != 0) return bad(fmt::format("head_dim ({}) must be even", c.head_dim));
  if (!(c.norm_eps > 0.0f) || !(c.rope.theta > 0.0f)) {
    return bad("norm epsilon and RoPE theta must be positive");
  }
  if (c.rope.scaling != RopeScaling::kNone && !(c.rope.factor > 0.0f)) {
    return bad("RoPE scaling factor must be positive");
  }
  if (c.rope.scaling == RopeScaling::kLlama3 &&
      (!(c.rope.high_freq_factor > c.rope.low_freq_factor) || c.rope.low_freq_factor <= 0 ||
       c.rope.original_context_tokens <= 0)) {
    return bad(
        "llama3 RoPE scaling needs high_freq_factor > low_freq_factor > 0 and an "
        "original context");
  }
  if (!c.rope.freq_factors.empty() &&
      static_cast<int64_t>(c.rope.freq_factors.size()) != c.head_dim / 2) {
    return bad(fmt::format("rope_freqs has {} entries, expected head_dim / 2 = {}",
                           c.rope.freq_factors.size(), c.head_dim / 2));
  }
  return OkStatus();
}

namespace {

std::string ShapeString(const WeightSource& source, const std::vector<int64_t>& ne) {
  std::vector<int64_t> shape = ne;
  if (source.row_major_shapes()) std::reverse(shape.begin(), shape.end());
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Binding state shared by the helpers below.
struct Binder {
  const WeightSource& source;
  ModelState* state;
  std::map<TensorType, int64_t> bytes_by_type;  // matrices only: for weight_type

  Result<std::optional<TensorView>> Get(const std::string& name, std::vector<int64_t> ne,
                                        bool required) {
    YZ_ASSIGN_OR_RETURN(std::optional<TensorView> view, source.Find(name));
    if (!view) {
      if (!required) return std::optional<TensorView>();
      return NotFoundError(fmt::format("{}: tensor '{}' not found (needed by {})",
                                       source.FileOf(name), source.StoredName(name),
                                       ArchitectureName(state->config.architecture)));
    }
    std::vector<int64_t> found(view->ne.begin(), view->ne.begin() + view->n_dims);
    // Trailing 1s do not change the layout (GGUF writers drop or keep them).
    while (found.size() > ne.size() && found.back() == 1) found.pop_back();
    if (found != ne) {
      return InvalidArgumentError(fmt::format("{}: tensor '{}' has shape {}, expected {}",
                                              source.FileOf(name), source.StoredName(name),
                                              ShapeString(source, found), ShapeString(source, ne)));
    }
    if (!IsSupported(view->type)) {
      return UnimplementedError(
          fmt::format("{}: {}", source.FileOf(name),
                      CheckSupported(view->type, source.StoredName(name)).error().message));
    }
    state->config.n_params += view->n_elements();
    state->config.weight_bytes += static_cast<int64_t>(view->size_bytes);
    return view;
  }

  Result<TensorView> Matrix(const std::string& name, int64_t cols, int64_t rows) {
    YZ_ASSIGN_OR_RETURN(std::optional<TensorView> view, Get(name, {cols, rows}, true));
    bytes_by_type[view->type] += static_cast<int64_t>(view->size_bytes);
    return *view;
  }

  // A 1-D tensor converted to float; empty when absent and not required.
  Result<std::vector<float>> Vector(const std::string& name, int64_t n, bool required) {
    YZ_ASSIGN_OR_RETURN(std::optional<TensorView> view, Get(name, {n}, required));
    std::vector<float> out;
    if (!view) return out;
    if (!IsValidRowLength(view->type, n)) {
      return InvalidArgumentError(fmt::format("{}: tensor '{}' of type {} cannot hold {} elements",
                                              source.FileOf(name), source.StoredName(name),
                                              TypeName(view->type), n));
    }
    out.resize(static_cast<size_t>(n));
    Dequantize(view->type, view->data, out.data(), n);
    return out;
  }
};

}  // namespace

Status BindWeights(const WeightSource& source, ModelState* state) {
  ModelConfig& c = state->config;
  c.n_params = 0;
  c.weight_bytes = 0;
  Binder b{source, state, {}};
  const int64_t q_dim = c.n_head * c.head_dim;
  const int64_t kv_dim = c.n_head_kv * c.head_dim;

  YZ_ASSIGN_OR_RETURN(state->tok_embd, b.Matrix("token_embd.weight", c.n_embd, c.n_vocab));
  YZ_ASSIGN_OR_RETURN(state->output_norm, b.Vector("output_norm.weight", c.n_embd, true));
  YZ_ASSIGN_OR_RETURN(std::optional<TensorView> output,
                      b.Get("output.weight", {c.n_embd, c.n_vocab}, false));
  if (output) {
    state->output = *output;
    b.bytes_by_type[output->type] += static_cast<int64_t>(output->size_bytes);
    c.tied_output = false;
  } else {
    state->output = state->tok_embd;
    c.tied_output = true;
  }

  state->layers.clear();
  state->layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    LayerWeights& w = state->layers[static_cast<size_t>(il)];
    const std::string p = fmt::format("blk.{}.", il);
    YZ_ASSIGN_OR_RETURN(w.attn_norm, b.Vector(p + "attn_norm.weight", c.n_embd, true));
    YZ_ASSIGN_OR_RETURN(w.wq, b.Matrix(p + "attn_q.weight", c.n_embd, q_dim));
    YZ_ASSIGN_OR_RETURN(w.wk, b.Matrix(p + "attn_k.weight", c.n_embd, kv_dim));
    YZ_ASSIGN_OR_RETURN(w.wv, b.Matrix(p + "attn_v.weight", c.n_embd, kv_dim));
    YZ_ASSIGN_OR_RETURN(w.wo, b.Matrix(p + "attn_output.weight", q_dim, c.n_embd));
    if (c.qkv_bias) {
      YZ_ASSIGN_OR_RETURN(w.bq, b.Vector(p + "attn_q.bias", q_dim, true));
      YZ_ASSIGN_OR_RETURN(w.bk, b.Vector(p + "attn_k.bias", kv_dim, true));
      YZ_ASSIGN_OR_RETURN(w.bv, b.Vector(p + "attn_v.bias", kv_dim, true));
    }
    if (c.qk_norm) {
      YZ_ASSIGN_OR_RETURN(w.q_norm, b.Vector(p + "attn_q_norm.weight", c.head_dim, true));
      YZ_ASSIGN_OR_RETURN(w.k_norm, b.Vector(p + "attn_k_norm.weight", c.head_dim, true));
    }
    YZ_ASSIGN_OR_RETURN(w.ffn_norm, b.Vector(p + "ffn_norm.weight", c.n_embd, true));
    YZ_ASSIGN_OR_RETURN(w.w_gate, b.Matrix(p + "ffn_gate.weight", c.n_embd, c.n_ff));
    YZ_ASSIGN_OR_RETURN(w.w_up, b.Matrix(p + "ffn_up.weight", c.n_embd, c.n_ff));
    YZ_ASSIGN_OR_RETURN(w.w_down, b.Matrix(p + "ffn_down.weight", c.n_ff, c.n_embd));
  }

  int64_t best = -1;
  for (const auto& [type, bytes] : b.bytes_by_type) {
    if (bytes > best) {
      best = bytes;
      c.weight_type = type;
    }
  }
  state->inv_freq = ComputeInvFreq(c);
  RepackForKernels(state);
  return OkStatus();
}

// Threads that repack at load (at most; one per core below that).
constexpr unsigned kMaxRepackThreads = 4;

void RepackForKernels(ModelState* state) {
  std::vector<Matrix*> matrices = {&state->tok_embd};
  const bool tied = state->output.data == state->tok_embd.data;
  if (!tied) matrices.push_back(&state->output);
  for (LayerWeights& w : state->layers) {
    for (Matrix* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) {
      matrices.push_back(m);
    }
  }
  // The matrices to repack, each at a page-aligned offset of one arena.
  constexpr size_t kAlign = 4096;
  std::vector<std::pair<Matrix*, size_t>> packed;  // matrix, offset in the arena
  size_t total = 0;
  for (Matrix* m : matrices) {
    if (m->data == nullptr || !kernels::PanelsPreferred(m->type)) continue;
    packed.emplace_back(m, total);
    const auto bytes = static_cast<size_t>(kernels::PanelBytes(m->type, m->n_rows(), m->ne[0]));
    total += (bytes + kAlign - 1) / kAlign * kAlign;
  }
  if (packed.empty()) return;
  // On 2 MiB pages when the kernel has them free (decoding reads them faster where a core is at
  // its own limit; Llama-3.2-1B Q4_0, fast state: 76.8/80.1% -> 83.2/85.6% of the bound), never
  // at the price of compacting memory during the load.
  state->panels = std::make_unique<kernels::LargePageBuffer>(
      total, kernels::LargePageBuffer::Pages::kHugeIfFree);
  // Work items: slices of a few MiB of each matrix. Several threads pack them (most of the time
  // is the first touch of the arena's pages, which runs in parallel), each releasing the file
  // pages of its slice (whole pages inside its rows) once packed, so the file and its repacked
  // copy are never both resident.
  struct Slice {
    const Matrix* m;
    uint8_t* dst;
    int64_t r0, r1;
  };
  std::vector<Slice> slices;
  for (auto [m, offset] : packed) {
    const int64_t step = std::max<int64_t>(16, (int64_t{4} << 20) / m->row_size_bytes() / 16 * 16);
    for (int64_t r0 = 0; r0 < m->n_rows(); r0 += step) {
      slices.push_back({m, state->panels->data() + offset, r0, std::min(m->n_rows(), r0 + step)});
    }
  }
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  // With the file not in the page cache, packing would read it one fault (and one small
  // read-ahead) at a time. Asking for the source rows of the slices a window ahead lets the
  // kernel read them in large requests while the threads pack. Llama-3.2-1B Q4_0 (666 MiB) after
  // drop_caches, 6 loads each: 465-580 ms (median 550) against 436-836 ms (median 600) without;
  // a window of 32 slices was no better than 8. A window, not the whole file, so that a model
  // near the size of memory does not push its own first slices out again.
  constexpr size_t kReadAheadSlices = 8;
  auto read_ahead = [&](size_t k) {
    if (k >= slices.size()) return;
    const Slice& sl = slices[k];
    const auto* src = static_cast<const uint8_t*>(sl.m->data);
    const uintptr_t begin =
        reinterpret_cast<uintptr_t>(src + sl.r0 * sl.m->row_size_bytes()) / page * page;
    const auto end = reinterpret_cast<uintptr_t>(src + sl.r1 * sl.m->row_size_bytes());
    (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);
  };
  for (size_t k = 0; k < kReadAheadSlices; ++k) read_ahead(k);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t k; (k = next.fetch_add(1)) < slices.size();) {
      read_ahead(k + kReadAheadSlices);
      const Slice& sl = slices[k];
      const auto* src = static_cast<const uint8_t*>(sl.m->data);  // still the file's rows
      const int64_t row_bytes = sl.m->row_size_bytes();
      kernels::PackPanels(sl.m->type, src, sl.m->n_rows(), sl.m->ne[0], sl.r0, sl.r1, sl.dst);
      const uintptr_t begin =
          (reinterpret_cast<uintptr_t>(src + sl.r0 * row_bytes) + page - 1) / page * page;
      const uintptr_t end = reinterpret_cast<uintptr_t>(src + sl.r1 * row_bytes) / page * page;
      if (end > begin) {
        // Not huge either: a matrix used in place next to this one (Q6_K beside Q4_K) would
        // otherwise map a 2 MiB page-cache folio whole when touched, released rows included
        // (Llama-3.2-1B Q4_K_M: peak RSS 857 MiB against 835 with no repacking).
        (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
        (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_NOHUGEPAGE);
      }
    }
  };
  const unsigned n_threads =
      std::clamp(std::thread::hardware_concurrency(), 1u, kMaxRepackThreads);
  std::vector<std::thread> threads;
  for (unsigned k = 1; k < n_threads; ++k) threads.emplace_back(work);
  work();
  for (std::thread& th : threads) th.join();
  for (auto [m, offset] : packed) {
    m->data = state->panels->data() + offset;
    m->layout = kernels::WeightLayout::kPanels;
  }
  if (tied) state->output = state->tok_embd;
}

}  // namespace internal

// ---- Model

std::string WeightTypeLabel(const ModelConfig& config) {
  return config.file_type.empty() ? std::string(TypeName(config.weight_type)) : config.file_type;
}

Model::Model(std::unique_ptr<internal::ModelState> state) : state_(std::move(state)) {}
Model::~Model() = default;

Result<std::shared_ptr<const Model>> Model::Load(const std::string& path,
                                                 const ModelLoadOptions& options) {
  std::error_code ec;
  const bool is_dir = std::filesystem::is_directory(path, ec);
  std::unique_ptr<internal::ModelState> state;
  if (is_dir) {
    YZ_ASSIGN_OR_RETURN(state, internal::LoadHfDirectory(path, options));
  } else {
    YZ_ASSIGN_OR_RETURN(state, internal::LoadGguf(path, options));
  }
  state->arch = &arch::FindArch(state->config.architecture);
  return std::shared_ptr<const Model>(new Model(std::move(state)));
}

const std::string& Model::path() const { return state_->path; }
const ModelConfig& Model::config() const { return state_->config; }
const Tokenizer& Model::tokenizer() const { return *state_->tokenizer; }
const std::string& Model::chat_template() const { return state_->chat_template; }
const GenerationDefaults& Model::generation_defaults() const { return state_->generation; }
bool Model::vocab_only() const { return state_->vocab_only; }

}  // namespace yunzhi::engine
