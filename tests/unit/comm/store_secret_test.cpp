#include "comm/store_secret.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>

#include "core/error.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

TEST(StoreSecret, RandomSecretsDiffer) {
  std::string a = random_store_secret(), b = random_store_secret();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
}

TEST(StoreSecret, OneNodeGetsAFreshSecretAndTheEnvironmentWins) {
  const char* saved = std::getenv(kEnvStoreSecret);
  std::string saved_value = saved ? saved : "";
  unsetenv(kEnvStoreSecret);
  EXPECT_NE(job_store_secret(1), job_store_secret(1));
  setenv(kEnvStoreSecret, "a-secret-all-nodes-share", 1);
  EXPECT_EQ(job_store_secret(1), "a-secret-all-nodes-share");
  EXPECT_EQ(job_store_secret(2), "a-secret-all-nodes-share");
  setenv(kEnvStoreSecret, "short", 1);
  EXPECT_THROW(job_store_secret(2), Error);
  if (saved) {
    setenv(kEnvStoreSecret, saved_value.c_str(), 1);
  } else {
    unsetenv(kEnvStoreSecret);
  }
}

TEST(StoreSecret, SharedFileIsCreatedOnceAndMustBePrivate) {
  testing::TempDir dir;
  std::string path = dir.file("epserve/store_secret");
  std::string first = shared_store_secret(path);
  EXPECT_EQ(first.size(), 64u);
  EXPECT_EQ(shared_store_secret(path), first);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  chmod(path.c_str(), 0644);
  try {
    shared_store_secret(path);
    FAIL() << "a secret readable by others was used";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("chmod 600"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace epserve
