#include "comm/store_secret.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace epserve {
namespace {

constexpr size_t kMinUserSecret = 16;

std::string read_secret_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  EPS_CHECK(fd >= 0, "cannot read the store secret {}: {} ({})", path, std::strerror(errno),
            kStoreSecretHint);
  struct stat st {};
  fstat(fd, &st);
  std::string text(4096, '\0');
  ssize_t got = S_ISREG(st.st_mode) ? read(fd, text.data(), text.size()) : -1;
  close(fd);
  EPS_CHECK(S_ISREG(st.st_mode) && st.st_uid == geteuid(),
            "the store secret {} must be a regular file owned by this user", path);
  EPS_CHECK((st.st_mode & 077) == 0,
            "the store secret {} is readable by other users: chmod 600 {} (or remove it)", path,
            path);
  EPS_CHECK(got > 0, "the store secret {} is empty or unreadable ({})", path, kStoreSecretHint);
  text.resize(static_cast<size_t>(got));
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  EPS_CHECK(text.size() >= kMinUserSecret, "the store secret {} holds fewer than {} characters",
            path, kMinUserSecret);
  return text;
}

}  // namespace

std::string random_store_secret() {
  unsigned char bytes[32];
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    ssize_t got = getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (got < 0 && errno == EINTR) continue;
    EPS_CHECK(got > 0, "getrandom failed: {}", std::strerror(errno));
    filled += static_cast<size_t>(got);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string default_store_secret_path() {
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    const passwd* pw = getpwuid(geteuid());
    home = pw != nullptr ? pw->pw_dir : nullptr;
  }
  EPS_CHECK(home != nullptr && *home != '\0',
            "no home directory for the store secret file; set EPSERVE_STORE_SECRET to the same "
            "value on every node");
  return std::string(home) + "/.epserve/store_secret";
}

std::string shared_store_secret(const std::string& path) {
  if (access(path.c_str(), F_OK) != 0) {
    std::string dir = std::filesystem::path(path).parent_path().string();
    if (mkdir(dir.c_str(), 0700) != 0) {
      EPS_CHECK(errno == EEXIST, "cannot create {} for the store secret: {} ({})", dir,
                std::strerror(errno), kStoreSecretHint);
    }
    // Written aside, then linked into place: of nodes that start together one file wins.
    std::string tmp = fmt::format("{}.{}.tmp", path, getpid());
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    EPS_CHECK(fd >= 0, "cannot create the store secret {}: {} ({})", tmp, std::strerror(errno),
              kStoreSecretHint);
    std::string secret = random_store_secret() + "\n";
    bool written = write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size());
    close(fd);
    int linked = written ? link(tmp.c_str(), path.c_str()) : -1;
    int link_errno = errno;
    unlink(tmp.c_str());
    EPS_CHECK(written && (linked == 0 || link_errno == EEXIST),
              "cannot create the store secret {}: {} ({})", path, std::strerror(link_errno),
              kStoreSecretHint);
  }
  return read_secret_file(path);
}

std::string job_store_secret(int nnodes) {
  if (const char* env = std::getenv(kEnvStoreSecret); env != nullptr && *env != '\0') {
    std::string secret = env;
    EPS_CHECK(secret.size() >= kMinUserSecret && secret.size() <= 1024,
              "{} must have 16 to 1024 characters, found {}", kEnvStoreSecret, secret.size());
    return secret;
  }
  if (nnodes <= 1) return random_store_secret();
  return shared_store_secret(default_store_secret_path());
}

}  // namespace epserve
