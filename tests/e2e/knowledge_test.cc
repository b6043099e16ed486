// Knowledge spaces against the real binary: a server killed (SIGKILL) in the middle of an
// ingestion job finishes the job after a restart with every document indexed exactly once, and
// the `yunzhi kb` commands (create, add with directories, list, search, rm, eval).
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/process.h"

namespace yunzhi::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

const std::string kBinary = YUNZHI_BINARY;
const fs::path kDocs = fs::path(YUNZHI_TESTDATA_DIR) / "docs";

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Server {
 public:
  explicit Server(const std::string& data_dir) {
    process_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        kBinary, "serve", "--data-dir", data_dir, "--port", "0", "--log-level", "warn"});
    ok_ = process_->WaitForOutput(
        [](const std::string& out) { return out.find("serving on") != std::string::npos; }, 60s);
    std::smatch m;
    const std::string out = process_->out();
    if (std::regex_search(out, m, std::regex(R"(http://127\.0\.0\.1:(\d+))"))) {
      port_ = static_cast<uint16_t>(std::stoi(m[1]));
    }
    if (std::regex_search(out, m, std::regex(R"((yz-[A-Za-z0-9]{40}))"))) key_ = m[1];
  }
  bool ok() const { return ok_ && port_ != 0; }
  uint16_t port() const { return port_; }
  const std::string& key() const { return key_; }
  ChildProcess& process() { return *process_; }

  json::value Call(const std::string& method, const std::string& target, const std::string& key,
                   const std::string& body = "", const std::string& type = "application/json",
                   int* status = nullptr) {
    HttpClient c(port_, 30s);
    HeaderList h{{"Authorization", "Bearer " + key}};
    if (!body.empty()) h.emplace_back("Content-Type", type);
    auto r = c.Send(method, target, h, body);
    if (!r) {
      ADD_FAILURE() << method << " " << target << ": " << r.error().ToString();
      return nullptr;
    }
    if (status != nullptr) *status = r->status;
    boost::system::error_code ec;
    json::value v = json::parse(r->body, ec);
    return ec ? json::value(r->body) : v;
  }

 private:
  std::unique_ptr<ChildProcess> process_;
  bool ok_ = false;
  uint16_t port_ = 0;
  std::string key_;
};

TEST(KnowledgeE2E, AJobInterruptedByAKillFinishesAfterRestart) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  std::string key;
  std::string job_id;
  const int n_docs = 24;
  {
    Server server(data);
    ASSERT_TRUE(server.ok()) << server.process().out() << server.process().err();
    key = server.key();
    int status = 0;
    server.Call("POST", "/api/spaces", key, R"({"name":"papers"})", "application/json", &status);
    ASSERT_EQ(status, 201);
    // Distinct copies of a real multi-page PDF: slow enough to kill the server mid-job.
    const std::string pdf = Read(kDocs / "pdf/chatchat-langchain.pdf");
    const std::string boundary = "xYzBoundary42";
    std::string form;
    for (int i = 0; i < n_docs; ++i) {
      form += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"copy" +
              std::to_string(i) + ".pdf\"\r\n\r\n" + pdf + "\n% copy " + std::to_string(i) + "\n\r\n";
    }
    form += "--" + boundary + "--\r\n";
    json::value job = server.Call("POST", "/api/spaces/papers/documents", key, form,
                                  "multipart/form-data; boundary=" + boundary, &status);
    ASSERT_EQ(status, 202) << json::serialize(job);
    job_id = std::string(job.at("id").as_string());
    // Kill it once some, not all, documents are done.
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    for (;;) {
      json::value j = server.Call("GET", "/api/jobs/" + job_id, key);
      const int64_t done = j.at("done").as_int64();
      if (done >= 1 || std::chrono::steady_clock::now() > deadline) {
        ASSERT_LT(done, n_docs) << "ingestion finished before the kill: make the job bigger";
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    server.process().Signal(SIGKILL);
    server.process().Wait(10s);
  }
  Server again(data);
  ASSERT_TRUE(again.ok()) << again.process().out() << again.process().err();
  json::value j;
  const auto deadline = std::chrono::steady_clock::now() + 240s;
  do {
    std::this_thread::sleep_for(100ms);
    j = again.Call("GET", "/api/jobs/" + job_id, key);
  } while (j.at("done").as_int64() < n_docs && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(j.at("status").as_string(), "succeeded") << json::serialize(j);
  // Every document indexed exactly once: same chunk count for identical content, and one hit
  // per document for a phrase of the text.
  json::value docs = again.Call("GET", "/api/spaces/papers/documents", key);
  const auto& list = docs.at("data").as_array();
  ASSERT_EQ(list.size(), static_cast<size_t>(n_docs));
  const int64_t chunks = list[0].at("chunks").as_int64();
  EXPECT_GT(chunks, 0);
  for (const auto& d : list) EXPECT_EQ(d.at("chunks").as_int64(), chunks) << json::serialize(d);
  json::value space = again.Call("GET", "/api/spaces/papers", key);
  EXPECT_EQ(space.at("chunks").as_int64(), chunks * n_docs);
  json::value hits = again.Call("POST", "/api/spaces/papers/search", key,
                                R"({"query":"LangChain","top_k":100})");
  std::set<std::string> seen_chunks;
  for (const auto& h : hits.at("data").as_array()) {
    EXPECT_TRUE(seen_chunks.insert(json::serialize(h.at("chunk_id"))).second);
  }
  EXPECT_FALSE(seen_chunks.empty());
  again.process().Signal(SIGTERM);
  EXPECT_EQ(again.process().Wait(30s), 0) << again.process().err();
}

TEST(KnowledgeE2E, KbCommands) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), kBinary);
    args.push_back("--data-dir");
    args.push_back(data);
    return RunCommand(args, {}, 120s);
  };
  CommandResult created = run({"kb", "create", "manuals"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("ks_"));
  // A directory (recursively) plus one file; the legacy .doc fails alone.
  const fs::path tree = fs::path(dir.path()) / "tree";
  fs::create_directories(tree / "sub");
  fs::copy_file(kDocs / "md/chatchat-distributed-training-zh.md", tree / "训练.md");
  fs::copy_file(kDocs / "csv/docling-csv-comma.csv", tree / "sub/table.csv");
  fs::copy_file(kDocs / "legacy/unstructured-fake.doc", tree / "sub/old.doc");
  CommandResult added = run({"kb", "add", "manuals", tree.string(),
                             (kDocs / "txt/tika-testTXT.txt").string()});
  EXPECT_EQ(added.exit_code, 1) << added.out << added.err;  // one file failed
  EXPECT_THAT(added.out, HasSubstr("4 files: 3 ingested, 0 duplicates, 1 failed"));
  EXPECT_THAT(added.err, HasSubstr("old.doc"));
  EXPECT_THAT(added.err, HasSubstr("ingesting ["));
  CommandResult listed = run({"kb", "list", "manuals"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("ready"));
  EXPECT_THAT(listed.out, HasSubstr("failed"));
  CommandResult found = run({"kb", "search", "manuals", "数据并行", "--top-k", "1"});
  ASSERT_EQ(found.exit_code, 0) << found.err;
  EXPECT_THAT(found.out, HasSubstr("训练.md"));
  CommandResult again = run({"kb", "add", "manuals", (tree / "训练.md").string()});
  EXPECT_THAT(again.out, HasSubstr("1 duplicates"));
  CommandResult removed = run({"kb", "rm", "manuals"});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  CommandResult gone = run({"kb", "list", "manuals"});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_THAT(gone.err, HasSubstr("does not exist"));
}

TEST(KnowledgeE2E, KbEvalReportsBeirMetrics) {
  // A small BEIR collection written here, with known answers.
  TempDir dir;
  const fs::path d(dir.path());
  std::ofstream(d / "corpus.jsonl") << R"({"_id":"d1","title":"Rust","text":"The borrow checker enforces ownership."}
{"_id":"d2","title":"Tea","text":"Green tea is steeped at 80 degrees."}
{"_id":"d3","title":"Rivers","text":"The Yangtze is the longest river in Asia."}
)";
  std::ofstream(d / "queries.jsonl") << R"({"_id":"q1","text":"how hot should green tea water be"}
{"_id":"q2","text":"longest river Asia"}
)";
  std::ofstream(d / "qrels.tsv") << "query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td3\t1\n";
  CommandResult r = RunCommand({kBinary, "kb", "eval", "--corpus", (d / "corpus.jsonl").string(),
                                "--queries", (d / "queries.jsonl").string(), "--qrels",
                                (d / "qrels.tsv").string(), "--data-dir", dir.path() + "/unused"},
                               {}, 120s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("nDCG@10    1.0000"));
  EXPECT_THAT(r.out, HasSubstr("MRR@10     1.0000"));
  EXPECT_THAT(r.out, HasSubstr("queries    2"));
  EXPECT_THAT(r.out, HasSubstr("latency    p50"));
  // The evaluation never touched the data dir.
  EXPECT_FALSE(fs::exists(dir.path() + "/unused/tenants"));
}

}  // namespace
}  // namespace yunzhi::testing
