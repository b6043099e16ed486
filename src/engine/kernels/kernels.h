// CPU compute kernels of the engine (private to the engine module).
//
// Every optimised kernel has a plain scalar reference beside it (kernels_ref.cc); variants for
// AVX2+FMA and AVX-512 live in their own sources compiled with their own flags and are chosen
// once at start-up from CPU detection (a portable build runs on any x86-64). Tests check every
// variant against the reference.
//
// Layout conventions (as in GGUF): a weight matrix W has `rows` output features, each row is
// `cols` contiguous elements of its TensorType (so a row of a quantised type is cols/block_size
// blocks). Activations are float32, token-major: X[t * cols + c]. Outputs: Y[t * rows + r].
//
// Quantised weights are multiplied the way GGUF engines do: the activations are quantised on the
// fly to the weight type's partner format (Q8_0 blocks for Q8_0, Q4_0, Q5_0, Q5_1 and IQ4_NL
// weights, Q8_K blocks for the K-quants Q2_K to Q6_K and IQ4_XS, F16/BF16 rows stay float) and the
// dot products run on integers; the whole matrix is never dequantised.
//
// Kernels return void: shapes are validated once where the model is built (YZ_DCHECK here).
// Thread safety: the functions are pure; MatMul splits its work over the pool's threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine {

// A fixed set of compute threads for data-parallel loops. Run() is a fork-join that costs a few
// microseconds (spinning workers, then a condition variable when idle), cheap enough per op.
// Thread safety: Run() and RunShared() may be called by one thread at a time.
class ComputePool {
 public:
  // n_threads <= 0: one per core (std::thread::hardware_concurrency()).
  explicit ComputePool(int n_threads);
  ~ComputePool();
  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;
  int n_threads() const;
  // Runs fn(ith, nth) for ith in [0, nth) in parallel (the caller runs ith = 0) and returns when
  // all calls have returned.
  void Run(const std::function<void(int ith, int nth)>& fn);
  // Work sharing: fn must take its work from shared state (e.g. an atomic counter) until none
  // is left, because only the caller's call (ith = 0) is certain to happen: a worker that picks
  // the job up only after the caller's call has returned skips it. Returns when the caller's call
  // and every worker call that started have returned. On cores shared with other processes this
  // spares the caller from waiting for a descheduled worker to wake up merely to find the work
  // done -- the cost of a fork-join that a decode step pays a few hundred times.
  void RunShared(const std::function<void(int ith, int nth)>& fn);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

namespace kernels {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
std::string_view IsaName(Isa isa);
// The best ISA this CPU supports (and this build compiled).
Isa DetectIsa();
// Whether this CPU executes AVX-512 on 256-bit units (AMD family 19h, Zen 4): there the float
// decoding kernels run in 256-bit form (kernels_avx512.cc says why). False elsewhere.
bool Avx512OnHalfWidthUnits();
// Whether the decoding kernels that read their weights as one sequential stream per core (one
// row at a time, or one panel group) prefetch it in software (non-temporally, a few KiB ahead).
// On by default; off on Zen 4 (AMD family 19h with AVX-512), where the hardware prefetcher
// streams such a stream faster alone (docs/benchmarks.md, "Zen 4"); Zen 3 (family 19h, AVX2)
// needs it (docs/benchmarks.md, "Zen 3"). Kernels that interleave several
// rows, and Q6_K and Q3_K panels, prefetch regardless. YUNZHI_DECODE_PREFETCH=0|1 overrides the
// default, SetDecodeSoftwarePrefetch too (tests, benchmarks). Results are the same bits either
// way.
bool DecodeSoftwarePrefetch();
void SetDecodeSoftwarePrefetch(bool on);
// The ISA the dispatching functions below use: DetectIsa() unless overridden (tests, benchmarks).
Isa ActiveIsa();
void SetActiveIsa(Isa isa);  // precondition: isa <= DetectIsa()

// --- matrix products ---------------------------------------------------------------------------

// How a weight matrix's bytes are laid out.
//  - kRows: as in the file (GGUF/safetensors), row after row.
//  - kPanels (the quantised types: Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
//    IQ4_NL, IQ4_XS): the same blocks regrouped by PackPanels so that 16 rows' blocks of the same
//    columns sit together (layout in kernels_internal.h). The same bytes as kRows plus the
//    padding of a last group of fewer than 16 rows (PanelBytes). On a CPU with AVX-512 (every
//    type) or AVX2 (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K) the kernels multiply panels directly,
//    for any token count, with no per-call repacking: a token's outputs are the same bits
//    whatever other tokens share the call (one decoding sequence alone or eight in a batch) and
//    whatever the thread count.
enum class WeightLayout { kRows, kPanels };

// Y[n_tokens x rows] = X[n_tokens x cols] * W^T, W of `wtype` (any type IsSupported names).
// Precondition: cols is a multiple of the type's block size. `pool` may be null (one
// thread). n_tokens == 1 is the decoding GEMV path; larger n_tokens is the prompt GEMM path.
void MatMul(ComputePool* pool, TensorType wtype, const void* w, int64_t rows, int64_t cols,
            const float* x, int64_t n_tokens, float* y, WeightLayout layout = WeightLayout::kRows);

// Whether matrices of `type` are better multiplied as panels with the active ISA (the quantised
// types on AVX-512; Q8_0, Q4_0, Q5_0, Q4_K, Q5_K and Q6_K on AVX2). Any ISA can still multiply
// any type's panels, where it has no kernel for them through the scalar reference (slow).
bool PanelsPreferred(TensorType type);
// Bytes of the panel layout of a rows x cols matrix of `type` (a quantised type).
int64_t PanelBytes(TensorType type, int64_t rows, int64_t cols);
// Repacks rows [r0, r1) of the row-layout matrix `w` (rows x cols) into the panel buffer `panels`
// (PanelBytes, 64-byte aligned). r0 is a multiple of 16 and r1 one too or r1 == rows; the padding
// rows of a last partial group are written as zeros. Ranges may be packed in any order or in
// parallel (each writes only its own groups).
void PackPanels(TensorType type, const void* w, int64_t rows, int64_t cols, int64_t r0, int64_t r1,
                void* panels);

// Several products of the same activations (q/k/v, gate/up) in one parallel loop: for each
// target, Y = X * W^T as MatMul would compute it (bit-identical results). Decoding (n_tokens <= 2)
// pays one fork-join for all of them instead of one per matrix, and the activations are
// converted once per format; longer inputs simply run MatMul per target. Targets may have
// different types and row counts; all share `cols`. No output may alias x or another output.
struct MatMulTarget {
  TensorType wtype;
  const void* w;
  int64_t rows;
  float* y;  // n_tokens x rows
  WeightLayout layout = WeightLayout::kRows;
};
inline constexpr size_t kMaxMatMulTargets = 8;  // more: one MatMul each
void MatMulMany(ComputePool* pool, std::span<const MatMulTarget> targets, int64_t cols,
                const float* x, int64_t n_tokens);

// One token's product, scheduled by the caller: a decoding loop that hands out row ranges itself
// (arch/one_token.cc) converts the token's activations once per input format and then computes
// any range of rows from them, each row with the bits MatMul gives it.
// The activation format that products with (wtype, layout) read, as an opaque id.
enum class ProductInput : int {};
ProductInput ProductInputOf(TensorType wtype, WeightLayout layout);
// Bytes of one converted row of `cols`; 0 when the products read the float activations themselves.
int64_t ProductInputBytes(ProductInput input, int64_t cols);
// The most bytes ProductInputBytes gives for `cols` in any format (for sizing buffers).
int64_t ProductInputMaxBytes(int64_t cols);
// Converts x (cols floats) to `input`'s format at `out` (ProductInputBytes, 64-byte aligned).
// Precondition: ProductInputBytes(input, cols) > 0.
void ConvertProductInput(ProductInput input, const float* x, int64_t cols, void* out);
// The values `input`'s format converts together (its block): 1 for floats, else 32, 128 or 256.
int64_t ProductInputBlock(ProductInput input);
// Values [c0, c1) of x (a row of cols) converted into their place in `out`, a row laid out as
// ConvertProductInput writes it: converting a row in ranges gives the same bytes as at once.
// Precondition: ProductInputBytes(input, cols) > 0; c0 and c1 multiples of ProductInputBlock, or
// c1 == cols.
void ConvertProductInputRange(ProductInput input, const float* x, int64_t cols, int64_t c0,
                              int64_t c1, void* out);
// y[r] for r in [r0, r1) of y = W x (W: rows x cols of wtype/layout; y: the whole output vector),
// from `input`: what ConvertProductInput wrote, or x itself when ProductInputBytes is 0.
// Precondition for kPanels: r0 is a multiple of 16.
void MatMulRowsOneToken(TensorType wtype, WeightLayout layout, const void* w, int64_t rows,
                        int64_t cols, const void* input, int64_t r0, int64_t r1, float* y);

// One row of any supported type to float (embedding lookup).
void DequantizeRow(TensorType type, const void* row, float* out, int64_t n);
// Row `row` (embedding lookup) of a rows x cols matrix `w` of either layout to float.
void DequantizeRow(TensorType type, WeightLayout layout, const void* w, int64_t row, int64_t cols,
                   float* out);

// --- element-wise and normalisation ------------------------------------------------------------

// y = x / sqrt(mean(x^2) + eps) * weight   (weight may be null: no scaling). y may alias x.
void RmsNorm(const float* x, const float* weight, float eps, int64_t n, float* y);
// x = softmax(x) in place, numerically stable.
void Softmax(float* x, int64_t n);
// out = silu(gate) * up  (SwiGLU). out may alias gate or up.
void SiluMul(const float* gate, const float* up, float* out, int64_t n);
// y += x
void AddInPlace(float* y, const float* x, int64_t n);

// --- rotary position embedding -----------------------------------------------------------------

enum class RopeStyle {
  kNormal,  // pairs (2i, 2i+1) rotate together: GGUF llama/mistral (weights permuted on export)
  kNeox,    // pairs (i, i + d/2): Hugging Face layout, Qwen2/Qwen3 in GGUF too
};

// The inverse frequencies theta_i for i in [0, head_dim/2), including any scaling (llama3-style
// or linear), computed once per model by the caller.
// Rotates `n_heads` heads of `head_dim` (contiguous, head-major) at position `pos`.
void Rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq,
          RopeStyle style);
// The same in two steps, so that a forward pass computes a position's angles once for all its
// layers: RopeAngles writes cos then sin of pos * inv_freq[i] (head_dim floats: head_dim/2 of
// each, angles in double as in Rope); RopeRotate applies them. Rope == RopeAngles + RopeRotate.
void RopeAngles(int64_t head_dim, int64_t pos, const float* inv_freq, float* cos_sin);
void RopeRotate(float* x, int64_t n_heads, int64_t head_dim, const float* cos_sin, RopeStyle style);

// --- attention -----------------------------------------------------------------------------------

// KV cache element type.
enum class KvType { kF32, kF16 };

// Attention of the `n_q` query heads that share one KV head (grouped-query attention; n_q = 1
// for plain multi-head attention) over `n_kv` cached positions:
//   out[h] = softmax(q[h] . K[j] * scale for j < n_kv) . V     for h < n_q,
// with q[h] at q + h * head_dim and out[h] at out + h * head_dim. K and V rows are `head_dim`
// elements of `kv_type`, addressed through `k_rows[j]` / `v_rows[j]` (pointers, so a paged cache
// can hand over scattered blocks). Each K and V row is read (and converted) once for the whole
// group. `scratch` holds n_q * n_kv floats.
void AttendGroup(const float* q, int64_t n_q, const void* const* k_rows,
                 const void* const* v_rows, KvType kv_type, int64_t n_kv, int64_t head_dim,
                 float scale, float* scratch, float* out);
// AttendGroup for `n_tokens` consecutive tokens of one sequence at once (prompt processing): q
// holds n_tokens x n_q query vectors (token-major), out likewise n_tokens x n_q x head_dim; token
// i attends to positions [0, n_kv_first + i) of the rows (n_kv_first + n_tokens - 1 of them).
// Each K and V tile is read and converted once for all of them. Every token gets the bits
// AttendGroup gives it alone. `scratch` holds n_tokens * n_q * (n_kv_first + n_tokens - 1) floats.
void AttendGroupTokens(const float* q, int64_t n_tokens, int64_t n_q, const void* const* k_rows,
                       const void* const* v_rows, KvType kv_type, int64_t n_kv_first,
                       int64_t head_dim, float scale, float* scratch, float* out);

// float <-> fp16/bf16 rows (KV cache writes, F16 weights).
void FloatToHalf(const float* x, uint16_t* y, int64_t n);
void HalfToFloat(const uint16_t* x, float* y, int64_t n);

// --- memory bandwidth ----------------------------------------------------------------------------

// Anonymous memory (zero-filled, read-write) aligned to 2 MiB and, unless `pages` is k4KiB,
// advised for 2 MiB pages (MADV_HUGEPAGE; the kernel gives them when transparent huge pages are
// enabled for `madvise` or `always`, and falls back to 4 KiB pages otherwise). Streaming reads
// from 2 MiB pages are faster where a core is at its own limit: one core reading 768 MiB with
// prefetching, 37.2 GB/s on 4 KiB pages against 39.8 on 2 MiB (docs/benchmarks.md). Pages are
// touched lazily.
// kHugeIfFree asks for them only when the kernel has enough free 2 MiB blocks for the whole
// buffer at that moment (/proc/buddyinfo): with `defrag` at its default, a fault in an advised
// range otherwise compacts memory first, which can stall a model load for a second.
class LargePageBuffer {
 public:
  enum class Pages { k4KiB, kHuge, kHugeIfFree };
  LargePageBuffer(size_t bytes, Pages pages);
  // Whether the pages were advised as huge ones (not whether the kernel gave them).
  bool advised_huge() const { return advised_huge_; }
  ~LargePageBuffer();
  LargePageBuffer(const LargePageBuffer&) = delete;
  LargePageBuffer& operator=(const LargePageBuffer&) = delete;
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool advised_huge_ = false;
};

// Free 2 MiB blocks the kernel's buddy allocator reports (/proc/buddyinfo, every zone), or -1 when
// it cannot be read.
int64_t FreeHugeBlocks();

// The bound of decoding: a STREAM-style read. Allocates `bytes` (rounded down to a multiple of 4
// KiB per thread; use several times the last-level cache, e.g. 512 MiB), touches every page once
// untimed (2 MiB pages where the kernel gives them, as the weights get: LargePageBuffer and
// MappedFile::Advice::kHugePages), then reads the whole buffer `passes` times with all of the
// pool's threads in parallel (each its own contiguous share, the active ISA's widest loads into
// independent sums: narrower ones understate the bound on a core that keeps fewer lines in flight;
// passes cycle through no prefetch and non-temporal prefetches 4 and 8 KiB ahead, each the fastest
// in some machine state) and returns the best pass in GB/s (1e9 bytes per second). The best, not
// the mean: on a shared machine a pass is only ever slowed down by other processes, never sped up.
// Frees the buffer before returning.
// `pool` may be null (one thread). Thread safety: as ComputePool::Run.
double MeasureReadBandwidthGBs(ComputePool* pool, int64_t bytes, int passes);

// The same probe kept ready for repeated measurements (the buffer allocated and touched once):
// `yunzhi bench --bandwidth` measures between windows of decoding, so that each window is compared
// with the bandwidth of that moment on a machine whose bandwidth changes over seconds.
class BandwidthProbe {
 public:
  BandwidthProbe(ComputePool* pool, int64_t bytes);
  ~BandwidthProbe();
  BandwidthProbe(const BandwidthProbe&) = delete;
  BandwidthProbe& operator=(const BandwidthProbe&) = delete;
  // Best of `passes` reads of the whole buffer, GB/s.
  double Measure(int passes);
  // The sum of every byte read so far: what keeps the reads from being optimised out.
  uint64_t checksum() const { return checksum_; }

 private:
  ComputePool* pool_;
  int nth_;
  int64_t share_ = 0;
  std::unique_ptr<LargePageBuffer> buf_;
  uint64_t checksum_ = 0;
};

}  // namespace kernels
}  // namespace yunzhi::engine
