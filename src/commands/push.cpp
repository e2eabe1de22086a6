#include <set>

#include <fmt/format.h>

#include "commands/command.hpp"
#include "commands/encryption_options.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "domain/base_backup.hpp"
#include "domain/offsite.hpp"
#include "domain/pitr_offsite.hpp"
#include "domain/repository.hpp"
#include "domain/wal_archive.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace pgward::commands {
namespace {

// What a cycle does after its backup, on its own: after an outage of the
// store, or to send up backups taken before the remote was set.
class PushCommand : public Command {
  public:
    const char* name() const override { return "push"; }
    const char* summary() const override {
        return "copy every local backup the remote store lacks (dumps, base backups, WAL), "
               "and prove each";
    }

    void setup(CLI::App& app) override {
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory (default /backups)");
        options_.add(app, "dbname", "-d,--dbname", "POSTGRES_DB",
                     "the database whose backups to copy (default: the only one in the "
                     "directory)");
        add_remote_options(options_, app);
        // Dumps are encrypted when they are taken; the WAL and base backups as they go up.
        add_encryption_options(options_, app);
    }

    int run() override {
        std::optional<RemoteConfig> config = remote_config(options_);
        if (!config) {
            throw usage_error("push needs a remote store",
                              "set --remote or POSTGRES_BACKUP_REMOTE to s3://BUCKET/PREFIX");
        }
        const std::filesystem::path dir = options_.get_or("dir", "/backups");
        // The WAL and base backups of every server here (point-in-time recovery).
        std::set<uint64_t> systems;
        for (uint64_t system : wal_archive_systems(dir)) {
            systems.insert(system);
        }
        for (uint64_t system : base_backup_systems(dir)) {
            systems.insert(system);
        }
        BackupRepository repo(dir);
        if (!systems.empty() && repo.databases().empty() && !options_.get("dbname")) {
            copy_pitr_offsite(dir, systems, *config, encryption_keys(options_));
            return 0;
        }
        const std::string database = database_or_only_one(options_, repo);
        const std::vector<BackupId> ids = repo.ids(database);
        if (ids.empty() && systems.empty()) {
            throw failure(fmt::format("no backups of \"{}\" in {}", database, dir.string()),
                          "check --dir / POSTGRES_BACKUP_DIR");
        }
        if (!ids.empty()) {
            OffsiteResult copied = copy_directory_offsite(dir, database, *config);
            for (const BackupId& id : copied.uploaded) {
                fmt::print("{}\n", id.dump_file());
            }
        }
        copy_pitr_offsite(dir, systems, *config, encryption_keys(options_));
        return 0;
    }

  private:
    // Prints what went up: base backups as base/<system>/<name>, WAL files by name.
    static void copy_pitr_offsite(const std::filesystem::path& dir,
                                  const std::set<uint64_t>& systems, const RemoteConfig& config,
                                  const EncryptionKeys& keys) {
        const storage::S3Store store(storage::S3Client(config.s3), config.prefix);
        for (uint64_t system : systems) {
            const BaseOffsiteResult bases = copy_base_backups_offsite(
                dir, system, store, config.offsite.proof, std::nullopt, keys);
            for (const std::string& name : bases.uploaded) {
                fmt::print("base/{}/{}\n", system, name);
            }
            if (bases.busy) {
                log::warn("another pgward is copying these base backups offsite now; left to it",
                          {{"system", std::to_string(system)}});
            }
            WalOffsiteCopier wal(dir, system, store, config.offsite.proof, keys);
            const WalOffsiteResult copied = wal.copy();
            if (copied.busy) {
                log::warn("another pgward is copying this WAL offsite now; left to it",
                          {{"system", std::to_string(system)}});
            }
            for (const std::string& file : copied.uploaded) {
                fmt::print("wal/{}/{}\n", system, file);
            }
            log::info("WAL and base backups copied offsite",
                      {{"system", std::to_string(system)},
                       {"base_backups", std::to_string(bases.uploaded.size())},
                       {"wal_files", std::to_string(copied.uploaded.size())},
                       {"newest_segment", copied.newest.value_or("none")}});
        }
    }

    OptionTable options_;
};

}  // namespace

std::unique_ptr<Command> make_push_command() {
    return std::make_unique<PushCommand>();
}

}  // namespace pgward::commands
