#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "domain/compression.hpp"
#include "domain/watchdog.hpp"
#include "pg/connection.hpp"

namespace pgward::commands {

// The upper bound of every option in seconds: a typo's huge number is refused.
constexpr uint64_t kTenYears = 10ULL * 366 * 86400;

// A value and where it came from ("--retention" or
// "POSTGRES_BACKUP_RETENTION_COUNT"), so an error names what the user set.
struct Setting {
    std::string value;
    std::string origin;
    bool from_flag = false;
};

// The one option table: each option is a flag and, optionally, the
// environment variable behind it. Precedence: flag > variable > default. An
// empty variable counts as unset (compose files often pass VAR= through).
class OptionTable {
  public:
    CLI::Option* add(CLI::App& app, const std::string& key, const std::string& flags,
                     const std::string& env, const std::string& help);

    std::optional<Setting> get(const std::string& key) const;
    std::string get_or(const std::string& key, const std::string& fallback) const;

    // A whole number in [min, max]; anything else is a usage error naming the origin.
    std::optional<uint64_t> get_number(const std::string& key, uint64_t min, uint64_t max) const;

    pg::ConnectionOptions connection() const;

  private:
    struct Entry {
        std::string flag;
        std::string env;
        std::optional<std::string> value;
    };
    std::map<std::string, std::unique_ptr<Entry>> entries_;
};

// Registers -h/-p/-U/-d and their POSTGRES_* variables.
void add_connection_options(OptionTable& table, CLI::App& app);

uint64_t parse_number(const Setting& setting, uint64_t min, uint64_t max);

// A secret from NAME or NAME_FILE (a Docker secret; its trailing newline
// dropped), never from a flag; both set is a usage error.
std::optional<std::string> secret_from_environment(const std::string& name);

// --timeout / POSTGRES_BACKUP_TIMEOUT_SECONDS (default 21600) and
// --stall-timeout / POSTGRES_BACKUP_STALL_SECONDS (default 900): the
// watchdogs of every operation that runs pg_dump or pg_restore.
void add_watchdog_options(OptionTable& table, CLI::App& app);
WatchdogLimits watchdog_limits(const OptionTable& table);

// --compress / POSTGRES_BACKUP_COMPRESSION.
void add_compression_option(OptionTable& table, CLI::App& app);
// The setting, or auto; a bad value is a usage error naming where it was set.
CompressionSetting compression_setting(const OptionTable& table);

}  // namespace pgward::commands
