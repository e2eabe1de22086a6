#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace pgward {

// The WAL streamer `pgward run --wal` keeps beside the schedule, as the
// server sees it (its replication slot and pg_stat_replication), looked at
// every few seconds.
struct WalStreamState {
    std::string slot;
    bool slot_exists = false;
    bool streaming = false;  // pg_receivewal is connected on the slot
    // When streaming last started or stopped (the service's start at first).
    std::string since;
    std::optional<std::string> checked_at;
    // The server's flush position minus what the archive has flushed, and
    // pg_stat_replication's flush_lag (0 once caught up and idle).
    std::optional<uint64_t> lag_bytes;
    std::optional<double> lag_seconds;
    // WAL the server keeps for the slot (pg_current_wal_lsn() - restart_lsn):
    // what fills its disk while no one streams.
    std::optional<uint64_t> slot_retained_bytes;
    std::optional<std::string> slot_wal_status;  // reserved, extended, unreserved, lost
    std::optional<std::string> problem;          // why it is not healthy, else unset
    // unreachable, slot-missing, wal-lost, stopped, behind, wal-gap: a new kind is a
    // new alert.
    std::optional<std::string> problem_kind;
    uint64_t alerts_total = 0;
    // A gap the streamer resumed past (the server removed WAL the archive
    // lacked), and when: a problem until a base backup taken after it.
    std::optional<std::string> gap;
    std::optional<std::string> gap_at;
    // The last time the server moved to a newer timeline (a promotion or a
    // failover) and the streamer followed it: what happened, and when.
    std::optional<std::string> timeline_switch;
    std::optional<std::string> timeline_switch_at;
    // What pg_receivewal said when it last stopped (until it streams again):
    // a stopped stream's problem says why (a full disk, a refused slot...).
    std::optional<std::string> stopped_because;
    // The offsite copy of the WAL and base backups (with --remote): the
    // newest segment proven there, when a copy last succeeded, and why the
    // last ones failed (until one succeeds).
    std::optional<std::string> offsite_newest;
    std::optional<std::string> offsite_at;
    std::optional<std::string> offsite_failure;
    std::optional<std::string> offsite_failure_at;
    uint64_t offsite_failures = 0;  // in a row
    // Why the last scheduled base backups failed (until one succeeds).
    std::optional<std::string> base_failure;
    std::optional<std::string> base_failure_at;
    uint64_t base_failures = 0;                      // in a row
    std::optional<std::string> last_base_backup_at;  // the last scheduled one that succeeded
};

// What the service knows about its backups, kept in a small file in the
// backup directory (written atomically), so `status`, `healthcheck`, the
// HTTP endpoints and a restarted service all read the same facts.
struct ServiceState {
    std::string database;
    uint64_t interval_seconds = 0;
    std::string service_started_at;
    std::optional<std::string> last_attempt_at;
    std::optional<std::string> last_success_at;
    std::optional<std::string> last_success_file;
    uint64_t last_success_bytes = 0;
    double last_success_duration_seconds = 0;
    std::optional<std::string> last_failure_at;
    std::optional<std::string> last_failure_reason;
    uint64_t consecutive_failures = 0;
    uint64_t successes_total = 0;
    uint64_t failures_total = 0;
    uint64_t retained_count = 0;
    bool running = false;
    std::optional<std::string> running_since;
    // The scheduled sandbox drill of the newest backup (POSTGRES_DRILL_INTERVAL_SECONDS).
    std::optional<std::string> last_drill_at;
    std::optional<bool> last_drill_success;
    std::optional<std::string> last_drill_report;
    std::optional<std::string> last_drill_failure;
    uint64_t drills_succeeded_total = 0;
    uint64_t drills_failed_total = 0;
    // The offsite copy (POSTGRES_BACKUP_REMOTE): where, how it is proven
    // ("read" or "size"), and how the last copies went. No remote: unset.
    std::optional<std::string> remote;
    std::optional<std::string> remote_proof;
    std::optional<std::string> last_remote_success_at;
    std::optional<std::string> last_remote_file;
    double last_remote_duration_seconds = 0;
    std::optional<std::string> last_remote_failure_at;
    std::optional<std::string> last_remote_failure_reason;
    uint64_t remote_consecutive_failures = 0;
    uint64_t remote_successes_total = 0;
    uint64_t remote_failures_total = 0;
    uint64_t remote_bytes_total = 0;
    // Set when the service streams WAL (`run --wal`).
    std::optional<WalStreamState> wal;
};

std::string state_file_name(const std::string& database);
std::string state_to_json(const ServiceState& state);
ServiceState state_from_json(const std::string& text, const std::string& source);
std::optional<ServiceState> load_state(const std::filesystem::path& path);
// Writes the state file atomically under its own lock (state_lock_path),
// waiting up to 10 s for another writer of it.
void save_state(const std::filesystem::path& path, const ServiceState& state);
// "<state file>.lock": the lock every writer of the state file holds.
std::filesystem::path state_lock_path(const std::filesystem::path& state_path);

}  // namespace pgward
