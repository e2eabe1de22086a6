#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "domain/manifest.hpp"
#include "domain/pitr.hpp"
#include "domain/wal_archive.hpp"
#include "support/temp_dir.hpp"
#include "util/files.hpp"

namespace pgward {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::error_message;

constexpr uint64_t kSystem = 7715167054901219859ULL;

std::chrono::system_clock::time_point utc(const char* text) {
    auto parsed = parse_time_with_zone(text);
    EXPECT_TRUE(parsed) << text;
    return parsed.value_or(std::chrono::system_clock::time_point{});
}

TEST(RecoveryTarget, ReadsLatestTimesLsnsAndNames) {
    EXPECT_EQ(RecoveryTarget::parse("latest").kind, RecoveryTarget::Kind::Latest);
    EXPECT_FALSE(RecoveryTarget::parse("latest").setting());

    RecoveryTarget time = RecoveryTarget::parse("2026-12-03 19:40:00.25+01");
    EXPECT_EQ(time.kind, RecoveryTarget::Kind::Time);
    EXPECT_EQ(time.describe(), "2026-12-03 18:40:00.250000+00");
    EXPECT_EQ(time.setting(), "recovery_target_time = '2026-12-03 18:40:00.250000+00'");
    EXPECT_EQ(RecoveryTarget::parse("2026-12-03T18:40:00Z").time, utc("2026-12-03 18:40:00+00:00"));
    EXPECT_EQ(utc("2026-12-03 12:10:00-0630"), utc("2026-12-03T18:40:00Z"));
    EXPECT_EQ(utc("2026-12-03 18:40:00.123456 UTC"), utc("2026-12-03T18:40:00.123456z"));

    RecoveryTarget lsn = RecoveryTarget::parse("0/3000060");
    EXPECT_EQ(lsn.kind, RecoveryTarget::Kind::Lsn);
    EXPECT_EQ(lsn.setting(), "recovery_target_lsn = '0/3000060'");

    RecoveryTarget name = RecoveryTarget::parse("before-migration");
    EXPECT_EQ(name.kind, RecoveryTarget::Kind::Name);
    EXPECT_EQ(name.describe(), "restore point \"before-migration\"");
    EXPECT_EQ(RecoveryTarget::parse("name:it's 0/1").setting(),
              "recovery_target_name = 'it''s 0/1'");
    EXPECT_EQ(RecoveryTarget::parse("name:latest").kind, RecoveryTarget::Kind::Name);
}

TEST(RecoveryTarget, ABadValueIsAUsageErrorThatSaysWhatToWrite) {
    EXPECT_TRUE(error_message([] { RecoveryTarget::parse(""); }).starts_with("--to is empty"));
    for (const char* no_zone :
         {"2026-12-03 19:40:00", "2026-12-03", "2026-13-03 19:40:00Z", "2026-02-30 19:40:00Z",
          "2026-12-03 25:40:00Z", "2026-12-03 19:40:00+16"}) {
        auto e = test::caught_error([&] { RecoveryTarget::parse(no_zone); });
        ASSERT_TRUE(e) << no_zone;
        EXPECT_EQ(e->kind(), ErrorKind::Usage);
        EXPECT_EQ(std::string(e->what()),
                  fmt::format("--to \"{}\" is not a time pgward reads", no_zone));
        EXPECT_TRUE(e->hint().find("with its zone") != std::string::npos);
    }
    EXPECT_TRUE(error_message([] {
                    RecoveryTarget::parse(std::string(64, 'n'));
                }).starts_with("--to: a restore point's name has 1 to 63 bytes"));
    EXPECT_TRUE(error_message([] {
                    RecoveryTarget::parse("name:");
                }).starts_with("--to: a restore point's name has 1 to 63 bytes"));
}

TEST(Quoting, ShellAndConfigurationStringsSurviveQuotes) {
    EXPECT_EQ(shell_quote("/backups/it's"), "'/backups/it'\\''s'");
    EXPECT_EQ(shell_quote("a b;$(x)"), "'a b;$(x)'");
    EXPECT_EQ(conf_quote("'a' b"), "'''a'' b'");
}

// A backup directory with base backups described and WAL files named as
// the real ones, each written at a chosen moment.
class PitrPlanTest : public test::TempDirTest {
  protected:
    void add_base(const std::string& name, const char* finished, const std::string& start,
                  const std::string& end, uint64_t system = kSystem) {
        const fs::path folder = dir_ / "base" / std::to_string(system) / name;
        fs::create_directories(folder);
        nlohmann::ordered_json doc = {
            {"format", "pgward-base-backup/1"},
            {"name", name},
            {"system_identifier", std::to_string(system)},
            {"timeline", 1},
            {"start_lsn", start},
            {"end_lsn", end},
            {"started_at", name.substr(0, 4) + "-" + name.substr(4, 2) + "-" + name.substr(6, 2) +
                               "T" + name.substr(9, 2) + ":" + name.substr(11, 2) + ":" +
                               name.substr(13, 2) + "Z"},
            {"finished_at", finished},
            {"files", {"base.tar", "pg_wal.tar"}}};
        write_file_atomically(folder / "base.json", doc.dump(), AtomicFile::Publish::Replace);
    }

    void add_wal(uint64_t number, const char* written, bool partial = false) {
        const fs::path folder = dir_ / "wal" / std::to_string(kSystem);
        fs::create_directories(folder);
        const fs::path file =
            folder / (pg::WalFileName::segment_name(1, number, pg::kDefaultSegmentSize) +
                      (partial ? ".partial" : ""));
        std::ofstream(file) << "x";
        fs::last_write_time(file, std::chrono::file_clock::from_sys(utc(written)));
    }

    PitrPlan plan(const std::string& target) const {
        PitrRequest request;
        request.dir = dir_;
        request.target = RecoveryTarget::parse(target);
        return plan_pitr(request);
    }

    std::string refusal(const std::string& target) const {
        return error_message([&] { plan(target); });
    }
};

TEST_F(PitrPlanTest, ChoosesTheNewestBaseBackupTheTargetDoesNotPredate) {
    add_base("20261201T000000Z", "2026-12-01T00:01:00Z", "0/2000028", "0/2000100");
    add_base("20261202T000000Z", "2026-12-02T00:01:00Z", "0/5000028", "0/5000100");
    for (uint64_t n = 2; n <= 7; ++n) {
        add_wal(n, "2026-12-01T12:00:00Z");
    }
    add_wal(8, "2026-12-03T00:00:00Z", true);

    EXPECT_EQ(plan("latest").base.name, "20261202T000000Z");
    EXPECT_EQ(plan("latest").first_segment, "000000010000000000000005");
    EXPECT_EQ(plan("latest").last_segment, "000000010000000000000008");
    EXPECT_EQ(plan("2026-12-01 18:00:00Z").base.name, "20261201T000000Z");
    EXPECT_EQ(plan("2026-12-01 18:00:00Z").first_segment, "000000010000000000000002");
    EXPECT_EQ(plan("2026-12-02 00:01:00Z").base.name, "20261202T000000Z");
    EXPECT_EQ(plan("0/4000000").base.name, "20261201T000000Z");
    EXPECT_EQ(plan("0/6000000").base.name, "20261202T000000Z");
    EXPECT_EQ(plan("before-deploy").base.name, "20261202T000000Z");

    EXPECT_EQ(refusal("2026-11-30 00:00:00Z"),
              "2026-11-30 00:00:00.000000+00 is before every base backup: the archive can reach "
              "from 2026-12-01T00:01:00Z (base backup 20261201T000000Z finished) to about "
              "2026-12-03T00:00:00Z");
    EXPECT_TRUE(refusal("2026-12-04 00:00:00Z")
                    .starts_with("2026-12-04 00:00:00.000000+00 is past the end of the archived "
                                 "WAL: the archive can reach from 2026-12-01T00:01:00Z"));
    EXPECT_TRUE(refusal("0/9000000").starts_with("0/9000000 is past the end of the archived WAL"));
}

// A restore point a dump made is placed by its manifest's LSN: the base
// backup before it is chosen, and one past the archive's end is refused.
TEST_F(PitrPlanTest, ADumpsRestorePointIsPlacedByItsManifest) {
    add_base("20261201T000000Z", "2026-12-01T00:01:00Z", "0/2000028", "0/2000100");
    add_base("20261202T000000Z", "2026-12-02T00:01:00Z", "0/5000028", "0/5000100");
    for (uint64_t n = 2; n <= 7; ++n) {
        add_wal(n, "2026-12-01T12:00:00Z");
    }
    auto add_dump = [&](const std::string& stem, const std::string& lsn) {
        Manifest m;
        m.database = "app";
        m.file = stem + ".dump";
        m.sha256 = std::string(64, '0');
        m.started_at = m.finished_at = "2026-12-01T12:00:00Z";
        m.server_version = "15.18";
        m.pg_dump_version = "pg_dump (PostgreSQL) 15.18";
        m.restore_point = Manifest::RestorePoint{"pgward " + stem, lsn, std::nullopt, std::nullopt};
        write_file_atomically(dir_ / (stem + ".json"), manifest_to_json(m).dump(),
                              AtomicFile::Publish::Replace);
    };
    add_dump("app_20261201T120000Z", "0/4000100");
    add_dump("app_20261204T120000Z", "0/9000100");
    EXPECT_EQ(find_restore_point(dir_, "pgward app_20261201T120000Z")->text(), "0/4000100");
    EXPECT_FALSE(find_restore_point(dir_, "pgward nothing"));
    EXPECT_EQ(plan("pgward app_20261201T120000Z").base.name, "20261201T000000Z");
    EXPECT_EQ(plan("name:some other point").base.name, "20261202T000000Z");
    EXPECT_TRUE(refusal("pgward app_20261204T120000Z")
                    .starts_with("restore point \"pgward app_20261204T120000Z\" is past the end "
                                 "of the archived WAL"))
        << refusal("pgward app_20261204T120000Z");
    auto by_file = backup_restore_point(dir_, "app_20261201T120000Z.dump");
    ASSERT_TRUE(by_file);
    EXPECT_EQ(by_file->name, "pgward app_20261201T120000Z");
    EXPECT_FALSE(backup_restore_point(dir_, "0/4000000"));
    EXPECT_EQ(backup_restore_point(dir_, (dir_ / "app_20261201T120000Z.dump").string())->name,
              "pgward app_20261201T120000Z");
    EXPECT_EQ(
        error_message([&] { backup_restore_point(dir_, "/elsewhere/app_20261201T120000Z.dump"); }),
        "--to /elsewhere/app_20261201T120000Z.dump: a backup is named by its file in " +
            dir_.string() + ", not by a path elsewhere");
    // A gap after a dump's restore point does not stand in its way; one
    // before it does, and so it does for a name no manifest places.
    fs::remove(dir_ / "wal" / std::to_string(kSystem) / "000000010000000000000007");
    add_wal(8, "2026-12-01T12:00:00Z");
    EXPECT_EQ(plan("pgward app_20261201T120000Z").base.name, "20261201T000000Z");
    EXPECT_TRUE(refusal("name:some other point")
                    .starts_with("WAL segment 000000010000000000000007 is missing from "))
        << refusal("name:some other point");
    EXPECT_EQ(error_message([&] { backup_restore_point(dir_, "app_20261203T000000Z.dump"); }),
              "--to app_20261203T000000Z.dump: there is no such backup in " + dir_.string());
}

TEST_F(PitrPlanTest, AStreamedSegmentWithNothingWrittenYetIsNotServed) {
    const fs::path folder = dir_ / "wal" / std::to_string(kSystem);
    fs::create_directories(folder);
    const std::string name = pg::WalFileName::segment_name(1, 9, pg::kDefaultSegmentSize);
    write_file_atomically(folder / (name + ".partial"), std::string(pg::kDefaultSegmentSize, '\0'),
                          AtomicFile::Publish::Replace);
    const WalArchive archive = WalArchive::at(folder);
    EXPECT_FALSE(archive.fetch(name, dir_ / "out"));
    EXPECT_FALSE(fs::exists(dir_ / "out"));
}

TEST_F(PitrPlanTest, AGapIsRefusedUnlessTheTargetComesBeforeIt) {
    add_base("20261201T000000Z", "2026-12-01T00:01:00Z", "0/2000028", "0/2000100");
    add_wal(2, "2026-12-01T01:00:00Z");
    add_wal(3, "2026-12-01T02:00:00Z");
    add_wal(5, "2026-12-01T04:00:00Z");

    EXPECT_EQ(refusal("latest"),
              fmt::format("WAL segment 000000010000000000000004 is missing from {}: recovery from "
                          "base backup 20261201T000000Z stops there, at about 2026-12-01T02:00:00Z",
                          (dir_ / "wal" / std::to_string(kSystem)).string()));
    EXPECT_TRUE(refusal("2026-12-01 03:00:00Z")
                    .starts_with("WAL segment 000000010000000000000004 is missing"));
    EXPECT_EQ(plan("2026-12-01 01:30:00Z").last_segment, "000000010000000000000003");
    EXPECT_EQ(plan("0/3FFFFFF").last_segment, "000000010000000000000003");
    EXPECT_TRUE(
        refusal("0/4000000").starts_with("WAL segment 000000010000000000000004 is missing"));
}

TEST_F(PitrPlanTest, NoBaseBackupOrSeveralServersSayWhatToDo) {
    EXPECT_EQ(refusal("latest"), "no base backups in " + (dir_ / "base").string());
    add_base("20261201T000000Z", "2026-12-01T00:01:00Z", "0/2000028", "0/2000100");
    add_base("20261201T000000Z", "2026-12-01T00:01:00Z", "0/2000028", "0/2000100", 42);
    EXPECT_EQ(refusal("latest"), fmt::format("{} holds base backups of several servers (42, {})",
                                             dir_.string(), kSystem));
    PitrRequest request;
    request.dir = dir_;
    request.system = 42;
    EXPECT_EQ(plan_pitr(request).base.system, 42U);
}

namespace pgward {
namespace {

BaseBackup base_at(const std::string& name, const std::string& start) {
    BaseBackup b;
    b.name = name;
    b.start = *pg::Lsn::parse(start);
    return b;
}

TEST_F(PitrPlanTest, TheArchiveMarkMovesWithWhatPgReceivewalWritesAndNothingElse) {
    add_wal(1, "2026-12-04 10:00:00Z");
    add_wal(2, "2026-12-04 10:05:00Z");
    add_wal(3, "2026-12-04 10:06:00Z", true);
    const WalArchive archive(dir_, kSystem);
    const ArchiveMark at_start = archive_mark(archive, pg::kDefaultSegmentSize);
    EXPECT_EQ(at_start.resume, 3U);
    EXPECT_EQ(at_start.newest_write,
              std::chrono::file_clock::from_sys(utc("2026-12-04 10:06:00Z")));
    // A completed segment is never written again: touching one is not a
    // sign of streaming (and it is not even looked at).
    add_wal(1, "2026-12-04 11:00:00Z");
    EXPECT_EQ(archive_mark(archive, pg::kDefaultSegmentSize), at_start);
    // A write into the partial segment is.
    add_wal(3, "2026-12-04 10:07:00Z", true);
    const ArchiveMark written = archive_mark(archive, pg::kDefaultSegmentSize);
    EXPECT_NE(written, at_start);
    // So is its completion, a rename that keeps its time.
    fs::rename(
        archive.dir() / (pg::WalFileName::segment_name(1, 3, pg::kDefaultSegmentSize) + ".partial"),
        archive.dir() / pg::WalFileName::segment_name(1, 3, pg::kDefaultSegmentSize));
    EXPECT_EQ(archive_mark(archive, pg::kDefaultSegmentSize).resume, 4U);
}

TEST(BasePrune, KeepsTheNewestAndExactlyTheWalTheyNeed) {
    const std::vector<BaseBackup> backups = {base_at("a", "0/2000028"), base_at("b", "0/5000028"),
                                             base_at("c", "0/9000028")};
    const std::vector<std::string> wal = {"000000010000000000000002",
                                          "000000010000000000000004",
                                          "000000010000000000000005",
                                          "00000001.history",
                                          "000000020000000000000004",
                                          "000000020000000000000006.partial",
                                          "archive_status"};
    BasePrunePlan two = plan_base_prune(backups, wal, 2);
    ASSERT_EQ(two.remove.size(), 1U);
    EXPECT_EQ(two.remove[0].name, "a");
    EXPECT_EQ(two.wal_files,
              (std::vector<std::string>{"000000010000000000000002", "000000010000000000000004",
                                        "000000020000000000000004"}));
    BasePrunePlan one = plan_base_prune(backups, wal, 1);
    EXPECT_EQ(one.remove.size(), 2U);
    EXPECT_EQ(one.wal_files.size(), 5U) << "all but the history file and other names";
    EXPECT_TRUE(plan_base_prune(backups, wal, 3).remove.empty());
    EXPECT_TRUE(plan_base_prune(backups, wal, 3).wal_files.empty());
    EXPECT_TRUE(plan_base_prune({}, wal, 1).wal_files.empty()) << "no base backup: keep all WAL";
}

std::vector<WalArchive::Entry> archive_of(const std::vector<std::string>& files) {
    std::vector<WalArchive::Entry> entries;
    for (const std::string& file : files) {
        auto name = pg::WalFileName::parse(file);
        EXPECT_TRUE(name) << file;
        entries.push_back({file, *name, pg::kDefaultSegmentSize, {}});
    }
    return entries;
}

TEST(WalResume, StartsWherePgReceivewalDoesAndAGapIsOnlyWhatTheSlotNoLongerHolds) {
    constexpr uint64_t size = pg::kDefaultSegmentSize;
    EXPECT_EQ(archive_resume_segment({}, size), std::nullopt);
    EXPECT_EQ(archive_resume_segment(archive_of({"00000001.history"}), size), std::nullopt);
    // The newest partial is re-streamed from its start; after a complete
    // segment, the next one; a partial beside its completed twin counts as done.
    EXPECT_EQ(
        archive_resume_segment(
            archive_of({"000000010000000000000001", "00000001000000000000001C.partial"}), size),
        0x1CU);
    EXPECT_EQ(archive_resume_segment(
                  archive_of({"00000001000000000000001B", "00000001000000000000001C"}), size),
              0x1DU);
    EXPECT_EQ(
        archive_resume_segment(
            archive_of({"00000001000000000000001C", "00000001000000000000001C.partial"}), size),
        0x1DU);
    EXPECT_EQ(archive_resume_segment(archive_of({"0000000100000001000000FF"}), size), 0x200U);
    // Across timelines: the highest segment, whatever its timeline.
    EXPECT_EQ(
        archive_resume_segment(
            archive_of({"000000010000000000000009", "000000020000000000000007.partial"}), size),
        0xAU);

    EXPECT_FALSE(find_wal_gap(std::nullopt, 0x30)) << "an empty archive starts at the slot";
    EXPECT_FALSE(find_wal_gap(0x1C, 0x1C)) << "the slot holds the segment resumed at";
    EXPECT_FALSE(find_wal_gap(0x1D, 0x1C)) << "the slot holds more than needed";
    auto gap = find_wal_gap(0x1C, 0x1F);
    ASSERT_TRUE(gap);
    EXPECT_EQ(gap->first_missing, 0x1CU);
    EXPECT_EQ(gap->resumes_at, 0x1FU);
}

TEST(Timelines, RecoveryFollowsTheNewestDescendantAndReadsEachSegmentFromTheNewestBegunTimeline) {
    constexpr uint64_t size = pg::kDefaultSegmentSize;
    std::map<uint32_t, std::vector<pg::TimelineSwitch>> histories;
    EXPECT_EQ(timeline_path(histories, 1, size).target, 1U) << "no history: the base's timeline";
    EXPECT_EQ(timeline_path(histories, 1, size).timeline_of(0x40), 1U);
    // 2 left 1 at 0/5000100; 3 left 2 at 0/9000000; 4 left 1 (a sibling branch of 2).
    histories[2] = pg::parse_history("1\t0/5000100\tno recovery target specified\n");
    histories[3] = pg::parse_history(
        "1\t0/5000100\tno recovery target specified\n"
        "2\t0/9000000\tbefore 2026-12-05 00:00:00+00\n");
    TimelinePath from1 = timeline_path(histories, 1, size);
    EXPECT_EQ(from1.target, 3U);
    EXPECT_EQ(from1.timeline_of(0x4), 1U);
    EXPECT_EQ(from1.timeline_of(0x5), 2U) << "the segment holding the switch: the new timeline's";
    EXPECT_EQ(from1.timeline_of(0x8), 2U);
    EXPECT_EQ(from1.timeline_of(0x9), 3U);
    EXPECT_EQ(timeline_path(histories, 2, size).target, 3U);
    EXPECT_EQ(timeline_path(histories, 2, size).timeline_of(0x6), 2U);
    EXPECT_EQ(timeline_path(histories, 3, size).target, 3U) << "nothing descends from 3";
    histories[4] = pg::parse_history("3\t0/A000000\tx\n");  // not from 1 by this file
    EXPECT_EQ(timeline_path(histories, 2, size).target, 3U);
}

TEST(Timelines, OnlyABaseBackupOnTheNewestTimelinesHistoryCanReachIt) {
    auto base = [](const std::string& name, uint32_t timeline, const std::string& end) {
        BaseBackup b;
        b.name = name;
        b.timeline = timeline;
        b.end = *pg::Lsn::parse(end);
        return b;
    };
    const std::vector<BaseBackup> backups = {base("before-fork", 1, "0/3000100"),
                                             base("after-fork", 1, "0/7000100"),
                                             base("on-two", 2, "0/8000100")};
    std::map<uint32_t, std::vector<pg::TimelineSwitch>> histories;
    EXPECT_EQ(base_backups_on_newest_timeline(backups, histories).size(), 3U)
        << "one timeline: every base backup";
    histories[2] = pg::parse_history("1\t0/5000100\tx\n");
    std::vector<std::string> names;
    for (const BaseBackup& b : base_backups_on_newest_timeline(backups, histories)) {
        names.push_back(b.name);
    }
    EXPECT_EQ(names, (std::vector<std::string>{"before-fork", "on-two"}));
}

TEST(Timelines, AForkSetsAsideTheOldTimelinesFilesPastItAndResumesOnTheNewOne) {
    constexpr uint64_t size = pg::kDefaultSegmentSize;
    const auto entries = archive_of({"000000010000000000000004", "000000010000000000000005",
                                     "000000010000000000000006", "000000010000000000000007.partial",
                                     "00000001.history"});
    auto fork = plan_timeline_fork(entries, 1, pg::parse_history("1\t0/5000100\tx\n"), 2, size);
    ASSERT_TRUE(fork);
    EXPECT_EQ(fork->switch_point.text(), "0/5000100");
    EXPECT_EQ(fork->set_aside, (std::vector<std::string>{"000000010000000000000006",
                                                         "000000010000000000000007.partial"}));
    EXPECT_EQ(fork->resume_segment, "000000020000000000000005");
    // Two switches since (1, then 2, then 3): streaming resumes on 2, and
    // pg_receivewal follows 2's switch to 3 itself.
    auto hops = plan_timeline_fork(
        entries, 1, pg::parse_history("1\t0/5000100\tx\n2\t0/9000000\ty\n"), 3, size);
    ASSERT_TRUE(hops);
    EXPECT_EQ(hops->timeline, 2U);
    EXPECT_EQ(hops->resume_segment, "000000020000000000000005");
    // A server whose history never passed through the archive's timeline.
    EXPECT_FALSE(plan_timeline_fork(entries, 1, pg::parse_history("3\t0/5000100\tx\n"), 4, size));
}

}  // namespace
}  // namespace pgward

// The streamer's hang detection (StallWatch), on a clock the test moves:
// looks every timeout/4 (1-5 s), a stall is a quiet archive while the
// server has WAL for it, seen at least one look before.
class StallWatchTest : public ::testing::Test {
  protected:
    static constexpr uint64_t kSegment = uint64_t{16} << 20;

    // Looks every second from t0 for `seconds`; the first message, and when.
    std::optional<std::pair<int, std::string>> watch(
        StallWatch& stall, int seconds, const std::function<ArchiveMark(int)>& mark_at,
        const std::function<std::optional<pg::Lsn>(int)>& server_at) {
        for (int t = 0; t <= seconds; ++t) {
            auto said = stall.look(
                t0_ + std::chrono::seconds(t), [&] { return mark_at(t); },
                [&] {
                    ++server_asked_;
                    return server_at(t);
                });
            if (said) {
                return std::make_pair(t, *said);
            }
        }
        return std::nullopt;
    }

    static ArchiveMark quiet_mark(int /*t*/) { return ArchiveMark{3, {}}; }  // writing segment 3
    static pg::Lsn lsn(uint64_t value) { return pg::Lsn{value}; }

    StallWatch::Clock::time_point t0_ = StallWatch::Clock::now();
    int server_asked_ = 0;
};

TEST_F(StallWatchTest, AQuietArchiveWhileTheServerMovesOnIsAHangAfterTheTimeout) {
    StallWatch stall(std::chrono::seconds(8), kSegment);  // looks every 2 s
    const uint64_t in_segment_3 = 3 * kSegment + 0x100;
    auto hung = watch(stall, 60, quiet_mark, [&](int t) {
        return lsn(t < 4 ? in_segment_3 : in_segment_3 + 0x80);  // moves at 4 s
    });
    ASSERT_TRUE(hung);
    EXPECT_EQ(hung->first, 8);
    EXPECT_EQ(hung->second,
              "pg_receivewal wrote nothing for 8 s while the server flushed WAL up to 0/3000180 "
              "(stall timeout 8 s): killed as hung, to be started again");
    EXPECT_EQ(server_asked_, 4) << "asked at 2, 4, 6 and 8 s only";
}

TEST_F(StallWatchTest, AServerPastTheSegmentBeingWrittenHasWalForItAtOnce) {
    StallWatch stall(std::chrono::seconds(4), kSegment);  // looks every second
    auto hung = watch(stall, 60, quiet_mark, [](int) { return lsn(4 * kSegment + 0xD8); });
    ASSERT_TRUE(hung);
    EXPECT_EQ(hung->first, 4);
}

TEST_F(StallWatchTest, AQuietServerOrAWritingArchiveOrNoTimeoutIsNoHang) {
    const uint64_t in_segment_3 = 3 * kSegment + 0x100;
    StallWatch quiet(std::chrono::seconds(4), kSegment);
    EXPECT_FALSE(watch(quiet, 120, quiet_mark, [&](int) { return lsn(in_segment_3); }));

    EXPECT_EQ(server_asked_, 120) << "asked every second but the first";

    // Each look finds a newer write while the server keeps moving on.
    server_asked_ = 0;
    StallWatch writing(std::chrono::seconds(4), kSegment);
    EXPECT_FALSE(watch(
        writing, 120,
        [](int t) {
            return ArchiveMark{3, std::filesystem::file_time_type(std::chrono::seconds(t))};
        },
        [&](int t) { return lsn(in_segment_3 + static_cast<uint64_t>(t) * 0x100); }));
    EXPECT_EQ(server_asked_, 0) << "the server is asked only while the archive is quiet";

    StallWatch never(std::chrono::seconds(0), kSegment);
    EXPECT_FALSE(
        watch(never, 120, quiet_mark, [](int t) { return lsn(4 * kSegment + t * 0x100ULL); }));

    // A server that cannot be asked is no evidence of a hang.
    StallWatch unreachable(std::chrono::seconds(4), kSegment);
    EXPECT_FALSE(watch(unreachable, 120, quiet_mark, [](int) { return std::nullopt; }));
}

TEST_F(StallWatchTest, WalFlushedJustBeforeTheTimeoutGetsOneMoreLookToArrive) {
    StallWatch stall(std::chrono::seconds(8), kSegment);  // looks every 2 s
    const uint64_t in_segment_3 = 3 * kSegment + 0x100;
    // The server first seen moving at 10 s, after the 8 s of quiet: a hang at
    // the next look, not at once.
    auto hung = watch(stall, 60, quiet_mark,
                      [&](int t) { return lsn(t < 10 ? in_segment_3 : in_segment_3 + 0x80); });
    ASSERT_TRUE(hung);
    EXPECT_EQ(hung->first, 12);
}

}  // namespace
}  // namespace pgward
