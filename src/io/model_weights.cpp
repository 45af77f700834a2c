#include "io/model_weights.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "io/model_config.h"

namespace epserve {
namespace fs = std::filesystem;

ModelWeights ModelWeights::open(const std::string& model_dir) {
  ModelWeights w;
  w.model_dir_ = model_dir;
  check_model_dir(model_dir);
  w.quant_ = load_quant_config(model_dir);
  fs::path index_path = fs::path(model_dir) / "model.safetensors.index.json";
  std::vector<std::string> shard_names;
  nlohmann::json weight_map;
  if (fs::exists(index_path)) {
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(read_text_file(index_path.string()));
    } catch (const nlohmann::json::exception& e) {
      EPS_THROW("{}: not valid JSON: {}", index_path.string(), e.what());
    }
    EPS_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
              "{}: missing 'weight_map' object", index_path.string());
    weight_map = index["weight_map"];
    std::set<std::string> unique;
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      EPS_CHECK(it.value().is_string(), "{}: weight_map entry '{}' is not a file name",
                index_path.string(), it.key());
      unique.insert(it.value().get<std::string>());
    }
    shard_names.assign(unique.begin(), unique.end());
  } else {
    for (const auto& entry : fs::directory_iterator(model_dir)) {
      if (entry.path().extension() == ".safetensors") {
        shard_names.push_back(entry.path().filename().string());
      }
    }
    std::sort(shard_names.begin(), shard_names.end());
    EPS_CHECK(!shard_names.empty(), "{}: no *.safetensors files in the model directory", model_dir);
  }

  std::map<std::string, size_t> shard_index;
  for (const auto& shard : shard_names) {
    fs::path path = fs::path(model_dir) / shard;
    EPS_CHECK(fs::exists(path), "{}: shard listed in model.safetensors.index.json is missing",
              path.string());
    shard_index[shard] = w.files_.size();
    w.files_.push_back(SafetensorsFile::open(path.string()));
  }
  if (!weight_map.is_null()) {
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      size_t file = shard_index.at(it.value().get<std::string>());
      EPS_CHECK(w.files_[file]->has(it.key()),
                "{}: tensor '{}' is listed in model.safetensors.index.json but not in the shard",
                w.files_[file]->path(), it.key());
      w.location_[it.key()] = file;
    }
  } else {
    for (size_t f = 0; f < w.files_.size(); ++f) {
      for (const auto& [name, entry] : w.files_[f]->header().tensors) {
        EPS_CHECK(w.location_.count(name) == 0, "{}: tensor '{}' also appears in {}",
                  w.files_[f]->path(), name, w.files_[w.location_[name]]->path());
        w.location_[name] = f;
      }
    }
  }
  return w;
}

std::string ModelWeights::file_of(const std::string& name) const {
  auto d = derived_.find(name);
  auto it = location_.find(d == derived_.end() ? stored_name(name) : d->second.stored);
  return it == location_.end() ? model_dir_ : files_[it->second]->path();
}

std::vector<std::string> ModelWeights::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : location_) out.push_back(name);
  return out;
}

void ModelWeights::add_alias(const std::string& name, const std::string& stored) {
  EPS_CHECK(location_.count(stored) != 0, "{}: tensor '{}' not found", model_dir_, stored);
  alias_[name] = stored;
}

void ModelWeights::add_slice(const std::string& name, const std::string& stored, int64_t index,
                             int64_t begin, int64_t end, bool transpose) {
  EPS_CHECK(location_.count(stored) != 0, "{}: tensor '{}' not found", model_dir_, stored);
  derived_[name] = Slice{stored, index, begin, end, transpose};
}

Tensor ModelWeights::fetch(const std::string& name, std::string& path) const {
  auto d = derived_.find(name);
  const std::string& stored = d == derived_.end() ? stored_name(name) : d->second.stored;
  auto it = location_.find(stored);
  EPS_CHECK(it != location_.end(), "{}: tensor '{}' not found", model_dir_, name);
  path = files_[it->second]->path();
  Tensor t = files_[it->second]->get(stored);
  if (d == derived_.end()) return t;
  const Slice& s = d->second;
  EPS_CHECK(t.ndim() == 3 && s.index < t.dim(0), "{}: tensor '{}' {} has no matrix {}", path,
            stored, shape_str(t.shape()), s.index);
  const int64_t A = t.dim(1), B = t.dim(2);
  Tensor m = t.slice_rows(s.index, s.index + 1).reshape({A, B});
  if (!s.transpose) {
    EPS_CHECK(s.end <= A, "{}: tensor '{}' {} has no rows {}..{}", path, stored,
              shape_str(t.shape()), s.begin, s.end);
    return m.slice_rows(s.begin, s.end);
  }
  EPS_CHECK(s.end <= B, "{}: tensor '{}' {} has no columns {}..{}", path, stored,
            shape_str(t.shape()), s.begin, s.end);
  const int64_t R = s.end - s.begin;
  Tensor out = Tensor::empty(t.dtype(), {R, A});
  const size_t elem = dtype_size(t.dtype());
  const auto* src = static_cast<const uint8_t*>(m.data());
  auto* dst = static_cast<uint8_t*>(out.data());
  for (int64_t a = 0; a < A; ++a) {
    for (int64_t r = 0; r < R; ++r) {
      std::memcpy(dst + (r * A + a) * elem, src + (a * B + s.begin + r) * elem, elem);
    }
  }
  return out;
}

uint64_t ModelWeights::nbytes(const std::string& name) const {
  if (derived_.count(name) != 0) {
    std::string path;
    return fetch(name, path).nbytes();
  }
  const std::string& stored = stored_name(name);
  auto it = location_.find(stored);
  EPS_CHECK(it != location_.end(), "{}: tensor '{}' not found", model_dir_, name);
  const SafetensorsEntry& e = files_[it->second]->header().tensors.at(stored);
  return e.end - e.begin;
}

Tensor ModelWeights::get(const std::string& name, const Shape& shape) const {
  EPS_CHECK(has(name), "{}: tensor '{}' not found (expected shape {})", model_dir_, name,
            shape_str(shape));
  std::string path;
  Tensor t = fetch(name, path);
  EPS_CHECK(t.shape() == shape, "{}: tensor '{}': expected shape {}, found {}", path, name,
            shape_str(shape), shape_str(t.shape()));
  EPS_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16,
            "{}: tensor '{}': expected dtype BF16, F16 or F32, found {}", path, name,
            dtype_name(t.dtype()));
  return t;
}

Tensor ModelWeights::raw(const std::string& name, const Shape& shape) const {
  std::string path;
  Tensor t = fetch(name, path);
  EPS_CHECK(shape.empty() || t.shape() == shape, "{}: tensor '{}': expected shape {}, found {}",
            path, name, shape_str(shape), shape_str(t.shape()));
  return t;
}

DType ModelWeights::dtype_of(const std::string& name) const {
  auto d = derived_.find(name);
  const std::string& stored = d == derived_.end() ? stored_name(name) : d->second.stored;
  auto it = location_.find(stored);
  EPS_CHECK(it != location_.end(), "{}: tensor '{}' not found", model_dir_, name);
  return files_[it->second]->header().tensors.at(stored).dtype;
}

Tensor ModelWeights::matrix(const std::string& name, const Shape& shape) const {
  Tensor t = get(name, shape);
  if (t.dtype() != DType::F16) return t;
  Tensor out = Tensor::empty(DType::F32, shape);
  convert_to_f32(t, out.f32());
  return out;
}

Tensor ModelWeights::get_f32(const std::string& name, const Shape& shape) const {
  Tensor t = get(name, shape);
  Tensor out = Tensor::empty(DType::F32, shape);
  convert_to_f32(t, out.f32());
  return out;
}

void convert_to_f32(const Tensor& src, float* dst) {
  int64_t n = src.numel();
  switch (src.dtype()) {
    case DType::F32:
      std::copy_n(src.ptr<const float>(), n, dst);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src.ptr<const bf16_t>()[i]);
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src.ptr<const f16_t>()[i]);
      break;
    default:
      EPS_THROW("cannot convert dtype {} to F32", dtype_name(src.dtype()));
  }
}

}  // namespace epserve
