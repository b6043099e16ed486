// Parser: tokens -> syntax tree, following Jinja2's grammar and operator precedence.
//
// Supported statements: if/elif/else, for (with `else`, inline `if` filter, tuple unpacking),
// set (incl. `ns.attr = ...` and block set), macro, filter blocks, with, break/continue
// (Jinja2's loopcontrols, which Hugging Face enables), print, raw, and Hugging Face's
// `generation` block. Template inheritance and loading (`extends`, `block`, `include`, `import`,
// `from`), `call` blocks and recursive loops are rejected with a syntax error: Hugging Face
// renders a single string without a loader, so templates that need them fail there too.
//
// Thread safety: pure function.
#pragma once

#include <vector>

#include "engine/jinja/ast.h"
#include "engine/jinja/lexer.h"

namespace yunzhi::engine::jinja {

// Parses the tokens of one template. `max_depth` bounds the nesting of expressions and blocks
// so that a hostile template cannot exhaust the stack. Throws TemplateError (kSyntax).
StmtList Parse(const std::vector<Token>& tokens, int max_depth);

}  // namespace yunzhi::engine::jinja
