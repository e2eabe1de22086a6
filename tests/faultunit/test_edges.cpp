// Issue 18's careless edges in file handling, under injected faults: a new
// directory fsynced into its parent, unlink results heard, a read error never
// taken for a verdict on the file.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "domain/verify.hpp"
#include "shims/faultfs.h"
#include "support/temp_dir.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

namespace pgward {
namespace {

class EdgesUnderFaults : public test::TempDirTest {
  protected:
    void TearDown() override {
        faultfs_disarm();
        TempDirTest::TearDown();
    }

    int arm(const char* call, long at, int err) {
        int rule = faultfs_arm(dir_.c_str(), call, at, err, 0);
        EXPECT_GE(rule, 0);
        return rule;
    }
};

TEST_F(EdgesUnderFaults, ANewDirectoryIsFsyncedIntoItsParent) {
    int fsyncs = arm("fsync", 0, 0);  // counts only
    ensure_directory(dir_ / "a" / "b");
    EXPECT_TRUE(fs::is_directory(dir_ / "a" / "b"));
    // dir_ (for "a") and dir_/a (for "b").
    EXPECT_EQ(faultfs_seen(fsyncs), 2);
    ensure_directory(dir_ / "a" / "b");  // there already: nothing to make durable
    EXPECT_EQ(faultfs_seen(fsyncs), 2);
}

TEST_F(EdgesUnderFaults, AFailedFsyncOfTheNewDirectorysParentIsAnError) {
    arm("fsync", 1, EIO);
    std::string message = test::error_message([&] { ensure_directory(dir_ / "backups"); });
    EXPECT_EQ(message, "cannot fsync directory " + dir_.string() + ": Input/output error");
}

TEST_F(EdgesUnderFaults, AFailedUnlinkAfterTheLinkFallbackIsAnError) {
    // A filesystem without renameat2(RENAME_NOREPLACE): link, then unlink.
    write_file_atomically(dir_ / "a.dump.tmp", "text", AtomicFile::Publish::Replace);
    arm("renameat2", 1, EINVAL);
    arm("unlink", 1, EIO);
    std::string message =
        test::error_message([&] { rename_no_replace(dir_ / "a.dump.tmp", dir_ / "a.dump"); });
    EXPECT_EQ(message, "cannot remove " + (dir_ / "a.dump.tmp").string() + ": Input/output error");
    // Not published under two names: the new one is taken back.
    EXPECT_FALSE(fs::exists(dir_ / "a.dump"));
    EXPECT_TRUE(fs::exists(dir_ / "a.dump.tmp"));
}

TEST_F(EdgesUnderFaults, AnUnremovableTempFileIsLogged) {
    char* text = nullptr;
    size_t size = 0;
    std::FILE* stream = ::open_memstream(&text, &size);
    ASSERT_NE(stream, nullptr);
    log::configure(log::Format::Logfmt, stream);
    {
        AtomicFile file(dir_ / "a.dump", AtomicFile::Publish::NoReplace);
        file.write("partial");
        arm("unlink", 1, EACCES);
    }  // destroyed without a commit
    log::configure(log::Format::Logfmt, stderr);
    std::fclose(stream);
    std::string logged(text, size);
    std::free(text);
    EXPECT_NE(logged.find("cannot remove an unfinished temp file"), std::string::npos) << logged;
    EXPECT_NE(logged.find((dir_ / "a.dump.tmp").string()), std::string::npos) << logged;
    EXPECT_NE(logged.find("Permission denied"), std::string::npos) << logged;
}

TEST_F(EdgesUnderFaults, AReadErrorIsNotTakenForANonArchive) {
    fs::path archive = dir_ / "a.dump";
    fs::copy_file(fs::path(PGWARD_FIXTURES_DIR) / "pg18_none.dump", archive);
    arm("read", 1, EIO);
    std::string message = test::error_message([&] { read_archive_version(archive); });
    EXPECT_EQ(message, "cannot read " + archive.string() + ": Input/output error");
}

}  // namespace
}  // namespace pgward
