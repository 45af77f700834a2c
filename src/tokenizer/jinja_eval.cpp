// Evaluation of the Jinja syntax tree: scopes (loop bodies and macros get their own, as in
// Jinja), attribute and item lookup with Jinja's fallbacks, operators with Python semantics.
#include <cmath>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer::jinja {

struct Template::Parsed {
  Body body;
};

namespace {

using Frame = std::unordered_map<std::string, Value>;
enum class Flow { kNormal, kBreak, kContinue };

std::u32string to_u32(const std::string& s) {
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) out.push_back(utf8_next(s, i));
  return out;
}

std::string from_u32(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

[[noreturn]] void undefined_error(const Value& v, int line) {
  EPS_THROW("template line {}: '{}' is undefined", line, v.undefined_name());
}

class Renderer {
 public:
  Renderer(std::shared_ptr<Frame> globals, std::shared_ptr<Frame> top) {
    frames_.push_back(std::move(globals));
    frames_.push_back(std::move(top));
  }

  Flow exec(const Body& body, std::string& out) {
    for (const auto& s : body) {
      Flow f = exec(*s, out);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

 private:
  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto found = (*it)->find(name);
      if (found != (*it)->end()) return found->second;
    }
    return Value::undefined(name);
  }
  void assign(const std::string& name, Value v) { (*frames_.back())[name] = std::move(v); }

  Flow exec(const Stmt& s, std::string& out) {
    switch (s.kind) {
      case StmtKind::kText:
        out += s.text;
        return Flow::kNormal;
      case StmtKind::kOutput:
        out += eval(*s.expr).str();
        return Flow::kNormal;
      case StmtKind::kIf:
        for (const auto& [cond, body] : s.branches) {
          if (!cond || eval(*cond).truthy()) return exec(body, out);
        }
        return Flow::kNormal;
      case StmtKind::kFor:
        return exec_for(s, out);
      case StmtKind::kSet: {
        Value v = eval(*s.expr);
        if (!s.attr.empty()) {
          Value target = lookup(s.targets[0]);
          EPS_CHECK(target.is_dict() && target.as_dict().is_namespace,
                    "template line {}: cannot assign attribute on non-namespace object", s.line);
          target.as_dict().set(s.attr, std::move(v));
        } else if (s.targets.size() == 1) {
          assign(s.targets[0], std::move(v));
        } else {
          unpack(s.targets, v, s.line);
        }
        return Flow::kNormal;
      }
      case StmtKind::kSetBlock: {
        std::string captured;
        exec(s.body, captured);
        assign(s.targets[0], Value(captured));
        return Flow::kNormal;
      }
      case StmtKind::kMacro:
        define_macro(s);
        return Flow::kNormal;
      case StmtKind::kBreak:
        return Flow::kBreak;
      case StmtKind::kContinue:
        return Flow::kContinue;
      case StmtKind::kBlock:
        return exec(s.body, out);
    }
    return Flow::kNormal;
  }

  void unpack(const std::vector<std::string>& targets, const Value& v, int line) {
    List items = iterate(v);
    EPS_CHECK(items.size() == targets.size(),
              "template line {}: cannot unpack {} values into {} names", line, items.size(),
              targets.size());
    for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], items[i]);
  }

  Flow exec_for(const Stmt& s, std::string& out) {
    Value iterable = eval(*s.expr);
    EPS_CHECK(!iterable.is_none(), "template line {}: 'NoneType' object is not iterable", s.line);
    List all = iterate(iterable);
    frames_.push_back(std::make_shared<Frame>());
    List items;
    if (s.filter) {
      for (const Value& item : all) {
        bind_targets(s, item);
        if (eval(*s.filter).truthy()) items.push_back(item);
      }
    } else {
      items = std::move(all);
    }
    auto loop = std::make_shared<Dict>();
    int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      frames_.back() = std::make_shared<Frame>();
      bind_targets(s, items[i]);
      loop->items.clear();
      loop->set("index", Value(i + 1));
      loop->set("index0", Value(i));
      loop->set("revindex", Value(n - i));
      loop->set("revindex0", Value(n - i - 1));
      loop->set("first", Value(i == 0));
      loop->set("last", Value(i == n - 1));
      loop->set("length", Value(n));
      loop->set("depth", Value(1));
      loop->set("depth0", Value(0));
      loop->set("previtem", i > 0 ? items[i - 1] : Value::undefined("previtem"));
      loop->set("nextitem", i + 1 < n ? items[i + 1] : Value::undefined("nextitem"));
      loop->set("cycle", Value(Function([i](CallArgs& a) {
                  EPS_CHECK(!a.positional.empty(), "loop.cycle needs arguments");
                  return a.positional[i % a.positional.size()];
                })));
      assign("loop", Value(loop));
      Flow f = exec(s.body, out);
      if (f == Flow::kBreak) break;
    }
    frames_.pop_back();
    if (n == 0 && !s.else_body.empty()) return exec(s.else_body, out);
    return Flow::kNormal;
  }

  void bind_targets(const Stmt& s, const Value& item) {
    if (s.targets.size() == 1)
      assign(s.targets[0], item);
    else
      unpack(s.targets, item, s.line);
  }

  void define_macro(const Stmt& s) {
    const Stmt* macro = &s;
    // Macros see the globals and the template's top-level names, plus their arguments.
    std::vector<std::shared_ptr<Frame>> base(frames_.begin(),
                                             frames_.begin() + std::min<size_t>(2, frames_.size()));
    Renderer* self = this;
    assign(s.name, Value(Function([macro, base, self](CallArgs& args) {
             auto frame = std::make_shared<Frame>();
             for (size_t i = 0; i < macro->params.size(); ++i) {
               const Value* v = args.get(i, macro->params[i].c_str());
               if (v)
                 (*frame)[macro->params[i]] = *v;
               else if (macro->defaults[i])
                 (*frame)[macro->params[i]] = self->eval(*macro->defaults[i]);
               else
                 (*frame)[macro->params[i]] = Value::undefined(macro->params[i]);
             }
             std::vector<std::shared_ptr<Frame>> saved = base;
             saved.push_back(frame);
             std::swap(saved, self->frames_);
             std::string out;
             try {
               self->exec(macro->body, out);
             } catch (...) {
               std::swap(saved, self->frames_);
               throw;
             }
             std::swap(saved, self->frames_);
             return Value(out);
           })));
  }

  CallArgs eval_args(const Expr& e) {
    CallArgs args;
    for (const auto& a : e.items) args.positional.push_back(eval(*a));
    for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v));
    return args;
  }

  Value get_attr(const Value& obj, const std::string& name, int line) {
    if (obj.is_undefined()) undefined_error(obj, line);
    if (obj.is_dict()) {
      const Dict& d = obj.as_dict();
      if (!d.is_namespace) {
        Value m = get_method(obj, name);
        if (!m.is_undefined()) return m;
      }
      if (const Value* v = d.find(name)) return *v;
      return Value::undefined(name);
    }
    Value m = get_method(obj, name);
    if (!m.is_undefined()) return m;
    return Value::undefined(name);
  }

  Value get_item(const Value& obj, const Value& key, int line) {
    if (obj.is_undefined()) undefined_error(obj, line);
    if (obj.is_dict() && key.is_string()) {
      if (const Value* v = obj.as_dict().find(key.as_string())) return *v;
      return get_attr(obj, key.as_string(), line);
    }
    if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
      int64_t n = python_len(obj);
      int64_t i = key.as_int();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined("[" + std::to_string(key.as_int()) + "]");
      if (obj.is_list()) return obj.as_list()[i];
      std::u32string s = to_u32(obj.as_string());
      return Value(from_u32(s.substr(i, 1)));
    }
    if (key.is_string()) return get_attr(obj, key.as_string(), line);
    return Value::undefined("[" + key.str() + "]");
  }

  Value slice(const Value& obj, const Expr& e) {
    auto part = [&](size_t k) -> std::optional<int64_t> {
      if (!e.items[k]) return std::nullopt;
      Value v = eval(*e.items[k]);
      if (v.is_none()) return std::nullopt;
      EPS_CHECK(v.is_int(), "template line {}: slice indices must be integers", e.line);
      return v.as_int();
    };
    std::optional<int64_t> start = part(0), stop = part(1), step_opt = part(2);
    int64_t step = step_opt.value_or(1);
    EPS_CHECK(step != 0, "template line {}: slice step cannot be zero", e.line);
    if (obj.is_undefined()) undefined_error(obj, e.line);
    int64_t n = python_len(obj);
    auto clamp = [&](std::optional<int64_t> v, int64_t def) {
      if (!v) return def;
      int64_t x = *v < 0 ? *v + n : *v;
      if (step > 0) return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    int64_t b = clamp(start, step > 0 ? 0 : n - 1);
    int64_t s = clamp(stop, step > 0 ? n : -1);
    std::vector<int64_t> idx;
    for (int64_t i = b; step > 0 ? i < s : i > s; i += step) idx.push_back(i);
    if (obj.is_list()) {
      List out;
      for (int64_t i : idx) out.push_back(obj.as_list()[i]);
      return Value(std::move(out));
    }
    EPS_CHECK(obj.is_string(), "template line {}: cannot slice a {}", e.line, obj.type_name());
    std::u32string s32 = to_u32(obj.as_string()), out;
    for (int64_t i : idx) out.push_back(s32[i]);
    return Value(from_u32(out));
  }

  Value binary(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "~") return Value(a.str() + b.str());
    if (a.is_undefined()) undefined_error(a, line);
    if (b.is_undefined()) undefined_error(b, line);
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
      if (a.is_list() && b.is_list()) {
        List out = a.as_list();
        out.insert(out.end(), b.as_list().begin(), b.as_list().end());
        return Value(std::move(out));
      }
    }
    if (op == "*" && a.is_string() && (b.is_int() || b.is_bool())) {
      std::string out;
      for (int64_t i = 0; i < b.as_int(); ++i) out += a.as_string();
      return Value(out);
    }
    EPS_CHECK(a.is_number() && b.is_number(),
              "template line {}: unsupported operand types for {}: '{}' and '{}'", line, op,
              a.type_name(), b.type_name());
    bool ints = !a.is_float() && !b.is_float();
    if (op == "/") {
      EPS_CHECK(b.as_double() != 0, "template line {}: division by zero", line);
      return Value(a.as_double() / b.as_double());
    }
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (op == "+") return Value(x + y);
      if (op == "-") return Value(x - y);
      if (op == "*") return Value(x * y);
      EPS_CHECK(op == "**" || y != 0, "template line {}: integer division by zero", line);
      if (op == "//") return Value(static_cast<int64_t>(std::floor(static_cast<double>(x) / y)));
      if (op == "%") return Value(((x % y) + y) % y);
      if (op == "**") {
        if (y < 0) return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
        int64_t r = 1;
        for (int64_t i = 0; i < y; ++i) r *= x;
        return Value(r);
      }
    }
    double x = a.as_double(), y = b.as_double();
    if (op == "+") return Value(x + y);
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (op == "//") return Value(std::floor(x / y));
    if (op == "%") return Value(x - y * std::floor(x / y));
    if (op == "**") return Value(std::pow(x, y));
    EPS_THROW("template line {}: unknown operator {}", line, op);
  }

  bool contains(const Value& container, const Value& item, int line) {
    if (container.is_string()) {
      EPS_CHECK(item.is_string(), "template line {}: 'in <string>' requires string as left operand",
                line);
      return container.as_string().find(item.as_string()) != std::string::npos;
    }
    if (container.is_dict()) return item.is_string() && container.as_dict().find(item.as_string());
    if (container.is_undefined()) return false;
    for (const Value& v : iterate(container)) {
      if (equals(v, item)) return true;
    }
    return false;
  }

 public:
  Value eval(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kLiteral:
        return e.literal;
      case ExprKind::kName:
        return lookup(e.name);
      case ExprKind::kList:
      case ExprKind::kTuple: {
        List out;
        for (const auto& item : e.items) out.push_back(eval(*item));
        return Value(std::move(out));
      }
      case ExprKind::kDict: {
        auto d = std::make_shared<Dict>();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
          d->set(eval(*e.items[i]).str(), eval(*e.items[i + 1]));
        }
        return Value(d);
      }
      case ExprKind::kAttr:
        return get_attr(eval(*e.a), e.name, e.line);
      case ExprKind::kItem:
        return get_item(eval(*e.a), eval(*e.b), e.line);
      case ExprKind::kSlice:
        return slice(eval(*e.a), e);
      case ExprKind::kCall: {
        Value callee = eval(*e.a);
        if (callee.is_undefined()) undefined_error(callee, e.line);
        EPS_CHECK(callee.is_callable(), "template line {}: '{}' object is not callable", e.line,
                  callee.type_name());
        CallArgs args = eval_args(e);
        return callee.as_function()(args);
      }
      case ExprKind::kFilter: {
        Value input = eval(*e.a);
        CallArgs args = eval_args(e);
        try {
          return apply_filter(e.name, input, args);
        } catch (const Error& err) {
          EPS_THROW("template line {}: filter {}: {}", e.line, e.name, err.what());
        }
      }
      case ExprKind::kTest: {
        Value input = eval(*e.a);
        CallArgs args = eval_args(e);
        bool r = apply_test(e.name, input, args);
        return Value(e.negated ? !r : r);
      }
      case ExprKind::kNeg:
      case ExprKind::kPos: {
        Value v = eval(*e.a);
        if (v.is_undefined()) undefined_error(v, e.line);
        EPS_CHECK(v.is_number(), "template line {}: bad operand type for unary -: '{}'", e.line,
                  v.type_name());
        if (e.kind == ExprKind::kPos) return v.is_float() ? v : Value(v.as_int());
        return v.is_float() ? Value(-v.as_double()) : Value(-v.as_int());
      }
      case ExprKind::kNot:
        return Value(!eval(*e.a).truthy());
      case ExprKind::kAnd: {
        Value a = eval(*e.a);
        return a.truthy() ? eval(*e.b) : a;
      }
      case ExprKind::kOr: {
        Value a = eval(*e.a);
        return a.truthy() ? a : eval(*e.b);
      }
      case ExprKind::kBinary:
        return binary(e.name, eval(*e.a), eval(*e.b), e.line);
      case ExprKind::kCompare: {
        Value a = eval(*e.a), b = eval(*e.b);
        const std::string& op = e.name;
        if (op == "==") return Value(equals(a, b));
        if (op == "!=") return Value(!equals(a, b));
        if (op == "in") return Value(contains(b, a, e.line));
        if (op == "not in") return Value(!contains(b, a, e.line));
        if (op == "<") return Value(less_than(a, b));
        if (op == ">") return Value(less_than(b, a));
        if (op == "<=") return Value(!less_than(b, a));
        return Value(!less_than(a, b));
      }
      case ExprKind::kCond: {
        if (eval(*e.b).truthy()) return eval(*e.a);
        return e.c ? eval(*e.c) : Value::undefined("else");
      }
    }
    return Value();
  }

 private:
  std::vector<std::shared_ptr<Frame>> frames_;
};

}  // namespace

Template::Template(const std::string& source) {
  auto parsed = std::make_shared<Parsed>();
  parsed->body = parse_template(source);
  parsed_ = std::move(parsed);
}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const Dict& variables) const {
  auto globals = std::make_shared<Frame>();
  Dict builtins;
  add_globals(builtins);
  for (auto& [k, v] : builtins.items) (*globals)[k] = v;
  auto top = std::make_shared<Frame>();
  for (const auto& [k, v] : variables.items) (*top)[k] = v;
  Renderer r(globals, top);
  std::string out;
  r.exec(parsed_->body, out);
  return out;
}

}  // namespace epserve::tokenizer::jinja
