#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/time.hpp"

namespace pgward {

// Database names become one safe path component: [A-Za-z0-9_.-] stay as they
// are (but a leading '.'), every other byte becomes %XX. Reversible, and
// decode() accepts only the canonical encoding, so one database has exactly
// one spelling on disk.
std::string encode_db_name(std::string_view name);
std::optional<std::string> decode_db_name(std::string_view encoded);

// One backup: <db>_<YYYYMMDDTHHMMSSZ> plus an extension per file. A safety
// dump, taken by `restore` of the database it is about to replace, is
// <db>_<YYYYMMDDTHHMMSSZ>.pre-restore: never `latest`, never drilled, never
// counted by retention (it has its own bound, kSafetyDumpsKept). An
// encrypted backup's dump and globals end in ".age" (the manifest does not:
// its private part is sealed inside it).
struct BackupId {
    std::string database;
    TimePoint started;
    bool pre_restore = false;
    bool encrypted = false;

    std::string stem() const;
    std::string dump_file() const { return stem() + ".dump" + age_suffix(); }
    std::string manifest_file() const { return stem() + ".json"; }
    std::string globals_file() const { return stem() + ".globals.sql" + age_suffix(); }
    std::string age_suffix() const { return encrypted ? std::string(kAgeSuffix) : std::string(); }
    static constexpr std::string_view kAgeSuffix = ".age";

    bool operator==(const BackupId&) const = default;
};
// A backup whose time is later than the clock plus this (a clock that jumped
// back, a file copied in from a host whose clock ran ahead) is future-dated:
// never `latest`, never fresh, ranked as the oldest by retention.
inline constexpr std::chrono::seconds kFutureTolerance{300};
bool is_future_dated(const BackupId& id, TimePoint now);

inline constexpr std::string_view kPreRestoreSuffix = ".pre-restore";
// How many safety dumps of one database a restore leaves: the newest ones;
// older ones are deleted when a new one is published.
inline constexpr size_t kSafetyDumpsKept = 3;

// Newest first, future-dated backups last (as the oldest).
void sort_newest_first(std::vector<BackupId>& ids, TimePoint now);

enum class FileRole { Dump, Manifest, Globals };

struct ParsedFileName {
    BackupId id;
    FileRole role;
    bool temporary = false;  // "<file>.tmp": a write in progress, or left by a crash
};

// Strict: only names pgward itself writes parse; anything else is foreign.
std::optional<ParsedFileName> parse_backup_file_name(std::string_view file_name);

// The per-database lock file in the backup directory.
std::string lock_file_name(std::string_view database);

}  // namespace pgward
