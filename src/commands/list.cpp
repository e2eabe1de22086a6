#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <exception>
#include <map>
#include <set>
#include <thread>

#include "commands/command.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "domain/inspect.hpp"
#include "domain/offsite.hpp"
#include "util/error.hpp"
#include "util/time.hpp"

namespace pgward::commands {
namespace {

std::string human_size(uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = static_cast<double>(bytes);
    size_t unit = 0;
    while (value >= 1024 && unit + 1 < std::size(units)) {
        value /= 1024;
        ++unit;
    }
    return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

class ListCommand : public Command {
  public:
    const char* name() const override { return "list"; }
    const char* summary() const override {
        return "the backups in the directory: name, size, UTC time, age, checksum state";
    }

    void setup(CLI::App& app) override {
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory (default /backups)");
        options_.add(app, "dbname", "-d,--dbname", "", "only this database's backups");
        app.add_flag("--json", json_, "print a JSON array");
        app.add_flag("--verify", verify_, "re-hash every dump and compare with its manifest");
        app.add_flag("--remote", remote_,
                     "the backups in the remote store, and which exist only here or only there");
        add_remote_options(options_, app, RemoteFlag::SelectsTheStore);
    }

    int run() override {
        if (remote_) {
            return run_remote();
        }
        BackupRepository repo(options_.get_or("dir", "/backups"));
        const std::optional<std::string> database = database_name(options_);
        std::vector<BackupEntry> entries = repo.list(database);
        std::vector<BackupEntry> safety = repo.list(database, BackupRepository::Kind::SafetyDumps);
        TimePoint now = now_seconds();
        nlohmann::ordered_json out = nlohmann::ordered_json::array();
        bool all_good = true;
        std::vector<ChecksumCheck> checks = check_all(repo, entries);
        std::vector<ChecksumCheck> safety_checks = check_all(repo, safety);
        auto section = [&](const std::vector<BackupEntry>& listed,
                           const std::vector<ChecksumCheck>& checked, const char* kind) {
            if (!json_) {
                fmt::print("{:<48} {:>10}  {:<20}  {:>8}  {:<11}  {}\n", "NAME", "SIZE",
                           "STARTED (UTC)", "AGE", "COMPRESSION", "CHECKSUM");
            }
            for (size_t i = 0; i < listed.size(); ++i) {
                const BackupEntry& entry = listed[i];
                const ChecksumCheck& check = checked[i];
                all_good = all_good && check.good();
                auto age = std::chrono::duration_cast<std::chrono::seconds>(now - entry.id.started);
                const std::optional<std::vector<std::string>> keys = keys_of(repo, entry);
                if (json_) {
                    nlohmann::ordered_json item;
                    item["file"] = entry.id.dump_file();
                    item["kind"] = kind;
                    item["database"] = entry.id.database;
                    item["size_bytes"] = entry.size_bytes;
                    item["started_at"] = format_iso_utc(entry.id.started);
                    item["age_seconds"] = age.count();
                    item["compression"] = check.compression.empty()
                                              ? nlohmann::ordered_json()
                                              : nlohmann::ordered_json(check.compression);
                    item["system_identifier"] =
                        check.system_identifier ? nlohmann::ordered_json(*check.system_identifier)
                                                : nlohmann::ordered_json();
                    item["checksum"] = to_string(check.state);
                    if (!check.detail.empty()) {
                        item["checksum_detail"] = check.detail;
                    }
                    item["manifest"] = entry.has_manifest
                                           ? nlohmann::ordered_json(entry.id.manifest_file())
                                           : nlohmann::ordered_json();
                    item["encrypted_to"] =
                        keys ? nlohmann::ordered_json(*keys) : nlohmann::ordered_json();
                    out.push_back(std::move(item));
                } else {
                    fmt::print("{:<48} {:>10}  {:<20}  {:>8}  {:<11}  {}{}{}\n",
                               entry.id.dump_file(), human_size(entry.size_bytes),
                               format_iso_utc(entry.id.started), format_age(age),
                               check.compression.empty() ? "-" : check.compression,
                               to_string(check.state),
                               check.detail.empty() ? "" : " (" + check.detail + ")",
                               keys ? fmt::format("  encrypted to {}", fmt::join(*keys, ", "))
                                    : std::string());
                }
            }
        };
        section(entries, checks, kKindBackup);
        if (!json_ && entries.empty()) {
            fmt::print("(no backups in {})\n", repo.dir().string());
        }
        if (!safety.empty()) {
            if (!json_) {
                fmt::print(
                    "\nsafety dumps (taken by restore before replacing a database; never "
                    "latest, not counted by retention; the newest {} of each database are "
                    "kept):\n",
                    kSafetyDumpsKept);
            }
            section(safety, safety_checks, kKindPreRestore);
        }
        if (json_) {
            fmt::print("{}\n", out.dump(2));
        } else {
            for (const std::string& line : mixed_servers(entries, checks)) {
                fmt::print("\n{}\n", line);
            }
        }
        // A listing that found a damaged or unmatched dump is a failed check.
        return all_good ? 0 : 1;
    }

  private:
    // The keys an encrypted backup needs (from its manifest; "?" when that
    // cannot be read); nullopt for a plain backup.
    static std::optional<std::vector<std::string>> keys_of(const BackupRepository& repo,
                                                           const BackupEntry& entry) {
        if (!entry.id.encrypted) {
            return std::nullopt;
        }
        try {
            Manifest m = read_manifest(repo.path_of(entry.id.manifest_file()));
            if (m.encryption) {
                return m.encryption->recipients;
            }
        } catch (const Error&) {
        }
        return std::vector<std::string>{"?"};
    }

    int run_remote() {
        const RemoteConfig config = required_remote_config(options_);
        const storage::S3Store store(storage::S3Client(config.s3), config.prefix);
        const std::optional<std::string> database = database_name(options_);
        const std::vector<RemoteBackup> remote = list_remote(store, database);
        std::set<std::string> local;
        std::error_code ec;
        const std::filesystem::path dir = options_.get_or("dir", "/backups");
        if (std::filesystem::is_directory(dir, ec)) {
            for (const BackupEntry& entry : BackupRepository(dir).list(database)) {
                local.insert(entry.id.stem());
            }
        }
        const TimePoint now = now_seconds();
        nlohmann::ordered_json out = nlohmann::ordered_json::array();
        if (!json_) {
            fmt::print("{:<48} {:>10}  {:<20}  {:>8}  {:<10}  {:<14}  {}\n", "NAME", "SIZE",
                       "STARTED (UTC)", "AGE", "STATE", "COPIES", "LOCKED UNTIL");
        }
        std::set<std::string> listed;
        for (const RemoteBackup& backup : remote) {
            listed.insert(backup.id.stem());
            // A backup is in the bucket once its manifest is, and the manifest
            // goes up only after the dump was proven there.
            const char* state = backup.has_manifest ? "proven" : "incomplete";
            const char* copies =
                local.count(backup.id.stem()) != 0 ? "local+remote" : "remote only";
            std::string lock;
            if (backup.has_dump) {
                if (auto head = store.client().head(store.key_of(backup.id.dump_file()))) {
                    lock = head->lock_until;
                }
            }
            auto age = std::chrono::duration_cast<std::chrono::seconds>(now - backup.id.started);
            if (json_) {
                nlohmann::ordered_json item;
                item["file"] = backup.id.dump_file();
                item["url"] = store.location_of(backup.id.dump_file());
                item["database"] = backup.id.database;
                item["size_bytes"] = backup.dump_size;
                item["started_at"] = format_iso_utc(backup.id.started);
                item["age_seconds"] = age.count();
                item["state"] = state;
                item["copies"] = copies;
                item["globals"] = backup.has_globals;
                item["locked_until"] =
                    lock.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(lock);
                out.push_back(std::move(item));
            } else {
                fmt::print("{:<48} {:>10}  {:<20}  {:>8}  {:<10}  {:<14}  {}\n",
                           backup.id.dump_file(), human_size(backup.dump_size),
                           format_iso_utc(backup.id.started), format_age(age), state, copies,
                           lock.empty() ? "-" : lock);
            }
        }
        for (const std::string& stem : local) {
            if (listed.count(stem) != 0) {
                continue;
            }
            if (json_) {
                nlohmann::ordered_json item;
                item["file"] = stem + ".dump";
                item["state"] = "not copied";
                item["copies"] = "local only";
                out.push_back(std::move(item));
            } else {
                fmt::print("{:<48} {:>10}  {:<20}  {:>8}  {:<10}  {:<14}  {}\n", stem + ".dump",
                           "-", "-", "-", "not copied", "local only", "-");
            }
        }
        if (json_) {
            fmt::print("{}\n", out.dump(2));
        } else if (remote.empty()) {
            fmt::print("(no backups in {})\n", store.location());
        }
        return 0;
    }

    // One line per database whose backups come from more than one server.
    static std::vector<std::string> mixed_servers(const std::vector<BackupEntry>& entries,
                                                  const std::vector<ChecksumCheck>& checks) {
        std::map<std::string, std::map<std::string, size_t>> servers;  // db -> server -> count
        for (size_t i = 0; i < entries.size(); ++i) {
            if (checks[i].system_identifier) {
                ++servers[entries[i].id.database][*checks[i].system_identifier];
            }
        }
        std::vector<std::string> lines;
        for (const auto& [db, counts] : servers) {
            if (counts.size() < 2) {
                continue;
            }
            std::string parts;
            for (const auto& [system, count] : counts) {
                parts +=
                    fmt::format("{}{} from server {}", parts.empty() ? "" : ", ", count, system);
            }
            lines.push_back(fmt::format(
                "note: the backups of \"{}\" come from {} servers ({}); latest and retention "
                "work per server (`pgward list --json` shows each backup's system_identifier)",
                db, counts.size(), parts));
        }
        return lines;
    }

    // Each entry's check on its own thread share: on a directory of thousands
    // of backups, opening the manifests is most of the time.
    std::vector<ChecksumCheck> check_all(const BackupRepository& repo,
                                         const std::vector<BackupEntry>& entries) const {
        std::vector<ChecksumCheck> checks(entries.size());
        size_t threads = entries.size() < 256
                             ? 1
                             : std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
        std::vector<std::exception_ptr> errors(threads);
        auto work = [&](size_t first) {
            try {
                for (size_t i = first; i < entries.size(); i += threads) {
                    checks[i] = check_checksum(repo, entries[i], verify_);
                }
            } catch (...) {
                errors[first] = std::current_exception();
            }
        };
        std::vector<std::thread> pool;
        for (size_t t = 1; t < threads; ++t) {
            pool.emplace_back(work, t);
        }
        work(0);
        for (std::thread& thread : pool) {
            thread.join();
        }
        for (const std::exception_ptr& error : errors) {
            if (error) {
                std::rethrow_exception(error);
            }
        }
        return checks;
    }

    OptionTable options_;
    bool json_ = false;
    bool verify_ = false;
    bool remote_ = false;
};

}  // namespace

std::unique_ptr<Command> make_list_command() {
    return std::make_unique<ListCommand>();
}

}  // namespace pgward::commands
