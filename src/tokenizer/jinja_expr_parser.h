// Expression parser of the Jinja subset (internal to jinja_parser.cpp): Jinja's precedence
// (or, and, not, comparisons and `in`, + -, ~, * / // %, **, unary minus, postfix . [] () with
// slices, `|` filters and `is` tests, conditional expressions), checking filter, test and method
// names against what the engine supports so that templates fail at load time.
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_lexer.h"

namespace epserve::tokenizer::jinja {

class ExprParser {
 public:
  ExprParser(std::vector<Tok> toks, int line) : toks_(std::move(toks)), line_(line) {}

  const Tok& peek(size_t k = 0) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  bool at_end() const { return peek().kind == TokKind::kEnd; }
  bool is_op(const char* op, size_t k = 0) const {
    return peek(k).kind == TokKind::kOp && peek(k).text == op;
  }
  bool is_name(const char* name, size_t k = 0) const {
    return peek(k).kind == TokKind::kName && peek(k).text == name;
  }
  Tok next() { return toks_[std::min(pos_++, toks_.size() - 1)]; }
  void expect_op(const char* op) {
    EPS_CHECK(is_op(op), "template line {}: expected '{}' but found '{}'", line_, op, peek().text);
    ++pos_;
  }
  std::string expect_name() {
    EPS_CHECK(peek().kind == TokKind::kName, "template line {}: expected a name but found '{}'",
              line_, peek().text);
    return next().text;
  }
  void expect_end() {
    EPS_CHECK(at_end(), "template line {}: unexpected '{}'", line_, peek().text);
  }
  int line() const { return line_; }

  ExprPtr make(ExprKind kind) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line_;
    return e;
  }

  ExprPtr parse_expression(bool with_condexpr = true) {
    ExprPtr e = parse_or();
    if (!with_condexpr) return e;
    while (is_name("if")) {
      next();
      auto cond = make(ExprKind::kCond);
      cond->a = std::move(e);
      cond->b = parse_or();
      if (is_name("else")) {
        next();
        cond->c = parse_expression();
      }
      e = std::move(cond);
    }
    return e;
  }

  // A tuple without parentheses (for loop iterables, set values): a, b, c
  ExprPtr parse_tuple_or_expression_no_cond() { return parse_tuple_or_expression(false); }
  ExprPtr parse_tuple_or_expression(bool with_condexpr = true) {
    ExprPtr first = parse_expression(with_condexpr);
    if (!is_op(",")) return first;
    auto t = make(ExprKind::kTuple);
    t->items.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (at_end() || is_name("if")) break;
      t->items.push_back(parse_expression(with_condexpr));
    }
    return t;
  }

 private:
  ExprPtr binary(ExprKind kind, std::string op, ExprPtr a, ExprPtr b) {
    auto e = make(kind);
    e->name = std::move(op);
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      next();
      e = binary(ExprKind::kOr, "or", std::move(e), parse_and());
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      next();
      e = binary(ExprKind::kAnd, "and", std::move(e), parse_not());
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      next();
      auto e = make(ExprKind::kNot);
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    while (true) {
      std::string op;
      if (peek().kind == TokKind::kOp &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
           peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        return e;
      }
      e = binary(ExprKind::kCompare, op, std::move(e), parse_math1());
    }
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = next().text;
      e = binary(ExprKind::kBinary, op, std::move(e), parse_concat());
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      next();
      e = binary(ExprKind::kBinary, "~", std::move(e), parse_math2());
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = next().text;
      e = binary(ExprKind::kBinary, op, std::move(e), parse_pow());
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary();
    while (is_op("**")) {
      next();
      e = binary(ExprKind::kBinary, "**", std::move(e), parse_unary());
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter = true) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      bool neg = next().text == "-";
      e = make(neg ? ExprKind::kNeg : ExprKind::kPos);
      e->a = parse_unary(false);
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filters(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    Tok t = next();
    switch (t.kind) {
      case TokKind::kName: {
        if (t.text == "true" || t.text == "True") return literal(Value(true));
        if (t.text == "false" || t.text == "False") return literal(Value(false));
        if (t.text == "none" || t.text == "None") return literal(Value(None{}));
        auto e = make(ExprKind::kName);
        e->name = t.text;
        return e;
      }
      case TokKind::kInt:
        return literal(Value(t.int_value));
      case TokKind::kFloat:
        return literal(Value(t.float_value));
      case TokKind::kString: {
        std::string s = t.text;
        while (peek().kind == TokKind::kString) s += next().text;
        return literal(Value(s));
      }
      case TokKind::kOp:
        if (t.text == "(") {
          if (is_op(")")) {
            next();
            return make(ExprKind::kTuple);
          }
          ExprPtr first = parse_expression();
          if (is_op(")")) {
            next();
            return first;
          }
          auto tuple = make(ExprKind::kTuple);
          tuple->items.push_back(std::move(first));
          while (is_op(",")) {
            next();
            if (is_op(")")) break;
            tuple->items.push_back(parse_expression());
          }
          expect_op(")");
          return tuple;
        }
        if (t.text == "[") {
          auto list = make(ExprKind::kList);
          while (!is_op("]")) {
            list->items.push_back(parse_expression());
            if (!is_op(",")) break;
            next();
          }
          expect_op("]");
          return list;
        }
        if (t.text == "{") {
          auto dict = make(ExprKind::kDict);
          while (!is_op("}")) {
            dict->items.push_back(parse_expression());
            expect_op(":");
            dict->items.push_back(parse_expression());
            if (!is_op(",")) break;
            next();
          }
          expect_op("}");
          return dict;
        }
        break;
      default:
        break;
    }
    EPS_THROW("template line {}: unexpected '{}' in expression", line_, t.text);
  }

  ExprPtr literal(Value v) {
    auto e = make(ExprKind::kLiteral);
    e->literal = std::move(v);
    return e;
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().kind == TokKind::kName && is_op("=", 1)) {
        std::string key = next().text;
        next();
        call.kwargs.emplace_back(key, parse_expression());
      } else {
        call.items.push_back(parse_expression());
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        next();
        auto attr = make(ExprKind::kAttr);
        if (peek().kind == TokKind::kInt) {
          attr->kind = ExprKind::kItem;
          attr->b = literal(Value(next().int_value));
        } else {
          attr->name = expect_name();
        }
        attr->a = std::move(e);
        if (attr->kind == ExprKind::kAttr && is_op("(")) {
          EPS_CHECK(is_known_method(attr->name), "template line {}: method '{}' is not supported",
                    line_, attr->name);
        }
        e = std::move(attr);
      } else if (is_op("[")) {
        next();
        ExprPtr index[3];
        int part = 0;
        bool is_slice = false;
        while (!is_op("]")) {
          if (is_op(":")) {
            next();
            is_slice = true;
            ++part;
            EPS_CHECK(part < 3, "template line {}: too many ':' in a slice", line_);
            continue;
          }
          index[part] = parse_expression();
        }
        expect_op("]");
        if (is_slice) {
          auto slice = make(ExprKind::kSlice);
          slice->a = std::move(e);
          for (auto& p : index) slice->items.push_back(std::move(p));
          e = std::move(slice);
        } else {
          EPS_CHECK(index[0] != nullptr, "template line {}: empty subscript", line_);
          auto item = make(ExprKind::kItem);
          item->a = std::move(e);
          item->b = std::move(index[0]);
          e = std::move(item);
        }
      } else if (is_op("(")) {
        auto call = make(ExprKind::kCall);
        call->a = std::move(e);
        parse_call_args(*call);
        e = std::move(call);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        next();
        auto f = make(ExprKind::kFilter);
        f->name = expect_name();
        EPS_CHECK(is_known_filter(f->name), "template line {}: filter '{}' is not supported", line_,
                  f->name);
        f->a = std::move(e);
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        next();
        auto t = make(ExprKind::kTest);
        if (is_name("not")) {
          next();
          t->negated = true;
        }
        t->name = expect_name();
        EPS_CHECK(is_known_test(t->name), "template line {}: test '{}' is not supported", line_,
                  t->name);
        t->a = std::move(e);
        if (is_op("(")) {
          parse_call_args(*t);
        } else if (peek().kind == TokKind::kInt || peek().kind == TokKind::kFloat ||
                   peek().kind == TokKind::kString ||
                   (peek().kind == TokKind::kName && !is_name("and") && !is_name("or") &&
                    !is_name("else") && !is_name("if") && !is_name("in") && !is_name("not"))) {
          t->items.push_back(parse_primary());
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  std::vector<Tok> toks_;
  size_t pos_ = 0;
  int line_;
};

}  // namespace epserve::tokenizer::jinja
