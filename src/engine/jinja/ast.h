// Syntax tree of a parsed template.
//
// The tree is built once by the parser and never changes afterwards, so one parsed template can
// be rendered by many threads at once. Every node carries the byte offset of its first token in
// the normalized source, for error positions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/jinja/value.h"

namespace yunzhi::engine::jinja {

// Filters and tests are plain functions, looked up by name at parse time (filters.h, tests.h).
using FilterFn = Value (*)(Interpreter& interp, const Value& input, CallArgs& args);
using TestFn = bool (*)(Interpreter& interp, const Value& input, CallArgs& args);

// ---- expressions ----

enum class ExprKind {
  kConst,
  kName,
  kGetAttr,
  kGetItem,
  kSlice,
  kCall,
  kFilter,
  kTest,
  kNot,
  kNeg,
  kPos,
  kBinary,
  kAnd,
  kOr,
  kConcat,
  kCompare,
  kCondExpr,
  kList,
  kTuple,
  kDict,
};

struct Expr {
  Expr(ExprKind k, uint32_t off) : kind(k), offset(off) {}
  virtual ~Expr() = default;
  const ExprKind kind;
  const uint32_t offset;
};
using ExprPtr = std::unique_ptr<Expr>;

struct ConstExpr : Expr {
  ConstExpr(uint32_t off, Value v) : Expr(ExprKind::kConst, off), value(std::move(v)) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr(uint32_t off, std::string n) : Expr(ExprKind::kName, off), name(std::move(n)) {}
  std::string name;
};

struct GetAttrExpr : Expr {
  GetAttrExpr(uint32_t off, ExprPtr obj, std::string a)
      : Expr(ExprKind::kGetAttr, off), object(std::move(obj)), attr(std::move(a)) {}
  ExprPtr object;
  std::string attr;
};

struct GetItemExpr : Expr {
  GetItemExpr(uint32_t off, ExprPtr obj, ExprPtr idx)
      : Expr(ExprKind::kGetItem, off), object(std::move(obj)), index(std::move(idx)) {}
  ExprPtr object;
  ExprPtr index;  // may be a SliceExpr
};

// `a[start:stop:step]`; absent parts are null.
struct SliceExpr : Expr {
  explicit SliceExpr(uint32_t off) : Expr(ExprKind::kSlice, off) {}
  ExprPtr start, stop, step;
};

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
  ExprPtr star_args;    // *args
  ExprPtr star_kwargs;  // **kwargs
};

struct CallExpr : Expr {
  CallExpr(uint32_t off, ExprPtr c) : Expr(ExprKind::kCall, off), callee(std::move(c)) {}
  ExprPtr callee;
  Arguments args;
};

// `input | name(args)`. `input` is null for the filter of a `{% filter %}` or `{% set %}` block,
// which applies to the block's rendered body. `fn` is null when the filter is unknown (an error
// when evaluated; the parser rejects it unless it sits in an if-branch, as Jinja2 does).
struct FilterExpr : Expr {
  FilterExpr(uint32_t off, ExprPtr in, std::string n)
      : Expr(ExprKind::kFilter, off), input(std::move(in)), name(std::move(n)) {}
  ExprPtr input;
  std::string name;
  Arguments args;
  FilterFn fn = nullptr;
};

// `input is name(args)`; `is not` wraps it in a kNot.
struct TestExpr : Expr {
  TestExpr(uint32_t off, ExprPtr in, std::string n)
      : Expr(ExprKind::kTest, off), input(std::move(in)), name(std::move(n)) {}
  ExprPtr input;
  std::string name;
  Arguments args;
  TestFn fn = nullptr;
};

// kNot, kNeg, kPos.
struct UnaryExpr : Expr {
  UnaryExpr(ExprKind k, uint32_t off, ExprPtr o) : Expr(k, off), operand(std::move(o)) {}
  ExprPtr operand;
};

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };

struct BinaryExpr : Expr {
  BinaryExpr(uint32_t off, BinaryOp o, ExprPtr l, ExprPtr r)
      : Expr(ExprKind::kBinary, off), op(o), left(std::move(l)), right(std::move(r)) {}
  BinaryOp op;
  ExprPtr left, right;
};

// kAnd, kOr: Python semantics (the deciding operand is the result).
struct LogicalExpr : Expr {
  LogicalExpr(ExprKind k, uint32_t off, ExprPtr l, ExprPtr r)
      : Expr(k, off), left(std::move(l)), right(std::move(r)) {}
  ExprPtr left, right;
};

// `a ~ b ~ c`: string concatenation of str() of each part.
struct ConcatExpr : Expr {
  explicit ConcatExpr(uint32_t off) : Expr(ExprKind::kConcat, off) {}
  std::vector<ExprPtr> parts;
};

enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

// `a < b <= c`: chained like Python.
struct CompareExpr : Expr {
  CompareExpr(uint32_t off, ExprPtr f) : Expr(ExprKind::kCompare, off), first(std::move(f)) {}
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};

// `then_expr if test else else_expr`; without else, a false test gives undefined.
struct CondExpr : Expr {
  explicit CondExpr(uint32_t off) : Expr(ExprKind::kCondExpr, off) {}
  ExprPtr test, then_expr, else_expr;
};

// kList, kTuple.
struct SequenceExpr : Expr {
  SequenceExpr(ExprKind k, uint32_t off) : Expr(k, off) {}
  std::vector<ExprPtr> items;
};

struct DictExpr : Expr {
  explicit DictExpr(uint32_t off) : Expr(ExprKind::kDict, off) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

// ---- statements ----

enum class StmtKind {
  kText,
  kPrint,
  kIf,
  kFor,
  kSet,
  kSetBlock,
  kMacro,
  kFilterBlock,
  kWith,
  kBreak,
  kContinue,
  kGeneration,
};

struct Stmt {
  Stmt(StmtKind k, uint32_t off) : kind(k), offset(off) {}
  virtual ~Stmt() = default;
  const StmtKind kind;
  const uint32_t offset;
};
using StmtPtr = std::unique_ptr<Stmt>;
using StmtList = std::vector<StmtPtr>;

// What `set`, `for` and `with` assign to: a name, a tuple of names (unpacking), or a namespace
// attribute (`ns.attr`).
struct AssignTarget {
  enum class Kind { kName, kTuple, kNamespaceAttr };
  Kind kind = Kind::kName;
  std::string name;                // kName; the namespace variable for kNamespaceAttr
  std::string attr;                // kNamespaceAttr
  std::vector<std::string> names;  // kTuple
  uint32_t offset = 0;
};

struct TextStmt : Stmt {
  TextStmt(uint32_t off, std::string t) : Stmt(StmtKind::kText, off), text(std::move(t)) {}
  std::string text;
};

struct PrintStmt : Stmt {
  PrintStmt(uint32_t off, ExprPtr e) : Stmt(StmtKind::kPrint, off), expr(std::move(e)) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  explicit IfStmt(uint32_t off) : Stmt(StmtKind::kIf, off) {}
  std::vector<std::pair<ExprPtr, StmtList>> branches;  // if, elif...
  StmtList else_body;
};

struct ForStmt : Stmt {
  explicit ForStmt(uint32_t off) : Stmt(StmtKind::kFor, off) {}
  AssignTarget target;
  ExprPtr iter;
  ExprPtr filter;  // `for x in y if cond`, may be null
  StmtList body;
  StmtList else_body;
};

struct SetStmt : Stmt {
  explicit SetStmt(uint32_t off) : Stmt(StmtKind::kSet, off) {}
  AssignTarget target;
  ExprPtr value;
};

// `{% set x | filter %}body{% endset %}`
struct SetBlockStmt : Stmt {
  explicit SetBlockStmt(uint32_t off) : Stmt(StmtKind::kSetBlock, off) {}
  AssignTarget target;
  ExprPtr filter;  // a FilterExpr chain whose innermost input is null, or null
  StmtList body;
};

struct MacroStmt : Stmt {
  explicit MacroStmt(uint32_t off) : Stmt(StmtKind::kMacro, off) {}
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // for the last defaults.size() params
  StmtList body;
  // Jinja2 lets a macro take extra arguments only when its body mentions these names.
  bool uses_varargs = false;
  bool uses_kwargs = false;
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(uint32_t off) : Stmt(StmtKind::kFilterBlock, off) {}
  ExprPtr filter;  // FilterExpr chain, innermost input null
  StmtList body;
};

struct WithStmt : Stmt {
  explicit WithStmt(uint32_t off) : Stmt(StmtKind::kWith, off) {}
  std::vector<std::pair<AssignTarget, ExprPtr>> assignments;
  StmtList body;
};

// kBreak, kContinue.
struct LoopControlStmt : Stmt {
  LoopControlStmt(StmtKind k, uint32_t off) : Stmt(k, off) {}
};

// `{% generation %}...{% endgeneration %}` (Hugging Face's assistant-mask marker): renders its
// body unchanged.
struct GenerationStmt : Stmt {
  explicit GenerationStmt(uint32_t off) : Stmt(StmtKind::kGeneration, off) {}
  StmtList body;
};

}  // namespace yunzhi::engine::jinja
