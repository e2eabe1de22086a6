#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/base_backup.hpp"
#include "pg/wal.hpp"

namespace pgward {

// Where a point-in-time recovery stops: `latest` (the end of the archived
// WAL), a moment, a WAL position, or a named restore point.
struct RecoveryTarget {
    enum class Kind { Latest, Time, Lsn, Name };
    Kind kind = Kind::Latest;
    std::chrono::system_clock::time_point time;  // Kind::Time, to the microsecond
    pg::Lsn lsn;                                 // Kind::Lsn
    std::string name;                            // Kind::Name

    // "latest"; "2026-12-03 19:40:00+01", "2026-12-03T18:40:00.25Z" (a time
    // needs its zone); "0/3000060"; anything else names a restore point
    // ("name:..." forces that reading). A bad value is a usage error.
    static RecoveryTarget parse(std::string_view text);
    // For messages: latest, the time in UTC, the LSN, the quoted name.
    std::string describe() const;
    // The recovery_target_* line for postgresql.auto.conf (none for latest).
    std::optional<std::string> setting() const;
};

// A "YYYY-MM-DD[ T]HH:MM:SS[.ffffff](Z|±HH[:MM])" time; nullopt otherwise.
std::optional<std::chrono::system_clock::time_point> parse_time_with_zone(std::string_view text);
std::string format_time_micros(std::chrono::system_clock::time_point t);

// `value` single-quoted for a POSIX shell.
std::string shell_quote(std::string_view value);
// `value` as a postgresql.conf string literal.
std::string conf_quote(std::string_view value);

// The WAL position of the restore point `name` that a backup in `dir` made
// (its manifest's restore_point), if one did.
std::optional<pg::Lsn> find_restore_point(const std::filesystem::path& dir,
                                          const std::string& name);

// A backup's file name (its dump or manifest, in `dir`) as a target: the
// restore point that backup made. nullopt when `text` is no backup's file
// name; a failure when that backup is missing or made no restore point.
// `shown_as` names `dir` in messages (the store it was fetched from).
std::optional<RecoveryTarget> backup_restore_point(
    const std::filesystem::path& dir, std::string_view text,
    const std::optional<std::string>& shown_as = std::nullopt);

struct PitrRequest {
    std::filesystem::path dir;     // the backup directory
    std::filesystem::path pgdata;  // where the recovered cluster is laid out
    RecoveryTarget target;
    std::optional<uint64_t> system;    // needed when the directory holds several
    std::optional<std::string> owner;  // who the data directory is for (as root)
    std::filesystem::path pgward;      // this program, for restore_command
    // Copy the WAL recovery needs into pg_wal now (checked as it is copied),
    // so the server needs neither pgward nor access to the archive; else
    // restore_command fetches each segment through pgward as it is needed.
    bool copy_wal = true;
    // How messages name the WAL archive (the store it was fetched from);
    // its folder otherwise.
    std::optional<std::string> archive_location;
};

// Where a target lies in the WAL when that is known before replay: an LSN,
// or a restore point a dump in `dir` made (its manifest says).
std::optional<pg::Lsn> target_position(const std::filesystem::path& dir,
                                       const RecoveryTarget& target);

// The newest of `backups` (oldest first) a recovery to `target` can start
// from: finished before a time, ended before `target_lsn`; the newest for
// latest or a restore point of unknown place. nullptr when the target
// predates them all.
const BaseBackup* choose_base_backup(const std::vector<BaseBackup>& backups,
                                     const RecoveryTarget& target,
                                     std::optional<pg::Lsn> target_lsn);

struct PitrPlan {
    BaseBackup base;
    std::filesystem::path archive;  // the WAL archive restore_command fetches from
    // The archive's first and last segment from the base backup on, and the
    // time its newest file was written (the end of what can be reached).
    std::string first_segment;
    std::string last_segment;
    std::filesystem::file_time_type wal_written;
    uint64_t segment_size = pg::kDefaultSegmentSize;
    // The archive's files recovery reads, from first to last segment, each of
    // the timeline recovery is on there; and the timeline it ends on.
    std::vector<std::string> wal_files;
    uint32_t timeline = 0;
};

// The timelines a recovery from `from` follows to the newest one descending
// from it (recovery_target_timeline = 'latest'), as the archive's history
// files say (`histories`, by timeline): each with the segment it begins in.
// A segment is read from the newest timeline begun by then.
struct TimelinePath {
    uint32_t target = 0;
    std::vector<std::pair<uint32_t, uint64_t>> begins;  // (timeline, first segment), ascending
    uint32_t timeline_of(uint64_t segment) const;
};
TimelinePath timeline_path(const std::map<uint32_t, std::vector<pg::TimelineSwitch>>& histories,
                           uint32_t from, uint64_t segment_size);

// The base backups (of `backups`) a recovery to the newest timeline in
// `histories` can start from: taken on it, or on a timeline its history left
// after the base backup ended. PostgreSQL refuses the others ("requested
// timeline is not a child of this server's history").
std::vector<BaseBackup> base_backups_on_newest_timeline(
    const std::vector<BaseBackup>& backups,
    const std::map<uint32_t, std::vector<pg::TimelineSwitch>>& histories);

// Chooses the base backup (the newest that finished before the target) and
// checks the WAL from it on: no gap, and a target inside the window the
// archive can reach. Refusals name that window.
PitrPlan plan_pitr(const PitrRequest& request);

// Lays out the base backup in request.pgdata (absent or empty), with
// recovery.signal and the recovery settings in postgresql.auto.conf, owned by
// the server's user. Returns the plan it used.
PitrPlan restore_pitr(const PitrRequest& request);

}  // namespace pgward
