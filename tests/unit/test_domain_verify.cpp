// verify's checks that need no server and no pg_restore run: the archive
// header and the pg_restore it needs, the manifest beside a dump, the deep
// comparison with a manifest, and which file a backup spec names.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "archive/summary.hpp"
#include "domain/manifest.hpp"
#include "domain/verify.hpp"
#include "support/temp_dir.hpp"
#include "util/error.hpp"

namespace pgward {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = PGWARD_FIXTURES_DIR;

class VerifyChecks : public test::TempDirTest {
  protected:
    fs::path write(const std::string& name, const std::string& text) {
        fs::path path = dir_ / name;
        std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
        return path;
    }
    fs::path copy_fixture(const std::string& fixture, const std::string& name) {
        fs::path path = dir_ / name;
        fs::copy_file(kFixtures / fixture, path);
        return path;
    }
    // The manifest a backup of `archive` would carry: its tables as read.
    static Manifest manifest_of(const fs::path& archive) {
        archive::ArchiveSummary summary = archive::summarize_file_parallel(archive, 1);
        Manifest m;
        m.database = "app";
        m.file = archive.filename().string();
        for (const archive::TableSummary& t : summary.tables) {
            m.tables.push_back(TableEntry{t.schema, t.name, t.rows, t.fingerprint, std::nullopt});
        }
        m.large_objects = summary.large_objects;
        m.large_objects_fingerprint = summary.large_objects_fingerprint();
        return m;
    }
};

TEST(ArchiveVersion, TheOldestPgRestoreThatReadsEachVersion) {
    auto needs = [](int major, int minor) {
        return ArchiveVersion{major, minor, 0}.min_pg_restore_major();
    };
    EXPECT_EQ(needs(1, 12), 10);
    EXPECT_EQ(needs(1, 13), 11);
    EXPECT_EQ(needs(1, 14), 12);
    EXPECT_EQ(needs(1, 15), 16);
    EXPECT_EQ(needs(1, 16), 17);
    EXPECT_EQ(needs(1, 17), 18);
    EXPECT_EQ(needs(2, 0), 99);
    EXPECT_EQ((ArchiveVersion{1, 16, 0}.text()), "1.16");
}

TEST_F(VerifyChecks, TheHeaderOfAFileThatIsNoArchiveIsRefused) {
    EXPECT_EQ(test::error_message([&] { read_archive_version(dir_ / "missing.dump"); }),
              "cannot open " + (dir_ / "missing.dump").string() + ": No such file or directory");
    EXPECT_EQ(test::error_message([&] { read_archive_version(write("empty.dump", "")); }),
              (dir_ / "empty.dump").string() +
                  " is not a pg_dump custom-format archive (no PGDMP header; the file is empty)");
    EXPECT_EQ(test::error_message([&] { read_archive_version(write("text.dump", "SELECT 1;\n")); }),
              (dir_ / "text.dump").string() +
                  " is not a pg_dump custom-format archive (no PGDMP header)");
    ArchiveVersion v = read_archive_version(kFixtures / "pg17_zstd.dump");
    EXPECT_EQ(v.text(), "1.16");
}

TEST_F(VerifyChecks, APgRestoreTooOldIsToldWhichOneReadsTheArchive) {
    pg::Tool pg_restore{"/usr/lib/postgresql/15/bin/pg_restore", pg::Version{150018}, ""};
    fs::path zstd = copy_fixture("pg17_zstd.dump", "app_20260101T000000Z.dump");
    EXPECT_EQ(test::error_message(
                  [&] { check_pg_restore_reads(pg_restore, read_archive_version(zstd), zstd); }),
              "app_20260101T000000Z.dump is in archive format 1.16 (zstd), which pg_restore 15.18 "
              "cannot read: it needs pg_restore 17 or newer");
    // A header too new and nothing readable after it: the version alone is said.
    fs::path torn = write("torn.dump", std::string("PGDMP\x01\x10\x00", 8) + "garbage");
    EXPECT_EQ(test::error_message(
                  [&] { check_pg_restore_reads(pg_restore, read_archive_version(torn), torn); }),
              "torn.dump is in archive format 1.16, which pg_restore 15.18 cannot read: it needs "
              "pg_restore 17 or newer");
    pg::Tool newer{"/usr/lib/postgresql/17/bin/pg_restore", pg::Version{170012}, ""};
    EXPECT_NO_THROW(check_pg_restore_reads(newer, read_archive_version(zstd), zstd));

    // verify_archive stops there, before any pg_restore runs.
    VerifyReport report = verify_archive(zstd, pg_restore, true);
    EXPECT_FALSE(report.ok);
    EXPECT_EQ(report.problem,
              "app_20260101T000000Z.dump is in archive format 1.16 (zstd), which pg_restore 15.18 "
              "cannot read: it needs pg_restore 17 or newer");
    EXPECT_EQ(
        report.hint,
        "install postgresql-client-17 and point --pg-bin / PGWARD_PG_BIN at its bin directory");
}

TEST_F(VerifyChecks, AMissingFileOrManifestIsSaidBeforeAnyPgRestoreRuns) {
    pg::Tool pg_restore{"/nonexistent/pg_restore", pg::Version{170012}, ""};
    EXPECT_EQ(test::error_message([&] { verify_archive(dir_ / "gone.dump", pg_restore, false); }),
              "cannot read " + (dir_ / "gone.dump").string() + ": No such file or directory");
    fs::path dump = copy_fixture("pg17_gzip.dump", "app_20260101T000000Z.dump");
    VerifyReport report = verify_archive(dump, pg_restore, false);
    EXPECT_FALSE(report.ok);
    EXPECT_EQ(report.problem, "no manifest: its checksum cannot be checked");
    ASSERT_TRUE(report.version.has_value());
    EXPECT_EQ(report.version->text(), "1.16");

    // A bare name is a file of the working directory, its manifest looked for there.
    VerifyReport relative = [&] {
        test::InDirectory cwd(dir_);
        return verify_archive("app_20260101T000000Z.dump", pg_restore, false);
    }();
    EXPECT_EQ(relative.problem, "no manifest: its checksum cannot be checked");
    EXPECT_EQ(relative.file, "app_20260101T000000Z.dump");
}

TEST_F(VerifyChecks, TheManifestBesideADumpIsOnlyItsOwn) {
    fs::path dump = copy_fixture("pg17_gzip.dump", "app_20260101T000000Z.dump");
    EXPECT_FALSE(manifest_beside(dump).has_value());  // none yet
    EXPECT_FALSE(manifest_beside(dir_ / "not-a-backup.dump").has_value());
    EXPECT_FALSE(manifest_beside(dir_ / "app_20260101T000000Z.dump.tmp").has_value());
    write("app_20260101T000000Z.json", "{ not json");
    EXPECT_FALSE(manifest_beside(dump).has_value());

    Manifest m = manifest_of(dump);
    m.sha256 = std::string(64, '0');
    m.file = "app_20250101T000000Z.dump";  // another dump's
    write("app_20260101T000000Z.json", manifest_to_json(m).dump());
    EXPECT_FALSE(manifest_beside(dump).has_value());
    m.file = dump.filename().string();
    write("app_20260101T000000Z.json", manifest_to_json(m).dump());
    ASSERT_TRUE(manifest_beside(dump).has_value());
    EXPECT_EQ(manifest_beside(dump)->tables.size(), m.tables.size());
}

TEST_F(VerifyChecks, DeepVerifyNamesEveryDifferenceFromTheManifest) {
    fs::path dump = copy_fixture("pg18_zstd.dump", "app_20260101T000000Z.dump");
    Manifest m = manifest_of(dump);
    ASSERT_GE(m.tables.size(), 3U);
    DeepReport clean = deep_verify(dump, m);
    EXPECT_TRUE(clean.ok);
    EXPECT_TRUE(clean.problems.empty());
    EXPECT_EQ(clean.tables, m.tables.size());
    EXPECT_EQ(clean.large_objects, *m.large_objects);

    Manifest wrong = m;
    const TableEntry& first = m.tables[0];
    const TableEntry& second = m.tables[1];
    wrong.tables[0].rows = *first.rows + 1;
    wrong.tables[1].fingerprint = "fp1:0000";
    wrong.tables.push_back(TableEntry{"public", "dropped_later", 1, std::nullopt, std::nullopt});
    wrong.large_objects = *m.large_objects + 2;
    wrong.large_objects_fingerprint = "lo1:00000000000000000000000000000001";
    DeepReport report = deep_verify(dump, wrong);
    EXPECT_FALSE(report.ok);
    std::vector<std::string> expected = {
        fmt::format("table {}.{}: {} rows in the archive, {} in the manifest", first.schema,
                    first.name, *first.rows, *first.rows + 1),
        fmt::format("table {}.{}: content fingerprint {} differs from the manifest's fp1:0000",
                    second.schema, second.name, *second.fingerprint),
        "table public.dropped_later is in the manifest but not in the archive",
        fmt::format("{} large objects in the archive, {} in the manifest", *m.large_objects,
                    *m.large_objects + 2),
        fmt::format("large objects: content fingerprint {} differs from the manifest's "
                    "lo1:00000000000000000000000000000001",
                    *m.large_objects_fingerprint),
    };
    EXPECT_EQ(report.problems, expected);

    // Without a manifest only the archive itself is checked.
    EXPECT_TRUE(deep_verify(dump, std::nullopt).ok);
    fs::resize_file(dump, fs::file_size(dump) - 100);
    DeepReport torn = deep_verify(dump, m);
    EXPECT_FALSE(torn.ok);
    ASSERT_EQ(torn.problems.size(), 1U);
    EXPECT_NE(torn.problems[0].find("archive damaged at byte"), std::string::npos)
        << torn.problems[0];
}

// deep_verify_stream reads what a producer hands it in chunks (an object
// streamed from a bucket): the same verdict as the file, the producer always
// runs to its end, and a producer's failure is its own, not the archive's.
TEST_F(VerifyChecks, DeepVerifyOfAStreamGivesTheFilesVerdictAndLetsTheProducerFinish) {
    fs::path dump = copy_fixture("pg18_zstd.dump", "app_20260101T000000Z.dump");
    Manifest m = manifest_of(dump);
    std::string bytes;
    {
        std::ifstream in(dump, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    // The producer hands `data` in 1000-byte chunks, then `tail` more bytes,
    // and counts what it handed.
    auto stream_of = [](const std::string& data, size_t tail, size_t* handed) {
        return [&data, tail, handed](const std::function<void(const char*, size_t)>& sink) {
            for (size_t at = 0; at < data.size(); at += 1000) {
                size_t n = std::min<size_t>(1000, data.size() - at);
                sink(data.data() + at, n);
                *handed += n;
            }
            std::string filler(1000, 'x');
            for (size_t at = 0; at < tail; at += filler.size()) {
                sink(filler.data(), filler.size());
                *handed += filler.size();
            }
        };
    };

    size_t handed = 0;
    DeepReport clean = deep_verify_stream(stream_of(bytes, 0, &handed), m);
    EXPECT_TRUE(clean.ok);
    EXPECT_EQ(clean.tables, m.tables.size());
    EXPECT_EQ(clean.problems, deep_verify(dump, m).problems);
    EXPECT_EQ(handed, bytes.size());

    // Torn: the reader's verdict, as for the file.
    std::string torn = bytes.substr(0, bytes.size() - 100);
    DeepReport torn_report = deep_verify_stream(stream_of(torn, 0, &handed), m);
    ASSERT_EQ(torn_report.problems.size(), 1U);
    EXPECT_NE(torn_report.problems[0].find("archive damaged at byte"), std::string::npos)
        << torn_report.problems[0];

    // Damaged in its header and followed by far more than the queue holds:
    // the verdict is the damage, and the producer still hands every byte.
    std::string damaged = bytes;
    damaged[0] = 'X';
    handed = 0;
    DeepReport damaged_report = deep_verify_stream(stream_of(damaged, 4000000, &handed), m);
    EXPECT_FALSE(damaged_report.ok);
    ASSERT_EQ(damaged_report.problems.size(), 1U);
    EXPECT_EQ(handed, damaged.size() + 4000000);

    // A producer that fails before the archive's end: its own error.
    auto broken = [&](const std::function<void(const char*, size_t)>& sink) {
        sink(bytes.data(), bytes.size() / 2);
        throw failure("connection reset by the bucket");
    };
    EXPECT_EQ(test::error_message([&] { deep_verify_stream(broken, m); }),
              "connection reset by the bucket");

    // A producer that fails after the reader found damage: the damage is the
    // verdict (the failure came after it).
    auto damaged_then_broken = [&](const std::function<void(const char*, size_t)>& sink) {
        sink(damaged.data(), damaged.size());
        sink(damaged.data(), damaged.size());
        for (int i = 0; i < 50; ++i) {  // time for the reader to speak
            sink(damaged.data(), 1);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        throw failure("connection reset by the bucket");
    };
    DeepReport late = deep_verify_stream(damaged_then_broken, m);
    EXPECT_FALSE(late.ok);
    EXPECT_EQ(late.problems, damaged_report.problems);
}

TEST_F(VerifyChecks, ABackupSpecNamesOneFile) {
    EXPECT_EQ(test::error_message([&] { resolve_backup("latest", dir_, std::nullopt); }),
              "no backups in " + dir_.string());
    write("app_20260101T000000Z.dump", "");
    write("app_20260102T000000Z.dump", "");
    write("other_20260103T000000Z.dump", "");
    EXPECT_EQ(resolve_backup("app_20260101T000000Z.dump", dir_, std::nullopt),
              dir_ / "app_20260101T000000Z.dump");
    EXPECT_EQ(
        resolve_backup((dir_ / "app_20260101T000000Z.dump").string(), "/elsewhere", std::nullopt),
        dir_ / "app_20260101T000000Z.dump");
    EXPECT_EQ(test::error_message(
                  [&] { resolve_backup("app_20990101T000000Z.dump", dir_, std::nullopt); }),
              "backup app_20990101T000000Z.dump not found (nor in " + dir_.string() + ")");
    EXPECT_EQ(resolve_backup("latest", dir_, std::string("app")),
              dir_ / "app_20260102T000000Z.dump");
    try {
        resolve_backup("latest", dir_, std::nullopt);
        ADD_FAILURE() << "an ambiguous latest was resolved";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Usage);
        EXPECT_EQ(std::string(e.what()), "\"latest\" is ambiguous: " + dir_.string() +
                                             " holds backups of 2 databases (\"app\", \"other\")");
    }
    // A named database with no backups never falls back to another one
    // (issue 18: that restored another database's backup).
    fs::remove(dir_ / "other_20260103T000000Z.dump");
    try {
        resolve_backup("latest", dir_, std::string("nobody"));
        ADD_FAILURE() << "latest of a database without backups was resolved";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "no backups of \"nobody\" in " + dir_.string() + "; it holds backups of \"app\"");
    }
    EXPECT_EQ(resolve_backup("latest", dir_, std::nullopt), dir_ / "app_20260102T000000Z.dump");
}

TEST_F(VerifyChecks, LatestOfANamedDatabaseInAnEmptyDirectorySaysItHoldsNone) {
    std::optional<Error> e =
        test::caught_error([&] { resolve_backup("latest", dir_, std::string("app")); });
    ASSERT_TRUE(e.has_value()) << "latest was resolved in an empty directory";
    EXPECT_EQ(std::string(e->what()),
              "no backups of \"app\" in " + dir_.string() + " (it holds none at all)");
    EXPECT_EQ(e->hint(), "check --dir / POSTGRES_BACKUP_DIR");
}

// A bare file name is the directory's file, or one in the working directory;
// a relative path with a directory is never looked up in --dir.
TEST_F(VerifyChecks, ARelativeSpecIsTheWorkingDirectorysFileOrTheDirectorys) {
    write("app_20260101T000000Z.dump", "");
    fs::create_directory(dir_ / "cwd");
    test::InDirectory cwd(dir_ / "cwd");
    std::ofstream("app_20260101T000000Z.dump") << "";
    EXPECT_EQ(resolve_backup("app_20260101T000000Z.dump", dir_, std::nullopt),
              "app_20260101T000000Z.dump");
    EXPECT_EQ(test::error_message(
                  [&] { resolve_backup("sub/app_20260101T000000Z.dump", dir_, std::nullopt); }),
              "backup sub/app_20260101T000000Z.dump not found (nor in " + dir_.string() + ")");
    fs::remove("app_20260101T000000Z.dump");
    EXPECT_EQ(resolve_backup("app_20260101T000000Z.dump", dir_, std::nullopt),
              dir_ / "app_20260101T000000Z.dump");
}

}  // namespace
}  // namespace pgward
