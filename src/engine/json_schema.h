// Private: the grammar a JsonConstraint runs, and the JSON Schema compiler that builds it.
//
// A Grammar is a graph of nodes (one per schema construct; $ref cycles are edges back) plus a
// top-level sequence of items: fixed text (a tool-call marker, possibly one special token) or a
// JSON value of some node. json_object mode is the sequence [any object]; a forced Hermes tool
// call is ["<tool_call>", "\n", call object, "\n", "</tool_call>"].
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/json_constraint.h"

namespace yunzhi::engine::json_grammar {

enum class NodeKind : uint8_t {
  kObject,  // typed (properties in order) or free (string keys, `additional` values)
  kArray,
  kString,
  kNumber,
  kInteger,
  kLiterals,  // one of a set of fixed JSON texts (enum, const, true/false/null, tool names)
  kUnion,     // anyOf: branch chosen by the value's first byte
};

inline constexpr int64_t kInfiniteBytes = int64_t{1} << 40;

struct Property {
  std::string key;  // the key as JSON text, quotes included: "\"name\""
  int32_t node = -1;
  bool required = false;
};

struct Node {
  NodeKind kind = NodeKind::kObject;
  // kObject
  std::vector<Property> properties;
  bool free_keys = false;   // no `properties`: any string keys, values of `additional`
  int32_t additional = -1;  // free objects: value node; -1 = no members allowed ("{}")
  // Tool calls: the value node of property 1 is chosen by which literal property 0 matched.
  std::vector<int32_t> discriminated;
  // kArray
  std::vector<int32_t> prefix_items;
  int32_t items = -1;  // -1: no items beyond prefix_items
  int64_t min_items = 0;
  int64_t max_items = -1;  // -1 = unbounded
  // kString
  int64_t min_length = 0;
  int64_t max_length = -1;
  // kInteger
  bool has_minimum = false, has_maximum = false;
  int64_t minimum = 0, maximum = 0;
  // kLiterals: sorted, unique; `raw` literals are not JSON (Mistral tool names).
  std::vector<std::string> literals;
  // kUnion: first byte -> branch node (-1 = refused).
  std::array<int32_t, 256> dispatch{};
  std::vector<int32_t> branches;
  // Shortest serialised instance in bytes (kInfiniteBytes until computed).
  int64_t min_bytes = kInfiniteBytes;
};

struct SeqItem {
  int32_t node = -1;      // a JSON value of this node, or
  std::string text;       // fixed text (when node < 0)
  int32_t token_id = -1;  // when >= 0 the text must be written as this single (special) token
  // When not empty: the value's node is discriminated[i], i = the index of the literal that the
  // latest literal-set value of the sequence matched (Mistral's name[ARGS]{arguments}).
  std::vector<int32_t> discriminated;
};

struct Grammar {
  std::vector<Node> nodes;
  std::vector<SeqItem> sequence;
  // Filled by Finalize: min bytes of sequence items [i, end).
  std::vector<int64_t> seq_suffix_bytes;
};

// Builds grammars. Node ids are indices into grammar().nodes.
class GrammarBuilder {
 public:
  GrammarBuilder();
  // Any JSON value / any JSON object (free keys, any values).
  int32_t AnyValue() const { return any_value_; }
  int32_t AnyObject() const { return any_object_; }
  // Compiles a schema (JSON text). Errors: kInvalidArgument, param "response_format".
  Result<int32_t> AddSchema(std::string_view schema_json);
  // A literal set node; `raw` = the literals are written as is (not JSON strings).
  int32_t AddStringLiterals(const std::vector<std::string>& values, bool raw);
  int32_t AddNode(Node node);
  Node& node(int32_t id) { return grammar_.nodes[static_cast<size_t>(id)]; }
  void AddSequenceValue(int32_t node) { grammar_.sequence.push_back({node, {}, -1, {}}); }
  void AddSequenceDiscriminated(std::vector<int32_t> nodes) {
    grammar_.sequence.push_back({nodes.at(0), {}, -1, std::move(nodes)});
  }
  void AddSequenceText(std::string text, int32_t token_id = -1) {
    grammar_.sequence.push_back({-1, std::move(text), token_id, {}});
  }
  // Computes min_bytes; errors when a reachable node has no finite instance.
  Result<Grammar> Finalize();

 private:
  Grammar grammar_;
  int32_t any_value_ = -1;
  int32_t any_object_ = -1;
};

// min over i of (bytes of literal i + min_bytes of branches[i]): a tool name with its arguments.
int64_t JointMin(const Node& literals, const std::vector<int32_t>& branches,
                 const std::vector<Node>& nodes);
// Shortest bytes of sequence item i; `selected` = the discriminating literal index (-1 unknown:
// a discriminated item then costs 0 and the literal before it carries the joint cost).
int64_t SeqItemMinBytes(const Grammar& g, size_t i, int32_t selected);

// JSON string literal for `s` (quotes included, minimal escaping).
std::string QuoteJson(std::string_view s);

// The constraint over an already built grammar (json_constraint.cc).
Result<std::unique_ptr<JsonConstraint>> MakeGrammarConstraint(const Tokenizer& tokenizer,
                                                              Grammar grammar,
                                                              std::vector<int32_t> end_token_ids,
                                                              int32_t max_whitespace_bytes);

}  // namespace yunzhi::engine::json_grammar
