// Text analysis for lexical retrieval: Chinese and English (and any other script ICU knows).
//
// Analyze() turns UTF-8 text into index terms. Words come from ICU's word break iterator (Chinese
// and Japanese are segmented by ICU's dictionary); segments without letters or digits (spaces,
// punctuation, symbols) are dropped. Each term is normalised: NFKC (full-width forms become
// ASCII) plus Unicode case folding, and pure-ASCII alphabetic words are reduced with the Porter
// (1980) stemmer. Mixed words keep together as ICU's rules say: "Qwen2.5" is one term
// "qwen2.5", "GPT-4" is two terms "gpt" and "4". In CjkSegmentation::kCharacters mode every Han,
// Kana or Hangul character is a term of its own; other words are as in kWords mode.
//
// The same analysis is available to SQLite FTS5 as the tokenizers "yunzhi" (CJK words, stemming),
// "yunzhi_chars" (CJK single characters, stemming) and "yunzhi_nostem" (CJK words, no stemming),
// registered by RegisterFts5Tokenizers. Each accepts the optional arguments "stopwords"
// (drop English stopwords), "chars", "nostem", e.g. tokenize='yunzhi stopwords'.
//
// Errors: Analyze, PorterStem, CountTokens and BuildMatchQuery accept any bytes; invalid UTF-8
// is treated as replacement characters (never a crash). RegisterFts5Tokenizers returns
// kInternal when the connection has no FTS5.
//
// Thread safety: all functions are safe to call from several threads at once (each thread keeps
// its own ICU break iterator).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"

struct sqlite3;

namespace yunzhi::knowledge {

enum class CjkSegmentation {
  kWords,       // ICU dictionary word break: 通义|千|问|大|模型
  kCharacters,  // one term per Han / Kana / Hangul character
};

struct AnalyzerOptions {
  CjkSegmentation cjk = CjkSegmentation::kWords;
  // Porter stemming of pure-ASCII alphabetic words (after case folding).
  bool stem = true;
  // Drop a small English stopword list (a, an, the, of, ...); checked before stemming.
  bool stopwords = false;
};

struct Term {
  std::string text;  // normalised: NFKC, case-folded, stemmed; never empty; at most 256 bytes
                     // (longer words are cut at a character boundary)
  // Byte offsets of the surface form in the analysed input: input.substr(start, end - start).
  size_t start = 0, end = 0;
};

// The terms of `utf8` in text order.
std::vector<Term> Analyze(std::string_view utf8, const AnalyzerOptions& options = {});

// Streams the terms of `utf8` to `sink` (term text, surface start, surface end) without building
// a vector; the string_view is valid only during the call. Stops early when `sink` returns false;
// returns false then, true otherwise.
using TermSink = std::function<bool(std::string_view text, size_t start, size_t end)>;
bool ForEachTerm(std::string_view utf8, const AnalyzerOptions& options, const TermSink& sink);

// The Porter (1980) stem of one lower-case ASCII word ("relational" -> "relat"). Words of one or
// two letters, and input with anything other than 'a'..'z', are returned unchanged.
std::string PorterStem(std::string_view lowercase_ascii_word);

// About how many LLM tokens `utf8` is, for chunk sizes. Rule, counted in tenths and rounded to
// the nearest whole number: a run of letters/digits (ASCII or non-CJK letters, '_' included)
// counts 1.3 per started 10 bytes; each Han, Kana or Hangul character 1; each other visible
// character (punctuation, symbols) 0.5; whitespace 0. Linear time, no ICU.
size_t CountTokens(std::string_view utf8);

// Registers the FTS5 tokenizers "yunzhi", "yunzhi_chars" and "yunzhi_nostem" on `db`, and the
// FTS5 ranking function yunzhi_bm25(table, column weights...): BM25 (k1 1.2, b 0.75) with the
// Lucene idf ln(1 + (N - df + 0.5) / (df + 0.5)); lower is better, like bm25(). It ranks better
// than FTS5's bm25 on Chinese (whose idf is 0 for terms in over half the rows). Use it as
// `ORDER BY yunzhi_bm25(t, 2.0, 1.0)` or as the table's default rank:
// `INSERT INTO t(t, rank) VALUES('rank', 'yunzhi_bm25(2.0, 1.0)')` (needs the function on every
// connection that queries the table). Suitable as a store::DatabaseOptions::sqlite_connection_hooks
// entry. Tokens carry byte offsets into the tokenized text (highlight() and snippet() work);
// queries are analysed the same way.
// Errors: kInternal when FTS5 is unavailable or registration fails.
Status RegisterFts5Tokenizers(sqlite3* db);

// An FTS5 MATCH expression for a free-text user query: the surface forms of its terms, each one
// double-quoted (quotes inside doubled) so FTS5 syntax in the query is never interpreted, joined
// by " OR "; a term repeated in the query appears once. FTS5 re-tokenizes each quoted string with
// the table's tokenizer, so stemming and normalisation match the index. Use the same
// `options.cjk` as the table's tokenizer. Empty when the query has no terms (do not run MATCH).
std::string BuildMatchQuery(std::string_view user_query, const AnalyzerOptions& options = {});

}  // namespace yunzhi::knowledge
