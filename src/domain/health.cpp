#include "domain/health.hpp"

#include <fmt/format.h>

namespace pgward {
namespace {

std::string label_value(const std::string& value) {
    std::string out;
    for (char c : value) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

double unix_seconds(const std::optional<std::string>& iso) {
    if (!iso) {
        return 0;
    }
    auto t = parse_iso_utc(*iso);
    return t ? static_cast<double>(t->time_since_epoch().count()) : 0;
}

}  // namespace

std::chrono::seconds HealthPolicy::limit() const {
    if (max_age) {
        return *max_age;
    }
    return std::chrono::seconds(interval.count() * 3 / 2) + grace;
}

Health evaluate_health(const std::optional<ServiceState>& state,
                       std::optional<TimePoint> newest_backup, TimePoint now,
                       const HealthPolicy& policy) {
    if (state && state->consecutive_failures > 0) {
        return {false, "failing",
                fmt::format("the last {} backup attempt(s) failed, the latest at {}: {}",
                            state->consecutive_failures, state->last_failure_at.value_or("?"),
                            state->last_failure_reason.value_or("unknown reason"))};
    }
    if (state && state->last_drill_success == false) {
        return {false, "drill-failing",
                fmt::format("the last restore drill of a backup failed at {}: {} (report {})",
                            state->last_drill_at.value_or("?"),
                            state->last_drill_failure.value_or("unknown reason"),
                            state->last_drill_report.value_or("none"))};
    }
    if (!newest_backup) {
        if (state) {
            auto started = parse_iso_utc(state->service_started_at);
            if (started && now - *started <= policy.grace) {
                return {true, "starting",
                        "no backup yet; the service started within the grace period"};
            }
        }
        return {false, "no-backup", "no successful backup yet"};
    }
    auto age = std::chrono::duration_cast<std::chrono::seconds>(now - *newest_backup);
    if (age > policy.limit()) {
        return {
            false, "stale",
            fmt::format("the newest backup started {} ago ({}), more than the limit of {} s",
                        format_age(age), format_iso_utc(*newest_backup), policy.limit().count())};
    }
    return {true, "ok",
            fmt::format("the newest backup started {} ago ({})", format_age(age),
                        format_iso_utc(*newest_backup))};
}

std::string render_metrics(const ServiceState& s, const Health& health) {
    std::string db = fmt::format("database=\"{}\"", label_value(s.database));
    std::string out;
    auto gauge = [&](const char* name, const char* help, const std::string& labels, double value,
                     const char* type = "gauge") {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}{{{}}} {}\n", name, help, name, type,
                           name, labels, value);
    };
    gauge("pgward_last_success_timestamp_seconds",
          "Unix time the newest successful backup started (0: none yet).", db,
          unix_seconds(s.last_success_at));
    gauge("pgward_last_failure_timestamp_seconds",
          "Unix time of the last failed attempt (0: none).", db, unix_seconds(s.last_failure_at));
    gauge("pgward_last_backup_duration_seconds", "Duration of the last successful backup.", db,
          s.last_success_duration_seconds);
    gauge("pgward_last_backup_size_bytes", "Size of the last successful backup's archive.", db,
          static_cast<double>(s.last_success_bytes));
    gauge("pgward_backups_retained", "Backups of the database kept in the directory.", db,
          static_cast<double>(s.retained_count));
    gauge("pgward_consecutive_failures", "Failed attempts since the last success.", db,
          static_cast<double>(s.consecutive_failures));
    out += "# HELP pgward_backups_total Backup attempts since the state file was created.\n";
    out += "# TYPE pgward_backups_total counter\n";
    out += fmt::format("pgward_backups_total{{{},result=\"success\"}} {}\n", db, s.successes_total);
    out += fmt::format("pgward_backups_total{{{},result=\"failure\"}} {}\n", db, s.failures_total);
    gauge("pgward_backup_running", "1 while a backup is running.", db, s.running ? 1 : 0);
    gauge("pgward_last_drill_timestamp_seconds",
          "Unix time of the last scheduled restore drill (0: none yet).", db,
          unix_seconds(s.last_drill_at));
    gauge("pgward_last_drill_success", "1 when the last restore drill proved the backup restores.",
          db, s.last_drill_success.value_or(false) ? 1 : 0);
    out +=
        "# HELP pgward_drills_total Scheduled restore drills since the state file was created.\n";
    out += "# TYPE pgward_drills_total counter\n";
    out += fmt::format("pgward_drills_total{{{},result=\"success\"}} {}\n", db,
                       s.drills_succeeded_total);
    out +=
        fmt::format("pgward_drills_total{{{},result=\"failure\"}} {}\n", db, s.drills_failed_total);
    gauge("pgward_healthy", "1 when the freshness check passes.", db, health.healthy ? 1 : 0);
    return out;
}

}  // namespace pgward
