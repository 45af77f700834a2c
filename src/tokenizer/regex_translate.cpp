// Pattern translation from the Oniguruma / Rust regex dialects to PCRE2 (see regex.h).
//
// `\p{..}` must mean what it means in the reference libraries' Unicode version, not in PCRE2's.
// Writing every property out as explicit ranges does that but makes matching 2-3x slower (PCRE2
// tests a class's ranges one by one), so where PCRE2's own set for an item is a subset of ours,
// the item stays native and only the code points PCRE2 lacks are added as ranges; otherwise the
// item is written out in full. PCRE2's own sets are measured once per item by matching it over
// every code point, so this holds whatever Unicode version the installed PCRE2 has.
#include <fmt/format.h>

#include <map>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer {

using unicode::CodePointSet;

namespace {

// Returns the length of the escape starting at p[i] == '\\' (including \p{..}, \pL and \x{..}).
size_t escape_length(std::string_view p, size_t i) {
  if (i + 1 >= p.size()) return 1;
  char c = p[i + 1];
  if ((c == 'p' || c == 'P' || c == 'x') && i + 2 < p.size() && p[i + 2] == '{') {
    size_t close = p.find('}', i + 3);
    EPS_CHECK(close != std::string_view::npos, "regex: unterminated \\{}{{ in pattern", c);
    return close - i + 1;
  }
  if ((c == 'p' || c == 'P') && i + 2 < p.size()) return 3;  // \pL
  return 2;
}

// The set an escape stands for, when it is one whose meaning we fix ourselves: `\s`, `\S`,
// `\d`, `\D`, `\p{..}` and `\P{..}` of a general category or script. nullopt: left to PCRE2.
std::optional<CodePointSet> escape_set(std::string_view esc) {
  if (esc == "\\s") return unicode::white_space();
  if (esc == "\\S") return unicode::set_complement(unicode::white_space());
  // \d is Nd in both dialects; \w differs between them (Oniguruma takes No, Rust takes
  // Join_Control) and is left to PCRE2.
  if (esc == "\\d") return unicode::property_set("Nd");
  if (esc == "\\D") return unicode::set_complement(*unicode::property_set("Nd"));
  if (esc.size() < 3 || (esc[1] != 'p' && esc[1] != 'P')) return std::nullopt;
  std::string_view name = esc[2] == '{' ? esc.substr(3, esc.size() - 4) : esc.substr(2);
  bool negated = esc[1] == 'P';
  if (!name.empty() && name[0] == '^') {
    negated = !negated;
    name.remove_prefix(1);
  }
  std::optional<CodePointSet> set = unicode::property_set(name);
  if (set && negated) set = unicode::set_complement(*set);
  return set;
}

CodePointSet without_surrogates(const CodePointSet& set) {
  return unicode::set_difference(set, {{0xD800, 0xDFFF}});
}

// A translated property item: PCRE2's own escape (empty: none) plus explicit code points.
struct ItemSet {
  std::string native;
  CodePointSet extra;
};

// How one translation goes: the form of the items, and the code points PCRE2's native items lack.
struct Translation {
  PropertyForm form;
  CodePointSet* missing;
};

ItemSet item_set(std::string_view esc, const CodePointSet& ours, const Translation& t) {
  if (t.form == PropertyForm::kRanges || esc[1] == 's' || esc[1] == 'S') return {"", ours};
  std::optional<CodePointSet> native = pcre2_native_set(esc);
  CodePointSet want = without_surrogates(ours);
  if (!native || !unicode::set_difference(*native, want).empty()) return {"", want};
  CodePointSet added = unicode::set_difference(want, *native);
  if (t.missing) *t.missing = unicode::set_union(*t.missing, added);
  if (t.form == PropertyForm::kNativeOnly) added.clear();
  return {std::string(esc), std::move(added)};
}

// Class items for a set of code points (surrogates left out: they are not characters in UTF-8).
std::string set_items(const CodePointSet& set) {
  std::string out;
  for (const auto& r : without_surrogates(set)) {
    out += fmt::format("\\x{{{:X}}}", static_cast<uint32_t>(r.first));
    if (r.last > r.first) out += fmt::format("-\\x{{{:X}}}", static_cast<uint32_t>(r.last));
  }
  return out;
}

// The items of a character class as PCRE2 reads them, from the inside of a class (no brackets,
// no leading '^'): `\s`, `\S`, `\p{..}` and `\P{..}` become native items and one list of ranges.
std::string translate_class_items(std::string_view items, const Translation& t) {
  std::string text, natives;
  CodePointSet extra;
  bool translated = false;
  for (size_t i = 0; i < items.size();) {
    if (items[i] != '\\') {
      text.push_back(items[i]);
      ++i;
      continue;
    }
    size_t n = escape_length(items, i);
    std::string_view esc = items.substr(i, n);
    std::optional<CodePointSet> ours = escape_set(esc);
    i += n;
    if (!ours) {
      text += esc;
      continue;
    }
    ItemSet item = item_set(esc, *ours, t);
    natives += item.native;
    extra = unicode::set_union(extra, item.extra);
    translated = true;
    // The item leaves the text: a '-' before or after it stays a literal.
    if (!text.empty() && text.back() == '-' && (text.size() < 2 || text[text.size() - 2] != '\\'))
      text.insert(text.size() - 1, "\\");
    if (i < items.size() && items[i] == '-') {
      text += "\\-";
      ++i;
    }
  }
  if (!translated) return text;
  // A ']' that was first in the class stays a literal.
  if (!text.empty() && text[0] == ']') text.insert(0, "\\");
  return natives + set_items(extra) + text;
}

// Finds the ']' closing the class that opens at p[open] == '['; handles escapes and nested
// classes (used by intersections).
size_t class_end(std::string_view p, size_t open) {
  size_t i = open + 1;
  if (i < p.size() && p[i] == '^') ++i;
  if (i < p.size() && p[i] == ']') ++i;  // a literal ']' first
  int depth = 0;
  while (i < p.size()) {
    char c = p[i];
    if (c == '\\') {
      i += escape_length(p, i);
      continue;
    }
    if (c == '[') {
      if (p.substr(i, 2) == "[:") {
        size_t close = p.find(":]", i + 2);
        if (close != std::string_view::npos) {
          i = close + 2;
          continue;
        }
      }
      ++depth;
    } else if (c == ']') {
      if (depth == 0) return i;
      --depth;
    }
    ++i;
  }
  EPS_THROW("regex: unterminated character class in pattern");
}

// A class from its inside (without brackets, maybe with a leading '^').
std::string make_class(std::string_view inner, const Translation& t) {
  bool negated = !inner.empty() && inner[0] == '^';
  if (negated) inner.remove_prefix(1);
  std::string items = translate_class_items(inner, t);
  if (items.empty()) return negated ? "(?s:.)" : "(?!)";
  return std::string(negated ? "[^" : "[") + items + "]";
}

std::string translate_class(std::string_view cls, const Translation& t) {
  // cls includes the brackets.
  std::string_view inner = cls.substr(1, cls.size() - 2);
  size_t amp = inner.find("&&");
  if (amp == std::string_view::npos) return make_class(inner, t);
  std::string_view left = inner.substr(0, amp);
  std::string_view right = inner.substr(amp + 2);
  EPS_CHECK(!left.empty() && left[0] != '^' && right.size() >= 2 && right.front() == '[' &&
                right.back() == ']',
            "regex: unsupported class intersection '{}'", cls);
  std::string_view right_inner = right.substr(1, right.size() - 2);
  bool negated = !right_inner.empty() && right_inner[0] == '^';
  if (negated) right_inner.remove_prefix(1);
  return std::string("(?:(?") + (negated ? "!" : "=") + make_class(right_inner, t) + ")" +
         make_class(left, t) + ")";
}

}  // namespace

std::optional<CodePointSet> pcre2_native_set(std::string_view item) {
  static std::mutex mutex;
  static std::map<std::string, std::optional<CodePointSet>, std::less<>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(item);
  if (it != cache.end()) return it->second;
  std::optional<CodePointSet> result;
  try {
    Regex regex(fmt::format("[{}]+", item), "native property", /*translate=*/false);
    const std::string& text = all_code_points_utf8();
    CodePointSet set;  // runs are maximal, so in order and not adjacent
    regex.find_all(text, [&](size_t begin, size_t end) {
      size_t i = begin;
      char32_t first = utf8_next(text, i);
      size_t last_start = end - 1;
      while ((static_cast<unsigned char>(text[last_start]) & 0xC0) == 0x80) --last_start;
      set.push_back({first, utf8_next(text, last_start)});
    });
    result = without_surrogates(set);
  } catch (const Error&) {
    // PCRE2 does not know this name; the item is written out in full.
  }
  cache.emplace(std::string(item), result);
  return result;
}

std::string translate_pattern(std::string_view p, PropertyForm form, CodePointSet* missing) {
  Translation t{form, missing};
  std::string out;
  out.reserve(p.size() + 64);
  for (size_t i = 0; i < p.size();) {
    char c = p[i];
    if (c == '\\') {
      size_t n = escape_length(p, i);
      std::string_view esc = p.substr(i, n);
      i += n;
      std::optional<CodePointSet> ours = escape_set(esc);
      if (!ours) {
        out += esc;
        continue;
      }
      if (esc == "\\S") {  // a negated class: the same as the ranges, shorter
        out += "[^" + set_items(unicode::white_space()) + "]";
        continue;
      }
      ItemSet item = item_set(esc, *ours, t);
      if (!item.native.empty() && item.extra.empty()) {
        out += item.native;
        continue;
      }
      std::string items = item.native + set_items(item.extra);
      out += items.empty() ? "(?!)" : "[" + items + "]";
    } else if (c == '[') {
      size_t close = class_end(p, i);
      out += translate_class(p.substr(i, close - i + 1), t);
      i = close + 1;
    } else {
      out.push_back(c);
      ++i;
    }
  }
  return out;
}

}  // namespace epserve::tokenizer
