#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

namespace epserve {
namespace {

// The safetensors reference implementation refuses headers over 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

SafetensorsEntry parse_entry(const nlohmann::json& value, const std::string& tensor,
                             const std::string& name) {
  EPS_CHECK(value.is_object(), "{}: tensor '{}': header entry is not an object", name, tensor);
  auto dtype_it = value.find("dtype");
  auto shape_it = value.find("shape");
  auto offsets_it = value.find("data_offsets");
  EPS_CHECK(dtype_it != value.end() && dtype_it->is_string(),
            "{}: tensor '{}': missing or non-string 'dtype'", name, tensor);
  EPS_CHECK(shape_it != value.end() && shape_it->is_array(),
            "{}: tensor '{}': missing or non-array 'shape'", name, tensor);
  EPS_CHECK(offsets_it != value.end() && offsets_it->is_array() && offsets_it->size() == 2,
            "{}: tensor '{}': 'data_offsets' must be an array of two integers", name, tensor);

  SafetensorsEntry entry{};
  const auto& dtype_name_str = dtype_it->get_ref<const std::string&>();
  EPS_CHECK(dtype_from_name(dtype_name_str, &entry.dtype), "{}: tensor '{}': unknown dtype '{}'",
            name, tensor, dtype_name_str);
  uint64_t numel = 1;
  for (const auto& d : *shape_it) {
    EPS_CHECK(d.is_number_unsigned(),
              "{}: tensor '{}': shape entries must be non-negative integers", name, tensor);
    uint64_t dim = d.get<uint64_t>();
    EPS_CHECK(dim <= (1ull << 40) && !__builtin_mul_overflow(numel, dim, &numel),
              "{}: tensor '{}': shape is too large", name, tensor);
    entry.shape.push_back(static_cast<int64_t>(dim));
  }
  for (const auto& o : *offsets_it) {
    EPS_CHECK(o.is_number_unsigned(), "{}: tensor '{}': data_offsets must be non-negative integers",
              name, tensor);
  }
  entry.begin = (*offsets_it)[0].get<uint64_t>();
  entry.end = (*offsets_it)[1].get<uint64_t>();
  uint64_t expected_bytes = 0;
  EPS_CHECK(!__builtin_mul_overflow(numel, dtype_size(entry.dtype), &expected_bytes),
            "{}: tensor '{}': shape is too large", name, tensor);
  EPS_CHECK(
      entry.begin <= entry.end && entry.end - entry.begin == expected_bytes,
      "{}: tensor '{}': data_offsets [{}, {}] hold {} bytes but dtype {} and shape {} need {}",
      name, tensor, entry.begin, entry.end, entry.end - entry.begin, dtype_name(entry.dtype),
      shape_str(entry.shape), expected_bytes);
  return entry;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const unsigned char* data, size_t size,
                                           const std::string& name) {
  EPS_CHECK(size >= 8, "{}: file is {} bytes, too short for a safetensors header", name, size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  EPS_CHECK(header_len <= kMaxHeaderBytes, "{}: header length {} is larger than the limit of {}",
            name, header_len, kMaxHeaderBytes);
  EPS_CHECK(header_len <= size - 8,
            "{}: header length {} runs past the end of the file ({} bytes): truncated file?", name,
            header_len, size);

  nlohmann::json json;
  try {
    json = nlohmann::json::parse(data + 8, data + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    EPS_THROW("{}: header is not valid JSON: {}", name, e.what());
  }
  EPS_CHECK(json.is_object(), "{}: header is not a JSON object", name);

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  uint64_t data_size = size - header.data_offset;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = json.begin(); it != json.end(); ++it) {
    if (it.key() == "__metadata__") {
      EPS_CHECK(it.value().is_object(), "{}: __metadata__ is not an object", name);
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        EPS_CHECK(m.value().is_string(), "{}: __metadata__ value '{}' is not a string", name,
                  m.key());
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    SafetensorsEntry entry = parse_entry(it.value(), it.key(), name);
    EPS_CHECK(entry.end <= data_size,
              "{}: tensor '{}': data_offsets end at {} but the data region holds {} bytes: "
              "truncated file or a header that lies",
              name, it.key(), entry.end, data_size);
    if (entry.end > entry.begin) ranges.emplace_back(entry.begin, entry.end);
    header.tensors.emplace(it.key(), std::move(entry));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    EPS_CHECK(ranges[i].first >= ranges[i - 1].second,
              "{}: tensors overlap in the data region at byte {}", name, ranges[i].first);
  }
  return header;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto file = std::make_shared<SafetensorsFile>();
  file->file_ = MappedFile::open(path);
  file->header_ = parse_safetensors_header(file->file_->data(), file->file_->size(), path);
  return file;
}

Tensor SafetensorsFile::get(const std::string& name) const {
  auto it = header_.tensors.find(name);
  EPS_CHECK(it != header_.tensors.end(), "{}: no tensor named '{}'", path(), name);
  const SafetensorsEntry& e = it->second;
  const unsigned char* p = file_->data() + header_.data_offset + e.begin;
  return Tensor(e.dtype, e.shape, const_cast<unsigned char*>(p), file_);
}

}  // namespace epserve
