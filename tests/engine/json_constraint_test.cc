#include "yunzhi/engine/json_constraint.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "yunzhi/engine/template_value.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {

// Shared with tool_calls_test.cc.
namespace json_test {

// 256 single bytes (id = byte), multi-byte pieces typical of real vocabularies, and added tokens:
// <|end|> (control, EOS), <tool_call> / </tool_call> (user-defined), [TOOL_CALLS] / [ARGS]
// (control).
const Tokenizer& SmallTokenizer() {
  static const Tokenizer tok = [] {
    Vocab vocab;
    vocab.model = TokenizerModel::kByteLevelBpe;
    vocab.pre = "gpt-2";
    for (int b = 0; b < 256; ++b) vocab.tokens.push_back({std::string(1, static_cast<char>(b))});
    for (const char* t : {"{\"",
                          "\":",
                          "\": ",
                          "\", \"",
                          "\",",
                          "\"}",
                          "\"]",
                          "},",
                          "}}",
                          "]}",
                          "[{",
                          "true",
                          "false",
                          "null",
                          "12",
                          "00",
                          "-1",
                          ".5",
                          "e+",
                          "E-",
                          "\\u",
                          "\\n",
                          "\\\"",
                          "\\ud83d",
                          "\\u00e9",
                          "abc",
                          "abc\"",
                          " \"",
                          "  ",
                          "\n ",
                          "name",
                          "arguments",
                          "parameters",
                          "\xC3\xA9",
                          "\xE4\xB8\xAD",
                          "\xE4\xB8",
                          "\xAD\xE6\x96\x87",
                          "\xF0\x9F",
                          "\x98\x80",
                          "\xF0\x9F\x98\x80",
                          "\xED\xA0\x80",
                          "\xE0\x80",
                          "hello world",
                          "\"name\"",
                          "get_weather",
                          "city",
                          "\xC0\xAF",
                          "a\tb",
                          "\x01"}) {
      vocab.tokens.push_back({t});
    }
    vocab.tokens.push_back({"<|end|>", 0, TokenType::kControl});
    vocab.eos_id = static_cast<int32_t>(vocab.tokens.size() - 1);
    vocab.tokens.push_back({"<tool_call>", 0, TokenType::kUserDefined});
    vocab.tokens.push_back({"</tool_call>", 0, TokenType::kUserDefined});
    vocab.tokens.push_back({"[TOOL_CALLS]", 0, TokenType::kControl});
    vocab.tokens.push_back({"[ARGS]", 0, TokenType::kControl});
    vocab.tokens.push_back({"<|pad|>", 0, TokenType::kControl});
    auto tok = Tokenizer::Create(std::move(vocab));
    EXPECT_TRUE(tok.has_value()) << tok.error().ToString();
    return *std::move(tok);
  }();
  return tok;
}

int32_t EndId() { return SmallTokenizer().vocab().eos_id; }

std::vector<int32_t> AllowedTokens(TokenConstraint& c, int32_t n_vocab) {
  TokenBitmask mask(n_vocab);
  Status st = c.FillAllowed(mask);
  EXPECT_TRUE(st.has_value()) << st.error().ToString();
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < n_vocab; ++i)
    if (mask.IsAllowed(i)) ids.push_back(i);
  return ids;
}

// Random walk: each step a uniformly random allowed token; stops at the end token or when the
// budget is used up. Returns the tokens (end token excluded).
std::vector<int32_t> RandomWalk(JsonConstraint& c, const Tokenizer& tok, uint64_t seed,
                                int64_t budget, int32_t end_id, bool* ended) {
  std::mt19937_64 rng(seed);
  c.SetRemainingTokens(budget);
  std::vector<int32_t> out;
  *ended = false;
  for (int64_t step = 0; step < budget; ++step) {
    std::vector<int32_t> allowed = AllowedTokens(c, tok.n_vocab());
    if (allowed.empty()) {
      ADD_FAILURE() << "no token allowed after '" << tok.Decode(out) << "'";
      return out;
    }
    int32_t t = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
    Status st = c.Accept(t);
    EXPECT_TRUE(st.has_value()) << st.error().ToString();
    if (t == end_id) {
      *ended = true;
      return out;
    }
    out.push_back(t);
  }
  return out;
}

size_t CodePoints(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

// A small JSON Schema validator for the subset (independent of the constraint's compiler).
bool Validates(const TemplateValue& v, const TemplateValue& schema, const TemplateValue& root,
               std::string* why) {
  auto fail = [&](const std::string& m) {
    *why = m + " at " + v.ToJson();
    return false;
  };
  if (schema.is_bool()) return schema.as_bool() || fail("false schema");
  if (!schema.is_object()) return fail("bad schema");
  if (const TemplateValue* ref = schema.Find("$ref")) {
    std::string r = ref->as_string();
    if (r == "#") return Validates(v, root, root, why);
    std::string section = r.rfind("#/$defs/", 0) == 0 ? "$defs" : "definitions";
    std::string name = r.substr(r.find('/', 2) + 1);
    return Validates(v, *root.Find(section)->Find(name), root, why);
  }
  if (const TemplateValue* e = schema.Find("enum")) {
    for (const TemplateValue& x : e->as_array())
      if (x == v) return true;
    return fail("not in enum");
  }
  if (const TemplateValue* e = schema.Find("const")) return *e == v || fail("not const");
  for (const char* key : {"anyOf", "oneOf"}) {
    if (const TemplateValue* br = schema.Find(key)) {
      int n_ok = 0;
      for (const TemplateValue& s : br->as_array()) {
        std::string w;
        n_ok += Validates(v, s, root, &w) ? 1 : 0;
      }
      if (n_ok == 0) return fail(std::string("no ") + key + " branch");
      if (std::string(key) == "oneOf" && n_ok != 1) return fail("several oneOf branches");
      return true;
    }
  }
  if (const TemplateValue* t = schema.Find("type")) {
    std::vector<std::string> types;
    if (t->is_string())
      types.push_back(t->as_string());
    else
      for (const TemplateValue& x : t->as_array()) types.push_back(x.as_string());
    bool ok = false;
    for (const std::string& ty : types) {
      ok |= (ty == "object" && v.is_object()) || (ty == "array" && v.is_array()) ||
            (ty == "string" && v.is_string()) || (ty == "integer" && v.is_int()) ||
            (ty == "number" && (v.is_int() || v.is_float())) || (ty == "boolean" && v.is_bool()) ||
            (ty == "null" && v.is_null());
    }
    if (!ok) return fail("wrong type");
  }
  if (v.is_object()) {
    const TemplateValue* props = schema.Find("properties");
    if (const TemplateValue* req = schema.Find("required"))
      for (const TemplateValue& r : req->as_array())
        if (v.Find(r.as_string()) == nullptr) return fail("missing " + r.as_string());
    const TemplateValue* add = schema.Find("additionalProperties");
    for (const auto& [k, x] : v.as_object()) {
      const TemplateValue* ps = props != nullptr ? props->Find(k) : nullptr;
      if (ps != nullptr) {
        if (!Validates(x, *ps, root, why)) return false;
      } else if (add != nullptr) {
        if (!Validates(x, *add, root, why)) return false;
      }
    }
  }
  if (v.is_array()) {
    const auto& a = v.as_array();
    if (const TemplateValue* m = schema.Find("minItems"))
      if (static_cast<int64_t>(a.size()) < m->as_int()) return fail("too few items");
    if (const TemplateValue* m = schema.Find("maxItems"))
      if (static_cast<int64_t>(a.size()) > m->as_int()) return fail("too many items");
    const TemplateValue* prefix = schema.Find("prefixItems");
    const TemplateValue* items = schema.Find("items");
    for (size_t i = 0; i < a.size(); ++i) {
      if (prefix != nullptr && i < prefix->as_array().size()) {
        if (!Validates(a[i], prefix->as_array()[i], root, why)) return false;
      } else if (items != nullptr) {
        if (!Validates(a[i], *items, root, why)) return false;
      }
    }
  }
  if (v.is_string()) {
    size_t n = CodePoints(v.as_string());
    if (const TemplateValue* m = schema.Find("minLength"))
      if (static_cast<int64_t>(n) < m->as_int()) return fail("too short");
    if (const TemplateValue* m = schema.Find("maxLength"))
      if (static_cast<int64_t>(n) > m->as_int()) return fail("too long");
  }
  if (v.is_int()) {
    if (const TemplateValue* m = schema.Find("minimum"))
      if (v.as_int() < m->as_int()) return fail("below minimum");
    if (const TemplateValue* m = schema.Find("maximum"))
      if (v.as_int() > m->as_int()) return fail("above maximum");
  }
  return true;
}

}  // namespace json_test

namespace {

using json_test::AllowedTokens;
using json_test::EndId;
using json_test::RandomWalk;
using json_test::SmallTokenizer;
using json_test::Validates;

std::unique_ptr<JsonConstraint> Make(const Tokenizer& tok, std::optional<std::string> schema,
                                     int32_t ws = 1) {
  JsonConstraintOptions o;
  o.schema = std::move(schema);
  o.max_whitespace_bytes = ws;
  auto c = MakeJsonConstraint(tok, o);
  EXPECT_TRUE(c.has_value()) << c.error().ToString();
  return c ? std::move(*c) : nullptr;
}

const std::vector<std::string>& Schemas() {
  static const std::vector<std::string> schemas = {
      R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},
          "required":["name","age"],"additionalProperties":false})",
      R"({"type":"object","properties":{"a":{"type":"string","minLength":2,"maxLength":4},
          "b":{"type":["string","null"]},"c":{"type":"boolean"},"d":{"type":"number"}},
          "required":["a","d"]})",
      R"({"type":"object","properties":{"tags":{"type":"array","items":{"type":"string"},
          "minItems":1,"maxItems":3},"mode":{"enum":["fast","slow",1,null]},
          "n":{"type":"integer","minimum":-5,"maximum":120}},"required":["tags","mode","n"]})",
      R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
          "kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},
          "required":["v"]}},"$ref":"#/$defs/node"})",
      R"({"type":"object","properties":{"x":{"anyOf":[{"type":"string"},{"type":"integer"},
          {"type":"object","properties":{"k":{"const":"v"}},"required":["k"]}]},
          "p":{"type":"array","prefixItems":[{"type":"boolean"},{"type":"null"}],"items":false}},
          "required":["x","p"]})",
      R"({"type":"object","additionalProperties":{"type":"integer"}})",
      R"({"type":"array","items":{"type":"number"},"minItems":2})",
      R"({"type":"string","maxLength":3})",
      R"({"type":"array","prefixItems":[{"type":"integer","minimum":100,"maximum":120},
          {"type":"integer","minimum":-120,"maximum":-100},{"type":"string","minLength":3}],
          "items":false,"minItems":3})",
  };
  return schemas;
}

TEST(JsonConstraint, MaskEqualsBruteForceTokenByToken) {
  const Tokenizer& tok = SmallTokenizer();
  std::vector<std::optional<std::string>> schemas = {std::nullopt};
  for (const auto& s : Schemas()) schemas.push_back(s);
  for (size_t si = 0; si < schemas.size(); ++si) {
    for (uint64_t seed = 0; seed < 4; ++seed) {
      auto c = Make(tok, schemas[si]);
      std::mt19937_64 rng(seed * 31 + si);
      std::vector<int32_t> history;
      for (int step = 0; step < 40; ++step) {
        std::vector<int32_t> allowed = AllowedTokens(*c, tok.n_vocab());
        // Brute force: replay the history into a fresh constraint, then try each token.
        for (int32_t t = 0; t < tok.n_vocab(); ++t) {
          auto fresh = Make(tok, schemas[si]);
          for (int32_t h : history) ASSERT_TRUE(fresh->Accept(h).has_value());
          bool accepted = fresh->Accept(t).has_value();
          bool in_mask = std::binary_search(allowed.begin(), allowed.end(), t);
          ASSERT_EQ(in_mask, accepted) << "schema " << si << " after '" << tok.Decode(history)
                                       << "' token " << t << " '" << tok.TokenToPiece(t) << "'";
        }
        if (allowed.empty()) break;
        int32_t t = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
        if (t == EndId()) break;
        ASSERT_TRUE(c->Accept(t).has_value());
        history.push_back(t);
      }
    }
  }
}

TEST(JsonConstraint, BudgetMaskEqualsBruteForce) {
  const Tokenizer& tok = SmallTokenizer();
  for (size_t si = 0; si < Schemas().size(); ++si) {
    for (uint64_t seed = 0; seed < 3; ++seed) {
      auto c = Make(tok, Schemas()[si]);
      int64_t budget = c->MinCompletionBytes() + 6;
      c->SetRemainingTokens(budget);
      std::mt19937_64 rng(seed + 100 * si);
      std::vector<int32_t> history;
      for (int64_t step = 0; step < budget; ++step) {
        std::vector<int32_t> allowed = AllowedTokens(*c, tok.n_vocab());
        int64_t limit = std::max(budget - step - 1, c->MinCompletionBytes() - 1);
        for (int32_t t = 0; t < tok.n_vocab(); ++t) {
          auto fresh = Make(tok, Schemas()[si]);
          for (int32_t h : history) ASSERT_TRUE(fresh->Accept(h).has_value());
          bool was_complete = fresh->IsComplete();
          bool ok = fresh->Accept(t).has_value() &&
                    ((t == EndId() && was_complete) || fresh->MinCompletionBytes() <= limit);
          bool in_mask = std::binary_search(allowed.begin(), allowed.end(), t);
          ASSERT_EQ(in_mask, ok) << "schema " << si << " after '" << tok.Decode(history)
                                 << "' token '" << tok.TokenToPiece(t) << "'";
        }
        int32_t t = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
        if (t == EndId()) break;
        ASSERT_TRUE(c->Accept(t).has_value());
        history.push_back(t);
      }
    }
  }
}

TEST(JsonConstraint, RandomWalksWithBudgetAlwaysParseAndValidate) {
  const Tokenizer& tok = SmallTokenizer();
  std::vector<std::optional<std::string>> schemas = {std::nullopt};
  for (const auto& s : Schemas()) schemas.push_back(s);
  for (size_t si = 0; si < schemas.size(); ++si) {
    TemplateValue schema = TemplateValue::ParseJson(schemas[si].value_or("true")).value();
    for (uint64_t seed = 0; seed < 60; ++seed) {
      auto c = Make(tok, schemas[si], static_cast<int32_t>(seed % 3));
      // From exactly the shortest instance up to generous budgets.
      int64_t budget = c->MinCompletionBytes() + static_cast<int64_t>(seed % 7) * 12;
      bool ended = false;
      std::vector<int32_t> ids = RandomWalk(*c, tok, seed, budget, EndId(), &ended);
      std::string text = tok.Decode(ids);
      if (seed == 6) std::printf("schema %zu: %s\n", si, text.c_str());
      ASSERT_TRUE(c->IsComplete()) << "schema " << si << " budget " << budget << ": " << text;
      auto parsed = TemplateValue::ParseJson(text);
      ASSERT_TRUE(parsed.has_value()) << "schema " << si << ": " << text;
      if (!schemas[si]) {
        EXPECT_TRUE(parsed->is_object()) << text;
      }
      std::string why;
      EXPECT_TRUE(Validates(*parsed, schema, schema, &why))
          << "schema " << si << ": " << text << ": " << why;
    }
  }
}

TEST(JsonConstraint, EndTokenOnlyOnceCompleteAndThenOnlyEnd) {
  const Tokenizer& tok = SmallTokenizer();
  auto c =
      Make(tok, R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]})", 0);
  for (int32_t t : tok.Encode("{\"a\":12")) {
    EXPECT_FALSE(c->IsComplete());
    ASSERT_TRUE(c->Accept(t).has_value());
  }
  std::vector<int32_t> allowed = AllowedTokens(*c, tok.n_vocab());
  EXPECT_FALSE(std::binary_search(allowed.begin(), allowed.end(), EndId()));
  EXPECT_TRUE(std::binary_search(allowed.begin(), allowed.end(), int32_t{'3'}));
  ASSERT_TRUE(c->Accept('}').has_value());
  EXPECT_TRUE(c->IsComplete());
  EXPECT_EQ(AllowedTokens(*c, tok.n_vocab()), std::vector<int32_t>{EndId()});
}

TEST(JsonConstraint, SpecialTokensNeverInsideJson) {
  const Tokenizer& tok = SmallTokenizer();
  auto c = Make(tok, std::nullopt);
  for (int32_t t : tok.Encode("{\"k\":\"")) ASSERT_TRUE(c->Accept(t).has_value());
  std::vector<int32_t> allowed = AllowedTokens(*c, tok.n_vocab());
  for (int32_t t : allowed) EXPECT_FALSE(tok.GetType(t) != TokenType::kNormal) << t;
  EXPECT_FALSE(c->Accept(*tok.FindAddedToken("<tool_call>")).has_value());
}

TEST(JsonConstraint, Utf8SplitAcrossTokensEscapesAndControlBytes) {
  const Tokenizer& tok = SmallTokenizer();
  auto accepts = [&](const std::string& text) {
    auto c = Make(tok, R"({"type":"string"})");
    for (char ch : text) {
      if (!c->Accept(static_cast<uint8_t>(ch)).has_value()) return false;
    }
    return c->IsComplete();
  };
  EXPECT_TRUE(accepts("\"\xE4\xB8\xAD\xE6\x96\x87\""));  // 中文
  EXPECT_TRUE(accepts("\"\xF0\x9F\x98\x80\""));          // emoji
  EXPECT_TRUE(accepts("\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\""));
  EXPECT_FALSE(accepts("\"\xE4\xB8\""));      // incomplete character
  EXPECT_FALSE(accepts("\"\xC0\xAF\""));      // overlong
  EXPECT_FALSE(accepts("\"\xED\xA0\x80\""));  // UTF-8 surrogate
  EXPECT_FALSE(accepts("\"\\ud83d\""));       // escaped surrogate
  EXPECT_FALSE(accepts("\"a\tb\""));          // raw control byte
  EXPECT_FALSE(accepts("\"\\x\""));
  // A token that ends inside a character, then one that completes it.
  auto c = Make(tok, R"({"type":"string"})");
  ASSERT_TRUE(c->Accept('"').has_value());
  const Vocab& v = tok.vocab();
  auto id_of = [&](const std::string& text) {
    for (size_t i = 0; i < v.tokens.size(); ++i)
      if (v.tokens[i].text == text) return static_cast<int32_t>(i);
    return int32_t{-1};
  };
  ASSERT_TRUE(c->Accept(id_of("\xE4\xB8")).has_value());
  std::vector<int32_t> allowed = AllowedTokens(*c, tok.n_vocab());
  EXPECT_TRUE(std::binary_search(allowed.begin(), allowed.end(), id_of("\xAD\xE6\x96\x87")));
  EXPECT_FALSE(std::binary_search(allowed.begin(), allowed.end(), int32_t{'"'}));
  EXPECT_FALSE(std::binary_search(allowed.begin(), allowed.end(), int32_t{'a'}));
  ASSERT_TRUE(c->Accept(id_of("\xAD\xE6\x96\x87")).has_value());
  ASSERT_TRUE(c->Accept('"').has_value());
  EXPECT_TRUE(c->IsComplete());
}

TEST(JsonConstraint, MaxLengthCountsCodePoints) {
  const Tokenizer& tok = SmallTokenizer();
  auto c = Make(tok, R"({"type":"string","maxLength":2})");
  for (char ch : std::string("\"\xE4\xB8\xAD\xE6\x96\x87"))
    ASSERT_TRUE(c->Accept(static_cast<uint8_t>(ch)).has_value());
  std::vector<int32_t> allowed = AllowedTokens(*c, tok.n_vocab());
  EXPECT_EQ(allowed, std::vector<int32_t>{'"'});
}

TEST(JsonConstraint, PropertiesInSchemaOrderAndRequiredCannotBeSkipped) {
  const Tokenizer& tok = SmallTokenizer();
  const char* schema = R"({"type":"object","properties":{"a":{"type":"integer"},
      "b":{"type":"integer"},"c":{"type":"integer"}},"required":["b"]})";
  auto accepts = [&](const std::string& text) {
    auto c = Make(tok, schema, 0);
    for (char ch : text)
      if (!c->Accept(static_cast<uint8_t>(ch)).has_value()) return false;
    return c->IsComplete();
  };
  EXPECT_TRUE(accepts("{\"a\":1,\"b\":2,\"c\":3}"));
  EXPECT_TRUE(accepts("{\"b\":2}"));
  EXPECT_FALSE(accepts("{\"c\":3}"));
  EXPECT_FALSE(accepts("{\"b\":2,\"a\":1}"));
  EXPECT_FALSE(accepts("{\"a\":1}"));
  EXPECT_FALSE(accepts("{\"b\":2,\"d\":1}"));
}

TEST(JsonConstraint, IntegerRangeAndNumberShapes) {
  const Tokenizer& tok = SmallTokenizer();
  auto accepts = [&](const char* schema, const std::string& text) {
    auto c = Make(tok, schema, 0);
    for (char ch : text)
      if (!c->Accept(static_cast<uint8_t>(ch)).has_value()) return false;
    return c->IsComplete();
  };
  const char* range = R"({"type":"integer","minimum":-5,"maximum":120})";
  EXPECT_TRUE(accepts(range, "-5"));
  EXPECT_TRUE(accepts(range, "120"));
  EXPECT_TRUE(accepts(range, "0"));
  EXPECT_FALSE(accepts(range, "121"));
  EXPECT_FALSE(accepts(range, "-6"));
  EXPECT_FALSE(accepts(range, "1.5"));
  EXPECT_FALSE(accepts(range, "01"));
  const char* number = R"({"type":"number"})";
  EXPECT_TRUE(accepts(number, "-0.5e+12"));
  EXPECT_FALSE(accepts(number, "1."));
  EXPECT_FALSE(accepts(number, "+1"));
  EXPECT_FALSE(accepts(number, "1e123"));  // exponent digits are bounded
}

TEST(JsonConstraint, WhitespaceRunsAreBounded) {
  const Tokenizer& tok = SmallTokenizer();
  auto accepts = [&](int ws, const std::string& text) {
    auto c = Make(tok, std::nullopt, ws);
    for (char ch : text)
      if (!c->Accept(static_cast<uint8_t>(ch)).has_value()) return false;
    return c->IsComplete();
  };
  EXPECT_TRUE(accepts(1, "{ \"a\": 1 }"));
  EXPECT_FALSE(accepts(1, "{  \"a\": 1}"));
  EXPECT_TRUE(accepts(2, "{\n \"a\": [1, 2]}"));
  EXPECT_FALSE(accepts(0, "{ }"));
}

TEST(JsonConstraint, UnsupportedKeywordsAreNamed) {
  const Tokenizer& tok = SmallTokenizer();
  for (const char* kw : {"pattern", "not", "patternProperties", "multipleOf"}) {
    JsonConstraintOptions o;
    o.schema = std::string(R"({"type":"string",")") + kw + R"(":"x"})";
    auto c = MakeJsonConstraint(tok, o);
    ASSERT_FALSE(c.has_value()) << kw;
    EXPECT_EQ(c.error().code, Code::kInvalidArgument);
    EXPECT_EQ(c.error().param, "response_format");
    EXPECT_NE(c.error().message.find(kw), std::string::npos) << c.error().message;
  }
  JsonConstraintOptions o;
  o.schema = R"({"$ref":"#/$defs/missing"})";
  EXPECT_FALSE(MakeJsonConstraint(tok, o).has_value());
  o.schema = R"({"type":"object","properties":{"a":{"$ref":"#"}},"required":["a"]})";
  EXPECT_FALSE(MakeJsonConstraint(tok, o).has_value());  // no finite instance
  o.schema = R"({"anyOf":[{"type":"object"},{"type":"object","properties":{}}]})";
  EXPECT_FALSE(MakeJsonConstraint(tok, o).has_value());
  o.schema = "{not json";
  EXPECT_FALSE(MakeJsonConstraint(tok, o).has_value());
}

TEST(JsonConstraint, TightBudgetStillCloses) {
  const Tokenizer& tok = SmallTokenizer();
  // The shortest instance of the first schema: {"name":"","age":0} = 19 bytes.
  for (uint64_t seed = 0; seed < 30; ++seed) {
    auto c = Make(tok, Schemas()[0]);
    EXPECT_EQ(c->MinCompletionBytes(), 19);
    bool ended = false;
    std::vector<int32_t> ids = RandomWalk(*c, tok, seed, 19, EndId(), &ended);
    std::string text = tok.Decode(ids);
    EXPECT_TRUE(c->IsComplete()) << text;
    EXPECT_TRUE(TemplateValue::ParseJson(text).has_value()) << text;
  }
}

// Not a speed assertion: prints the per-step mask time on Qwen2.5's vocabulary.
TEST(JsonConstraint, QwenVocabularyMaskTiming) {
  std::string dir = std::string(YUNZHI_TESTDATA_DIR) + "/tokenizer/hf/qwen2.5";
  auto vocab = VocabFromHfDir(dir);
  ASSERT_TRUE(vocab.has_value()) << vocab.error().ToString();
  auto tok = Tokenizer::Create(std::move(*vocab));
  ASSERT_TRUE(tok.has_value());
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  JsonConstraintOptions o;
  o.schema = Schemas()[2];
  auto c = MakeJsonConstraint(*tok, o);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  auto t1 = Clock::now();
  auto c2 = MakeJsonConstraint(*tok, o);  // cached vocabulary index
  double cached_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
  std::printf("index build %.1f ms, second constraint %.2f ms\n", build_ms, cached_ms);

  auto time_fill = [&](JsonConstraint& k) {
    TokenBitmask mask(tok->n_vocab());
    auto s = Clock::now();
    EXPECT_TRUE(k.FillAllowed(mask).has_value());
    return std::chrono::duration<double, std::milli>(Clock::now() - s).count();
  };
  {
    // The slowest state: a string whose minLength is not reached, under a tight budget, walks
    // the whole trie (no precomputed mask applies).
    JsonConstraintOptions oo;
    oo.schema = R"({"type":"string","minLength":40})";
    auto cc = MakeJsonConstraint(*tok, oo);
    ASSERT_TRUE(cc.has_value());
    (*cc)->SetRemainingTokens((*cc)->MinCompletionBytes());
    ASSERT_TRUE((*cc)->Accept(tok->Encode("\"")[0]).has_value());
    double worst = time_fill(**cc);
    // Structural positions: the start of an object and of a key.
    JsonConstraintOptions any;
    auto ca = MakeJsonConstraint(*tok, any);
    ASSERT_TRUE(ca.has_value());
    double start = time_fill(**ca);
    ASSERT_TRUE((*ca)->Accept(tok->Encode("{")[0]).has_value());
    double key = time_fill(**ca);
    std::printf(
        "qwen2.5 full-trie walk (tight budget, minLength pending) %.2f ms; value start "
        "%.2f ms; after '{' %.2f ms\n",
        worst, start, key);
  }
  for (int mode = 0; mode < 2; ++mode) {
    JsonConstraintOptions oo;
    if (mode == 1) oo.schema = Schemas()[0];
    auto cc = MakeJsonConstraint(*tok, oo);
    ASSERT_TRUE(cc.has_value());
    JsonConstraint& k = **cc;
    k.SetRemainingTokens(120);
    std::mt19937_64 rng(7);
    TokenBitmask mask(tok->n_vocab());
    double total_ms = 0, max_ms = 0, string_ms = 0;
    int steps = 0, string_steps = 0;
    std::vector<int32_t> out;
    for (int step = 0; step < 120; ++step) {
      mask.AllowAll();
      auto s = Clock::now();
      ASSERT_TRUE(k.FillAllowed(mask).has_value());
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
      std::vector<int32_t> allowed;
      for (int32_t i = 0; i < tok->n_vocab(); ++i)
        if (mask.IsAllowed(i)) allowed.push_back(i);
      ASSERT_FALSE(allowed.empty());
      total_ms += ms;
      max_ms = std::max(max_ms, ms);
      ++steps;
      if (allowed.size() > 50000) {
        string_ms += ms;
        ++string_steps;
      }
      int32_t t = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
      ASSERT_TRUE(k.Accept(t).has_value());
      if (tok->IsEndOfGeneration(t)) break;
      out.push_back(t);
    }
    std::string text = tok->Decode(out);
    EXPECT_TRUE(TemplateValue::ParseJson(text).has_value()) << text;
    std::printf(
        "qwen2.5 %s: %d steps, mean %.3f ms, max %.3f ms; in-string steps %d mean %.3f ms\n",
        mode == 0 ? "json_object" : "schema", steps, total_ms / steps, max_ms, string_steps,
        string_steps ? string_ms / string_steps : 0.0);
  }
}

}  // namespace
}  // namespace yunzhi::engine
