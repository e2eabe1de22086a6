#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "domain/health.hpp"

namespace pgward {
namespace {

using std::chrono::seconds;

TimePoint at(const char* iso) {
    return *parse_iso_utc(iso);
}

ServiceState state() {
    ServiceState s;
    s.database = "quiz \"arena\"";
    s.interval_seconds = 3600;
    s.service_started_at = "2026-01-01T00:00:00Z";
    return s;
}

HealthPolicy policy() {
    HealthPolicy p;
    p.interval = seconds(3600);
    p.grace = seconds(600);
    return p;
}

TEST(Health, FreshBackupIsHealthy) {
    Health h =
        evaluate_health(state(), at("2026-01-01T01:00:00Z"), at("2026-01-01T02:00:00Z"), policy());
    EXPECT_TRUE(h.healthy);
    EXPECT_EQ(h.status, "ok");
}

TEST(Health, StaleAfterIntervalTimesOneAndAHalfPlusGrace) {
    // limit = 5400 + 600 = 6000 s
    EXPECT_EQ(policy().limit(), seconds(6000));
    auto newest = at("2026-01-01T00:00:00Z");
    EXPECT_TRUE(evaluate_health(state(), newest, newest + seconds(6000), policy()).healthy);
    Health h = evaluate_health(state(), newest, newest + seconds(6001), policy());
    EXPECT_FALSE(h.healthy);
    EXPECT_EQ(h.status, "stale");
    HealthPolicy strict = policy();
    strict.max_age = seconds(60);
    EXPECT_FALSE(evaluate_health(state(), newest, newest + seconds(61), strict).healthy);
}

TEST(Health, NoBackupIsHealthyOnlyWithinTheStartGrace) {
    Health starting = evaluate_health(state(), std::nullopt, at("2026-01-01T00:05:00Z"), policy());
    EXPECT_TRUE(starting.healthy);
    EXPECT_EQ(starting.status, "starting");
    Health late = evaluate_health(state(), std::nullopt, at("2026-01-01T00:20:00Z"), policy());
    EXPECT_FALSE(late.healthy);
    EXPECT_EQ(late.status, "no-backup");
    EXPECT_FALSE(
        evaluate_health(std::nullopt, std::nullopt, at("2026-01-01T00:00:01Z"), policy()).healthy);
}

TEST(Health, LastAttemptFailedIsUnhealthyEvenWithAFreshBackup) {
    ServiceState s = state();
    s.consecutive_failures = 2;
    s.last_failure_at = "2026-01-01T01:30:00Z";
    s.last_failure_reason = "cannot connect";
    Health h = evaluate_health(s, at("2026-01-01T01:00:00Z"), at("2026-01-01T01:31:00Z"), policy());
    EXPECT_FALSE(h.healthy);
    EXPECT_EQ(h.status, "failing");
    EXPECT_NE(h.reason.find("cannot connect"), std::string::npos);
}

TEST(Metrics, FollowPrometheusTextFormat) {
    ServiceState s = state();
    s.successes_total = 3;
    s.failures_total = 1;
    s.last_success_at = "2026-01-01T01:00:00Z";
    s.last_success_bytes = 1234;
    std::string text = render_metrics(s, Health{true, "ok", ""});
    std::istringstream lines(text);
    std::string line;
    std::regex help(R"(# HELP pgward_[a-z_]+ .+)");
    std::regex type(R"(# TYPE pgward_[a-z_]+ (gauge|counter))");
    std::regex sample(
        R"re(pgward_[a-z_]+\{database="(?:[^"\\]|\\.)*"(,result="(success|failure)")?\} -?[0-9.e+]+)re");
    int samples = 0;
    while (std::getline(lines, line)) {
        bool ok = std::regex_match(line, help) || std::regex_match(line, type) ||
                  std::regex_match(line, sample);
        EXPECT_TRUE(ok) << line;
        samples += line[0] != '#';
    }
    EXPECT_GE(samples, 9);
    EXPECT_NE(
        text.find("pgward_backups_total{database=\"quiz \\\"arena\\\"\",result=\"success\"} 3"),
        std::string::npos)
        << text;
    EXPECT_NE(
        text.find(
            "pgward_last_success_timestamp_seconds{database=\"quiz \\\"arena\\\"\"} 1767229200"),
        std::string::npos)
        << text;
    EXPECT_NE(text.find("# TYPE pgward_backups_total counter"), std::string::npos);
}

TEST(State, RoundTripsThroughJson) {
    ServiceState s = state();
    s.last_failure_reason = "x";
    s.consecutive_failures = 4;
    s.running = true;
    ServiceState back = state_from_json(state_to_json(s), "test");
    EXPECT_EQ(back.database, s.database);
    EXPECT_EQ(back.last_failure_reason, s.last_failure_reason);
    EXPECT_EQ(back.consecutive_failures, 4u);
    EXPECT_TRUE(back.running);
    EXPECT_THROW(state_from_json("{}", "test"), std::exception);
}

}  // namespace
}  // namespace pgward
