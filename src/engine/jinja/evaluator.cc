#include "engine/jinja/evaluator.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "engine/jinja/filters.h"
#include "engine/jinja/globals.h"
#include "engine/jinja/methods.h"
#include "engine/jinja/operators.h"
#include "engine/jinja/tests.h"

namespace yunzhi::engine::jinja {

// ---- Scope ----

const Value* Scope::Find(std::string_view name) const {
  for (const Scope* s = this; s != nullptr; s = s->parent_.get()) {
    for (auto it = s->vars_.rbegin(); it != s->vars_.rend(); ++it) {
      if (it->first == name) return &it->second;
    }
  }
  return nullptr;
}

void Scope::Set(std::string_view name, Value value) {
  for (auto& [key, v] : vars_) {
    if (key == name) {
      v = std::move(value);
      return;
    }
  }
  vars_.emplace_back(std::string(name), std::move(value));
}

namespace {

// A macro value: the macro's syntax node and the scope it was defined in. The scope is held
// weakly because the macro is itself stored in that scope (a strong reference would be a cycle).
class MacroValue : public Callable {
 public:
  MacroValue(const MacroStmt* node, const ScopePtr& scope) : node_(node), scope_(scope) {}

  Value Call(Interpreter& interp, CallArgs& args) const override {
    ScopePtr scope = scope_.lock();
    if (!scope) Fail("macro '" + node_->name + "' was called after its defining scope ended");
    return interp.CallMacro(*node_, scope, args);
  }
  std::string Repr() const override { return "<Macro '" + node_->name + "'>"; }

 private:
  const MacroStmt* node_;
  std::weak_ptr<Scope> scope_;
};

// Jinja2's `loop` variable.
class LoopObject : public Object {
 public:
  LoopObject(std::shared_ptr<const ValueList> items, size_t index)
      : items_(std::move(items)), index_(index) {}

  std::string_view TypeName() const override { return "LoopContext"; }

  Value GetAttr(std::string_view name) const override {
    auto n = static_cast<int64_t>(items_->size());
    auto i = static_cast<int64_t>(index_);
    if (name == "index") return Value(i + 1);
    if (name == "index0") return Value(i);
    if (name == "revindex") return Value(n - i);
    if (name == "revindex0") return Value(n - i - 1);
    if (name == "first") return Value(i == 0);
    if (name == "last") return Value(i == n - 1);
    if (name == "length") return Value(n);
    if (name == "depth") return Value(1);
    if (name == "depth0") return Value(0);
    if (name == "previtem") {
      if (i > 0) return (*items_)[index_ - 1];
      return Value::Undefined("there is no previous item");
    }
    if (name == "nextitem") {
      if (i + 1 < n) return (*items_)[index_ + 1];
      return Value::Undefined("there is no next item");
    }
    if (name == "cycle") return Value::FromCallable(std::make_shared<Cycle>(index_));
    return Value::Undefined("'LoopContext' object has no attribute '" + std::string(name) + "'");
  }

  std::string Repr() const override {
    return "<LoopContext " + std::to_string(index_ + 1) + "/" + std::to_string(items_->size()) +
           ">";
  }

 private:
  class Cycle : public Callable {
   public:
    explicit Cycle(size_t index) : index_(index) {}
    Value Call(Interpreter&, CallArgs& args) const override {
      if (!args.keyword.empty()) Fail("cycle() takes no keyword arguments");
      if (args.positional.empty()) Fail("no items for cycling given");
      return args.positional[index_ % args.positional.size()];
    }
    std::string Repr() const override { return "<bound method LoopContext.cycle>"; }

   private:
    size_t index_;
  };

  std::shared_ptr<const ValueList> items_;
  size_t index_;
};

// Fills in the offset of an error thrown by code that does not know where it is.
template <typename F>
auto AtOffset(uint32_t offset, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (TemplateError& e) {
    if (e.offset() == kNoOffset) e.set_offset(offset);
    throw;
  }
}

}  // namespace

// ---- Interpreter ----

// Counts evaluation depth, and remembers where an error happened: the innermost guard that is
// destroyed by an exception records its offset (cheaper than a try/catch in every Eval frame,
// which the deepest recursion would pay for in stack).
class Interpreter::DepthGuard {
 public:
  DepthGuard(Interpreter* interp, uint32_t offset)
      : interp_(interp), offset_(offset), exceptions_(std::uncaught_exceptions()) {
    if (++interp_->depth_ > interp_->limits_.max_depth) {
      --interp_->depth_;
      throw TemplateError(TemplateError::Kind::kLimit,
                          "template evaluation is nested deeper than the limit of " +
                              std::to_string(interp_->limits_.max_depth),
                          offset);
    }
  }
  ~DepthGuard() {
    --interp_->depth_;
    if (offset_ != kNoOffset && interp_->error_offset_ == kNoOffset &&
        std::uncaught_exceptions() > exceptions_) {
      interp_->error_offset_ = offset_;
    }
  }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  Interpreter* interp_;
  uint32_t offset_;
  int exceptions_;
};

Interpreter::Interpreter(const Limits& limits, std::chrono::system_clock::time_point now)
    : limits_(limits), now_(now) {}

Interpreter::~Interpreter() {
  for (const auto& weak : tracked_) {
    if (auto object = weak.lock()) object->Clear();
  }
}

std::string Interpreter::Render(const StmtList& body, const Dict& globals) {
  auto builtins = std::make_shared<Scope>(nullptr);
  AddGlobals(*builtins);
  auto top = std::make_shared<Scope>(builtins);
  for (const auto& [name, value] : globals.entries()) top->Set(name, value);
  std::string out;
  try {
    RenderBody(body, top, &out);
  } catch (TemplateError& e) {
    if (e.offset() == kNoOffset) e.set_offset(error_offset_);
    throw;
  }
  return out;
}

void Interpreter::Charge(int64_t n) {
  steps_ += n;
  if (steps_ > limits_.max_steps) {
    throw TemplateError(
        TemplateError::Kind::kLimit,
        "template rendering exceeded the limit of " + std::to_string(limits_.max_steps) + " steps");
  }
}

void Interpreter::ChargeString(size_t bytes) {
  if (bytes > limits_.max_output_bytes) {
    throw TemplateError(TemplateError::Kind::kLimit, "template built a string of " +
                                                         std::to_string(bytes) +
                                                         " bytes, more than the limit of " +
                                                         std::to_string(limits_.max_output_bytes));
  }
  Charge(1 + static_cast<int64_t>(bytes / 64));
}

void Interpreter::ChargeList(size_t n_items) {
  if (n_items > limits_.max_output_bytes / 8) {
    throw TemplateError(TemplateError::Kind::kLimit,
                        "template built a list of " + std::to_string(n_items) +
                            " items, more than the limit of " +
                            std::to_string(limits_.max_output_bytes / 8));
  }
  Charge(1 + static_cast<int64_t>(n_items));
}

void Interpreter::AppendText(std::string_view text, std::string* out) {
  if (out->size() + text.size() > limits_.max_output_bytes) {
    throw TemplateError(TemplateError::Kind::kLimit, "rendered prompt exceeds the limit of " +
                                                         std::to_string(limits_.max_output_bytes) +
                                                         " bytes");
  }
  out->append(text);
}

void Interpreter::Append(const Value& value, std::string* out) {
  if (value.is_string()) {
    AppendText(value.as_string(), out);
  } else {
    AppendText(ToStr(value), out);
  }
}

Interpreter::Flow Interpreter::RenderBody(const StmtList& body, const ScopePtr& scope,
                                          std::string* out) {
  DepthGuard guard(this, kNoOffset);
  for (const StmtPtr& stmt : body) {
    Flow flow = RenderStmt(*stmt, scope, out);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::RenderStmt(const Stmt& stmt, const ScopePtr& scope,
                                          std::string* out) {
  switch (stmt.kind) {
    case StmtKind::kText:
      AppendText(static_cast<const TextStmt&>(stmt).text, out);
      return Flow::kNormal;
    case StmtKind::kPrint:
      Append(Eval(*static_cast<const PrintStmt&>(stmt).expr, scope), out);
      return Flow::kNormal;
    case StmtKind::kIf: {
      const auto& node = static_cast<const IfStmt&>(stmt);
      for (const auto& [test, body] : node.branches) {
        if (Truthy(Eval(*test, scope))) return RenderBody(body, scope, out);
      }
      return RenderBody(node.else_body, scope, out);
    }
    case StmtKind::kFor:
      RenderFor(static_cast<const ForStmt&>(stmt), scope, out);
      return Flow::kNormal;
    case StmtKind::kSet: {
      const auto& node = static_cast<const SetStmt&>(stmt);
      Assign(node.target, Eval(*node.value, scope), scope);
      return Flow::kNormal;
    }
    case StmtKind::kSetBlock: {
      const auto& node = static_cast<const SetBlockStmt&>(stmt);
      std::string body;
      RenderBody(node.body, std::make_shared<Scope>(scope), &body);
      Value value(std::move(body));
      if (node.filter) {
        value = EvalFilter(static_cast<const FilterExpr&>(*node.filter), scope, &value);
      }
      Assign(node.target, std::move(value), scope);
      return Flow::kNormal;
    }
    case StmtKind::kMacro: {
      const auto& node = static_cast<const MacroStmt&>(stmt);
      scope->Set(node.name, Value::FromCallable(std::make_shared<MacroValue>(&node, scope)));
      return Flow::kNormal;
    }
    case StmtKind::kFilterBlock: {
      const auto& node = static_cast<const FilterBlockStmt&>(stmt);
      std::string body;
      RenderBody(node.body, std::make_shared<Scope>(scope), &body);
      Value input(std::move(body));
      Append(EvalFilter(static_cast<const FilterExpr&>(*node.filter), scope, &input), out);
      return Flow::kNormal;
    }
    case StmtKind::kWith: {
      const auto& node = static_cast<const WithStmt&>(stmt);
      auto inner = std::make_shared<Scope>(scope);
      for (const auto& [target, expr] : node.assignments) {
        Assign(target, Eval(*expr, scope), inner);
      }
      RenderBody(node.body, inner, out);
      return Flow::kNormal;
    }
    case StmtKind::kBreak:
      return Flow::kBreak;
    case StmtKind::kContinue:
      return Flow::kContinue;
    case StmtKind::kGeneration:
      return RenderBody(static_cast<const GenerationStmt&>(stmt).body, scope, out);
  }
  return Flow::kNormal;
}

void Interpreter::Assign(const AssignTarget& target, Value value, const ScopePtr& scope) {
  switch (target.kind) {
    case AssignTarget::Kind::kName:
      scope->Set(target.name, std::move(value));
      return;
    case AssignTarget::Kind::kNamespaceAttr: {
      const Value* ns = scope->Find(target.name);
      if (ns == nullptr) {
        throw TemplateError(TemplateError::Kind::kRuntime, "'" + target.name + "' is undefined",
                            target.offset);
      }
      if (!ns->is_object() || !ns->as_object().SetAttr(target.attr, std::move(value))) {
        throw TemplateError(TemplateError::Kind::kRuntime,
                            "cannot assign attribute on non-namespace object", target.offset);
      }
      return;
    }
    case AssignTarget::Kind::kTuple: {
      ValueList items = AtOffset(target.offset, [&] { return Iterate(value); });
      if (items.size() != target.names.size()) {
        std::string message = items.size() < target.names.size()
                                  ? "not enough values to unpack (expected " +
                                        std::to_string(target.names.size()) + ", got " +
                                        std::to_string(items.size()) + ")"
                                  : "too many values to unpack (expected " +
                                        std::to_string(target.names.size()) + ")";
        throw TemplateError(TemplateError::Kind::kRuntime, message, target.offset);
      }
      for (size_t i = 0; i < items.size(); ++i) scope->Set(target.names[i], std::move(items[i]));
      return;
    }
  }
}

void Interpreter::RenderFor(const ForStmt& node, const ScopePtr& scope, std::string* out) {
  Value iterable = Eval(*node.iter, scope);
  ValueList items = AtOffset(node.iter->offset, [&] { return Iterate(iterable); });
  if (node.filter) {
    ValueList kept;
    for (Value& item : items) {
      Charge(1);
      auto test_scope = std::make_shared<Scope>(scope);
      Assign(node.target, item, test_scope);
      if (Truthy(Eval(*node.filter, test_scope))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    RenderBody(node.else_body, scope, out);
    return;
  }
  auto shared_items = std::make_shared<const ValueList>(std::move(items));
  for (size_t i = 0; i < shared_items->size(); ++i) {
    Charge(1);
    auto iteration = std::make_shared<Scope>(scope);
    Assign(node.target, (*shared_items)[i], iteration);
    iteration->Set("loop", Value::FromObject(std::make_shared<LoopObject>(shared_items, i)));
    if (RenderBody(node.body, iteration, out) == Flow::kBreak) break;
  }
}

Value Interpreter::CallMacro(const MacroStmt& macro, const ScopePtr& defining_scope,
                             CallArgs& args) {
  if (++call_depth_ > limits_.max_call_depth) {
    --call_depth_;
    throw TemplateError(TemplateError::Kind::kLimit,
                        "macro calls are nested deeper than the limit of " +
                            std::to_string(limits_.max_call_depth));
  }
  struct CallDepthRestore {
    int* depth;
    ~CallDepthRestore() { --*depth; }
  } restore{&call_depth_};
  Charge(1);

  auto scope = std::make_shared<Scope>(defining_scope);
  const size_t n_params = macro.params.size();
  std::vector<bool> given(n_params, false);
  ValueList varargs;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < n_params) {
      scope->Set(macro.params[i], args.positional[i]);
      given[i] = true;
    } else if (macro.uses_varargs) {
      varargs.push_back(args.positional[i]);
    } else {
      Fail("macro '" + macro.name + "' takes not more than " + std::to_string(n_params) +
           " argument(s)");
    }
  }
  Dict kwargs;
  for (auto& [key, value] : args.keyword) {
    auto it = std::find(macro.params.begin(), macro.params.end(), key);
    if (it != macro.params.end()) {
      size_t index = static_cast<size_t>(it - macro.params.begin());
      if (given[index])
        Fail("macro '" + macro.name + "' got multiple values for argument '" + key + "'");
      scope->Set(key, value);
      given[index] = true;
    } else if (macro.uses_kwargs) {
      kwargs.Set(key, value);
    } else {
      Fail("macro '" + macro.name + "' takes no keyword argument '" + key + "'");
    }
  }
  const size_t first_default = n_params - macro.defaults.size();
  for (size_t i = 0; i < n_params; ++i) {
    if (given[i]) continue;
    if (i >= first_default) {
      scope->Set(macro.params[i], Eval(*macro.defaults[i - first_default], scope));
    } else {
      scope->Set(macro.params[i],
                 Value::Undefined("parameter '" + macro.params[i] + "' was not provided"));
    }
  }
  if (macro.uses_varargs) scope->Set("varargs", Value::Tuple(std::move(varargs)));
  if (macro.uses_kwargs) scope->Set("kwargs", Value::FromDict(std::move(kwargs)));

  std::string out;
  RenderBody(macro.body, scope, &out);
  return Value(std::move(out));
}

Value Interpreter::CallValue(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) callee.FailUndefined();
  if (!callee.is_callable()) Fail("'" + std::string(TypeName(callee)) + "' object is not callable");
  Charge(1);
  return callee.as_callable().Call(*this, args);
}

Value Interpreter::ApplyFilter(std::string_view name, const Value& input, CallArgs& args) {
  FilterFn fn = FindFilter(name);
  if (fn == nullptr) Fail("No filter named '" + std::string(name) + "'.");
  Charge(1);
  return fn(*this, input, args);
}

bool Interpreter::ApplyTest(std::string_view name, const Value& input, CallArgs& args) {
  TestFn fn = FindTest(name);
  if (fn == nullptr) Fail("No test named '" + std::string(name) + "'.");
  Charge(1);
  return fn(*this, input, args);
}

// ---- expressions ----

Value Interpreter::Eval(const Expr& expr, const ScopePtr& scope) {
  DepthGuard guard(this, expr.offset);
  return EvalInner(expr, scope);
}

CallArgs Interpreter::EvalArgs(const Arguments& args, const ScopePtr& scope) {
  CallArgs out;
  out.positional.reserve(args.positional.size());
  for (const ExprPtr& e : args.positional) out.positional.push_back(Eval(*e, scope));
  for (const auto& [key, e] : args.keyword) out.keyword.emplace_back(key, Eval(*e, scope));
  if (args.star_args) {
    Value extra = Eval(*args.star_args, scope);
    for (Value& v : AtOffset(args.star_args->offset, [&] { return Iterate(extra); })) {
      out.positional.push_back(std::move(v));
    }
  }
  if (args.star_kwargs) {
    Value extra = Eval(*args.star_kwargs, scope);
    if (!extra.is_dict()) {
      throw TemplateError(TemplateError::Kind::kRuntime, "argument after ** must be a mapping",
                          args.star_kwargs->offset);
    }
    for (const auto& [key, value] : extra.as_dict().entries()) out.keyword.emplace_back(key, value);
  }
  return out;
}

Value Interpreter::EvalFilter(const FilterExpr& node, const ScopePtr& scope,
                              const Value* block_input) {
  DepthGuard guard(this, node.offset);
  Value input;
  if (node.input == nullptr) {
    input = *block_input;
  } else if (node.input->kind == ExprKind::kFilter) {
    // A chain: evaluate the inner filters first (the innermost may take the block input).
    input = EvalFilter(static_cast<const FilterExpr&>(*node.input), scope, block_input);
  } else {
    input = Eval(*node.input, scope);
  }
  CallArgs args = EvalArgs(node.args, scope);
  if (node.fn == nullptr) Fail("No filter named '" + node.name + "' found.");
  Charge(1);
  return node.fn(*this, input, args);
}

Value Interpreter::EvalCompare(const CompareExpr& node, const ScopePtr& scope) {
  Value left = Eval(*node.first, scope);
  for (const auto& step : node.rest) {
    // Not a structured binding: clang 14 cannot capture one in the lambda below.
    const auto op = step.first;
    Value right = Eval(*step.second, scope);
    bool result = [&] {
      switch (op) {
        case CompareOp::kEq:
          return Equals(left, right);
        case CompareOp::kNe:
          return !Equals(left, right);
        case CompareOp::kLt:
          return Compare(left, right, "<");
        case CompareOp::kLe:
          return Compare(left, right, "<=");
        case CompareOp::kGt:
          return Compare(left, right, ">");
        case CompareOp::kGe:
          return Compare(left, right, ">=");
        case CompareOp::kIn:
          return Contains(right, left);
        case CompareOp::kNotIn:
          return !Contains(right, left);
      }
      return false;
    }();
    if (!result) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

// The cases of EvalInner with many locals live in their own functions, so that the frame of
// EvalInner -- which every level of nesting pays for -- stays small.

Value Interpreter::EvalSlice(Value object, const SliceExpr& slice, const ScopePtr& scope) {
  auto part = [&](const ExprPtr& e) -> std::optional<Value> {
    if (!e) return std::nullopt;
    return Eval(*e, scope);
  };
  std::optional<Value> start = part(slice.start), stop = part(slice.stop), step = part(slice.step);
  if (object.is_undefined()) object.FailUndefined();
  Value result = SliceValue(object, start, stop, step);
  if (result.is_string()) ChargeString(result.as_string().size());
  if (result.is_list()) ChargeList(result.as_list().size());
  return result;
}

Value Interpreter::EvalConcat(const ConcatExpr& node, const ScopePtr& scope) {
  std::string out;
  for (const ExprPtr& part : node.parts) {
    AppendStr(Eval(*part, scope), &out);
    ChargeString(out.size());
  }
  return Value(std::move(out));
}

Value Interpreter::EvalDict(const DictExpr& node, const ScopePtr& scope) {
  Dict dict;
  for (const auto& [key_expr, value_expr] : node.items) {
    Value key = Eval(*key_expr, scope);
    if (!key.is_string()) {
      throw TemplateError(TemplateError::Kind::kRuntime,
                          "only string keys are supported in dict literals, got '" +
                              std::string(TypeName(key)) + "'",
                          key_expr->offset);
    }
    dict.Set(key.as_string(), Eval(*value_expr, scope));
  }
  ChargeList(dict.size());
  return Value::FromDict(std::move(dict));
}

Value Interpreter::EvalSequence(const SequenceExpr& node, const ScopePtr& scope) {
  ValueList items;
  items.reserve(node.items.size());
  for (const ExprPtr& e : node.items) items.push_back(Eval(*e, scope));
  ChargeList(items.size());
  return node.kind == ExprKind::kList ? Value::List(std::move(items))
                                      : Value::Tuple(std::move(items));
}

Value Interpreter::EvalCall(const CallExpr& node, const ScopePtr& scope) {
  Value callee = Eval(*node.callee, scope);
  CallArgs args = EvalArgs(node.args, scope);
  return CallValue(callee, args);
}

Value Interpreter::EvalTest(const TestExpr& node, const ScopePtr& scope) {
  Value input = Eval(*node.input, scope);
  CallArgs args = EvalArgs(node.args, scope);
  if (node.fn == nullptr) Fail("No test named '" + node.name + "' found.");
  Charge(1);
  return Value(node.fn(*this, input, args));
}

Value Interpreter::EvalInner(const Expr& expr, const ScopePtr& scope) {
  switch (expr.kind) {
    case ExprKind::kConst:
      return static_cast<const ConstExpr&>(expr).value;
    case ExprKind::kName: {
      const auto& node = static_cast<const NameExpr&>(expr);
      if (const Value* v = scope->Find(node.name)) return *v;
      return Value::Undefined("'" + node.name + "' is undefined");
    }
    case ExprKind::kGetAttr: {
      const auto& node = static_cast<const GetAttrExpr&>(expr);
      Value object = Eval(*node.object, scope);
      return GetAttribute(object, node.attr);
    }
    case ExprKind::kGetItem: {
      const auto& node = static_cast<const GetItemExpr&>(expr);
      Value object = Eval(*node.object, scope);
      if (node.index->kind == ExprKind::kSlice) {
        return EvalSlice(object, static_cast<const SliceExpr&>(*node.index), scope);
      }
      Value key = Eval(*node.index, scope);
      return GetItem(object, key);
    }
    case ExprKind::kSlice:
      Fail("a slice is only valid inside []");
    case ExprKind::kCall:
      return EvalCall(static_cast<const CallExpr&>(expr), scope);
    case ExprKind::kFilter:
      return EvalFilter(static_cast<const FilterExpr&>(expr), scope, nullptr);
    case ExprKind::kTest:
      return EvalTest(static_cast<const TestExpr&>(expr), scope);
    case ExprKind::kNot:
      return Value(!Truthy(Eval(*static_cast<const UnaryExpr&>(expr).operand, scope)));
    case ExprKind::kNeg:
      return Negate(Eval(*static_cast<const UnaryExpr&>(expr).operand, scope));
    case ExprKind::kPos:
      return UnaryPlus(Eval(*static_cast<const UnaryExpr&>(expr).operand, scope));
    case ExprKind::kBinary: {
      const auto& node = static_cast<const BinaryExpr&>(expr);
      Value left = Eval(*node.left, scope);
      Value right = Eval(*node.right, scope);
      return BinaryOperation(*this, node.op, left, right);
    }
    case ExprKind::kAnd: {
      const auto& node = static_cast<const LogicalExpr&>(expr);
      Value left = Eval(*node.left, scope);
      if (!Truthy(left)) return left;
      return Eval(*node.right, scope);
    }
    case ExprKind::kOr: {
      const auto& node = static_cast<const LogicalExpr&>(expr);
      Value left = Eval(*node.left, scope);
      if (Truthy(left)) return left;
      return Eval(*node.right, scope);
    }
    case ExprKind::kConcat:
      return EvalConcat(static_cast<const ConcatExpr&>(expr), scope);
    case ExprKind::kCompare:
      return EvalCompare(static_cast<const CompareExpr&>(expr), scope);
    case ExprKind::kCondExpr: {
      const auto& node = static_cast<const CondExpr&>(expr);
      if (Truthy(Eval(*node.test, scope))) return Eval(*node.then_expr, scope);
      if (node.else_expr) return Eval(*node.else_expr, scope);
      return Value::Undefined(
          "the inline if-expression evaluated to false and no else section was defined.");
    }
    case ExprKind::kList:
    case ExprKind::kTuple:
      return EvalSequence(static_cast<const SequenceExpr&>(expr), scope);
    case ExprKind::kDict:
      return EvalDict(static_cast<const DictExpr&>(expr), scope);
  }
  Fail("unknown expression");
}

}  // namespace yunzhi::engine::jinja
