// A Jinja template engine for the subset chat templates use (DeepSeek-V3/V3.1, Qwen3, Kimi-K2 and
// similar): parsed once, at load time, where an unsupported construct is reported with its line;
// rendered with the settings Hugging Face uses for chat templates (trim_blocks, lstrip_blocks,
// loop controls, the `generation` tag, tojson as json.dumps(ensure_ascii=False), globals
// raise_exception, strftime_now, namespace, range, dict). Lists may be mutated (append/pop) as in
// jinja2's SandboxedEnvironment.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/jinja_value.h"

namespace epserve::tokenizer::jinja {

struct Stmt;

class Template {
 public:
  explicit Template(const std::string& source);  // throws epserve::Error naming the line
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with these top-level variables.
  std::string render(const Dict& variables) const;

 private:
  struct Parsed;
  std::shared_ptr<const Parsed> parsed_;
};

}  // namespace epserve::tokenizer::jinja
