#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "commands/options.hpp"

namespace pgward {
class BackupRepository;
}

namespace pgward::commands {

// One user command: setup() declares its flags on its CLI11 subcommand,
// run() executes it after parsing. Errors are thrown as pgward::Error.
class Command {
  public:
    virtual ~Command() = default;
    virtual const char* name() const = 0;
    virtual const char* summary() const = 0;
    virtual void setup(CLI::App& app) = 0;
    virtual int run() = 0;
};

// The database a command is about, from -d/POSTGRES_DB without connecting: a
// plain name, or the dbname inside a conninfo string or URI (libpq parses it).
std::optional<std::string> database_name(const OptionTable& table);

// That database, or else the only one with backups in `repo`; none or several
// is an error that says what to pass.
std::string database_or_only_one(const OptionTable& table, const BackupRepository& repo);

}  // namespace pgward::commands
