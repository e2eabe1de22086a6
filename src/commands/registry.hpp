#pragma once

#include <memory>
#include <vector>

#include "commands/command.hpp"

namespace pgward::commands {

std::unique_ptr<Command> make_backup_command();
std::unique_ptr<Command> make_list_command();
std::unique_ptr<Command> make_prune_command();
std::unique_ptr<Command> make_version_command();
std::unique_ptr<Command> make_run_command();
std::unique_ptr<Command> make_status_command();
std::unique_ptr<Command> make_healthcheck_command();
std::unique_ptr<Command> make_restore_command();
std::unique_ptr<Command> make_smoke_command();
std::unique_ptr<Command> make_verify_command();
std::unique_ptr<Command> make_drill_command();
std::unique_ptr<Command> make_push_command();
std::unique_ptr<Command> make_keygen_command();
std::unique_ptr<Command> make_basebackup_command();
std::unique_ptr<Command> make_wal_command();

// Every command, in the order `pgward --help` lists them.
std::vector<std::unique_ptr<Command>> make_commands();

}  // namespace pgward::commands
