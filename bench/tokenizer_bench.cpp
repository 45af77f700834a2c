// Tokenizer speed: encodes a few MB of mixed text (the comparison corpus: English, CJK, emoji,
// code, digits, whitespace, special-token strings) with our tokenizer, single-threaded, and runs
// the reference library (HF `tokenizers`, or `tiktoken` for tiktoken files; Rust, from pip) on
// the same documents in the same run through bench/tokenizer_bench_reference.py.
// Prints our MB/s, the reference's MB/s and the ratio, per fixture tokenizer. Both sides time
// CPU time (best of --repeat runs), since the development machines are shared.
//
// Usage: tokenizer_bench [--python PATH] [--repeat N] [fixture ...]
//   fixtures: names of tools/reference/tokenizer/references.py (default: deepseek_v3 qwen2_5
//   qwen_tiktoken small_kimi_k2); PATH defaults to $EPSERVE_PYTHON, else python3.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

std::string source_dir() {
  return EPSERVE_SOURCE_DIR;
}

std::vector<std::string> corpus_documents(const std::string& path, size_t target_bytes) {
  std::ifstream in(path);
  std::vector<std::string> lines, docs;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.is_string() && !j.get<std::string>().empty()) lines.push_back(j.get<std::string>());
  }
  if (lines.empty()) {
    fmt::print(stderr, "tokenizer_bench: no text in {}\n", path);
    std::exit(2);
  }
  // Documents of ~20 corpus lines each, the corpus repeated until target_bytes.
  size_t bytes = 0;
  for (size_t i = 0; bytes < target_bytes; i += 20) {
    std::string doc;
    for (size_t k = 0; k < 20; ++k) doc += lines[(i + k) % lines.size()] + "\n";
    bytes += doc.size();
    docs.push_back(std::move(doc));
  }
  return docs;
}

// The machine is shared: CPU time of this thread, not wall time (the reference does the same).
double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

std::string run_reference(const std::string& python, const std::string& fixture,
                          const std::string& text_file) {
  std::string cmd =
      fmt::format("{} {}/bench/tokenizer_bench_reference.py --fixture {} --text-file {} 2>&1",
                  python, source_dir(), fixture, text_file);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return "";
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  pclose(p);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace epserve::tokenizer;
  std::string python = std::getenv("EPSERVE_PYTHON") ? std::getenv("EPSERVE_PYTHON") : "python3";
  int repeats = 3;
  std::vector<std::string> fixtures;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--python" && i + 1 < argc)
      python = argv[++i];
    else if (a == "--repeat" && i + 1 < argc)
      repeats = std::atoi(argv[++i]);
    else
      fixtures.push_back(a);
  }
  if (fixtures.empty()) fixtures = {"deepseek_v3", "qwen2_5", "qwen_tiktoken", "small_kimi_k2"};
  const std::map<std::string, std::string> dirs = {
      {"deepseek_v3", "deepseek_v3"},     {"qwen2_5", "qwen2_5"},
      {"qwen_tiktoken", "qwen_tiktoken"}, {"small_deepseek_v3", "small/deepseek_v3"},
      {"small_qwen3", "small/qwen3"},     {"small_kimi_k2", "small/kimi_k2"}};
  std::string data = source_dir() + "/tests/data/tokenizers";
  auto docs = corpus_documents(data + "/corpus.jsonl", 4 << 20);
  size_t bytes = 0;
  std::string joined;
  for (size_t i = 0; i < docs.size(); ++i) {
    bytes += docs[i].size();
    if (i) joined.push_back('\0');
    joined += docs[i];
  }
  auto text_file = std::filesystem::temp_directory_path() / "epserve_tokenizer_bench.txt";
  std::ofstream(text_file, std::ios::binary) << joined;
  fmt::print("text: {} documents, {:.2f} MB of mixed text (tests/data/tokenizers/corpus.jsonl)\n",
             docs.size(), bytes / 1e6);
  for (const std::string& name : fixtures) {
    auto t0 = std::chrono::steady_clock::now();
    Tokenizer tok = Tokenizer::load(data + "/" + dirs.at(name));
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double best = 1e30;
    size_t ids = 0;
    for (int r = 0; r < repeats; ++r) {
      double start = thread_cpu_seconds();
      size_t n = 0;
      for (const auto& d : docs) n += tok.encode(d, false).size();
      best = std::min(best, thread_cpu_seconds() - start);
      ids = n;
    }
    double ours = bytes / best / 1e6;
    std::string ref = run_reference(python, name, text_file.string());
    char library[64] = {0};
    double ref_mbs = 0;
    size_t ref_ids = 0;
    if (std::sscanf(ref.c_str(), "reference %63s %lf %zu", library, &ref_mbs, &ref_ids) == 3) {
      fmt::print(
          "{:<14} epserve {:7.2f} MB/s ({} ids, load {:.2f} s) | {} {:7.2f} MB/s ({} ids) | "
          "ratio {:.2f}x{}\n",
          name, ours, ids, load_s, library, ref_mbs, ref_ids, ours / ref_mbs,
          ids == ref_ids ? "" : "  (id counts differ!)");
    } else {
      fmt::print("{:<14} epserve {:7.2f} MB/s ({} ids, load {:.2f} s) | reference not run: {}\n",
                 name, ours, ids, load_s, ref.substr(0, 200));
    }
  }
  std::filesystem::remove(text_file);
  return 0;
}
