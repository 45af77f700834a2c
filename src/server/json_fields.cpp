#include "server/json_fields.h"

#include <fmt/format.h>

#include <cmath>

#include "server/errors.h"

namespace epserve {

std::string json_type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    case json::value_t::number_float:
      return "number";
    default:
      return "integer";
  }
}

namespace {

// Builds the DOM like nlohmann's own parser, but stops at kMaxJsonDepth levels of nesting and
// names the field (as a path: "messages[0].content") of a number that does not fit in a double.
class BoundedJsonBuilder {
 public:
  explicit BoundedJsonBuilder(json& root) : dom_(root, false) {}

  bool null() { return count(1) && scalar(dom_.null()); }
  bool boolean(bool v) { return count(1) && scalar(dom_.boolean(v)); }
  bool number_integer(json::number_integer_t v) {
    return count(1) && scalar(dom_.number_integer(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return count(1) && scalar(dom_.number_unsigned(v));
  }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return count(1) && scalar(dom_.number_float(v, s));
  }
  bool string(json::string_t& v) { return count(1) && scalar(dom_.string(v)); }
  bool binary(json::binary_t& v) { return count(1) && scalar(dom_.binary(v)); }
  bool start_object(std::size_t n) { return open(false) && dom_.start_object(n); }
  bool start_array(std::size_t n) { return open(true) && dom_.start_array(n); }
  bool key(json::string_t& k) {
    levels_.back().key = k;
    return dom_.key(k);
  }
  bool end_object() { return close(dom_.end_object()); }
  bool end_array() { return close(dom_.end_array()); }
  bool parse_error(std::size_t, const std::string& token, const nlohmann::detail::exception& e) {
    if (e.id == 406) {  // out_of_range: number overflow
      param_ = path();
      std::string number = token.size() > 40 ? token.substr(0, 37) + "..." : token;
      message_ = fmt::format("{}: the number {} does not fit in a 64-bit float", param_, number);
    } else {
      message_ = fmt::format("the request body is not valid JSON: {}", e.what());
    }
    return false;
  }

  const std::string& message() const { return message_; }
  const std::string& param() const { return param_; }

 private:
  struct Level {
    bool array = false;
    size_t index = 0;
    std::string key;
  };

  bool open(bool array) {
    if (!count(kJsonContainerWeight)) return false;
    if (levels_.size() >= kMaxJsonDepth) {
      param_ = levels_.empty() || levels_[0].array ? "" : levels_[0].key;
      message_ = fmt::format("{}{}the request body is nested more than {} levels deep", param_,
                             param_.empty() ? "" : ": ", kMaxJsonDepth);
      return false;
    }
    levels_.push_back(Level{array, 0, ""});
    return true;
  }
  bool close(bool ok) {
    levels_.pop_back();
    return scalar(ok);
  }
  // A value ended: the next one of an enclosing array has the next index.
  bool scalar(bool ok) {
    if (!levels_.empty() && levels_.back().array) ++levels_.back().index;
    return ok;
  }
  bool count(size_t weight) {
    values_ += weight;
    if (values_ <= kMaxJsonValues) return true;
    param_ = levels_.empty() || levels_[0].array ? "" : levels_[0].key;
    message_ = fmt::format("{}{}the request body holds more than {} JSON values", param_,
                           param_.empty() ? "" : ": ", kMaxJsonValues);
    return false;
  }
  std::string path() const {
    std::string out;
    for (const Level& level : levels_) {
      if (level.array) {
        out += fmt::format("[{}]", level.index);
      } else {
        out += (out.empty() ? "" : ".") + level.key;
      }
    }
    return out;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<Level> levels_;
  size_t values_ = 0;
  std::string message_;
  std::string param_;
};

}  // namespace

json parse_json_object(const std::string& body) {
  json value;
  BoundedJsonBuilder builder(value);
  if (!json::sax_parse(body, &builder)) bad_request(builder.message(), builder.param());
  if (!value.is_object()) {
    bad_request(
        fmt::format("the request body must be a JSON object, not {}", json_type_name(value)));
  }
  return value;
}

namespace {

bool is_unset(const json& v) {
  return v.is_null() || (v.is_boolean() && !v.get<bool>()) ||
         ((v.is_array() || v.is_object() || v.is_string()) && v.empty());
}

}  // namespace

void check_keys(const json& object, std::initializer_list<const char*> known,
                std::initializer_list<const char*> unsupported, const std::string& prefix) {
  for (const auto& [key, value] : object.items()) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (ok) continue;
    bool is_unsupported = false;
    for (const char* k : unsupported) is_unsupported = is_unsupported || key == k;
    if (is_unsupported) {
      if (is_unset(value)) continue;
      bad_request(fmt::format("{}{} is not supported by epserve", prefix, key), prefix + key);
    }
    bad_request(fmt::format("Unrecognized request argument supplied: {}{}", prefix, key),
                prefix + key);
  }
}

bool FieldReader::has(const char* key) const {
  auto it = object_.find(key);
  return it != object_.end() && !it->is_null();
}

const json& FieldReader::raw(const char* key) const {
  return object_.at(key);
}

std::optional<double> FieldReader::number(const char* key, double min, double max) const {
  if (!has(key)) return std::nullopt;
  const json& v = object_.at(key);
  if (!v.is_number()) {
    bad_request(fmt::format("{}: expected a number, got {}", name(key), json_type_name(v)),
                name(key));
  }
  double d = v.get<double>();
  if (!std::isfinite(d) || d < min || d > max) {
    bad_request(
        fmt::format("{} = {} is outside the allowed range [{}, {}]", name(key), d, min, max),
        name(key));
  }
  return d;
}

std::optional<int64_t> FieldReader::integer(const char* key, int64_t min, int64_t max) const {
  if (!has(key)) return std::nullopt;
  const json& v = object_.at(key);
  bool integral = v.is_number_integer() || (v.is_number_float() && std::isfinite(v.get<double>()) &&
                                            v.get<double>() == std::floor(v.get<double>()) &&
                                            std::fabs(v.get<double>()) < 9e15);
  if (!integral) {
    bad_request(fmt::format("{}: expected an integer, got {}", name(key), json_type_name(v)),
                name(key));
  }
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    bad_request(fmt::format("{} = {} is outside the allowed range [{}, {}]", name(key),
                            v.get<uint64_t>(), min, max),
                name(key));
  }
  int64_t i = v.is_number_float() ? static_cast<int64_t>(v.get<double>()) : v.get<int64_t>();
  if (i < min || i > max) {
    bad_request(
        fmt::format("{} = {} is outside the allowed range [{}, {}]", name(key), i, min, max),
        name(key));
  }
  return i;
}

std::optional<bool> FieldReader::boolean(const char* key) const {
  if (!has(key)) return std::nullopt;
  const json& v = object_.at(key);
  if (!v.is_boolean()) {
    bad_request(fmt::format("{}: expected a boolean, got {}", name(key), json_type_name(v)),
                name(key));
  }
  return v.get<bool>();
}

std::optional<std::string> FieldReader::string(const char* key) const {
  if (!has(key)) return std::nullopt;
  const json& v = object_.at(key);
  if (!v.is_string()) {
    bad_request(fmt::format("{}: expected a string, got {}", name(key), json_type_name(v)),
                name(key));
  }
  return v.get<std::string>();
}

std::optional<std::vector<std::string>> FieldReader::strings(const char* key) const {
  if (!has(key)) return std::nullopt;
  const json& v = object_.at(key);
  if (v.is_string()) return std::vector<std::string>{v.get<std::string>()};
  if (v.is_array()) {
    std::vector<std::string> out;
    for (const auto& item : v) {
      if (!item.is_string()) {
        bad_request(fmt::format("{}: expected a string or a list of strings, got a list with "
                                "a {}",
                                name(key), json_type_name(item)),
                    name(key));
      }
      out.push_back(item.get<std::string>());
    }
    return out;
  }
  bad_request(fmt::format("{}: expected a string or a list of strings, got {}", name(key),
                          json_type_name(v)),
              name(key));
}

std::vector<int32_t> parse_token_ids(const json& v, const std::string& name) {
  if (!v.is_array()) {
    bad_request(fmt::format("{}: expected a list of token ids, got {}", name, json_type_name(v)),
                name);
  }
  std::vector<int32_t> out;
  for (const auto& item : v) {
    if (!item.is_number_integer() || item.get<int64_t>() < 0 || item.get<int64_t>() > INT32_MAX) {
      bad_request(fmt::format("{}: expected non-negative integer token ids, got {}", name,
                              item.is_number() ? item.dump() : json_type_name(item)),
                  name);
    }
    out.push_back(static_cast<int32_t>(item.get<int64_t>()));
  }
  return out;
}

std::optional<std::vector<int32_t>> FieldReader::token_ids(const char* key) const {
  if (!has(key)) return std::nullopt;
  return parse_token_ids(object_.at(key), name(key));
}

const json* FieldReader::object(const char* key) const {
  if (!has(key)) return nullptr;
  const json& v = object_.at(key);
  if (!v.is_object()) {
    bad_request(fmt::format("{}: expected an object, got {}", name(key), json_type_name(v)),
                name(key));
  }
  return &v;
}

}  // namespace epserve
