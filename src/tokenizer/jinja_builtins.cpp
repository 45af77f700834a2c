#include "tokenizer/jinja_builtins.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <set>

#include "core/error.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer::jinja {

namespace {

const std::set<std::string> kFilters = {
    "abs",     "capitalize", "count",  "d",      "default",    "dictsort", "e",          "escape",
    "first",   "float",      "indent", "int",    "items",      "join",     "last",       "length",
    "list",    "lower",      "map",    "max",    "min",        "reject",   "rejectattr", "replace",
    "reverse", "round",      "safe",   "select", "selectattr", "sort",     "string",     "sum",
    "title",   "tojson",     "trim",   "unique", "upper",      "wordcount"};
const std::set<std::string> kTests = {
    "boolean", "callable", "defined",  "divisibleby", "eq",   "equalto",   "even",
    "false",   "float",    "ge",       "gt",          "in",   "integer",   "iterable",
    "le",      "lower",    "lt",       "mapping",     "ne",   "none",      "number",
    "odd",     "sameas",   "sequence", "string",      "true", "undefined", "upper"};
const std::set<std::string> kStringMethods = {
    "strip",   "lstrip",     "rstrip",       "split",       "rsplit",     "startswith", "endswith",
    "replace", "upper",      "lower",        "title",       "capitalize", "find",       "rfind",
    "count",   "join",       "isdigit",      "isalpha",     "isspace",    "isalnum",    "isupper",
    "islower", "splitlines", "removeprefix", "removesuffix"};
const std::set<std::string> kListMethods = {"append", "pop",    "index",  "count",
                                            "extend", "insert", "remove", "reverse"};
const std::set<std::string> kDictMethods = {"items", "keys",   "values",    "get",
                                            "pop",   "update", "setdefault"};

std::u32string u32(const std::string& s) {
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) out.push_back(utf8_next(s, i));
  return out;
}

std::string u8(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

Value arg(CallArgs& a, size_t i, const char* name, const Value& fallback) {
  const Value* v = a.get(i, name);
  return v ? *v : fallback;
}

std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  std::u32string t = u32(s);
  std::u32string set;
  bool whitespace = chars.is_none() || chars.is_undefined();
  if (!whitespace) set = u32(chars.str());
  auto strip_it = [&](char32_t c) {
    return whitespace ? python_isspace(c) : set.find(c) != std::u32string::npos;
  };
  size_t b = 0, e = t.size();
  if (left)
    while (b < e && strip_it(t[b])) ++b;
  if (right)
    while (e > b && strip_it(t[e - 1])) --e;
  return u8(t.substr(b, e - b));
}

List split(const std::string& s, const Value& sep, int64_t maxsplit) {
  List out;
  if (sep.is_none() || sep.is_undefined()) {
    std::u32string t = u32(s);
    size_t i = 0;
    while (i < t.size()) {
      while (i < t.size() && python_isspace(t[i])) ++i;
      if (i >= t.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = t.size();
        while (e > i && python_isspace(t[e - 1])) --e;
        out.push_back(Value(u8(t.substr(i, e - i))));
        return out;
      }
      size_t j = i;
      while (j < t.size() && !python_isspace(t[j])) ++j;
      out.push_back(Value(u8(t.substr(i, j - i))));
      i = j;
    }
    return out;
  }
  const std::string& d = sep.as_string();
  EPS_CHECK(!d.empty(), "empty separator");
  size_t pos = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t hit = s.find(d, pos);
    if (hit == std::string::npos) break;
    out.push_back(Value(s.substr(pos, hit - pos)));
    pos = hit + d.size();
  }
  out.push_back(Value(s.substr(pos)));
  return out;
}

std::string replace(const std::string& s, const std::string& from, const std::string& to,
                    int64_t count) {
  std::string out;
  size_t pos = 0;
  int64_t done = 0;
  if (from.empty()) return s;
  while (count < 0 || done < count) {
    size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    ++done;
  }
  out.append(s, pos);
  return out;
}

std::string map_case(const std::string& s, int mode) {  // 0 lower, 1 upper, 2 title, 3 capitalize
  std::u32string t = u32(s);
  bool prev_cased = false;
  for (size_t i = 0; i < t.size(); ++i) {
    char32_t c = t[i];
    bool cased = u_isUAlphabetic(c) && (u_isULowercase(c) || u_isUUppercase(c) || u_istitle(c));
    if (mode == 0)
      c = u_tolower(c);
    else if (mode == 1)
      c = u_toupper(c);
    else if (mode == 2)
      c = prev_cased ? u_tolower(c) : u_toupper(c);
    else
      c = i == 0 ? u_toupper(c) : u_tolower(c);
    prev_cased = cased;
    t[i] = c;
  }
  return u8(t);
}

bool starts_or_ends(const std::string& s, const Value& what, bool starts) {
  auto one = [&](const std::string& p) {
    if (p.size() > s.size()) return false;
    return starts ? s.compare(0, p.size(), p) == 0
                  : s.compare(s.size() - p.size(), p.size(), p) == 0;
  };
  if (what.is_list()) {
    for (const Value& v : what.as_list()) {
      if (one(v.str())) return true;
    }
    return false;
  }
  EPS_CHECK(what.is_string(), "startswith/endswith arg must be str or a tuple of str");
  return one(what.as_string());
}

Value string_method(const std::string& s, const std::string& name, CallArgs& a) {
  static const Value none{None{}};
  if (name == "strip") return Value(strip(s, arg(a, 0, "chars", none), true, true));
  if (name == "lstrip") return Value(strip(s, arg(a, 0, "chars", none), true, false));
  if (name == "rstrip") return Value(strip(s, arg(a, 0, "chars", none), false, true));
  if (name == "split") {
    const Value max = arg(a, 1, "maxsplit", Value(-1));
    return Value(split(s, arg(a, 0, "sep", none), max.as_int()));
  }
  if (name == "rsplit") {
    const Value sep = arg(a, 0, "sep", none);
    int64_t max = arg(a, 1, "maxsplit", Value(-1)).as_int();
    EPS_CHECK(sep.is_string() && !sep.as_string().empty(), "rsplit needs a separator");
    List parts = split(s, sep, -1);
    if (max < 0 || static_cast<int64_t>(parts.size()) <= max + 1) return Value(parts);
    List out;
    size_t head = parts.size() - max;
    std::string first;
    for (size_t i = 0; i < head; ++i) first += (i ? sep.as_string() : "") + parts[i].as_string();
    out.push_back(Value(first));
    for (size_t i = head; i < parts.size(); ++i) out.push_back(parts[i]);
    return Value(out);
  }
  if (name == "startswith") return Value(starts_or_ends(s, arg(a, 0, "prefix", none), true));
  if (name == "endswith") return Value(starts_or_ends(s, arg(a, 0, "suffix", none), false));
  if (name == "replace") {
    return Value(replace(s, arg(a, 0, "old", none).str(), arg(a, 1, "new", none).str(),
                         arg(a, 2, "count", Value(-1)).as_int()));
  }
  if (name == "upper") return Value(map_case(s, 1));
  if (name == "lower") return Value(map_case(s, 0));
  if (name == "title") return Value(map_case(s, 2));
  if (name == "capitalize") return Value(map_case(s, 3));
  if (name == "find" || name == "rfind") {
    std::string needle = arg(a, 0, "sub", none).str();
    size_t hit = name == "find" ? s.find(needle) : s.rfind(needle);
    if (hit == std::string::npos) return Value(-1);
    return Value(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, hit))));
  }
  if (name == "count") {
    std::string needle = arg(a, 0, "sub", none).str();
    int64_t n = 0;
    if (needle.empty()) return Value(static_cast<int64_t>(utf8_length(s)) + 1);
    for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + needle.size()))
      ++n;
    return Value(n);
  }
  if (name == "join") {
    std::string out;
    List items = iterate(arg(a, 0, "iterable", none));
    for (size_t i = 0; i < items.size(); ++i) {
      EPS_CHECK(items[i].is_string(), "sequence item {}: expected str instance, {} found", i,
                items[i].type_name());
      if (i) out += s;
      out += items[i].as_string();
    }
    return Value(out);
  }
  if (name == "removeprefix") {
    std::string p = arg(a, 0, "prefix", none).str();
    return Value(s.compare(0, p.size(), p) == 0 ? s.substr(p.size()) : s);
  }
  if (name == "removesuffix") {
    std::string p = arg(a, 0, "suffix", none).str();
    bool ends = p.size() <= s.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
    return Value(ends && !p.empty() ? s.substr(0, s.size() - p.size()) : s);
  }
  if (name == "splitlines") {
    List out;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\n' || s[i] == '\r') {
        out.push_back(Value(s.substr(start, i - start)));
        if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
        start = i + 1;
      }
    }
    if (start < s.size()) out.push_back(Value(s.substr(start)));
    return Value(out);
  }
  std::u32string t = u32(s);
  auto all = [&](auto pred) {
    if (t.empty()) return Value(false);
    for (char32_t c : t) {
      if (!pred(c)) return Value(false);
    }
    return Value(true);
  };
  if (name == "isdigit") return all([](char32_t c) { return u_isdigit(c) != 0; });
  if (name == "isalpha") return all([](char32_t c) { return u_isUAlphabetic(c) != 0; });
  if (name == "isalnum") return all([](char32_t c) { return u_isalnum(c) != 0; });
  if (name == "isspace") return all([](char32_t c) { return python_isspace(c); });
  if (name == "isupper") return Value(map_case(s, 1) == s && map_case(s, 0) != s);
  if (name == "islower") return Value(map_case(s, 0) == s && map_case(s, 1) != s);
  EPS_THROW("'str' object has no attribute '{}'", name);
}

}  // namespace

bool is_known_filter(const std::string& name) {
  return kFilters.count(name) > 0;
}
bool is_known_test(const std::string& name) {
  return kTests.count(name) > 0;
}
bool is_known_method(const std::string& name) {
  return kStringMethods.count(name) || kListMethods.count(name) || kDictMethods.count(name);
}

int64_t python_len(const Value& v) {
  if (v.is_string()) return static_cast<int64_t>(utf8_length(v.as_string()));
  if (v.is_list()) return static_cast<int64_t>(v.as_list().size());
  if (v.is_dict()) return static_cast<int64_t>(v.as_dict().items.size());
  if (v.is_undefined()) return 0;
  EPS_THROW("object of type '{}' has no len()", v.type_name());
}

List iterate(const Value& v) {
  if (v.is_list()) return v.as_list();
  if (v.is_dict()) {
    List keys;
    for (const auto& [k, _] : v.as_dict().items) keys.push_back(Value(k));
    return keys;
  }
  if (v.is_string()) {
    List chars;
    const std::string& s = v.as_string();
    size_t i = 0;
    while (i < s.size()) {
      size_t start = i;
      utf8_next(s, i);
      chars.push_back(Value(s.substr(start, i - start)));
    }
    return chars;
  }
  if (v.is_undefined()) return {};
  EPS_THROW("'{}' object is not iterable", v.type_name());
}

Value get_method(const Value& object, const std::string& name) {
  if (object.is_string() && kStringMethods.count(name)) {
    std::string s = object.as_string();
    return Value(Function([s, name](CallArgs& a) { return string_method(s, name, a); }));
  }
  if (object.is_list() && kListMethods.count(name)) {
    Value self = object;
    return Value(Function([self, name](CallArgs& a) -> Value {
      List& l = self.as_list();
      static const Value none{None{}};
      if (name == "append") {
        l.push_back(arg(a, 0, "object", none));
        return Value(None{});
      }
      if (name == "extend") {
        for (const Value& v : iterate(arg(a, 0, "iterable", none))) l.push_back(v);
        return Value(None{});
      }
      if (name == "pop") {
        EPS_CHECK(!l.empty(), "pop from empty list");
        int64_t i = arg(a, 0, "index", Value(-1)).as_int();
        if (i < 0) i += static_cast<int64_t>(l.size());
        EPS_CHECK(i >= 0 && i < static_cast<int64_t>(l.size()), "pop index out of range");
        Value v = l[i];
        l.erase(l.begin() + i);
        return v;
      }
      if (name == "insert") {
        int64_t i = arg(a, 0, "index", none).as_int();
        int64_t n = static_cast<int64_t>(l.size());
        if (i < 0) i = std::max<int64_t>(0, i + n);
        l.insert(l.begin() + std::min(i, n), arg(a, 1, "object", none));
        return Value(None{});
      }
      if (name == "reverse") {
        std::reverse(l.begin(), l.end());
        return Value(None{});
      }
      const Value x = arg(a, 0, "value", none);
      for (size_t i = 0; i < l.size(); ++i) {
        if (!equals(l[i], x)) continue;
        if (name == "index") return Value(static_cast<int64_t>(i));
        if (name == "remove") {
          l.erase(l.begin() + i);
          return Value(None{});
        }
      }
      if (name == "count") {
        int64_t n = 0;
        for (const Value& v : l) n += equals(v, x);
        return Value(n);
      }
      EPS_THROW("list.{}(x): x not in list", name);
    }));
  }
  if (object.is_dict() && !object.as_dict().is_namespace && kDictMethods.count(name)) {
    Value self = object;
    return Value(Function([self, name](CallArgs& a) -> Value {
      Dict& d = self.as_dict();
      static const Value none{None{}};
      if (name == "items") {
        List out;
        for (const auto& [k, v] : d.items) out.push_back(Value(List{Value(k), v}));
        return Value(out);
      }
      if (name == "keys") return Value(iterate(self));
      if (name == "values") {
        List out;
        for (const auto& [k, v] : d.items) out.push_back(v);
        return Value(out);
      }
      std::string key = arg(a, 0, "key", none).str();
      if (name == "get") {
        const Value* v = d.find(key);
        return v ? *v : arg(a, 1, "default", none);
      }
      if (name == "setdefault") {
        if (!d.find(key)) d.set(key, arg(a, 1, "default", none));
        return *d.find(key);
      }
      if (name == "pop") {
        for (size_t i = 0; i < d.items.size(); ++i) {
          if (d.items[i].first != key) continue;
          Value v = d.items[i].second;
          d.items.erase(d.items.begin() + i);
          return v;
        }
        const Value* def = a.get(1, "default");
        EPS_CHECK(def, "KeyError: '{}'", key);
        return *def;
      }
      const Value other = arg(a, 0, "other", none);
      if (other.is_dict()) {
        for (const auto& [k, v] : other.as_dict().items) d.set(k, v);
      }
      for (const auto& [k, v] : a.keyword) d.set(k, v);
      return Value(None{});
    }));
  }
  return Value::undefined(name);
}

}  // namespace epserve::tokenizer::jinja
