// Kernel dispatch: picks the ISA once, converts activations to the weights' partner format and
// splits matrix products over the ComputePool.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <sys/mman.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#include "engine/kernels/kernels_internal.h"
#include "yunzhi/base/status.h"

namespace yunzhi::engine::kernels {
namespace {

using internal::ActFormat;
using internal::IsaKernels;
using internal::SoftmaxFn;
using internal::TileArgs;
using internal::TileFn;
using internal::WKind;

Isa Detect() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return Isa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    return Isa::kAvx2;
  }
#endif
  return Isa::kScalar;
}

std::atomic<int>& ActiveSlot() {
  static std::atomic<int> slot{static_cast<int>(DetectIsa())};
  return slot;
}

const IsaKernels& Table(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return internal::Avx512Kernels();
    case Isa::kAvx2: return internal::Avx2Kernels();
    case Isa::kScalar: break;
  }
  return internal::ScalarKernels();
}

// The active ISA's entry, or the next smaller ISA's where it has none (an AVX-512 CPU runs the
// AVX2 kernels of what has no AVX-512 one), down to the scalar one.
template <typename F>
F Pick(F IsaKernels::*member) {
  for (int isa = static_cast<int>(ActiveIsa()); isa > static_cast<int>(Isa::kScalar); --isa) {
    if (F f = Table(static_cast<Isa>(isa)).*member; f != nullptr) return f;
  }
  return internal::ScalarKernels().*member;
}

TileFn PickTile(WKind kind) {
  for (int isa = static_cast<int>(ActiveIsa()); isa > static_cast<int>(Isa::kScalar); --isa) {
    const TileFn f = Table(static_cast<Isa>(isa)).tile[static_cast<int>(kind)];
    if (f != nullptr) return f;
  }
  return internal::ScalarKernels().tile[static_cast<int>(kind)];
}

struct KindInfo {
  WKind kind;
  ActFormat act;
};

KindInfo KindOf(TensorType t, WeightLayout layout) {
  if (layout == WeightLayout::kPanels) {
    switch (t) {
      case TensorType::kQ8_0: return {WKind::kQ8_0P, ActFormat::kQ8};
      case TensorType::kQ4_0: return {WKind::kQ4_0P, ActFormat::kQ8};
      case TensorType::kIQ4_NL: return {WKind::kIQ4_NLP, ActFormat::kQ8};
      case TensorType::kQ5_0: return {WKind::kQ5_0P, ActFormat::kQ8};
      case TensorType::kQ5_1: return {WKind::kQ5_1P, ActFormat::kQ8};
      case TensorType::kQ4_K: return {WKind::kQ4_KP, ActFormat::kQ8K};
      case TensorType::kQ5_K: return {WKind::kQ5_KP, ActFormat::kQ8K};
      case TensorType::kQ6_K: return {WKind::kQ6_KP, ActFormat::kQ8K};
      case TensorType::kQ3_K: return {WKind::kQ3_KP, ActFormat::kQ8K};
      case TensorType::kQ2_K: return {WKind::kQ2_KP, ActFormat::kQ8K};
      case TensorType::kIQ4_XS: return {WKind::kIQ4_XSP, ActFormat::kQ8K};
      default: YZ_CHECK(false && "MatMul: no panel layout");
    }
  }
  switch (t) {
    case TensorType::kF32: return {WKind::kF32, ActFormat::kFloat};
    case TensorType::kF16: return {WKind::kF16, ActFormat::kFloat};
    case TensorType::kBF16: return {WKind::kBf16, ActFormat::kFloat};
    case TensorType::kQ8_0: return {WKind::kQ8_0, ActFormat::kQ8};
    case TensorType::kQ4_0: return {WKind::kQ4_0, ActFormat::kQ8};
    case TensorType::kQ5_0: return {WKind::kQ5_0, ActFormat::kQ8};
    case TensorType::kQ5_1: return {WKind::kQ5_1, ActFormat::kQ8};
    case TensorType::kQ2_K: return {WKind::kQ2_K, ActFormat::kQ8K};
    case TensorType::kQ3_K: return {WKind::kQ3_K, ActFormat::kQ8K};
    case TensorType::kQ4_K: return {WKind::kQ4_K, ActFormat::kQ8K};
    case TensorType::kQ5_K: return {WKind::kQ5_K, ActFormat::kQ8K};
    case TensorType::kQ6_K: return {WKind::kQ6_K, ActFormat::kQ8K};
    case TensorType::kIQ4_NL: return {WKind::kIQ4_NL, ActFormat::kQ8};
    case TensorType::kIQ4_XS: return {WKind::kIQ4_XS, ActFormat::kQ8K};
    default: break;
  }
  YZ_CHECK(false && "MatMul: unsupported weight type");
  return {WKind::kF32, ActFormat::kFloat};
}

// Grow-only, 64-byte aligned scratch owned by the calling thread (the thread that runs the
// forward pass); workers only read it during the Run that the caller is blocked in.
uint8_t* ActScratch(size_t bytes) {
  struct Buf {
    uint8_t* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  if (buf.n < bytes) {
    std::free(buf.p);
    buf.n = (bytes + 4095) / 4096 * 4096;
    buf.p = static_cast<uint8_t*>(std::aligned_alloc(64, buf.n));
    YZ_CHECK(buf.p != nullptr);
  }
  return buf.p;
}

void RunOn(ComputePool* pool, const std::function<void(int, int)>& fn) {
  if (pool != nullptr && pool->n_threads() > 1) {
    pool->Run(fn);
  } else {
    fn(0, 1);
  }
}

// Work item sizes. Rows come in multiples of 16 so that two threads never write the same
// 64-byte line of Y (given Y 64-byte aligned), and chunks are small enough that dynamic
// scheduling evens out threads slowed by other processes on shared cores.
constexpr int64_t kRowAlign = 16;

}  // namespace

std::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

namespace {
// AMD family 19h: Zen 3 and Zen 4 (Zen 5 is 1Ah); of the two only Zen 4 has AVX-512.
bool AmdFamily19h() {
#if defined(__x86_64__) && defined(__GNUC__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return false;
  const bool amd = ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163;  // AuthenticAMD
  if (!amd || __get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  const unsigned family = ((eax >> 8) & 0xF) + ((eax >> 20) & 0xFF);
  return family == 0x19;
#else
  return false;
#endif
}

std::atomic<bool>& DecodePrefetchSlot() {
  static std::atomic<bool> slot{[] {
    const char* env = std::getenv("YUNZHI_DECODE_PREFETCH");
    if (env != nullptr && (env[0] == '0' || env[0] == '1') && env[1] == '\0') return env[0] == '1';
    // Zen 4 only: Zen 3 (the same family, AVX2) needs the prefetch as Zen 5 does
    // (docs/benchmarks.md, "Zen 3").
    return !(AmdFamily19h() && DetectIsa() == Isa::kAvx512);
  }()};
  return slot;
}
}  // namespace

bool Avx512OnHalfWidthUnits() {
  // Family 19h with AVX-512 is Zen 4 (Zen 3 has none).
  static const bool half = DetectIsa() == Isa::kAvx512 && AmdFamily19h();
  return half;
}

bool DecodeSoftwarePrefetch() { return DecodePrefetchSlot().load(std::memory_order_relaxed); }

void SetDecodeSoftwarePrefetch(bool on) {
  DecodePrefetchSlot().store(on, std::memory_order_relaxed);
}

Isa DetectIsa() {
  static const Isa isa = Detect();
  return isa;
}

Isa ActiveIsa() { return static_cast<Isa>(ActiveSlot().load(std::memory_order_relaxed)); }

void SetActiveIsa(Isa isa) {
  YZ_CHECK(static_cast<int>(isa) <= static_cast<int>(DetectIsa()));
  ActiveSlot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

namespace {

// The tile function and activation format for `wtype` at this token count: decoding may have its
// own tile and activation layout.
struct Selected {
  TileFn tile;
  ActFormat act;
};
Selected Select(TensorType wtype, WeightLayout layout, int64_t n_tokens) {
  const KindInfo info = KindOf(wtype, layout);
  if (n_tokens <= internal::kGemvMaxTokens) {
    const internal::GemvKernel& gemv = Table(ActiveIsa()).gemv[static_cast<int>(info.kind)];
    if (gemv.tile != nullptr) return {gemv.tile, gemv.act};
  }
  return {PickTile(info.kind), info.act};
}

// Converts n_tokens rows of x to `act` at buf (x_stride bytes apart); not for kFloat.
void ConvertActivations(ComputePool* pool, ActFormat act, const float* x, int64_t cols,
                        int64_t n_tokens, int64_t x_stride, uint8_t* buf) {
  const internal::QuantizeActFn quantize =
      act == ActFormat::kQ8    ? Pick(&IsaKernels::quantize_q8)
      : act == ActFormat::kQ8K ? Pick(&IsaKernels::quantize_q8k)
                               : Pick(&IsaKernels::quantize_q8x4);
  auto quantize_range = [&](int ith, int n) {
    for (int64_t t = ith * n_tokens / n; t < (ith + 1) * n_tokens / n; ++t) {
      quantize(x + t * cols, cols, buf + t * x_stride);
    }
  };
  // Below a few tokens the fork-join costs more than quantising on one thread.
  if (n_tokens >= 4 && pool != nullptr && pool->n_threads() > 1) {
    RunOn(pool, quantize_range);
  } else {
    quantize_range(0, 1);
  }
}

// Decoding: pure streaming of the weights, ~16 row chunks per thread. Each thread walks its own
// contiguous range (RunContiguous below), so the chunk size only decides how finely the last
// chunks even out between threads, not the access pattern.
constexpr int64_t kDecodeItemsPerThread = 16;
int64_t DecodeRowChunk(int64_t rows, int nth) {
  return internal::RoundUp(std::max<int64_t>(rows / (kDecodeItemsPerThread * nth), 1), kRowAlign);
}

// Decoding's work sharing: items [0, n_items) are numbered in weight-address order and thread k
// owns the contiguous range [k * n / nth, (k + 1) * n / nth), which it walks front to back; a
// thread done with its own range then takes the remaining items of the others, also from their
// fronts. So each core streams one contiguous region at a time -- its prefetches run ahead into
// rows it will read itself, not into the rows of the other thread's chunk as with one shared
// counter handing out chunks alternately -- while a thread slowed or never started (RunShared:
// a worker that arrives late skips the job) still has its share done by the others.
struct alignas(64) Cursor {
  std::atomic<int64_t> next{0};
  int64_t end = 0;
};
constexpr int kMaxCursors = 64;

template <typename Fn>
void RunContiguous(ComputePool* pool, int64_t n_items, const Fn& fn) {
  const int nth = std::min(pool->n_threads(), kMaxCursors);
  std::array<Cursor, kMaxCursors> cursors;
  for (int k = 0; k < nth; ++k) {
    cursors[static_cast<size_t>(k)].next.store(n_items * k / nth, std::memory_order_relaxed);
    cursors[static_cast<size_t>(k)].end = n_items * (k + 1) / nth;
  }
  pool->RunShared([&](int ith, int) {
    if (ith >= nth) return;
    for (int k = 0; k < nth; ++k) {
      Cursor& c = cursors[static_cast<size_t>((ith + k) % nth)];
      for (;;) {
        const int64_t i = c.next.fetch_add(1, std::memory_order_relaxed);
        if (i >= c.end) break;
        fn(i);
      }
    }
  });
}

}  // namespace

void MatMul(ComputePool* pool, TensorType wtype, const void* w, int64_t rows, int64_t cols,
            const float* x, int64_t n_tokens, float* y, WeightLayout layout) {
  if (rows <= 0 || n_tokens <= 0) return;
  YZ_DCHECK(IsValidRowLength(wtype, cols));
  const int nth = pool != nullptr ? pool->n_threads() : 1;
  const Selected sel = Select(wtype, layout, n_tokens);
  const TileFn tile = sel.tile;

  // 1. Activations in the partner format.
  const int64_t x_stride = internal::ActStrideBytes(sel.act, cols);
  const uint8_t* xa = reinterpret_cast<const uint8_t*>(x);
  if (sel.act != ActFormat::kFloat) {
    uint8_t* buf = ActScratch(static_cast<size_t>(x_stride * n_tokens));
    ConvertActivations(pool, sel.act, x, cols, n_tokens, x_stride, buf);
    xa = buf;
  }

  // 2. Tiles. Row chunks sized to stay in L2 while every token block of the chunk passes.
  const TileArgs args{static_cast<const uint8_t*>(w), RowSizeBytes(wtype, cols), cols, xa,
                      x_stride, y, rows};
  int64_t row_chunk;
  int64_t tok_block;
  if (n_tokens < 8) {
    row_chunk = DecodeRowChunk(rows, nth);
    tok_block = n_tokens;
  } else {
    // Prompt: a chunk of weights (<= ~128 KiB) is reused by every token of a block whose
    // activations (<= ~512 KiB) stay in L2 (1 MiB per core on the reference machine).
    row_chunk = std::clamp<int64_t>((128 << 10) / std::max<int64_t>(args.w_row_bytes, 1),
                                    kRowAlign, 256) / kRowAlign * kRowAlign;
    tok_block = std::clamp<int64_t>((512 << 10) / x_stride, 8, 128);
  }
  const int64_t n_rc = (rows + row_chunk - 1) / row_chunk;
  const int64_t n_tb = (n_tokens + tok_block - 1) / tok_block;
  const int64_t n_items = n_rc * n_tb;
  if (nth == 1 || n_items == 1) {
    tile(args, 0, rows, 0, n_tokens);
    return;
  }
  auto run_item = [&](int64_t i) {
    const int64_t rc = i / n_tb, tb = i % n_tb;
    tile(args, rc * row_chunk, std::min(rows, (rc + 1) * row_chunk), tb * tok_block,
         std::min(n_tokens, (tb + 1) * tok_block));
  };
  if (n_tokens <= internal::kGemvMaxTokens) {
    RunContiguous(pool, n_items, run_item);
    return;
  }
  alignas(64) std::atomic<int64_t> next{0};
  pool->RunShared([&](int, int) {
    for (;;) {
      const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n_items) break;
      run_item(i);
    }
  });
}

void MatMulMany(ComputePool* pool, std::span<const MatMulTarget> targets, int64_t cols,
                const float* x, int64_t n_tokens) {
  const int nth = pool != nullptr ? pool->n_threads() : 1;
  if (n_tokens > internal::kGemvMaxTokens || nth == 1 || targets.size() <= 1 ||
      targets.size() > kMaxMatMulTargets) {
    for (const MatMulTarget& m : targets) {
      MatMul(pool, m.wtype, m.w, m.rows, cols, x, n_tokens, m.y, m.layout);
    }
    return;
  }
  if (n_tokens <= 0) return;
  const size_t n = targets.size();
  // Each distinct activation format once, one after the other in one scratch buffer.
  std::array<Selected, kMaxMatMulTargets> sel;
  std::array<int64_t, kMaxMatMulTargets> x_offset;  // -1: float activations
  std::array<ActFormat, kMaxMatMulTargets> formats;
  std::array<int64_t, kMaxMatMulTargets> format_offset;
  size_t n_formats = 0;
  int64_t scratch_bytes = 0;
  for (size_t k = 0; k < n; ++k) {
    YZ_DCHECK(IsValidRowLength(targets[k].wtype, cols));
    sel[k] = Select(targets[k].wtype, targets[k].layout, n_tokens);
    x_offset[k] = -1;
    if (sel[k].act == ActFormat::kFloat) continue;
    size_t f = 0;
    while (f < n_formats && formats[f] != sel[k].act) ++f;
    if (f == n_formats) {
      formats[f] = sel[k].act;
      format_offset[f] = scratch_bytes;
      scratch_bytes += internal::ActStrideBytes(sel[k].act, cols) * n_tokens;
      ++n_formats;
    }
    x_offset[k] = format_offset[f];
  }
  uint8_t* buf = n_formats > 0 ? ActScratch(static_cast<size_t>(scratch_bytes)) : nullptr;
  for (size_t f = 0; f < n_formats; ++f) {
    ConvertActivations(pool, formats[f], x, cols, n_tokens,
                       internal::ActStrideBytes(formats[f], cols), buf + format_offset[f]);
  }
  // Work items: the row chunks of every matrix, numbered matrix after matrix, each about the same
  // number of weight bytes (whatever the matrix's rows and type), so that splitting the items
  // evenly by count (RunContiguous) splits the bytes to stream evenly too.
  std::array<TileArgs, kMaxMatMulTargets> args;
  std::array<int64_t, kMaxMatMulTargets> row_chunk, first_item;
  int64_t total_bytes = 0;
  for (size_t k = 0; k < n; ++k) {
    total_bytes += targets[k].rows * RowSizeBytes(targets[k].wtype, cols);
  }
  const int64_t item_bytes = std::max<int64_t>(total_bytes / (kDecodeItemsPerThread * nth), 1);
  int64_t n_items = 0;
  for (size_t k = 0; k < n; ++k) {
    const MatMulTarget& m = targets[k];
    const ActFormat act = sel[k].act;
    const uint8_t* xa = x_offset[k] < 0 ? reinterpret_cast<const uint8_t*>(x) : buf + x_offset[k];
    args[k] = TileArgs{static_cast<const uint8_t*>(m.w), RowSizeBytes(m.wtype, cols), cols, xa,
                       internal::ActStrideBytes(act, cols), m.y, m.rows};
    row_chunk[k] =
        internal::RoundUp(std::max<int64_t>(item_bytes / args[k].w_row_bytes, 1), kRowAlign);
    first_item[k] = n_items;
    n_items += m.rows > 0 ? (m.rows + row_chunk[k] - 1) / row_chunk[k] : 0;
  }
  RunContiguous(pool, n_items, [&](int64_t i) {
    size_t k = 0;
    while (k + 1 < n && i >= first_item[k + 1]) ++k;
    const int64_t r0 = (i - first_item[k]) * row_chunk[k];
    sel[k].tile(args[k], r0, std::min(targets[k].rows, r0 + row_chunk[k]), 0, n_tokens);
  });
}

ProductInput ProductInputOf(TensorType wtype, WeightLayout layout) {
  return static_cast<ProductInput>(Select(wtype, layout, 1).act);
}

int64_t ProductInputBytes(ProductInput input, int64_t cols) {
  const auto act = static_cast<ActFormat>(input);
  return act == ActFormat::kFloat ? 0 : internal::ActStrideBytes(act, cols);
}

int64_t ProductInputMaxBytes(int64_t cols) {
  int64_t bytes = 0;
  for (ActFormat f : {ActFormat::kQ8, ActFormat::kQ8K, ActFormat::kQ8x4}) {
    bytes = std::max(bytes, internal::ActStrideBytes(f, cols));
  }
  return bytes;
}

void ConvertProductInput(ProductInput input, const float* x, int64_t cols, void* out) {
  const auto act = static_cast<ActFormat>(input);
  YZ_DCHECK(act != ActFormat::kFloat);
  ConvertActivations(nullptr, act, x, cols, 1, internal::ActStrideBytes(act, cols),
                     static_cast<uint8_t*>(out));
}

int64_t ProductInputBlock(ProductInput input) {
  switch (static_cast<ActFormat>(input)) {
    case ActFormat::kFloat: return 1;
    case ActFormat::kQ8: return internal::kActQ8Block;
    case ActFormat::kQ8x4: return 4 * internal::kActQ8Block;
    case ActFormat::kQ8K: return internal::kActQ8KBlock;
  }
  return 1;
}

void ConvertProductInputRange(ProductInput input, const float* x, int64_t cols, int64_t c0,
                              int64_t c1, void* out) {
  const auto act = static_cast<ActFormat>(input);
  YZ_DCHECK(act != ActFormat::kFloat);
  [[maybe_unused]] const int64_t block = ProductInputBlock(input);
  YZ_DCHECK(c0 % block == 0 && (c1 == cols || c1 % block == 0));
  if (c0 == 0 && c1 == cols) {
    ConvertProductInput(input, x, cols, out);
    return;
  }
  // The range converted as a row of its own, then each part moved to its place: every block's
  // values, scale and sums depend on that block alone.
  const int64_t n = c1 - c0;
  thread_local std::vector<uint8_t> part;
  part.resize(static_cast<size_t>(internal::ActStrideBytes(act, n) + 64));
  uint8_t* tmp = part.data() + (64 - reinterpret_cast<uintptr_t>(part.data()) % 64) % 64;
  ConvertActivations(nullptr, act, x + c0, n, 1, internal::ActStrideBytes(act, n), tmp);
  auto* o = static_cast<uint8_t*>(out);
  auto move = [&](int64_t dst, int64_t src, int64_t bytes) {
    std::memcpy(o + dst, tmp + src, static_cast<size_t>(bytes));
  };
  switch (act) {
    case ActFormat::kQ8: {  // qs, then d and ds per block of 32
      const int64_t nb = cols / internal::kActQ8Block, b0 = c0 / internal::kActQ8Block;
      const int64_t nbr = n / internal::kActQ8Block;
      move(c0, 0, n);
      move(cols + 4 * b0, n, 4 * nbr);
      move(cols + 4 * (nb + b0), n + 4 * nbr, 4 * nbr);
      break;
    }
    case ActFormat::kQ8K: {  // qs, d per block of 256, then 16-value sums
      const int64_t nb = cols / internal::kActQ8KBlock, b0 = c0 / internal::kActQ8KBlock;
      const int64_t nbr = n / internal::kActQ8KBlock;
      move(c0, 0, n);
      move(cols + 4 * b0, n, 4 * nbr);
      move(cols + 4 * nb + 2 * (c0 / 16), n + 4 * nbr, 2 * (n / 16));
      break;
    }
    case ActFormat::kQ8x4:  // groups of 4 blocks, each group's bytes together
      move(c0 / (4 * internal::kActQ8Block) * internal::kActQ8x4GroupBytes, 0,
           internal::ActStrideBytes(act, n));
      break;
    case ActFormat::kFloat:
      break;
  }
}

void MatMulRowsOneToken(TensorType wtype, WeightLayout layout, const void* w, int64_t rows,
                        int64_t cols, const void* input, int64_t r0, int64_t r1, float* y) {
  YZ_DCHECK(layout == WeightLayout::kRows || r0 % kRowAlign == 0);
  const Selected sel = Select(wtype, layout, 1);
  const TileArgs args{static_cast<const uint8_t*>(w), RowSizeBytes(wtype, cols), cols,
                      static_cast<const uint8_t*>(input), internal::ActStrideBytes(sel.act, cols),
                      y, rows};
  sel.tile(args, r0, r1, 0, 1);
}

void DequantizeRow(TensorType type, const void* row, float* out, int64_t n) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, row, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16:
      Pick(&IsaKernels::half_to_float)(static_cast<const uint16_t*>(row), out, n);
      return;
    default:
      Dequantize(type, row, out, n);
  }
}

void AttendGroup(const float* q, int64_t n_q, const void* const* k_rows,
                 const void* const* v_rows, KvType kv_type, int64_t n_kv, int64_t head_dim,
                 float scale, float* scratch, float* out) {
  // One token attending to n_kv positions is a run of one.
  AttendGroupTokens(q, 1, n_q, k_rows, v_rows, kv_type, n_kv, head_dim, scale, scratch, out);
}

void AttendGroupTokens(const float* q, int64_t n_tokens, int64_t n_q, const void* const* k_rows,
                       const void* const* v_rows, KvType kv_type, int64_t n_kv_first,
                       int64_t head_dim, float scale, float* scratch, float* out) {
  if (n_tokens <= 0) return;
  const bool f16 = kv_type == KvType::kF16;
  const int64_t n = n_kv_first + n_tokens - 1;
  if (n <= 0) {
    std::fill(out, out + n_tokens * n_q * head_dim, 0.0f);
    return;
  }
  // The scores of every query over all n positions (each position's score is its own dot
  // product, whatever the others), then each token's softmax over its own positions and zero
  // weight beyond them: the weighted sums add exact zeros there.
  const int64_t rows = n_tokens * n_q;
  Pick(&IsaKernels::scores)(q, rows, k_rows, f16, n, head_dim, scale, scratch);
  const SoftmaxFn softmax = Pick(&IsaKernels::softmax);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t len = n_kv_first + t;
    for (int64_t h = 0; h < n_q; ++h) {
      float* row = scratch + (t * n_q + h) * n;
      if (len > 0) softmax(row, len);
      std::fill(row + std::max<int64_t>(len, 0), row + n, 0.0f);
    }
  }
  Pick(&IsaKernels::weighted_sum)(scratch, rows, v_rows, f16, n, head_dim, out);
}

void Softmax(float* x, int64_t n) { Pick(&IsaKernels::softmax)(x, n); }

void SiluMul(const float* gate, const float* up, float* out, int64_t n) {
  Pick(&IsaKernels::silu_mul)(gate, up, out, n);
}

void FloatToHalf(const float* x, uint16_t* y, int64_t n) {
  Pick(&IsaKernels::float_to_half)(x, y, n);
}

void HalfToFloat(const uint16_t* x, float* y, int64_t n) {
  Pick(&IsaKernels::half_to_float)(x, y, n);
}

int64_t FreeHugeBlocks() {
  std::FILE* f = std::fopen("/proc/buddyinfo", "r");
  if (f == nullptr) return -1;
  // "Node 0, zone   Normal   c0 c1 ... c10": c_k free blocks of 2^k pages of 4 KiB.
  int64_t blocks = 0;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    const char* p = std::strstr(line, "zone");
    if (p == nullptr) continue;
    p += 4;
    while (*p == ' ') ++p;
    while (*p != '\0' && *p != ' ') ++p;  // the zone's name
    char* end = nullptr;
    for (int order = 0;; ++order) {
      const long long count = std::strtoll(p, &end, 10);
      if (end == p) break;
      p = end;
      if (order >= 9) blocks += count << (order - 9);
    }
  }
  std::fclose(f);
  return blocks;
}

LargePageBuffer::LargePageBuffer(size_t bytes, Pages pages) : size_(bytes) {
  if (bytes == 0) return;
  // Map 2 MiB more than asked and keep the aligned part: only whole aligned 2 MiB ranges can be
  // huge pages. The slack is unmapped again, so it costs address space only for a moment.
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t mapped = bytes + kHuge;
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  YZ_CHECK(p != MAP_FAILED && "mmap of a large buffer failed");
  const auto start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (start + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = aligned + (bytes + 4095) / 4096 * 4096;
  if (aligned > start) ::munmap(p, aligned - start);
  if (start + mapped > end) ::munmap(reinterpret_cast<void*>(end), start + mapped - end);
  data_ = reinterpret_cast<uint8_t*>(aligned);
  if (pages == Pages::kHugeIfFree) {
    const int64_t needed = static_cast<int64_t>((bytes + kHuge - 1) / kHuge);
    if (FreeHugeBlocks() < needed) pages = Pages::k4KiB;
  }
  if (pages != Pages::k4KiB) {
    // A hint: 4 KiB pages where refused.
    advised_huge_ = ::madvise(data_, bytes, MADV_HUGEPAGE) == 0;
  }
}

LargePageBuffer::~LargePageBuffer() {
  if (data_ != nullptr) ::munmap(data_, (size_ + 4095) / 4096 * 4096);
}

BandwidthProbe::BandwidthProbe(ComputePool* pool, int64_t bytes)
    : pool_(pool), nth_(pool != nullptr ? pool->n_threads() : 1) {
  share_ = std::max<int64_t>(bytes / nth_ / 4096, 1) * 4096;
  buf_ = std::make_unique<LargePageBuffer>(static_cast<size_t>(share_ * nth_),
                                            LargePageBuffer::Pages::kHuge);
  uint8_t* buf = buf_->data();
  // Each thread faults in (writes) the share it will read, so the pages are its NUMA-local ones.
  RunOn(pool_, [&](int ith, int) {
    std::memset(buf + ith * share_, ith + 1, static_cast<size_t>(share_));
  });
}

BandwidthProbe::~BandwidthProbe() = default;

double BandwidthProbe::Measure(int passes) {
  const internal::ReadSumFn read = Pick(&IsaKernels::read_sum);
  std::vector<uint64_t> sink(static_cast<size_t>(nth_) * 8);  // a line per thread
  double best_s = 0;
  for (int pass = 0; pass < std::max(passes, 1); ++pass) {
    // Each variant in turn (ReadSumFn says why).
    constexpr size_t kVariants = std::size(internal::kProbePrefetchBytes);
    const int64_t prefetch = internal::kProbePrefetchBytes[static_cast<size_t>(pass) % kVariants];
    const auto start = std::chrono::steady_clock::now();
    RunOn(pool_, [&](int ith, int) {
      sink[static_cast<size_t>(ith) * 8] += read(buf_->data() + ith * share_, share_, prefetch);
    });
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (pass == 0 || s < best_s) best_s = s;
  }
  for (uint64_t x : sink) checksum_ += x;
  return static_cast<double>(share_ * nth_) / best_s / 1e9;
}

double MeasureReadBandwidthGBs(ComputePool* pool, int64_t bytes, int passes) {
  BandwidthProbe probe(pool, bytes);
  return probe.Measure(passes);
}

}  // namespace yunzhi::engine::kernels
