// Tokenizers: text <-> token ids, exactly as the models' reference tokenizers do it.
//
// Three model kinds are supported, named as GGUF names them in `tokenizer.ggml.model`:
//   * "llama": SentencePiece BPE with byte fallback (Llama 2, Mistral, Phi-3, Baichuan, ...).
//     Spaces become "▁", a leading space is added, pieces merge by score (GGUF) or by merge rank
//     (Hugging Face tokenizer.json), characters the vocab lacks become byte tokens <0xXX>.
//   * "gpt2": byte-level BPE (GPT-2, Llama 3, Qwen2, DeepSeek, Falcon, StarCoder, MPT, ...).
//     Text is first split by the family's pre-tokenizer regexes, then each piece is merged from
//     single bytes by merge rank.
//   * "bert": WordPiece (BERT, BGE, ... embedding and reranking models). Text is cleaned,
//     lower-cased and stripped of accents, split at whitespace, punctuation and CJK characters,
//     and each word is cut greedily into the longest vocab pieces ("##" marks a piece that
//     continues a word). This model is lossy: Decode gives the normalised words joined by spaces.
// In all, added tokens ("<|im_start|>", "</s>", "[CLS]", ...) are cut out of the text first.
//
// A `Vocab` is plain data produced by a loader (GGUF metadata, Hugging Face tokenizer.json,
// tiktoken ranks) or by hand in tests; `Tokenizer::Create` validates it and builds the lookup
// structures once.
//
//   YZ_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Open(path));
//   YZ_ASSIGN_OR_RETURN(Vocab vocab, VocabFromGguf(gguf));
//   YZ_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Create(std::move(vocab)));
//   std::vector<int32_t> ids = tok.Encode("Hello", {.add_special = true});
//   std::string text = tok.Decode(ids);
//
// Bytes, not characters: all text is UTF-8 in std::string / std::string_view. Encode accepts ANY
// bytes and never fails: bytes that are not valid UTF-8 are encoded as byte tokens (byte
// fallback for SentencePiece, single-byte symbols for byte-level BPE), so Decode(Encode(x)) == x,
// except for WordPiece and where the models themselves lose information:
//   * whitespace absorbed by added tokens marked lstrip / rstrip;
//   * SentencePiece decodes a literal "▁" (U+2581) in the text as a space;
//   * a byte the vocab has no token for (many byte-level vocabs lack 0xC0, 0xF5..0xFF, ...;
//     Falcon also lacks 0x0B) becomes the unknown token, or is dropped (as Hugging Face drops
//     it) when there is none or when it is also BOS/EOS/EOT: GGUF vocabs often call
//     <|endoftext|> "unknown", and input text must never produce an end-of-text token;
//   * Unicode normalisation the vocab asks for (Vocab::normalization: NFC / NFKC).
//
// Thread safety: a Tokenizer is immutable after Create; copies share the same immutable state and
// every const method may be called from any number of threads at once. A StreamingDecoder holds
// the state of one sequence: use each from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::engine {

class GgufFile;

// Token types, numbered as GGUF's `tokenizer.ggml.token_type` numbers them.
enum class TokenType : uint8_t {
  kNormal = 1,       // ordinary vocabulary entry
  kUnknown = 2,      // the unknown token (<unk>)
  kControl = 3,      // special tokens: BOS/EOS, chat markers; matched in text only when parsing
                     // special tokens, dropped by Decode when skipping special tokens
  kUserDefined = 4,  // added tokens that are ordinary text: always cut out of the text first
  kUnused = 5,       // reserved slots; never produced by Encode
  kByte = 6,         // SentencePiece byte-fallback tokens <0x00>..<0xFF>
};

enum class TokenizerModel : uint8_t {
  kSentencePiece,  // GGUF "llama"
  kByteLevelBpe,   // GGUF "gpt2"
  kWordPiece,      // GGUF "bert"
};

// Where SentencePiece puts the space that Vocab::add_space_prefix asks for.
enum class SpacePrefixRule : uint8_t {
  // Before the text and before every fragment that follows an added token, even one that starts
  // with a space already (SentencePiece, llama.cpp, HF Prepend("▁") normalizer).
  kEveryFragment,
  // HF Metaspace pre-tokenizer, prepend_scheme "always": the same, except that a fragment that
  // starts with a space gets none.
  kMetaspaceAlways,
  // HF Metaspace, prepend_scheme "first": only before a fragment at the very start of the text,
  // and only when it does not start with a space.
  kMetaspaceFirst,
};

// Unicode normalisation applied to text between added tokens before tokenizing (HF normalizers
// "NFC" / "NFKC"). Bytes that are not valid UTF-8 are left as they are.
enum class UnicodeNormalization : uint8_t { kNone, kNfc, kNfkc };

// WordPiece (BERT) text normalisation and word splitting (HF BertNormalizer, WordPiece model).
struct WordPieceOptions {
  // Remove control characters, NUL and U+FFFD; turn all whitespace into spaces.
  bool clean_text = true;
  // Put spaces around CJK ideographs, so that each is a word of its own.
  bool handle_chinese_chars = true;
  // Decompose (NFD) and drop non-spacing marks ("é" -> "e").
  bool strip_accents = true;
  bool lowercase = true;
  // A word longer than this (in characters) becomes the unknown token.
  int32_t max_input_chars_per_word = 100;
  // Prefix of the pieces that continue a word. VocabToken::text of WordPiece tokens is spelled as
  // in tokenizer.json: "hello" starts a word, "##lo" continues one.
  std::string continuing_subword_prefix = "##";
};

// How byte-level BPE decides which adjacent pair merges next.
enum class BpeMergeRule : uint8_t {
  // Vocab::merges lists the allowed pairs; the pair listed first merges first (HF, GGUF).
  kMergeList,
  // tiktoken: any adjacent pair whose concatenation is a normal token may merge; the pair whose
  // merged token has the lowest id merges first (ids are tiktoken ranks). Vocab::merges unused.
  kTokenRank,
};

struct VocabToken {
  // The token's text.
  //  * kSentencePiece: as SentencePiece stores it: "▁" (U+2581) stands for a space, byte tokens
  //    are spelled "<0x0A>".
  //  * kByteLevelBpe: the raw bytes the token stands for (loaders undo GPT-2's byte-to-unicode
  //    mapping for normal tokens; control and user-defined tokens are stored as raw text).
  //  * kWordPiece: as tokenizer.json spells it ("hello", "##lo"; see WordPieceOptions).
  std::string text;
  // SentencePiece merge priority (higher merges first) when Vocab::merges is empty; unused
  // otherwise and by the other models.
  float score = 0.0f;
  TokenType type = TokenType::kNormal;
  // Added tokens only (HF `lstrip` / `rstrip`): when cut out of the text, whitespace on that
  // side is absorbed into the token.
  bool lstrip = false;
  bool rstrip = false;
};

struct Vocab {
  TokenizerModel model = TokenizerModel::kSentencePiece;

  // The pre-tokenizer, named as GGUF `tokenizer.ggml.pre` names it. Byte-level BPE only; ignored
  // when `split_patterns` is set. Known: "default" and "gpt-2" (also "mpt", "olmo", "jais"),
  // "llama-bpe" (Llama 3; also "llama3", "llama-v3", "dbrx", "smaug-bpe"), "qwen2" (also
  // "stablelm2", "deepseek-r1-qwen"), "starcoder" (also "refact", "command-r", "smollm",
  // "codeshell", "exaone", "minerva"), "falcon", "deepseek-coder", "deepseek-llm", and "none"
  // (no splitting: a whole fragment is one piece).
  std::string pre = "default";
  // Byte-level BPE: when not empty, these PCRE2 patterns (UTF + UCP) split the text instead of
  // the built-in ones of `pre`. They apply in order, each to every piece the previous one left;
  // both the matches and the text between matches become pieces (HF Split, "Isolated").
  std::vector<std::string> split_patterns;

  std::vector<VocabToken> tokens;  // index = token id

  // Byte-level BPE with kMergeList: the merge rules, highest priority first (index = rank). Both
  // halves are byte strings in the same representation as VocabToken::text.
  // SentencePiece: when not empty (HF tokenizer.json), pieces merge by these rules, the pair
  // listed first first, instead of by VocabToken::score; a piece no rule forms is never formed.
  std::vector<std::pair<std::string, std::string>> merges;
  BpeMergeRule merge_rule = BpeMergeRule::kMergeList;
  // Byte-level BPE: a pre-tokenized piece that is itself a normal token is emitted whole, without
  // merging (HF `ignore_merges`, Llama 3; tiktoken always does this).
  bool ignore_merges = false;

  UnicodeNormalization normalization = UnicodeNormalization::kNone;
  WordPieceOptions wordpiece;  // kWordPiece only

  // Special token ids; -1 = none.
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;  // end of turn (e.g. <|eot_id|>, <|im_end|>), when distinct from EOS
  int32_t pad_id = -1;
  int32_t unk_id = -1;

  // WordPiece: BOS is [CLS] and EOS is [SEP].
  // What EncodeOptions::add_special adds.
  bool add_bos = false;
  bool add_eos = false;
  // SentencePiece only: a space is put before the text (and before text that follows an added
  // token), as SentencePiece's "add dummy prefix" does; Decode removes it again.
  bool add_space_prefix = true;
  SpacePrefixRule space_prefix_rule = SpacePrefixRule::kEveryFragment;
};

struct EncodeOptions {
  // Add BOS / EOS as the vocab asks (Vocab::add_bos / add_eos; WordPiece: [CLS] ... [SEP]).
  bool add_special = false;
  // Recognise control tokens written as text ("<|im_start|>", "<s>") as the tokens themselves.
  // When false they are tokenized as ordinary text, as untrusted user input must be.
  // User-defined added tokens are always recognised (as Hugging Face and llama.cpp do).
  bool parse_special = false;
};

struct DecodeOptions {
  // Drop control and unknown tokens (BOS, EOS, chat markers) instead of writing their text.
  bool skip_special = false;
  // SentencePiece only: remove the space that Encode adds (add_space_prefix) from the first text
  // token and from the first text token after an added token. Set to false when decoding tokens
  // that continue earlier text (e.g. generated tokens after a prompt), where the space is real.
  // WordPiece: tokens are joined by spaces ("##" pieces by none); when true, the first token
  // written gets no space before it.
  bool remove_space_prefix = true;
};

namespace internal {
struct TokenizerState;
}  // namespace internal

class Tokenizer {
 public:
  // Validates `vocab` and builds the lookup structures (a 128k-token vocab takes tens of ms).
  // Merge rules whose halves or result are not tokens are skipped (they can never apply; HF
  // skips them too). Errors: kInvalidArgument for an empty vocab, special ids out of range,
  // add_bos/add_eos without the id, a byte token not spelled <0xXX>, split patterns that do not
  // compile; kUnimplemented for an unknown pre-tokenizer name.
  static Result<Tokenizer> Create(Vocab vocab);

  // Tokenizes `text` (any bytes; see the file comment). Never fails. Empty text gives no tokens
  // (plus BOS/EOS when add_special). Cost: linear in the text (n log n in the longest piece).
  std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& options = {}) const;

  // The text of `ids`, byte-exact: the concatenation of the tokens' pieces (so it may end in an
  // incomplete UTF-8 sequence if the ids split a character; use StreamingDecoder for output that
  // must always be valid UTF-8). Control tokens are written as their text unless skipped.
  // Ids outside [0, n_vocab()) are written as U+FFFD (the replacement character): they are a
  // caller bug, and the output stays well-formed.
  std::string Decode(std::span<const int32_t> ids, bool skip_special = false) const;
  std::string Decode(std::span<const int32_t> ids, const DecodeOptions& options) const;

  // The bytes one token contributes to decoded text ("▁Hello" -> " Hello", <0x0A> -> "\n",
  // "<|im_end|>" -> "<|im_end|>"; WordPiece: "hello" -> " hello", "##lo" -> "lo", "[CLS]" ->
  // "[CLS]"). No space prefix is removed. Out of range: U+FFFD.
  std::string TokenToPiece(int32_t id) const;

  int32_t n_vocab() const;
  const Vocab& vocab() const;
  bool IsValid(int32_t id) const { return id >= 0 && id < n_vocab(); }
  TokenType GetType(int32_t id) const;  // precondition: IsValid(id)
  // True for control and unknown tokens (what DecodeOptions::skip_special drops).
  bool IsSpecial(int32_t id) const;
  // True for EOS, EOT and control tokens whose text is a well-known end marker (<|endoftext|>,
  // <|end_of_text|>, <|eot_id|>, <|eom_id|>, <|im_end|>, <|end|>, <end_of_turn>, ...):
  // generation stops at any of them.
  bool IsEndOfGeneration(int32_t id) const;
  // The id of the control, user-defined or unknown token whose text is exactly `text`
  // (e.g. "<|im_end|>"), if any.
  std::optional<int32_t> FindAddedToken(std::string_view text) const;

 private:
  explicit Tokenizer(std::shared_ptr<const internal::TokenizerState> state);
  friend class StreamingDecoder;
  std::shared_ptr<const internal::TokenizerState> state_;
};

// Turns tokens arriving one at a time into text that is always complete, valid UTF-8: bytes of
// a character that is still incomplete (a multi-byte character split over several tokens, e.g.
// SentencePiece byte tokens <0xE4><0xB8><0xAD> for "中") are held back until it completes.
// Bytes that can never start or continue a valid character are written as U+FFFD.
// For a token sequence whose Decode() is valid UTF-8, the concatenation of everything Push and
// Flush return equals Decode() with the same options.
//
// Shares the tokenizer's immutable state (the Tokenizer object need not outlive it).
// Thread safety: one decoder per sequence, used from one thread at a time.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, DecodeOptions options = {});

  // Appends one token; returns the text that became complete (possibly empty).
  std::string Push(int32_t id);
  // Ends the sequence: returns what was held back (an incomplete character becomes U+FFFD) and
  // resets the decoder for a new sequence.
  std::string Flush();
  // Bytes currently held back (0..3).
  size_t n_pending_bytes() const { return pending_.size(); }

 private:
  std::shared_ptr<const internal::TokenizerState> state_;
  DecodeOptions options_;
  std::string pending_;
  bool at_text_start_ = true;  // the next text token is the first after the start/an added token
};

// ---- Loaders (src/engine/tokenizer_loaders.cc: GGUF, tiktoken; tokenizer_hf.cc: tokenizer.json)

// Reads the tokenizer.ggml.* metadata of a GGUF file: model ("llama" | "gpt2" | "bert"), pre,
// tokens, scores, token_type, merges, bos/eos/eot/pad/unknown token ids, add_bos_token,
// add_eos_token, add_space_prefix. Defaults follow llama.cpp: SentencePiece adds BOS, byte-level
// BPE does not; "bert" adds [CLS] (cls_token_id) and [SEP] (seperator_token_id) as BOS / EOS,
// and its tokens, spelled "▁word" / "piece" in GGUF, are respelled "word" / "##piece".
// Errors: kNotFound when the file has no tokenizer.ggml.tokens; kUnimplemented for another
// tokenizer model (e.g. "t5" Unigram); kInvalidArgument for inconsistent arrays.
Result<Vocab> VocabFromGguf(const GgufFile& gguf);

// Builds a vocab from a Hugging Face `tokenizer.json` (and optionally `tokenizer_config.json`,
// empty = absent) given as text. Supported:
//  * model "BPE" with a byte-level pre-tokenizer (a ByteLevel step, optionally preceded by Split
//    / Digits steps, whose regexes are used) -> kByteLevelBpe;
//  * model "BPE" in SentencePiece style (Llama 2, Mistral v0.1, TinyLlama): normalizer
//    Sequence[Prepend("▁"), Replace(" ", "▁")] or a Metaspace pre-tokenizer, `byte_fallback`
//    -> kSentencePiece merging by the merge list;
//  * model "WordPiece" with a BertNormalizer and BertPreTokenizer (or Whitespace) -> kWordPiece;
//    [CLS] / [SEP] from a BertProcessing or TemplateProcessing post-processor.
// Merges as "a b" strings or ["a", "b"] pairs, `ignore_merges`, `added_tokens` (special ->
// kControl, except the model's unk_token -> kUnknown; else kUserDefined, with lstrip/rstrip).
// BOS/EOS come from tokenizer_config.json (bos_token, eos_token, add_bos_token, add_eos_token)
// or else from a TemplateProcessing post-processor. Normalizers "NFC" / "NFKC" are applied.
// Errors: kInvalidArgument for malformed JSON; kUnimplemented for other models, normalizers or
// pre-tokenizers.
Result<Vocab> VocabFromHfJson(std::string_view tokenizer_json,
                              std::string_view tokenizer_config_json = {});
// Reads `dir`/tokenizer.json and, when present, `dir`/tokenizer_config.json.
// Errors: kNotFound when tokenizer.json is missing; kUnavailable on read errors; as above.
Result<Vocab> VocabFromHfDir(const std::string& dir);

struct TiktokenOptions {
  // Pre-tokenizer of the vocab (see Vocab::pre).
  std::string pre = "qwen2";
  // Added control tokens: text -> id (ids after the ranked tokens; gaps become kUnused tokens).
  // Empty means Qwen's three, right after the n ranked tokens: <|endoftext|> = n (EOS),
  // <|im_start|> = n + 1, <|im_end|> = n + 2 (EOT); n = 151643 for qwen.tiktoken.
  std::vector<std::pair<std::string, int32_t>> special_tokens;
};
// Builds a vocab from tiktoken ranks given as text: lines "<base64 token bytes> <rank>", rank ==
// token id. Merges follow BpeMergeRule::kTokenRank.
// Errors: kInvalidArgument for a malformed line, a duplicate or missing rank.
Result<Vocab> VocabFromTiktoken(std::string_view ranks_text, const TiktokenOptions& options = {});
// Reads the ranks from a file. Errors: kNotFound / kUnavailable for the file; as above.
Result<Vocab> VocabFromTiktokenFile(const std::string& path, const TiktokenOptions& options = {});

}  // namespace yunzhi::engine
