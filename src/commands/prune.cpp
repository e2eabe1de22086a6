#include <fmt/format.h>

#include <map>
#include <optional>
#include <set>

#include "commands/command.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "domain/offsite.hpp"
#include "domain/repository.hpp"
#include "domain/retention.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace pgward::commands {
namespace {

class PruneCommand : public Command {
  public:
    const char* name() const override { return "prune"; }
    const char* summary() const override {
        return "keep the newest N backups of the database, delete the rest and their sidecars";
    }

    void setup(CLI::App& app) override {
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory (default /backups)");
        options_.add(app, "keep", "--keep", "POSTGRES_BACKUP_RETENTION_COUNT",
                     "how many of the newest backups to keep");
        options_.add(
            app, "dbname", "-d,--dbname", "POSTGRES_DB",
            "the database whose backups to prune (default: the only one in the directory)");
        app.add_flag("--dry-run", dry_run_, "print the plan, delete nothing");
        app.add_flag("--remote", remote_,
                     "prune the remote store instead: keep --remote-retention "
                     "(POSTGRES_BACKUP_REMOTE_RETENTION_COUNT) when set, else --keep");
        add_remote_options(options_, app, RemoteFlag::SelectsTheStore);
    }

    int run() override {
        if (remote_) {
            return run_remote();
        }
        auto keep = options_.get_number("keep", 1, 1000000);
        if (!keep) {
            throw usage_error("prune needs --keep N (or POSTGRES_BACKUP_RETENTION_COUNT)",
                              "say how many of the newest backups to keep");
        }
        BackupRepository repo(options_.get_or("dir", "/backups"));
        std::string database = database_or_only_one(options_, repo);
        std::optional<FileLock> lock;
        if (!dry_run_) {
            lock.emplace(repo.lock(database));
            repo.remove_leftovers(database);
        }
        // Per server: backups of one database name from two clusters are two
        // histories, each kept to N (those without a recorded server: one more).
        std::map<std::optional<std::string>, std::vector<BackupId>> by_server;
        for (const BackupId& id : repo.ids(database)) {
            by_server[repo.system_of(id)].push_back(id);
        }
        // Backups whose manifest predates the field belong with the only
        // server there is.
        if (by_server.size() == 2 && by_server.count(std::nullopt) == 1) {
            std::vector<BackupId> unknown = std::move(by_server[std::nullopt]);
            by_server.erase(std::nullopt);
            std::vector<BackupId>& known = by_server.begin()->second;
            known.insert(known.end(), unknown.begin(), unknown.end());
        }
        std::vector<RetentionDecision> plan;
        for (auto& [system, ids] : by_server) {
            auto part = plan_retention(std::move(ids), static_cast<size_t>(*keep));
            plan.insert(plan.end(), part.begin(), part.end());
        }
        auto deleted = repo.apply(plan, dry_run_);
        log::info(dry_run_ ? "prune plan" : "prune done",
                  {{"database", database},
                   {"kept", std::to_string(plan.size() - deleted.size())},
                   {dry_run_ ? "would_delete" : "deleted", std::to_string(deleted.size())}});
        return 0;
    }

  private:
    int run_remote() {
        RemoteConfig config = required_remote_config(options_);
        std::optional<uint64_t> keep = options_.get_number("keep", 1, 1000000);
        if (options_.get("remote_retention")) {
            keep = config.offsite.retention;
        }
        if (!keep) {
            throw usage_error(
                "prune --remote needs --remote-retention N or --keep N "
                "(or POSTGRES_BACKUP_REMOTE_RETENTION_COUNT)",
                "say how many of the newest backups to keep in the bucket");
        }
        storage::S3Store store(storage::S3Client(config.s3), config.prefix);
        std::string database;
        if (auto name = database_name(options_)) {
            database = *name;
        } else {
            std::set<std::string> names;
            for (const RemoteBackup& b : list_remote(store)) {
                names.insert(b.id.database);
            }
            if (names.size() != 1) {
                throw usage_error(fmt::format("{} holds backups of {} databases; name one",
                                              store.location(), names.size()),
                                  "pass --dbname (or set POSTGRES_DB)");
            }
            database = *names.begin();
        }
        // The local lock: no cycle of this database uploads while we prune.
        const std::filesystem::path dir = options_.get_or("dir", "/backups");
        std::optional<BackupRepository> repo;
        std::optional<FileLock> lock;
        if (std::filesystem::is_directory(dir)) {
            repo.emplace(dir);
            if (!dry_run_) {
                lock.emplace(repo->lock(database));
            }
        }
        const auto plan = plan_remote_retention(store, database, static_cast<size_t>(*keep),
                                                repo ? &*repo : nullptr);
        for (const RemotePruneDecision& d : plan) {
            const char* what = d.action == RemotePruneDecision::Action::Keep     ? "keep  "
                               : d.action == RemotePruneDecision::Action::Locked ? "locked"
                                                                                 : "delete";
            fmt::print("{} {} ({})\n", what, store.location_of(d.id.dump_file()), d.reason);
        }
        std::fflush(stdout);
        auto deleted = apply_remote_retention(store, plan, dry_run_);
        log::info(dry_run_ ? "remote prune plan" : "remote prune done",
                  {{"database", database},
                   {"store", store.location()},
                   {dry_run_ ? "would_delete" : "deleted", std::to_string(deleted.size())}});
        return 0;
    }

    OptionTable options_;
    bool dry_run_ = false;
    bool remote_ = false;
};

}  // namespace

std::unique_ptr<Command> make_prune_command() {
    return std::make_unique<PruneCommand>();
}

}  // namespace pgward::commands
