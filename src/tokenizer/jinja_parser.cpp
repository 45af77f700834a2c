// Parser of the Jinja subset's statements: if/elif/else, for (with else, filter, unpacking),
// set (plain, namespace attribute, block), macro, break/continue, generation, raw. Expressions:
// jinja_expr_parser.h.
#include "core/error.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_expr_parser.h"
#include "tokenizer/jinja_lexer.h"

namespace epserve::tokenizer::jinja {

namespace {

class TemplateParser {
 public:
  explicit TemplateParser(std::vector<Chunk> chunks) : chunks_(std::move(chunks)) {}

  Body parse_all() {
    std::string end_tag;
    Body body = parse_body({}, &end_tag);
    return body;
  }

 private:
  struct TagView {
    std::string keyword;
    ExprParser parser;
  };

  TagView open_tag(const Chunk& c) {
    ExprParser p(tokenize_expression(c.text, c.line), c.line);
    EPS_CHECK(p.peek().kind == TokKind::kName, "template line {}: empty statement tag", c.line);
    std::string keyword = p.next().text;
    return {keyword, std::move(p)};
  }

  // Parses statements until one of `ends` (returned in *end_tag, with its parser in *end_parser).
  Body parse_body(const std::vector<std::string>& ends, std::string* end_tag,
                  std::optional<ExprParser>* end_parser = nullptr) {
    Body body;
    while (pos_ < chunks_.size()) {
      const Chunk& c = chunks_[pos_++];
      if (c.kind == ChunkKind::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kText;
        s->text = c.text;
        s->line = c.line;
        body.push_back(std::move(s));
        continue;
      }
      if (c.kind == ChunkKind::kExpression) {
        ExprParser p(tokenize_expression(c.text, c.line), c.line);
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = c.line;
        s->expr = p.parse_expression();
        p.expect_end();
        body.push_back(std::move(s));
        continue;
      }
      TagView tag = open_tag(c);
      for (const auto& e : ends) {
        if (tag.keyword == e) {
          *end_tag = e;
          if (end_parser) end_parser->emplace(std::move(tag.parser));
          return body;
        }
      }
      body.push_back(parse_statement(tag.keyword, tag.parser, c.line));
    }
    EPS_CHECK(ends.empty(), "template: missing '{{% {} %}}' before the end of the template",
              ends.empty() ? "" : ends[0]);
    return body;
  }

  StmtPtr parse_statement(const std::string& keyword, ExprParser& p, int line) {
    auto s = std::make_unique<Stmt>();
    s->line = line;
    if (keyword == "if") {
      s->kind = StmtKind::kIf;
      ExprPtr cond = p.parse_expression();
      p.expect_end();
      while (true) {
        std::string end_tag;
        std::optional<ExprParser> end_parser;
        Body body = parse_body({"elif", "else", "endif"}, &end_tag, &end_parser);
        s->branches.emplace_back(std::move(cond), std::move(body));
        if (end_tag == "elif") {
          cond = end_parser->parse_expression();
          end_parser->expect_end();
          continue;
        }
        if (end_tag == "else") {
          end_parser->expect_end();
          Body else_body = parse_body({"endif"}, &end_tag);
          s->branches.emplace_back(nullptr, std::move(else_body));
        }
        return s;
      }
    }
    if (keyword == "for") {
      s->kind = StmtKind::kFor;
      s->targets.push_back(p.expect_name());
      while (p.is_op(",")) {
        p.next();
        s->targets.push_back(p.expect_name());
      }
      EPS_CHECK(p.is_name("in"), "template line {}: expected 'in' in for loop", line);
      p.next();
      s->expr = p.parse_tuple_or_expression_no_cond();
      if (p.is_name("if")) {
        p.next();
        s->filter = p.parse_expression();
      }
      EPS_CHECK(!p.is_name("recursive"), "template line {}: recursive loops are not supported",
                line);
      p.expect_end();
      std::string end_tag;
      s->body = parse_body({"else", "endfor"}, &end_tag);
      if (end_tag == "else") s->else_body = parse_body({"endfor"}, &end_tag);
      return s;
    }
    if (keyword == "set") {
      std::string first = p.expect_name();
      if (p.is_op(".")) {
        p.next();
        s->attr = p.expect_name();
      }
      s->targets.push_back(first);
      while (p.is_op(",")) {
        p.next();
        s->targets.push_back(p.expect_name());
      }
      if (p.at_end()) {
        EPS_CHECK(s->attr.empty() && s->targets.size() == 1,
                  "template line {}: block set needs one name", line);
        s->kind = StmtKind::kSetBlock;
        std::string end_tag;
        s->body = parse_body({"endset"}, &end_tag);
        return s;
      }
      s->kind = StmtKind::kSet;
      p.expect_op("=");
      s->expr = p.parse_tuple_or_expression();
      p.expect_end();
      return s;
    }
    if (keyword == "macro") {
      s->kind = StmtKind::kMacro;
      s->name = p.expect_name();
      p.expect_op("(");
      while (!p.is_op(")")) {
        s->params.push_back(p.expect_name());
        if (p.is_op("=")) {
          p.next();
          s->defaults.push_back(p.parse_expression());
        } else {
          s->defaults.push_back(nullptr);
        }
        if (!p.is_op(",")) break;
        p.next();
      }
      p.expect_op(")");
      p.expect_end();
      std::string end_tag;
      s->body = parse_body({"endmacro"}, &end_tag);
      return s;
    }
    if (keyword == "break" || keyword == "continue") {
      p.expect_end();
      s->kind = keyword == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      return s;
    }
    if (keyword == "generation") {
      p.expect_end();
      s->kind = StmtKind::kBlock;
      std::string end_tag;
      s->body = parse_body({"endgeneration"}, &end_tag);
      return s;
    }
    EPS_THROW("template line {}: statement '{{% {} %}}' is not supported", line, keyword);
  }

  std::vector<Chunk> chunks_;
  size_t pos_ = 0;
};

}  // namespace

Body parse_template(const std::string& source) {
  return TemplateParser(split_chunks(source)).parse_all();
}

}  // namespace epserve::tokenizer::jinja
