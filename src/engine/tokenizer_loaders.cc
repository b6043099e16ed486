// Vocab loaders for GGUF metadata and tiktoken rank files. (tokenizer.json: tokenizer_hf.cc.)
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/tokenizer.h"

#include "engine/tokenizer_loaders_common.h"
#include "engine/tokenizer_unicode.h"

namespace yunzhi::engine {
namespace internal {

Result<std::string> ReadWholeFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return NotFoundError(fmt::format("{}: no such file", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) return UnavailableError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return UnavailableError(fmt::format("{}: read error", path));
  return std::move(buffer).str();
}

void SetEndOfTurnByName(Vocab* vocab) {
  if (vocab->eot_id >= 0) return;
  static constexpr std::string_view kNames[] = {"<|eot_id|>",    "<|im_end|>",      "<|end|>",
                                                "<end_of_turn>", "<|end_of_turn|>", "<EOT>"};
  for (const std::string_view name : kNames) {
    for (size_t id = 0; id < vocab->tokens.size(); ++id) {
      const VocabToken& token = vocab->tokens[id];
      if (token.text == name && token.type == TokenType::kControl) {
        vocab->eot_id = static_cast<int32_t>(id);
        return;
      }
    }
  }
}

}  // namespace internal

namespace {

using internal::ReadWholeFile;

// An optional id: -1 when the key is missing or the id is outside the vocab (llama.cpp ignores
// such ids too).
Result<int32_t> OptionalTokenId(const GgufFile& gguf, std::string_view key, size_t n_vocab) {
  if (!gguf.HasKey(key)) return -1;
  YZ_ASSIGN_OR_RETURN(uint32_t id, gguf.GetU32(key));
  return id < n_vocab ? static_cast<int32_t>(id) : -1;
}

Result<bool> OptionalBool(const GgufFile& gguf, std::string_view key, bool fallback) {
  if (!gguf.HasKey(key)) return fallback;
  return gguf.GetBool(key);
}

int32_t FindTokenOfType(const Vocab& vocab, TokenType type) {
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    if (vocab.tokens[id].type == type) return static_cast<int32_t>(id);
  }
  return -1;
}

// llama.cpp's converter spells WordPiece tokens that start a word "▁word" and those that
// continue one "piece" (no "##"), and keeps bracketed names ("[unused0]") as they are; back to
// tokenizer.json's spelling.
void RespellWordPieceTokens(Vocab* vocab) {
  constexpr std::string_view kWordStart = "\xE2\x96\x81";  // "▁" U+2581
  const std::string& prefix = vocab->wordpiece.continuing_subword_prefix;
  for (VocabToken& token : vocab->tokens) {
    if (token.type != TokenType::kNormal && token.type != TokenType::kUserDefined) continue;
    std::string& text = token.text;
    if (text.size() > kWordStart.size() && text.starts_with(kWordStart)) {
      text.erase(0, kWordStart.size());
    } else if (!(text.size() >= 2 && text.front() == '[' && text.back() == ']')) {
      text.insert(0, prefix);
    }
  }
}

bool IsLlama3Pre(std::string_view pre) {
  return pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "dbrx" ||
         pre == "smaug-bpe";
}

// Base64 (RFC 4648, standard alphabet, '=' padding optional). False on a bad character.
bool DecodeBase64(std::string_view in, std::string* out) {
  out->clear();
  uint32_t buffer = 0;
  int bits = 0;
  for (const char c : in) {
    int value;
    if (c >= 'A' && c <= 'Z') {
      value = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      value = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      value = c - '0' + 52;
    } else if (c == '+') {
      value = 62;
    } else if (c == '/') {
      value = 63;
    } else if (c == '=') {
      break;
    } else {
      return false;
    }
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return true;
}

}  // namespace

Result<Vocab> VocabFromGguf(const GgufFile& gguf) {
  if (!gguf.HasKey("tokenizer.ggml.tokens")) {
    return NotFoundError(fmt::format("{}: no tokenizer (tokenizer.ggml.tokens)", gguf.name()));
  }
  std::string_view model = "llama";
  if (gguf.HasKey("tokenizer.ggml.model")) {
    YZ_ASSIGN_OR_RETURN(model, gguf.GetString("tokenizer.ggml.model"));
  }
  Vocab vocab;
  if (model == "llama") {
    vocab.model = TokenizerModel::kSentencePiece;
  } else if (model == "gpt2") {
    vocab.model = TokenizerModel::kByteLevelBpe;
  } else if (model == "bert") {
    vocab.model = TokenizerModel::kWordPiece;
  } else {
    return Error(
        Code::kUnimplemented,
        fmt::format("{}: tokenizer model '{}' is not supported (supported: llama, gpt2, bert)",
                    gguf.name(), model));
  }
  if (gguf.HasKey("tokenizer.ggml.pre")) {
    YZ_ASSIGN_OR_RETURN(std::string_view pre, gguf.GetString("tokenizer.ggml.pre"));
    vocab.pre = std::string(pre);
  }

  YZ_ASSIGN_OR_RETURN(std::vector<std::string_view> texts,
                      gguf.GetStringArray("tokenizer.ggml.tokens"));
  const size_t n_vocab = texts.size();
  std::vector<float> scores;
  if (gguf.HasKey("tokenizer.ggml.scores")) {
    YZ_ASSIGN_OR_RETURN(scores, gguf.GetF32Array("tokenizer.ggml.scores"));
    if (scores.size() != n_vocab) {
      return InvalidArgumentError(
          fmt::format("{}: {} scores for {} tokens", gguf.name(), scores.size(), n_vocab));
    }
  }
  std::vector<int32_t> types;
  if (gguf.HasKey("tokenizer.ggml.token_type")) {
    YZ_ASSIGN_OR_RETURN(types, gguf.GetI32Array("tokenizer.ggml.token_type"));
    if (types.size() != n_vocab) {
      return InvalidArgumentError(
          fmt::format("{}: {} token types for {} tokens", gguf.name(), types.size(), n_vocab));
    }
  }

  const bool byte_level = vocab.model == TokenizerModel::kByteLevelBpe;
  vocab.tokens.resize(n_vocab);
  std::string raw;
  for (size_t id = 0; id < n_vocab; ++id) {
    VocabToken& token = vocab.tokens[id];
    token.score = scores.empty() ? 0.0f : scores[id];
    const int32_t type = types.empty() ? 1 : types[id];
    // 0 is "undefined" in GGUF; anything unknown is treated as normal.
    token.type = type >= 1 && type <= 6 ? static_cast<TokenType>(type) : TokenType::kNormal;
    // Byte-level vocab files spell normal tokens through GPT-2's byte-to-unicode mapping; added
    // (control, user-defined) tokens are stored as their raw text.
    const bool mapped =
        byte_level && (token.type == TokenType::kNormal || token.type == TokenType::kUnused ||
                       token.type == TokenType::kUnknown);
    if (mapped && internal::UnicodeToBytes(texts[id], &raw)) {
      token.text = raw;
    } else {
      token.text = std::string(texts[id]);
    }
  }

  if (vocab.model == TokenizerModel::kWordPiece) RespellWordPieceTokens(&vocab);

  if (byte_level && gguf.HasKey("tokenizer.ggml.merges")) {
    YZ_ASSIGN_OR_RETURN(std::vector<std::string_view> merges,
                        gguf.GetStringArray("tokenizer.ggml.merges"));
    vocab.merges.reserve(merges.size());
    std::string left, right;
    for (const std::string_view merge : merges) {
      // "A B"; search from 1 so that a first half that is itself a space still works.
      const size_t space = merge.find(' ', 1);
      if (space == std::string_view::npos) {
        return InvalidArgumentError(
            fmt::format("{}: merge rule without a space: '{}'", gguf.name(), merge));
      }
      const std::string_view a = merge.substr(0, space);
      const std::string_view b = merge.substr(space + 1);
      if (!internal::UnicodeToBytes(a, &left)) left = std::string(a);
      if (!internal::UnicodeToBytes(b, &right)) right = std::string(b);
      vocab.merges.emplace_back(left, right);
    }
  }

  YZ_ASSIGN_OR_RETURN(vocab.bos_id, OptionalTokenId(gguf, "tokenizer.ggml.bos_token_id", n_vocab));
  YZ_ASSIGN_OR_RETURN(vocab.eos_id, OptionalTokenId(gguf, "tokenizer.ggml.eos_token_id", n_vocab));
  YZ_ASSIGN_OR_RETURN(vocab.eot_id, OptionalTokenId(gguf, "tokenizer.ggml.eot_token_id", n_vocab));
  YZ_ASSIGN_OR_RETURN(vocab.pad_id,
                      OptionalTokenId(gguf, "tokenizer.ggml.padding_token_id", n_vocab));
  YZ_ASSIGN_OR_RETURN(vocab.unk_id,
                      OptionalTokenId(gguf, "tokenizer.ggml.unknown_token_id", n_vocab));
  if (vocab.unk_id < 0) vocab.unk_id = FindTokenOfType(vocab, TokenType::kUnknown);
  internal::SetEndOfTurnByName(&vocab);

  const bool spm = vocab.model == TokenizerModel::kSentencePiece;
  const bool wordpiece = vocab.model == TokenizerModel::kWordPiece;
  if (wordpiece) {
    // BERT inputs are [CLS] text [SEP]: the ids llama.cpp's converter writes (key spelled
    // "seperator" there; the correct spelling is accepted too).
    int32_t cls = -1, sep = -1;
    YZ_ASSIGN_OR_RETURN(cls, OptionalTokenId(gguf, "tokenizer.ggml.cls_token_id", n_vocab));
    YZ_ASSIGN_OR_RETURN(sep, OptionalTokenId(gguf, "tokenizer.ggml.seperator_token_id", n_vocab));
    if (sep < 0) {
      YZ_ASSIGN_OR_RETURN(sep, OptionalTokenId(gguf, "tokenizer.ggml.separator_token_id", n_vocab));
    }
    if (cls >= 0) vocab.bos_id = cls;
    if (sep >= 0) vocab.eos_id = sep;
  }
  if (spm) {
    // SentencePiece's conventional ids when the file does not say (llama.cpp does the same).
    if (vocab.bos_id < 0 && n_vocab > 1 && vocab.tokens[1].type == TokenType::kControl) {
      vocab.bos_id = 1;
    }
    if (vocab.eos_id < 0 && n_vocab > 2 && vocab.tokens[2].type == TokenType::kControl) {
      vocab.eos_id = 2;
    }
  }
  if (byte_level && IsLlama3Pre(vocab.pre)) vocab.ignore_merges = true;

  const bool default_add_bos = (spm || wordpiece || IsLlama3Pre(vocab.pre)) && vocab.bos_id >= 0;
  YZ_ASSIGN_OR_RETURN(vocab.add_bos,
                      OptionalBool(gguf, "tokenizer.ggml.add_bos_token", default_add_bos));
  YZ_ASSIGN_OR_RETURN(vocab.add_eos, OptionalBool(gguf, "tokenizer.ggml.add_eos_token",
                                                  wordpiece && vocab.eos_id >= 0));
  YZ_ASSIGN_OR_RETURN(vocab.add_space_prefix,
                      OptionalBool(gguf, "tokenizer.ggml.add_space_prefix", spm));
  if (vocab.add_bos && vocab.bos_id < 0) vocab.add_bos = false;
  if (vocab.add_eos && vocab.eos_id < 0) vocab.add_eos = false;
  return vocab;
}

Result<Vocab> VocabFromTiktoken(std::string_view ranks_text, const TiktokenOptions& options) {
  Vocab vocab;
  vocab.model = TokenizerModel::kByteLevelBpe;
  vocab.pre = options.pre;
  vocab.merge_rule = BpeMergeRule::kTokenRank;
  vocab.ignore_merges = true;
  vocab.add_space_prefix = false;

  std::vector<bool> seen;
  std::string bytes;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < ranks_text.size()) {
    size_t end = ranks_text.find('\n', pos);
    if (end == std::string_view::npos) end = ranks_text.size();
    std::string_view line = ranks_text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    uint64_t rank = 0;
    bool ok = space != std::string_view::npos && space + 1 < line.size() &&
              line.size() - space - 1 <= 9 && DecodeBase64(line.substr(0, space), &bytes) &&
              !bytes.empty();
    for (size_t i = space + 1; ok && i < line.size(); ++i) {
      ok = line[i] >= '0' && line[i] <= '9';
      rank = rank * 10 + static_cast<uint64_t>(line[i] - '0');
    }
    if (!ok) {
      return InvalidArgumentError(fmt::format("tiktoken line {}: expected '<base64> <rank>': '{}'",
                                              line_no, line.substr(0, 80)));
    }
    if (rank >= vocab.tokens.size()) {
      vocab.tokens.resize(rank + 1);
      seen.resize(rank + 1);
    }
    if (seen[rank]) return InvalidArgumentError(fmt::format("tiktoken: rank {} twice", rank));
    seen[rank] = true;
    vocab.tokens[rank].text = bytes;
  }
  for (size_t rank = 0; rank < seen.size(); ++rank) {
    if (!seen[rank]) return InvalidArgumentError(fmt::format("tiktoken: rank {} missing", rank));
  }
  if (vocab.tokens.empty()) return InvalidArgumentError("tiktoken: no tokens");

  std::vector<std::pair<std::string, int32_t>> specials = options.special_tokens;
  if (specials.empty()) {
    const auto n = static_cast<int32_t>(vocab.tokens.size());
    specials = {{"<|endoftext|>", n}, {"<|im_start|>", n + 1}, {"<|im_end|>", n + 2}};
  }
  for (const auto& [text, id] : specials) {
    if (id < 0 || static_cast<size_t>(id) < seen.size()) {
      return InvalidArgumentError(
          fmt::format("tiktoken: special token '{}' id {} collides with a ranked token", text, id));
    }
    if (static_cast<size_t>(id) >= vocab.tokens.size()) {
      const size_t old_size = vocab.tokens.size();
      vocab.tokens.resize(id + 1);
      for (size_t i = old_size; i < vocab.tokens.size(); ++i) {
        vocab.tokens[i] = {fmt::format("[PAD{}]", i), 0.0f, TokenType::kUnused};
      }
    }
    vocab.tokens[id] = {text, 0.0f, TokenType::kControl};
    if (text == "<|endoftext|>") vocab.eos_id = id;
  }
  internal::SetEndOfTurnByName(&vocab);
  return vocab;
}

Result<Vocab> VocabFromTiktokenFile(const std::string& path, const TiktokenOptions& options) {
  YZ_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  auto vocab = VocabFromTiktoken(text, options);
  if (!vocab) {
    Error error = std::move(vocab).error();
    error.message = fmt::format("{}: {}", path, error.message);
    return error;
  }
  return vocab;
}

}  // namespace yunzhi::engine
