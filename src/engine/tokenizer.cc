// Tokenizer: validation of a Vocab, added-token matching, and the model-independent parts of
// encoding and decoding. The models themselves live in spm_tokenizer.cc, bpe_tokenizer.cc and
// wordpiece_tokenizer.cc.
#include "yunzhi/engine/tokenizer.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "engine/tokenizer_state.h"
#include "engine/tokenizer_unicode.h"

namespace yunzhi::engine {

using internal::TokenizerState;

namespace internal {

void PieceMap::Insert(std::string_view key, int32_t id) {
  YZ_DCHECK(id >= 0);
  if (Find(key) >= 0) return;
  if ((n_entries_ + 1) * 2 > slots_.size()) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& slot : old) {
      if (slot.id >= 0) Place(slot, Hash(std::string_view(arena_).substr(slot.offset, slot.size)));
    }
  }
  const uint64_t hash = Hash(key);
  Place({static_cast<uint32_t>(hash >> 32), id, static_cast<uint32_t>(arena_.size()),
         static_cast<uint32_t>(key.size())},
        hash);
  arena_.append(key);
  ++n_entries_;
}

void PieceMap::Place(const Slot& slot, uint64_t hash) {
  size_t i = hash & mask_;
  while (slots_[i].id >= 0) i = (i + 1) & mask_;
  slots_[i] = slot;
}

void AddedTokenMatcher::Add(std::string_view text, int32_t id, bool control) {
  if (text.empty()) return;
  first_byte_[static_cast<uint8_t>(text[0])] = true;
  int32_t node = 0;
  for (const char c : text) {
    const auto byte = static_cast<uint8_t>(c);
    auto& children = nodes_[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), byte,
                               [](const auto& child, uint8_t b) { return child.first < b; });
    if (it != children.end() && it->first == byte) {
      node = it->second;
      continue;
    }
    const auto child = static_cast<int32_t>(nodes_.size());
    children.insert(it, {byte, child});  // may reallocate nodes_[node].children only
    nodes_.emplace_back();
    node = child;
  }
  if (nodes_[node].token < 0) {  // the first of duplicate texts wins
    nodes_[node].token = id;
    nodes_[node].control = control;
  }
}

std::pair<int32_t, size_t> AddedTokenMatcher::LongestAt(std::string_view text, size_t pos,
                                                        bool with_control) const {
  std::pair<int32_t, size_t> best{-1, 0};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto byte = static_cast<uint8_t>(text[i]);
    const auto& children = nodes_[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), byte,
                               [](const auto& child, uint8_t b) { return child.first < b; });
    if (it == children.end() || it->first != byte) break;
    node = it->second;
    const Node& n = nodes_[node];
    if (n.token >= 0 && (with_control || !n.control)) best = {n.token, i + 1 - pos};
  }
  return best;
}

}  // namespace internal

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // "▁" U+2581

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool IsAddedType(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUserDefined ||
         type == TokenType::kUnknown;
}

bool IsSpecialType(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUnknown;
}

// Whether SentencePiece puts a space before this fragment (Vocab::space_prefix_rule).
bool WantsSpacePrefix(const Vocab& vocab, std::string_view fragment, bool at_text_start,
                      bool after_added) {
  if (!vocab.add_space_prefix) return false;
  switch (vocab.space_prefix_rule) {
    case SpacePrefixRule::kEveryFragment:
      return after_added;
    case SpacePrefixRule::kMetaspaceAlways:
      return after_added && fragment.front() != ' ';
    case SpacePrefixRule::kMetaspaceFirst:
      return at_text_start && fragment.front() != ' ';
  }
  return false;
}

// Encodes one fragment of text that holds no added tokens; `at_text_start`: it begins the text;
// `after_added`: it begins the text or follows an added token.
void EncodeFragment(const TokenizerState& state, std::string_view fragment, bool at_text_start,
                    bool after_added, std::vector<int32_t>* out) {
  if (fragment.empty()) return;
  std::string normalized;
  if (internal::NormalizeUtf8(fragment, state.vocab.normalization, &normalized)) {
    fragment = normalized;
  }
  if (state.vocab.model == TokenizerModel::kByteLevelBpe) {
    internal::EncodeByteLevelBpe(state, fragment, out);
    return;
  }
  if (state.vocab.model == TokenizerModel::kWordPiece) {
    internal::EncodeWordPiece(state, fragment, out);
    return;
  }
  std::string escaped;
  escaped.reserve(fragment.size() + 16);
  if (WantsSpacePrefix(state.vocab, fragment, at_text_start, after_added)) {
    escaped.append(kSpaceMarker);
  }
  for (const char c : fragment) {
    if (c == ' ') {
      escaped.append(kSpaceMarker);
    } else {
      escaped.push_back(c);
    }
  }
  internal::EncodeSentencePiece(state, escaped, out);
}

// Appends the decoded text of one token; `at_text_start` tracks whether the next text token is
// the first after the start or after an added token (where Encode put a space prefix).
void AppendToken(const TokenizerState& state, int32_t id, const DecodeOptions& options,
                 bool* at_text_start, std::string* out) {
  if (id < 0 || static_cast<size_t>(id) >= state.vocab.tokens.size()) {
    out->append(internal::kReplacementChar);
    *at_text_start = false;
    return;
  }
  const TokenType type = state.vocab.tokens[id].type;
  if (state.vocab.model == TokenizerModel::kWordPiece) {
    // Words joined by spaces, continuation pieces ("##lo", stored as "lo") by none.
    if (options.skip_special && IsSpecialType(type)) return;
    std::string_view piece = state.pieces[id];
    const bool drop_space = *at_text_start && options.remove_space_prefix;
    if (IsAddedType(type)) {
      if (!drop_space) out->push_back(' ');
    } else if (drop_space && !piece.empty() && piece.front() == ' ') {
      piece.remove_prefix(1);
    }
    out->append(piece);
    *at_text_start = false;
    return;
  }
  if (IsAddedType(type)) {
    if (!(options.skip_special && IsSpecialType(type))) out->append(state.pieces[id]);
    *at_text_start = true;
    return;
  }
  std::string_view piece = state.pieces[id];
  if (*at_text_start && options.remove_space_prefix &&
      state.vocab.model == TokenizerModel::kSentencePiece && state.vocab.add_space_prefix &&
      type == TokenType::kNormal && !piece.empty() && piece.front() == ' ') {
    piece.remove_prefix(1);
  }
  out->append(piece);
  *at_text_start = false;
}

}  // namespace

Tokenizer::Tokenizer(std::shared_ptr<const TokenizerState> state) : state_(std::move(state)) {}

Result<Tokenizer> Tokenizer::Create(Vocab vocab) {
  if (vocab.tokens.empty()) return InvalidArgumentError("vocab has no tokens");
  if (vocab.tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return InvalidArgumentError("vocab has too many tokens");
  }
  const auto n_vocab = static_cast<int32_t>(vocab.tokens.size());
  for (const auto& [name, id] : {std::pair{"bos", vocab.bos_id}, std::pair{"eos", vocab.eos_id},
                                 std::pair{"eot", vocab.eot_id}, std::pair{"pad", vocab.pad_id},
                                 std::pair{"unk", vocab.unk_id}}) {
    if (id < -1 || id >= n_vocab) {
      return InvalidArgumentError(
          fmt::format("{} token id {} is outside the vocab of {} tokens", name, id, n_vocab));
    }
  }
  if (vocab.add_bos && vocab.bos_id < 0) return InvalidArgumentError("add_bos without a bos id");
  if (vocab.add_eos && vocab.eos_id < 0) return InvalidArgumentError("add_eos without an eos id");

  auto state = std::make_shared<TokenizerState>();
  state->vocab = std::move(vocab);
  const Vocab& v = state->vocab;
  if (v.unk_id >= 0 && v.unk_id != v.bos_id && v.unk_id != v.eos_id && v.unk_id != v.eot_id) {
    state->unk_fallback_id = v.unk_id;
  }
  switch (state->vocab.model) {
    case TokenizerModel::kSentencePiece:
      YZ_RETURN_IF_ERROR(internal::BuildSentencePiece(state.get()));
      break;
    case TokenizerModel::kByteLevelBpe:
      YZ_RETURN_IF_ERROR(internal::BuildByteLevelBpe(state.get()));
      break;
    case TokenizerModel::kWordPiece:
      YZ_RETURN_IF_ERROR(internal::BuildWordPiece(state.get()));
      break;
  }
  // Models end a turn or a document with any of these, whichever the vocab names EOS/EOT
  // (llama.cpp collects the same set).
  static constexpr std::string_view kEndMarkers[] = {
      "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>",      "<|eom_id|>", "<|im_end|>",
      "<|end|>",       "<end_of_turn>",   "<|end_of_turn|>", "<EOT>",      "<｜end▁of▁sentence｜>"};
  for (int32_t id = 0; id < n_vocab; ++id) {
    const VocabToken& token = state->vocab.tokens[id];
    const bool is_end_marker = token.type == TokenType::kControl &&
                               std::find(std::begin(kEndMarkers), std::end(kEndMarkers),
                                         token.text) != std::end(kEndMarkers);
    if (id == v.eos_id || id == v.eot_id || is_end_marker) {
      state->end_of_generation_ids.push_back(id);
    }
    if (!IsAddedType(token.type) || token.text.empty()) continue;
    state->added.Add(token.text, id, token.type != TokenType::kUserDefined);
    state->added_text_to_id.emplace(token.text, id);
  }
  return Tokenizer(std::move(state));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  const TokenizerState& state = *state_;
  const Vocab& vocab = state.vocab;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (options.add_special && vocab.add_bos) out.push_back(vocab.bos_id);

  bool after_added = true;  // the start of the text counts as "after an added token"
  size_t fragment_start = 0;
  if (!state.added.empty()) {
    for (size_t pos = 0; pos < text.size();) {
      if (!state.added.MayStartWith(static_cast<uint8_t>(text[pos]))) {
        ++pos;
        continue;
      }
      const auto [id, length] = state.added.LongestAt(text, pos, options.parse_special);
      if (id < 0) {
        ++pos;
        continue;
      }
      const VocabToken& token = vocab.tokens[id];
      size_t fragment_end = pos;
      if (token.lstrip) {
        while (fragment_end > fragment_start && IsAsciiSpace(text[fragment_end - 1])) {
          --fragment_end;
        }
      }
      if (fragment_end > fragment_start) {
        EncodeFragment(state, text.substr(fragment_start, fragment_end - fragment_start),
                       fragment_start == 0, after_added, &out);
      }
      out.push_back(id);
      after_added = true;
      pos += length;
      if (token.rstrip) {
        while (pos < text.size() && IsAsciiSpace(text[pos])) ++pos;
      }
      fragment_start = pos;
    }
  }
  if (fragment_start < text.size()) {
    EncodeFragment(state, text.substr(fragment_start), fragment_start == 0, after_added, &out);
  }

  if (options.add_special && vocab.add_eos) out.push_back(vocab.eos_id);
  return out;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special) const {
  return Decode(ids, DecodeOptions{.skip_special = skip_special});
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, const DecodeOptions& options) const {
  std::string out;
  out.reserve(ids.size() * 4);
  bool at_text_start = true;
  for (const int32_t id : ids) AppendToken(*state_, id, options, &at_text_start, &out);
  return out;
}

std::string Tokenizer::TokenToPiece(int32_t id) const {
  if (!IsValid(id)) return std::string(internal::kReplacementChar);
  return state_->pieces[id];
}

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(state_->vocab.tokens.size()); }

const Vocab& Tokenizer::vocab() const { return state_->vocab; }

TokenType Tokenizer::GetType(int32_t id) const {
  YZ_DCHECK(IsValid(id));
  return state_->vocab.tokens[id].type;
}

bool Tokenizer::IsSpecial(int32_t id) const { return IsValid(id) && IsSpecialType(GetType(id)); }

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  const auto& ids = state_->end_of_generation_ids;
  return std::binary_search(ids.begin(), ids.end(), id);
}

std::optional<int32_t> Tokenizer::FindAddedToken(std::string_view text) const {
  const auto it = state_->added_text_to_id.find(text);
  if (it == state_->added_text_to_id.end()) return std::nullopt;
  return it->second;
}

// ---- StreamingDecoder

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, DecodeOptions options)
    : state_(tokenizer.state_), options_(options) {}

std::string StreamingDecoder::Push(int32_t id) {
  AppendToken(*state_, id, options_, &at_text_start_, &pending_);
  const size_t tail = internal::IncompleteUtf8Tail(pending_);
  std::string out;
  internal::AppendUtf8Lossy(std::string_view(pending_).substr(0, pending_.size() - tail), &out);
  pending_.erase(0, pending_.size() - tail);
  return out;
}

std::string StreamingDecoder::Flush() {
  std::string out;
  internal::AppendUtf8Lossy(pending_, &out);
  pending_.clear();
  at_text_start_ = true;
  return out;
}

}  // namespace yunzhi::engine
