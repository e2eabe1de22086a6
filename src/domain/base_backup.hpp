#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/watchdog.hpp"
#include "pg/connection.hpp"
#include "pg/wal.hpp"
#include "util/time.hpp"

namespace pgward {

// A physical copy of a whole server, the start of every point-in-time
// recovery: <backup dir>/base/<system identifier>/<UTC start>/ holding
// pg_basebackup's tar files (base.tar, pg_wal.tar), its backup_manifest and
// pgward's own base.json.
struct BaseBackup {
    std::string name;  // 20261203T194000Z
    std::filesystem::path path;
    uint64_t system = 0;
    uint32_t timeline = 0;
    pg::Lsn start;  // the WAL a recovery from it replays from...
    pg::Lsn end;    // ...and must reach before the copy is consistent
    TimePoint started;
    TimePoint finished;  // a recovery target before this cannot use it
    std::string server_version;
    std::string bootstrap_superuser;  // the role with oid 10
    uint64_t bytes = 0;
    uint64_t segment_size = pg::kDefaultSegmentSize;  // the server's wal_segment_size
    std::vector<std::string> files;                   // the tar files
    std::string verified_by;                          // "pg_verifybackup (PostgreSQL) 15.18"
};

struct BaseBackupRequest {
    pg::ConnectionOptions connection;
    std::filesystem::path dir;  // the backup directory
    std::optional<std::filesystem::path> pg_bin;
    WatchdogLimits limits;
};

// pg_basebackup in tar format with the WAL it needs (--wal-method=stream)
// and a fast checkpoint, into a private folder; the copy unpacked beside it
// and proven by pg_verifybackup (every file's checksum, and the WAL parsed
// from start to end); then published under its name by one rename. A
// failure or SIGTERM leaves nothing but the log.
BaseBackup take_base_backup(const BaseBackupRequest& request);

// The file in a base backup's folder that describes it (written last).
inline constexpr const char* kBaseBackupInfoFile = "base.json";

// A base backup's base.json, as text and back; `where` is the backup's
// folder (or where messages say it is).
std::string base_backup_info_text(const BaseBackup& backup);
BaseBackup parse_base_backup_info(std::string_view text, const std::filesystem::path& where);

// The base backups of `system` (or of every system), oldest first.
std::vector<BaseBackup> list_base_backups(const std::filesystem::path& backup_dir,
                                          std::optional<uint64_t> system = {});

// The systems with base backups under <backup dir>/base/.
std::vector<uint64_t> base_backup_systems(const std::filesystem::path& backup_dir);

// What keeping the newest `keep` base backups removes: the older base
// backups, and the WAL segments that only they need (before the oldest kept
// one's start; history files are always kept).
struct BasePrunePlan {
    std::vector<BaseBackup> remove;
    std::vector<std::string> wal_files;
};
BasePrunePlan plan_base_prune(const std::vector<BaseBackup>& backups,
                              const std::vector<std::string>& wal_files, size_t keep);

// Applies plan_base_prune to <backup dir> for `system`: base backups first
// (each by one rename out of sight, then removed), then the WAL. Returns
// what was removed.
BasePrunePlan prune_base_backups(const std::filesystem::path& backup_dir, uint64_t system,
                                 size_t keep);

// The WAL range a backup_manifest names ("WAL-Ranges"): timeline, start, end.
struct ManifestWalRange {
    uint32_t timeline = 0;
    pg::Lsn start;
    pg::Lsn end;
};
ManifestWalRange read_manifest_wal_range(const std::string& backup_manifest_text);

// Unpacks a tar file into `dir` (which exists) with the system's tar.
void extract_tar(const std::filesystem::path& tar_file, const std::filesystem::path& dir);

}  // namespace pgward
