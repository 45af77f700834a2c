// A file mapped read-only into memory. The mapping lives as long as any shared_ptr to it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace epserve {

class MappedFile {
 public:
  // Throws epserve::Error naming the path when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile(std::string path, const unsigned char* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const unsigned char* data_;
  size_t size_;
};

std::string read_text_file(const std::string& path);

}  // namespace epserve
