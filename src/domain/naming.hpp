#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "util/time.hpp"

namespace pgward {

// Database names become one safe path component: [A-Za-z0-9_.-] stay as they
// are (but a leading '.'), every other byte becomes %XX. Reversible, and
// decode() accepts only the canonical encoding, so one database has exactly
// one spelling on disk.
std::string encode_db_name(std::string_view name);
std::optional<std::string> decode_db_name(std::string_view encoded);

// One backup: <db>_<YYYYMMDDTHHMMSSZ> plus an extension per file.
struct BackupId {
    std::string database;
    TimePoint started;

    std::string stem() const;
    std::string dump_file() const { return stem() + ".dump"; }
    std::string manifest_file() const { return stem() + ".json"; }
    std::string globals_file() const { return stem() + ".globals.sql"; }

    bool operator==(const BackupId&) const = default;
};

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
