#include "commands/registry.hpp"

namespace pgward::commands {

std::vector<std::unique_ptr<Command>> make_commands() {
    std::vector<std::unique_ptr<Command>> out;
    out.push_back(make_backup_command());
    out.push_back(make_run_command());
    out.push_back(make_push_command());
    out.push_back(make_list_command());
    out.push_back(make_prune_command());
    out.push_back(make_verify_command());
    out.push_back(make_restore_command());
    out.push_back(make_smoke_command());
    out.push_back(make_drill_command());
    out.push_back(make_basebackup_command());
    out.push_back(make_wal_command());
    out.push_back(make_keygen_command());
    out.push_back(make_status_command());
    out.push_back(make_healthcheck_command());
    out.push_back(make_version_command());
    return out;
}

}  // namespace pgward::commands
