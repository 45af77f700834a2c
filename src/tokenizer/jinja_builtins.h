// Filters, tests, methods and global functions of the Jinja subset (internal).
#pragma once

#include <string>

#include "tokenizer/jinja_value.h"

namespace epserve::tokenizer::jinja {

Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
bool apply_test(const std::string& name, const Value& input, CallArgs& args);
// A bound method of a str, list or dict, or an undefined value when the type has no such method.
Value get_method(const Value& object, const std::string& name);
void add_globals(Dict& globals);

// Python's len() for strings (code points), lists and dicts.
int64_t python_len(const Value& v);
// Iterates like Python: list items, dict keys, string characters; undefined is empty.
List iterate(const Value& v);

}  // namespace epserve::tokenizer::jinja
