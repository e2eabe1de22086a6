#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/process.hpp"

namespace pgward::pg {

// A PostgreSQL version as a number like server_version_num: 150018 for
// 15.18, 90624 for 9.6.24.
struct Version {
    int num = 0;

    // The first component: 15 for 15.18, 9 for 9.6.24 (compare majors with
    // major_key(), which tells 9.5 from 9.6).
    int major() const { return num / 10000; }
    int major_key() const { return num >= 100000 ? num / 10000 * 100 : num / 100; }
    // "15", or "9.6" for the old scheme.
    std::string major_text() const;
    std::string text() const;
};

// Parses "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", "17beta1",
// "9.6.24"; nullopt when the text has no version.
std::optional<Version> parse_tool_version(std::string_view text);

struct Tool {
    std::filesystem::path path;
    Version version;
    std::string version_line;  // the tool's own --version output, first line
};

// `pg_restore --list FILE` (stdin when `archive` is empty), with the
// messages pgward quotes and reads untranslated whatever the operator's
// LANG/LC_ALL.
Command list_archive_command(const Tool& pg_restore, const std::filesystem::path& archive);

class Connection;

// A client tool aimed at `conn`'s server (pg_basebackup, pg_receivewal):
// `args`, then --dbname with the connection's conninfo; the operator's libpq
// variables, the password libpq used (PGPASSWORD, never argv) and
// untranslated messages (pgward reads them). Its sessions are named
// `application_name` whatever PGAPPNAME says: synchronous_standby_names and
// pg_stat_replication find them by it.
Command server_tool_command(const Tool& tool, std::vector<std::string> args, const Connection& conn,
                            const std::string& application_name);

// Finds pg_dump, pg_restore... in --pg-bin/PGWARD_PG_BIN when given (and only
// there), else on PATH, else in `pg_config --bindir`; then asks the tool
// itself for its version, so a folder of wrapper scripts works as well as
// PostgreSQL's bin directory.
class ToolFinder {
  public:
    explicit ToolFinder(std::optional<std::filesystem::path> pg_bin) : pg_bin_(std::move(pg_bin)) {}

    Tool find(const std::string& name) const;
    std::filesystem::path locate(const std::string& name) const;

  private:
    std::optional<std::filesystem::path> pg_bin_;
};

}  // namespace pgward::pg
