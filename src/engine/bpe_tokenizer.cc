// Byte-level BPE ("gpt2" vocabs): the text is split into pieces by the pre-tokenizer, each piece
// starts as single bytes, and the adjacent pair with the best (lowest) merge rank merges until
// no pair can (leftmost first on ties), as Hugging Face's BPE model and tiktoken do. A priority
// queue of candidate pairs keeps a piece O(n log n), so long runs without spaces stay cheap.
#include <queue>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "engine/tokenizer_state.h"

namespace yunzhi::engine::internal {
namespace {

struct Symbol {
  int32_t id;  // -1: a byte the vocab has no token for
  int32_t prev;
  int32_t next;
  uint32_t start;  // byte offset in the piece
  uint32_t size;   // bytes; 0 once merged into the symbol on its left
};

struct Candidate {
  int32_t rank;
  int32_t left;
  int32_t right;
  uint32_t size;  // size of left + right when queued: a mismatch later means it is stale
  int32_t result;
};

struct CandidateOrder {
  // std::priority_queue pops the greatest: lowest rank, then leftmost.
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

void EncodePiece(const TokenizerState& state, std::string_view piece, std::vector<int32_t>* out) {
  const Vocab& vocab = state.vocab;
  const bool by_token_rank = vocab.merge_rule == BpeMergeRule::kTokenRank;
  if (vocab.ignore_merges || by_token_rank) {
    const int32_t id = state.text_to_id.Find(piece);
    if (id >= 0) {
      out->push_back(id);
      return;
    }
  }

  std::vector<Symbol> symbols(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) {
    const auto index = static_cast<int32_t>(i);
    symbols[i] = {state.byte_to_id[static_cast<uint8_t>(piece[i])], index - 1, index + 1,
                  static_cast<uint32_t>(i), 1};
  }
  symbols.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    const uint32_t size = l.size + r.size;
    if (by_token_rank) {
      const int32_t id = state.text_to_id.Find(piece.substr(l.start, size));
      if (id >= 0) queue.push({id, left, right, size, id});
    } else {
      if (l.id < 0 || r.id < 0) return;
      const auto it = state.merges.find(PairKey(l.id, r.id));
      if (it != state.merges.end()) {
        queue.push({it->second.rank, left, right, size, it->second.result});
      }
    }
  };
  for (size_t i = 1; i < symbols.size(); ++i) {
    try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  }

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    // Stale: one side was merged away or grew since the pair was queued.
    if (left.size == 0 || right.size == 0 || left.size + right.size != c.size) continue;
    left.id = c.result;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    try_add(left.prev, c.left);
    try_add(c.left, left.next);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) {
      out->push_back(symbols[i].id);
    } else if (state.unk_fallback_id >= 0) {
      out->push_back(state.unk_fallback_id);
    }
  }
}

}  // namespace

Status BuildByteLevelBpe(TokenizerState* state) {
  const Vocab& vocab = state->vocab;
  state->byte_to_id.fill(-1);
  state->pieces.resize(vocab.tokens.size());
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    const VocabToken& token = vocab.tokens[id];
    state->pieces[id] = token.text;
    if (token.type != TokenType::kNormal) continue;
    const auto id32 = static_cast<int32_t>(id);
    state->text_to_id.Insert(token.text, id32);  // keeps the first of duplicates
    if (token.text.size() == 1) {
      int32_t& slot = state->byte_to_id[static_cast<uint8_t>(token.text[0])];
      if (slot < 0) slot = id32;
    }
  }

  if (vocab.merge_rule == BpeMergeRule::kMergeList) {
    state->merges.reserve(vocab.merges.size());
    std::string joined;
    for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
      const auto& [a, b] = vocab.merges[rank];
      joined.assign(a).append(b);
      const int32_t ia = state->text_to_id.Find(a);
      const int32_t ib = state->text_to_id.Find(b);
      const int32_t ir = state->text_to_id.Find(joined);
      // A rule naming something that is not a token can never apply; HF skips it too.
      if (ia < 0 || ib < 0 || ir < 0) continue;
      state->merges.emplace(PairKey(ia, ib), BpeMerge{static_cast<int32_t>(rank), ir});
    }
  }

  std::vector<std::string> patterns = vocab.split_patterns;
  if (patterns.empty()) {
    YZ_ASSIGN_OR_RETURN(patterns, PreTokenizerPatterns(vocab.pre));
  }
  YZ_ASSIGN_OR_RETURN(state->pre_tokenizer, PreTokenizer::Create(patterns));
  return OkStatus();
}

void EncodeByteLevelBpe(const TokenizerState& state, std::string_view text,
                        std::vector<int32_t>* out) {
  std::vector<std::string_view> pieces;
  state.pre_tokenizer->Split(text, &pieces);
  for (const std::string_view piece : pieces) EncodePiece(state, piece, out);
}

}  // namespace yunzhi::engine::internal
