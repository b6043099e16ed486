// `yunzhi kb ...` (knowledge spaces on the data dir: create, list, add files, search, remove,
// evaluate retrieval on a BEIR collection) and `yunzhi model create` (derived models).
// Like the other management commands they work on the data dir directly; documents added while
// a server runs are ingested by this command, and searchable by the server when it returns.
#pragma once

#include <string>
#include <vector>

#include "cli/common.h"

namespace yunzhi::cli {

struct KbFlags {
  std::string tenant;  // name or id; empty: the system tenant
  std::string space;
  std::string document;
  std::string description;
  std::string embedding_model;
  int chunk_size = 0;      // 0: default
  int chunk_overlap = -1;  // -1: default
  std::vector<std::string> files;
  std::string query;
  std::string mode;
  int top_k = 5;
};

struct KbEvalFlags {
  std::string corpus, queries, qrels;  // BEIR layout
  std::string squad;                   // or a SQuAD-layout JSON (CMRC2018)
  std::string embedding_model;
  std::string mode;
  int chunk_size = 400;
};

struct ModelCreateFlags {
  std::string tenant;
  std::string name;
  std::string parent;
  std::string description;
  std::string instructions;
  std::string instructions_file;
  std::vector<std::string> spaces;
  int top_k = 0;
};

int RunKbCreate(const GlobalFlags& flags, const KbFlags& kb);
int RunKbList(const GlobalFlags& flags, const KbFlags& kb);
int RunKbAdd(const GlobalFlags& flags, const KbFlags& kb);
int RunKbSearch(const GlobalFlags& flags, const KbFlags& kb);
int RunKbRemove(const GlobalFlags& flags, const KbFlags& kb);
int RunKbEval(const GlobalFlags& flags, const KbEvalFlags& eval);
int RunModelCreate(const GlobalFlags& flags, const ModelCreateFlags& mc);

}  // namespace yunzhi::cli
