#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pg/tools.hpp"

namespace pgward {

// What POSTGRES_BACKUP_COMPRESSION / --compress asks for: `auto`, or what
// `pg_dump --compress` accepts: gzip[:N], lz4[:N], zstd[:N], none.
struct CompressionSetting {
    bool automatic = true;
    std::string method;        // gzip, lz4, zstd or none (empty when automatic)
    std::optional<int> level;  // as given; the method's default when absent

    // Throws a usage error naming the value and what is accepted.
    static CompressionSetting parse(std::string_view text);
    std::string text() const;  // "auto", "zstd:1", "gzip"
};

// The method and level a backup runs with, for one pg_dump.
struct CompressionChoice {
    std::string method;
    std::optional<int> level;
    std::vector<std::string> pg_dump_args;  // e.g. {"--compress=zstd:1"}; none for gzip on 15
    std::string text() const;
};

// The level `auto` gives zstd: the measurement behind it is in
// docs/performance.md ("Compression").
inline constexpr int kAutoZstdLevel = 1;

// Resolves the setting for this pg_dump (by its --version, never its path).
// `auto` is zstd at kAutoZstdLevel with pg_dump 16 or newer, gzip (pg_dump's
// default) before; an explicit method the pg_dump cannot write is a usage
// error naming the client's major and what would work.
CompressionChoice choose_compression(const CompressionSetting& setting, const pg::Version& pg_dump);

}  // namespace pgward
