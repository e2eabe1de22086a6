#include <fmt/format.h>

#include "commands/command.hpp"
#include "commands/encryption_options.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "domain/backup_job.hpp"
#include "domain/offsite.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace pgward::commands {
namespace {

constexpr uint64_t kOneDay = 86400;

class BackupCommand : public Command {
  public:
    const char* name() const override { return "backup"; }
    const char* summary() const override {
        return "one backup now: pg_dump -Fc into the backup directory, atomically";
    }

    void setup(CLI::App& app) override {
        add_connection_options(options_, app);
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory (default /backups)");
        options_.add(app, "retention", "--retention", "POSTGRES_BACKUP_RETENTION_COUNT",
                     "after success, keep only the newest N backups of the database");
        options_.add(app, "lock_wait", "--lock-wait-timeout", "POSTGRES_BACKUP_LOCK_WAIT_SECONDS",
                     "seconds pg_dump waits for a table another session holds locked "
                     "(default: wait)");
        add_watchdog_options(options_, app);
        add_compression_option(options_, app);
        add_encryption_options(options_, app);
        add_remote_options(options_, app);
        options_.add(
            app, "pg_bin", "--pg-bin", "PGWARD_PG_BIN",
            "directory of pg_dump and pg_restore (default: PATH, then pg_config --bindir)");
    }

    int run() override {
        BackupRequest request;
        request.connection = options_.connection();
        request.dir = options_.get_or("dir", "/backups");
        if (auto retention = options_.get_number("retention", 1, 1000000)) {
            request.retention = static_cast<size_t>(*retention);
        }
        if (auto lock_wait = options_.get_number("lock_wait", 1, kOneDay)) {
            request.lock_wait = std::chrono::seconds(*lock_wait);
        }
        request.compression = compression_setting(options_);
        request.encryption = encryption_keys(options_);
        const WatchdogLimits limits = watchdog_limits(options_);
        request.timeout = limits.timeout;
        request.stall = limits.stall;
        if (auto pg_bin = options_.get("pg_bin")) {
            request.pg_bin = pg_bin->value;
        }
        // Checked before the dump: a wrong remote is a usage error, not a
        // failure after an hour of pg_dump.
        std::optional<RemoteConfig> remote = remote_config(options_);
        BackupResult result = run_backup_job(request);
        std::fprintf(stdout, "%s\n", result.dump_path.string().c_str());
        std::fflush(stdout);
        if (remote) {
            copy_to_remote(request, result, *remote);
        }
        return 0;
    }

  private:
    static void copy_to_remote(const BackupRequest& request, const BackupResult& result,
                               RemoteConfig remote) {
        if (!remote.offsite.retention) {
            remote.offsite.retention = request.retention;
        }
        try {
            copy_directory_offsite(request.dir, result.id.database, remote);
        } catch (const Error& e) {
            throw failure(fmt::format("the backup is kept in {} but its offsite copy to {} "
                                      "failed: {}",
                                      request.dir.string(), remote.location(), e.what()),
                          e.hint());
        }
    }

    OptionTable options_;
};

}  // namespace

std::unique_ptr<Command> make_backup_command() {
    return std::make_unique<BackupCommand>();
}

}  // namespace pgward::commands
