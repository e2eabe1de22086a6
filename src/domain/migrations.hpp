#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "pg/connection.hpp"

namespace pgward {

// The built-in migration runner: every *.sql file of `dir` in name order,
// each in its own transaction, with its name (without .sql, at most 32
// bytes) recorded as alembic_version.version_num. Returns the versions
// applied; throws naming the file that failed (its transaction rolled back).
std::vector<std::string> apply_sql_migrations(pg::Connection& conn,
                                              const std::filesystem::path& dir);

// `--migrate-cmd`: CMD run by /bin/sh with DATABASE_URL and PG* pointing at
// the connection's database; its output logged line by line; throws on a
// non-zero exit. The only place pgward runs a user string through a shell,
// because running the user's own migration tool is the point.
void run_migrate_command(const std::string& command, const pg::Connection& conn);

}  // namespace pgward
