// The recorder dump: the .pt file (torch.save's zip of a protocol-2 pickle, written without
// torch), the JSON with the same keys, the folder and its precedence. With python3, the .pt is read
// back as torch.load(weights_only=True) reads it and compared with the JSON
// (torch_archive_check.py); tools/reference/check_recorder_pt.py does it with torch itself.
#include "eplb/recorder_dump.h"
#include "support/read_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "runtime/expert_runtime.h"
#include "support/temp_dir.h"

namespace epserve::eplb {
namespace {

using testing::read_file;

using ::testing::ElementsAre;
using namespace std::string_literals;

uint16_t u16(const std::string& b, size_t at) {
  uint16_t v;
  std::memcpy(&v, b.data() + at, 2);
  return v;
}

uint32_t u32(const std::string& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}

struct ZipRecord {
  std::string name;
  size_t data_offset;
  std::string data;
};

// Reads the archive through its central directory, checking each local header against it.
std::vector<ZipRecord> read_zip(const std::string& b) {
  const size_t end = b.size() - 22;
  EXPECT_EQ(u32(b, end), 0x06054b50u) << "end of central directory";
  const uint16_t count = u16(b, end + 10);
  size_t at = u32(b, end + 16);
  std::vector<ZipRecord> records;
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(u32(b, at), 0x02014b50u);
    EXPECT_EQ(u16(b, at + 10), 0) << "stored, not compressed";
    const uint32_t crc = u32(b, at + 16), size = u32(b, at + 20);
    EXPECT_EQ(u32(b, at + 24), size) << "stored: compressed size = size";
    const uint16_t name_len = u16(b, at + 28), extra_len = u16(b, at + 30),
                   comment_len = u16(b, at + 32);
    const uint32_t local = u32(b, at + 42);
    std::string name = b.substr(at + 46, name_len);
    EXPECT_EQ(u32(b, local), 0x04034b50u) << name;
    EXPECT_EQ(b.substr(local + 30, name_len), name);
    EXPECT_EQ(u32(b, local + 14), crc) << name;
    const size_t data_offset = local + 30 + name_len + u16(b, local + 28);
    std::string data = b.substr(data_offset, size);
    EXPECT_EQ(torch_save::crc32(data), crc) << name;
    records.push_back({name, data_offset, std::move(data)});
    at += 46 + name_len + extra_len + comment_len;
  }
  return records;
}

// 2 layers, 3 logical experts in 4 slots; stat with a buffer of 2 passes.
RecorderDump stat_dump() {
  RecorderDump d;
  d.mode = RecorderMode::kStat;
  d.shape = RecorderShape{2, 3, 4, 2};
  d.num_recorded_passes = 1;
  d.rows = 2;
  d.logical_count = {5, 0, 3, 1, 1, 70000, 0, 0, 0, 0, 0, 0};
  d.average_utilization_rate_over_window = 0.75;
  d.last_physical_to_logical_map = {0, 1, 2, 0, 2, 1, 0, 1};
  return d;
}

RecorderDump per_token_dump() {
  RecorderDump d;
  d.mode = RecorderMode::kPerToken;
  d.shape = RecorderShape{2, 3, 4, 2};
  d.num_recorded_passes = 2;
  d.rows = 2;
  d.logical_count = {1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0};
  d.records = nlohmann::json::parse(R"([
    {"forward_pass_id": 7, "rank": 0, "global_physical_count": [[1, 1, 0, 0], [0, 1, 1, 0]],
     "input_ids": [151643], "positions": [0], "topk_ids_of_layer": [[[0, 1]], [[1, 2]]]},
    {"forward_pass_id": 8, "rank": 1, "global_physical_count": [[0, 0, 0, 0], [0, 0, 0, 0]],
     "input_ids": [], "positions": [], "topk_ids_of_layer": [[], []]}])");
  d.last_physical_to_logical_map = {0, 1, 2, 0, 2, 1, 0, 1};
  return d;
}

TEST(TorchSave, Crc32IsTheZipOne) {
  EXPECT_EQ(torch_save::crc32("123456789"), 0xcbf43926u);
  EXPECT_EQ(torch_save::crc32(""), 0u);
}

TEST(TorchSave, PickleIsProtocolTwo) {
  using torch_save::Value;
  std::vector<const torch_save::Tensor*> storages;
  // {"x": 1}: PROTO 2, EMPTY_DICT, MARK, BINUNICODE "x", BININT1 1, SETITEMS, STOP.
  Value dict = Value::empty_dict();
  dict.set("x", Value::of(1));
  EXPECT_EQ(torch_save::pickle(dict, &storages), "\x80\x02}(X\x01\x00\x00\x00xK\x01u."s);
  // Numbers as Python pickles them: BININT2, BININT (negative), LONG1, BINFLOAT (big-endian).
  EXPECT_EQ(
      torch_save::pickle(
          Value::of(nlohmann::ordered_json::array({300, -2, int64_t{1} << 40, 0.5, nullptr, true})),
          &storages),
      "\x80\x02](M\x2c\x01J\xfe\xff\xff\xff\x8a\x08\x00\x00\x00\x00\x00\x01\x00\x00"
      "G\x3f\xe0\x00\x00\x00\x00\x00\x00N\x88"
      "e."s);
  EXPECT_TRUE(storages.empty());
  // A tensor: torch._utils._rebuild_tensor_v2 over a persistent storage id, key "0".
  std::vector<int64_t> values = {1, 2, 3, 4, 5, 6};
  const std::string t = torch_save::pickle(
      Value::of(torch_save::Tensor::int32({2, 3}, std::span<const int64_t>(values))), &storages);
  EXPECT_NE(t.find("ctorch._utils\n_rebuild_tensor_v2\n"), std::string::npos);
  EXPECT_NE(t.find("X\x07\x00\x00\x00storagectorch\nIntStorage\nX\x01\x00\x00\x00"
                   "0X\x03\x00\x00\x00"
                   "cpu"s),
            std::string::npos);
  EXPECT_NE(t.find("K\x06tQK\x00K\x02K\x03\x86K\x03K\x01\x86\x89"s), std::string::npos)
      << "numel 6, BINPERSID, offset 0, shape (2, 3), strides (3, 1), requires_grad False";
  ASSERT_EQ(storages.size(), 1u);
  EXPECT_EQ(storages[0]->data.size(), 6u * 4);
  EXPECT_THROW(torch_save::Tensor::int32({2}, std::span<const int64_t>(values)), Error);
  const std::vector<int64_t> big = {int64_t{1} << 33};
  EXPECT_THROW(torch_save::Tensor::int32({1}, std::span<const int64_t>(big)), Error);
}

TEST(TorchSave, ZipRecordsAreStoredAlignedAndChecksummed) {
  const std::string bytes = torch_save::save_to_string(recorder_dump_torch(per_token_dump()));
  ASSERT_EQ(bytes.substr(0, 4), std::string("PK\x03\x04", 4)) << "torch.load checks the magic";
  std::vector<ZipRecord> records = read_zip(bytes);
  std::vector<std::string> names;
  for (const ZipRecord& r : records) {
    names.push_back(r.name);
    EXPECT_EQ(r.data_offset % 64, 0u) << r.name << " is not 64-byte aligned";
  }
  // logical_count, 2 x global_physical_count, 2 x topk_ids_of_layer, the map.
  EXPECT_THAT(names, ElementsAre("archive/data.pkl", "archive/byteorder", "archive/data/0",
                                 "archive/data/1", "archive/data/2", "archive/data/3",
                                 "archive/data/4", "archive/data/5", "archive/version"));
  EXPECT_EQ(records[1].data, "little");
  EXPECT_EQ(records.back().data, "3\n");
  EXPECT_EQ(records[2].data.size(), 12u * 4) << "logical_count: int32 [2, 2, 3]";
  EXPECT_EQ(records[7].data.size(), 8u * 8) << "last_physical_to_logical_map: int64 [2, 4]";
  EXPECT_EQ(records[6].data.size(), 0u) << "rank 1 recorded no token: [2, 0, 0]";
}

TEST(RecorderDump, PtAndJsonHoldTheSameRecord) {
  testing::TempDir dir;
  for (const RecorderDump& dump : {stat_dump(), per_token_dump()}) {
    const std::string stem = std::string(recorder_mode_name(dump.mode));
    std::vector<std::string> paths = write_recorder_dump(dump, dir.path(), "both", stem);
    ASSERT_EQ(paths.size(), 2u);
    EXPECT_EQ(paths[0], dir.file("expert_distribution_recorder_" + stem + ".json"));
    EXPECT_EQ(paths[1], dir.file("expert_distribution_recorder_" + stem + ".pt"));
    nlohmann::json json = nlohmann::json::parse(read_file(paths[0]));
    EXPECT_EQ(json["logical_count"].size(), 2u);
    EXPECT_EQ(json.contains("records"), dump.mode == RecorderMode::kPerToken);
    if (std::system("python3 -c '' 2>/dev/null") != 0) {
      GTEST_SKIP() << "no python3 to read the .pt back";
    }
    const std::string check = std::string(EPSERVE_SOURCE_DIR) +
                              "/tests/unit/eplb/torch_archive_check.py " + paths[1] + " " +
                              paths[0];
    EXPECT_EQ(std::system(("python3 " + check).c_str()), 0) << check;
  }
}

TEST(RecorderDump, FormatChoosesTheFilesAndTheFolderIsCreated) {
  testing::TempDir dir;
  const std::string nested = dir.file("a/b");
  EXPECT_THAT(write_recorder_dump(stat_dump(), nested, "pt", "1"),
              ElementsAre(nested + "/expert_distribution_recorder_1.pt"));
  EXPECT_THAT(write_recorder_dump(stat_dump(), nested, "json", "2"),
              ElementsAre(nested + "/expert_distribution_recorder_2.json"));
  EXPECT_THROW(write_recorder_dump(stat_dump(), nested, "npz", "3"), Error);
  // A folder that cannot be made names the file.
  dir.write("file", "x");
  try {
    write_recorder_dump(stat_dump(), dir.file("file/sub"), "json", "4");
    FAIL() << "wrote under a file";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("file/sub/expert_distribution_recorder_4.json"));
  }
}

TEST(RecorderDump, FolderFlagThenEpserveThenSglangVariable) {
  const char* kEpserve = "EPSERVE_EXPERT_DISTRIBUTION_RECORDER_DIR";
  const char* kSglang = "SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR";
  unsetenv(kEpserve);
  unsetenv(kSglang);
  EXPECT_EQ(expert_distribution_dump_dir(""), "/tmp");
  setenv(kSglang, "/s", 1);
  EXPECT_EQ(expert_distribution_dump_dir(""), "/s");
  setenv(kEpserve, "/e", 1);
  EXPECT_EQ(expert_distribution_dump_dir(""), "/e");
  EXPECT_EQ(expert_distribution_dump_dir("/flag"), "/flag");
  unsetenv(kEpserve);
  unsetenv(kSglang);
}

}  // namespace
}  // namespace epserve::eplb
