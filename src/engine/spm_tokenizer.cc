// SentencePiece BPE ("llama" vocabs): start from single characters and repeatedly merge the
// adjacent pair whose concatenation is the vocab piece with the highest score (leftmost first on
// ties), as SentencePiece's BPE model does. Characters that end up in no piece are written as
// byte-fallback tokens <0xXX>.
//
// Hugging Face's tokenizer.json describes the same models with a merge list instead of scores
// (its converter lists, for every piece in score order, each split into two pieces). With a merge
// list the pair listed first merges first, exactly as HF's BPE does: this gives SentencePiece's
// result for converted vocabs and stays right for vocabs whose merges do not follow the scores.
//
// A priority queue of candidate pairs keeps this O(n log n) in the length of the text, which
// matters because SentencePiece sees a whole message as one piece.
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "engine/tokenizer_state.h"
#include "engine/tokenizer_unicode.h"

namespace yunzhi::engine::internal {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // "▁" U+2581

std::string ReplaceAll(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(text.substr(pos));
  return out;
}

// "<0x0A>" -> 10; -1 when `text` is not a byte token's spelling.
int ParseByteToken(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = text[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

struct Symbol {
  int32_t prev;
  int32_t next;
  int32_t id;      // the token of this symbol's text, or -1 (a character the vocab lacks)
  uint32_t start;  // byte offset in the text
  uint32_t size;   // bytes; 0 once merged into the symbol on its left
};

struct Bigram {
  float score;  // the merged piece's score, or minus the merge rule's rank
  int32_t left;
  int32_t right;
  uint32_t size;   // size of left + right when queued: a mismatch later means it is stale
  int32_t result;  // the merged token
};

struct BigramOrder {
  // std::priority_queue pops the greatest: highest score, then leftmost.
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

Status BuildSentencePiece(TokenizerState* state) {
  const Vocab& vocab = state->vocab;
  state->byte_to_id.fill(-1);
  state->pieces.resize(vocab.tokens.size());
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    const VocabToken& token = vocab.tokens[id];
    const auto id32 = static_cast<int32_t>(id);
    switch (token.type) {
      case TokenType::kByte: {
        const int byte = ParseByteToken(token.text);
        if (byte < 0) {
          return InvalidArgumentError(
              fmt::format("byte token {} is not spelled <0xXX>: '{}'", id, token.text));
        }
        if (state->byte_to_id[byte] < 0) state->byte_to_id[byte] = id32;
        state->pieces[id] = std::string(1, static_cast<char>(byte));
        break;
      }
      case TokenType::kNormal:
      case TokenType::kUserDefined:
        state->text_to_id.Insert(token.text, id32);  // keeps the first of duplicates
        state->pieces[id] = ReplaceAll(token.text, kSpaceMarker, " ");
        break;
      case TokenType::kUnused:
        state->pieces[id] = ReplaceAll(token.text, kSpaceMarker, " ");
        break;
      case TokenType::kControl:
      case TokenType::kUnknown:
        state->pieces[id] = token.text;
        break;
    }
  }
  // A merge list (tokenizer.json) replaces the scores. Rules whose halves or result are not
  // pieces can never apply; of duplicate rules the first counts.
  if (vocab.merges.size() > (size_t{1} << 24)) {
    // Ranks are queued as floats (see EncodeSegment), exact only below 2^24.
    return InvalidArgumentError(
        fmt::format("{} merge rules: at most 2^24 are supported", vocab.merges.size()));
  }
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const auto& [a, b] = vocab.merges[rank];
    const int32_t left = state->text_to_id.Find(a);
    const int32_t right = state->text_to_id.Find(b);
    const int32_t result = state->text_to_id.Find(a + b);
    if (left < 0 || right < 0 || result < 0) continue;
    const uint64_t key = static_cast<uint64_t>(left) << 32 | static_cast<uint32_t>(right);
    state->merges.emplace(key, BpeMerge{static_cast<int32_t>(rank), result});
  }
  // Whether some piece contains a "▁" right after another character ("a▁b"): if none does (true
  // of every SentencePiece vocab seen so far), text splits into independent words before "▁".
  state->spm_words_are_independent = true;
  for (const VocabToken& token : vocab.tokens) {
    if (token.type != TokenType::kNormal && token.type != TokenType::kUserDefined) continue;
    const std::string_view text = token.text;
    for (size_t pos = text.find(kSpaceMarker, 1); pos != std::string_view::npos;
         pos = text.find(kSpaceMarker, pos + 1)) {
      if (pos < kSpaceMarker.size() ||
          text.substr(pos - kSpaceMarker.size(), kSpaceMarker.size()) != kSpaceMarker) {
        state->spm_words_are_independent = false;
      }
    }
  }
  return OkStatus();
}

namespace {

// Scratch space reused across the segments of one call.
struct Scratch {
  std::vector<Symbol> symbols;
  std::vector<Bigram> queue;  // a heap ordered by BigramOrder
};

// Merges one segment (text that no piece can span out of) and appends its tokens.
void EncodeSegment(const TokenizerState& state, std::string_view text, Scratch* scratch,
                   std::vector<int32_t>* out) {
  std::vector<Symbol>& symbols = scratch->symbols;
  std::vector<Bigram>& queue = scratch->queue;
  symbols.clear();
  queue.clear();
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = ValidUtf8SequenceLength(text, pos);
    const size_t size = n == 0 ? 1 : n;  // an invalid byte is a symbol of its own
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, index + 1, state.text_to_id.Find(text.substr(pos, size)),
                       static_cast<uint32_t>(pos), static_cast<uint32_t>(size)});
    pos += size;
  }
  symbols.back().next = -1;

  const bool by_merge_list = !state.vocab.merges.empty();
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = symbols[left].size + symbols[right].size;
    if (by_merge_list) {
      if (symbols[left].id < 0 || symbols[right].id < 0) return;
      const uint64_t key =
          static_cast<uint64_t>(symbols[left].id) << 32 | static_cast<uint32_t>(symbols[right].id);
      const auto it = state.merges.find(key);
      if (it == state.merges.end()) return;
      // Ranks stay below 2^24 (a few 100k rules), so the float holds them exactly.
      queue.push_back({-static_cast<float>(it->second.rank), left, right, size, it->second.result});
    } else {
      const int32_t id = state.text_to_id.Find(text.substr(symbols[left].start, size));
      if (id < 0) return;
      queue.push_back({state.vocab.tokens[id].score, left, right, size, id});
    }
    std::push_heap(queue.begin(), queue.end(), BigramOrder());
  };
  for (size_t i = 1; i < symbols.size(); ++i) {
    try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  }

  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), BigramOrder());
    const Bigram bigram = queue.back();
    queue.pop_back();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    // Stale: one side was merged away or grew since the pair was queued.
    if (left.size == 0 || right.size == 0 || left.size + right.size != bigram.size) continue;
    left.size += right.size;
    left.id = bigram.result;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = text.substr(symbols[i].start, symbols[i].size);
    if (symbols[i].id >= 0) {
      out->push_back(symbols[i].id);
      continue;
    }
    // Only single characters can be missing (merges only ever form vocab pieces).
    for (const char c : piece) {
      const int32_t byte_id = state.byte_to_id[static_cast<uint8_t>(c)];
      if (byte_id >= 0) {
        out->push_back(byte_id);
      } else if (state.unk_fallback_id >= 0) {
        // SentencePiece without byte fallback: one unknown token for the whole character.
        out->push_back(state.unk_fallback_id);
        break;
      }
    }
  }
}

}  // namespace

void EncodeSentencePiece(const TokenizerState& state, std::string_view text,
                         std::vector<int32_t>* out) {
  if (text.empty()) return;
  Scratch scratch;
  if (!state.spm_words_are_independent) {
    EncodeSegment(state, text, &scratch, out);
    return;
  }
  // A "▁" that follows another character starts a new segment: no piece spans that boundary, so
  // merging segment by segment gives the same result as merging the whole text, with small heaps.
  size_t start = 0;
  for (size_t pos = text.find(kSpaceMarker, 1); pos != std::string_view::npos;
       pos = text.find(kSpaceMarker, pos + kSpaceMarker.size())) {
    if (pos >= kSpaceMarker.size() &&
        text.substr(pos - kSpaceMarker.size(), kSpaceMarker.size()) == kSpaceMarker) {
      continue;  // inside a run of spaces
    }
    if (pos > start) EncodeSegment(state, text.substr(start, pos - start), &scratch, out);
    start = pos;
  }
  EncodeSegment(state, text.substr(start), &scratch, out);
}

}  // namespace yunzhi::engine::internal
