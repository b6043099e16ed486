// JSON Schema -> grammar nodes (the subset documented in json_constraint.h).
#include "json_schema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <utility>

#include <boost/json.hpp>

namespace yunzhi::engine::json_grammar {
namespace {

namespace bj = boost::json;

Error SchemaError(std::string message) {
  return InvalidArgumentError("response_format: " + std::move(message), "response_format");
}

int64_t DecimalDigits(uint64_t v) {
  int64_t n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

// Shortest decimal text of an integer in [lo, hi] (lo <= hi).
int64_t ShortestIntegerBytes(bool has_lo, int64_t lo, bool has_hi, int64_t hi) {
  if ((!has_lo || lo <= 0) && (!has_hi || hi >= 0)) return 1;  // "0"
  if (has_lo && lo > 0) return DecimalDigits(static_cast<uint64_t>(lo));
  // hi < 0: closest to zero is hi.
  return 1 + DecimalDigits(static_cast<uint64_t>(-(hi + 1)) + 1);
}

class SchemaCompiler {
 public:
  SchemaCompiler(GrammarBuilder* builder, const bj::value* root) : b_(builder), root_(root) {}

  Result<int32_t> Compile(const bj::value& schema) {
    if (++depth_ > 64) return SchemaError("schema nested too deeply");
    auto result = CompileInner(schema);
    --depth_;
    return result;
  }

 private:
  Result<int32_t> CompileRef(std::string_view ref) {
    auto it = refs_.find(std::string(ref));
    if (it != refs_.end()) return it->second;
    const bj::value* target = nullptr;
    if (ref == "#") {
      target = root_;
    } else {
      std::string_view name;
      std::string_view section;
      if (ref.starts_with("#/$defs/")) {
        section = "$defs";
        name = ref.substr(8);
      } else if (ref.starts_with("#/definitions/")) {
        section = "definitions";
        name = ref.substr(14);
      } else {
        return SchemaError(fmt_ref(ref) + " is not supported (only #, #/$defs/NAME, " +
                           "#/definitions/NAME)");
      }
      if (root_->is_object()) {
        const bj::value* defs = root_->as_object().if_contains(section);
        if (defs != nullptr && defs->is_object()) target = defs->as_object().if_contains(name);
      }
    }
    if (target == nullptr) return SchemaError(fmt_ref(ref) + " does not resolve");
    // Reserve the id first so recursive references find it.
    int32_t id = b_->AddNode(Node{});
    refs_.emplace(std::string(ref), id);
    YZ_ASSIGN_OR_RETURN(int32_t body, Compile(*target));
    b_->node(id) = b_->node(body);
    return id;
  }
  static std::string fmt_ref(std::string_view ref) { return "$ref '" + std::string(ref) + "'"; }

  Result<int64_t> NonNegativeInt(const bj::value& v, std::string_view keyword) {
    if (v.is_int64() && v.as_int64() >= 0) return v.as_int64();
    if (v.is_uint64()) return static_cast<int64_t>(std::min<uint64_t>(v.as_uint64(), 1ULL << 40));
    if (v.is_double() && v.as_double() >= 0 && v.as_double() == static_cast<int64_t>(v.as_double()))
      return static_cast<int64_t>(v.as_double());
    return SchemaError("'" + std::string(keyword) + "' must be a non-negative integer");
  }

  Result<int32_t> Literals(const bj::array& values) {
    Node n;
    n.kind = NodeKind::kLiterals;
    for (const bj::value& v : values) n.literals.push_back(bj::serialize(v));
    if (n.literals.empty()) return SchemaError("'enum' must not be empty");
    std::sort(n.literals.begin(), n.literals.end());
    n.literals.erase(std::unique(n.literals.begin(), n.literals.end()), n.literals.end());
    return b_->AddNode(std::move(n));
  }

  Result<int32_t> TypedNode(std::string_view type, const bj::object& s) {
    Node n;
    if (type == "null") return LiteralNode({"null"});
    if (type == "boolean") return LiteralNode({"false", "true"});
    if (type == "string") {
      n.kind = NodeKind::kString;
      if (const bj::value* v = s.if_contains("minLength")) {
        YZ_ASSIGN_OR_RETURN(n.min_length, NonNegativeInt(*v, "minLength"));
      }
      if (const bj::value* v = s.if_contains("maxLength")) {
        YZ_ASSIGN_OR_RETURN(n.max_length, NonNegativeInt(*v, "maxLength"));
        if (n.max_length < n.min_length) return SchemaError("maxLength is below minLength");
      }
      return b_->AddNode(std::move(n));
    }
    if (type == "number" || type == "integer") {
      n.kind = type == "number" ? NodeKind::kNumber : NodeKind::kInteger;
      static constexpr std::pair<const char*, int> kBounds[] = {
          {"minimum", 0}, {"maximum", 1}, {"exclusiveMinimum", 2}, {"exclusiveMaximum", 3}};
      for (auto [key, which] : kBounds) {
        const bj::value* v = s.if_contains(key);
        if (v == nullptr) continue;
        if (type == "number")
          return SchemaError("keyword '" + std::string(key) + "' is supported for integers only");
        double d = 0;
        if (v->is_int64())
          d = static_cast<double>(v->as_int64());
        else if (v->is_uint64())
          d = static_cast<double>(v->as_uint64());
        else if (v->is_double())
          d = v->as_double();
        else
          return SchemaError("'" + std::string(key) + "' must be a number");
        if (d > 9e14) d = 9e14;
        if (d < -9e14) d = -9e14;
        if (which == 0 || which == 2) {
          int64_t lo = static_cast<int64_t>(std::ceil(d));
          if (which == 2 && static_cast<double>(lo) == d) ++lo;
          if (!n.has_minimum || lo > n.minimum) n.minimum = lo;
          n.has_minimum = true;
        } else {
          int64_t hi = static_cast<int64_t>(std::floor(d));
          if (which == 3 && static_cast<double>(hi) == d) --hi;
          if (!n.has_maximum || hi < n.maximum) n.maximum = hi;
          n.has_maximum = true;
        }
      }
      if (n.has_minimum && n.has_maximum && n.minimum > n.maximum)
        return SchemaError("the integer range is empty");
      return b_->AddNode(std::move(n));
    }
    if (type == "array") {
      n.kind = NodeKind::kArray;
      if (const bj::value* v = s.if_contains("prefixItems")) {
        if (!v->is_array()) return SchemaError("'prefixItems' must be an array");
        for (const bj::value& item : v->as_array()) {
          YZ_ASSIGN_OR_RETURN(int32_t id, Compile(item));
          n.prefix_items.push_back(id);
        }
      }
      const bj::value* items = s.if_contains("items");
      if (items == nullptr || (items->is_bool() && items->as_bool())) {
        n.items = b_->AnyValue();
      } else if (items->is_bool()) {
        n.items = -1;
        n.max_items = static_cast<int64_t>(n.prefix_items.size());
      } else {
        YZ_ASSIGN_OR_RETURN(n.items, Compile(*items));
      }
      if (const bj::value* v = s.if_contains("minItems")) {
        YZ_ASSIGN_OR_RETURN(n.min_items, NonNegativeInt(*v, "minItems"));
      }
      if (const bj::value* v = s.if_contains("maxItems")) {
        YZ_ASSIGN_OR_RETURN(int64_t max_items, NonNegativeInt(*v, "maxItems"));
        if (n.max_items < 0 || max_items < n.max_items) n.max_items = max_items;
      }
      if (n.max_items >= 0 && n.max_items < n.min_items)
        return SchemaError("maxItems is below minItems (or items: false leaves too few)");
      return b_->AddNode(std::move(n));
    }
    if (type == "object") {
      n.kind = NodeKind::kObject;
      const bj::value* props = s.if_contains("properties");
      const bj::value* additional = s.if_contains("additionalProperties");
      std::vector<std::string> required;
      if (const bj::value* r = s.if_contains("required")) {
        if (!r->is_array()) return SchemaError("'required' must be an array");
        for (const bj::value& name : r->as_array()) {
          if (!name.is_string()) return SchemaError("'required' must list strings");
          required.emplace_back(name.as_string());
        }
      }
      if (props == nullptr ||
          (props->is_object() && props->as_object().empty() && required.empty())) {
        n.free_keys = true;
        if (additional == nullptr || (additional->is_bool() && additional->as_bool())) {
          n.additional = b_->AnyValue();
        } else if (additional->is_bool()) {
          n.additional = -1;
        } else {
          YZ_ASSIGN_OR_RETURN(n.additional, Compile(*additional));
        }
        if (!required.empty()) {
          // Required keys without schemas: typed object with any values.
          n.free_keys = false;
          for (const std::string& name : required)
            n.properties.push_back({QuoteJson(name), b_->AnyValue(), true});
        }
        return b_->AddNode(std::move(n));
      }
      if (!props->is_object()) return SchemaError("'properties' must be an object");
      if (additional != nullptr && !additional->is_bool()) {
        YZ_ASSIGN_OR_RETURN(int32_t unused, Compile(*additional));  // validate it
        (void)unused;
      }
      std::set<std::string> req(required.begin(), required.end());
      for (const auto& [key, value] : props->as_object()) {
        YZ_ASSIGN_OR_RETURN(int32_t id, Compile(value));
        bool is_required = req.erase(std::string(key)) > 0;
        n.properties.push_back({QuoteJson(key), id, is_required});
      }
      for (const std::string& name : required) {
        if (req.count(name) == 0) continue;
        req.erase(name);
        n.properties.push_back({QuoteJson(name), b_->AnyValue(), true});
      }
      if (n.properties.size() > 64) return SchemaError("more than 64 properties in one object");
      return b_->AddNode(std::move(n));
    }
    return SchemaError("unknown type '" + std::string(type) + "'");
  }

  int32_t LiteralNode(std::vector<std::string> literals) {
    Node n;
    n.kind = NodeKind::kLiterals;
    n.literals = std::move(literals);
    std::sort(n.literals.begin(), n.literals.end());
    return b_->AddNode(std::move(n));
  }

  // Merges branches into one union node dispatched on the first byte.
  Result<int32_t> Union(std::vector<int32_t> branches) {
    // Flatten nested unions, merge literal sets, drop integer beside number.
    std::vector<int32_t> flat;
    std::vector<std::string> literals;
    bool has_number = false;
    for (size_t i = 0; i < branches.size(); ++i) {
      const Node& n = b_->node(branches[i]);
      if (n.kind == NodeKind::kUnion) {
        for (int32_t br : n.branches) branches.push_back(br);
        continue;
      }
      if (n.kind == NodeKind::kLiterals) {
        literals.insert(literals.end(), n.literals.begin(), n.literals.end());
        continue;
      }
      if (n.kind == NodeKind::kNumber) has_number = true;
      flat.push_back(branches[i]);
    }
    if (has_number) {
      std::erase_if(flat, [&](int32_t id) { return b_->node(id).kind == NodeKind::kInteger; });
    }
    bool free_string = false;
    for (int32_t id : flat) {
      const Node& n = b_->node(id);
      if (n.kind == NodeKind::kString && n.min_length == 0 && n.max_length < 0) free_string = true;
    }
    if (free_string) {  // an unconstrained string accepts every string literal
      std::erase_if(literals, [](const std::string& s) { return s.starts_with('"'); });
    }
    if (has_number) {  // so does a number every number literal (we generate a subset)
      std::erase_if(literals, [](const std::string& s) {
        return s[0] == '-' || (s[0] >= '0' && s[0] <= '9');
      });
    }
    if (!literals.empty()) {
      std::sort(literals.begin(), literals.end());
      literals.erase(std::unique(literals.begin(), literals.end()), literals.end());
      flat.push_back(LiteralNode(std::move(literals)));
    }
    if (flat.size() == 1) return flat[0];
    Node u;
    u.kind = NodeKind::kUnion;
    u.dispatch.fill(-1);
    for (int32_t id : flat) {
      const Node& n = b_->node(id);
      std::string firsts;
      switch (n.kind) {
        case NodeKind::kObject:
          firsts = "{";
          break;
        case NodeKind::kArray:
          firsts = "[";
          break;
        case NodeKind::kString:
          firsts = "\"";
          break;
        case NodeKind::kNumber:
        case NodeKind::kInteger:
          firsts = "-0123456789";
          break;
        case NodeKind::kLiterals:
          for (const std::string& lit : n.literals) firsts.push_back(lit[0]);
          break;
        case NodeKind::kUnion:
          break;
      }
      for (char c : firsts) {
        int32_t& slot = u.dispatch[static_cast<uint8_t>(c)];
        if (slot >= 0 && slot != id) {
          return SchemaError("anyOf/oneOf/type branches that start with the same character ('" +
                             std::string(1, c) + "') are not supported");
        }
        slot = id;
      }
      u.branches.push_back(id);
    }
    return b_->AddNode(std::move(u));
  }

  Result<int32_t> CompileInner(const bj::value& schema) {
    if (schema.is_bool()) {
      if (schema.as_bool()) return b_->AnyValue();
      return SchemaError("the schema 'false' accepts nothing");
    }
    if (!schema.is_object()) return SchemaError("a schema must be an object or a boolean");
    const bj::object& s = schema.as_object();
    static const std::set<std::string_view> kIgnored = {
        "title",     "description", "default",     "examples",   "$schema",
        "$id",       "$comment",    "format",      "deprecated", "readOnly",
        "writeOnly", "$defs",       "definitions", "strict",     "name"};
    static const std::set<std::string_view> kHandled = {"type",
                                                        "properties",
                                                        "required",
                                                        "additionalProperties",
                                                        "items",
                                                        "prefixItems",
                                                        "minItems",
                                                        "maxItems",
                                                        "minLength",
                                                        "maxLength",
                                                        "enum",
                                                        "const",
                                                        "anyOf",
                                                        "oneOf",
                                                        "allOf",
                                                        "$ref",
                                                        "minimum",
                                                        "maximum",
                                                        "exclusiveMinimum",
                                                        "exclusiveMaximum",
                                                        "nullable"};
    for (const auto& [key, value] : s) {
      if (kIgnored.count(key) == 0 && kHandled.count(key) == 0)
        return SchemaError("JSON Schema keyword '" + std::string(key) + "' is not supported");
    }
    bool nullable = false;
    if (const bj::value* v = s.if_contains("nullable")) nullable = v->is_bool() && v->as_bool();
    Result<int32_t> result = CompileCore(s);
    if (!result || !nullable) return result;
    return Union({*result, LiteralNode({"null"})});
  }

  Result<int32_t> CompileCore(const bj::object& s) {
    if (const bj::value* ref = s.if_contains("$ref")) {
      if (!ref->is_string()) return SchemaError("'$ref' must be a string");
      return CompileRef(ref->as_string());
    }
    if (const bj::value* v = s.if_contains("const")) {
      bj::array one;
      one.push_back(*v);
      return Literals(one);
    }
    if (const bj::value* v = s.if_contains("enum")) {
      if (!v->is_array()) return SchemaError("'enum' must be an array");
      return Literals(v->as_array());
    }
    for (const char* key : {"anyOf", "oneOf", "allOf"}) {
      const bj::value* v = s.if_contains(key);
      if (v == nullptr) continue;
      if (!v->is_array() || v->as_array().empty())
        return SchemaError("'" + std::string(key) + "' must be a non-empty array");
      if (std::string_view(key) == "allOf" && v->as_array().size() != 1)
        return SchemaError("keyword 'allOf' is supported with one schema only");
      std::vector<int32_t> branches;
      for (const bj::value& br : v->as_array()) {
        YZ_ASSIGN_OR_RETURN(int32_t id, Compile(br));
        branches.push_back(id);
      }
      return Union(std::move(branches));
    }
    const bj::value* type = s.if_contains("type");
    if (type == nullptr) {
      // Infer from the keywords present; otherwise anything.
      if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties"))
        return TypedNode("object", s);
      if (s.contains("items") || s.contains("prefixItems")) return TypedNode("array", s);
      if (s.contains("minLength") || s.contains("maxLength")) return TypedNode("string", s);
      return b_->AnyValue();
    }
    if (type->is_string()) return TypedNode(type->as_string(), s);
    if (!type->is_array() || type->as_array().empty())
      return SchemaError("'type' must be a string or a non-empty array");
    std::vector<int32_t> branches;
    for (const bj::value& t : type->as_array()) {
      if (!t.is_string()) return SchemaError("'type' must list strings");
      YZ_ASSIGN_OR_RETURN(int32_t id, TypedNode(t.as_string(), s));
      branches.push_back(id);
    }
    return Union(std::move(branches));
  }

  GrammarBuilder* b_;
  const bj::value* root_;
  std::map<std::string, int32_t> refs_;
  int depth_ = 0;
};

}  // namespace

std::string QuoteJson(std::string_view s) { return bj::serialize(bj::string(s)); }

GrammarBuilder::GrammarBuilder() {
  // any value = union(any object, any array, string, number, true/false/null)
  Node object;
  object.kind = NodeKind::kObject;
  object.free_keys = true;
  any_object_ = AddNode(object);
  Node array;
  array.kind = NodeKind::kArray;
  int32_t any_array = AddNode(array);
  Node str;
  str.kind = NodeKind::kString;
  int32_t any_string = AddNode(str);
  Node num;
  num.kind = NodeKind::kNumber;
  int32_t any_number = AddNode(num);
  Node lits;
  lits.kind = NodeKind::kLiterals;
  lits.literals = {"false", "null", "true"};
  int32_t any_literal = AddNode(lits);
  Node u;
  u.kind = NodeKind::kUnion;
  u.dispatch.fill(-1);
  u.dispatch['{'] = any_object_;
  u.dispatch['['] = any_array;
  u.dispatch['"'] = any_string;
  for (char c : std::string_view("-0123456789")) u.dispatch[static_cast<uint8_t>(c)] = any_number;
  u.dispatch['f'] = u.dispatch['n'] = u.dispatch['t'] = any_literal;
  u.branches = {any_object_, any_array, any_string, any_number, any_literal};
  any_value_ = AddNode(u);
  node(any_object_).additional = any_value_;
  node(any_array).items = any_value_;
}

int32_t GrammarBuilder::AddNode(Node n) {
  grammar_.nodes.push_back(std::move(n));
  return static_cast<int32_t>(grammar_.nodes.size() - 1);
}

int32_t GrammarBuilder::AddStringLiterals(const std::vector<std::string>& values, bool raw) {
  Node n;
  n.kind = NodeKind::kLiterals;
  for (const std::string& v : values) n.literals.push_back(raw ? v : QuoteJson(v));
  std::sort(n.literals.begin(), n.literals.end());
  n.literals.erase(std::unique(n.literals.begin(), n.literals.end()), n.literals.end());
  return AddNode(std::move(n));
}

Result<int32_t> GrammarBuilder::AddSchema(std::string_view schema_json) {
  boost::system::error_code ec;
  bj::value root = bj::parse(schema_json, ec);
  if (ec) return SchemaError("the schema is not valid JSON: " + ec.message());
  SchemaCompiler compiler(this, &root);
  return compiler.Compile(root);
}

int64_t JointMin(const Node& literals, const std::vector<int32_t>& branches,
                 const std::vector<Node>& nodes) {
  int64_t best = kInfiniteBytes;
  for (size_t i = 0; i < literals.literals.size() && i < branches.size(); ++i) {
    best = std::min(best, static_cast<int64_t>(literals.literals[i].size()) +
                              nodes[static_cast<size_t>(branches[i])].min_bytes);
  }
  return std::min(best, kInfiniteBytes);
}

int64_t SeqItemMinBytes(const Grammar& g, size_t i, int32_t selected) {
  const SeqItem& item = g.sequence[i];
  if (item.node < 0) return item.token_id >= 0 ? 1 : static_cast<int64_t>(item.text.size());
  if (!item.discriminated.empty()) {
    if (selected < 0) return 0;  // costed with the literal that selects it
    return g.nodes[static_cast<size_t>(item.discriminated[static_cast<size_t>(selected)])]
        .min_bytes;
  }
  const Node& n = g.nodes[static_cast<size_t>(item.node)];
  if (n.kind == NodeKind::kLiterals) {
    for (size_t j = i + 1; j < g.sequence.size(); ++j) {
      if (!g.sequence[j].discriminated.empty())
        return JointMin(n, g.sequence[j].discriminated, g.nodes);
    }
  }
  return n.min_bytes;
}

Result<Grammar> GrammarBuilder::Finalize() {
  std::vector<Node>& nodes = grammar_.nodes;
  auto at = [&](int32_t id) {
    return id < 0 ? kInfiniteBytes : nodes[static_cast<size_t>(id)].min_bytes;
  };
  // Bellman-Ford style relaxation: min_bytes only decreases; recursion through $ref converges.
  for (bool changed = true; changed;) {
    changed = false;
    for (Node& n : nodes) {
      int64_t v = kInfiniteBytes;
      switch (n.kind) {
        case NodeKind::kObject: {
          if (n.free_keys) {
            v = 2;
            break;
          }
          v = 1;  // '{' ... '}' minus one comma
          int64_t n_required = 0;
          for (size_t i = 0; i < n.properties.size(); ++i) {
            const Property& p = n.properties[i];
            if (!p.required) continue;
            int64_t value = at(p.node);
            if (!n.discriminated.empty() && i <= 1) {
              // The name literal and the arguments it selects are costed together.
              value =
                  i == 1 ? 0 : JointMin(nodes[static_cast<size_t>(p.node)], n.discriminated, nodes);
            }
            v += static_cast<int64_t>(p.key.size()) + 1 + value + 1;
            ++n_required;
          }
          if (n_required == 0) v = 2;
          break;
        }
        case NodeKind::kArray: {
          v = 2;
          for (int64_t k = 0; k < n.min_items; ++k) {
            int32_t item = k < static_cast<int64_t>(n.prefix_items.size())
                               ? n.prefix_items[static_cast<size_t>(k)]
                               : n.items;
            v += at(item) + (k > 0 ? 1 : 0);
            if (v >= kInfiniteBytes) break;
          }
          break;
        }
        case NodeKind::kString:
          v = 2 + n.min_length;
          break;
        case NodeKind::kNumber:
          v = 1;
          break;
        case NodeKind::kInteger:
          v = ShortestIntegerBytes(n.has_minimum, n.minimum, n.has_maximum, n.maximum);
          break;
        case NodeKind::kLiterals:
          for (const std::string& lit : n.literals)
            v = std::min(v, static_cast<int64_t>(lit.size()));
          break;
        case NodeKind::kUnion:
          for (int32_t br : n.branches) v = std::min(v, at(br));
          break;
      }
      v = std::min(v, kInfiniteBytes);
      if (v < n.min_bytes) {
        n.min_bytes = v;
        changed = true;
      }
    }
  }
  grammar_.seq_suffix_bytes.assign(grammar_.sequence.size() + 1, 0);
  for (size_t i = grammar_.sequence.size(); i-- > 0;) {
    int64_t cost = SeqItemMinBytes(grammar_, i, -1);
    if (cost >= kInfiniteBytes)
      return SchemaError("the schema has no finite instance (required recursion)");
    grammar_.seq_suffix_bytes[i] = grammar_.seq_suffix_bytes[i + 1] + cost;
  }
  return std::move(grammar_);
}

}  // namespace yunzhi::engine::json_grammar
