#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "domain/backup_job.hpp"
#include "domain/base_backup.hpp"
#include "domain/health.hpp"
#include "domain/offsite.hpp"
#include "domain/smoke.hpp"
#include "domain/wal_archive.hpp"
#include "domain/wal_monitor.hpp"

namespace pgward {

struct ServiceConfig {
    BackupRequest backup;  // retention set: prune after each success
    // What opens the encrypted backups the scheduled drill restores (the
    // backup host may hold only public keys: then that drill cannot run).
    DecryptionKeys drill_keys;
    std::string database;  // for the state file, before the first connection
    std::chrono::seconds interval{86400};
    bool on_start = true;
    std::chrono::seconds retry_initial{60};
    std::chrono::seconds retry_max{3600};
    HealthPolicy health;
    std::optional<std::string> http_addr;
    std::optional<std::string> notify_url;
    std::optional<std::string> ping_url;
    bool notify_every_success = false;
    std::chrono::seconds notify_timeout{10};
    // The sandbox drill of the newest backup, on its own schedule.
    std::optional<std::chrono::seconds> drill_interval;
    std::filesystem::path drill_report_dir;
    std::optional<VersionTable> drill_version_table;
    // Drill the newest proven backup in the bucket (fetched), not the local one.
    bool drill_from_remote = false;
    // After each backup, every local backup the remote store lacks is copied
    // there and proven; a failed copy keeps the local backup and makes the
    // cycle degraded (state, metrics, alert, exit 1 with `once`).
    std::optional<OffsiteTarget> offsite;
    // `run --wal`: the server's WAL streamed beside the schedule (restarted
    // with backoff when it cannot start), watched from the server's side
    // every wal_check_interval (state, /metrics, healthcheck, alerts), and
    // base backups on their own schedule: the first at start when this
    // server has none, then every base_interval.
    std::optional<WalStreamRequest> wal;
    WalWatchPolicy wal_policy;
    std::chrono::milliseconds wal_check_interval{5000};
    std::chrono::seconds base_interval{7 * 86400};
    std::optional<size_t> base_retention;
    // With `wal` and drill_interval: each scheduled drill also proves
    // point-in-time recovery (drill --pitr, to the newest dump's restore
    // point); the drill passes only when both do.
    bool drill_pitr = false;
    // One backup cycle (backup, prune, state file) at once, then exit:
    // 0 if it succeeded, 1 if not. For cron and one-shot containers.
    bool once = false;
};

// `pgward run`: a backup at start (unless on_start is false), then one every
// interval, until SIGTERM/SIGINT; returns the exit code (0 on a signal, even
// mid-backup: the in-flight pg_dump is killed and its temp file removed).
// With `once`, a single cycle at once.
int run_service(const ServiceConfig& config);

}  // namespace pgward
