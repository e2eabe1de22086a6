#include <fmt/format.h>

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
        const BaseBackup backup = take_base_backup(request);
        fmt::print("{}\n", backup.path.string());
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
