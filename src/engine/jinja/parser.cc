#include "engine/jinja/parser.h"

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "engine/jinja/filters.h"
#include "engine/jinja/tests.h"

namespace yunzhi::engine::jinja {
namespace {

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, int max_depth)
      : tokens_(tokens), max_depth_(max_depth) {}

  StmtList ParseTemplate() {
    StmtList body = Subparse({});
    if (!AtEof()) Fail("unexpected '" + Describe(Current()) + "'");
    for (const UnknownName& u : unknown_) {
      if (!u.soft) {
        throw TemplateError(
            TemplateError::Kind::kSyntax,
            std::string("No ") + (u.is_filter ? "filter" : "test") + " named '" + u.name + "'.",
            u.offset);
      }
    }
    return body;
  }

 private:
  // ---- token stream ----

  const Token& Current() const { return tokens_[pos_]; }
  const Token& Look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  bool AtEof() const { return Current().type == TokenType::kEof; }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsName(const Token& t, std::string_view name) const {
    return t.type == TokenType::kName && t.text == name;
  }
  bool IsOp(const Token& t, std::string_view op) const {
    return t.type == TokenType::kOperator && t.text == op;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(Current(), name)) return false;
    Next();
    return true;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(Current(), op)) return false;
    Next();
    return true;
  }

  [[noreturn]] void Fail(std::string message) const {
    FailAt(std::move(message), Current().offset);
  }
  [[noreturn]] void FailAt(std::string message, uint32_t offset) const {
    throw TemplateError(TemplateError::Kind::kSyntax, std::move(message), offset);
  }

  static std::string Describe(const Token& t) {
    switch (t.type) {
      case TokenType::kName:
      case TokenType::kOperator:
        return t.text;
      case TokenType::kString:
        return "string";
      case TokenType::kInteger:
        return "integer";
      case TokenType::kFloat:
        return "float";
      case TokenType::kData:
        return "template data / text";
      case TokenType::kVariableBegin:
        return "begin of print statement";
      case TokenType::kVariableEnd:
        return "end of print statement";
      case TokenType::kBlockBegin:
        return "begin of statement block";
      case TokenType::kBlockEnd:
        return "end of statement block";
      case TokenType::kEof:
        return "end of template";
    }
    return "token";
  }

  void ExpectOp(std::string_view op) {
    if (!SkipOp(op)) Fail("expected '" + std::string(op) + "', got '" + Describe(Current()) + "'");
  }
  void Expect(TokenType type, std::string_view what) {
    if (Current().type != type) {
      Fail("expected '" + std::string(what) + "', got '" + Describe(Current()) + "'");
    }
    Next();
  }
  const Token& ExpectNameToken() {
    if (Current().type != TokenType::kName) {
      Fail("expected name, got '" + Describe(Current()) + "'");
    }
    return Next();
  }

  // Bounds recursion (nested expressions and blocks).
  class DepthGuard {
   public:
    explicit DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > p_->max_depth_) {
        p_->Fail("template nesting is deeper than the limit of " + std::to_string(p_->max_depth_));
      }
    }
    ~DepthGuard() { --p_->depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Parser* p_;
  };

  // Marks the parts of the tree where Jinja2 checks names of filters and tests only when they
  // run (inside if-statements and inline ifs), restored on scope exit.
  class SoftScope {
   public:
    SoftScope(Parser* p, bool soft) : p_(p), saved_(p->soft_) { p_->soft_ = soft; }
    ~SoftScope() { p_->soft_ = saved_; }
    SoftScope(const SoftScope&) = delete;
    SoftScope& operator=(const SoftScope&) = delete;

   private:
    Parser* p_;
    bool saved_;
  };

  // ---- statements ----

  // Parses statements until a block tag whose name is in `end_names` (left as the current
  // token) or the end of input.
  StmtList Subparse(std::initializer_list<std::string_view> end_names) {
    DepthGuard guard(this);
    StmtList body;
    while (!AtEof()) {
      const Token& t = Current();
      if (t.type == TokenType::kData) {
        body.push_back(std::make_unique<TextStmt>(t.offset, t.text));
        Next();
      } else if (t.type == TokenType::kVariableBegin) {
        Next();
        ExprPtr e = ParseTuple(/*with_condexpr=*/true, {}, false);
        body.push_back(std::make_unique<PrintStmt>(t.offset, std::move(e)));
        Expect(TokenType::kVariableEnd, "}}");
      } else if (t.type == TokenType::kBlockBegin) {
        Next();
        const Token& name = Current();
        if (name.type == TokenType::kName &&
            std::find(end_names.begin(), end_names.end(), name.text) != end_names.end()) {
          return body;
        }
        ParseStatement(&body);
        Expect(TokenType::kBlockEnd, "%}");
      } else {
        Fail("unexpected '" + Describe(t) + "'");
      }
    }
    return body;
  }

  // Parses a statement body: the rest of the opening tag, then statements up to one of
  // `end_names`. With `drop_needle`, the end tag's name is consumed too.
  StmtList ParseBody(std::string_view tag, std::initializer_list<std::string_view> end_names,
                     bool drop_needle) {
    SkipOp(":");
    Expect(TokenType::kBlockEnd, "%}");
    tag_stack_.emplace_back(tag);
    StmtList body = Subparse(end_names);
    if (AtEof()) {
      std::string looking;
      for (std::string_view n : end_names) {
        if (!looking.empty()) looking += " or ";
        looking += "'" + std::string(n) + "'";
      }
      Fail("Unexpected end of template. Jinja was looking for the following tags: " + looking +
           ". The innermost block that needs to be closed is '" + tag_stack_.back() + "'.");
    }
    tag_stack_.pop_back();
    if (drop_needle) Next();
    return body;
  }

  void ParseStatement(StmtList* out) {
    const Token& t = Current();
    if (t.type != TokenType::kName) Fail("tag name expected");
    const std::string& tag = t.text;
    if (tag == "if") {
      out->push_back(ParseIf());
    } else if (tag == "for") {
      out->push_back(ParseFor());
    } else if (tag == "set") {
      out->push_back(ParseSet());
    } else if (tag == "macro") {
      out->push_back(ParseMacro());
    } else if (tag == "filter") {
      out->push_back(ParseFilterBlock());
    } else if (tag == "with") {
      out->push_back(ParseWith());
    } else if (tag == "print") {
      Next();
      bool first = true;
      while (Current().type != TokenType::kBlockEnd) {
        if (!first) ExpectOp(",");
        first = false;
        uint32_t off = Current().offset;
        out->push_back(std::make_unique<PrintStmt>(off, ParseExpression(true)));
      }
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) Fail("'" + tag + "' outside of a loop");
      StmtKind kind = tag == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      out->push_back(std::make_unique<LoopControlStmt>(kind, Next().offset));
    } else if (tag == "generation") {
      auto node = std::make_unique<GenerationStmt>(Next().offset);
      node->body = ParseBody("generation", {"endgeneration"}, true);
      out->push_back(std::move(node));
    } else if (tag == "extends" || tag == "include" || tag == "import" || tag == "from" ||
               tag == "block" || tag == "call" || tag == "autoescape" || tag == "do") {
      Fail("the '" + tag + "' tag is not supported in chat templates");
    } else {
      std::string message = "Encountered unknown tag '" + tag + "'.";
      if (!tag_stack_.empty()) {
        message += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
      }
      Fail(message);
    }
  }

  StmtPtr ParseIf() {
    auto node = std::make_unique<IfStmt>(Next().offset);
    SoftScope soft(this, true);
    for (;;) {
      ExprPtr test = ParseTuple(/*with_condexpr=*/false, {}, false);
      StmtList body = ParseBody("if", {"elif", "else", "endif"}, false);
      node->branches.emplace_back(std::move(test), std::move(body));
      const Token& end = Next();
      if (end.text == "elif") continue;
      if (end.text == "else") node->else_body = ParseBody("if", {"endif"}, true);
      break;
    }
    return node;
  }

  StmtPtr ParseFor() {
    auto node = std::make_unique<ForStmt>(Next().offset);
    node->target = ParseAssignTarget(/*with_namespace=*/false, "in");
    if (!SkipName("in")) Fail("expected 'in', got '" + Describe(Current()) + "'");
    node->iter = ParseTuple(/*with_condexpr=*/false, "recursive", false);
    SoftScope hard(this, false);
    if (SkipName("if")) node->filter = ParseExpression(true);
    if (IsName(Current(), "recursive")) Fail("recursive loops are not supported");
    ++loop_depth_;
    node->body = ParseBody("for", {"endfor", "else"}, false);
    --loop_depth_;
    if (Next().text == "else") node->else_body = ParseBody("for", {"endfor"}, true);
    return node;
  }

  StmtPtr ParseSet() {
    uint32_t off = Next().offset;
    AssignTarget target = ParseAssignTarget(/*with_namespace=*/true, "");
    if (SkipOp("=")) {
      auto node = std::make_unique<SetStmt>(off);
      node->target = std::move(target);
      node->value = ParseTuple(/*with_condexpr=*/true, {}, false);
      return node;
    }
    auto node = std::make_unique<SetBlockStmt>(off);
    node->target = std::move(target);
    SoftScope hard(this, false);
    if (IsOp(Current(), "|")) node->filter = ParseFilterChain(nullptr, /*start_inline=*/false);
    node->body = ParseBody("set", {"endset"}, true);
    return node;
  }

  StmtPtr ParseMacro() {
    auto node = std::make_unique<MacroStmt>(Next().offset);
    node->name = ExpectNameToken().text;
    ExpectOp("(");
    while (!IsOp(Current(), ")")) {
      if (!node->params.empty()) ExpectOp(",");
      node->params.push_back(ExpectNameToken().text);
      if (SkipOp("=")) {
        node->defaults.push_back(ParseExpression(true));
      } else if (!node->defaults.empty()) {
        Fail("non-default argument follows default argument");
      }
    }
    ExpectOp(")");
    SoftScope hard(this, false);
    int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    macro_stack_.push_back(node.get());
    node->body = ParseBody("macro", {"endmacro"}, true);
    macro_stack_.pop_back();
    loop_depth_ = saved_loop_depth;
    return node;
  }

  StmtPtr ParseFilterBlock() {
    auto node = std::make_unique<FilterBlockStmt>(Next().offset);
    SoftScope hard(this, false);
    node->filter = ParseFilterChain(nullptr, /*start_inline=*/true);
    node->body = ParseBody("filter", {"endfilter"}, true);
    return node;
  }

  StmtPtr ParseWith() {
    auto node = std::make_unique<WithStmt>(Next().offset);
    while (Current().type != TokenType::kBlockEnd) {
      if (!node->assignments.empty()) ExpectOp(",");
      AssignTarget target = ParseAssignTarget(false, "");
      ExpectOp("=");
      node->assignments.emplace_back(std::move(target), ParseExpression(true));
    }
    SoftScope hard(this, false);
    node->body = ParseBody("with", {"endwith"}, true);
    return node;
  }

  // A name, `ns.attr` (when allowed), or a tuple of names ending before `extra_end`.
  AssignTarget ParseAssignTarget(bool with_namespace, std::string_view extra_end) {
    AssignTarget target;
    target.offset = Current().offset;
    if (with_namespace && Current().type == TokenType::kName && IsOp(Look(), ".")) {
      target.kind = AssignTarget::Kind::kNamespaceAttr;
      target.name = Next().text;
      Next();  // '.'
      target.attr = ExpectNameToken().text;
      return target;
    }
    bool parenthesized = SkipOp("(");
    std::vector<std::string> names;
    bool is_tuple = parenthesized;
    for (;;) {
      if (!names.empty()) {
        if (!SkipOp(",")) break;
        is_tuple = true;
      }
      const Token& t = Current();
      if (t.type == TokenType::kVariableEnd || t.type == TokenType::kBlockEnd || IsOp(t, ")") ||
          IsOp(t, "=") || (!extra_end.empty() && IsName(t, extra_end))) {
        if (names.empty()) Fail("expected an assignment target, got '" + Describe(t) + "'");
        break;
      }
      if (t.type != TokenType::kName) Fail("can't assign to '" + Describe(t) + "'");
      if (t.text == "true" || t.text == "false" || t.text == "none" || t.text == "True" ||
          t.text == "False" || t.text == "None") {
        Fail("can't assign to 'const'");
      }
      names.push_back(Next().text);
    }
    if (parenthesized) ExpectOp(")");
    if (is_tuple) {
      target.kind = AssignTarget::Kind::kTuple;
      target.names = std::move(names);
    } else {
      target.kind = AssignTarget::Kind::kName;
      target.name = std::move(names[0]);
    }
    return target;
  }

  // ---- expressions ----

  ExprPtr ParseExpression(bool with_condexpr) {
    return with_condexpr ? ParseCondExpr() : ParseOr();
  }

  // Comma-separated expressions; a tuple when there is a comma.
  ExprPtr ParseTuple(bool with_condexpr, std::string_view extra_end, bool explicit_parentheses) {
    uint32_t off = Current().offset;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    for (;;) {
      if (!items.empty()) ExpectOp(",");
      const Token& t = Current();
      if (t.type == TokenType::kVariableEnd || t.type == TokenType::kBlockEnd || IsOp(t, ")") ||
          (!extra_end.empty() && IsName(t, extra_end))) {
        break;
      }
      items.push_back(ParseExpression(with_condexpr));
      if (IsOp(Current(), ",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) {
        Fail("Expected an expression, got '" + Describe(Current()) + "'");
      }
    }
    auto node = std::make_unique<SequenceExpr>(ExprKind::kTuple, off);
    node->items = std::move(items);
    return node;
  }

  ExprPtr ParseCondExpr() {
    DepthGuard guard(this);
    uint32_t off = Current().offset;
    size_t unknown_mark = unknown_.size();
    ExprPtr expr = ParseOr();
    while (IsName(Current(), "if")) {
      Next();
      // Jinja2 compiles the whole inline-if in a soft frame, including the part before `if`.
      for (size_t i = unknown_mark; i < unknown_.size(); ++i) unknown_[i].soft = true;
      SoftScope soft(this, true);
      auto node = std::make_unique<CondExpr>(off);
      node->then_expr = std::move(expr);
      node->test = ParseOr();
      if (SkipName("else")) node->else_expr = ParseCondExpr();
      expr = std::move(node);
      off = Current().offset;
    }
    return expr;
  }

  ExprPtr ParseOr() {
    uint32_t off = Current().offset;
    ExprPtr left = ParseAnd();
    while (SkipName("or")) {
      left = std::make_unique<LogicalExpr>(ExprKind::kOr, off, std::move(left), ParseAnd());
    }
    return left;
  }

  ExprPtr ParseAnd() {
    uint32_t off = Current().offset;
    ExprPtr left = ParseNot();
    while (SkipName("and")) {
      left = std::make_unique<LogicalExpr>(ExprKind::kAnd, off, std::move(left), ParseNot());
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName(Current(), "not")) {
      DepthGuard guard(this);
      uint32_t off = Next().offset;
      return std::make_unique<UnaryExpr>(ExprKind::kNot, off, ParseNot());
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    ExprPtr expr = ParseMath1();
    std::unique_ptr<CompareExpr> cmp;
    for (;;) {
      const Token& t = Current();
      CompareOp op;
      if (IsOp(t, "==")) {
        op = CompareOp::kEq;
      } else if (IsOp(t, "!=")) {
        op = CompareOp::kNe;
      } else if (IsOp(t, "<")) {
        op = CompareOp::kLt;
      } else if (IsOp(t, "<=")) {
        op = CompareOp::kLe;
      } else if (IsOp(t, ">")) {
        op = CompareOp::kGt;
      } else if (IsOp(t, ">=")) {
        op = CompareOp::kGe;
      } else if (IsName(t, "in")) {
        op = CompareOp::kIn;
      } else if (IsName(t, "not") && IsName(Look(), "in")) {
        Next();
        op = CompareOp::kNotIn;
      } else {
        break;
      }
      uint32_t op_off = Next().offset;
      if (!cmp) cmp = std::make_unique<CompareExpr>(op_off, std::move(expr));
      cmp->rest.emplace_back(op, ParseMath1());
    }
    if (cmp) return cmp;
    return expr;
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    for (;;) {
      const Token& t = Current();
      BinaryOp op;
      if (IsOp(t, "+")) {
        op = BinaryOp::kAdd;
      } else if (IsOp(t, "-")) {
        op = BinaryOp::kSub;
      } else {
        break;
      }
      uint32_t off = Next().offset;
      left = std::make_unique<BinaryExpr>(off, op, std::move(left), ParseConcat());
    }
    return left;
  }

  ExprPtr ParseConcat() {
    uint32_t off = Current().offset;
    ExprPtr first = ParseMath2();
    if (!IsOp(Current(), "~")) return first;
    auto node = std::make_unique<ConcatExpr>(off);
    node->parts.push_back(std::move(first));
    while (SkipOp("~")) node->parts.push_back(ParseMath2());
    return node;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    for (;;) {
      const Token& t = Current();
      BinaryOp op;
      if (IsOp(t, "*")) {
        op = BinaryOp::kMul;
      } else if (IsOp(t, "/")) {
        op = BinaryOp::kDiv;
      } else if (IsOp(t, "//")) {
        op = BinaryOp::kFloorDiv;
      } else if (IsOp(t, "%")) {
        op = BinaryOp::kMod;
      } else {
        break;
      }
      uint32_t off = Next().offset;
      left = std::make_unique<BinaryExpr>(off, op, std::move(left), ParsePow());
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOp(Current(), "**")) {
      uint32_t off = Next().offset;
      left = std::make_unique<BinaryExpr>(off, BinaryOp::kPow, std::move(left), ParseUnary(true));
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    DepthGuard guard(this);
    const Token& t = Current();
    ExprPtr node;
    if (IsOp(t, "-") || IsOp(t, "+")) {
      ExprKind kind = t.text == "-" ? ExprKind::kNeg : ExprKind::kPos;
      uint32_t off = Next().offset;
      node = std::make_unique<UnaryExpr>(kind, off, ParseUnary(false));
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Current();
    uint32_t off = t.offset;
    switch (t.type) {
      case TokenType::kName: {
        Next();
        if (t.text == "true" || t.text == "True") return std::make_unique<ConstExpr>(off, true);
        if (t.text == "false" || t.text == "False") {
          return std::make_unique<ConstExpr>(off, false);
        }
        if (t.text == "none" || t.text == "None") {
          return std::make_unique<ConstExpr>(off, Value::None());
        }
        if ((t.text == "varargs" || t.text == "kwargs") && !macro_stack_.empty()) {
          (t.text == "varargs" ? macro_stack_.back()->uses_varargs
                               : macro_stack_.back()->uses_kwargs) = true;
        }
        return std::make_unique<NameExpr>(off, t.text);
      }
      case TokenType::kString: {
        std::string text;
        while (Current().type == TokenType::kString) text += Next().text;
        return std::make_unique<ConstExpr>(off, Value(std::move(text)));
      }
      case TokenType::kInteger:
        Next();
        return std::make_unique<ConstExpr>(off, Value(t.int_value));
      case TokenType::kFloat:
        Next();
        return std::make_unique<ConstExpr>(off, Value(t.float_value));
      case TokenType::kOperator:
        if (t.text == "(") {
          DepthGuard guard(this);
          Next();
          ExprPtr e = ParseTuple(/*with_condexpr=*/true, {}, /*explicit_parentheses=*/true);
          ExpectOp(")");
          return e;
        }
        if (t.text == "[") return ParseList();
        if (t.text == "{") return ParseDict();
        break;
      default:
        break;
    }
    Fail("unexpected '" + Describe(t) + "'");
  }

  ExprPtr ParseList() {
    DepthGuard guard(this);
    auto node = std::make_unique<SequenceExpr>(ExprKind::kList, Next().offset);
    while (!IsOp(Current(), "]")) {
      if (!node->items.empty()) ExpectOp(",");
      if (IsOp(Current(), "]")) break;
      node->items.push_back(ParseExpression(true));
    }
    ExpectOp("]");
    return node;
  }

  ExprPtr ParseDict() {
    DepthGuard guard(this);
    auto node = std::make_unique<DictExpr>(Next().offset);
    while (!IsOp(Current(), "}")) {
      if (!node->items.empty()) ExpectOp(",");
      if (IsOp(Current(), "}")) break;
      ExprPtr key = ParseExpression(true);
      ExpectOp(":");
      node->items.emplace_back(std::move(key), ParseExpression(true));
    }
    ExpectOp("}");
    return node;
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    for (;;) {
      const Token& t = Current();
      if (IsOp(t, ".") || IsOp(t, "[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp(t, "(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    for (;;) {
      const Token& t = Current();
      if (IsOp(t, "|")) {
        node = ParseFilterChain(std::move(node), false);
      } else if (IsName(t, "is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp(t, "(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node) {
    DepthGuard guard(this);
    const Token& t = Next();
    if (t.text == ".") {
      const Token& attr = Current();
      if (attr.type == TokenType::kName) {
        Next();
        return std::make_unique<GetAttrExpr>(t.offset, std::move(node), attr.text);
      }
      if (attr.type != TokenType::kInteger) Fail("expected name or number");
      Next();
      return std::make_unique<GetItemExpr>(
          t.offset, std::move(node),
          std::make_unique<ConstExpr>(attr.offset, Value(attr.int_value)));
    }
    // '['
    std::vector<ExprPtr> args;
    while (!IsOp(Current(), "]")) {
      if (!args.empty()) ExpectOp(",");
      args.push_back(ParseSubscribed());
    }
    ExpectOp("]");
    ExprPtr index;
    if (args.size() == 1) {
      index = std::move(args[0]);
    } else {
      auto tuple = std::make_unique<SequenceExpr>(ExprKind::kTuple, t.offset);
      tuple->items = std::move(args);
      index = std::move(tuple);
    }
    return std::make_unique<GetItemExpr>(t.offset, std::move(node), std::move(index));
  }

  ExprPtr ParseSubscribed() {
    uint32_t off = Current().offset;
    ExprPtr start;
    if (!IsOp(Current(), ":")) {
      ExprPtr e = ParseExpression(true);
      if (!IsOp(Current(), ":")) return e;
      start = std::move(e);
    }
    Next();  // ':'
    auto slice = std::make_unique<SliceExpr>(off);
    slice->start = std::move(start);
    auto at_end = [this] { return IsOp(Current(), "]") || IsOp(Current(), ","); };
    if (!IsOp(Current(), ":") && !at_end()) slice->stop = ParseExpression(true);
    if (SkipOp(":")) {
      if (!at_end()) slice->step = ParseExpression(true);
    }
    return slice;
  }

  void ParseCallArgs(Arguments* args) {
    uint32_t off = Current().offset;
    ExpectOp("(");
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) FailAt("invalid syntax for function call expression", off);
    };
    while (!IsOp(Current(), ")")) {
      if (require_comma) {
        ExpectOp(",");
        if (IsOp(Current(), ")")) break;
      }
      if (IsOp(Current(), "*")) {
        ensure(!args->star_args && !args->star_kwargs);
        Next();
        args->star_args = ParseExpression(true);
      } else if (IsOp(Current(), "**")) {
        ensure(!args->star_kwargs);
        Next();
        args->star_kwargs = ParseExpression(true);
      } else if (Current().type == TokenType::kName && IsOp(Look(), "=")) {
        ensure(!args->star_kwargs);
        std::string key = Next().text;
        Next();  // '='
        args->keyword.emplace_back(std::move(key), ParseExpression(true));
      } else {
        ensure(!args->star_args && !args->star_kwargs && args->keyword.empty());
        args->positional.push_back(ParseExpression(true));
      }
      require_comma = true;
    }
    ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr callee) {
    DepthGuard guard(this);
    auto node = std::make_unique<CallExpr>(Current().offset, std::move(callee));
    ParseCallArgs(&node->args);
    return node;
  }

  std::string ParseDottedName() {
    std::string name = ExpectNameToken().text;
    while (IsOp(Current(), ".")) {
      Next();
      name += "." + ExpectNameToken().text;
    }
    return name;
  }

  void NoteUnknown(bool is_filter, const std::string& name, uint32_t offset) {
    unknown_.push_back({is_filter, name, offset, soft_});
  }

  // `| f(args) | g ...`; with `start_inline` the first filter has no leading pipe.
  ExprPtr ParseFilterChain(ExprPtr node, bool start_inline) {
    DepthGuard guard(this);
    while (IsOp(Current(), "|") || start_inline) {
      if (!start_inline) Next();
      start_inline = false;
      uint32_t off = Current().offset;
      std::string name = ParseDottedName();
      auto filter = std::make_unique<FilterExpr>(off, std::move(node), name);
      filter->fn = FindFilter(name);
      if (filter->fn == nullptr) NoteUnknown(true, name, off);
      if (IsOp(Current(), "(")) ParseCallArgs(&filter->args);
      node = std::move(filter);
    }
    return node;
  }

  ExprPtr ParseTest(ExprPtr node) {
    DepthGuard guard(this);
    uint32_t off = Next().offset;  // 'is'
    bool negated = SkipName("not");
    std::string name = ParseDottedName();
    auto test = std::make_unique<TestExpr>(off, std::move(node), name);
    test->fn = FindTest(name);
    if (test->fn == nullptr) NoteUnknown(false, name, off);
    const Token& t = Current();
    if (IsOp(t, "(")) {
      ParseCallArgs(&test->args);
    } else if ((t.type == TokenType::kName || t.type == TokenType::kString ||
                t.type == TokenType::kInteger || t.type == TokenType::kFloat || IsOp(t, "[") ||
                IsOp(t, "{")) &&
               !IsName(t, "else") && !IsName(t, "or") && !IsName(t, "and")) {
      if (IsName(t, "is")) Fail("You cannot chain multiple tests with is");
      test->args.positional.push_back(ParsePostfix(ParsePrimary()));
    }
    if (negated) return std::make_unique<UnaryExpr>(ExprKind::kNot, off, std::move(test));
    return test;
  }

  struct UnknownName {
    bool is_filter;
    std::string name;
    uint32_t offset;
    bool soft;
  };

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int max_depth_;
  int depth_ = 0;
  int loop_depth_ = 0;
  bool soft_ = false;
  std::vector<std::string> tag_stack_;
  std::vector<MacroStmt*> macro_stack_;
  std::vector<UnknownName> unknown_;
};

}  // namespace

StmtList Parse(const std::vector<Token>& tokens, int max_depth) {
  return Parser(tokens, max_depth).ParseTemplate();
}

}  // namespace yunzhi::engine::jinja
