#include "io/safetensors_writer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace epserve {
namespace {

size_t tensor_bytes(const TensorToWrite& t) {
  return static_cast<size_t>(shape_numel(t.shape)) * dtype_size(t.dtype);
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& t : tensors) {
    size_t bytes = tensor_bytes(t);
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data region 8-byte aligned

  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "wb"), &std::fclose);
  EPS_CHECK(file != nullptr, "{}: cannot create", path);
  uint64_t len = text.size();
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(len >> (8 * i));
  bool ok = std::fwrite(len_bytes, 1, 8, file.get()) == 8 &&
            std::fwrite(text.data(), 1, text.size(), file.get()) == text.size();
  std::vector<unsigned char> buffer;
  for (const auto& t : tensors) {
    size_t bytes = tensor_bytes(t);
    buffer.assign(bytes, 0);
    if (bytes) t.fill(buffer.data(), bytes);
    ok = ok && std::fwrite(buffer.data(), 1, bytes, file.get()) == bytes;
  }
  EPS_CHECK(ok, "{}: write failed (disk full?)", path);
}

void write_model_safetensors(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                             size_t max_shard_bytes) {
  std::filesystem::create_directories(dir);
  std::vector<std::vector<TensorToWrite>> shards(1);
  size_t shard_bytes = 0;
  for (const auto& t : tensors) {
    size_t bytes = tensor_bytes(t);
    if (shard_bytes > 0 && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(t);
    shard_bytes += bytes;
  }
  std::map<std::string, std::string> metadata{{"format", "pt"}};
  if (shards.size() == 1) {
    write_safetensors(dir + "/model.safetensors", shards[0], metadata);
    return;
  }
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  size_t total = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    write_safetensors(dir + "/" + name, shards[i], metadata);
    for (const auto& t : shards[i]) {
      weight_map[t.name] = name;
      total += tensor_bytes(t);
    }
  }
  nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}},
                                  {"weight_map", weight_map}};
  std::ofstream out(dir + "/model.safetensors.index.json");
  out << index.dump(2) << "\n";
  EPS_CHECK(out.good(), "{}/model.safetensors.index.json: write failed", dir);
}

}  // namespace epserve
