// Jinja filters, tests and global functions.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>

#include "core/error.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer::jinja {

namespace {

const Value kNone{None{}};

Value arg(CallArgs& a, size_t i, const char* name, const Value& fallback) {
  const Value* v = a.get(i, name);
  return v ? *v : fallback;
}

Value attribute_of(const Value& item, const std::string& path) {
  Value v = item;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (v.is_dict()) {
      const Value* found = v.as_dict().find(part);
      v = found ? *found : Value::undefined(part);
    } else if (v.is_list() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
      size_t i = std::stoul(part);
      v = i < v.as_list().size() ? v.as_list()[i] : Value::undefined(part);
    } else {
      v = Value::undefined(part);
    }
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return v;
}

std::string lower_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(lower_ascii(v.as_string()));
  return v;
}

bool select_test(const Value& item, CallArgs& a, size_t first_arg) {
  if (a.positional.size() <= first_arg) return item.truthy();
  std::string test = a.positional[first_arg].str();
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + first_arg + 1, a.positional.end());
  return apply_test(test, item, rest);
}

Value tojson(const Value& input, CallArgs& a) {
  // transformers: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  JsonOptions o;
  o.ensure_ascii = arg(a, 0, "ensure_ascii", Value(false)).truthy();
  const Value& indent = arg(a, 1, "indent", kNone);
  if (indent.is_int())
    o.indent = std::string(std::max<int64_t>(0, indent.as_int()), ' ');
  else if (indent.is_string())
    o.indent = indent.as_string();
  if (o.indent) o.item_separator = ",";
  const Value& separators = arg(a, 2, "separators", kNone);
  if (separators.is_list() && separators.as_list().size() == 2) {
    o.item_separator = separators.as_list()[0].str();
    o.key_separator = separators.as_list()[1].str();
  }
  o.sort_keys = arg(a, 3, "sort_keys", Value(false)).truthy();
  return Value(to_python_json(input, o));
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

Value to_int(const Value& v, const Value& fallback) {
  if (v.is_int() || v.is_bool()) return Value(v.as_int());
  if (v.is_float()) return Value(static_cast<int64_t>(v.as_double()));
  if (v.is_string()) {
    std::string s = v.as_string();
    s.erase(0, s.find_first_not_of(" \t\n"));
    s.erase(s.find_last_not_of(" \t\n") + 1);
    try {
      size_t used = 0;
      long long x = std::stoll(s, &used, 10);
      if (used == s.size()) return Value(static_cast<int64_t>(x));
      double d = std::stod(s, &used);
      if (used == s.size()) return Value(static_cast<int64_t>(d));
    } catch (...) {
    }
  }
  return fallback;
}

}  // namespace

Value apply_filter(const std::string& name, const Value& input, CallArgs& a) {
  if (name == "length" || name == "count") return Value(python_len(input));
  if (name == "tojson") return tojson(input, a);
  if (name == "string") return Value(input.str());
  if (name == "safe") return input;
  if (name == "e" || name == "escape") return Value(html_escape(input.str()));
  if (name == "trim") return get_method(Value(input.str()), "strip").as_function()(a);
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    CallArgs none;
    return get_method(Value(input.str()), name).as_function()(none);
  }
  if (name == "default" || name == "d") {
    bool boolean = arg(a, 1, "boolean", Value(false)).truthy();
    if (input.is_undefined() || (boolean && !input.truthy()))
      return arg(a, 0, "default_value", Value(""));
    return input;
  }
  if (name == "first" || name == "last") {
    List items = iterate(input);
    if (items.empty()) return Value::undefined(name);
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value(iterate(input));
  if (name == "reverse") {
    if (input.is_string()) {
      List chars = iterate(input);
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->as_string();
      return Value(out);
    }
    List items = iterate(input);
    std::reverse(items.begin(), items.end());
    return Value(items);
  }
  if (name == "items") {
    if (input.is_undefined()) return Value(List{});
    EPS_CHECK(input.is_dict(), "items filter needs a mapping, got {}", input.type_name());
    CallArgs none;
    return get_method(input, "items").as_function()(none);
  }
  if (name == "join") {
    std::string sep = arg(a, 0, "d", Value("")).str();
    const Value attribute = arg(a, 1, "attribute", kNone);
    std::string out;
    List items = iterate(input);
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += sep;
      out += attribute.is_none() ? items[i].str() : attribute_of(items[i], attribute.str()).str();
    }
    return Value(out);
  }
  if (name == "map") {
    List out;
    const Value* attribute = a.get(99, "attribute");
    for (const Value& item : iterate(input)) {
      if (attribute) {
        Value v = attribute_of(item, attribute->str());
        if (v.is_undefined()) v = arg(a, 99, "default", v);
        out.push_back(v);
      } else {
        EPS_CHECK(!a.positional.empty(), "map needs a filter name or attribute=");
        CallArgs rest;
        rest.positional.assign(a.positional.begin() + 1, a.positional.end());
        out.push_back(apply_filter(a.positional[0].str(), item, rest));
      }
    }
    return Value(out);
  }
  if (name == "select" || name == "reject") {
    List out;
    for (const Value& item : iterate(input)) {
      if (select_test(item, a, 0) == (name == "select")) out.push_back(item);
    }
    return Value(out);
  }
  if (name == "selectattr" || name == "rejectattr") {
    EPS_CHECK(!a.positional.empty(), "{} needs an attribute name", name);
    List out;
    for (const Value& item : iterate(input)) {
      Value v = attribute_of(item, a.positional[0].str());
      if (select_test(v, a, 1) == (name == "selectattr")) out.push_back(item);
    }
    return Value(out);
  }
  if (name == "sort" || name == "dictsort" || name == "unique" || name == "min" || name == "max") {
    bool case_sensitive = arg(a, name == "sort" ? 1 : 0, "case_sensitive", Value(false)).truthy();
    const Value attribute = arg(a, name == "sort" ? 2 : 1, "attribute", kNone);
    auto key = [&](const Value& v) {
      return sort_key(attribute.is_none() ? v : attribute_of(v, attribute.str()), case_sensitive);
    };
    List items = name == "dictsort" ? apply_filter("items", input, a).as_list() : iterate(input);
    if (name == "dictsort") {
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        return less_than(sort_key(x.as_list()[0], case_sensitive),
                         sort_key(y.as_list()[0], case_sensitive));
      });
      return Value(items);
    }
    if (name == "unique") {
      List out;
      for (const Value& v : items) {
        bool seen = false;
        for (const Value& u : out) seen = seen || equals(key(u), key(v));
        if (!seen) out.push_back(v);
      }
      return Value(out);
    }
    if (name == "min" || name == "max") {
      if (items.empty()) return Value::undefined(name);
      Value best = items[0];
      for (const Value& v : items) {
        if (name == "min" ? less_than(key(v), key(best)) : less_than(key(best), key(v))) best = v;
      }
      return best;
    }
    bool reverse = arg(a, 0, "reverse", Value(false)).truthy();
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
      return reverse ? less_than(key(y), key(x)) : less_than(key(x), key(y));
    });
    return Value(items);
  }
  if (name == "sum") {
    const Value attribute = arg(a, 0, "attribute", kNone);
    Value total = arg(a, 1, "start", Value(0));
    for (const Value& v : iterate(input)) {
      Value x = attribute.is_none() ? v : attribute_of(v, attribute.str());
      if (total.is_float() || x.is_float())
        total = Value(total.as_double() + x.as_double());
      else
        total = Value(total.as_int() + x.as_int());
    }
    return total;
  }
  if (name == "int") return to_int(input, arg(a, 0, "default", Value(0)));
  if (name == "float") {
    if (input.is_number()) return Value(input.as_double());
    try {
      return Value(std::stod(input.str()));
    } catch (...) {
      return arg(a, 0, "default", Value(0.0));
    }
  }
  if (name == "abs") {
    EPS_CHECK(input.is_number(), "bad operand type for abs(): '{}'", input.type_name());
    return input.is_float() ? Value(std::fabs(input.as_double()))
                            : Value(static_cast<int64_t>(std::llabs(input.as_int())));
  }
  if (name == "round") {
    int64_t precision = arg(a, 0, "precision", Value(0)).as_int();
    std::string method = arg(a, 1, "method", Value("common")).str();
    double scale = std::pow(10.0, static_cast<double>(precision));
    double x = input.as_double() * scale;
    double r = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : std::round(x);
    return Value(r / scale);
  }
  if (name == "replace") {
    CallArgs b;
    b.positional = {arg(a, 0, "old", kNone), arg(a, 1, "new", kNone),
                    arg(a, 2, "count", Value(-1))};
    return get_method(Value(input.str()), "replace").as_function()(b);
  }
  if (name == "indent") {
    const Value width_v = arg(a, 0, "width", Value(4));
    std::string pad =
        width_v.is_string() ? width_v.as_string() : std::string(width_v.as_int(), ' ');
    bool first = arg(a, 1, "first", Value(false)).truthy();
    bool blank = arg(a, 2, "blank", Value(false)).truthy();
    std::string s = input.str(), out;
    size_t pos = 0;
    bool is_first = true;
    while (pos <= s.size()) {
      size_t nl = s.find('\n', pos);
      std::string line = s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      bool indent = (is_first ? first : true) && (blank || !line.empty());
      if (!is_first) out.push_back('\n');
      out += (indent ? pad : "") + line;
      is_first = false;
      if (nl == std::string::npos) break;
      pos = nl + 1;
    }
    return Value(out);
  }
  if (name == "wordcount") {
    CallArgs none;
    return Value(static_cast<int64_t>(
        get_method(Value(input.str()), "split").as_function()(none).as_list().size()));
  }
  EPS_THROW("filter '{}' is not supported", name);
}

bool apply_test(const std::string& name, const Value& v, CallArgs& a) {
  const Value& x = arg(a, 0, "value", kNone);
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number();
  if (name == "mapping") return v.is_dict() && !v.as_dict().is_namespace;
  if (name == "sequence")
    return v.is_list() || v.is_string() || (v.is_dict() && !v.as_dict().is_namespace);
  if (name == "iterable") return v.is_list() || v.is_string() || v.is_dict() || v.is_undefined();
  if (name == "callable") return v.is_callable();
  if (name == "odd") return v.as_int() % 2 != 0;
  if (name == "even") return v.as_int() % 2 == 0;
  if (name == "divisibleby") return x.as_int() != 0 && v.as_int() % x.as_int() == 0;
  if (name == "eq" || name == "equalto") return equals(v, x);
  if (name == "ne") return !equals(v, x);
  if (name == "lt") return less_than(v, x);
  if (name == "gt") return less_than(x, v);
  if (name == "le") return !less_than(x, v);
  if (name == "ge") return !less_than(v, x);
  if (name == "sameas") {
    if (v.is_none() || x.is_none()) return v.is_none() && x.is_none();
    if (v.is_bool() && x.is_bool()) return v.as_bool() == x.as_bool();
    if (v.is_list() && x.is_list()) return &v.as_list() == &x.as_list();
    if (v.is_dict() && x.is_dict()) return &v.as_dict() == &x.as_dict();
    return false;
  }
  if (name == "in") {
    if (x.is_string())
      return v.is_string() && x.as_string().find(v.as_string()) != std::string::npos;
    if (x.is_dict()) return v.is_string() && x.as_dict().find(v.as_string());
    for (const Value& item : iterate(x)) {
      if (equals(item, v)) return true;
    }
    return false;
  }
  if (name == "lower" || name == "upper") {
    CallArgs none;
    return get_method(Value(v.str()), name == "lower" ? "islower" : "isupper")
        .as_function()(none)
        .truthy();
  }
  EPS_THROW("test '{}' is not supported", name);
}

void add_globals(Dict& g) {
  g.set("namespace", Value(Function([](CallArgs& a) {
          auto ns = std::make_shared<Dict>();
          ns->is_namespace = true;
          for (const Value& p : a.positional) {
            if (p.is_dict()) {
              for (const auto& [k, v] : p.as_dict().items) ns->set(k, v);
            }
          }
          for (const auto& [k, v] : a.keyword) ns->set(k, v);
          return Value(ns);
        })));
  g.set("dict", Value(Function([](CallArgs& a) {
          auto d = std::make_shared<Dict>();
          for (const Value& p : a.positional) {
            if (p.is_dict()) {
              for (const auto& [k, v] : p.as_dict().items) d->set(k, v);
            }
          }
          for (const auto& [k, v] : a.keyword) d->set(k, v);
          return Value(d);
        })));
  g.set("range", Value(Function([](CallArgs& a) {
          int64_t start = 0, stop = 0, step = 1;
          EPS_CHECK(!a.positional.empty() && a.positional.size() <= 3,
                    "range expects 1 to 3 arguments");
          if (a.positional.size() == 1) {
            stop = a.positional[0].as_int();
          } else {
            start = a.positional[0].as_int();
            stop = a.positional[1].as_int();
            if (a.positional.size() == 3) step = a.positional[2].as_int();
          }
          EPS_CHECK(step != 0, "range() arg 3 must not be zero");
          List out;
          for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
            out.push_back(Value(i));
          return Value(out);
        })));
  g.set("raise_exception", Value(Function([](CallArgs& a) -> Value {
          EPS_THROW("chat template raised: {}", a.positional.empty() ? "" : a.positional[0].str());
        })));
  g.set("strftime_now", Value(Function([](CallArgs& a) {
          std::time_t t = std::time(nullptr);
          std::tm tm{};
          localtime_r(&t, &tm);
          char buf[256];
          std::string fmt = a.positional.empty() ? "" : a.positional[0].str();
          size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
          return Value(std::string(buf, n));
        })));
}

}  // namespace epserve::tokenizer::jinja
