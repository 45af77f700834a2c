// Normalizers of tokenizer.json: Unicode normal forms through ICU, plus the simple string ones.
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uniset.h>

#include "core/error.h"
#include "tokenizer/tokenizer_parts.h"

namespace epserve::tokenizer {

namespace {

class UnicodeForm : public Normalizer {
 public:
  UnicodeForm(const std::string& form, const std::string& origin) {
    UErrorCode status = U_ZERO_ERROR;
    if (form == "NFC")
      norm_ = icu::Normalizer2::getNFCInstance(status);
    else if (form == "NFD")
      norm_ = icu::Normalizer2::getNFDInstance(status);
    else if (form == "NFKC")
      norm_ = icu::Normalizer2::getNFKCInstance(status);
    else
      norm_ = icu::Normalizer2::getNFKDInstance(status);
    EPS_CHECK(U_SUCCESS(status), "{}: ICU cannot provide the {} normalizer", origin, form);
    // HF tokenizers normalizes with Unicode 9.0 tables (its unicode-normalization-alignments
    // crate): characters assigned later are left as they are and end a normalization segment,
    // which is what ICU's filter on the characters of Unicode <= 9.0 does.
    static const icu::UnicodeSet* const unicode_9 = [] {
      UErrorCode set_status = U_ZERO_ERROR;
      auto* set = new icu::UnicodeSet(icu::UnicodeString("[:age=9.0:]"), set_status);
      EPS_CHECK(U_SUCCESS(set_status), "ICU cannot build the Unicode 9.0 character set");
      set->freeze();
      return set;
    }();
    filtered_ = std::make_unique<icu::FilteredNormalizer2>(*norm_, *unicode_9);
  }
  std::string normalize(std::string_view text) const override {
    bool ascii = true;
    for (char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
    if (ascii) return std::string(text);
    UErrorCode status = U_ZERO_ERROR;
    icu::StringPiece piece(text.data(), static_cast<int32_t>(text.size()));
    // Text normalized by ICU's full tables is also normalized by the filtered ones (each span of
    // old characters is then normalized too), and this test is the faster one.
    if (norm_->isNormalizedUTF8(piece, status) && U_SUCCESS(status)) return std::string(text);
    status = U_ZERO_ERROR;
    std::string out;
    icu::StringByteSink<std::string> sink(&out);
    filtered_->normalizeUTF8(0, piece, sink, nullptr, status);
    EPS_CHECK(U_SUCCESS(status), "Unicode normalization failed: {}", u_errorName(status));
    return out;
  }

 private:
  const icu::Normalizer2* norm_ = nullptr;
  std::unique_ptr<icu::FilteredNormalizer2> filtered_;
};

class Sequence : public Normalizer {
 public:
  std::vector<std::unique_ptr<Normalizer>> steps;
  std::string normalize(std::string_view text) const override {
    std::string s(text);
    for (const auto& step : steps) s = step->normalize(s);
    return s;
  }
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prefix_(std::move(p)) {}
  std::string normalize(std::string_view text) const override {
    if (text.empty()) return {};
    return prefix_ + std::string(text);
  }

 private:
  std::string prefix_;
};

class Replace : public Normalizer {
 public:
  Replace(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  std::string normalize(std::string_view text) const override {
    std::string out;
    size_t pos = 0;
    while (true) {
      size_t hit = from_.empty() ? std::string_view::npos : text.find(from_, pos);
      if (hit == std::string_view::npos) break;
      out.append(text.substr(pos, hit - pos));
      out += to_;
      pos = hit + from_.size();
    }
    out.append(text.substr(pos));
    return out;
  }

 private:
  std::string from_, to_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& origin) {
  if (j.is_null()) return nullptr;
  EPS_CHECK(j.is_object() && j.contains("type"), "{}: normalizer must be an object with a type",
            origin);
  std::string type = j["type"].get<std::string>();
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    return std::make_unique<UnicodeForm>(type, origin);
  }
  if (type == "Sequence") {
    auto seq = std::make_unique<Sequence>();
    for (const auto& item : j.at("normalizers")) {
      if (auto step = make_normalizer(item, origin)) seq->steps.push_back(std::move(step));
    }
    if (seq->steps.empty()) return nullptr;
    return seq;
  }
  if (type == "Prepend") return std::make_unique<Prepend>(j.at("prepend").get<std::string>());
  if (type == "Replace") {
    const auto& pattern = j.at("pattern");
    EPS_CHECK(pattern.contains("String"),
              "{}: normalizer Replace with a regex pattern is not supported", origin);
    return std::make_unique<Replace>(pattern["String"].get<std::string>(),
                                     j.at("content").get<std::string>());
  }
  EPS_THROW(
      "{}: normalizer type '{}' is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence, "
      "Prepend, Replace)",
      origin, type);
}

}  // namespace epserve::tokenizer
