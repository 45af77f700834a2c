// Splits Jinja source into text, {{ expression }} and {% statement %} chunks, applying the
// whitespace rules HF chat templates are rendered with: trim_blocks, lstrip_blocks, the `-` and
// `+` modifiers, newline normalization and dropping one trailing newline. Also tokenizes the
// inside of a tag into expression tokens.
#pragma once

#include <string>
#include <vector>

namespace epserve::tokenizer::jinja {

enum class ChunkKind { kText, kExpression, kStatement };

struct Chunk {
  ChunkKind kind;
  std::string text;  // text, or the inside of the tag
  int line;
};

std::vector<Chunk> split_chunks(const std::string& source);

enum class TokKind { kName, kInt, kFloat, kString, kOp, kEnd };

struct Tok {
  TokKind kind;
  std::string text;  // name, operator, or decoded string literal
  int64_t int_value = 0;
  double float_value = 0;
};

std::vector<Tok> tokenize_expression(const std::string& inside, int line);

}  // namespace epserve::tokenizer::jinja
