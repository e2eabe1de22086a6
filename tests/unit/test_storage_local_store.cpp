// The Store interface over a local directory (LocalStore), and the offsite
// checks that only know a Store: the proof of a stored dump, verify of a
// stored backup (deep too) and the fetch for restore, on real archives from
// ../shared/fixtures/archives. The same code runs over the S3 bucket in
// tests/integration/test_offsite.cpp.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "archive/summary.hpp"
#include "domain/manifest.hpp"
#include "domain/naming.hpp"
#include "domain/offsite.hpp"
#include "domain/pitr_offsite.hpp"
#include "storage/store.hpp"
#include "support/temp_dir.hpp"
#include "util/sha256.hpp"

namespace pgward {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = PGWARD_FIXTURES_DIR;

class LocalStoreTest : public test::TempDirTest {
  protected:
    void SetUp() override {
        test::TempDirTest::SetUp();
        store_dir_ = dir_ / "store";
        fs::create_directories(store_dir_);
        id_ = parse_backup_file_name("app_20260101T000000Z.dump")->id;
        fs::copy_file(kFixtures / "pg17_gzip.dump", store_dir_ / id_.dump_file());
        std::ofstream(store_dir_ / id_.globals_file()) << "CREATE ROLE app;\n";
        archive::ArchiveSummary summary =
            archive::summarize_file_parallel(store_dir_ / id_.dump_file(), 1);
        manifest_.database = "app";
        manifest_.file = id_.dump_file();
        manifest_.size_bytes = fs::file_size(store_dir_ / id_.dump_file());
        manifest_.sha256 = sha256_file_hex(store_dir_ / id_.dump_file());
        for (const archive::TableSummary& t : summary.tables) {
            manifest_.tables.push_back(
                TableEntry{t.schema, t.name, t.rows, t.fingerprint, std::nullopt});
            rows_ += t.rows;
        }
        manifest_.large_objects = summary.large_objects;
        manifest_.large_objects_fingerprint = summary.large_objects_fingerprint();
        std::ofstream(store_dir_ / id_.manifest_file()) << manifest_to_json(manifest_).dump();
    }
    // One byte of the stored dump changed, its size kept.
    void change_a_byte() {
        fs::path dump = store_dir_ / id_.dump_file();
        std::fstream f(dump, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(static_cast<std::streamoff>(manifest_.size_bytes / 2));
        char c = 0;
        f.get(c);
        f.seekp(static_cast<std::streamoff>(manifest_.size_bytes / 2));
        f.put(static_cast<char>(c ^ 0x01));
    }

    fs::path store_dir_;
    BackupId id_;
    Manifest manifest_;
    uint64_t rows_ = 0;
};

TEST_F(LocalStoreTest, ListsStatsReadsPublishesWholeAndRemoves) {
    storage::LocalStore store(store_dir_);
    EXPECT_EQ(store.location(), store_dir_.string() + "/");
    EXPECT_EQ(store.location_of(id_.dump_file()), store_dir_.string() + "/" + id_.dump_file());
    fs::create_directories(store_dir_ / "a-directory");
    std::vector<storage::StoredFile> files = store.list();
    std::sort(files.begin(), files.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    ASSERT_EQ(files.size(), 3U) << "files only, no directory";
    EXPECT_EQ(files[0].name, id_.dump_file());
    EXPECT_EQ(files[0].size, manifest_.size_bytes);

    EXPECT_EQ(store.stat(id_.dump_file())->size, manifest_.size_bytes);
    EXPECT_FALSE(store.stat("app_20250101T000000Z.dump").has_value());

    Sha256 hash;
    EXPECT_EQ(store.read(id_.dump_file(), [&](const char* d, size_t n) { hash.update(d, n); }),
              manifest_.size_bytes);
    EXPECT_EQ(hash.hex_digest(), manifest_.sha256);
    EXPECT_EQ(
        test::error_message([&] { store.read("missing.dump", [](const char*, size_t) {}); }),
        "cannot open " + (store_dir_ / "missing.dump").string() + ": No such file or directory");

    // Published whole under a new name; an existing name is never replaced.
    store.put_file("copy.dump", store_dir_ / id_.dump_file());
    EXPECT_EQ(sha256_file_hex(store_dir_ / "copy.dump"), manifest_.sha256);
    std::ofstream(dir_ / "other") << "other";
    EXPECT_FALSE(test::error_message([&] { store.put_file("copy.dump", dir_ / "other"); }).empty());
    EXPECT_EQ(sha256_file_hex(store_dir_ / "copy.dump"), manifest_.sha256);
    store.remove("copy.dump");
    EXPECT_FALSE(fs::exists(store_dir_ / "copy.dump"));

    storage::LocalStore nowhere(dir_ / "no-such-dir");
    EXPECT_FALSE(test::error_message([&] { nowhere.list(); }).empty());
}

TEST_F(LocalStoreTest, TheProofOfAStoredDumpBySizeAndByReadingIt) {
    storage::LocalStore store(store_dir_);
    RemoteCheck read = check_stored_dump(store, id_, manifest_, RemoteProof::Read);
    EXPECT_TRUE(read.ok) << read.detail;
    EXPECT_EQ(read.bytes_read, manifest_.size_bytes);
    RemoteCheck size = check_stored_dump(store, id_, manifest_, RemoteProof::Size);
    EXPECT_TRUE(size.ok) << size.detail;
    EXPECT_NE(size.detail.find("size only: not read back"), std::string::npos) << size.detail;

    // A changed byte: only reading finds it.
    change_a_byte();
    EXPECT_TRUE(check_stored_dump(store, id_, manifest_, RemoteProof::Size).ok);
    RemoteCheck changed = check_stored_dump(store, id_, manifest_, RemoteProof::Read);
    EXPECT_FALSE(changed.ok);
    EXPECT_NE(changed.detail.find("has SHA-256 "), std::string::npos) << changed.detail;

    // Short: both find it.
    fs::resize_file(store_dir_ / id_.dump_file(), manifest_.size_bytes - 1);
    RemoteCheck short_size = check_stored_dump(store, id_, manifest_, RemoteProof::Size);
    EXPECT_FALSE(short_size.ok);
    EXPECT_NE(short_size.detail.find("bytes; the manifest says"), std::string::npos);
    RemoteCheck short_read = check_stored_dump(store, id_, manifest_, RemoteProof::Read);
    EXPECT_FALSE(short_read.ok);
    EXPECT_NE(short_read.detail.find("bytes; the manifest says"), std::string::npos);

    fs::remove(store_dir_ / id_.dump_file());
    RemoteCheck missing = check_stored_dump(store, id_, manifest_, RemoteProof::Size);
    EXPECT_FALSE(missing.ok);
    EXPECT_EQ(missing.detail, store.location_of(id_.dump_file()) + " is missing");
}

TEST_F(LocalStoreTest, VerifyOfAStoredBackupReadsItOnceAndDeepReadsEveryRow) {
    storage::LocalStore store(store_dir_);
    EXPECT_EQ(read_stored_manifest(store, id_).sha256, manifest_.sha256);
    RemoteVerifyReport quick = verify_stored_backup(store, id_, false);
    EXPECT_TRUE(quick.ok) << quick.detail;
    EXPECT_EQ(quick.detail, "sha256 matches the manifest");
    RemoteVerifyReport deep = verify_stored_backup(store, id_, true);
    EXPECT_TRUE(deep.ok) << deep.detail;
    EXPECT_EQ(deep.tables, manifest_.tables.size());
    EXPECT_EQ(deep.rows, rows_);

    change_a_byte();
    RemoteVerifyReport changed = verify_stored_backup(store, id_, true);
    EXPECT_FALSE(changed.ok);
    EXPECT_EQ(changed.detail.rfind("SHA-256 ", 0), 0U) << changed.detail;
}

TEST_F(LocalStoreTest, AFetchIsPrivateCheckedAndGoesAwayWithItsObject) {
    storage::LocalStore store(store_dir_);
    const fs::path parent = dir_ / "backups";
    fs::create_directories(parent);
    fs::path fetched_dir;
    {
        FetchedBackup fetched(store, id_, parent);
        fetched_dir = fetched.dump().parent_path();
        EXPECT_EQ(fetched_dir.parent_path(), parent);
        EXPECT_EQ(fetched.source(), store.location_of(id_.dump_file()));
        EXPECT_EQ(sha256_file_hex(fetched.dump()), manifest_.sha256);
        EXPECT_TRUE(fs::exists(fetched_dir / id_.manifest_file()));
        EXPECT_TRUE(fs::exists(fetched_dir / id_.globals_file()));
        struct stat st {};
        ASSERT_EQ(::stat(fetched_dir.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0700U);
        ASSERT_EQ(::stat(fetched.dump().c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600U);
    }
    EXPECT_FALSE(fs::exists(fetched_dir));

    change_a_byte();
    EXPECT_NE(test::error_message([&] {
                  FetchedBackup bad(store, id_, parent);
              }).find("is not the backup its manifest describes"),
              std::string::npos);
    EXPECT_TRUE(fs::is_empty(parent)) << "nothing is left of a fetch that failed";
}

// A fetch directory left by a process that is gone is removed by the next
// fetch; a live process's, an older pgward's (no pid) and one whose digits
// overflow a pid are left, and none of them stops the fetch.
TEST_F(LocalStoreTest, AFetchRemovesOnlyTheFetchDirectoriesOfProcessesThatAreGone) {
    storage::LocalStore store(store_dir_);
    const fs::path parent = dir_ / "backups";
    pid_t gone = ::fork();
    ASSERT_GE(gone, 0);
    if (gone == 0) {
        ::_exit(0);
    }
    ASSERT_EQ(::waitpid(gone, nullptr, 0), gone);
    const std::vector<std::string> kept = {
        fmt::format(".pgward-fetch-{}-live", ::getpid()),
        ".pgward-fetch-AbC123",
        ".pgward-fetch-99999999999999999999999-overflow",
        ".pgward-fetch--1-negative",
    };
    for (const std::string& name : kept) {
        fs::create_directories(parent / name);
    }
    const std::string orphan = fmt::format(".pgward-fetch-{}-orphan", gone);
    fs::create_directories(parent / orphan / "inner");
    {
        FetchedBackup fetched(store, id_, parent);
        EXPECT_FALSE(fs::exists(parent / orphan));
        for (const std::string& name : kept) {
            EXPECT_TRUE(fs::exists(parent / name)) << name;
        }
    }
    std::vector<std::string> left;
    for (const auto& entry : fs::directory_iterator(parent)) {
        left.push_back(entry.path().filename().string());
    }
    std::sort(left.begin(), left.end());
    std::vector<std::string> expected = kept;
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(left, expected) << "the fetch's own directory went with it";
}

// What vouches for stored WAL: every sums file's entries together; one that
// cannot be read vouches for nothing (its files count as not proven).
TEST_F(LocalStoreTest, WalSumsVouchForTheFilesTheyNameAndABadOneForNothing) {
    const fs::path wal = dir_ / "wal";
    fs::create_directories(wal);
    std::ofstream(wal / "sums-000000010000000000000002.json")
        << R"({"format":"pgward-wal-sums/1","files":{)"
        << R"("000000010000000000000001":{"object":"000000010000000000000001","size":16777216,"sha256":"aa"},)"
        << R"("000000010000000000000002":{"object":"000000010000000000000002.age","size":16777500,"sha256":"bb","plain_sha256":"cc"}}})";
    std::ofstream(wal / "sums-000000010000000000000003.json")
        << R"({"format":"pgward-wal-sums/1","files":{"000000010000000000000003":{"size":5,"sha256":"dd"}}})";
    std::ofstream(wal / "sums-000000010000000000000004.json") << "{ cut";
    std::ofstream(wal / "sums-000000010000000000000005.json") << R"({"format":"other"})";
    std::ofstream(wal / "000000010000000000000004") << "not vouched for";
    const storage::LocalStore store(wal);
    const auto sums = read_wal_sums(store);
    ASSERT_EQ(sums.size(), 3U);
    EXPECT_EQ(sums.at("000000010000000000000001").object, "000000010000000000000001");
    EXPECT_EQ(sums.at("000000010000000000000001").size, 16777216U);
    EXPECT_FALSE(sums.at("000000010000000000000001").plain_sha256);
    EXPECT_EQ(sums.at("000000010000000000000002").object, "000000010000000000000002.age");
    EXPECT_EQ(sums.at("000000010000000000000002").plain_sha256, "cc");
    // (An entry without "object" names the file itself.)
    EXPECT_EQ(sums.at("000000010000000000000003").object, "000000010000000000000003");
    EXPECT_EQ(sums.count("000000010000000000000004"), 0U);
}

}  // namespace
}  // namespace pgward
