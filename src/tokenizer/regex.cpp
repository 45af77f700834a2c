#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include <bitset>
#include <cstring>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer {

namespace {

struct Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  Compiled() = default;
  Compiled(const Compiled&) = delete;
  Compiled& operator=(const Compiled&) = delete;
  ~Compiled() {
    if (code) pcre2_code_free(code);
  }
};

void compile(const std::string& translated, std::string_view pattern, std::string_view origin,
             Compiled& out) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  out.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                           PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  if (!out.code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    EPS_THROW("{}: cannot compile regex '{}': {} at offset {}", origin, pattern,
              reinterpret_cast<const char*>(message), offset);
  }
  out.jit = pcre2_jit_compile(out.code, PCRE2_JIT_COMPLETE) == 0;
}

}  // namespace

// Two compiled forms when PCRE2's own tables lack code points the pattern's properties have:
// `exact` adds them as ranges, `fast` leaves them out and is used on text without any of them
// (almost all text), where both match alike.
struct Regex::Impl {
  Compiled exact, fast;
  unicode::CodePointSet missing;
  std::bitset<0x10000> missing_bmp;

  bool touches_missing(std::string_view text) const {
    for (size_t i = 0; i < text.size();) {
      if (i + 8 <= text.size()) {  // eight ASCII bytes at a time
        uint64_t word;
        std::memcpy(&word, text.data() + i, 8);
        if ((word & 0x8080808080808080ull) == 0) {
          i += 8;
          continue;
        }
      }
      auto lead = static_cast<unsigned char>(text[i]);
      if (lead < 0xE0 && missing.front().first >= 0x800) {  // ASCII or two bytes: below U+0800
        i += lead < 0x80 ? 1 : 2;
        continue;
      }
      char32_t cp = utf8_next(text, i);
      if (cp < 0x10000 ? missing_bmp[cp] : unicode::set_contains(missing, cp)) return true;
    }
    return false;
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

Regex::Regex(std::string_view pattern, std::string_view origin, bool translate)
    : impl_(std::make_unique<Impl>()), pattern_(pattern) {
  if (!translate) {
    compile(std::string(pattern), pattern, origin, impl_->exact);
    return;
  }
  compile(translate_pattern(pattern, PropertyForm::kNativePlusMissing, &impl_->missing), pattern,
          origin, impl_->exact);
  if (impl_->missing.empty()) return;
  compile(translate_pattern(pattern, PropertyForm::kNativeOnly), pattern, origin, impl_->fast);
  for (const auto& r : impl_->missing) {
    for (char32_t cp = r.first; cp <= r.last && cp < 0x10000; ++cp) impl_->missing_bmp[cp] = true;
  }
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

void Regex::find_all(std::string_view text,
                     const std::function<void(size_t, size_t)>& on_match) const {
  ThreadMatchState& state = thread_match_state();
  const Compiled& c =
      impl_->fast.code && !impl_->touches_missing(text) ? impl_->fast : impl_->exact;
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    int rc = c.jit
                 ? pcre2_jit_match(c.code, subject, text.size(), pos, 0, state.data, state.context)
                 : pcre2_match(c.code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, state.data,
                               state.context);
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
