#include <gtest/gtest.h>

#include "core/error.h"
#include "io/model_config.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

TEST(ModelDir, AFileIsReportedAsAFileNotAsMissing) {
  testing::TempDir dir;
  dir.write("config.json", "{}");
  try {
    check_model_dir(dir.file("config.json"));
    FAIL() << "a file was taken for a model directory";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("is a file"), std::string::npos) << what;
    EXPECT_NE(what.find("such as " + dir.path()), std::string::npos) << what;
    EXPECT_EQ(what.find("does not exist"), std::string::npos) << what;
  }
  EXPECT_THROW(load_model_config(dir.file("config.json")), Error);
  EXPECT_NO_THROW(check_model_dir(dir.path()));
  try {
    check_model_dir(dir.file("missing"));
    FAIL() << "a missing directory was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace epserve
