// The JSON grammar constraint: an incremental pushdown parser over bytes, a cached byte trie of
// the vocabulary, and the token-mask walk (see json_constraint.h).
#include "yunzhi/engine/json_constraint.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "json_schema.h"

namespace yunzhi::engine {
namespace jg = json_grammar;

namespace {

constexpr int kMaxDepth = 32;  // frames, the sequence frame included
constexpr int32_t kMaxIntDigits = 15;
constexpr int32_t kMaxFracDigits = 15;
constexpr int32_t kMaxExpDigits = 2;

enum class FrameKind : uint8_t { kSeq, kObject, kArray, kString, kNumber, kLiterals };

// One level of the parse stack. Field use by kind:
//   kSeq      a = item index, b = bytes of a text item matched
//   kObject   phase (see FeedObject), a = current property (-1 none), b = key bytes matched,
//             c = alive key candidates (bit j = property j), d = discriminator literal index
//   kArray    phase, a = items started
//   kString   phase (0 plain, 1 after '\', 2..6 inside \uXXXX), a = code points, utf8 = bytes
//             still needed for the current character, lo/hi = range of the next one
//   kNumber   phase, neg, a = integer digits, b = fraction/exponent digits, c = |integer value|
//   kLiterals a = lo, b = hi (alive literals, sorted), c = bytes matched
struct Frame {
  FrameKind kind;
  uint8_t phase;
  uint8_t utf8;
  uint8_t lo;
  uint8_t hi;
  uint8_t neg;
  int32_t node;
  int32_t a;
  int32_t b;
  int32_t d;
  int64_t c;
};

struct ParseState {
  int32_t depth = 0;
  int32_t ws = 0;  // whitespace bytes in the current run
  Frame frames[kMaxDepth];

  void CopyFrom(const ParseState& o) {
    depth = o.depth;
    ws = o.ws;
    std::memcpy(frames, o.frames, sizeof(Frame) * static_cast<size_t>(o.depth));
  }
  Frame& top() { return frames[depth - 1]; }
  const Frame& top() const { return frames[depth - 1]; }
};

enum class Step { kFail, kOk, kRefeed };

bool IsWs(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }
bool IsHex(uint8_t c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// UTF-8 lead byte -> (continuation bytes, lo, hi of the first continuation); false if invalid.
bool Utf8Lead(uint8_t c, uint8_t* need, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    *need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    *need = 2;
    if (c == 0xE0) *lo = 0xA0;
    if (c == 0xED) *hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    *need = 3;
    if (c == 0xF0) *lo = 0x90;
    if (c == 0xF4) *hi = 0x8F;
  } else {
    return false;
  }
  return true;
}

// The 8 UTF-8 states a string can be in between characters/bytes (for the precomputed masks).
int Utf8StateIndex(uint8_t need, uint8_t lo, uint8_t hi) {
  if (need == 0) return 0;
  if (lo == 0xA0) return 4;
  if (hi == 0x9F) return 5;
  if (lo == 0x90) return 6;
  if (hi == 0x8F) return 7;
  return need;  // 1, 2, 3 with the full 80..BF range
}
void Utf8StateFromIndex(int k, uint8_t* need, uint8_t* lo, uint8_t* hi) {
  static constexpr uint8_t kNeed[8] = {0, 1, 2, 3, 2, 2, 3, 3};
  static constexpr uint8_t kLo[8] = {0x80, 0x80, 0x80, 0x80, 0xA0, 0x80, 0x90, 0x80};
  static constexpr uint8_t kHi[8] = {0xBF, 0xBF, 0xBF, 0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
  *need = kNeed[k];
  *lo = kLo[k];
  *hi = kHi[k];
}

int64_t Pow10(int k) {
  int64_t v = 1;
  for (int i = 0; i < k; ++i) v *= 10;
  return v;
}

// ---------------------------------------------------------------------------------------------
// The parser: stateless apart from the grammar; all position state is in ParseState.
class Parser {
 public:
  Parser(std::shared_ptr<const jg::Grammar> g, int32_t max_ws)
      : g_(std::move(g)), max_ws_(max_ws) {}

  void Init(ParseState& s) const {
    s.depth = 1;
    s.ws = 0;
    s.frames[0] = Frame{};
    s.frames[0].kind = FrameKind::kSeq;
    s.frames[0].d = -1;
  }

  const jg::Grammar& grammar() const { return *g_; }

  bool Feed(ParseState& s, uint8_t c) const {
    if (!IsWs(c)) s.ws = 0;
    for (;;) {
      if (s.depth == 0) return false;
      Frame& f = s.top();
      Step r = Step::kFail;
      switch (f.kind) {
        case FrameKind::kSeq:
          r = FeedSeq(s, f, c);
          break;
        case FrameKind::kObject:
          r = FeedObject(s, f, c);
          break;
        case FrameKind::kArray:
          r = FeedArray(s, f, c);
          break;
        case FrameKind::kString:
          r = FeedString(s, f, c);
          break;
        case FrameKind::kNumber:
          r = FeedNumber(s, f, c);
          break;
        case FrameKind::kLiterals:
          r = FeedLiterals(s, f, c);
          break;
      }
      if (r != Step::kRefeed) return r == Step::kOk;
    }
  }

  // Pops the frames that are complete and end lazily (numbers, literals that could continue),
  // as the end of input or a special token would. False if a lazy frame is incomplete.
  bool CloseLazy(ParseState& t) const {
    for (;;) {
      Frame& f = t.top();
      if (f.kind == FrameKind::kNumber) {
        if (!NumberComplete(f)) return false;
      } else if (f.kind == FrameKind::kLiterals) {
        if (Lit(f, f.a).size() != static_cast<size_t>(f.c)) return false;
      } else {
        return true;
      }
      Pop(t);
    }
  }

  // True when the input can end here.
  bool CanEnd(const ParseState& s) const {
    ParseState t;
    t.CopyFrom(s);
    if (!CloseLazy(t)) return false;
    const Frame& f = t.top();
    return f.kind == FrameKind::kSeq && f.a == static_cast<int32_t>(g_->sequence.size());
  }

  // The special token a text item of the sequence requires next (after closing lazy frames),
  // or -1; `after` receives the state once that token is accepted.
  int32_t PendingSpecialToken(const ParseState& s, ParseState* after = nullptr) const {
    ParseState local;
    ParseState& t = after != nullptr ? *after : local;
    t.CopyFrom(s);
    if (!CloseLazy(t)) return -1;
    Frame& f = t.top();
    if (f.kind != FrameKind::kSeq || f.a >= static_cast<int32_t>(g_->sequence.size())) return -1;
    const jg::SeqItem& item = g_->sequence[static_cast<size_t>(f.a)];
    if (item.node >= 0) return -1;
    if (item.token_id >= 0) {
      ++f.a;
      f.b = 0;
    }
    return item.token_id;
  }

  // Fewest bytes that complete the input from `s`. A literal whose choice selects what follows
  // (a tool name) is costed per alive literal, so the estimate never falls short.
  int64_t Need(const ParseState& s) const {
    if (s.depth >= 2 && s.top().kind == FrameKind::kLiterals &&
        SelectsNext(s.frames[s.depth - 2])) {
      const Frame& lit = s.top();
      int64_t best = jg::kInfiniteBytes;
      ParseState t;
      for (int32_t i = lit.a; i <= lit.b; ++i) {
        t.CopyFrom(s);
        Frame child = lit;
        child.a = i;
        --t.depth;
        ChildDone(t, child);
        int64_t rest = static_cast<int64_t>(Lit(lit, i).size()) - lit.c;
        if (rest < 0) continue;
        best = std::min(best, rest + PlainNeed(t));
      }
      return best;
    }
    return PlainNeed(s);
  }

 private:
  bool SelectsNext(const Frame& parent) const {
    if (parent.kind == FrameKind::kObject)
      return parent.a == 0 && !N(parent.node).discriminated.empty();
    if (parent.kind == FrameKind::kSeq) {
      size_t next = static_cast<size_t>(parent.a) + 1;
      for (; next < g_->sequence.size(); ++next)
        if (!g_->sequence[next].discriminated.empty()) return true;
    }
    return false;
  }

  int64_t PlainNeed(const ParseState& s) const {
    int64_t total = 0;
    for (int32_t i = s.depth - 1; i >= 0; --i) {
      total += FrameNeed(s.frames[i], i == s.depth - 1);
      if (total >= jg::kInfiniteBytes) return jg::kInfiniteBytes;
    }
    return total;
  }

  const jg::Node& N(int32_t id) const { return g_->nodes[static_cast<size_t>(id)]; }
  const std::string& Lit(const Frame& f, int32_t i) const {
    return N(f.node).literals[static_cast<size_t>(i)];
  }
  int64_t MinBytes(int32_t id) const { return id < 0 ? jg::kInfiniteBytes : N(id).min_bytes; }

  bool Ws(ParseState& s, uint8_t c) const {
    if (s.ws >= max_ws_) return false;
    (void)c;
    ++s.ws;
    return true;
  }

  void Pop(ParseState& s) const {
    Frame child = s.top();
    --s.depth;
    ChildDone(s, child);
  }

  Frame& Push(ParseState& s, FrameKind kind, int32_t node) const {
    Frame& f = s.frames[s.depth++];
    f = Frame{};
    f.kind = kind;
    f.node = node;
    return f;
  }

  void ChildDone(ParseState& s, const Frame& child) const {
    if (s.depth == 0) return;
    Frame& f = s.top();
    switch (f.kind) {
      case FrameKind::kSeq:
        if (child.kind == FrameKind::kLiterals) f.d = child.a;
        ++f.a;
        f.b = 0;
        break;
      case FrameKind::kObject:
        if (f.phase == 1) {  // free object: the key string closed
          f.phase = 2;
        } else {
          if (f.a == 0 && !N(f.node).discriminated.empty()) f.d = child.a;
          f.phase = 4;
        }
        break;
      case FrameKind::kArray:
        f.phase = 1;
        break;
      default:
        break;
    }
  }

  bool StartValue(ParseState& s, int32_t node, uint8_t c) const {
    if (node < 0 || s.depth >= kMaxDepth) return false;
    const jg::Node& n = N(node);
    if (n.min_bytes >= jg::kInfiniteBytes) return false;
    switch (n.kind) {
      case jg::NodeKind::kUnion:
        return StartValue(s, n.dispatch[c], c);
      case jg::NodeKind::kObject: {
        if (c != '{') return false;
        Frame& f = Push(s, FrameKind::kObject, node);
        f.a = -1;
        f.d = -1;
        return true;
      }
      case jg::NodeKind::kArray:
        if (c != '[') return false;
        Push(s, FrameKind::kArray, node);
        return true;
      case jg::NodeKind::kString:
        if (c != '"') return false;
        Push(s, FrameKind::kString, node);
        return true;
      case jg::NodeKind::kNumber:
      case jg::NodeKind::kInteger: {
        Frame& f = Push(s, FrameKind::kNumber, node);
        return FeedNumber(s, f, c) == Step::kOk;
      }
      case jg::NodeKind::kLiterals: {
        Frame& f = Push(s, FrameKind::kLiterals, node);
        f.a = 0;
        f.b = static_cast<int32_t>(n.literals.size()) - 1;
        return FeedLiterals(s, f, c) == Step::kOk;
      }
    }
    return false;
  }

  Step FeedSeq(ParseState& s, Frame& f, uint8_t c) const {
    if (f.a >= static_cast<int32_t>(g_->sequence.size())) return Step::kFail;
    const jg::SeqItem& item = g_->sequence[static_cast<size_t>(f.a)];
    if (item.node < 0) {
      if (item.token_id >= 0 || static_cast<uint8_t>(item.text[static_cast<size_t>(f.b)]) != c)
        return Step::kFail;
      if (++f.b == static_cast<int32_t>(item.text.size())) {
        ++f.a;
        f.b = 0;
      }
      return Step::kOk;
    }
    if (IsWs(c)) return Ws(s, c) ? Step::kOk : Step::kFail;
    return StartValue(s, SeqNode(f, item), c) ? Step::kOk : Step::kFail;
  }
  int32_t SeqNode(const Frame& f, const jg::SeqItem& item) const {
    if (item.discriminated.empty()) return item.node;
    if (f.d < 0) return -1;
    return f.d >= 0 && f.d < static_cast<int32_t>(item.discriminated.size())
               ? item.discriminated[static_cast<size_t>(f.d)]
               : -1;
  }

  // Value node of property j of a typed object (discriminated: chosen by property 0).
  int32_t PropNode(const Frame& f, int32_t j) const {
    const jg::Node& n = N(f.node);
    if (j == 1 && !n.discriminated.empty()) {
      return f.d >= 0 && f.d < static_cast<int32_t>(n.discriminated.size())
                 ? n.discriminated[static_cast<size_t>(f.d)]
                 : -1;
    }
    return n.properties[static_cast<size_t>(j)].node;
  }
  int64_t PropMin(const Frame& f, int32_t j) const {
    const jg::Node& n = N(f.node);
    if (!n.discriminated.empty() && j <= 1 && f.d < 0) {
      // Name and arguments costed together until the name is known.
      if (j == 1) return 0;
      return jg::JointMin(N(n.properties[0].node), n.discriminated, g_->nodes);
    }
    return MinBytes(PropNode(f, j));
  }
  // Properties that may be written after property `after`: up to and including the next
  // required one, skipping those with no finite instance.
  uint64_t Candidates(const Frame& f, int32_t after) const {
    const jg::Node& n = N(f.node);
    uint64_t mask = 0;
    for (int32_t j = after + 1; j < static_cast<int32_t>(n.properties.size()); ++j) {
      if (PropMin(f, j) < jg::kInfiniteBytes) mask |= uint64_t{1} << j;
      if (n.properties[static_cast<size_t>(j)].required) break;
    }
    return mask;
  }
  bool RequiredAfter(const Frame& f, int32_t after) const {
    const jg::Node& n = N(f.node);
    for (int32_t j = after + 1; j < static_cast<int32_t>(n.properties.size()); ++j)
      if (n.properties[static_cast<size_t>(j)].required) return true;
    return false;
  }

  // Object phases: 0 after '{', 1 in a key, 2 before ':', 3 before the value, 4 after the
  // value, 5 after ','.
  Step FeedObject(ParseState& s, Frame& f, uint8_t c) const {
    const jg::Node& n = N(f.node);
    switch (f.phase) {
      case 0:
      case 5:
        if (IsWs(c)) return Ws(s, c) ? Step::kOk : Step::kFail;
        if (c == '}' && f.phase == 0) {
          if (n.free_keys ? false : RequiredAfter(f, f.a)) return Step::kFail;
          Pop(s);
          return Step::kOk;
        }
        if (c != '"') return Step::kFail;
        if (n.free_keys) {
          if (n.additional < 0 || MinBytes(n.additional) >= jg::kInfiniteBytes) return Step::kFail;
          if (s.depth >= kMaxDepth) return Step::kFail;
          f.phase = 1;
          Push(s, FrameKind::kString, -1);
          return Step::kOk;
        }
        f.c = static_cast<int64_t>(Candidates(f, f.a));
        if (f.c == 0) return Step::kFail;
        f.b = 1;
        f.phase = 1;
        return Step::kOk;
      case 1: {  // typed key
        uint64_t alive = static_cast<uint64_t>(f.c);
        uint64_t next = 0;
        int32_t done = -1;
        for (uint64_t m = alive; m != 0; m &= m - 1) {
          int32_t j = __builtin_ctzll(m);
          const std::string& key = n.properties[static_cast<size_t>(j)].key;
          if (key.size() > static_cast<size_t>(f.b) &&
              static_cast<uint8_t>(key[static_cast<size_t>(f.b)]) == c) {
            next |= uint64_t{1} << j;
            if (key.size() == static_cast<size_t>(f.b) + 1) done = j;
          }
        }
        if (next == 0) return Step::kFail;
        f.c = static_cast<int64_t>(next);
        ++f.b;
        if (done >= 0) {
          f.a = done;
          f.phase = 2;
        }
        return Step::kOk;
      }
      case 2:
        if (IsWs(c)) return Ws(s, c) ? Step::kOk : Step::kFail;
        if (c != ':') return Step::kFail;
        f.phase = 3;
        return Step::kOk;
      case 3:
        if (IsWs(c)) return Ws(s, c) ? Step::kOk : Step::kFail;
        return StartValue(s, n.free_keys ? n.additional : PropNode(f, f.a), c) ? Step::kOk
                                                                               : Step::kFail;
      case 4:
        if (IsWs(c)) return Ws(s, c) ? Step::kOk : Step::kFail;
        if (c == ',') {
          if (!n.free_keys && Candidates(f, f.a) == 0) return Step::kFail;
          f.phase = 5;
          return Step::kOk;
        }
        if (c == '}') {
          if (!n.free_keys && RequiredAfter(f, f.a)) return Step::kFail;
          Pop(s);
          return Step::kOk;
        }
        return Step::kFail;
    }
    return Step::kFail;
  }

  int32_t ItemNode(const jg::Node& n, int32_t k) const {
    if (k < static_cast<int32_t>(n.prefix_items.size()))
      return n.prefix_items[static_cast<size_t>(k)];
    return n.items;
  }

  // Array phases: 0 after '[', 1 after a value, 2 after ','.
  Step FeedArray(ParseState& s, Frame& f, uint8_t c) const {
    const jg::Node& n = N(f.node);
    if (IsWs(c)) return Ws(s, c) ? Step::kOk : Step::kFail;
    bool can_add =
        (n.max_items < 0 || f.a < n.max_items) && MinBytes(ItemNode(n, f.a)) < jg::kInfiniteBytes;
    if (f.phase == 1) {
      if (c == ',' && can_add) {
        f.phase = 2;
        return Step::kOk;
      }
      if (c == ']' && f.a >= n.min_items) {
        Pop(s);
        return Step::kOk;
      }
      return Step::kFail;
    }
    if (c == ']' && f.phase == 0 && n.min_items == 0) {
      Pop(s);
      return Step::kOk;
    }
    if (!can_add) return Step::kFail;
    int32_t item = ItemNode(n, f.a);
    ++f.a;
    return StartValue(s, item, c) ? Step::kOk : Step::kFail;
  }

  Step FeedString(ParseState& s, Frame& f, uint8_t c) const {
    if (f.utf8 > 0) {
      if (c < f.lo || c > f.hi) return Step::kFail;
      --f.utf8;
      f.lo = 0x80;
      f.hi = 0xBF;
      return Step::kOk;
    }
    switch (f.phase) {
      case 0:
        break;
      case 1:
        if (c == 'u') {
          f.phase = 2;
          return Step::kOk;
        }
        if (std::string_view("\"\\/bfnrt").find(static_cast<char>(c)) == std::string_view::npos)
          return Step::kFail;
        f.phase = 0;
        return Step::kOk;
      case 2:
        if (!IsHex(c)) return Step::kFail;
        f.phase = (c == 'd' || c == 'D') ? 3 : 4;
        return Step::kOk;
      case 3:  // \uD? : refuse surrogates D800..DFFF
        if (c < '0' || c > '7') return Step::kFail;
        f.phase = 5;
        return Step::kOk;
      case 4:
      case 5:
      case 6:
        if (!IsHex(c)) return Step::kFail;
        f.phase = f.phase == 6 ? 0 : f.phase + 1;
        return Step::kOk;
    }
    int64_t min_len = f.node >= 0 ? N(f.node).min_length : 0;
    int64_t max_len = f.node >= 0 ? N(f.node).max_length : -1;
    if (c == '"') {
      if (f.a < min_len) return Step::kFail;
      Pop(s);
      return Step::kOk;
    }
    if (c < 0x20) return Step::kFail;
    if (max_len >= 0 && f.a >= max_len) return Step::kFail;
    if (c == '\\') {
      f.phase = 1;
    } else if (c >= 0x80) {
      if (!Utf8Lead(c, &f.utf8, &f.lo, &f.hi)) return Step::kFail;
    }
    ++f.a;
    return Step::kOk;
  }

  bool NumberInRange(const jg::Node& n, bool neg, int64_t v) const {
    int64_t x = neg ? -v : v;
    if (n.has_minimum && x < n.minimum) return false;
    if (n.has_maximum && x > n.maximum) return false;
    return true;
  }
  // Whether some integer with |value| in [lo_abs, hi_abs] and the given sign is in range.
  bool IntegerHits(const jg::Node& n, bool neg, int64_t lo_abs, int64_t hi_abs) const {
    int64_t lo = neg ? -hi_abs : lo_abs;
    int64_t hi = neg ? -lo_abs : hi_abs;
    if (n.has_minimum && hi < n.minimum) return false;
    if (n.has_maximum && lo > n.maximum) return false;
    return true;
  }
  // Whether some completion of an integer prefix (sign, |value| so far, digits) is in range.
  bool IntegerFeasible(const jg::Node& n, bool neg, int64_t v, int32_t digits) const {
    if (!n.has_minimum && !n.has_maximum) return true;
    auto hits = [&](int64_t lo_abs, int64_t hi_abs) {
      int64_t lo = neg ? -hi_abs : lo_abs;
      int64_t hi = neg ? -lo_abs : hi_abs;
      if (n.has_minimum && hi < n.minimum) return false;
      if (n.has_maximum && lo > n.maximum) return false;
      return true;
    };
    if (digits == 0) return hits(0, Pow10(kMaxIntDigits) - 1);
    if (hits(v, v)) return true;
    if (v == 0) return false;  // no digits after a leading zero
    for (int32_t k = 1; digits + k <= kMaxIntDigits; ++k) {
      int64_t p = Pow10(k);
      if (hits(v * p, v * p + p - 1)) return true;
    }
    return false;
  }
  bool NumberComplete(const Frame& f) const {
    if (f.phase != 2 && f.phase != 3 && f.phase != 5 && f.phase != 8) return false;
    const jg::Node& n = N(f.node);
    return n.kind != jg::NodeKind::kInteger || NumberInRange(n, f.neg != 0, f.c);
  }

  // Number phases: 0 start, 1 after '-', 2 integer digits, 3 a lone '0', 4 after '.',
  // 5 fraction digits, 6 after 'e', 7 after the exponent sign, 8 exponent digits.
  Step FeedNumber(ParseState& s, Frame& f, uint8_t c) const {
    const jg::Node& n = N(f.node);
    bool integer = n.kind == jg::NodeKind::kInteger;
    if (f.phase == 0) {
      if (c == '-') {
        f.neg = 1;
        f.phase = 1;
        return IntegerFeasible(n, true, 0, 0) ? Step::kOk : Step::kFail;
      }
      f.phase = 1;
    }
    switch (f.phase) {
      case 1:
        if (!IsDigit(c)) return Step::kFail;
        f.c = c - '0';
        f.a = 1;
        f.phase = c == '0' ? 3 : 2;
        return IntegerFeasible(n, f.neg != 0, f.c, 1) ? Step::kOk : Step::kFail;
      case 2:
      case 3:
        if (IsDigit(c) && f.phase == 2 && f.a < kMaxIntDigits) {
          int64_t v = f.c * 10 + (c - '0');
          if (!IntegerFeasible(n, f.neg != 0, v, f.a + 1)) return Step::kFail;
          f.c = v;
          ++f.a;
          return Step::kOk;
        }
        if (c == '.' && !integer) {
          f.phase = 4;
          return Step::kOk;
        }
        if ((c == 'e' || c == 'E') && !integer) {
          f.phase = 6;
          return Step::kOk;
        }
        break;
      case 4:
        if (!IsDigit(c)) return Step::kFail;
        f.phase = 5;
        f.b = 1;
        return Step::kOk;
      case 5:
        if (IsDigit(c) && f.b < kMaxFracDigits) {
          ++f.b;
          return Step::kOk;
        }
        if (c == 'e' || c == 'E') {
          f.phase = 6;
          return Step::kOk;
        }
        break;
      case 6:
        if (c == '+' || c == '-') {
          f.phase = 7;
          return Step::kOk;
        }
        [[fallthrough]];
      case 7:
        if (!IsDigit(c)) return Step::kFail;
        f.phase = 8;
        f.b = 1;
        return Step::kOk;
      case 8:
        if (IsDigit(c) && f.b < kMaxExpDigits) {
          ++f.b;
          return Step::kOk;
        }
        break;
    }
    if (!NumberComplete(f)) return Step::kFail;
    Pop(s);
    return Step::kRefeed;
  }

  Step FeedLiterals(ParseState& s, Frame& f, uint8_t c) const {
    const std::vector<std::string>& lits = N(f.node).literals;
    size_t pos = static_cast<size_t>(f.c);
    int32_t lo = -1;
    int32_t hi = -1;
    for (int32_t i = f.a; i <= f.b; ++i) {
      const std::string& l = lits[static_cast<size_t>(i)];
      if (l.size() > pos && static_cast<uint8_t>(l[pos]) == c) {
        if (lo < 0) lo = i;
        hi = i;
      } else if (lo >= 0) {
        break;
      }
    }
    if (lo < 0) {
      if (lits[static_cast<size_t>(f.a)].size() != pos) return Step::kFail;
      Pop(s);  // a shorter literal was complete: the byte belongs to the parent
      return Step::kRefeed;
    }
    f.a = lo;
    f.b = hi;
    ++f.c;
    if (lo == hi && lits[static_cast<size_t>(lo)].size() == pos + 1) Pop(s);
    return Step::kOk;
  }

  // ---- completion cost

  // Bytes to finish a typed object after the value of property j (commas, required ones, '}').
  int64_t ObjectRest(const Frame& f, int32_t j) const {
    const jg::Node& n = N(f.node);
    int64_t v = 1;
    for (int32_t k = j + 1; k < static_cast<int32_t>(n.properties.size()); ++k) {
      const jg::Property& p = n.properties[static_cast<size_t>(k)];
      if (p.required) v += 1 + static_cast<int64_t>(p.key.size()) + 1 + PropMin(f, k);
    }
    return std::min(v, jg::kInfiniteBytes);
  }
  int64_t Entry(const Frame& f, int32_t j) const {
    return static_cast<int64_t>(N(f.node).properties[static_cast<size_t>(j)].key.size()) + 1 +
           PropMin(f, j);
  }
  int64_t ArrayRest(const jg::Node& n, int32_t count) const {
    int64_t v = 1;
    for (int64_t k = count; k < n.min_items && v < jg::kInfiniteBytes; ++k)
      v += 1 + MinBytes(ItemNode(n, static_cast<int32_t>(std::min<int64_t>(k, 1 << 30))));
    return std::min(v, jg::kInfiniteBytes);
  }

  int64_t FrameNeed(const Frame& f, bool top) const {
    switch (f.kind) {
      case FrameKind::kSeq: {
        size_t n_items = g_->sequence.size();
        if (f.a >= static_cast<int32_t>(n_items)) return 0;
        size_t i = static_cast<size_t>(f.a);
        const jg::SeqItem& item = g_->sequence[i];
        int64_t total = 0;
        if (item.node >= 0) {
          if (top) total += jg::SeqItemMinBytes(*g_, i, f.d);
        } else {
          total += item.token_id >= 0 ? 1 : static_cast<int64_t>(item.text.size()) - f.b;
        }
        for (size_t j = i + 1; j < n_items; ++j) total += jg::SeqItemMinBytes(*g_, j, f.d);
        return std::min(total, jg::kInfiniteBytes);
      }
      case FrameKind::kObject: {
        const jg::Node& n = N(f.node);
        if (n.free_keys) {
          int64_t add = MinBytes(n.additional);
          switch (f.phase) {
            case 0:
              return 1;
            case 1:
              return 2 + add;
            case 2:
              return 2 + add;
            case 3:
              return top ? add + 1 : 1;
            case 4:
              return 1;
            default:
              return 4 + add;
          }
        }
        switch (f.phase) {
          case 0:
          case 5: {
            if (f.phase == 0 && !RequiredAfter(f, f.a)) return 1;
            int64_t best = jg::kInfiniteBytes;
            for (uint64_t m = Candidates(f, f.a); m != 0; m &= m - 1) {
              int32_t j = __builtin_ctzll(m);
              best = std::min(best, Entry(f, j) + ObjectRest(f, j));
            }
            return best;
          }
          case 1: {
            int64_t best = jg::kInfiniteBytes;
            for (uint64_t m = static_cast<uint64_t>(f.c); m != 0; m &= m - 1) {
              int32_t j = __builtin_ctzll(m);
              best = std::min(best, Entry(f, j) - f.b + ObjectRest(f, j));
            }
            return best;
          }
          case 2:
            return 1 + PropMin(f, f.a) + ObjectRest(f, f.a);
          case 3:
            return (top ? PropMin(f, f.a) : 0) + ObjectRest(f, f.a);
          default:
            return ObjectRest(f, f.a);
        }
      }
      case FrameKind::kArray: {
        const jg::Node& n = N(f.node);
        if (!top || f.phase == 1) return ArrayRest(n, f.a);
        if (f.phase == 0 && n.min_items == 0) return 1;
        return MinBytes(ItemNode(n, f.a)) + ArrayRest(n, f.a + 1);
      }
      case FrameKind::kString: {
        static constexpr int kEscape[7] = {0, 1, 4, 3, 3, 2, 1};
        int64_t min_len = f.node >= 0 ? N(f.node).min_length : 0;
        return kEscape[f.phase] + f.utf8 + std::max<int64_t>(0, min_len - f.a) + 1;
      }
      case FrameKind::kNumber: {
        if (NumberComplete(f)) return 0;
        const jg::Node& n = N(f.node);
        if (n.kind != jg::NodeKind::kInteger || (f.phase != 1 && f.phase != 2 && f.phase != 3))
          return 1;
        // Fewest more digits that reach the range.
        for (int32_t k = 1; f.a + k <= kMaxIntDigits; ++k) {
          if (f.a == 0) {
            int64_t lo = k == 1 ? 0 : Pow10(k - 1);
            if (IntegerHits(n, f.neg != 0, lo, Pow10(k) - 1)) return k;
          } else {
            if (f.c == 0) break;
            int64_t p = Pow10(k);
            if (IntegerHits(n, f.neg != 0, f.c * p, f.c * p + p - 1)) return k;
          }
        }
        return jg::kInfiniteBytes;
      }
      case FrameKind::kLiterals: {
        int64_t best = jg::kInfiniteBytes;
        for (int32_t i = f.a; i <= f.b; ++i)
          best = std::min(best, static_cast<int64_t>(Lit(f, i).size()) - f.c);
        return best;
      }
    }
    return 0;
  }

  std::shared_ptr<const jg::Grammar> g_;
  int32_t max_ws_;
};

// ---------------------------------------------------------------------------------------------
// The vocabulary index: built once per vocabulary, shared, immutable.

// A byte trie in preorder: node i has byte[i] at depth[i] (1 = first byte); skip[i] is the
// index after its subtree; tokens ending at i are ids[first[i] .. first[i + 1]).
struct Trie {
  std::vector<uint8_t> byte;
  std::vector<uint16_t> depth;
  std::vector<uint32_t> skip;
  std::vector<uint32_t> first;
  std::vector<int32_t> ids;

  void Build(std::vector<std::pair<std::string_view, int32_t>> entries) {
    std::sort(entries.begin(), entries.end());
    std::vector<uint32_t> path;  // node index per depth - 1
    std::string_view prev;
    for (const auto& [piece, id] : entries) {
      size_t lcp = 0;
      while (lcp < prev.size() && lcp < piece.size() && prev[lcp] == piece[lcp]) ++lcp;
      if (lcp == piece.size() && piece.size() == prev.size() && !path.empty()) {
        ids.push_back(id);  // same text as the previous token: same node
        continue;
      }
      while (path.size() > lcp) {
        skip[path.back()] = static_cast<uint32_t>(byte.size());
        path.pop_back();
      }
      for (size_t k = lcp; k < piece.size(); ++k) {
        path.push_back(static_cast<uint32_t>(byte.size()));
        byte.push_back(static_cast<uint8_t>(piece[k]));
        depth.push_back(static_cast<uint16_t>(k + 1));
        skip.push_back(0);
        first.push_back(static_cast<uint32_t>(ids.size()));
      }
      ids.push_back(id);
      prev = piece;
    }
    for (uint32_t i : path) skip[i] = static_cast<uint32_t>(byte.size());
    first.push_back(static_cast<uint32_t>(ids.size()));
  }
  size_t size() const { return byte.size(); }
};

struct VocabIndex {
  int32_t n_vocab = 0;
  std::vector<std::string> pieces;       // empty for tokens never allowed in JSON
  Trie full;                             // every allowed token
  Trie impure;                           // tokens that are not plain string characters
  std::vector<TokenBitmask> pure_masks;  // per UTF-8 state (Utf8StateIndex)
  // pure_tail_le[k * 3 + x]: pure tokens valid in UTF-8 state k that end with at most x bytes of
  // a character still missing (x = 0, 1, 2; 3 is pure_masks[k]).
  std::vector<TokenBitmask> pure_tail_le;
  int32_t max_pure_chars = 0;
  size_t max_token_bytes = 0;
  std::vector<int32_t> default_end_ids;
};

bool IsPlainStringByte(uint8_t c) { return c >= 0x20 && c != '"' && c != '\\'; }

std::shared_ptr<const VocabIndex> BuildVocabIndex(const Tokenizer& tok) {
  auto index = std::make_shared<VocabIndex>();
  int32_t n = tok.n_vocab();
  index->n_vocab = n;
  index->pieces.resize(static_cast<size_t>(n));
  for (int k = 0; k < 8; ++k) {
    index->pure_masks.emplace_back(n);
    index->pure_masks.back().DisallowAll();
    for (int x = 0; x < 3; ++x) {
      index->pure_tail_le.emplace_back(n);
      index->pure_tail_le.back().DisallowAll();
    }
  }
  std::vector<std::pair<std::string_view, int32_t>> all;
  std::vector<std::pair<std::string_view, int32_t>> impure;
  for (int32_t id = 0; id < n; ++id) {
    if (tok.IsEndOfGeneration(id)) index->default_end_ids.push_back(id);
    TokenType type = tok.GetType(id);
    if (type != TokenType::kNormal && type != TokenType::kByte) continue;
    std::string piece = tok.TokenToPiece(id);
    if (piece.empty()) continue;
    index->pieces[static_cast<size_t>(id)] = std::move(piece);
  }
  for (int32_t id = 0; id < n; ++id) {
    std::string_view piece = index->pieces[static_cast<size_t>(id)];
    if (piece.empty()) continue;
    index->max_token_bytes = std::max(index->max_token_bytes, piece.size());
    all.emplace_back(piece, id);
    bool plain = std::all_of(piece.begin(), piece.end(),
                             [](char ch) { return IsPlainStringByte(static_cast<uint8_t>(ch)); });
    if (!plain) {
      impure.emplace_back(piece, id);
      continue;
    }
    int32_t chars = 0;
    for (char ch : piece) chars += (static_cast<uint8_t>(ch) & 0xC0) != 0x80 ? 1 : 0;
    index->max_pure_chars = std::max(index->max_pure_chars, chars);
    for (int k = 0; k < 8; ++k) {
      uint8_t need, lo, hi;
      Utf8StateFromIndex(k, &need, &lo, &hi);
      bool ok = true;
      for (char ch : piece) {
        uint8_t c = static_cast<uint8_t>(ch);
        if (need > 0) {
          if (c < lo || c > hi) {
            ok = false;
            break;
          }
          --need;
          lo = 0x80;
          hi = 0xBF;
        } else if (c >= 0x80 && !Utf8Lead(c, &need, &lo, &hi)) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      index->pure_masks[static_cast<size_t>(k)].Allow(id);
      for (int x = need; x < 3; ++x) index->pure_tail_le[static_cast<size_t>(k * 3 + x)].Allow(id);
    }
  }
  index->full.Build(std::move(all));
  index->impure.Build(std::move(impure));
  return index;
}

uint64_t VocabFingerprint(const Tokenizer& tok) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ULL; };
  const Vocab& v = tok.vocab();
  mix(v.tokens.size());
  mix(static_cast<uint64_t>(v.model));
  for (const VocabToken& t : v.tokens) {
    mix(std::hash<std::string_view>{}(t.text));
    mix(static_cast<uint64_t>(t.type));
  }
  return h;
}

std::shared_ptr<const VocabIndex> GetVocabIndex(const Tokenizer& tok) {
  // The most recently used indexes, kept alive (a few MB each for 150k-token vocabularies) so
  // that requests one after another do not rebuild them.
  constexpr size_t kMaxCached = 4;
  static std::mutex mu;
  // Guarded by mu: (fingerprint, index), most recently used first.
  static std::vector<std::pair<uint64_t, std::shared_ptr<const VocabIndex>>> cache;
  uint64_t key = VocabFingerprint(tok);
  auto lookup = [&]() -> std::shared_ptr<const VocabIndex> {
    for (size_t i = 0; i < cache.size(); ++i) {
      if (cache[i].first != key) continue;
      std::rotate(cache.begin(), cache.begin() + static_cast<std::ptrdiff_t>(i),
                  cache.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      return cache[0].second;
    }
    return nullptr;
  };
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto p = lookup()) return p;
  }
  // Built outside the lock: two first requests may both build; the first stored wins.
  std::shared_ptr<const VocabIndex> built = BuildVocabIndex(tok);
  std::lock_guard<std::mutex> lock(mu);
  if (auto p = lookup()) return p;
  cache.insert(cache.begin(), {key, built});
  if (cache.size() > kMaxCached) cache.pop_back();
  return built;
}

// ---------------------------------------------------------------------------------------------

class GrammarConstraint final : public JsonConstraint {
 public:
  GrammarConstraint(std::shared_ptr<const VocabIndex> vocab, Parser parser,
                    std::vector<int32_t> end_ids)
      : vocab_(std::move(vocab)),
        parser_(std::move(parser)),
        end_ids_(std::move(end_ids)),
        scratch_(vocab_->n_vocab) {
    parser_.Init(state_);
    for (int32_t id : end_ids_) {
      if (id >= 0 && id < vocab_->n_vocab) is_end_.push_back(id);
    }
  }

  void SetRemainingTokens(int64_t n_tokens) override { remaining_ = n_tokens; }
  bool IsComplete() const override { return parser_.CanEnd(state_); }
  int64_t MinCompletionBytes() const override { return parser_.Need(state_); }

  Status FillAllowed(TokenBitmask& allowed) override {
    if (allowed.n_vocab() != vocab_->n_vocab)
      return InternalError("JSON constraint: mask size differs from the vocabulary");
    scratch_.DisallowAll();
    Walk(scratch_);
    ParseState after;
    int32_t special = parser_.PendingSpecialToken(state_, &after);
    if (special >= 0 && (remaining_ < 0 ||
                         parser_.Need(after) <= std::max(remaining_ - 1, parser_.Need(state_) - 1)))
      scratch_.Allow(special);
    if (parser_.CanEnd(state_)) {
      for (int32_t id : is_end_) scratch_.Allow(id);
    }
    allowed.IntersectWith(scratch_);
    return OkStatus();
  }

  Status Accept(int32_t token) override {
    if (remaining_ > 0) --remaining_;
    if (std::find(is_end_.begin(), is_end_.end(), token) != is_end_.end() &&
        parser_.CanEnd(state_)) {
      return OkStatus();
    }
    {
      ParseState after;
      int32_t special = parser_.PendingSpecialToken(state_, &after);
      if (special >= 0 && token == special) {
        state_.CopyFrom(after);
        return OkStatus();
      }
    }
    if (token < 0 || token >= vocab_->n_vocab)
      return InvalidArgumentError("token " + std::to_string(token) + " is out of range");
    const std::string& piece = vocab_->pieces[static_cast<size_t>(token)];
    ParseState next;
    next.CopyFrom(state_);
    bool ok = !piece.empty();
    for (char c : piece) {
      if (!ok) break;
      ok = parser_.Feed(next, static_cast<uint8_t>(c));
    }
    if (!ok)
      return InvalidArgumentError("token " + std::to_string(token) +
                                  " is not allowed by the JSON grammar here");
    state_.CopyFrom(next);
    return OkStatus();
  }

 private:
  // Fills `mask` with the tokens allowed by the grammar and the budget.
  void Walk(TokenBitmask& mask) {
    // Budget: a token is allowed when the shortest completion after it fits in the tokens
    // left after it (or, when already over budget, when it shortens the completion).
    int64_t need_now = -1;
    int64_t limit = jg::kInfiniteBytes;
    if (remaining_ >= 0) {
      need_now = parser_.Need(state_);
      limit = std::max(remaining_ - 1, need_now - 1);
    }
    const Frame& top = state_.top();
    const bool check_budget = remaining_ >= 0;
    const Trie* trie = &vocab_->full;
    if (top.kind == FrameKind::kString && top.phase == 0) {
      // Plain-character tokens from the precomputed masks; only the others are walked. Under a
      // budget a plain token changes the completion cost by exactly (its trailing incomplete
      // character bytes - the bytes it completes), once minLength is reached.
      const jg::Grammar& g = parser_.grammar();
      const jg::Node* n = top.node >= 0 ? &g.nodes[static_cast<size_t>(top.node)] : nullptr;
      int64_t max_len = n != nullptr ? n->max_length : -1;
      int64_t min_len = n != nullptr ? n->min_length : 0;
      bool room = max_len < 0 || max_len - top.a >= vocab_->max_pure_chars;
      if (room && (!check_budget || top.a >= min_len)) {
        size_t k = static_cast<size_t>(Utf8StateIndex(top.utf8, top.lo, top.hi));
        int64_t slack = check_budget ? limit - need_now + top.utf8 : 3;
        if (slack >= 3) {
          mask = vocab_->pure_masks[k];
        } else if (slack >= 0) {
          mask = vocab_->pure_tail_le[k * 3 + static_cast<size_t>(slack)];
        }
        trie = &vocab_->impure;
      }
    }
    // Parser states along the current trie path; per thread, so idle constraints hold none.
    thread_local std::vector<ParseState> path;
    if (path.size() < vocab_->max_token_bytes + 1) path.resize(vocab_->max_token_bytes + 1);
    path[0].CopyFrom(state_);
    const size_t n = trie->size();
    for (size_t i = 0; i < n;) {
      const uint16_t d = trie->depth[i];
      ParseState& st = path[d];
      st.CopyFrom(path[d - 1]);
      if (!parser_.Feed(st, trie->byte[i])) {
        i = trie->skip[i];
        continue;
      }
      uint32_t b = trie->first[i];
      uint32_t e = trie->first[i + 1];
      if (b != e && (!check_budget || parser_.Need(st) <= limit)) {
        for (uint32_t k = b; k < e; ++k) mask.Allow(trie->ids[k]);
      }
      ++i;
    }
  }

  std::shared_ptr<const VocabIndex> vocab_;
  Parser parser_;
  std::vector<int32_t> end_ids_;
  std::vector<int32_t> is_end_;
  TokenBitmask scratch_;
  ParseState state_;
  int64_t remaining_ = -1;
};

}  // namespace

namespace json_grammar {

Result<std::unique_ptr<JsonConstraint>> MakeGrammarConstraint(const Tokenizer& tokenizer,
                                                              Grammar grammar,
                                                              std::vector<int32_t> end_token_ids,
                                                              int32_t max_whitespace_bytes) {
  if (max_whitespace_bytes < 0 || max_whitespace_bytes > 8)
    return InvalidArgumentError("max_whitespace_bytes must be in [0, 8]", "response_format");
  std::shared_ptr<const VocabIndex> vocab = GetVocabIndex(tokenizer);
  if (end_token_ids.empty()) end_token_ids = vocab->default_end_ids;
  if (end_token_ids.empty())
    return InvalidArgumentError("the vocabulary has no end-of-generation token", "response_format");
  Parser parser(std::make_shared<const Grammar>(std::move(grammar)), max_whitespace_bytes);
  return std::unique_ptr<JsonConstraint>(
      new GrammarConstraint(std::move(vocab), std::move(parser), std::move(end_token_ids)));
}

}  // namespace json_grammar

Result<std::unique_ptr<JsonConstraint>> MakeJsonConstraint(const Tokenizer& tokenizer,
                                                           const JsonConstraintOptions& options) {
  jg::GrammarBuilder builder;
  int32_t root = builder.AnyObject();
  if (options.schema) {
    YZ_ASSIGN_OR_RETURN(root, builder.AddSchema(*options.schema));
  }
  builder.AddSequenceValue(root);
  YZ_ASSIGN_OR_RETURN(jg::Grammar grammar, builder.Finalize());
  return jg::MakeGrammarConstraint(tokenizer, std::move(grammar), options.end_token_ids,
                                   options.max_whitespace_bytes);
}

}  // namespace yunzhi::engine
