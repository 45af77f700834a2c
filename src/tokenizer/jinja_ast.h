// Syntax tree of the Jinja subset (internal to the Jinja engine).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace epserve::tokenizer::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,
  kName,
  kList,
  kTuple,
  kDict,
  kAttr,
  kItem,
  kSlice,
  kCall,
  kFilter,
  kTest,
  kNeg,
  kPos,
  kNot,
  kAnd,
  kOr,
  kBinary,
  kCompare,
  kCond
};

struct Expr {
  ExprKind kind;
  int line = 0;
  Value literal;               // kLiteral
  std::string name;            // kName, kAttr attribute, kFilter/kTest name, operator
  std::vector<ExprPtr> items;  // kList/kTuple elements, kDict key,value pairs, call args,
                               // kSlice start/stop/step (null when absent)
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // kCall/kFilter/kTest keyword arguments
  ExprPtr a, b, c;                                      // operands (kCond: a if b else c)
  bool negated = false;                                 // kTest: "is not"
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind {
  kText,
  kOutput,
  kIf,
  kFor,
  kSet,
  kSetBlock,
  kMacro,
  kBreak,
  kContinue,
  kBlock
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;                                // kText
  ExprPtr expr;                                    // kOutput, kFor iterable, kSet value
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf (null condition: else)
  std::vector<std::string> targets;                // kFor / kSet names
  std::string attr;                                // kSet "ns.attr": targets[0] = ns
  ExprPtr filter;                                  // kFor ... if cond
  Body body, else_body;                            // kFor, kMacro, kSetBlock, kBlock
  std::string name;                                // kMacro
  std::vector<std::string> params;                 // kMacro
  std::vector<ExprPtr> defaults;                   // kMacro (null: no default)
};

// Parses template source; throws epserve::Error naming the line of an unsupported construct.
Body parse_template(const std::string& source);

// Names the parser accepts (checked at load time).
bool is_known_filter(const std::string& name);
bool is_known_test(const std::string& name);
bool is_known_method(const std::string& name);

}  // namespace epserve::tokenizer::jinja
