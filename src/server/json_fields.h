// Reading request bodies: the body parsed as a JSON object, unknown keys rejected the way OpenAI
// rejects them, and typed field reads whose errors (400) name the field and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace epserve {

using nlohmann::json;

// Client JSON is nested at most this deep (objects and arrays), so that nothing that walks a
// request's values recursively (dump, copies, the chat template) can run out of stack.
constexpr size_t kMaxJsonDepth = 64;
// Values in one request body, containers counting kJsonContainerWeight each (they cost several
// times a scalar in memory): a few million empty arrays in an 8 MiB body would take ~200 MB.
constexpr size_t kMaxJsonValues = size_t{1} << 20;
constexpr size_t kJsonContainerWeight = 4;

// The body as a JSON object; 400 when it is not valid JSON, not an object, nested deeper than
// kMaxJsonDepth, or has a number that does not fit in a double (naming the field).
json parse_json_object(const std::string& body);

// 400 "Unrecognized request argument supplied: KEY" for a key not in `known`, and
// "KEY is not supported by epserve" for a key in `unsupported` whose value is not null/false/empty.
void check_keys(const json& object, std::initializer_list<const char*> known,
                std::initializer_list<const char*> unsupported = {},
                const std::string& prefix = "");

// Typed reads of object[key]; absent or null gives nullopt. `prefix` names the enclosing object
// in messages ("sampling_params.").
class FieldReader {
 public:
  explicit FieldReader(const json& object, std::string prefix = "")
      : object_(object), prefix_(std::move(prefix)) {}

  bool has(const char* key) const;
  std::optional<double> number(const char* key, double min, double max) const;
  std::optional<int64_t> integer(const char* key, int64_t min, int64_t max) const;
  std::optional<bool> boolean(const char* key) const;
  std::optional<std::string> string(const char* key) const;
  // A string or a list of strings (OpenAI's `stop`).
  std::optional<std::vector<std::string>> strings(const char* key) const;
  std::optional<std::vector<int32_t>> token_ids(const char* key) const;
  const json* object(const char* key) const;  // nullptr when absent/null; 400 when not object
  const json& raw(const char* key) const;

  std::string name(const char* key) const { return prefix_ + key; }

 private:
  const json& object_;
  std::string prefix_;
};

// A JSON list of token ids; 400 naming `name` otherwise.
std::vector<int32_t> parse_token_ids(const json& value, const std::string& name);

// JSON type name for messages ("string", "number", ...).
std::string json_type_name(const json& value);

}  // namespace epserve
