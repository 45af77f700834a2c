// Request bodies: malformed JSON, wrong types, out-of-range values and unknown keys are 400s
// naming the field; error bodies have OpenAI's shape.
#include "server/json_fields.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/errors.h"
#include "server/sse.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;

template <class F>
ApiError api_error(F f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError";
  return ApiError(0, "");
}

TEST(JsonFields, MalformedBodies) {
  EXPECT_THAT(api_error([] { parse_json_object("{\"a\": "); }).what(), HasSubstr("not valid JSON"));
  EXPECT_THAT(api_error([] { parse_json_object("{\"t\": NaN}"); }).what(),
              HasSubstr("not valid JSON"));
  EXPECT_THAT(api_error([] { parse_json_object("[1, 2]"); }).what(),
              HasSubstr("must be a JSON object, not array"));
  EXPECT_EQ(api_error([] { parse_json_object(""); }).status(), 400);
}

TEST(JsonFields, NestingIsBoundedAtParseTime) {
  auto nested = [](size_t depth) {
    return "{\"a\": " + std::string(depth, '[') + std::string(depth, ']') + "}";
  };
  EXPECT_NO_THROW(parse_json_object(nested(kMaxJsonDepth - 1)));
  ApiError e = api_error([&] { parse_json_object(nested(kMaxJsonDepth)); });
  EXPECT_THAT(e.what(), HasSubstr("nested more than 64 levels deep"));
  EXPECT_EQ(e.param(), "a");
  e = api_error([&] { parse_json_object(nested(100000)); });
  EXPECT_EQ(e.status(), 400);
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"b\": ";
  EXPECT_THAT(api_error([&] { parse_json_object(objects); }).what(), HasSubstr("nested more than"));
}

TEST(JsonFields, ValueCountIsBoundedAtParseTime) {
  // A long list of token ids is fine; millions of empty arrays (~200 MB of DOM from 8 MiB) are not.
  std::string ids = "{\"input_ids\": [";
  for (int i = 0; i < 200000; ++i) ids += (i ? ",7" : "7");
  EXPECT_NO_THROW(parse_json_object(ids + "]}"));
  std::string empties = "{\"input_ids\": [";
  for (size_t i = 0; i < kMaxJsonValues / kJsonContainerWeight + 1; ++i)
    empties += i ? ",[]" : "[]";
  ApiError e = api_error([&] { parse_json_object(empties + "]}"); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.param(), "input_ids");
  EXPECT_THAT(e.what(), HasSubstr("more than 1048576 JSON values"));
}

TEST(JsonFields, NumbersThatDoNotFitNameTheirField) {
  ApiError e = api_error([] { parse_json_object(R"({"temperature": 1e400})"); });
  EXPECT_EQ(e.param(), "temperature");
  EXPECT_THAT(e.what(), HasSubstr("temperature: the number 1e400 does not fit"));
  e = api_error([] { parse_json_object(R"({"a": [1, {"b": [2, 3, -1e999]}]})"); });
  EXPECT_EQ(e.param(), "a[1].b[2]");
  e = api_error([] { parse_json_object(R"({"logit_bias": {"5": 1e400}})"); });
  EXPECT_EQ(e.param(), "logit_bias.5");
  json body = parse_json_object(R"({"a": [1, [2], {"b": 1e-400}], "c": 1.5e308})");
  EXPECT_EQ(body["a"][2]["b"].get<double>(), 0.0);
  json big = parse_json_object(R"({"seed": 18446744073709551615})");
  EXPECT_EQ(api_error([&] { FieldReader(big).integer("seed", INT64_MIN, INT64_MAX); }).param(),
            "seed");
}

TEST(JsonFields, UnknownKeysAreRejectedLikeOpenAI) {
  json body = {{"model", "m"}, {"temprature", 1}};
  ApiError e = api_error([&] { check_keys(body, {"model", "temperature"}); });
  EXPECT_STREQ(e.what(), "Unrecognized request argument supplied: temprature");
  EXPECT_EQ(e.param(), "temprature");
  // A known-but-unsupported key is fine while unset, and named when set.
  EXPECT_NO_THROW(check_keys({{"tools", nullptr}}, {}, {"tools"}));
  EXPECT_NO_THROW(check_keys({{"tools", json::array()}}, {}, {"tools"}));
  EXPECT_THAT(api_error([] {
                check_keys({{"tools", json::array({1})}}, {}, {"tools"});
              }).what(),
              HasSubstr("tools is not supported by epserve"));
}

TEST(JsonFields, TypedReads) {
  json body = {{"t", 0.5},        {"i", 3},        {"f", 3.0},    {"s", "x"},       {"b", true},
               {"l", {"a", "b"}}, {"ids", {1, 2}}, {"neg", -1.5}, {"null", nullptr}};
  FieldReader r(body, "p.");
  EXPECT_EQ(r.number("t", 0, 1), 0.5);
  EXPECT_EQ(r.integer("i", 0, 10), 3);
  EXPECT_EQ(r.integer("f", 0, 10), 3);
  EXPECT_EQ(r.string("s"), "x");
  EXPECT_EQ(r.boolean("b"), true);
  EXPECT_EQ(r.strings("s"), std::vector<std::string>{"x"});
  EXPECT_EQ(r.strings("l"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.token_ids("ids"), (std::vector<int32_t>{1, 2}));
  EXPECT_FALSE(r.number("missing", 0, 1).has_value());
  EXPECT_FALSE(r.number("null", 0, 1).has_value());
  EXPECT_THAT(api_error([&] { r.number("s", 0, 1); }).what(),
              HasSubstr("p.s: expected a number, got string"));
  EXPECT_THAT(api_error([&] { r.integer("t", 0, 1); }).what(),
              HasSubstr("p.t: expected an integer"));
  EXPECT_THAT(api_error([&] { r.number("neg", 0, 2); }).what(),
              HasSubstr("p.neg = -1.5 is outside the allowed range [0, 2]"));
  EXPECT_THAT(api_error([&] { r.boolean("i"); }).what(), HasSubstr("expected a boolean"));
  EXPECT_THAT(api_error([&] { r.token_ids("l"); }).what(), HasSubstr("token ids"));
  EXPECT_EQ(api_error([&] { r.number("neg", 0, 2); }).param(), "p.neg");
}

TEST(Errors, BodyHasOpenAIShape) {
  json body = json::parse(error_body(400, "bad", "temperature"));
  EXPECT_EQ(body["error"]["message"], "bad");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "temperature");
  EXPECT_TRUE(body["error"]["code"].is_null());
  json auth = json::parse(error_body(401, "no", "", "invalid_api_key"));
  EXPECT_EQ(auth["error"]["type"], "authentication_error");
  EXPECT_EQ(auth["error"]["code"], "invalid_api_key");
  EXPECT_TRUE(auth["error"]["param"].is_null());
  EXPECT_EQ(error_type_for_status(503), "server_error");
  EXPECT_EQ(error_type_for_status(404), "not_found_error");
}

TEST(Sse, Framing) {
  EXPECT_EQ(sse_event({{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  // Invalid UTF-8 is replaced, not thrown.
  EXPECT_NO_THROW(sse_event({{"t", std::string("\xff")}}));
}

}  // namespace
}  // namespace epserve
