// Kernel dispatch: picks the ISA once, converts activations to the weights' partner format and
// splits matrix products over the ComputePool.

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "engine/kernels/kernels_internal.h"
#include "yunzhi/base/status.h"

namespace yunzhi::engine::kernels {
namespace {

using internal::ActFormat;
using internal::IsaKernels;
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

// The active ISA's entry, or the scalar one where the ISA has none.
template <typename F>
F Pick(F IsaKernels::*member) {
  F f = Table(ActiveIsa()).*member;
  return f != nullptr ? f : internal::ScalarKernels().*member;
}

TileFn PickTile(WKind kind) {
  TileFn f = Table(ActiveIsa()).tile[static_cast<int>(kind)];
  return f != nullptr ? f : internal::ScalarKernels().tile[static_cast<int>(kind)];
}

struct KindInfo {
  WKind kind;
  ActFormat act;
};

KindInfo KindOf(TensorType t) {
  switch (t) {
    case TensorType::kF32: return {WKind::kF32, ActFormat::kFloat};
    case TensorType::kF16: return {WKind::kF16, ActFormat::kFloat};
    case TensorType::kBF16: return {WKind::kBf16, ActFormat::kFloat};
    case TensorType::kQ8_0: return {WKind::kQ8_0, ActFormat::kQ8};
    case TensorType::kQ4_0: return {WKind::kQ4_0, ActFormat::kQ8};
    case TensorType::kQ4_K: return {WKind::kQ4_K, ActFormat::kQ8K};
    case TensorType::kQ6_K: return {WKind::kQ6_K, ActFormat::kQ8K};
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

Isa DetectIsa() {
  static const Isa isa = Detect();
  return isa;
}

Isa ActiveIsa() { return static_cast<Isa>(ActiveSlot().load(std::memory_order_relaxed)); }

void SetActiveIsa(Isa isa) {
  YZ_CHECK(static_cast<int>(isa) <= static_cast<int>(DetectIsa()));
  ActiveSlot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

void MatMul(ComputePool* pool, TensorType wtype, const void* w, int64_t rows, int64_t cols,
            const float* x, int64_t n_tokens, float* y) {
  if (rows <= 0 || n_tokens <= 0) return;
  const KindInfo info = KindOf(wtype);
  YZ_DCHECK(IsValidRowLength(wtype, cols));
  const int nth = pool != nullptr ? pool->n_threads() : 1;

  // 1. Activations in the partner format.
  const int64_t x_stride = internal::ActStrideBytes(info.act, cols);
  const uint8_t* xa = reinterpret_cast<const uint8_t*>(x);
  if (info.act != ActFormat::kFloat) {
    uint8_t* buf = ActScratch(static_cast<size_t>(x_stride * n_tokens));
    const internal::QuantizeActFn quantize = info.act == ActFormat::kQ8
                                                 ? Pick(&IsaKernels::quantize_q8)
                                                 : Pick(&IsaKernels::quantize_q8k);
    auto quantize_range = [&](int ith, int n) {
      for (int64_t t = ith * n_tokens / n; t < (ith + 1) * n_tokens / n; ++t) {
        quantize(x + t * cols, cols, buf + t * x_stride);
      }
    };
    // Below a few tokens the fork-join costs more than quantising on one thread.
    if (n_tokens >= 4 && nth > 1) {
      RunOn(pool, quantize_range);
    } else {
      quantize_range(0, 1);
    }
    xa = buf;
  }

  // 2. Tiles. Row chunks sized to stay in L2 while every token block of the chunk passes.
  const TileFn tile = PickTile(info.kind);
  const TileArgs args{static_cast<const uint8_t*>(w), RowSizeBytes(wtype, cols), cols, xa,
                      x_stride, y, rows};
  int64_t row_chunk;
  int64_t tok_block;
  if (n_tokens < 8) {
    // Decoding: pure streaming of the weights; ~8 chunks per thread for balance.
    row_chunk = internal::RoundUp(std::max<int64_t>(rows / (8 * nth), 1), kRowAlign);
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
  alignas(64) std::atomic<int64_t> next{0};
  RunOn(pool, [&](int, int) {
    for (;;) {
      const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n_items) break;
      const int64_t rc = i / n_tb, tb = i % n_tb;
      tile(args, rc * row_chunk, std::min(rows, (rc + 1) * row_chunk), tb * tok_block,
           std::min(n_tokens, (tb + 1) * tok_block));
    }
  });
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

void AttendOneHead(const float* q, const void* const* k_rows, const void* const* v_rows,
                   KvType kv_type, int64_t n_kv, int64_t head_dim, float scale, float* scratch,
                   float* out) {
  const bool f16 = kv_type == KvType::kF16;
  if (n_kv <= 0) {
    std::fill(out, out + head_dim, 0.0f);
    return;
  }
  Pick(&IsaKernels::scores)(q, k_rows, f16, n_kv, head_dim, scale, scratch);
  Softmax(scratch, n_kv);
  Pick(&IsaKernels::weighted_sum)(scratch, v_rows, f16, n_kv, head_dim, out);
}

void FloatToHalf(const float* x, uint16_t* y, int64_t n) {
  Pick(&IsaKernels::float_to_half)(x, y, n);
}

void HalfToFloat(const uint16_t* x, float* y, int64_t n) {
  Pick(&IsaKernels::half_to_float)(x, y, n);
}

}  // namespace yunzhi::engine::kernels
