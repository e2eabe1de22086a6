// The pure parts of issue 17: the archive statements pgward reads (COPY
// column lists, SEQUENCE SET), lo1 over the fixtures, future-dated backups in
// retention and health, the watchdog's messages, SQL literals.
#include <gtest/gtest.h>

#include <thread>

#include "archive/statements.hpp"
#include "archive/summary.hpp"
#include "domain/health.hpp"
#include "domain/retention.hpp"
#include "domain/watchdog.hpp"
#include "pg/connection.hpp"
#include "util/error.hpp"

namespace pgward {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using archive::parse_copy_columns;
using archive::parse_setval;
using archive::SequenceValue;

const fs::path kFixtures = PGWARD_FIXTURES_DIR;

TEST(ArchiveStatements, CopyColumnListsAsPgDumpWritesThem) {
    using Columns = std::vector<std::string>;
    EXPECT_EQ(parse_copy_columns("COPY public.child (a, b, c) FROM stdin;\n"),
              (Columns{"a", "b", "c"}));
    EXPECT_EQ(parse_copy_columns(
                  "COPY \"Tenant \"\"7\"\" Ünïcode\".\"Table, (odd)\" (\"Col \"\"q\"\"\", \"ç\", "
                  "\"a, b\", x) FROM stdin;\n"),
              (Columns{"Col \"q\"", "ç", "a, b", "x"}));
    EXPECT_EQ(parse_copy_columns("COPY public.no_columns  FROM stdin;\n"), Columns{});
    EXPECT_EQ(parse_copy_columns("COPY public.t (\"FROM\", \"(\") FROM stdin;\n"),
              (Columns{"FROM", "("}));
    EXPECT_FALSE(parse_copy_columns("SELECT 1;").has_value());
    EXPECT_FALSE(parse_copy_columns("COPY public.t (a, \"unterminated) FROM stdin;").has_value());
    EXPECT_FALSE(parse_copy_columns("").has_value());
}

TEST(ArchiveStatements, SequenceSetValues) {
    EXPECT_EQ(parse_setval("SELECT pg_catalog.setval('public.s', 42, true);\n"),
              (SequenceValue{"public.s", 42, true}));
    EXPECT_EQ(parse_setval("SELECT pg_catalog.setval('public.\"Odd \"\"seq\"\" name\"', 1, "
                           "false);\n"),
              (SequenceValue{"public.\"Odd \"\"seq\"\" name\"", 1, false}));
    EXPECT_EQ(parse_setval("SELECT pg_catalog.setval('\"it''s\".s', -9223372036854775808, "
                           "true);\n"),
              (SequenceValue{"\"it's\".s", INT64_MIN, true}));
    EXPECT_FALSE(parse_setval("SELECT pg_catalog.setval('public.s', 12x, true);").has_value());
    EXPECT_FALSE(parse_setval("SELECT pg_catalog.setval('public.s, 1, true);").has_value());
    EXPECT_FALSE(parse_setval("CREATE TABLE t();").has_value());
}

TEST(LargeObjects, Lo1IsTheSameInEveryFixtureAndInTheParallelRead) {
    std::optional<std::string> first;
    for (const auto& entry : fs::directory_iterator(kFixtures)) {
        if (entry.path().extension() != ".dump") {
            continue;
        }
        SCOPED_TRACE(entry.path().filename().string());
        archive::ArchiveSummary s = archive::summarize_file(entry.path());
        EXPECT_EQ(s.large_objects, 3u);
        EXPECT_EQ(s.large_objects_content.rows(), 3u);
        std::string lo1 = s.large_objects_fingerprint();
        EXPECT_EQ(lo1.rfind("lo1:", 0), 0u);
        EXPECT_EQ(lo1.size(), 4u + 32u);
        EXPECT_NE(lo1, "lo1:00000000000000000000000000000000");
        if (!first) {
            first = lo1;
        }
        // The content, not the compression or the pg_dump version, decides it.
        EXPECT_EQ(lo1, *first);
        archive::ArchiveSummary parallel = archive::summarize_file_parallel(entry.path(), 2);
        EXPECT_EQ(parallel.large_objects_fingerprint(), lo1);
        EXPECT_EQ(parallel.sequences, s.sequences);
        for (const archive::TableSummary& t : s.tables) {
            ASSERT_TRUE(t.columns.has_value()) << t.schema << "." << t.name;
            EXPECT_FALSE(t.columns->empty()) << t.schema << "." << t.name;
        }
    }
    ASSERT_TRUE(first.has_value());
}

TEST(LargeObjects, TheHashCoversOidAndContentAndIgnoresOrderAndChunking) {
    auto lo1 = [](const std::vector<std::pair<uint32_t, std::vector<std::string>>>& objects) {
        archive::TableFingerprint fp;
        archive::LargeObjectHasher hasher(fp);
        for (const auto& [oid, chunks] : objects) {
            hasher.begin(oid);
            for (const std::string& c : chunks) {
                hasher.feed(c.data(), c.size());
            }
            hasher.end();
        }
        return archive::large_objects_fingerprint_text(fp);
    };
    std::string a = lo1({{16400, {"hello ", "world"}}, {16401, {""}}});
    EXPECT_EQ(a, lo1({{16401, {}}, {16400, {"hello world"}}}));
    EXPECT_NE(a, lo1({{16400, {"hello world"}}, {16402, {""}}}));  // another oid
    EXPECT_NE(a, lo1({{16400, {"hello worle"}}, {16401, {""}}}));  // another byte
    EXPECT_NE(a, lo1({{16400, {"hello world"}}}));                 // one missing
}

BackupId id_at(const std::string& iso) {
    return BackupId{"app", parse_iso_utc(iso).value()};
}

TEST(FutureDated, RetentionRanksABackupDatedAfterTheClockAsTheOldest) {
    TimePoint now = parse_iso_utc("2026-12-02T12:00:00Z").value();
    auto plan = plan_retention({id_at("2026-12-01T12:00:00Z"), id_at("2099-01-01T00:00:00Z"),
                                id_at("2026-12-02T11:00:00Z"), id_at("2026-12-02T12:04:00Z")},
                               2, now);
    ASSERT_EQ(plan.size(), 4u);
    EXPECT_EQ(format_iso_utc(plan[0].id.started), "2026-12-02T12:04:00Z");  // within tolerance
    EXPECT_TRUE(plan[0].keep);
    EXPECT_EQ(format_iso_utc(plan[1].id.started), "2026-12-02T11:00:00Z");
    EXPECT_TRUE(plan[1].keep);
    EXPECT_FALSE(plan[2].keep);
    EXPECT_EQ(format_iso_utc(plan[3].id.started), "2099-01-01T00:00:00Z");
    EXPECT_FALSE(plan[3].keep);
    EXPECT_EQ(plan[3].reason,
              "dated after the clock (2026-12-02T12:00:00Z), so ranked as the oldest");
}

TEST(FutureDated, HealthSaysSoAndNeverCountsItAsFresh) {
    HealthPolicy policy;
    TimePoint now = parse_iso_utc("2026-12-02T12:00:00Z").value();
    Health only_future =
        evaluate_health(std::nullopt, std::nullopt, now, policy, {"app_20990101T000000Z.dump"});
    EXPECT_FALSE(only_future.healthy);
    EXPECT_EQ(only_future.status, "future-dated");
    EXPECT_EQ(only_future.future_dated, 1u);
    EXPECT_EQ(only_future.reason,
              "1 backup(s) dated after the clock (2026-12-02T12:00:00Z): "
              "app_20990101T000000Z.dump; they never count as fresh");
    Health stale =
        evaluate_health(std::nullopt, now - 30 * 24h, now, policy, {"app_20990101T000000Z.dump"});
    EXPECT_EQ(stale.status, "stale");  // the worse news first
    EXPECT_EQ(stale.future_dated, 1u);
    Health fresh = evaluate_health(std::nullopt, now - 1h, now, policy);
    EXPECT_TRUE(fresh.healthy);
    EXPECT_EQ(fresh.reason, "the newest backup finished 1h 0m ago (2026-12-02T11:00:00Z)");
}

TEST(WatchdogMessages, TimeoutAndStallNameTheOperationAndTheChild) {
    Watchdog idle({std::nullopt, std::nullopt}, {"backup of \"app\"", "pg_dump", "x", "y"});
    EXPECT_NO_THROW(idle.check());

    Watchdog timed({0s, std::nullopt},
                   {"backup of \"app\"", "pg_dump", "pg_dump of \"app\"", "no bytes"});
    std::this_thread::sleep_for(1100ms);
    try {
        timed.check();
        ADD_FAILURE() << "no timeout";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "backup of \"app\" timed out after 0 s; pg_dump was killed");
    }

    Watchdog stalled({std::nullopt, 1s}, {"restore into \"app\"", "pg_restore",
                                          "pg_restore into \"app\"", "no bytes read"});
    std::this_thread::sleep_for(600ms);
    stalled.progress();
    std::this_thread::sleep_for(600ms);
    EXPECT_NO_THROW(stalled.check());  // progress 600 ms ago
    std::this_thread::sleep_for(600ms);
    try {
        stalled.check();
        ADD_FAILURE() << "no stall";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(),
                     "pg_restore into \"app\" stalled: no bytes read for 1 s; it was killed");
    }
}

TEST(SqlLiterals, QuotedTheSameWhateverStandardConformingStringsSays) {
    EXPECT_EQ(pg::quote_literal("UTF8"), "'UTF8'");
    EXPECT_EQ(pg::quote_literal("it's"), "'it''s'");
    EXPECT_EQ(pg::quote_literal("a\\b'c"), "E'a\\\\b''c'");
    EXPECT_EQ(pg::quote_literal(""), "''");
}

}  // namespace
}  // namespace pgward
