// The archive reader's file source under injected read faults.
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include <gtest/gtest.h>

#include "archive/reader.hpp"
#include "shims/faultfs.h"
#include "support/temp_dir.hpp"
#include "util/error.hpp"

namespace pgward::archive {
namespace {

namespace fs = std::filesystem;

class ArchiveSourceUnderFaults : public test::TempDirTest {
  protected:
    void SetUp() override {
        TempDirTest::SetUp();
        archive_ = dir_ / "a.dump";
        fs::copy_file(fs::path(PGWARD_FIXTURES_DIR) / "pg18_none.dump", archive_);
    }
    void TearDown() override {
        faultfs_disarm();
        TempDirTest::TearDown();
    }

    class Rows : public ArchiveVisitor {
      public:
        void on_table_data(const TocEntry&, const char*, size_t n) override { bytes += n; }
        uint64_t bytes = 0;
    };

    fs::path archive_;
};

TEST_F(ArchiveSourceUnderFaults, AnInterruptedReadIsRetried) {
    Rows clean;
    read_archive_file(archive_, clean);
    ASSERT_GT(clean.bytes, 0U);
    int reads = faultfs_arm(dir_.c_str(), "read", 2, EINTR, 0);
    Rows interrupted;
    read_archive_file(archive_, interrupted);
    EXPECT_EQ(interrupted.bytes, clean.bytes);
    EXPECT_GT(faultfs_seen(reads), 2);
}

TEST_F(ArchiveSourceUnderFaults, AFailedReadIsNamed) {
    faultfs_arm(dir_.c_str(), "read", 2, EIO, 0);
    Rows rows;
    try {
        read_archive_file(archive_, rows);
        FAIL() << "read without an error";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "cannot read " + archive_.string() + ": Input/output error");
    }
}

}  // namespace
}  // namespace pgward::archive
