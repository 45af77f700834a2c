#include "media/image_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <filesystem>

#include "core/error.h"

namespace epserve::media {

namespace {

constexpr size_t kMaxShown = 40;

std::string shown(std::string_view s) {
  return s.size() <= kMaxShown ? std::string(s) : std::string(s.substr(0, kMaxShown)) + "...";
}

bool has_image_extension(std::string_view s) {
  std::string lower(s);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  for (const char* ext : {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}) {
    if (lower.ends_with(ext)) return true;
  }
  return false;
}

// Larger image files are refused before they are read.
constexpr int64_t kMaxImageFileBytes = int64_t{256} << 20;

bool is_under(const std::filesystem::path& file, const std::filesystem::path& root) {
  auto [root_end, file_it] = std::mismatch(root.begin(), root.end(), file.begin(), file.end());
  return root_end == root.end();
}

std::string read_local_file(std::string_view source, const ImageSourcePolicy& policy) {
  namespace fs = std::filesystem;
  std::string path(source.starts_with("file://") ? source.substr(7) : source);
  EPS_CHECK(!policy.allowed_local_media_path.empty(),
            "local image files are not allowed (got '{}'); send the image as a data: URL with "
            "base64, or start the server with --allowed-local-media-path DIR",
            shown(path));
  std::error_code ec;
  fs::path root = fs::weakly_canonical(fs::path(policy.allowed_local_media_path), ec);
  fs::path named = fs::weakly_canonical(fs::path(path), ec);
  EPS_CHECK(!ec && fs::path(path).is_absolute() && is_under(named, root),
            "the image path '{}' is not an absolute path under --allowed-local-media-path {}",
            shown(path), policy.allowed_local_media_path);
  // Open first, then check what was opened: a symlink swapped in after the check above cannot
  // lead outside the directory, and a FIFO or device does not block or stream forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  EPS_CHECK(fd >= 0, "the image file '{}' does not exist or cannot be read", shown(path));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  fs::path opened = fs::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
  EPS_CHECK(!ec && is_under(opened, root),
            "the image path '{}' is not an absolute path under --allowed-local-media-path {}",
            shown(path), policy.allowed_local_media_path);
  struct stat st {};
  EPS_CHECK(::fstat(fd, &st) == 0 && S_ISREG(st.st_mode), "the image file '{}' is not a file",
            shown(path));
  EPS_CHECK(st.st_size <= kMaxImageFileBytes,
            "the image file '{}' is {} bytes, over the {} allowed", shown(path),
            static_cast<int64_t>(st.st_size), kMaxImageFileBytes);
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    EPS_CHECK(n > 0, "cannot read the image file '{}'", shown(path));
    got += static_cast<size_t>(n);
  }
  return bytes;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  static const std::array<int8_t, 256> table = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i)
      t[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
    return t;
  }();
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0, digits = 0, padding = 0;
  for (char ch : text) {
    if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') continue;
    if (ch == '=') {
      ++padding;
      continue;
    }
    int v = table[static_cast<unsigned char>(ch)];
    if (v < 0 || padding > 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    ++digits;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (digits % 4 == 1 || padding > 2 || (padding > 0 && (digits + padding) % 4 != 0)) {
    return std::nullopt;
  }
  return out;
}

std::string read_image_source(std::string_view source, const ImageSourcePolicy& policy) {
  EPS_CHECK(!source.empty(), "the image URL is empty");
  if (source.starts_with("http://") || source.starts_with("https://")) {
    EPS_THROW(
        "image URLs over http(s) are not supported: this server does not reach the network "
        "(got '{}'); send the image as a data: URL with base64",
        shown(source));
  }
  if (source.starts_with("data:")) {
    size_t comma = source.find(',');
    EPS_CHECK(comma != std::string_view::npos, "the data: URL has no ',' before its data");
    std::string_view header = source.substr(5, comma - 5);
    EPS_CHECK(header.ends_with(";base64"),
              "the data: URL must be base64 (data:image/png;base64,...), got 'data:{}'",
              shown(header));
    auto bytes = base64_decode(source.substr(comma + 1));
    EPS_CHECK(bytes, "the data: URL's base64 is not valid");
    return std::move(*bytes);
  }
  if (source.starts_with("file://") || has_image_extension(source)) {
    return read_local_file(source, policy);
  }
  auto bytes = base64_decode(source);
  EPS_CHECK(bytes && !bytes->empty(),
            "the image is neither a data: URL, base64 data, nor a local file path with an "
            "image extension (got '{}')",
            shown(source));
  return std::move(*bytes);
}

}  // namespace epserve::media
