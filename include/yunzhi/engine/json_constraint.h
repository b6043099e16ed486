// Grammar-constrained decoding for JSON (OpenAI response_format json_object / json_schema).
//
// A JsonConstraint is a TokenConstraint (sampler.h) that only allows tokens whose bytes keep the
// output a prefix of a JSON value accepted by a grammar compiled from a JSON Schema (or of any
// JSON object when there is no schema), and only the end-of-generation tokens once the value is
// complete. Inside it is a character-level pushdown parser (a small stack of frames, cheap to
// copy) that knows which bytes may come next; token masks come from a walk over a byte trie of
// the vocabulary that prunes every subtree whose first byte is refused. Inside strings (the
// common case) tokens made only of plain string characters come from precomputed masks, and only
// the tokens holding a quote, backslash or control byte are walked.
//
// The vocabulary index (tries + masks) is built once per distinct vocabulary (about 50-100 ms
// for Qwen2.5's 151,665 tokens, about 12 MB) and cached process-wide for the 4 most recently used
// vocabularies (keyed by a fingerprint of the token texts); constraints for the same vocabulary
// share it, so a new constraint costs ~2 ms (the fingerprint).
//
// MEASURED per FillAllowed on the Qwen2.5 vocabulary (one core of the shared 2-core dev machine,
// RelWithDebInfo, 2026-11-25; printed by JsonConstraintTest.QwenVocabularyMaskTiming):
//   inside strings (most steps)        ~0.04 ms  (precomputed mask + walk of the tokens that hold
//                                                 a quote, backslash or control byte)
//   structural positions ({, keys, :)  ~0.02-0.06 ms
//   worst case, full-trie walk          ~5 ms    (a string whose minLength is not yet reached,
//                                                 under a tight token budget)
//
// ---- Supported JSON Schema subset (anything else: kInvalidArgument naming the keyword,
// param "response_format"):
//   type (a name or an array of names: object, array, string, number, integer, boolean, null),
//   properties, required, additionalProperties (false / true / schema), items (schema or false),
//   prefixItems, minItems, maxItems, minLength, maxLength (in code points), enum, const,
//   anyOf / oneOf (branches must be told apart by their first byte: at most one object, one
//   array, one string, one number branch; enum/const literals merge), allOf with one element,
//   $ref to "#", "#/$defs/NAME" or "#/definitions/NAME" (recursion allowed), minimum / maximum /
//   exclusiveMinimum / exclusiveMaximum for integers only, nullable (OpenAPI).
//   Ignored annotations: title, description, default, examples, $schema, $id, $comment, format
//   (NOT enforced), deprecated, readOnly, writeOnly, $defs, definitions.
//   Not supported (rejected): pattern, patternProperties, propertyNames, not, if/then/else,
//   multipleOf, minimum/maximum on "number", dependent*, unevaluated*, contains, uniqueItems, ...
//
// ---- What is generated (a subset of what the schema accepts, chosen so generation ends):
//   * objects with `properties` hold only declared properties, in schema order; required ones
//     always appear; extra properties are never generated (as OpenAI strict mode requires).
//     At most 64 properties per object. Objects without `properties` have free string keys.
//   * whitespace: at most `max_whitespace_bytes` (default 1) bytes of ' ', '\n', '\t' or '\r'
//     between structural tokens; none before the end.
//   * numbers: at most 15 integer digits and 15 fraction digits, exponent at most 2 digits;
//     integers have no fraction or exponent. \u escapes of surrogates are refused (so every
//     escape is one code point and the text is valid UTF-8 when unescaped).
//   * strings: any valid UTF-8 (a token may end inside a multi-byte character), the escapes
//     \" \\ \/ \b \f \n \r \t \uXXXX; raw bytes < 0x20 are refused.
//   * nesting: at most 30 levels.
//   * special tokens (control, unknown, unused, and added user-defined tokens such as Qwen's
//     <tool_call>) are never allowed inside the JSON; tokens with empty text never.
//
// ---- Termination budget: SetRemainingTokens(n) tells the constraint that at most n more tokens
// (including the next one) will be sampled. From then on a token is allowed only if the shortest
// completion after it (counted in bytes, each an upper bound of one token since every byte has a
// single-byte token in byte-level and byte-fallback vocabularies) still fits in the tokens left.
// So with n >= the schema's shortest instance, the output is complete, valid JSON when the
// budget runs out (the end token itself is not counted: it is allowed as soon as the value is
// complete).
//
// Thread safety: MakeJsonConstraint may be called from any thread. One constraint per sequence,
// used from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/sampler.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {

struct JsonConstraintOptions {
  // JSON Schema text; nullopt = any JSON object (OpenAI json_object mode).
  std::optional<std::string> schema;
  // The tokens allowed (and the only ones allowed) once the value is complete. Empty = every
  // token for which Tokenizer::IsEndOfGeneration is true.
  std::vector<int32_t> end_token_ids;
  // Longest whitespace run between structural tokens: 0 = compact JSON. Valid: [0, 8].
  int32_t max_whitespace_bytes = 1;
};

// A TokenConstraint with a token budget (see the file comment).
class JsonConstraint : public TokenConstraint {
 public:
  // At most `n_tokens` more tokens, including the next one, will be sampled; every Accept
  // decrements the count. Negative = unlimited (the default).
  virtual void SetRemainingTokens(int64_t n_tokens) = 0;
  // True once the value (or the whole tool call) is complete: only end tokens are allowed.
  virtual bool IsComplete() const = 0;
  // Fewest bytes that still complete the value from the current position (0 when complete).
  virtual int64_t MinCompletionBytes() const = 0;
};

// Compiles `options.schema` and returns a constraint positioned at the start of the value.
// Errors: kInvalidArgument (param "response_format") for malformed schema JSON, unsupported
// keywords, a bad $ref, a schema with no finite instance, bad options.
Result<std::unique_ptr<JsonConstraint>> MakeJsonConstraint(const Tokenizer& tokenizer,
                                                           const JsonConstraintOptions& options);

}  // namespace yunzhi::engine
