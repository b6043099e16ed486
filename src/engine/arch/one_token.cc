// Decoding one token through every layer in one parallel region (DecodeLayersInOneRegion).
//
// Each pre-norm layer is a few phases of work items (Phase below): one item per KV head -- its
// q/k/v rows, biases, Q/K norms, RoPE, cache write and attention, as SelfAttention computes them
// -- or, when the threads do not divide the KV heads, row ranges of q/k/v and then one item per
// KV head for the rest; then row ranges of o, of gate/up and of down, o and down each adding its
// rows to the residual. Gate/up items come in pairs (the same rows of both matrices); whichever
// thread finishes the second of a pair computes SiLU(gate) * up of those rows and converts them
// into down's input, so down's input is ready when the phase ends, made mostly by the thread that
// computed its gate and up rows (thread k's share is the same rows of both).
// Before taking items, every thread prepares the phase's input for itself from what the previous
// phase left in the shared buffers: the RMSNorm of the residual and its conversion to the
// weights' activation format. The layer-by-layer path runs those steps on one
// thread while the others wait, and pays a fork and a join per product, with the data crossing
// between cores twice (the caller gathers the workers' outputs, the workers read the caller's
// converted input). Here a phase starts when every item of the one before is done, and each
// thread reads the others' outputs itself: one crossing per phase.
//
// Scheduling is MatMul's for decoding: thread k owns a contiguous share of a phase's items (each
// core streams one region of the weights, and a KV head's cache stays with the core that wrote
// it) and takes what is left of the others' shares once its own is done. The pool's RunShared
// contract holds: a worker that starts late walks past the finished phases and joins the current
// one, and if it never starts, the caller does every item.

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "engine/arch/arch.h"
#include "engine/arch/layers.h"
#include "engine/model_state.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace yunzhi::engine::arch {
namespace {

using internal::LayerWeights;
using internal::Matrix;

// The phases of a layer, in order: kHeads when the threads divide the KV heads (one item per KV
// head, its projections included), otherwise kQkv then kAttend.
enum class Phase {
  kHeads,   // per KV head: its rows of q/k/v, then what kAttend does
  kQkv,     // row ranges of q, k and v
  kAttend,  // per KV head: biases, Q/K norms, RoPE, cache write, attention
  kOutput,  // row ranges of o, each added to its rows of the residual
  kGateUp,  // row ranges of gate and up, then SiLU(gate) * up of each pair as down's input
  kDown,    // row ranges of down, each added to its rows of the residual
};

// Row ranges per thread and phase: as MatMul's decoding (kDecodeItemsPerThread), in multiples of
// 16 rows (panel groups; no two threads write one 64-byte line of the output).
constexpr int64_t kItemsPerThread = 16;
constexpr int64_t kRowAlign = 16;

int64_t RowChunk(int64_t rows, int nth) {
  const int64_t chunk = std::max<int64_t>(rows / (kItemsPerThread * nth), 1);
  return (chunk + kRowAlign - 1) / kRowAlign * kRowAlign;
}

int64_t Chunks(int64_t rows, int64_t chunk) { return (rows + chunk - 1) / chunk; }

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// One thread's claim on a phase's items.
struct alignas(64) Cursor {
  std::atomic<int64_t> next{0};
  int64_t end = 0;
};

// The items of every phase of the pass, and who has done how many.
class Schedule {
 public:
  Schedule(int nth, const std::vector<int64_t>& items_per_phase)
      : nth_(nth),
        n_phases_(static_cast<int64_t>(items_per_phase.size())),
        items_(items_per_phase),
        // Each thread's done counts in lines of their own (8 per line).
        done_stride_((n_phases_ + 7) / 8 * 8),
        cursors_(new Cursor[static_cast<size_t>(n_phases_ * nth)]),
        done_(new Done[static_cast<size_t>(done_stride_ * nth / 8)]) {
    for (int64_t p = 0; p < n_phases_; ++p) {
      const int64_t n = items_[static_cast<size_t>(p)];
      for (int k = 0; k < nth; ++k) {
        Cursor& c = cursor(p, k);
        c.next.store(n * k / nth, std::memory_order_relaxed);
        c.end = n * (k + 1) / nth;
      }
    }
  }

  int64_t n_phases() const { return n_phases_; }

  // Runs item(i) for the items of phase p that thread ith claims: its own share, then the rest
  // of the others'; prepare() once before the first. Publishes how many it did. Preparing only
  // once an item is claimed keeps the phase open while the thread reads the previous phase's
  // results: a thread that arrives when every item is taken reads nothing that the others,
  // already in a later phase, may be rewriting.
  template <typename Prepare, typename Item>
  void Work(int64_t p, int ith, const Prepare& prepare, const Item& item) {
    int64_t count = 0;
    for (int k = 0; k < nth_; ++k) {
      Cursor& c = cursor(p, (ith + k) % nth_);
      for (;;) {
        const int64_t i = c.next.fetch_add(1, std::memory_order_relaxed);
        if (i >= c.end) break;
        if (count++ == 0) prepare();
        item(i);
      }
    }
    done(ith, p).store(count, std::memory_order_release);
  }

  // Whether every item of phase p is done (and its results visible to the caller).
  bool Complete(int64_t p) const {
    int64_t sum = 0;
    for (int k = 0; k < nth_; ++k) sum += done(k, p).load(std::memory_order_acquire);
    return sum == items_[static_cast<size_t>(p)];
  }

  void WaitComplete(int64_t p) const {
    for (int spins = 0; !Complete(p);) {
      if (++spins < 4000) {
        CpuRelax();
      } else {
        std::this_thread::yield();  // a peer descheduled mid-item: let it run
      }
    }
  }

 private:
  struct alignas(64) Done {
    std::atomic<int64_t> count[8];
    Done() {
      for (auto& c : count) c.store(0, std::memory_order_relaxed);
    }
  };
  Cursor& cursor(int64_t p, int k) { return cursors_[static_cast<size_t>(p * nth_ + k)]; }
  std::atomic<int64_t>& done(int k, int64_t p) const {
    const int64_t slot = k * done_stride_ + p;
    return done_[static_cast<size_t>(slot / 8)].count[slot % 8];
  }

  int nth_;
  int64_t n_phases_;
  std::vector<int64_t> items_;
  int64_t done_stride_;
  std::unique_ptr<Cursor[]> cursors_;
  std::unique_ptr<Done[]> done_;
};

// Whether KV head h's rows of q/k/v can be computed as a slice of each matrix.
bool SlicesOk(const ModelConfig& c, const LayerWeights& w) {
  const int64_t q_rows = c.n_head / c.n_head_kv * c.head_dim;
  auto ok = [](const Matrix& m, int64_t rows) {
    return m.layout == kernels::WeightLayout::kRows || rows % kRowAlign == 0;
  };
  return ok(w.wq, q_rows) && ok(w.wk, c.head_dim) && ok(w.wv, c.head_dim);
}

// One thread's inputs for the products of a phase: each matrix's converted activations (one
// conversion per distinct format) or the float row itself.
class Inputs {
 public:
  Inputs(uint8_t* slots, int64_t slot_bytes) : slots_(slots), slot_bytes_(slot_bytes) {}

  // Prepares x (cols floats) for the matrices `ms`; input(j) is then matrix j's.
  void Prepare(std::initializer_list<const Matrix*> ms, const float* x, int64_t cols) {
    n_ = 0;
    int used = 0;
    kernels::ProductInput formats[kMax];
    for (const Matrix* m : ms) {
      const kernels::ProductInput f = kernels::ProductInputOf(m->type, m->layout);
      const void* in = x;
      if (kernels::ProductInputBytes(f, cols) > 0) {
        int s = 0;
        while (s < used && formats[s] != f) ++s;
        if (s == used) {
          formats[used++] = f;
          kernels::ConvertProductInput(f, x, cols, slots_ + s * slot_bytes_);
        }
        in = slots_ + s * slot_bytes_;
      }
      inputs_[n_++] = in;
    }
  }
  const void* input(int j) const { return inputs_[j]; }

  static constexpr int kMax = 3;

 private:
  uint8_t* slots_;
  int64_t slot_bytes_;
  const void* inputs_[kMax] = {};
  int n_ = 0;
};

void RowsOf(const Matrix& m, const void* input, int64_t r0, int64_t r1, float* y) {
  kernels::MatMulRowsOneToken(m.type, m.layout, m.data, m.ne[1], m.ne[0], input, r0, r1, y);
}

}  // namespace

bool DecodeLayersInOneRegion(ForwardContext& ctx) {
  const internal::ModelState& m = *ctx.model;
  const ModelConfig& c = *ctx.config;
  if (ctx.n_tokens != 1 || ctx.pool == nullptr || ctx.thread_scratch == nullptr) return false;
  const int nth = ctx.pool->n_threads();
  if (nth < 2 || m.arch == nullptr || m.arch->block != &PreNormBlock ||
      ctx.attn_scores == nullptr || ctx.attn_scores->size() < static_cast<size_t>(nth)) {
    return false;
  }
  bool per_head = c.n_head_kv % nth == 0;
  for (const LayerWeights& w : m.layers) per_head = per_head && SlicesOk(c, w);

  const int64_t n_embd = c.n_embd, n_ff = c.n_ff, hd = c.head_dim;
  const int64_t group = c.n_head / c.n_head_kv;
  const int64_t q_rows = group * hd;
  const int64_t q_dim = c.n_head * hd;
  const int64_t kv_dim = c.n_head_kv * hd;
  const int64_t chunk_qkv = RowChunk(q_dim + 2 * kv_dim, nth);
  const int64_t n_chunk_q = Chunks(q_dim, chunk_qkv), n_chunk_kv = Chunks(kv_dim, chunk_qkv);
  const int64_t chunk_embd = RowChunk(n_embd, nth);
  // Gate/up chunks in whole blocks of every layer's down input format, so each pair's rows
  // convert on their own (ConvertProductInputRange).
  int64_t down_block = kRowAlign;
  int64_t down_bytes = 0;
  for (const LayerWeights& w : m.layers) {
    const kernels::ProductInput f = kernels::ProductInputOf(w.w_down.type, w.w_down.layout);
    down_block = std::max(down_block, kernels::ProductInputBlock(f));
    down_bytes = std::max(down_bytes, kernels::ProductInputBytes(f, n_ff));
  }
  const int64_t chunk_ff = Chunks(RowChunk(2 * n_ff, nth), down_block) * down_block;
  const int64_t n_chunk_ff = Chunks(n_ff, chunk_ff);
  // Gate/up items share by share: thread k's contiguous items are its rows of gate, then the
  // same rows of up.
  std::vector<std::pair<bool, int64_t>> gate_up;  // per item: (up?, chunk)
  for (int k = 0; k < nth; ++k) {
    for (bool up : {false, true}) {
      for (int64_t i = n_chunk_ff * k / nth; i < n_chunk_ff * (k + 1) / nth; ++i) {
        gate_up.emplace_back(up, i);
      }
    }
  }
  // Per layer and chunk: how many of its gate and up items are done.
  const auto n_layers = static_cast<int64_t>(m.layers.size());
  std::unique_ptr<std::atomic<int>[]> pairs(new std::atomic<int>[n_layers * n_chunk_ff]);
  for (int64_t i = 0; i < n_layers * n_chunk_ff; ++i) pairs[i].store(0, std::memory_order_relaxed);
  std::vector<Phase> layer_phases = {Phase::kHeads, Phase::kOutput, Phase::kGateUp, Phase::kDown};
  if (!per_head) layer_phases.insert(layer_phases.begin() + 1, Phase::kAttend);
  if (!per_head) layer_phases[0] = Phase::kQkv;
  const int64_t n_kinds = static_cast<int64_t>(layer_phases.size());
  std::vector<int64_t> items;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    for (Phase kind : layer_phases) {
      switch (kind) {
        case Phase::kHeads:
        case Phase::kAttend: items.push_back(c.n_head_kv); break;
        case Phase::kQkv: items.push_back(n_chunk_q + 2 * n_chunk_kv); break;
        case Phase::kGateUp: items.push_back(2 * n_chunk_ff); break;
        case Phase::kOutput:
        case Phase::kDown: items.push_back(Chunks(n_embd, chunk_embd)); break;
      }
    }
  }
  Schedule schedule(nth, items);

  // Per thread: the normalised residual and Inputs::kMax converted rows. Shared, after them:
  // down's input, converted a gate/up pair at a time (for float weights, ff_gate itself).
  const int64_t slot_bytes =
      (kernels::ProductInputMaxBytes(std::max({n_embd, q_dim})) + 63) / 64 * 64;
  const int64_t scratch_floats = n_embd + (Inputs::kMax * slot_bytes + 64) / 4;
  const auto n_scratch = static_cast<size_t>(nth + 1);
  if (ctx.thread_scratch->size() < n_scratch) ctx.thread_scratch->resize(n_scratch);
  for (int k = 0; k <= nth; ++k) {
    std::vector<float>& s = (*ctx.thread_scratch)[static_cast<size_t>(k)];
    const int64_t floats = k < nth ? scratch_floats : (down_bytes + 64) / 4 + 1;
    if (static_cast<int64_t>(s.size()) < floats) s.resize(static_cast<size_t>(floats));
  }
  auto* down_input = reinterpret_cast<uint8_t*>((*ctx.thread_scratch)[n_scratch - 1].data());
  down_input += (64 - reinterpret_cast<uintptr_t>(down_input) % 64) % 64;
  EnsureRopeAngles(ctx);
  const kernels::RopeStyle style = StyleOf(c);

  ctx.pool->RunShared([&](int ith, int) {
    float* xn = (*ctx.thread_scratch)[static_cast<size_t>(ith)].data();
    auto* slots = reinterpret_cast<uint8_t*>(xn + n_embd);
    slots += (64 - reinterpret_cast<uintptr_t>(slots) % 64) % 64;
    Inputs in(slots, slot_bytes);
    for (int64_t p = 0; p < schedule.n_phases(); ++p) {
      if (schedule.Complete(p)) continue;  // a late worker passing finished phases
      const int64_t layer = p / n_kinds;
      const LayerWeights& w = m.layers[static_cast<size_t>(layer)];
      const Phase kind = layer_phases[static_cast<size_t>(p % n_kinds)];
      auto prepare_qkv = [&] {
        kernels::RmsNorm(ctx.x, w.attn_norm.data(), c.norm_eps, n_embd, xn);
        in.Prepare({&w.wq, &w.wk, &w.wv}, xn, n_embd);
      };
      // Everything after KV head h_kv's projections.
      auto attend = [&](int64_t h_kv) {
        float* q = ctx.q + h_kv * q_rows;
        float* k = ctx.k + h_kv * hd;
        float* v = ctx.v + h_kv * hd;
        if (c.qkv_bias) {
          kernels::AddInPlace(q, w.bq.data() + h_kv * q_rows, q_rows);
          kernels::AddInPlace(k, w.bk.data() + h_kv * hd, hd);
          kernels::AddInPlace(v, w.bv.data() + h_kv * hd, hd);
        }
        if (c.qk_norm) {
          for (int64_t g = 0; g < group; ++g) {
            kernels::RmsNorm(q + g * hd, w.q_norm.data(), c.norm_eps, hd, q + g * hd);
          }
          kernels::RmsNorm(k, w.k_norm.data(), c.norm_eps, hd, k);
        }
        kernels::RopeRotate(q, group, hd, ctx.rope, style);
        kernels::RopeRotate(k, 1, hd, ctx.rope, style);
        StoreKvHead(ctx, layer, 0, h_kv);
        AttendKvHead(ctx, layer, 0, h_kv, ith);
      };
      switch (kind) {
        case Phase::kHeads:
          schedule.Work(p, ith, prepare_qkv, [&](int64_t h_kv) {
            RowsOf(w.wq, in.input(0), h_kv * q_rows, (h_kv + 1) * q_rows, ctx.q);
            RowsOf(w.wk, in.input(1), h_kv * hd, (h_kv + 1) * hd, ctx.k);
            RowsOf(w.wv, in.input(2), h_kv * hd, (h_kv + 1) * hd, ctx.v);
            attend(h_kv);
          });
          break;
        case Phase::kQkv:
          schedule.Work(p, ith, prepare_qkv, [&](int64_t i) {
            const int which = i < n_chunk_q ? 0 : i < n_chunk_q + n_chunk_kv ? 1 : 2;
            const Matrix& wm = which == 0 ? w.wq : which == 1 ? w.wk : w.wv;
            float* y = which == 0 ? ctx.q : which == 1 ? ctx.k : ctx.v;
            const int64_t first = which == 0 ? 0 : n_chunk_q + (which - 1) * n_chunk_kv;
            const int64_t r0 = (i - first) * chunk_qkv;
            RowsOf(wm, in.input(which), r0, std::min(wm.ne[1], r0 + chunk_qkv), y);
          });
          break;
        case Phase::kAttend:
          schedule.Work(p, ith, [] {}, attend);
          break;
        case Phase::kOutput:
        case Phase::kDown: {
          const Matrix& wm = kind == Phase::kOutput ? w.wo : w.w_down;
          // o converts the attention output itself; down reads what the gate/up pairs left
          // (converted, or the floats themselves in ff_gate).
          const void* input = nullptr;
          auto prepare = [&] {
            if (kind == Phase::kOutput) {
              in.Prepare({&wm}, ctx.attn, q_dim);
              input = in.input(0);
            } else {
              const kernels::ProductInput f = kernels::ProductInputOf(wm.type, wm.layout);
              input = kernels::ProductInputBytes(f, n_ff) > 0 ? static_cast<const void*>(down_input)
                                                              : ctx.ff_gate;
            }
          };
          schedule.Work(p, ith, prepare, [&](int64_t i) {
            const int64_t r0 = i * chunk_embd, r1 = std::min(n_embd, r0 + chunk_embd);
            RowsOf(wm, input, r0, r1, ctx.out);
            kernels::AddInPlace(ctx.x + r0, ctx.out + r0, r1 - r0);
          });
          break;
        }
        case Phase::kGateUp: {
          auto prepare = [&] {
            kernels::RmsNorm(ctx.x, w.ffn_norm.data(), c.norm_eps, n_embd, xn);
            in.Prepare({&w.w_gate, &w.w_up}, xn, n_embd);
          };
          const kernels::ProductInput down_format =
              kernels::ProductInputOf(w.w_down.type, w.w_down.layout);
          const bool convert = kernels::ProductInputBytes(down_format, n_ff) > 0;
          schedule.Work(p, ith, prepare, [&](int64_t i) {
            const auto [up, chunk] = gate_up[static_cast<size_t>(i)];
            const int64_t r0 = chunk * chunk_ff, r1 = std::min(n_ff, r0 + chunk_ff);
            if (up) {
              RowsOf(w.w_up, in.input(1), r0, r1, ctx.ff_up);
            } else {
              RowsOf(w.w_gate, in.input(0), r0, r1, ctx.ff_gate);
            }
            // The second of the pair done: its rows of down's input (acq_rel: the other
            // thread's rows of the pair are visible here).
            if (pairs[layer * n_chunk_ff + chunk].fetch_add(1, std::memory_order_acq_rel) == 1) {
              kernels::SiluMul(ctx.ff_gate + r0, ctx.ff_up + r0, ctx.ff_gate + r0, r1 - r0);
              if (convert) {
                kernels::ConvertProductInputRange(down_format, ctx.ff_gate, n_ff, r0, r1,
                                                  down_input);
              }
            }
          });
          break;
        }
      }
      schedule.WaitComplete(p);
    }
  });
  return true;
}

}  // namespace yunzhi::engine::arch
