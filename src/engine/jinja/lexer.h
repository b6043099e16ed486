// Tokenizer for Jinja2 template source.
//
// Reproduces Jinja2's lexer as configured by Hugging Face (`trim_blocks=True,
// lstrip_blocks=True`, default delimiters, `keep_trailing_newline=False`):
//  - line endings \r\n and \r become \n, and one trailing newline is dropped;
//  - `{%- ` / `{{-` / `{#-` strip all whitespace before the tag, ` -%}` / ` -}}` / ` -#}` all
//    whitespace after it;
//  - trim_blocks: a block or comment tag eats the single newline right after it (`+%}` keeps it);
//  - lstrip_blocks: spaces and tabs from the start of a line up to a block or comment tag are
//    removed (`{%+` keeps them); expression tags `{{ }}` are never lstripped;
//  - `{% raw %}...{% endraw %}` is passed through as text;
//  - inside tags: names, strings (Python escapes), integers (0x/0o/0b, `_` separators), floats,
//    operators; a tag only ends when its brackets are balanced (`{{ {'a': 1}}}` works).
//
// Thread safety: pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace yunzhi::engine::jinja {

enum class TokenType {
  kData,           // template text, whitespace control already applied
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,
  kInteger,
  kFloat,
  kOperator,
  kEof,
};

struct Token {
  TokenType type = TokenType::kEof;
  std::string text;  // data, name, unescaped string value, or operator
  int64_t int_value = 0;
  double float_value = 0.0;
  uint32_t offset = 0;  // byte offset into the normalized source
};

// Line endings normalized and one trailing newline removed, as Jinja2 does before lexing. Token
// offsets and error positions refer to this text.
std::string NormalizeSource(std::string_view source);

// Tokenizes normalized source. The last token is kEof. Throws TemplateError (kSyntax) with the
// offset of the problem: unterminated comment or raw block, unexpected character, unbalanced
// brackets, bad escape, integer literal out of range.
std::vector<Token> Tokenize(std::string_view normalized_source);

// 1-based line and column (in code points) of a byte offset.
struct SourcePosition {
  int line = 0;
  int column = 0;
};
SourcePosition PositionOf(std::string_view normalized_source, uint32_t offset);

}  // namespace yunzhi::engine::jinja
