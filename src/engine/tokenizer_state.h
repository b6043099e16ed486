// The compiled, immutable state behind a Tokenizer, shared by the tokenizer sources
// (tokenizer.cc, spm_tokenizer.cc, bpe_tokenizer.cc, wordpiece_tokenizer.cc). Private to the
// engine.
//
// Thread safety: built once by Tokenizer::Create, then only read.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/tokenizer.h"

#include "engine/pretokenizer.h"

namespace yunzhi::engine::internal {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// Text -> token id, looked up with string_views.
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Byte string -> token id: an open-addressing table over one arena of key bytes, so a lookup
// that misses (most candidate pairs while merging) touches one cache line. The hot lookup of
// both merging algorithms.
class PieceMap {
 public:
  // Adds `key` -> `id` (id >= 0) unless `key` is present already: the first insertion wins.
  void Insert(std::string_view key, int32_t id);
  // The id of `key`, or -1.
  int32_t Find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const uint64_t hash = Hash(key);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id < 0) return -1;
      if (slot.hash == static_cast<uint32_t>(hash >> 32) && slot.size == key.size() &&
          std::string_view(arena_).substr(slot.offset, slot.size) == key) {
        return slot.id;
      }
    }
  }

 private:
  struct Slot {
    uint32_t hash = 0;  // high half of the 64-bit hash (the low half picks the slot)
    int32_t id = -1;    // -1: empty
    uint32_t offset = 0;
    uint32_t size = 0;
  };
  static uint64_t Hash(std::string_view key) { return std::hash<std::string_view>{}(key); }
  void Place(const Slot& slot, uint64_t hash);
  std::vector<Slot> slots_;  // size is a power of two, at most half full
  size_t mask_ = 0;
  size_t n_entries_ = 0;
  std::string arena_;
};

// Finds added tokens in text: a byte trie giving, at a position, the longest token that starts
// there. Scanning positions left to right and taking the longest match at the first position
// that has one is Hugging Face's leftmost-longest rule.
class AddedTokenMatcher {
 public:
  void Add(std::string_view text, int32_t id, bool control);
  bool empty() const { return nodes_.size() <= 1; }
  // The longest token starting at text[pos] -- ignoring control tokens unless `with_control` --
  // as {id, length in bytes}; {-1, 0} when there is none.
  std::pair<int32_t, size_t> LongestAt(std::string_view text, size_t pos, bool with_control) const;
  // Whether some token starts with this byte (a fast reject).
  bool MayStartWith(uint8_t byte) const { return first_byte_[byte]; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t token = -1;
    bool control = false;
  };
  std::vector<Node> nodes_{Node{}};
  std::array<bool, 256> first_byte_{};
};

struct BpeMerge {
  int32_t rank;
  int32_t result;
};

struct TokenizerState {
  Vocab vocab;
  // What each token contributes to decoded text (see Tokenizer::TokenToPiece).
  std::vector<std::string> pieces;
  // Tokens that text may be merged into (SentencePiece: normal and user-defined pieces; BPE:
  // normal tokens, by their bytes; WordPiece: the pieces words are cut into, "##" spelling).
  PieceMap text_to_id;
  // Control / user-defined / unknown tokens by text (FindAddedToken).
  TokenMap added_text_to_id;
  AddedTokenMatcher added;
  // SentencePiece: the byte-fallback token <0xXX> of each byte; BPE: the single-byte token of
  // each byte. -1 where the vocab has none.
  std::array<int32_t, 256> byte_to_id{};
  // BPE with BpeMergeRule::kMergeList, and SentencePiece with a merge list:
  // (left id << 32 | right id) -> rank and merged token.
  std::unordered_map<uint64_t, BpeMerge> merges;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  // SentencePiece: no piece contains "▁" after another character, so words starting at "▁" can
  // be merged independently.
  bool spm_words_are_independent = false;
  // WordPiece: the longest piece in bytes (longer candidates need no lookup).
  size_t wordpiece_max_piece_bytes = 0;
  // What a byte with no token of its own becomes: the vocab's unknown token, or -1 (dropped)
  // when there is none or when it doubles as BOS/EOS/EOT (GGUF byte-level vocabs often name
  // <|endoftext|> as "unknown"; input must never be able to produce an end-of-text token).
  int32_t unk_fallback_id = -1;
  // Tokens that end generation: EOS, EOT and control tokens with a well-known end marker text.
  std::vector<int32_t> end_of_generation_ids;  // sorted
};

// Model-specific parts of Tokenizer::Create.
Status BuildSentencePiece(TokenizerState* state);
Status BuildByteLevelBpe(TokenizerState* state);
Status BuildWordPiece(TokenizerState* state);

// Appends the tokens of `text`, a fragment that contains no added tokens.
// SentencePiece: `text` is already escaped ("▁" for spaces, prefix added).
void EncodeSentencePiece(const TokenizerState& state, std::string_view text,
                         std::vector<int32_t>* out);
void EncodeByteLevelBpe(const TokenizerState& state, std::string_view text,
                        std::vector<int32_t>* out);
// WordPiece: `text` is raw; normalisation and word splitting happen inside.
void EncodeWordPiece(const TokenizerState& state, std::string_view text, std::vector<int32_t>* out);

}  // namespace yunzhi::engine::internal
