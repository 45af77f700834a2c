// The sets that `\p{name}` stands for, from the generated Unicode tables.
#include <algorithm>
#include <string>

#include "tokenizer/unicode_tables.h"

namespace epserve::tokenizer::unicode {

namespace {

// Lower case without spaces, '_' and '-' (Unicode's loose matching of property names).
std::string loose(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == ' ' || c == '_' || c == '-') continue;
    out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  }
  return out;
}

CodePointSet from_ranges(std::span<const CodePointRange> ranges) {
  return CodePointSet(ranges.begin(), ranges.end());
}

// The union of the general categories whose short names start with `prefix` ("L", or "Lu").
CodePointSet categories_starting_with(std::string_view prefixes) {
  CodePointSet out;
  for (const PropertyEntry& e : properties()) {
    if (e.kind != PropertyKind::kGeneralCategory) continue;
    for (size_t i = 0; i < prefixes.size(); i += 2) {
      std::string_view want = prefixes.substr(i, 2);
      if (want.back() == '*' ? e.short_name[0] == want[0] : std::string_view(e.short_name) == want)
        out = set_union(out, from_ranges(ranges(e)));
    }
  }
  return out;
}

// Major classes and other combined names, as "X*" (every category starting with X) or two-letter
// category names, concatenated.
struct Combined {
  const char* names;  // loose names, space-separated
  const char* categories;
};
constexpr Combined kCombined[] = {
    {"l letter", "L*"},
    {"lc l& casedletter", "LuLlLt"},
    {"m mark combiningmark", "M*"},
    {"n number", "N*"},
    {"p punctuation punct", "P*"},
    {"s symbol", "S*"},
    {"z separator", "Z*"},
    {"c other", "C*"},
};

bool listed(std::string_view names, std::string_view name) {
  while (!names.empty()) {
    size_t space = names.find(' ');
    if (names.substr(0, space) == name) return true;
    if (space == std::string_view::npos) break;
    names.remove_prefix(space + 1);
  }
  return false;
}

std::optional<CodePointSet> lookup(const std::string& name, bool categories, bool scripts) {
  if (categories) {
    for (const Combined& c : kCombined) {
      if (listed(c.names, name)) return categories_starting_with(c.categories);
    }
  }
  for (const PropertyEntry& e : properties()) {
    bool wanted = e.kind == PropertyKind::kGeneralCategory ? categories : scripts;
    if (wanted && (loose(e.short_name) == name || loose(e.long_name) == name))
      return from_ranges(ranges(e));
  }
  return std::nullopt;
}

}  // namespace

CodePointSet set_union(const CodePointSet& a, const CodePointSet& b) {
  CodePointSet all;
  all.reserve(a.size() + b.size());
  std::merge(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(all),
             [](const CodePointRange& x, const CodePointRange& y) { return x.first < y.first; });
  CodePointSet out;
  for (const CodePointRange& r : all) {
    if (!out.empty() && r.first <= out.back().last + 1)
      out.back().last = std::max(out.back().last, r.last);
    else
      out.push_back(r);
  }
  return out;
}

CodePointSet set_complement(const CodePointSet& set) {
  CodePointSet out;
  char32_t next = 0;
  for (const CodePointRange& r : set) {
    if (r.first > next) out.push_back({next, r.first - 1});
    next = r.last + 1;
  }
  if (next <= 0x10FFFF) out.push_back({next, 0x10FFFF});
  return out;
}

CodePointSet set_difference(const CodePointSet& a, const CodePointSet& b) {
  // a and not b = not (not a or b)
  return set_complement(set_union(set_complement(a), b));
}

const CodePointSet& white_space() {
  static const CodePointSet set = {
      {0x09, 0x0D},     {0x20, 0x20},     {0x85, 0x85},     {0xA0, 0xA0},     {0x1680, 0x1680},
      {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}};
  return set;
}

bool set_contains(const CodePointSet& set, char32_t cp) {
  auto it = std::upper_bound(set.begin(), set.end(), cp,
                             [](char32_t c, const CodePointRange& r) { return c < r.first; });
  return it != set.begin() && cp <= std::prev(it)->last;
}

const CodePointSet& rust_word_chars() {
  static const CodePointSet set = [] {
    CodePointSet out;
    for (const char* name : {"L", "M", "Nd", "Nl", "Pc"}) out = set_union(out, *property_set(name));
    // Join_Control, and the symbols that are Other_Alphabetic (circled and squared Latin letters);
    // the rest of Alphabetic is L, Nl and marks.
    return set_union(out, {{0x200C, 0x200D},
                           {0x24B6, 0x24E9},
                           {0x1F130, 0x1F149},
                           {0x1F150, 0x1F169},
                           {0x1F170, 0x1F189}});
  }();
  return set;
}

std::optional<CodePointSet> property_set(std::string_view name) {
  std::string key = loose(name);
  if (key == "any") return CodePointSet{{0, 0x10FFFF}};
  if (key == "assigned") return set_complement(*lookup("cn", true, false));
  size_t eq = key.find('=');
  if (eq == std::string::npos) return lookup(key, true, true);
  std::string property = key.substr(0, eq), value = key.substr(eq + 1);
  if (property == "gc" || property == "generalcategory") return lookup(value, true, false);
  if (property == "sc" || property == "script") return lookup(value, false, true);
  return std::nullopt;
}

}  // namespace epserve::tokenizer::unicode
