// safetensors reading: an 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the raw bytes. Files are mmapped read-only and
// tensors are views into the mapping. Every inconsistency is an Error naming the file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace epserve {

struct SafetensorsEntry {
  DType dtype;
  Shape shape;
  uint64_t begin;  // offsets relative to the start of the data region
  uint64_t end;
};

struct SafetensorsHeader {
  uint64_t data_offset = 0;  // where the data region starts in the file
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
};

// Parses and validates the header of a safetensors image of `size` bytes (the whole file, or at
// least the header and the data it describes). `name` is used in error messages.
SafetensorsHeader parse_safetensors_header(const unsigned char* data, size_t size,
                                           const std::string& name);

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const SafetensorsHeader& header() const { return header_; }
  bool has(const std::string& name) const { return header_.tensors.count(name) != 0; }
  // A view of the tensor; throws naming the file and tensor when it is absent.
  Tensor get(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  SafetensorsHeader header_;
};

}  // namespace epserve
