#include "eplb/torch_save.h"

#include <array>
#include <bit>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace epserve::torch_save {

namespace {

static_assert(std::endian::native == std::endian::little, "the byteorder record says little");

constexpr size_t kAlignment = 64;  // torch's storage alignment

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    EPS_CHECK(d >= 0, "torch_save: negative dimension {}", d);
    n *= d;
  }
  return n;
}

template <typename Out, typename In>
Tensor make(Dtype dtype, std::vector<int64_t> shape, std::span<const In> values) {
  EPS_CHECK(static_cast<int64_t>(values.size()) == product(shape),
            "torch_save: {} values for a tensor of {} elements", values.size(), product(shape));
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data.resize(values.size() * sizeof(Out));
  for (size_t i = 0; i < values.size(); ++i) {
    EPS_CHECK(values[i] >= std::numeric_limits<Out>::min() &&
                  values[i] <= std::numeric_limits<Out>::max(),
              "torch_save: value {} does not fit the tensor's dtype", values[i]);
    const Out v = static_cast<Out>(values[i]);
    std::memcpy(t.data.data() + i * sizeof(Out), &v, sizeof(Out));
  }
  return t;
}

// Pickle protocol 2 opcodes (Python's Lib/pickle.py names).
namespace op {
constexpr char kMark = '(', kStop = '.', kBinInt = 'J', kBinInt1 = 'K', kBinInt2 = 'M', kNone = 'N',
               kBinPersId = 'Q', kReduce = 'R', kBinUnicode = 'X', kAppends = 'e', kGlobal = 'c',
               kBinFloat = 'G', kEmptyTuple = ')', kEmptyList = ']', kEmptyDict = '}', kTuple = 't',
               kSetItems = 'u';
constexpr unsigned char kProto = 0x80, kTuple1 = 0x85, kTuple2 = 0x86, kTuple3 = 0x87,
                        kNewTrue = 0x88, kNewFalse = 0x89, kLong1 = 0x8a;
}  // namespace op

class Pickler {
 public:
  explicit Pickler(std::vector<const Tensor*>* storages) : storages_(storages) {}

  std::string finish(const Value& v) {
    out_ += static_cast<char>(op::kProto);
    out_ += '\x02';
    value(v);
    out_ += op::kStop;
    return std::move(out_);
  }

 private:
  void byte(unsigned char b) { out_ += static_cast<char>(b); }
  template <typename T>
  void little(T v) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    out_.append(bytes, sizeof(T));
  }

  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      out_ += op::kBinInt1;
      byte(static_cast<unsigned char>(v));
    } else if (v >= 0 && v < 65536) {
      out_ += op::kBinInt2;
      little(static_cast<uint16_t>(v));
    } else if (v >= std::numeric_limits<int32_t>::min() &&
               v <= std::numeric_limits<int32_t>::max()) {
      out_ += op::kBinInt;
      little(static_cast<int32_t>(v));
    } else {
      // LONG1 with 8 bytes: two's complement, little-endian.
      byte(op::kLong1);
      byte(8);
      little(v);
    }
  }

  void text(std::string_view s) {
    out_ += op::kBinUnicode;
    little(static_cast<uint32_t>(s.size()));
    out_ += s;
  }

  void global(const char* module, const char* name) {
    out_ += op::kGlobal;
    out_ += module;
    out_ += '\n';
    out_ += name;
    out_ += '\n';
  }

  void tuple_of_ints(const std::vector<int64_t>& items) {
    if (items.empty()) {
      out_ += op::kEmptyTuple;
      return;
    }
    if (items.size() > 3) out_ += op::kMark;
    for (int64_t i : items) integer(i);
    static constexpr unsigned char kSmall[] = {0, op::kTuple1, op::kTuple2, op::kTuple3};
    if (items.size() <= 3) {
      byte(kSmall[items.size()]);
    } else {
      out_ += op::kTuple;
    }
  }

  void plain(const nlohmann::ordered_json& j) {
    switch (j.type()) {
      case nlohmann::json::value_t::null:
        out_ += op::kNone;
        return;
      case nlohmann::json::value_t::boolean:
        byte(j.get<bool>() ? op::kNewTrue : op::kNewFalse);
        return;
      case nlohmann::json::value_t::number_integer:
        integer(j.get<int64_t>());
        return;
      case nlohmann::json::value_t::number_unsigned: {
        const uint64_t u = j.get<uint64_t>();
        EPS_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                  "torch_save: integer {} does not fit int64", u);
        integer(static_cast<int64_t>(u));
        return;
      }
      case nlohmann::json::value_t::number_float: {
        out_ += op::kBinFloat;
        const uint64_t bits = std::bit_cast<uint64_t>(j.get<double>());
        for (int shift = 56; shift >= 0; shift -= 8)
          byte(static_cast<unsigned char>(bits >> shift));
        return;  // big-endian
      }
      case nlohmann::json::value_t::string:
        text(j.get_ref<const std::string&>());
        return;
      case nlohmann::json::value_t::array:
        out_ += op::kEmptyList;
        if (j.empty()) return;
        out_ += op::kMark;
        for (const auto& item : j) plain(item);
        out_ += op::kAppends;
        return;
      case nlohmann::json::value_t::object:
        out_ += op::kEmptyDict;
        if (j.empty()) return;
        out_ += op::kMark;
        for (const auto& [key, item] : j.items()) {
          text(key);
          plain(item);
        }
        out_ += op::kSetItems;
        return;
      default:
        EPS_THROW("torch_save: cannot pickle a JSON {}", j.type_name());
    }
  }

  void tensor(const Tensor& t) {
    const char* storage_type = t.dtype == Dtype::kInt32   ? "IntStorage"
                               : t.dtype == Dtype::kInt64 ? "LongStorage"
                                                          : "FloatStorage";
    const std::string key = std::to_string(storages_->size());
    storages_->push_back(&t);
    std::vector<int64_t> strides(t.shape.size(), 1);
    for (size_t i = t.shape.size(); i-- > 1;) strides[i - 1] = strides[i] * t.shape[i];

    global("torch._utils", "_rebuild_tensor_v2");
    out_ += op::kMark;
    out_ += op::kMark;  // the persistent id: ('storage', type, key, location, numel)
    text("storage");
    global("torch", storage_type);
    text(key);
    text("cpu");
    integer(product(t.shape));
    out_ += op::kTuple;
    out_ += op::kBinPersId;
    integer(0);  // storage offset
    tuple_of_ints(t.shape);
    tuple_of_ints(strides);
    byte(op::kNewFalse);                   // requires_grad
    global("collections", "OrderedDict");  // backward hooks
    out_ += op::kEmptyTuple;
    out_ += op::kReduce;
    out_ += op::kTuple;
    out_ += op::kReduce;
  }

  void value(const Value& v) {
    switch (v.kind) {
      case Value::Kind::kPlain:
        plain(v.plain);
        return;
      case Value::Kind::kTensor:
        tensor(v.tensor);
        return;
      case Value::Kind::kList:
        out_ += op::kEmptyList;
        if (v.list.empty()) return;
        out_ += op::kMark;
        for (const Value& item : v.list) value(item);
        out_ += op::kAppends;
        return;
      case Value::Kind::kDict:
        out_ += op::kEmptyDict;
        if (v.dict.empty()) return;
        out_ += op::kMark;
        for (const auto& [key, item] : v.dict) {
          text(key);
          value(item);
        }
        out_ += op::kSetItems;
        return;
    }
  }

  std::vector<const Tensor*>* storages_;
  std::string out_;
};

// A zip archive of stored records, each record's data aligned to kAlignment.
class ZipWriter {
 public:
  void add(const std::string& name, std::string_view data) {
    const size_t header = out_.size();
    const size_t before_extra = header + 30 + name.size();
    size_t pad = (kAlignment - before_extra % kAlignment) % kAlignment;
    if (pad != 0 && pad < 4) pad += kAlignment;  // an extra field is at least its 4-byte header
    const uint32_t crc = crc32(data);
    EPS_CHECK(data.size() < 0xffffffffu && header < 0xffffffffu,
              "torch_save: records past 4 GiB need zip64, which this writer does not write");
    little32(0x04034b50);
    local_fields(name, crc, data.size());
    little16(static_cast<uint16_t>(pad));
    out_ += name;
    if (pad != 0) {
      out_ += "FB";  // the extra field torch pads with
      little16(static_cast<uint16_t>(pad - 4));
      out_.append(pad - 4, 'Z');
    }
    out_ += data;
    entries_.push_back(
        {name, crc, static_cast<uint32_t>(data.size()), static_cast<uint32_t>(header)});
  }

  std::string finish() {
    const size_t directory = out_.size();
    for (const Entry& e : entries_) {
      little32(0x02014b50);
      little16(20);  // version made by
      local_fields(e.name, e.crc, e.size);
      little16(0);  // extra field length
      little16(0);  // comment length
      little16(0);  // disk number
      little16(0);  // internal attributes
      little32(0);  // external attributes
      little32(e.offset);
      out_ += e.name;
    }
    const size_t directory_size = out_.size() - directory;
    EPS_CHECK(entries_.size() < 0xffff && out_.size() < 0xffffffffu,
              "torch_save: the archive is too large for a zip without zip64");
    little32(0x06054b50);
    little16(0);
    little16(0);
    little16(static_cast<uint16_t>(entries_.size()));
    little16(static_cast<uint16_t>(entries_.size()));
    little32(static_cast<uint32_t>(directory_size));
    little32(static_cast<uint32_t>(directory));
    little16(0);  // comment length
    return std::move(out_);
  }

 private:
  struct Entry {
    std::string name;
    uint32_t crc, size, offset;
  };

  void little16(uint16_t v) { out_.append(reinterpret_cast<const char*>(&v), 2); }
  void little32(uint32_t v) { out_.append(reinterpret_cast<const char*>(&v), 4); }

  // From "version needed" to "file name length": the same in the local and central headers.
  void local_fields(const std::string& name, uint32_t crc, size_t size) {
    little16(20);      // version needed to extract
    little16(0);       // flags
    little16(0);       // method: stored
    little16(0);       // time 00:00:00
    little16(0x0021);  // date 1980-01-01
    little32(crc);
    little32(static_cast<uint32_t>(size));  // compressed
    little32(static_cast<uint32_t>(size));  // uncompressed
    little16(static_cast<uint16_t>(name.size()));
  }

  std::string out_;
  std::vector<Entry> entries_;
};

}  // namespace

Tensor Tensor::int32(std::vector<int64_t> shape, std::span<const int64_t> values) {
  return make<int32_t>(Dtype::kInt32, std::move(shape), values);
}

Tensor Tensor::int32(std::vector<int64_t> shape, std::span<const int32_t> values) {
  return make<int32_t>(Dtype::kInt32, std::move(shape), values);
}

Tensor Tensor::int64(std::vector<int64_t> shape, std::span<const int64_t> values) {
  return make<int64_t>(Dtype::kInt64, std::move(shape), values);
}

Tensor Tensor::int32_from_json(const nlohmann::json& nested, int ndim) {
  std::vector<int64_t> shape;
  const nlohmann::json* level = &nested;
  for (int d = 0; d < ndim; ++d) {
    EPS_CHECK(level->is_array(), "torch_save: expected {} nested arrays", ndim);
    shape.push_back(static_cast<int64_t>(level->size()));
    if (level->empty()) {
      shape.resize(ndim, 0);
      break;
    }
    level = &level->front();
  }
  std::vector<int64_t> values;
  values.reserve(static_cast<size_t>(product(shape)));
  // Walk the tree depth-first, checking every level has its dimension's length.
  auto walk = [&](auto& self, const nlohmann::json& node, int depth) -> void {
    if (depth == ndim) {
      values.push_back(node.get<int64_t>());
      return;
    }
    EPS_CHECK(node.is_array() && static_cast<int64_t>(node.size()) == shape[depth],
              "torch_save: a ragged array (level {} should have {} items)", depth, shape[depth]);
    for (const auto& item : node) self(self, item, depth + 1);
  };
  walk(walk, nested, 0);
  return int32(std::move(shape), std::span<const int64_t>(values));
}

Value Value::of(nlohmann::ordered_json plain) {
  Value v;
  v.plain = std::move(plain);
  return v;
}

Value Value::of(Tensor tensor) {
  Value v;
  v.kind = Kind::kTensor;
  v.tensor = std::move(tensor);
  return v;
}

Value& Value::set(std::string key, Value value) {
  EPS_CHECK(kind == Kind::kDict, "torch_save: set() on a value that is not a dict");
  dict.emplace_back(std::move(key), std::move(value));
  return *this;
}

std::string pickle(const Value& value, std::vector<const Tensor*>* storages) {
  return Pickler(storages).finish(value);
}

std::string save_to_string(const Value& value, const std::string& archive_name) {
  std::vector<const Tensor*> storages;
  const std::string data_pkl = pickle(value, &storages);
  ZipWriter zip;
  zip.add(archive_name + "/data.pkl", data_pkl);
  zip.add(archive_name + "/byteorder", "little");
  for (size_t i = 0; i < storages.size(); ++i) {
    const std::vector<uint8_t>& bytes = storages[i]->data;
    zip.add(archive_name + "/data/" + std::to_string(i),
            std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  zip.add(archive_name + "/version", "3\n");
  return zip.finish();
}

uint32_t crc32(std::string_view bytes) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (unsigned char b : bytes) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

}  // namespace epserve::torch_save
