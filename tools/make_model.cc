// yunzhi-make-model: writes a random-weight model of any supported architecture, shape and
// weight type as a GGUF file and/or a Hugging Face directory (deterministic from --seed).
//
//   yunzhi-make-model --preset qwen2.5-0.5b --type q8_0 --gguf qwen-0.5b-q8_0.gguf
//   yunzhi-make-model --arch qwen3 --type bf16 --n-embd 256 --hf /tmp/qwen3-tiny
//   yunzhi-make-model --arch llama --rope-scaling llama3 --gguf a.gguf --reference
//   a.ref.safetensors
//   yunzhi-make-model --arch bert --tokenizer --gguf bge-tiny.gguf          (embedding model)
//   yunzhi-make-model --arch bert --preset bge-small --tokenizer --gguf bge-small.gguf
//   yunzhi-make-model --arch bert --classifier --tokenizer --hf /tmp/reranker (cross-encoder)
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "model_writer.h"

int main(int argc, char** argv) {
  using yunzhi::tools::ModelSpec;
  CLI::App app{"Writes a random-weight model (GGUF and/or Hugging Face safetensors directory)"};
  std::string preset = "tiny";
  std::string arch;
  std::string type = "f32";
  std::string rope_scaling;
  int64_t n_vocab = -1, n_embd = -1, n_layer = -1, n_head = -1, n_head_kv = -1, head_dim = -1,
          n_ff = -1, n_ctx = -1;
  float rope_theta = -1, rope_factor = -1;
  int tied = -1;
  uint64_t seed = 1;
  bool tokenizer = false, classifier = false, mean_pooling = false;
  yunzhi::tools::WriteTargets targets;
  app.add_option("--preset", preset, "tiny | qwen2.5-0.5b | llama3.2-1b | stories260k");
  app.add_option("--arch", arch, "llama | mistral | qwen2 | qwen3 | bert (default: the preset's)");
  app.add_option("--type", type,
                 "f32 | f16 | bf16 | q8_0 | q4_0 | q5_0 | q5_1 | q2_k | q3_k | q4_k | q5_k | q6_k | "
                 "iq4_nl | iq4_xs");
  app.add_option("--rope-scaling", rope_scaling, "none | linear | llama3");
  app.add_option("--rope-factor", rope_factor);
  app.add_option("--rope-theta", rope_theta);
  app.add_option("--n-vocab", n_vocab);
  app.add_option("--n-embd", n_embd);
  app.add_option("--n-layer", n_layer);
  app.add_option("--n-head", n_head);
  app.add_option("--n-head-kv", n_head_kv);
  app.add_option("--head-dim", head_dim);
  app.add_option("--n-ff", n_ff);
  app.add_option("--n-ctx", n_ctx);
  app.add_option("--tied", tied, "1: output shares the token embedding; 0: separate");
  app.add_option("--seed", seed);
  app.add_flag("--tokenizer", tokenizer, "bert: write a WordPiece tokenizer too");
  app.add_flag("--classifier", classifier, "bert: a cross-encoder (reranker) with one label");
  app.add_flag("--mean-pooling", mean_pooling, "bert: mean pooling instead of CLS");
  app.add_option("--gguf", targets.gguf_path, "write a GGUF file here");
  app.add_option("--hf", targets.hf_dir, "write a Hugging Face directory here");
  app.add_option("--reference", targets.reference_path,
                 "write the dequantised F32 weights here (for tests/reference/forward.py)");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const yunzhi::Error& e) {
    std::fprintf(stderr, "yunzhi-make-model: %s\n", e.message.c_str());
    return 1;
  };
  if (arch == "bert") {
    // Encoders: "tiny" (the tests' default shape) or "bge-small" (384-d, 12 layers, 12 heads).
    yunzhi::tools::EncoderSpec e;
    if (preset == "bge-small") {
      e.n_vocab = 30522;
      e.n_embd = 384;
      e.n_layer = 12;
      e.n_head = 12;
      e.n_ff = 1536;
      e.n_ctx = 512;
    } else if (preset != "tiny") {
      return fail(yunzhi::InvalidArgumentError("--preset for bert: tiny or bge-small"));
    }
    auto t = yunzhi::engine::ParseTensorType(type);
    if (!t) return fail(t.error());
    e.weight_type = *t;
    if (n_vocab > 0) e.n_vocab = n_vocab;
    if (n_embd > 0) e.n_embd = n_embd;
    if (n_layer > 0) e.n_layer = n_layer;
    if (n_head > 0) e.n_head = n_head;
    if (n_ff > 0) e.n_ff = n_ff;
    if (n_ctx > 0) e.n_ctx = n_ctx;
    e.tokenizer = tokenizer;
    e.classifier = classifier;
    if (mean_pooling) e.pooling = yunzhi::engine::EncoderPooling::kMean;
    e.seed = seed;
    if (targets.gguf_path.empty() && targets.hf_dir.empty() && targets.reference_path.empty()) {
      return fail(yunzhi::InvalidArgumentError("nothing to write: give --gguf and/or --hf"));
    }
    auto st = yunzhi::tools::WriteEncoderModel(e, targets);
    if (!st) return fail(st.error());
    return 0;
  }
  auto spec = yunzhi::tools::PresetSpec(preset);
  if (!spec) return fail(spec.error());
  ModelSpec s = *spec;
  if (!arch.empty()) {
    auto a = yunzhi::engine::ParseArchitecture(arch);
    if (!a) return fail(a.error());
    s.architecture = *a;
  }
  auto t = yunzhi::engine::ParseTensorType(type);
  if (!t) return fail(t.error());
  s.weight_type = *t;
  if (rope_scaling == "none") s.rope_scaling = yunzhi::engine::RopeScaling::kNone;
  if (rope_scaling == "linear") s.rope_scaling = yunzhi::engine::RopeScaling::kLinear;
  if (rope_scaling == "llama3") s.rope_scaling = yunzhi::engine::RopeScaling::kLlama3;
  if (!rope_scaling.empty() && rope_scaling != "none" && rope_scaling != "linear" &&
      rope_scaling != "llama3") {
    return fail(yunzhi::InvalidArgumentError("--rope-scaling: none, linear or llama3"));
  }
  if (rope_factor > 0) s.rope_factor = rope_factor;
  if (rope_theta > 0) s.rope_theta = rope_theta;
  if (n_vocab > 0) s.n_vocab = n_vocab;
  if (n_embd > 0) s.n_embd = n_embd;
  if (n_layer > 0) s.n_layer = n_layer;
  if (n_head > 0) s.n_head = n_head;
  if (n_head_kv > 0) s.n_head_kv = n_head_kv;
  if (head_dim > 0) s.head_dim = head_dim;
  if (n_ff > 0) s.n_ff = n_ff;
  if (n_ctx > 0) s.n_ctx = n_ctx;
  if (tied >= 0) s.tied_output = tied != 0;
  s.seed = seed;
  if (targets.gguf_path.empty() && targets.hf_dir.empty() && targets.reference_path.empty()) {
    return fail(yunzhi::InvalidArgumentError("nothing to write: give --gguf and/or --hf"));
  }
  auto st = yunzhi::tools::WriteModel(s, targets);
  if (!st) return fail(st.error());
  return 0;
}
