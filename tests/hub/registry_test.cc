// The model registry on real files, a real SQLite file and a real blob store under /tmp.
#include "yunzhi/hub/registry.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/engine/encoder.h"
#include "yunzhi/engine/model.h"
#include "yunzhi/store/data_dir.h"

#include "model_writer.h"
#include "support/process.h"

namespace yunzhi::hub {
namespace {

namespace fs = std::filesystem;
using engine::Architecture;
using engine::TensorType;
using ::testing::HasSubstr;

const std::string kStories = std::string(YUNZHI_TESTDATA_DIR) + "/models/stories260K.gguf";

tools::ModelSpec Tiny(Architecture arch, TensorType type, uint64_t seed = 1) {
  tools::ModelSpec s;
  s.architecture = arch;
  s.weight_type = type;
  s.n_vocab = 300;
  s.n_embd = 64;
  s.n_ff = 128;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_layer = 2;
  s.n_ctx = 512;
  s.seed = seed;
  return s;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct stat Stat(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st;
}

// Every blob file in the store.
std::set<std::string> BlobFiles(const fs::path& blobs_root) {
  std::set<std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(blobs_root / "sha256", ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file()) out.insert(it->path().filename().string());
  }
  return out;
}

size_t CountEntries(const fs::path& dir) {
  size_t n = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = store::DataDir::Open(root() / "data");
    ASSERT_TRUE(dir) << dir.error().ToString();
    data_ = std::make_unique<store::DataDir>(*dir);
    OpenRegistry();
  }
  void OpenRegistry() {
    registry_.reset();
    auto db = store::Database::Open({.url = data_->database_url()});
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    auto blobs = store::BlobStore::Open(data_->blobs_path());
    ASSERT_TRUE(blobs) << blobs.error().ToString();
    blobs_ = std::move(*blobs);
    auto reg = Registry::Open(*db_, *blobs_, data_->models_path());
    ASSERT_TRUE(reg) << reg.error().ToString();
    registry_ = std::move(*reg);
  }
  fs::path root() const { return tmp_.path(); }
  std::string WriteGguf(const std::string& file, const tools::ModelSpec& spec) {
    const std::string path = (root() / file).string();
    auto s = tools::WriteModel(spec, {.gguf_path = path});
    EXPECT_TRUE(s) << s.error().ToString();
    return path;
  }
  std::string WriteHf(const std::string& dir, const tools::ModelSpec& spec) {
    const std::string path = (root() / dir).string();
    auto s = tools::WriteModel(spec, {.hf_dir = path});
    EXPECT_TRUE(s) << s.error().ToString();
    return path;
  }
  Registry& reg() { return *registry_; }

  testing::TempDir tmp_;
  std::unique_ptr<store::DataDir> data_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::BlobStore> blobs_;
  std::unique_ptr<Registry> registry_;
};

// ---------------------------------------------------------------------------------------------
// Names.

TEST(ModelNames, AcceptsNamespaceNameAndTag) {
  for (const char* ok :
       {"a", "qwen2.5-0.5b", "qwen/qwen2.5-0.5b-instruct:q4_0", "x_y:latest", "0day", "ns/m"}) {
    EXPECT_TRUE(ValidateModelName(ok)) << ok;
  }
}

TEST(ModelNames, RejectsBadNamesWithTheReason) {
  struct Case {
    const char* name;
    const char* reason;
  };
  for (const Case& c : {Case{"", "name is empty"}, Case{"Qwen", "must be lowercase"},
                        Case{"ns/", "name is empty"}, Case{"/x", "namespace is empty"},
                        Case{"x:", "tag is empty"}, Case{"a/b/c", "only lowercase"},
                        Case{"-x", "must start with"}, Case{"x y", "only lowercase"},
                        Case{"x:a:b", "only lowercase"}, Case{"../x", "must start with"}}) {
    auto s = ValidateModelName(c.name);
    ASSERT_FALSE(s) << c.name;
    EXPECT_EQ(s.error().code, Code::kInvalidArgument);
    EXPECT_EQ(s.error().param, "name");
    EXPECT_THAT(s.error().message, HasSubstr(c.reason)) << c.name;
  }
  EXPECT_FALSE(ValidateModelName(std::string(65, 'a')));
  EXPECT_TRUE(ValidateModelName(std::string(64, 'a')));
}

TEST(ModelNames, DefaultNameComesFromTheFileOrDirectory) {
  EXPECT_EQ(*DefaultModelName("/m/Qwen2.5-0.5B-Instruct-Q4_0.gguf"), "qwen2.5-0.5b-instruct-q4_0");
  EXPECT_EQ(*DefaultModelName("/m/stories260K.gguf"), "stories260k");
  EXPECT_EQ(*DefaultModelName("/m/My Model (v2)/"), "my-model-v2");
  EXPECT_EQ(*DefaultModelName("rel/Llama 3"), "llama-3");
  auto none = DefaultModelName("/m/___.gguf");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Code::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Import.

TEST_F(RegistryTest, ImportsGgufWithItsMetadata) {
  const std::string src =
      WriteGguf("Tiny-Qwen.gguf", Tiny(Architecture::kQwen2, TensorType::kQ8_0));
  auto m = reg().Import(src, "");
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ(m->name, "tiny-qwen");
  EXPECT_TRUE(m->id.starts_with("mdl_")) << m->id;
  EXPECT_EQ(m->format, ModelFormat::kGguf);
  EXPECT_EQ(m->architecture, "qwen2");
  EXPECT_EQ(m->weight_type, "Q8_0");
  EXPECT_EQ(m->context_tokens, 512);
  EXPECT_GT(m->n_params, 300 * 64);
  EXPECT_EQ(m->digest, crypto::Sha256Hex(ReadFile(src)));
  EXPECT_EQ(m->size_bytes, static_cast<int64_t>(fs::file_size(src)));
  ASSERT_EQ(m->files.size(), 1u);
  EXPECT_EQ(m->files[0].name, "Tiny-Qwen.gguf");
  EXPECT_EQ(m->source_path, src);
  EXPECT_FALSE(m->keep_alive_ms);
  EXPECT_EQ(m->path, blobs_->PathOf(m->digest).string());
  auto loaded = engine::Model::Load(m->path);
  ASSERT_TRUE(loaded) << loaded.error().ToString();

  auto by_name = reg().Find("tiny-qwen");
  ASSERT_TRUE(by_name);
  EXPECT_EQ(by_name->id, m->id);
  EXPECT_EQ(by_name->path, m->path);
  EXPECT_EQ(by_name->n_params, m->n_params);
  auto by_id = reg().Find(m->id);
  ASSERT_TRUE(by_id);
  EXPECT_EQ(by_id->name, "tiny-qwen");
  auto all = reg().List();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].files.size(), 1u);
}

TEST_F(RegistryTest, ImportsEncodersAsEmbeddingAndRerankModels) {
  tools::EncoderSpec spec;
  spec.tokenizer = true;
  spec.weight_type = TensorType::kF16;
  const std::string embed_gguf = (root() / "bge.gguf").string();
  const std::string embed_hf = (root() / "bge-hf").string();
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = embed_gguf, .hf_dir = embed_hf}));
  spec.classifier = true;
  const std::string rerank_gguf = (root() / "reranker.gguf").string();
  const std::string rerank_hf = (root() / "reranker-hf").string();
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = rerank_gguf, .hf_dir = rerank_hf}));
  const std::string chat = WriteGguf("chat.gguf", Tiny(Architecture::kLlama, TensorType::kF32));
  struct Case {
    std::string source, name, kind;
  };
  for (const Case& c : {Case{embed_gguf, "bge", "embedding"}, Case{embed_hf, "bge-hf", "embedding"},
                        Case{rerank_gguf, "rr", "rerank"}, Case{rerank_hf, "rr-hf", "rerank"},
                        Case{chat, "chat", "chat"}}) {
    SCOPED_TRACE(c.name);
    auto m = reg().Import(c.source, c.name);
    ASSERT_TRUE(m) << m.error().ToString();
    EXPECT_EQ(m->kind, c.kind);
    if (c.kind != "chat") {
      EXPECT_EQ(m->architecture, "bert");
      EXPECT_EQ(m->weight_type, "F16");
      EXPECT_EQ(m->context_tokens, spec.n_ctx);
      EXPECT_GT(m->n_params, spec.n_vocab * spec.n_embd);
      EXPECT_FALSE(m->has_chat_template);
      auto loaded = engine::EncoderModel::Load(m->path);
      ASSERT_TRUE(loaded) << loaded.error().ToString();
      EXPECT_NE((*loaded)->tokenizer(), nullptr);
    }
  }
  // The kind survives a reopen (it is in the database, not in memory).
  OpenRegistry();
  auto all = reg().List();
  ASSERT_TRUE(all);
  std::map<std::string, std::string> kinds;
  for (const auto& m : *all) kinds[m.name] = m.kind;
  EXPECT_EQ(kinds, (std::map<std::string, std::string>{{"bge", "embedding"},
                                                         {"bge-hf", "embedding"},
                                                         {"chat", "chat"},
                                                         {"rr", "rerank"},
                                                         {"rr-hf", "rerank"}}));
  // A broken encoder is rejected like a broken decoder.
  tools::EncoderSpec bad;
  const std::string broken = (root() / "broken-hf").string();
  ASSERT_TRUE(tools::WriteEncoderModel(bad, {.hf_dir = broken}));
  fs::remove(fs::path(broken) / "model.safetensors");
  auto r = reg().Import(broken, "broken");
  ASSERT_FALSE(r);
  EXPECT_FALSE(reg().Find("broken"));
}

TEST_F(RegistryTest, ImportsTheRealStoriesModelWithItsChatTemplateFlag) {
  // A copy beside the data dir, so the test data itself is never hard-linked.
  fs::copy_file(kStories, root() / "stories260K.gguf");
  auto m = reg().Import(root() / "stories260K.gguf", "karpathy/stories:260k");
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ(m->architecture, "llama");
  EXPECT_EQ(m->weight_type, "F32");
  EXPECT_GT(m->n_params, 200000);
  EXPECT_LT(m->n_params, 400000);
  EXPECT_GT(m->context_tokens, 0);
  auto loaded = engine::Model::Load(kStories);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(m->has_chat_template, !(*loaded)->chat_template().empty());
  EXPECT_EQ(m->context_tokens, (*loaded)->config().n_ctx_train);
}

TEST_F(RegistryTest, SameFilesystemImportHardLinksInsteadOfCopying) {
  const std::string src = WriteGguf("m.gguf", Tiny(Architecture::kLlama, TensorType::kF16));
  auto m = reg().Import(src, "m");
  ASSERT_TRUE(m) << m.error().ToString();
  struct stat s = Stat(src), b = Stat(m->path);
  EXPECT_EQ(s.st_ino, b.st_ino);
  EXPECT_EQ(s.st_dev, b.st_dev);
  EXPECT_EQ(b.st_nlink, 2u);
  // No import temp file left behind.
  EXPECT_EQ(CountEntries(blobs_->root() / "tmp"), 0u);
}

TEST_F(RegistryTest, OtherFilesystemImportCopiesTheBytes) {
  // The source goes to /dev/shm (tmpfs), the data dir is under /tmp (another file system).
  const fs::path shm = fs::path("/dev/shm") / ("yz-hub-" + crypto::RandomAlnum(8) + ".gguf");
  ASSERT_TRUE(tools::WriteModel(Tiny(Architecture::kLlama, TensorType::kF32), {.gguf_path = shm}));
  struct stat s = Stat(shm), d = Stat(data_->path());
  ASSERT_NE(s.st_dev, d.st_dev) << "/dev/shm must be another file system than /tmp for this test";
  auto m = reg().Import(shm, "m");
  const std::string src_bytes = ReadFile(shm);
  fs::remove(shm);
  ASSERT_TRUE(m) << m.error().ToString();
  struct stat b = Stat(m->path);
  EXPECT_NE(b.st_ino, s.st_ino);
  EXPECT_EQ(b.st_nlink, 1u);
  EXPECT_EQ(ReadFile(m->path), src_bytes);
  EXPECT_TRUE(blobs_->Verify(m->digest));
}

TEST_F(RegistryTest, ImportsHuggingFaceDirectoryAsLinkedModelDir) {
  const std::string src = WriteHf("Tiny-HF", Tiny(Architecture::kLlama, TensorType::kF16));
  // Things that are not part of the model stay out.
  std::ofstream(src + "/pytorch_model.bin") << "not ours";
  std::ofstream(src + "/.gitattributes") << "*";
  fs::create_directories(src + "/original");
  std::ofstream(src + "/original/params.json") << "{}";
  std::ofstream(src + "/README.md") << "# tiny";

  auto m = reg().Import(src, "acme/tiny-hf");
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ(m->format, ModelFormat::kSafetensors);
  EXPECT_EQ(m->architecture, "llama");
  EXPECT_EQ(m->weight_type, "F16");
  EXPECT_EQ(m->path, (data_->models_path() / m->id).string());
  std::set<std::string> names;
  int64_t total = 0;
  for (const auto& f : m->files) {
    names.insert(f.name);
    total += f.size_bytes;
    // The entry in models/<id>/ and the blob are the source file itself.
    struct stat e = Stat(fs::path(m->path) / f.name), b = Stat(blobs_->PathOf(f.digest)),
                s = Stat(fs::path(src) / f.name);
    EXPECT_EQ(e.st_ino, b.st_ino) << f.name;
    EXPECT_EQ(s.st_ino, b.st_ino) << f.name;
  }
  EXPECT_EQ(total, m->size_bytes);
  EXPECT_TRUE(names.count("config.json"));
  EXPECT_TRUE(names.count("model.safetensors"));
  EXPECT_TRUE(names.count("README.md"));
  EXPECT_FALSE(names.count("pytorch_model.bin"));
  EXPECT_FALSE(names.count(".gitattributes"));
  EXPECT_FALSE(names.count("original"));
  EXPECT_EQ(CountEntries(m->path), m->files.size());
  auto loaded = engine::Model::Load(m->path);
  ASSERT_TRUE(loaded) << loaded.error().ToString();
  EXPECT_EQ((*loaded)->config().n_params, m->n_params);

  // Removing the model removes its directory and (unshared) blobs.
  ASSERT_TRUE(reg().Remove("acme/tiny-hf"));
  EXPECT_FALSE(fs::exists(m->path));
  EXPECT_TRUE(BlobFiles(blobs_->root()).empty());
  EXPECT_TRUE(fs::exists(fs::path(src) / "model.safetensors"));  // the source is untouched
}

TEST_F(RegistryTest, HuggingFaceCacheSymlinksAreFollowedToTheRealFiles) {
  // The Hugging Face cache layout: snapshot entries are symlinks into a blobs directory.
  const std::string real = WriteHf("real", Tiny(Architecture::kQwen2, TensorType::kF32));
  const fs::path snapshot = root() / "snapshot";
  fs::create_directories(snapshot);
  for (const auto& e : fs::directory_iterator(real)) {
    fs::create_symlink(e.path(), snapshot / e.path().filename());
  }
  auto m = reg().Import(snapshot, "cached");
  ASSERT_TRUE(m) << m.error().ToString();
  for (const auto& f : m->files) {
    EXPECT_EQ(Stat(blobs_->PathOf(f.digest)).st_ino, Stat(fs::path(real) / f.name).st_ino)
        << f.name;
    struct stat l {};
    ASSERT_EQ(::lstat((fs::path(m->path) / f.name).c_str(), &l), 0);
    EXPECT_TRUE(S_ISREG(l.st_mode)) << f.name << " is a hard link, not a symlink";
  }
  EXPECT_TRUE(engine::Model::Load(m->path));
}

TEST_F(RegistryTest, ReimportDeduplicatesAndRemoveKeepsSharedBlobs) {
  const std::string src = WriteGguf("m.gguf", Tiny(Architecture::kLlama, TensorType::kQ4_0));
  auto a = reg().Import(src, "a");
  ASSERT_TRUE(a) << a.error().ToString();
  auto b = reg().Import(src, "team/b:v1");
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_NE(a->id, b->id);
  EXPECT_EQ(a->digest, b->digest);
  EXPECT_EQ(BlobFiles(blobs_->root()).size(), 1u);
  EXPECT_EQ(Stat(src).st_nlink, 2u);  // source + one blob: no second link, no copy

  auto removed = reg().Remove("a");
  ASSERT_TRUE(removed) << removed.error().ToString();
  EXPECT_EQ(removed->id, a->id);
  EXPECT_TRUE(blobs_->Contains(a->digest)) << "still used by team/b:v1";
  EXPECT_TRUE(engine::Model::Load(b->path));
  auto gone = reg().Find("a");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Code::kNotFound);

  ASSERT_TRUE(reg().Remove(b->id));  // by id
  EXPECT_FALSE(blobs_->Contains(a->digest));
  EXPECT_TRUE(BlobFiles(blobs_->root()).empty());
  EXPECT_TRUE(reg().List()->empty());
}

TEST_F(RegistryTest, SharedFilesBetweenHfModelsSurviveRemoval) {
  // Two directories differing only in weights share config and tokenizer blobs.
  const std::string one = WriteHf("one", Tiny(Architecture::kQwen2, TensorType::kF32, 1));
  const std::string two = WriteHf("two", Tiny(Architecture::kQwen2, TensorType::kF32, 2));
  auto a = reg().Import(one, "one");
  auto b = reg().Import(two, "two");
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->digest, b->digest);
  std::set<std::string> da, db;
  for (const auto& f : a->files) da.insert(f.digest);
  for (const auto& f : b->files) db.insert(f.digest);
  std::vector<std::string> shared;
  std::set_intersection(da.begin(), da.end(), db.begin(), db.end(), std::back_inserter(shared));
  ASSERT_FALSE(shared.empty());
  ASSERT_TRUE(reg().Remove("one"));
  for (const auto& d : shared) EXPECT_TRUE(blobs_->Contains(d)) << d;
  for (const auto& d : da) {
    if (!db.count(d)) {
      EXPECT_FALSE(blobs_->Contains(d)) << d;
    }
  }
  EXPECT_TRUE(engine::Model::Load(b->path));
}

TEST_F(RegistryTest, CorruptModelIsRejectedAndLeavesNothing) {
  const std::string good = WriteGguf("good.gguf", Tiny(Architecture::kLlama, TensorType::kF32));
  const std::string bytes = ReadFile(good);
  const fs::path bad = root() / "bad.gguf";
  std::ofstream(bad, std::ios::binary) << bytes.substr(0, bytes.size() / 2);  // truncated
  auto m = reg().Import(bad, "bad");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, Code::kInvalidArgument) << m.error().ToString();
  EXPECT_THAT(m.error().message, HasSubstr("bad.gguf"));
  EXPECT_TRUE(reg().List()->empty());
  EXPECT_TRUE(BlobFiles(blobs_->root()).empty());
  EXPECT_EQ(CountEntries(blobs_->root() / "tmp"), 0u);
  EXPECT_EQ(Stat(bad).st_nlink, 1u);

  // An HF directory with a tensor of the wrong architecture.
  const std::string hf = WriteHf("hf", Tiny(Architecture::kLlama, TensorType::kF32));
  std::ofstream(hf + "/config.json", std::ios::trunc)
      << R"({"model_type": "gpt_neox", "hidden_size": 64})";
  auto h = reg().Import(hf, "hf");
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, Code::kUnimplemented);
  EXPECT_THAT(h.error().message, HasSubstr("gpt_neox"));
  EXPECT_TRUE(BlobFiles(blobs_->root()).empty());
  EXPECT_EQ(CountEntries(data_->models_path()), 0u);

  // Not a model at all.
  fs::create_directories(root() / "empty");
  auto e = reg().Import(root() / "empty", "e");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, Code::kInvalidArgument);
  EXPECT_THAT(e.error().message, HasSubstr("config.json"));
  auto missing = reg().Import(root() / "nope.gguf", "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound);
}

TEST_F(RegistryTest, ExistingNameNeedsReplaceAndReplaceDropsTheOldBlob) {
  const std::string v1 = WriteGguf("v1.gguf", Tiny(Architecture::kLlama, TensorType::kF32, 1));
  const std::string v2 = WriteGguf("v2.gguf", Tiny(Architecture::kLlama, TensorType::kF32, 2));
  auto a = reg().Import(v1, "m");
  ASSERT_TRUE(a);
  auto again = reg().Import(v2, "m");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Code::kAlreadyExists);
  EXPECT_THAT(again.error().message, HasSubstr("'m' already exists"));
  EXPECT_EQ(BlobFiles(blobs_->root()).size(), 1u);

  auto b = reg().Import(v2, "m", {.replace = true});
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_NE(b->digest, a->digest);
  EXPECT_FALSE(blobs_->Contains(a->digest));
  EXPECT_TRUE(blobs_->Contains(b->digest));
  auto found = reg().Find("m");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->id, b->id);
  EXPECT_EQ(reg().List()->size(), 1u);
}

TEST_F(RegistryTest, UnknownModelIsNotFoundWithOpenAiDetail) {
  for (const char* q : {"nope", "mdl_01JDQ8M4Z9T6V2K3W5X7Y8Z0AB"}) {
    auto m = reg().Find(q);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code, Code::kNotFound);
    EXPECT_EQ(m.error().message, fmt::format("model '{}' does not exist", q));
    EXPECT_EQ(m.error().detail, "model_not_found");
  }
  auto r = reg().Remove("nope");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "model_not_found");
  auto k = reg().SetKeepAlive("nope", 5);
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().code, Code::kNotFound);
}

TEST_F(RegistryTest, KeepAliveIsStoredWithTheRecord) {
  ASSERT_TRUE(reg().Import(WriteGguf("m.gguf", Tiny(Architecture::kLlama, TensorType::kF32)), "m"));
  auto m = reg().SetKeepAlive("m", 300000);
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ(m->keep_alive_ms, 300000);
  EXPECT_EQ(reg().Find("m")->keep_alive_ms, 300000);
  EXPECT_EQ(reg().SetKeepAlive("m", -1)->keep_alive_ms, -1);
  EXPECT_EQ((*reg().List())[0].keep_alive_ms, -1);
  EXPECT_FALSE(reg().SetKeepAlive("m", std::nullopt)->keep_alive_ms);
}

TEST_F(RegistryTest, RecordsOutliveTheRegistryObject) {
  auto m = reg().Import(WriteGguf("m.gguf", Tiny(Architecture::kLlama, TensorType::kF32)), "m");
  ASSERT_TRUE(m);
  OpenRegistry();  // as another process would see the data dir
  auto found = reg().Find("m");
  ASSERT_TRUE(found) << found.error().ToString();
  EXPECT_EQ(found->digest, m->digest);
  EXPECT_EQ(found->architecture, "llama");
}

TEST_F(RegistryTest, ProgressIsReportedAtLeastEvery64MiB) {
  // About 84 MB of F32 embedding (tied output).
  tools::ModelSpec spec = Tiny(Architecture::kLlama, TensorType::kF32);
  spec.n_vocab = 32768;
  spec.n_embd = 640;
  spec.n_head = 10;
  spec.n_head_kv = 2;
  spec.n_ff = 256;
  spec.n_layer = 1;
  spec.tied_output = true;
  const std::string src = WriteGguf("big.gguf", spec);
  const uint64_t size = fs::file_size(src);
  ASSERT_GT(size, uint64_t{80} << 20);
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  auto m = reg().Import(src, "big", {.progress = [&](uint64_t done, uint64_t total) {
                          calls.emplace_back(done, total);
                        }});
  ASSERT_TRUE(m) << m.error().ToString();
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(calls.front().first, 0u);
  EXPECT_EQ(calls.back().first, size);
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].second, size);
    if (i > 0) {
      EXPECT_GE(calls[i].first, calls[i - 1].first);
      EXPECT_LE(calls[i].first - calls[i - 1].first, uint64_t{64} << 20);
    }
  }
}

TEST_F(RegistryTest, CancelledImportLeavesNothing) {
  const std::string src = WriteGguf("m.gguf", Tiny(Architecture::kLlama, TensorType::kF32));
  std::atomic<bool> cancel{true};
  auto m = reg().Import(src, "m", {.cancel = &cancel});
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, Code::kCancelled);
  EXPECT_TRUE(reg().List()->empty());
  EXPECT_TRUE(BlobFiles(blobs_->root()).empty());
  EXPECT_EQ(CountEntries(blobs_->root() / "tmp"), 0u);
}

TEST_F(RegistryTest, ConcurrentImportsOfOneFileShareOneBlob) {
  const std::string src = WriteGguf("m.gguf", Tiny(Architecture::kQwen3, TensorType::kF32));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto m = reg().Import(src, fmt::format("m{}", i));
      if (m) {
        ++ok;
      } else {
        ADD_FAILURE() << m.error().ToString();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(reg().List()->size(), 4u);
  EXPECT_EQ(BlobFiles(blobs_->root()).size(), 1u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(reg().Remove(fmt::format("m{}", i)));
  EXPECT_EQ(BlobFiles(blobs_->root()).size(), 1u);
  EXPECT_TRUE(engine::Model::Load(reg().Find("m3")->path));
}

// Waits (bounded) for a background job to finish.
ImportJob WaitForJob(Registry& reg, const std::string& id) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    auto job = reg.GetImport(id);
    EXPECT_TRUE(job);
    if (!job) return {};
    if (job->finished_at_ms || std::chrono::steady_clock::now() > deadline) return *job;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

TEST_F(RegistryTest, BackgroundImportRunsToCompletionOrFailure) {
  const std::string src = WriteGguf("m.gguf", Tiny(Architecture::kLlama, TensorType::kF32));
  auto job = reg().StartImport(src, "bg/m", false);
  ASSERT_TRUE(job) << job.error().ToString();
  EXPECT_TRUE(job->id.starts_with("imp_"));
  ImportJob done = WaitForJob(reg(), job->id);
  ASSERT_EQ(done.state, ImportJob::State::kSucceeded) << (done.error ? done.error->ToString() : "");
  ASSERT_TRUE(done.model);
  EXPECT_EQ(done.model->name, "bg/m");
  EXPECT_EQ(done.bytes_done, fs::file_size(src));
  EXPECT_EQ(done.bytes_total, fs::file_size(src));
  EXPECT_TRUE(reg().Find("bg/m"));

  // The same name again fails in the job, not at the start.
  auto dup = reg().StartImport(src, "bg/m", false);
  ASSERT_TRUE(dup);
  ImportJob failed = WaitForJob(reg(), dup->id);
  EXPECT_EQ(failed.state, ImportJob::State::kFailed);
  ASSERT_TRUE(failed.error);
  EXPECT_EQ(failed.error->code, Code::kAlreadyExists);
  EXPECT_EQ(reg().ListImports().size(), 2u);

  // Cheap checks answer at once.
  auto bad_name = reg().StartImport(src, "Bad Name", false);
  ASSERT_FALSE(bad_name);
  EXPECT_EQ(bad_name.error().code, Code::kInvalidArgument);
  auto missing = reg().StartImport(root() / "nope.gguf", "x", false);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound);
  auto relative = reg().StartImport("m.gguf", "x", false);
  ASSERT_FALSE(relative);
  EXPECT_EQ(relative.error().code, Code::kInvalidArgument);
  EXPECT_FALSE(reg().GetImport("imp_nope"));
}

}  // namespace
}  // namespace yunzhi::hub
