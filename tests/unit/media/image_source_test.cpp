// Local image files: only regular files that really lie under --allowed-local-media-path are
// read; a symlink inside the directory that points out of it, a FIFO and a directory are refused.
#include "media/image_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "core/error.h"

namespace epserve::media {
namespace {

namespace fs = std::filesystem;

std::string refusal(const std::string& source, const ImageSourcePolicy& policy) {
  try {
    read_image_source(source, policy);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ImageSource, LocalFilesStayUnderTheAllowedDirectory) {
  const fs::path base = fs::temp_directory_path() / ("epserve_media_" + std::to_string(getpid()));
  fs::remove_all(base);
  fs::create_directories(base / "allowed");
  fs::create_directories(base / "outside");
  std::ofstream(base / "allowed" / "ok.png") << "inside";
  std::ofstream(base / "outside" / "secret.png") << "outside";
  fs::create_symlink(base / "outside" / "secret.png", base / "allowed" / "link.png");
  fs::create_directory_symlink(base / "outside", base / "allowed" / "dir");
  ASSERT_EQ(mkfifo((base / "allowed" / "fifo.png").c_str(), 0600), 0);
  fs::create_directories(base / "allowed" / "sub.png");
  const ImageSourcePolicy policy{(base / "allowed").string()};

  EXPECT_EQ(read_image_source((base / "allowed" / "ok.png").string(), policy), "inside");
  EXPECT_EQ(read_image_source("file://" + (base / "allowed" / "ok.png").string(), policy),
            "inside");
  const std::string outside = "not an absolute path under --allowed-local-media-path";
  for (const fs::path& p : {base / "allowed" / "link.png", base / "allowed" / "dir" / "secret.png",
                            base / "allowed" / ".." / "outside" / "secret.png"}) {
    EXPECT_NE(refusal(p.string(), policy).find(outside), std::string::npos) << p;
  }
  EXPECT_NE(refusal((base / "allowed" / "fifo.png").string(), policy).find("is not a file"),
            std::string::npos);
  EXPECT_NE(refusal((base / "allowed" / "sub.png").string(), policy).find("is not a file"),
            std::string::npos);
  EXPECT_NE(refusal((base / "allowed" / "ok.png").string(), ImageSourcePolicy{})
                .find("local image files are not allowed"),
            std::string::npos);
  fs::remove_all(base);
}

}  // namespace
}  // namespace epserve::media
