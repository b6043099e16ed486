// The tree-walking interpreter that renders a parsed template.
//
// Scoping follows Jinja2: the top level is one scope; every loop iteration, macro call,
// `filter`/`set` block body and `with` block gets a fresh child scope, so `{% set %}` inside a
// loop is not visible after it (or in the next iteration) -- templates carry state out of loops
// with `namespace()`. `if` blocks do not open a scope. Macros see the scope they were defined in
// as it is when they are called.
//
// Limits keep a hostile template from hanging the process or exhausting memory or the stack:
// a budget of steps (loop iterations, calls, and work proportional to the size of built strings
// and lists), a maximum evaluation depth and macro call depth, and a maximum size for the output
// and for any single string built on the way.
//
// Thread safety: an Interpreter renders once, on one thread. The syntax tree it walks is only
// read, so many Interpreters may render the same tree concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/jinja/ast.h"
#include "engine/jinja/value.h"

namespace yunzhi::engine::jinja {

struct Limits {
  // Loop iterations, calls, and 1 per 64 bytes of strings / per item of lists built.
  int64_t max_steps = 1'000'000;
  // Nesting of expression evaluation and statement execution at run time (macro recursion
  // multiplies the static nesting of the template).
  int max_depth = 500;
  // Nested macro calls.
  int max_call_depth = 100;
  // Size of the rendered text and of any single string or list (in bytes / 8 per item) built
  // while rendering.
  size_t max_output_bytes = 16u << 20;
};

// A variable scope. Lookups fall back to the parent.
class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}

  const Value* Find(std::string_view name) const;
  void Set(std::string_view name, Value value);

 private:
  std::shared_ptr<Scope> parent_;
  std::vector<std::pair<std::string, Value>> vars_;
};
using ScopePtr = std::shared_ptr<Scope>;

class Interpreter {
 public:
  Interpreter(const Limits& limits, std::chrono::system_clock::time_point now);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `body` with `globals` (messages, tools, ...) defined at the top level, on top of the
  // built-in globals (range, namespace, raise_exception, strftime_now, ...). Throws TemplateError;
  // runtime errors carry the offset of the failing expression.
  std::string Render(const StmtList& body, const Dict& globals);

  // ---- services for builtins (filters, tests, methods, globals) ----

  // Calls any callable value; fails for others ("'str' object is not callable").
  Value CallValue(const Value& callee, CallArgs& args);
  // Applies the filter / test called `name` (for map, select, reject ...).
  Value ApplyFilter(std::string_view name, const Value& input, CallArgs& args);
  bool ApplyTest(std::string_view name, const Value& input, CallArgs& args);

  // Spends `n` steps of the budget; fails when it is used up.
  void Charge(int64_t n);
  // Checks a string of `bytes` that is about to be built against the size limit and charges
  // for it.
  void ChargeString(size_t bytes);
  // Checks and charges a list of `n_items`.
  void ChargeList(size_t n_items);

  // The time `strftime_now` formats.
  std::chrono::system_clock::time_point now() const { return now_; }

  // Namespaces created during this render; their contents are dropped when the render ends,
  // which breaks any reference cycle a template built through them.
  void Track(const std::shared_ptr<Object>& object) { tracked_.push_back(object); }

  // Renders a macro body (called by the macro value).
  Value CallMacro(const MacroStmt& macro, const ScopePtr& defining_scope, CallArgs& args);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  class DepthGuard;

  Flow RenderBody(const StmtList& body, const ScopePtr& scope, std::string* out);
  Flow RenderStmt(const Stmt& stmt, const ScopePtr& scope, std::string* out);
  void RenderFor(const ForStmt& node, const ScopePtr& scope, std::string* out);
  void Assign(const AssignTarget& target, Value value, const ScopePtr& scope);
  void Append(const Value& value, std::string* out);
  void AppendText(std::string_view text, std::string* out);

  Value Eval(const Expr& expr, const ScopePtr& scope);
  Value EvalInner(const Expr& expr, const ScopePtr& scope);
  CallArgs EvalArgs(const Arguments& args, const ScopePtr& scope);
  [[gnu::noinline]] Value EvalFilter(const FilterExpr& node, const ScopePtr& scope,
                                     const Value* block_input);
  Value EvalCompare(const CompareExpr& node, const ScopePtr& scope);
  [[gnu::noinline]] Value EvalSlice(Value object, const SliceExpr& slice, const ScopePtr& scope);
  [[gnu::noinline]] Value EvalConcat(const ConcatExpr& node, const ScopePtr& scope);
  [[gnu::noinline]] Value EvalSequence(const SequenceExpr& node, const ScopePtr& scope);
  [[gnu::noinline]] Value EvalDict(const DictExpr& node, const ScopePtr& scope);
  [[gnu::noinline]] Value EvalCall(const CallExpr& node, const ScopePtr& scope);
  [[gnu::noinline]] Value EvalTest(const TestExpr& node, const ScopePtr& scope);

  Limits limits_;
  std::chrono::system_clock::time_point now_;
  int64_t steps_ = 0;
  int depth_ = 0;
  int call_depth_ = 0;
  uint32_t error_offset_ = kNoOffset;  // where the error being thrown happened
  std::vector<std::weak_ptr<Object>> tracked_;
};

}  // namespace yunzhi::engine::jinja
