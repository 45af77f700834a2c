// PyTorch's torch.save file format, written without torch: what torch.load(path,
// weights_only=True) reads back, for a small tree of plain Python values and tensors (the expert
// distribution recorder's dump, eplb/recorder_dump.h).
//
// The file is a zip archive, every record stored (no compression), each record's data at a
// 64-byte boundary (torch's alignment; an "FB" extra field pads the local header):
//   archive/data.pkl     the value, pickled with protocol 2; a tensor is
//                        torch._utils._rebuild_tensor_v2((BINPERSID ('storage', torch.IntStorage,
//                        '<n>', 'cpu', numel)), 0, shape, strides, False, OrderedDict())
//   archive/byteorder    "little"
//   archive/data/<n>     storage n's bytes, little-endian, contiguous
//   archive/version      "3\n"
// No ".format_version" record: torch then looks every storage up in the zip directory instead
// of assuming the byte layout of its own zip writer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace epserve::torch_save {

enum class Dtype { kInt32, kInt64, kFloat32 };

struct Tensor {
  Dtype dtype = Dtype::kInt64;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // little-endian, row-major

  // Throws epserve::Error when values.size() is not the product of shape, or (int32) when a
  // value does not fit.
  static Tensor int32(std::vector<int64_t> shape, std::span<const int64_t> values);
  static Tensor int32(std::vector<int64_t> shape, std::span<const int32_t> values);
  static Tensor int64(std::vector<int64_t> shape, std::span<const int64_t> values);
  // A rectangular JSON array of integers nested `ndim` deep (an empty level makes the dimensions
  // below it 0).
  static Tensor int32_from_json(const nlohmann::json& nested, int ndim);
};

// A Python value: a plain one (None, bool, int, float, str, and lists / dicts of them, as JSON
// holds them), a tensor, a list of values or a dict with string keys in insertion order.
struct Value {
  enum class Kind { kPlain, kTensor, kList, kDict };
  Kind kind = Kind::kPlain;
  nlohmann::ordered_json plain;
  Tensor tensor;
  std::vector<Value> list;
  std::vector<std::pair<std::string, Value>> dict;

  static Value of(nlohmann::ordered_json plain);
  static Value of(Tensor tensor);
  static Value empty_list() { return Value{Kind::kList, {}, {}, {}, {}}; }
  static Value empty_dict() { return Value{Kind::kDict, {}, {}, {}, {}}; }
  // dict only: appends a key.
  Value& set(std::string key, Value value);
};

// The pickle stream of data.pkl; `storages` receives the tensors in storage-key order (0, 1, ...).
std::string pickle(const Value& value, std::vector<const Tensor*>* storages);

// The whole file's bytes. `archive_name` is the folder the records sit in ("archive", as
// torch.save into a buffer names it; torch.load takes whatever the first record's folder is).
std::string save_to_string(const Value& value, const std::string& archive_name = "archive");

// CRC-32 (the zip format's, IEEE 802.3).
uint32_t crc32(std::string_view bytes);

}  // namespace epserve::torch_save
