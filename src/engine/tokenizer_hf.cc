// Vocab loader for Hugging Face `tokenizer.json` (+ `tokenizer_config.json`): byte-level BPE,
// SentencePiece-style BPE (Llama 2, Mistral v0.1) and WordPiece (BERT).
#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/engine/tokenizer.h"

#include "engine/pretokenizer.h"
#include "engine/tokenizer_loaders_common.h"
#include "engine/tokenizer_unicode.h"

namespace yunzhi::engine {
namespace {

namespace json = boost::json;

Error Unsupported(std::string what) {
  return Error(Code::kUnimplemented, fmt::format("tokenizer.json: {} is not supported", what));
}

Error Malformed(std::string what) {
  return InvalidArgumentError(fmt::format("tokenizer.json: {}", what));
}

std::string_view StringOr(const json::object& object, std::string_view key,
                          std::string_view fallback) {
  const json::value* v = object.if_contains(key);
  if (v == nullptr || !v->is_string()) return fallback;
  return v->get_string();
}

bool BoolOr(const json::object& object, std::string_view key, bool fallback) {
  const json::value* v = object.if_contains(key);
  return v != nullptr && v->is_bool() ? v->get_bool() : fallback;
}

// A non-negative integer that fits int32, or -1.
int64_t IdOf(const json::value& v) {
  if (v.is_int64() && v.get_int64() >= 0 && v.get_int64() <= INT32_MAX) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= INT32_MAX) return static_cast<int64_t>(v.get_uint64());
  return -1;
}

// tokenizer_config.json names special tokens either as a string or as {"content": "..."}.
std::string_view SpecialTokenText(const json::object& config, std::string_view key) {
  const json::value* v = config.if_contains(key);
  if (v == nullptr) return {};
  if (v->is_string()) return v->get_string();
  if (const json::object* o = v->if_object()) return StringOr(*o, "content", {});
  return {};
}

// A regex matching `literal` exactly (for Split patterns given as {"String": ...}).
std::string QuoteRegex(std::string_view literal) {
  std::string out;
  for (const char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u) && c != '_') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// Collects the split patterns of the pre-tokenizer and checks that it is byte-level.
Status ReadPreTokenizer(const json::value* pre, std::vector<std::string>* patterns) {
  if (pre == nullptr || pre->is_null()) return Unsupported("a BPE model without a pre-tokenizer");
  const json::object* object = pre->if_object();
  if (object == nullptr) return Malformed("pre_tokenizer is not an object");
  std::vector<const json::object*> steps;
  if (StringOr(*object, "type", "") == "Sequence") {
    const json::value* list = object->if_contains("pretokenizers");
    if (list == nullptr || !list->is_array()) return Malformed("Sequence without pretokenizers");
    for (const json::value& step : list->get_array()) {
      if (!step.is_object()) return Malformed("pre-tokenizer step is not an object");
      steps.push_back(&step.get_object());
    }
  } else {
    steps.push_back(object);
  }
  bool byte_level = false;
  for (const json::object* step : steps) {
    const std::string_view type = StringOr(*step, "type", "");
    if (type == "Split") {
      if (StringOr(*step, "behavior", "") != "Isolated" || BoolOr(*step, "invert", false)) {
        return Unsupported(fmt::format("Split with behavior '{}' (invert {})",
                                       StringOr(*step, "behavior", ""),
                                       BoolOr(*step, "invert", false)));
      }
      const json::value* pattern = step->if_contains("pattern");
      const json::object* p = pattern != nullptr ? pattern->if_object() : nullptr;
      if (p == nullptr) return Malformed("Split without a pattern");
      if (const json::value* regex = p->if_contains("Regex"); regex && regex->is_string()) {
        patterns->emplace_back(regex->get_string());
      } else if (const json::value* literal = p->if_contains("String");
                 literal && literal->is_string()) {
        patterns->push_back(QuoteRegex(literal->get_string()));
      } else {
        return Malformed("Split pattern is neither Regex nor String");
      }
    } else if (type == "ByteLevel") {
      byte_level = true;
      if (BoolOr(*step, "add_prefix_space", false)) {
        return Unsupported("ByteLevel with add_prefix_space");
      }
      if (BoolOr(*step, "use_regex", true)) patterns->push_back(internal::kGpt2SplitPattern);
    } else if (type == "Digits") {
      patterns->push_back(BoolOr(*step, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
    } else {
      return Unsupported(fmt::format("pre-tokenizer '{}'", type));
    }
  }
  if (!byte_level) return Unsupported("a BPE model without a ByteLevel pre-tokenizer");
  return OkStatus();
}

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // "▁" U+2581

// What a normalizer (possibly a Sequence) does, as far as our models can follow it.
struct NormalizerSteps {
  UnicodeNormalization form = UnicodeNormalization::kNone;
  bool prepend_space_marker = false;  // Prepend("▁")
  bool replace_space = false;         // Replace(" ", "▁")
  bool bert = false;                  // BertNormalizer, with its options in `wordpiece`
  WordPieceOptions wordpiece;
};

Status ReadNormalizer(const json::value* normalizer, NormalizerSteps* steps) {
  if (normalizer == nullptr || normalizer->is_null()) return OkStatus();
  const json::object* object = normalizer->if_object();
  if (object == nullptr) return Malformed("normalizer is not an object");
  const std::string_view type = StringOr(*object, "type", "");
  if (type == "NFC") {
    steps->form = UnicodeNormalization::kNfc;
    return OkStatus();
  }
  if (type == "NFKC") {
    steps->form = UnicodeNormalization::kNfkc;
    return OkStatus();
  }
  if (type == "Prepend" && StringOr(*object, "prepend", "") == kSpaceMarker) {
    steps->prepend_space_marker = true;
    return OkStatus();
  }
  if (type == "Replace" && StringOr(*object, "content", "") == kSpaceMarker) {
    const json::value* pattern = object->if_contains("pattern");
    const json::object* p = pattern != nullptr ? pattern->if_object() : nullptr;
    if (p != nullptr && StringOr(*p, "String", "") == " ") {
      steps->replace_space = true;
      return OkStatus();
    }
  }
  if (type == "BertNormalizer") {
    steps->bert = true;
    WordPieceOptions& o = steps->wordpiece;
    o.clean_text = BoolOr(*object, "clean_text", true);
    o.handle_chinese_chars = BoolOr(*object, "handle_chinese_chars", true);
    o.lowercase = BoolOr(*object, "lowercase", true);
    o.strip_accents = BoolOr(*object, "strip_accents", o.lowercase);  // null: as lowercase
    return OkStatus();
  }
  if (type == "Sequence") {
    const json::value* list = object->if_contains("normalizers");
    if (list != nullptr && list->is_array()) {
      for (const json::value& step : list->get_array()) {
        YZ_RETURN_IF_ERROR(ReadNormalizer(&step, steps));
      }
      return OkStatus();
    }
  }
  return Unsupported(fmt::format("normalizer '{}'", type));
}

// The pre-tokenizer object, or its only step when it is a Sequence of one; nullptr when absent.
const json::object* SinglePreTokenizer(const json::value* pre) {
  if (pre == nullptr || !pre->is_object()) return nullptr;
  const json::object& object = pre->get_object();
  if (StringOr(object, "type", "") == "Sequence") {
    const json::value* list = object.if_contains("pretokenizers");
    if (list != nullptr && list->is_array() && list->get_array().size() == 1 &&
        list->get_array()[0].is_object()) {
      return &list->get_array()[0].get_object();
    }
  }
  return &object;
}

// SentencePiece-style BPE: no pre-tokenizer (spaces handled by the normalizer) or a Metaspace
// one. Sets where the space prefix goes.
Status ReadSentencePieceSpaces(const json::value* pre, const NormalizerSteps& normalizer,
                               Vocab* vocab) {
  vocab->add_space_prefix = normalizer.prepend_space_marker;
  vocab->space_prefix_rule = SpacePrefixRule::kEveryFragment;
  const json::object* metaspace = SinglePreTokenizer(pre);
  if (metaspace == nullptr) {
    if (!normalizer.replace_space) {
      return Unsupported("a BPE model with neither a ByteLevel nor a Metaspace pre-tokenizer");
    }
    return OkStatus();
  }
  if (StringOr(*metaspace, "type", "") != "Metaspace") {
    return Unsupported(fmt::format("pre-tokenizer '{}' with a SentencePiece-style BPE model",
                                   StringOr(*metaspace, "type", "")));
  }
  if (StringOr(*metaspace, "replacement", kSpaceMarker) != kSpaceMarker) {
    return Unsupported("a Metaspace replacement other than U+2581");
  }
  // Older files have only add_prefix_space (true = "always").
  const std::string_view scheme =
      StringOr(*metaspace, "prepend_scheme",
               BoolOr(*metaspace, "add_prefix_space", true) ? "always" : "never");
  if (scheme == "always") {
    vocab->add_space_prefix = true;
    vocab->space_prefix_rule = SpacePrefixRule::kMetaspaceAlways;
  } else if (scheme == "first") {
    vocab->add_space_prefix = true;
    vocab->space_prefix_rule = SpacePrefixRule::kMetaspaceFirst;
  } else if (scheme == "never") {
    vocab->add_space_prefix = false;
  } else {
    return Unsupported(fmt::format("Metaspace prepend_scheme '{}'", scheme));
  }
  return OkStatus();
}

// Whether the pre-tokenizer is (or has a step) ByteLevel.
bool HasByteLevelStep(const json::value* pre) {
  if (pre == nullptr || !pre->is_object()) return false;
  const json::object& object = pre->get_object();
  const std::string_view type = StringOr(object, "type", "");
  if (type == "ByteLevel") return true;
  if (type != "Sequence") return false;
  const json::value* list = object.if_contains("pretokenizers");
  if (list == nullptr || !list->is_array()) return false;
  for (const json::value& step : list->get_array()) {
    if (HasByteLevelStep(&step)) return true;
  }
  return false;
}

// "<0x0A>": a SentencePiece byte-fallback token.
bool IsByteTokenSpelling(std::string_view text) {
  return text.size() == 6 && text.substr(0, 3) == "<0x" && text[5] == '>' &&
         std::isxdigit(static_cast<unsigned char>(text[3])) &&
         std::isxdigit(static_cast<unsigned char>(text[4]));
}

// From a TemplateProcessing post-processor (possibly inside a Sequence): whether the template
// for a single sequence starts / ends with a special token, and which.
void ReadTemplate(const json::value* post, std::string* first, std::string* last) {
  if (post == nullptr || !post->is_object()) return;
  const json::object& object = post->get_object();
  const std::string_view type = StringOr(object, "type", "");
  if (type == "Sequence") {
    if (const json::value* list = object.if_contains("processors"); list && list->is_array()) {
      for (const json::value& step : list->get_array()) ReadTemplate(&step, first, last);
    }
    return;
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    // {"cls": ["[CLS]", 101], "sep": ["[SEP]", 102]}
    auto name = [&](std::string_view key) -> std::string {
      const json::value* v = object.if_contains(key);
      if (v == nullptr || !v->is_array() || v->get_array().empty()) return {};
      const json::value& text = v->get_array()[0];
      return text.is_string() ? std::string(text.get_string()) : std::string();
    };
    *first = name("cls");
    *last = name("sep");
    return;
  }
  if (type != "TemplateProcessing") return;
  const json::value* single = object.if_contains("single");
  if (single == nullptr || !single->is_array() || single->get_array().empty()) return;
  const json::array& items = single->get_array();
  auto special_id = [](const json::value& item) -> std::string {
    const json::object* o = item.if_object();
    const json::value* special = o != nullptr ? o->if_contains("SpecialToken") : nullptr;
    if (special == nullptr || !special->is_object()) return {};
    return std::string(StringOr(special->get_object(), "id", ""));
  };
  *first = special_id(items.front());
  if (items.size() > 1) *last = special_id(items.back());
}

}  // namespace

Result<Vocab> VocabFromHfJson(std::string_view tokenizer_json,
                              std::string_view tokenizer_config_json) {
  boost::system::error_code ec;
  json::value root = json::parse(tokenizer_json, ec);
  if (ec || !root.is_object())
    return Malformed(fmt::format("not a JSON object ({})", ec.message()));
  const json::object& top = root.get_object();
  json::value config_root;
  if (!tokenizer_config_json.empty()) {
    config_root = json::parse(tokenizer_config_json, ec);
    if (ec || !config_root.is_object()) {
      return InvalidArgumentError(
          fmt::format("tokenizer_config.json: not a JSON object ({})", ec.message()));
    }
  }
  const json::object empty_object;
  const json::object& config = config_root.is_object() ? config_root.get_object() : empty_object;

  const json::value* model_value = top.if_contains("model");
  if (model_value == nullptr || !model_value->is_object()) return Malformed("no model object");
  const json::object& model = model_value->get_object();
  const std::string_view model_type = StringOr(model, "type", "BPE");
  if (model_type != "BPE" && model_type != "WordPiece") {
    return Unsupported(fmt::format("model type '{}'", model_type));
  }

  Vocab vocab;
  vocab.add_space_prefix = false;
  vocab.pre = "none";
  NormalizerSteps normalizer;
  YZ_RETURN_IF_ERROR(ReadNormalizer(top.if_contains("normalizer"), &normalizer));
  vocab.normalization = normalizer.form;
  const json::value* pre_tokenizer = top.if_contains("pre_tokenizer");
  if (model_type == "WordPiece") {
    vocab.model = TokenizerModel::kWordPiece;
    if (!normalizer.bert) {
      // Without a BertNormalizer text is taken as it is: no cleaning, case or accent changes.
      vocab.wordpiece.clean_text = false;
      vocab.wordpiece.handle_chinese_chars = false;
      vocab.wordpiece.strip_accents = false;
      vocab.wordpiece.lowercase = false;
    } else {
      vocab.wordpiece = normalizer.wordpiece;
    }
    const json::object* pre = SinglePreTokenizer(pre_tokenizer);
    if (pre == nullptr || StringOr(*pre, "type", "") != "BertPreTokenizer") {
      return Unsupported(fmt::format("WordPiece with pre-tokenizer '{}'",
                                     pre != nullptr ? StringOr(*pre, "type", "") : "none"));
    }
    vocab.wordpiece.continuing_subword_prefix =
        std::string(StringOr(model, "continuing_subword_prefix", "##"));
    if (const json::value* v = model.if_contains("max_input_chars_per_word")) {
      const int64_t n = IdOf(*v);
      if (n < 0) return Malformed("max_input_chars_per_word is not a non-negative integer");
      vocab.wordpiece.max_input_chars_per_word = static_cast<int32_t>(n);
    }
  } else if (HasByteLevelStep(pre_tokenizer)) {
    vocab.model = TokenizerModel::kByteLevelBpe;
    if (normalizer.prepend_space_marker || normalizer.replace_space || normalizer.bert) {
      return Unsupported("a byte-level BPE model with a SentencePiece or BERT normalizer");
    }
    YZ_RETURN_IF_ERROR(ReadPreTokenizer(pre_tokenizer, &vocab.split_patterns));
    vocab.ignore_merges = BoolOr(model, "ignore_merges", false);
  } else {
    vocab.model = TokenizerModel::kSentencePiece;
    if (normalizer.bert) return Unsupported("a BPE model with a BertNormalizer");
    YZ_RETURN_IF_ERROR(ReadSentencePieceSpaces(pre_tokenizer, normalizer, &vocab));
  }
  const bool byte_level = vocab.model == TokenizerModel::kByteLevelBpe;
  const bool byte_fallback =
      vocab.model == TokenizerModel::kSentencePiece && BoolOr(model, "byte_fallback", false);
  const std::string_view unk_token = StringOr(model, "unk_token", "");

  // Normal tokens: {"Ġthe": 279, ...}; byte-level BPE spells them through the byte-to-unicode
  // mapping, SentencePiece-style BPE with "▁" for spaces and <0xXX> for byte tokens.
  const json::value* vocab_value = model.if_contains("vocab");
  if (vocab_value == nullptr || !vocab_value->is_object()) return Malformed("model has no vocab");
  struct Entry {
    int64_t id;
    std::string text;
    TokenType type;
    bool lstrip = false;
    bool rstrip = false;
  };
  std::vector<Entry> entries;
  entries.reserve(vocab_value->get_object().size());
  std::string raw;
  for (const auto& [key, value] : vocab_value->get_object()) {
    const int64_t id = IdOf(value);
    if (id < 0) return Malformed(fmt::format("bad id for token '{}'", std::string_view(key)));
    if (!byte_level || !internal::UnicodeToBytes(key, &raw)) raw = std::string(key);
    const bool is_byte = byte_fallback && IsByteTokenSpelling(raw);
    entries.push_back({id, raw, is_byte ? TokenType::kByte : TokenType::kNormal});
  }
  // Added tokens: raw text; they take precedence over a vocab entry with the same id.
  if (const json::value* added = top.if_contains("added_tokens"); added && added->is_array()) {
    for (const json::value& item : added->get_array()) {
      const json::object* o = item.if_object();
      if (o == nullptr) return Malformed("added token is not an object");
      const json::value* id_value = o->if_contains("id");
      const int64_t id = id_value != nullptr ? IdOf(*id_value) : -1;
      if (id < 0) return Malformed("added token without a valid id");
      const bool special = BoolOr(*o, "special", false);
      const std::string_view content = StringOr(*o, "content", "");
      TokenType type = special ? TokenType::kControl : TokenType::kUserDefined;
      // The model's unknown token, as GGUF types it (byte-level vocabs keep their old typing).
      if (!byte_level && !unk_token.empty() && content == unk_token) type = TokenType::kUnknown;
      entries.push_back({id, std::string(content), type, BoolOr(*o, "lstrip", false),
                         BoolOr(*o, "rstrip", false)});
    }
  }
  int64_t max_id = -1;
  for (const Entry& e : entries) max_id = std::max(max_id, e.id);
  if (max_id < 0) return Malformed("no tokens");
  vocab.tokens.resize(static_cast<size_t>(max_id) + 1);
  std::vector<bool> filled(vocab.tokens.size());
  for (Entry& e : entries) {  // in order: vocab first, then added tokens overriding
    vocab.tokens[e.id] = {std::move(e.text), 0.0f, e.type, e.lstrip, e.rstrip};
    filled[e.id] = true;
  }
  for (size_t id = 0; id < filled.size(); ++id) {
    if (!filled[id]) vocab.tokens[id] = {fmt::format("[PAD{}]", id), 0.0f, TokenType::kUnused};
  }

  // Merges: ["Ġ t", ...] or [["Ġ", "t"], ...].
  if (const json::value* merges = model.if_contains("merges"); merges && merges->is_array()) {
    vocab.merges.reserve(merges->get_array().size());
    std::string left, right;
    for (const json::value& merge : merges->get_array()) {
      std::string_view a, b;
      if (merge.is_string()) {
        const std::string_view s = merge.get_string();
        const size_t space = s.find(' ', 1);
        if (space == std::string_view::npos) return Malformed(fmt::format("merge '{}'", s));
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else if (merge.is_array() && merge.get_array().size() == 2 &&
                 merge.get_array()[0].is_string() && merge.get_array()[1].is_string()) {
        a = merge.get_array()[0].get_string();
        b = merge.get_array()[1].get_string();
      } else {
        return Malformed("a merge is neither \"a b\" nor [a, b]");
      }
      if (!byte_level || !internal::UnicodeToBytes(a, &left)) left = std::string(a);
      if (!byte_level || !internal::UnicodeToBytes(b, &right)) right = std::string(b);
      vocab.merges.emplace_back(left, right);
    }
  }
  if (vocab.model == TokenizerModel::kWordPiece) vocab.merges.clear();

  // Special ids by text: added tokens first, then normal tokens (by their raw bytes).
  auto find = [&](std::string_view text) -> int32_t {
    if (text.empty()) return -1;
    int32_t normal = -1;
    for (size_t id = 0; id < vocab.tokens.size(); ++id) {
      if (vocab.tokens[id].text != text) continue;
      if (vocab.tokens[id].type != TokenType::kNormal) return static_cast<int32_t>(id);
      if (normal < 0) normal = static_cast<int32_t>(id);
    }
    return normal;
  };
  std::string template_first, template_last;
  ReadTemplate(top.if_contains("post_processor"), &template_first, &template_last);
  const bool wordpiece = vocab.model == TokenizerModel::kWordPiece;
  // WordPiece: BOS / EOS are [CLS] / [SEP].
  std::string_view bos_text = SpecialTokenText(config, wordpiece ? "cls_token" : "bos_token");
  std::string_view eos_text = SpecialTokenText(config, wordpiece ? "sep_token" : "eos_token");
  if (bos_text.empty()) bos_text = template_first;
  if (wordpiece && eos_text.empty()) eos_text = template_last;
  vocab.bos_id = find(bos_text);
  vocab.eos_id = find(eos_text);
  vocab.pad_id = find(SpecialTokenText(config, "pad_token"));
  vocab.unk_id = find(SpecialTokenText(config, "unk_token"));
  if (vocab.unk_id < 0) vocab.unk_id = find(StringOr(model, "unk_token", ""));
  internal::SetEndOfTurnByName(&vocab);
  if (vocab.eot_id == vocab.eos_id) vocab.eot_id = -1;

  vocab.add_bos = BoolOr(config, "add_bos_token",
                         !template_first.empty() && find(template_first) == vocab.bos_id);
  vocab.add_eos = BoolOr(config, "add_eos_token",
                         !template_last.empty() && find(template_last) == vocab.eos_id);
  if (vocab.bos_id < 0) vocab.add_bos = false;
  if (vocab.eos_id < 0) vocab.add_eos = false;
  return vocab;
}

Result<Vocab> VocabFromHfDir(const std::string& dir) {
  const std::string tokenizer_path = dir + "/tokenizer.json";
  const std::string config_path = dir + "/tokenizer_config.json";
  YZ_ASSIGN_OR_RETURN(std::string tokenizer_json, internal::ReadWholeFile(tokenizer_path));
  std::string config_json;
  if (auto config = internal::ReadWholeFile(config_path)) {
    config_json = std::move(*config);
  } else if (config.error().code != Code::kNotFound) {
    return std::move(config).error();
  }
  auto vocab = VocabFromHfJson(tokenizer_json, config_json);
  if (!vocab) {
    Error error = std::move(vocab).error();
    error.message = fmt::format("{}: {}", dir, error.message);
    return error;
  }
  return vocab;
}

}  // namespace yunzhi::engine
