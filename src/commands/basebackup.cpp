#include <fmt/format.h>

#include <cstdio>

#include "commands/command.hpp"
#include "commands/registry.hpp"
#include "domain/base_backup.hpp"

namespace pgward::commands {
namespace {

class BaseBackupCommand : public Command {
  public:
    const char* name() const override { return "basebackup"; }
    const char* summary() const override {
        return "a physical copy of the whole server (pg_basebackup, proven by pg_verifybackup): "
               "the start of a point-in-time recovery";
    }

    void setup(CLI::App& app) override {
        add_connection_options(options_, app);
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory (default /backups): the copy goes to base/<system id>/");
        options_.add(app, "retention", "--retention", "POSTGRES_BACKUP_BASE_RETENTION_COUNT",
                     "after success, keep only the newest N base backups and the WAL they need "
                     "(default: keep all)");
        add_watchdog_options(options_, app);
        options_.add(app, "pg_bin", "--pg-bin", "PGWARD_PG_BIN",
                     "directory of pg_basebackup and pg_verifybackup");
    }

    int run() override {
        BaseBackupRequest request;
        request.connection = options_.connection();
        request.dir = options_.get_or("dir", "/backups");
        request.limits = watchdog_limits(options_);
        if (auto pg_bin = options_.get("pg_bin")) {
            request.pg_bin = pg_bin->value;
        }
        const std::optional<uint64_t> retention = options_.get_number("retention", 1, 10000);
        const BaseBackup backup = take_base_backup(request);
        fmt::print("{}\n", backup.path.string());
        std::fflush(stdout);
        if (retention) {
            prune_base_backups(request.dir, backup.system, static_cast<size_t>(*retention));
        }
        return 0;
    }

  private:
    OptionTable options_;
};

}  // namespace

std::unique_ptr<Command> make_basebackup_command() {
    return std::make_unique<BaseBackupCommand>();
}

}  // namespace pgward::commands
