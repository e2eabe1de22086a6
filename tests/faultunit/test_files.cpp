// The atomic file writer and its helpers (src/util/files.cpp) under injected
// faults: faultfs.c is linked into this executable, so pgward's own calls go
// through its wrappers and a test fails exactly the call it names.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

#include "shims/faultfs.h"
#include "support/temp_dir.hpp"
#include "util/error.hpp"
#include "util/files.hpp"

namespace pgward {
namespace {

class FilesUnderFaults : public test::TempDirTest {
  protected:
    void TearDown() override {
        faultfs_disarm();
        TempDirTest::TearDown();
    }

    // Fails the `at`th call named `call` under the test's directory.
    int arm(const char* call, long at, int err, bool persist = false) {
        int rule = faultfs_arm(dir_.c_str(), call, at, err, persist ? 1 : 0);
        EXPECT_GE(rule, 0);
        return rule;
    }

    std::string names() const {
        std::string out;
        for (const auto& entry : fs::directory_iterator(dir_)) {
            out += (out.empty() ? "" : " ") + entry.path().filename().string();
        }
        return out;
    }
};

TEST_F(FilesUnderFaults, AWriteInterruptedBySignalIsRetriedAndTheFileIsWhole) {
    int writes = arm("write", 1, EINTR);
    std::string big(3 << 20, 'x');  // past the buffer: written straight through
    write_file_atomically(dir_ / "a.dump", big, AtomicFile::Publish::NoReplace);
    EXPECT_GE(faultfs_seen(writes), 2);  // the interrupted write, then the retry
    EXPECT_EQ(read_file(dir_ / "a.dump"), big);
    EXPECT_EQ(names(), "a.dump");
}

TEST_F(FilesUnderFaults, AFailedWriteNamesTheTempFileAndLeavesNothing) {
    arm("write", 1, ENOSPC, true);
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "a.dump", "text", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message,
              "cannot write " + (dir_ / "a.dump.tmp").string() + ": No space left on device");
    EXPECT_EQ(names(), "");
}

TEST_F(FilesUnderFaults, AFailedFsyncIsNeverRetriedAndNothingIsPublished) {
    int fsyncs = arm("fsync", 1, EIO);
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "a.dump", "text", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message, "cannot fsync " + (dir_ / "a.dump.tmp").string() + ": Input/output error");
    EXPECT_EQ(faultfs_seen(fsyncs), 1);  // not a second time over lost pages
    EXPECT_EQ(names(), "");
}

TEST_F(FilesUnderFaults, AFailedCloseIsNotPublished) {
    arm("close", 1, EIO);
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "a.dump", "text", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message, "cannot close " + (dir_ / "a.dump.tmp").string() + ": Input/output error");
    EXPECT_EQ(names(), "");
}

TEST_F(FilesUnderFaults, AFailedReplacingRenameKeepsTheOldVersion) {
    write_file_atomically(dir_ / "state.json", "old", AtomicFile::Publish::Replace);
    arm("rename", 1, EACCES);
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "state.json", "new", AtomicFile::Publish::Replace); });
    EXPECT_EQ(message,
              "cannot rename into place " + (dir_ / "state.json").string() + ": Permission denied");
    EXPECT_EQ(read_file(dir_ / "state.json"), "old");
    EXPECT_EQ(names(), "state.json");
}

TEST_F(FilesUnderFaults, AFailedDirectoryFsyncUnpublishesANewFile) {
    arm("fsync", 2, EIO);  // the first is the file's, the second its directory's
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "a.dump", "text", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message, "cannot fsync directory " + dir_.string() + ": Input/output error");
    EXPECT_EQ(names(), "");
}

TEST_F(FilesUnderFaults, AFailedDirectoryFsyncLeavesAReplacedFileWithItsNewText) {
    write_file_atomically(dir_ / "state.json", "old", AtomicFile::Publish::Replace);
    arm("fsync", 2, EIO);
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "state.json", "new", AtomicFile::Publish::Replace); });
    EXPECT_EQ(message, "cannot fsync directory " + dir_.string() + ": Input/output error");
    EXPECT_EQ(read_file(dir_ / "state.json"), "new");
    EXPECT_EQ(names(), "state.json");
}

TEST_F(FilesUnderFaults, ANewFileThatCannotBeUnpublishedAfterAFailedDirectoryFsyncIsNamed) {
    arm("fsync", 2, EIO);
    int unlinks = arm("unlink", 1, EIO);  // taking the new name back fails too
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "a.dump", "text", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message, "cannot fsync directory " + dir_.string() +
                           ": Input/output error; and it stays published: cannot remove " +
                           (dir_ / "a.dump").string() + ": Input/output error");
    EXPECT_EQ(faultfs_seen(unlinks), 1);
    EXPECT_EQ(names(), "a.dump");
}

TEST_F(FilesUnderFaults, AFileNamedRelativeToTheWorkingDirectoryFsyncsIt) {
    int fsyncs = arm("fsync", 0, 0);  // counted, never failed
    {
        test::InDirectory cwd(dir_);
        write_file_atomically("relative.txt", "text", AtomicFile::Publish::Replace);
        ensure_directory("made-here");
    }
    EXPECT_EQ(faultfs_seen(fsyncs), 3);  // the file, ".", and "." again for the new directory
    EXPECT_EQ(read_file(dir_ / "relative.txt"), "text");
    EXPECT_TRUE(fs::is_directory(dir_ / "made-here"));
}

TEST_F(FilesUnderFaults, ADirectoryAnotherProcessMadeFirstIsNotAnError) {
    int mkdirs = arm("mkdir", 1, EEXIST);  // lost the race to another process
    EXPECT_NO_THROW(ensure_directory(dir_ / "new"));
    EXPECT_EQ(faultfs_seen(mkdirs), 1);
}

TEST_F(FilesUnderFaults, AnUncommittedTempFileThatCannotBeRemovedIsLeftForTheNextRun) {
    {
        AtomicFile file(dir_ / "a.dump", AtomicFile::Publish::NoReplace);
        file.write("partial");
        arm("unlink", 1, EIO);
    }  // the destructor warns and does not throw
    EXPECT_EQ(names(), "a.dump.tmp");
    write_file_atomically(dir_ / "a.dump", "whole", AtomicFile::Publish::NoReplace);
    EXPECT_EQ(names(), "a.dump");
    EXPECT_EQ(read_file(dir_ / "a.dump"), "whole");
}

// A failure path's cleanup: a file that cannot be removed is warned about
// and left (the next run's leftover cleanup takes it); a missing one is fine.
TEST_F(FilesUnderFaults, ACleanupThatCannotRemoveAFileWarnsAndGoesOn) {
    write_file_atomically(dir_ / "a.json", "{}", AtomicFile::Publish::NoReplace);
    arm("unlink", 1, EIO);
    EXPECT_NO_THROW(remove_file_or_warn(dir_ / "a.json"));
    EXPECT_EQ(names(), "a.json");
    EXPECT_NO_THROW(remove_file_or_warn(dir_ / "a.json"));
    EXPECT_EQ(names(), "");
    EXPECT_NO_THROW(remove_file_or_warn(dir_ / "a.json"));
}

TEST_F(FilesUnderFaults, ADirectoryThatCannotBeOpenedForFsyncIsNamed) {
    arm("open", 1, EACCES);
    EXPECT_EQ(test::error_message([&] { fsync_directory(dir_); }),
              "cannot open directory " + dir_.string() + ": Permission denied");
}

TEST_F(FilesUnderFaults, ATempFileLeftByACrashIsReplacedNotFollowed) {
    fs::path target = dir_ / "elsewhere";
    write_file_atomically(target, "keep", AtomicFile::Publish::NoReplace);
    fs::create_symlink(target, dir_ / "a.dump.tmp");
    write_file_atomically(dir_ / "a.dump", "new", AtomicFile::Publish::NoReplace);
    EXPECT_EQ(read_file(dir_ / "a.dump"), "new");
    EXPECT_EQ(read_file(target), "keep");
    EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ / "a.dump.tmp")));
}

TEST_F(FilesUnderFaults, ATempFileThatCannotBeCreatedIsNamed) {
    arm("open", 1, EDQUOT, true);
    std::string message = test::error_message(
        [&] { AtomicFile file(dir_ / "a.dump", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message, "cannot create " + (dir_ / "a.dump.tmp").string() + ": Disk quota exceeded");
    EXPECT_EQ(names(), "");
}

TEST_F(FilesUnderFaults, AnUncommittedFileRemovesItsTempFile) {
    {
        AtomicFile file(dir_ / "a.dump", AtomicFile::Publish::NoReplace);
        file.write("partial");
        file.flush();
        EXPECT_EQ(read_file(file.temp_path()), "partial");
        EXPECT_EQ(file.bytes_written(), 7U);
    }
    EXPECT_EQ(names(), "");
}

TEST_F(FilesUnderFaults, NoReplaceNeverOverwritesAnExistingBackup) {
    write_file_atomically(dir_ / "a.dump", "first", AtomicFile::Publish::NoReplace);
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "a.dump", "second", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message,
              (dir_ / "a.dump").string() + " already exists; pgward never overwrites a backup");
    EXPECT_EQ(read_file(dir_ / "a.dump"), "first");
    EXPECT_EQ(names(), "a.dump");
}

TEST_F(FilesUnderFaults, ARenameNoReplaceErrorIsNamed) {
    arm("renameat2", 1, EIO);
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "a.dump", "text", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message,
              "cannot rename into place " + (dir_ / "a.dump").string() + ": Input/output error");
    EXPECT_EQ(names(), "");
}

TEST_F(FilesUnderFaults, WithoutRenameNoReplaceTheFileIsLinkedIntoPlace) {
    arm("renameat2", 1, EINVAL, true);  // a filesystem without RENAME_NOREPLACE
    int links = arm("link", 0, 0);      // counted, never failed
    write_file_atomically(dir_ / "a.dump", "text", AtomicFile::Publish::NoReplace);
    EXPECT_EQ(faultfs_seen(links), 1);
    EXPECT_EQ(read_file(dir_ / "a.dump"), "text");
    EXPECT_EQ(names(), "a.dump");
}

TEST_F(FilesUnderFaults, AFailedLinkIsNamedAndNothingIsPublished) {
    arm("renameat2", 1, ENOSYS, true);
    arm("link", 1, EEXIST);
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "a.dump", "text", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message, "cannot link into place " + (dir_ / "a.dump").string() + ": File exists");
    EXPECT_EQ(names(), "");
}

TEST_F(FilesUnderFaults, ALinkedFileThatCannotBeTakenBackSaysItHasTwoNames) {
    arm("renameat2", 1, ENOSYS, true);
    arm("unlink", 1, EIO, true);
    std::string message = test::error_message(
        [&] { write_file_atomically(dir_ / "a.dump", "text", AtomicFile::Publish::NoReplace); });
    EXPECT_EQ(message, "cannot remove " + (dir_ / "a.dump.tmp").string() +
                           ": Input/output error; and cannot remove " + (dir_ / "a.dump").string() +
                           ": Input/output error");
    faultfs_disarm();
    std::string both = names();
    EXPECT_TRUE(both == "a.dump a.dump.tmp" || both == "a.dump.tmp a.dump") << both;
}

TEST_F(FilesUnderFaults, EnsureDirectoryCreatesParentsAndRefusesAFile) {
    ensure_directory(dir_ / "a" / "b");
    EXPECT_TRUE(fs::is_directory(dir_ / "a" / "b"));
    EXPECT_EQ(fs::status(dir_ / "a").permissions() & fs::perms::all, fs::perms::owner_all);
    ensure_directory(dir_ / "a" / "b");  // already there: nothing to do
    write_file_atomically(dir_ / "f", "", AtomicFile::Publish::NoReplace);
    EXPECT_EQ(test::error_message([&] { ensure_directory(dir_ / "f"); }),
              "backup directory " + (dir_ / "f").string() + " is not a directory");
    EXPECT_EQ(test::error_message([&] { ensure_directory(dir_ / "f" / "sub"); }),
              "cannot access " + (dir_ / "f" / "sub").string() + ": Not a directory");
}

TEST_F(FilesUnderFaults, ADirectoryThatCannotBeCreatedIsNamed) {
    arm("mkdir", 1, EACCES);
    EXPECT_EQ(test::error_message([&] { ensure_directory(dir_ / "new"); }),
              "cannot create directory " + (dir_ / "new").string() + ": Permission denied");
    EXPECT_FALSE(fs::exists(dir_ / "new"));
}

TEST_F(FilesUnderFaults, RemoveFileIgnoresAMissingFileAndNamesOtherErrors) {
    remove_file(dir_ / "missing");
    write_file_atomically(dir_ / "f", "", AtomicFile::Publish::NoReplace);
    arm("unlink", 1, EIO);
    EXPECT_EQ(test::error_message([&] { remove_file(dir_ / "f"); }),
              "cannot remove " + (dir_ / "f").string() + ": Input/output error");
    EXPECT_EQ(names(), "f");
}

TEST_F(FilesUnderFaults, ReadsRetryAnInterruptionAndNameAnError) {
    write_file_atomically(dir_ / "f", "PGDMP and more", AtomicFile::Publish::NoReplace);
    int reads = arm("read", 1, EINTR);
    EXPECT_EQ(read_file(dir_ / "f"), "PGDMP and more");
    EXPECT_GE(faultfs_seen(reads), 2);
    faultfs_disarm();
    reads = arm("read", 1, EINTR);
    EXPECT_EQ(read_file_start(dir_ / "f", 5), "PGDMP");
    EXPECT_EQ(faultfs_seen(reads), 2);
    faultfs_disarm();
    arm("read", 1, EIO);
    EXPECT_EQ(test::error_message([&] { read_file(dir_ / "f"); }),
              "cannot read " + (dir_ / "f").string() + ": Input/output error");
    faultfs_disarm();
    arm("read", 1, EIO);
    EXPECT_EQ(
        test::error_message([&] { read_file_chunks(dir_ / "f", [](const char*, size_t) {}); }),
        "cannot read " + (dir_ / "f").string() + ": Input/output error");
    faultfs_disarm();
    arm("read", 1, EIO);
    EXPECT_EQ(test::error_message([&] { read_file_start(dir_ / "f", 5); }),
              "cannot read " + (dir_ / "f").string() + ": Input/output error");
    EXPECT_EQ(test::error_message([&] { read_file(dir_ / "missing"); }),
              "cannot read " + (dir_ / "missing").string() + ": No such file or directory");
    EXPECT_EQ(test::error_message([&] { read_file_start(dir_ / "missing", 5); }),
              "cannot read " + (dir_ / "missing").string() + ": No such file or directory");
}

TEST_F(FilesUnderFaults, ReadingIntoABufferReplacesItsTextAndReusesItsMemory) {
    // The WAL watcher reads segment after segment into one buffer: new
    // memory for each was most of its CPU time while WAL streamed.
    const std::string big(1 << 20, 'w');
    write_file_atomically(dir_ / "big", big, AtomicFile::Publish::NoReplace);
    write_file_atomically(dir_ / "small", "WAL", AtomicFile::Publish::NoReplace);
    write_file_atomically(dir_ / "empty", "", AtomicFile::Publish::NoReplace);
    std::string buffer = "left over from before";
    read_file_into(dir_ / "big", buffer);
    EXPECT_EQ(buffer, big);
    const char* memory = buffer.data();
    read_file_into(dir_ / "small", buffer);
    EXPECT_EQ(buffer, "WAL");
    read_file_into(dir_ / "big", buffer);
    EXPECT_EQ(buffer, big);
    EXPECT_EQ(buffer.data(), memory);
    read_file_into(dir_ / "empty", buffer);
    EXPECT_EQ(buffer, "");
    // A file whose size fstat does not give (0 in /proc, as for a pipe).
    std::ifstream cmdline("/proc/self/cmdline", std::ios::binary);
    const std::string expected((std::istreambuf_iterator<char>(cmdline)),
                               std::istreambuf_iterator<char>());
    ASSERT_GT(expected.size(), 8U);
    read_file_into("/proc/self/cmdline", buffer);
    EXPECT_EQ(buffer, expected);
    arm("read", 1, EIO);
    EXPECT_EQ(test::error_message([&] { read_file_into(dir_ / "big", buffer); }),
              "cannot read " + (dir_ / "big").string() + ": Input/output error");
    EXPECT_EQ(test::error_message([&] { read_file_into(dir_ / "missing", buffer); }),
              "cannot read " + (dir_ / "missing").string() + ": No such file or directory");
}

}  // namespace
}  // namespace pgward
