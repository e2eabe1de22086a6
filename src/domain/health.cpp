#include "domain/health.hpp"

#include <fmt/format.h>

#include "domain/manifest.hpp"
#include "util/error.hpp"

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

Health evaluate_health_of_real_backups(const std::optional<ServiceState>& state,
                                       std::optional<TimePoint> newest_backup, TimePoint now,
                                       const HealthPolicy& policy);

Freshness assess_freshness(const std::vector<BackupEntry>& newest_first, TimePoint now) {
    Freshness out;
    for (const BackupEntry& e : newest_first) {
        if (is_future_dated(e.id, now)) {
            out.future_dated.push_back(e.dump_path.filename().string());
            continue;
        }
        if (!e.has_manifest || out.newest_finished) {
            continue;
        }
        try {
            Manifest m = read_manifest(e.dump_path.parent_path() / e.id.manifest_file());
            auto finished = parse_iso_utc(m.finished_at);
            if (finished && *finished > now + kFutureTolerance) {
                out.future_dated.push_back(e.dump_path.filename().string());
                continue;
            }
            out.newest_finished = finished.value_or(e.id.started);
        } catch (const Error&) {
            // a damaged manifest is `verify`'s to report; it proves no freshness
        }
    }
    return out;
}

Health evaluate_health(const std::optional<ServiceState>& state,
                       std::optional<TimePoint> newest_backup, TimePoint now,
                       const HealthPolicy& policy, const std::vector<std::string>& future_dated) {
    Health h = evaluate_health_of_real_backups(state, newest_backup, now, policy);
    h.future_dated = future_dated.size();
    if (!future_dated.empty() && (h.healthy || h.status == "no-backup")) {
        std::string names;
        for (const std::string& n : future_dated) {
            names += (names.empty() ? "" : ", ") + n;
        }
        h = {false, "future-dated",
             fmt::format("{} backup(s) dated after the clock ({}): {}; they never count as fresh{}",
                         future_dated.size(), format_iso_utc(now), names,
                         newest_backup ? "; " + h.reason : std::string()),
             future_dated.size()};
    }
    return h;
}

Health evaluate_health_of_real_backups(const std::optional<ServiceState>& state,
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
    if (state && state->wal && state->wal->problem) {
        return {false, "wal-failing", *state->wal->problem};
    }
    if (state && state->wal && state->wal->base_failure) {
        return {false, "base-backup-failing",
                fmt::format("the last {} scheduled base backup(s) failed, the latest at {}: {} "
                            "(recovery still starts from the older ones)",
                            state->wal->base_failures, state->wal->base_failure_at.value_or("?"),
                            *state->wal->base_failure)};
    }
    if (state && state->wal && state->wal->offsite_failure) {
        return {
            false, "wal-offsite-failing",
            fmt::format("the last {} offsite cop(y/ies) of the WAL and base backups failed, "
                        "the latest at {}: {} (the local archive is kept)",
                        state->wal->offsite_failures, state->wal->offsite_failure_at.value_or("?"),
                        *state->wal->offsite_failure)};
    }
    if (state && state->remote) {
        if (state->remote_consecutive_failures > 0) {
            return {false, "offsite-failing",
                    fmt::format("the last {} offsite cop(y/ies) to {} failed, the latest at {}: "
                                "{} (the local backups are kept)",
                                state->remote_consecutive_failures, *state->remote,
                                state->last_remote_failure_at.value_or("?"),
                                state->last_remote_failure_reason.value_or("unknown reason"))};
        }
        std::optional<TimePoint> copied;
        if (state->last_remote_success_at) {
            copied = parse_iso_utc(*state->last_remote_success_at);
        }
        if (!copied.has_value()) {
            auto started = parse_iso_utc(state->service_started_at);
            if (!(started && now - *started <= policy.grace)) {
                return {false, "offsite-none",
                        fmt::format("no backup has been copied to {} and proven there yet",
                                    *state->remote)};
            }
        } else {
            const auto age = std::chrono::duration_cast<std::chrono::seconds>(now - copied.value());
            if (age > policy.remote_limit()) {
                return {false, "offsite-stale",
                        fmt::format("the newest proven offsite copy in {} was made {} ago ({}), "
                                    "more than the limit of {} s",
                                    *state->remote, format_age(age), *state->last_remote_success_at,
                                    policy.remote_limit().count())};
            }
        }
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
            fmt::format("the newest backup finished {} ago ({}), more than the limit of {} s",
                        format_age(age), format_iso_utc(*newest_backup), policy.limit().count())};
    }
    return {true, "ok",
            fmt::format("the newest backup finished {} ago ({})", format_age(age),
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
    gauge("pgward_future_dated_backups",
          "Backups dated after the clock: never fresh; check the clock.", db,
          static_cast<double>(health.future_dated));
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
    if (s.remote) {
        gauge("pgward_remote_last_success_timestamp_seconds",
              "Unix time the newest offsite copy was proven in the remote store (0: none yet).", db,
              unix_seconds(s.last_remote_success_at));
        gauge("pgward_remote_last_failure_timestamp_seconds",
              "Unix time of the last failed offsite copy (0: none).", db,
              unix_seconds(s.last_remote_failure_at));
        gauge("pgward_remote_last_duration_seconds",
              "Duration of the last offsite copy, its proof included.", db,
              s.last_remote_duration_seconds);
        gauge("pgward_remote_consecutive_failures", "Failed offsite copies since the last one.", db,
              static_cast<double>(s.remote_consecutive_failures));
        out += "# HELP pgward_remote_uploaded_bytes_total Bytes copied to the remote store.\n";
        out += "# TYPE pgward_remote_uploaded_bytes_total counter\n";
        out +=
            fmt::format("pgward_remote_uploaded_bytes_total{{{}}} {}\n", db, s.remote_bytes_total);
        out += "# HELP pgward_remote_copies_total Offsite copy attempts.\n";
        out += "# TYPE pgward_remote_copies_total counter\n";
        out += fmt::format("pgward_remote_copies_total{{{},result=\"success\"}} {}\n", db,
                           s.remote_successes_total);
        out += fmt::format("pgward_remote_copies_total{{{},result=\"failure\"}} {}\n", db,
                           s.remote_failures_total);
    }
    if (s.wal) {
        const WalStreamState& w = *s.wal;
        gauge("pgward_wal_streaming", "1 while pg_receivewal streams on the slot.", db,
              w.streaming ? 1 : 0);
        if (w.lag_bytes) {  // unknown without pg_read_all_stats: no sample, not 0
            gauge("pgward_wal_lag_bytes",
                  "Bytes of WAL the server has flushed and the archive has not (last look).", db,
                  static_cast<double>(*w.lag_bytes));
            gauge("pgward_wal_lag_seconds", "pg_stat_replication's flush_lag of the streamer.", db,
                  w.lag_seconds.value_or(0));
        }
        gauge("pgward_wal_slot_retained_bytes",
              "WAL the server keeps for pgward's replication slot.", db,
              static_cast<double>(w.slot_retained_bytes.value_or(0)));
        gauge("pgward_wal_healthy", "1 when WAL streaming has no problem.", db, w.problem ? 0 : 1);
        gauge("pgward_wal_alerts_total", "WAL streaming problems alerted.", db,
              static_cast<double>(w.alerts_total), "counter");
        gauge("pgward_base_backup_healthy", "1 when the last scheduled base backup succeeded.", db,
              w.base_failure ? 0 : 1);
        if (s.remote) {
            gauge("pgward_wal_offsite_healthy",
                  "1 when the last offsite copy of the WAL and base backups succeeded.", db,
                  w.offsite_failure ? 0 : 1);
            if (w.offsite_at) {
                if (auto at = parse_iso_utc(*w.offsite_at)) {
                    gauge("pgward_wal_offsite_last_success_timestamp_seconds",
                          "When the WAL and base backups were last copied offsite and proven.", db,
                          static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                                  at->time_since_epoch())
                                                  .count()));
                }
            }
        }
    }
    gauge("pgward_healthy", "1 when the freshness check passes.", db, health.healthy ? 1 : 0);
    return out;
}

}  // namespace pgward
