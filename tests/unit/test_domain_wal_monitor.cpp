// How `run --wal` judges its streamer from what the server shows: when it
// counts as stopped, behind, or broken, and when a slot may be dropped.
#include <gtest/gtest.h>

#include "domain/health.hpp"
#include "domain/wal_monitor.hpp"

namespace pgward {
namespace {

TimePoint at(const char* iso) {
    return *parse_iso_utc(iso);
}

WalStreamState streaming_since(const char* iso) {
    WalStreamState s;
    s.slot = "pgward";
    s.streaming = true;
    s.since = iso;
    return s;
}

WalServerView active(uint64_t lag) {
    WalServerView v;
    v.slot_exists = true;
    v.active = true;
    v.lag_bytes = lag;
    v.lag_seconds = 0.5;
    v.retained_bytes = 1 << 20;
    v.wal_status = "reserved";
    return v;
}

TEST(WalMonitor, AStreamerThatKeepsUpHasNoProblem) {
    WalStreamState after = judge_wal_stream(streaming_since("2026-12-04T10:00:00Z"), active(8192),
                                            "", at("2026-12-04T10:05:00Z"), WalWatchPolicy{});
    EXPECT_FALSE(after.problem);
    EXPECT_TRUE(after.streaming);
    EXPECT_EQ(after.since, "2026-12-04T10:00:00Z") << "since changes only when streaming does";
    EXPECT_EQ(after.lag_bytes, 8192U);
    EXPECT_EQ(after.checked_at, "2026-12-04T10:05:00Z");
}

TEST(WalMonitor, NotStreamingIsAProblemOnlyAfterTheLimit) {
    WalServerView idle = active(0);
    idle.active = false;
    idle.lag_seconds.reset();
    WalWatchPolicy policy;
    policy.stopped_limit = std::chrono::seconds(60);
    WalStreamState s = judge_wal_stream(streaming_since("2026-12-04T10:00:00Z"), idle, "",
                                        at("2026-12-04T10:05:00Z"), policy);
    EXPECT_FALSE(s.streaming);
    EXPECT_EQ(s.since, "2026-12-04T10:05:00Z");
    EXPECT_FALSE(s.problem) << "just stopped: pg_receivewal is restarted within seconds";
    s = judge_wal_stream(s, idle, "", at("2026-12-04T10:06:00Z"), policy);
    EXPECT_FALSE(s.problem) << "exactly the limit";
    s = judge_wal_stream(s, idle, "", at("2026-12-04T10:06:01Z"), policy);
    ASSERT_TRUE(s.problem);
    EXPECT_EQ(*s.problem,
              "WAL has not been streamed since 2026-12-04T10:05:00Z; the server keeps 1.0 MiB for "
              "the slot \"pgward\"");
}

TEST(WalMonitor, FallingBehindAMissingSlotAndLostWalAreNamed) {
    WalWatchPolicy policy;
    policy.lag_limit_bytes = 16 << 20;
    const WalStreamState before = streaming_since("2026-12-04T10:00:00Z");
    const TimePoint now = at("2026-12-04T10:00:10Z");
    auto behind = judge_wal_stream(before, active(32 << 20), "", now, policy);
    ASSERT_TRUE(behind.problem);
    EXPECT_EQ(*behind.problem,
              "WAL streaming is 32.0 MiB behind the server (0 s), more than the limit of 16.0 MiB");
    EXPECT_FALSE(judge_wal_stream(before, active(16 << 20), "", now, policy).problem);

    WalServerView gone;
    WalStreamState seen = before;
    seen.slot_exists = true;
    auto missing = judge_wal_stream(seen, gone, "", now, policy);
    ASSERT_TRUE(missing.problem);
    EXPECT_TRUE(missing.problem->starts_with("the replication slot \"pgward\" does not exist"))
        << *missing.problem;
    EXPECT_FALSE(missing.slot_exists);
    EXPECT_TRUE(judge_wal_stream(missing, gone, "", now, policy).problem)
        << "still gone: still a problem, no recovery in between";

    WalServerView lost = active(0);
    lost.wal_status = "lost";
    auto gap = judge_wal_stream(before, lost, "", now, policy);
    ASSERT_TRUE(gap.problem);
    EXPECT_TRUE(gap.problem->find("wal_status lost") != std::string::npos) << *gap.problem;
}

// At start the streamer has not made its slot yet: no alarm until the
// stopped limit, which a slot that never appears then passes.
TEST(WalMonitor, ASlotNotMadeYetAtStartIsNoProblemUntilTheLimit) {
    WalStreamState start;
    start.slot = "pgward";
    start.since = "2026-12-04T10:00:00Z";
    WalWatchPolicy policy;
    WalServerView none;
    auto first = judge_wal_stream(start, none, "", at("2026-12-04T10:00:01Z"), policy);
    EXPECT_FALSE(first.problem);
    auto later = judge_wal_stream(first, none, "", at("2026-12-04T10:01:01Z"), policy);
    ASSERT_TRUE(later.problem);
    EXPECT_TRUE(later.problem->starts_with("the replication slot \"pgward\" does not exist"));
}

TEST(WalMonitor, AServerThatCannotBeAskedIsAProblemAfterTheLimit) {
    WalStreamState s = streaming_since("2026-12-04T10:00:00Z");
    s.checked_at = "2026-12-04T10:00:00Z";
    WalWatchPolicy policy;
    auto soon =
        judge_wal_stream(s, std::nullopt, "connection refused", at("2026-12-04T10:00:30Z"), policy);
    EXPECT_FALSE(soon.problem);
    EXPECT_EQ(soon.checked_at, "2026-12-04T10:00:00Z") << "not checked: kept as it was";
    auto later = judge_wal_stream(soon, std::nullopt, "connection refused",
                                  at("2026-12-04T10:01:01Z"), policy);
    ASSERT_TRUE(later.problem);
    EXPECT_EQ(*later.problem,
              "cannot check WAL streaming since 2026-12-04T10:00:00Z: connection refused");
}

TEST(WalMonitor, ASlotIsDroppedOnlyWhenAskedIdleLongEnoughAndOverTheLimit) {
    WalWatchPolicy policy;
    WalServerView idle = active(0);
    idle.active = false;
    idle.retained_bytes = 2ULL << 30;
    WalStreamState stopped = streaming_since("2026-12-04T10:00:00Z");
    stopped.streaming = false;
    const TimePoint later = at("2026-12-04T10:05:00Z");
    EXPECT_FALSE(should_drop_slot(idle, stopped, later, policy)) << "report only by default";
    policy.drop_slot_over_bytes = 1ULL << 30;
    EXPECT_TRUE(should_drop_slot(idle, stopped, later, policy));
    EXPECT_FALSE(should_drop_slot(idle, stopped, at("2026-12-04T10:00:30Z"), policy))
        << "a pg_receivewal restarting is no reason";
    EXPECT_FALSE(should_drop_slot(idle, streaming_since("2026-12-04T10:00:00Z"), later, policy))
        << "it was streaming at the last look";
    idle.retained_bytes = 1ULL << 30;
    EXPECT_FALSE(should_drop_slot(idle, stopped, later, policy)) << "at the limit";
    WalServerView busy = active(0);
    busy.retained_bytes = 2ULL << 30;
    EXPECT_FALSE(should_drop_slot(busy, stopped, later, policy)) << "never while streaming";
}

TEST(WalMonitor, EachKindOfProblemIsNamedSoAWorseOneIsAlertedAgain) {
    WalWatchPolicy policy;
    WalStreamState s = streaming_since("2026-12-04T10:00:00Z");
    s.slot_exists = true;
    WalServerView idle = active(0);
    idle.active = false;
    s = judge_wal_stream(s, idle, "", at("2026-12-04T10:00:01Z"), policy);
    s.stopped_because = "pg_receivewal: error: could not open ...: No space left on device";
    s = judge_wal_stream(s, idle, "", at("2026-12-04T10:02:00Z"), policy);
    EXPECT_EQ(s.problem_kind, "stopped");
    EXPECT_TRUE(s.problem->ends_with(
        " (pg_receivewal said: pg_receivewal: error: could not open ...: No space left on device)"))
        << *s.problem;
    idle.wal_status = "lost";
    s = judge_wal_stream(s, idle, "", at("2026-12-04T10:03:00Z"), policy);
    EXPECT_EQ(s.problem_kind, "wal-lost");
    EXPECT_TRUE(s.problem->find("the archive has a gap") != std::string::npos) << *s.problem;
    s = judge_wal_stream(s, active(0), "", at("2026-12-04T10:04:00Z"), policy);
    EXPECT_FALSE(s.problem_kind);
    EXPECT_FALSE(s.stopped_because) << "streaming again: the reason is history";

    // A gap the streamer resumed past stays a problem, streaming well or
    // not, until a base backup after it clears it; other problems come first.
    s.gap = "WAL gap: the server no longer has the WAL from segment A up to B";
    s = judge_wal_stream(s, active(0), "", at("2026-12-04T10:05:00Z"), policy);
    EXPECT_EQ(s.problem_kind, "wal-gap");
    EXPECT_EQ(s.problem, s.gap);
    s = judge_wal_stream(s, idle, "", at("2026-12-04T10:06:00Z"), policy);
    EXPECT_EQ(s.problem_kind, "wal-lost");
    s = judge_wal_stream(s, active(0), "", at("2026-12-04T10:07:00Z"), policy);
    EXPECT_EQ(s.problem_kind, "wal-gap");
    s.gap.reset();
    s = judge_wal_stream(s, active(0), "", at("2026-12-04T10:08:00Z"), policy);
    EXPECT_FALSE(s.problem_kind);
}

TEST(WalMonitor, LagTheRoleMayNotSeeIsUnknownNotZero) {
    WalServerView hidden = active(0);
    hidden.lag_bytes.reset();
    hidden.lag_seconds.reset();
    ServiceState s;
    s.database = "app";
    s.wal = judge_wal_stream(streaming_since("2026-12-04T10:00:00Z"), hidden, "",
                             at("2026-12-04T10:00:05Z"), WalWatchPolicy{});
    EXPECT_FALSE(s.wal->lag_bytes);
    EXPECT_FALSE(s.wal->problem);
    const std::string metrics = render_metrics(s, Health{true, "ok", "", 0});
    EXPECT_EQ(metrics.find("pgward_wal_lag_bytes"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("pgward_wal_streaming{database=\"app\"} 1"), std::string::npos);
}

TEST(WalMonitor, StateHealthAndMetricsCarryIt) {
    ServiceState s;
    s.database = "app";
    s.service_started_at = "2026-12-04T10:00:00Z";
    s.wal = streaming_since("2026-12-04T10:00:00Z");
    s.wal->lag_bytes = 4096;
    s.wal->lag_seconds = 0.25;
    s.wal->slot_retained_bytes = 1 << 20;
    s.wal->alerts_total = 2;
    s.wal->gap = "WAL gap: A to B";
    s.wal->gap_at = "2026-12-04T10:01:00Z";
    s.wal->timeline_switch = "the server moved to timeline 2";
    s.wal->timeline_switch_at = "2026-12-04T10:02:00Z";
    ServiceState back = state_from_json(state_to_json(s), "test");
    ASSERT_TRUE(back.wal);
    EXPECT_EQ(back.wal->lag_bytes, 4096U);
    EXPECT_EQ(back.wal->lag_seconds, 0.25);
    EXPECT_EQ(back.wal->alerts_total, 2U);
    EXPECT_EQ(back.wal->gap, "WAL gap: A to B");
    EXPECT_EQ(back.wal->gap_at, "2026-12-04T10:01:00Z");
    EXPECT_EQ(back.wal->timeline_switch, "the server moved to timeline 2");
    EXPECT_EQ(back.wal->timeline_switch_at, "2026-12-04T10:02:00Z");
    // A switch is news, not a problem.
    s.wal->gap.reset();
    s.wal->gap_at.reset();
    EXPECT_FALSE(state_from_json(state_to_json(ServiceState{}), "test").wal);

    HealthPolicy policy;
    const TimePoint now = at("2026-12-04T10:10:00Z");
    EXPECT_TRUE(evaluate_health(s, now, now, policy).healthy);
    s.wal->problem = "WAL has not been streamed since X";
    Health h = evaluate_health(s, now, now, policy);
    EXPECT_FALSE(h.healthy);
    EXPECT_EQ(h.status, "wal-failing");
    EXPECT_EQ(h.reason, "WAL has not been streamed since X");
    const std::string metrics = render_metrics(s, h);
    EXPECT_NE(metrics.find("pgward_wal_lag_bytes{database=\"app\"} 4096\n"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("pgward_wal_healthy{database=\"app\"} 0\n"), std::string::npos);
    EXPECT_NE(metrics.find("# TYPE pgward_wal_alerts_total counter"), std::string::npos);
}

TEST(WalMonitor, TheOffsiteCopyOfTheWalIsInTheStateHealthAndMetrics) {
    ServiceState s;
    s.database = "app";
    s.service_started_at = "2026-12-04T10:00:00Z";
    s.remote = "s3://bucket/prod/";
    s.last_remote_success_at = "2026-12-04T10:05:00Z";
    s.wal = streaming_since("2026-12-04T10:00:00Z");
    s.wal->offsite_newest = "000000010000000000000007";
    s.wal->offsite_at = "2026-12-04T10:06:00Z";
    ServiceState back = state_from_json(state_to_json(s), "test");
    ASSERT_TRUE(back.wal);
    EXPECT_EQ(back.wal->offsite_newest, "000000010000000000000007");
    EXPECT_EQ(back.wal->offsite_at, "2026-12-04T10:06:00Z");
    EXPECT_FALSE(back.wal->offsite_failure);

    HealthPolicy policy;
    const TimePoint now = at("2026-12-04T10:10:00Z");
    Health h = evaluate_health(s, now, now, policy);
    EXPECT_TRUE(h.healthy) << h.reason;
    std::string metrics = render_metrics(s, h);
    EXPECT_NE(metrics.find("pgward_wal_offsite_healthy{database=\"app\"} 1\n"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("pgward_wal_offsite_last_success_timestamp_seconds{database=\"app\"} "
                           "1796378760\n"),
              std::string::npos)
        << metrics;

    s.wal->offsite_failure = "copying the WAL and base backups to s3://bucket/prod/: HTTP 503";
    s.wal->offsite_failure_at = "2026-12-04T10:09:00Z";
    s.wal->offsite_failures = 3;
    back = state_from_json(state_to_json(s), "test");
    EXPECT_EQ(back.wal->offsite_failure, s.wal->offsite_failure);
    EXPECT_EQ(back.wal->offsite_failure_at, "2026-12-04T10:09:00Z");
    EXPECT_EQ(back.wal->offsite_failures, 3U);
    h = evaluate_health(s, now, now, policy);
    EXPECT_FALSE(h.healthy);
    EXPECT_EQ(h.status, "wal-offsite-failing");
    EXPECT_EQ(h.reason,
              "the last 3 offsite cop(y/ies) of the WAL and base backups failed, the latest at "
              "2026-12-04T10:09:00Z: copying the WAL and base backups to s3://bucket/prod/: HTTP "
              "503 (the local archive is kept)");
    metrics = render_metrics(s, h);
    EXPECT_NE(metrics.find("pgward_wal_offsite_healthy{database=\"app\"} 0\n"), std::string::npos)
        << metrics;
    // A streaming problem is told first: without WAL there is nothing to copy.
    s.wal->problem = "WAL has not been streamed since X";
    EXPECT_EQ(evaluate_health(s, now, now, policy).status, "wal-failing");
}

TEST(WalMonitor, AFailingScheduledBaseBackupIsInTheStateHealthAndMetrics) {
    ServiceState s;
    s.database = "app";
    s.service_started_at = "2026-12-04T10:00:00Z";
    s.wal = streaming_since("2026-12-04T10:00:00Z");
    s.wal->base_failure = "pg_basebackup: error: could not create directory";
    s.wal->base_failure_at = "2026-12-04T10:09:00Z";
    s.wal->base_failures = 2;
    ServiceState back = state_from_json(state_to_json(s), "test");
    EXPECT_EQ(back.wal->base_failure, s.wal->base_failure);
    EXPECT_EQ(back.wal->base_failures, 2U);
    const TimePoint now = at("2026-12-04T10:10:00Z");
    Health h = evaluate_health(s, now, now, HealthPolicy{});
    EXPECT_EQ(h.status, "base-backup-failing");
    EXPECT_EQ(h.reason,
              "the last 2 scheduled base backup(s) failed, the latest at 2026-12-04T10:09:00Z: "
              "pg_basebackup: error: could not create directory (recovery still starts from the "
              "older ones)");
    EXPECT_NE(render_metrics(s, h).find("pgward_base_backup_healthy{database=\"app\"} 0\n"),
              std::string::npos);
    s.wal->base_failure.reset();
    h = evaluate_health(s, now, now, HealthPolicy{});
    EXPECT_TRUE(h.healthy) << h.reason;
    EXPECT_NE(render_metrics(s, h).find("pgward_base_backup_healthy{database=\"app\"} 1\n"),
              std::string::npos);
}

}  // namespace
}  // namespace pgward
