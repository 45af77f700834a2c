#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "core/error.h"

namespace epserve::tokenizer {

namespace {

// Unicode White_Space, which is what `\s` means in Oniguruma and in Rust's regex crate.
constexpr std::string_view kWhiteSpaceItems =
    "\\t-\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
    "\\x{3000}";

// Returns the length of the escape starting at p[i] == '\\' (including \p{..} and \x{..}).
size_t escape_length(std::string_view p, size_t i) {
  if (i + 1 >= p.size()) return 1;
  char c = p[i + 1];
  if ((c == 'p' || c == 'P' || c == 'x') && i + 2 < p.size() && p[i + 2] == '{') {
    size_t close = p.find('}', i + 3);
    EPS_CHECK(close != std::string_view::npos, "regex: unterminated \\{}{{ in pattern", c);
    return close - i + 1;
  }
  return 2;
}

// Translates the inside of a character class p[begin, end) (no surrounding brackets).
std::string translate_class_items(std::string_view items) {
  std::string out;
  for (size_t i = 0; i < items.size();) {
    if (items[i] == '\\') {
      size_t n = escape_length(items, i);
      std::string_view esc = items.substr(i, n);
      if (esc == "\\s") {
        out += kWhiteSpaceItems;
      } else {
        EPS_CHECK(esc != "\\S", "regex: \\S inside a character class is not supported");
        out += esc;
      }
      i += n;
    } else {
      out.push_back(items[i]);
      ++i;
    }
  }
  return out;
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

std::string translate_class(std::string_view cls) {
  // cls includes the brackets.
  std::string_view inner = cls.substr(1, cls.size() - 2);
  size_t amp = inner.find("&&");
  if (amp == std::string_view::npos) return "[" + translate_class_items(inner) + "]";
  std::string_view left = inner.substr(0, amp);
  std::string_view right = inner.substr(amp + 2);
  EPS_CHECK(!left.empty() && left[0] != '^' && right.size() >= 2 && right.front() == '[' &&
                right.back() == ']',
            "regex: unsupported class intersection '{}'", cls);
  std::string right_inner(right.substr(1, right.size() - 2));
  bool negated = !right_inner.empty() && right_inner[0] == '^';
  if (negated) right_inner.erase(0, 1);
  std::string right_class = "[" + translate_class_items(right_inner) + "]";
  return std::string("(?:(?") + (negated ? "!" : "=") + right_class + ")[" +
         translate_class_items(left) + "])";
}

}  // namespace

std::string translate_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  for (size_t i = 0; i < p.size();) {
    char c = p[i];
    if (c == '\\') {
      size_t n = escape_length(p, i);
      std::string_view esc = p.substr(i, n);
      if (esc == "\\s") {
        out += "[" + std::string(kWhiteSpaceItems) + "]";
      } else if (esc == "\\S") {
        out += "[^" + std::string(kWhiteSpaceItems) + "]";
      } else {
        out += esc;
      }
      i += n;
    } else if (c == '[') {
      size_t close = class_end(p, i);
      out += translate_class(p.substr(i, close - i + 1));
      i = close + 1;
    } else {
      out.push_back(c);
      ++i;
    }
  }
  return out;
}

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() {
    if (code) pcre2_code_free(code);
  }
};

namespace {

struct ThreadMatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  ThreadMatchState() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~ThreadMatchState() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
  }
};

ThreadMatchState& thread_match_state() {
  thread_local ThreadMatchState state;
  return state;
}

}  // namespace

Regex::Regex(std::string_view pattern, std::string_view origin)
    : impl_(std::make_unique<Impl>()), pattern_(pattern) {
  std::string translated = translate_pattern(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    EPS_THROW("{}: cannot compile regex '{}': {} at offset {}", origin, pattern,
              reinterpret_cast<const char*>(message), offset);
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

void Regex::find_all(std::string_view text,
                     const std::function<void(size_t, size_t)>& on_match) const {
  ThreadMatchState& state = thread_match_state();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), pos, 0, state.data,
                                          state.context)
                        : pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                                      state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) return;
    EPS_CHECK(rc >= 0, "regex '{}': match failed with PCRE2 error {}", pattern_, rc);
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(state.data);
    size_t start = ov[0], end = ov[1];
    if (end > start) {
      on_match(start, end);
      pos = end;
    } else {
      // Empty match: skip one character.
      if (start >= text.size()) return;
      pos = start + 1;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
}

}  // namespace epserve::tokenizer
