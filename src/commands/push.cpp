#include <fmt/format.h>

#include "commands/command.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "domain/offsite.hpp"
#include "domain/repository.hpp"
#include "util/error.hpp"

namespace pgward::commands {
namespace {

// What a cycle does after its backup, on its own: after an outage of the
// store, or to send up backups taken before the remote was set.
class PushCommand : public Command {
  public:
    const char* name() const override { return "push"; }
    const char* summary() const override {
        return "copy every local backup the remote store lacks, newest first, and prove each";
    }

    void setup(CLI::App& app) override {
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory (default /backups)");
        options_.add(app, "dbname", "-d,--dbname", "POSTGRES_DB",
                     "the database whose backups to copy (default: the only one in the "
                     "directory)");
        add_remote_options(options_, app);
    }

    int run() override {
        std::optional<RemoteConfig> config = remote_config(options_);
        if (!config) {
            throw usage_error("push needs a remote store",
                              "set --remote or POSTGRES_BACKUP_REMOTE to s3://BUCKET/PREFIX");
        }
        const std::filesystem::path dir = options_.get_or("dir", "/backups");
        BackupRepository repo(dir);
        const std::string database = database_or_only_one(options_, repo);
        const std::vector<BackupId> ids = repo.ids(database);
        if (ids.empty()) {
            throw failure(fmt::format("no backups of \"{}\" in {}", database, dir.string()),
                          "check --dir / POSTGRES_BACKUP_DIR");
        }
        OffsiteResult copied = copy_directory_offsite(dir, database, *config);
        for (const BackupId& id : copied.uploaded) {
            fmt::print("{}\n", id.dump_file());
        }
        return 0;
    }

  private:
    OptionTable options_;
};

}  // namespace

std::unique_ptr<Command> make_push_command() {
    return std::make_unique<PushCommand>();
}

}  // namespace pgward::commands
