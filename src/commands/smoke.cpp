#include <future>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "archive/reader.hpp"
#include "commands/command.hpp"
#include "commands/encryption_options.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "domain/offsite.hpp"
#include "domain/repository.hpp"
#include "domain/smoke.hpp"
#include "domain/verify.hpp"
#include "util/error.hpp"

namespace pgward::commands {
namespace {

// Without a manifest a deep read proves the archive's structure, and its
// content only as far as its compression checks itself: zlib streams carry a
// checksum; pg_dump writes its lz4 and zstd frames without one (frame flags
// 0x40 and 0x00), and uncompressed data has none.
std::string unchecked_content_note(const std::filesystem::path& file) {
    archive::Compression c = archive::Compression::Gzip;
    try {
        c = archive::read_index(file).header.compression;
    } catch (const Error&) {
    }
    if (c != archive::Compression::Gzip) {
        return fmt::format(
            "; nothing to compare them with, and its {} data carries no checksum: a changed byte "
            "in it cannot be seen without the manifest",
            archive::to_string(c));
    }
    return "; nothing to compare them with";
}

class SmokeCommand : public Command {
  public:
    const char* name() const override { return "smoke"; }
    const char* summary() const override {
        return "post-restore checks: schema version, row counts, sequences, indexes, a write";
    }

    void setup(CLI::App& app) override {
        add_connection_options(options_, app);
        app.add_option("--version-table", version_table_,
                       "TABLE.COLUMN of the schema version, or none")
            ->default_val("alembic_version.version_num");
        app.add_flag("--json", json_, "print JSON");
    }

    int run() override {
        auto version_table = VersionTable::parse(version_table_);
        pg::Connection conn = pg::Connection::open(options_.connection(), "pgward smoke");
        SmokeReport report = run_smoke(conn, version_table);
        if (json_) {
            nlohmann::ordered_json doc;
            doc["success"] = report.passed();
            doc["database"] = conn.database();
            doc["schema_version"] = report.schema_version
                                        ? nlohmann::ordered_json(*report.schema_version)
                                        : nlohmann::ordered_json();
            doc["checks"] = nlohmann::ordered_json::array();
            for (const Check& c : report.checks) {
                doc["checks"].push_back(to_json(c));
            }
            doc["warnings"] = report.warnings;
            doc["tables"] = nlohmann::ordered_json::array();
            for (const TableCount& t : report.tables) {
                doc["tables"].push_back({{"schema", t.schema}, {"name", t.name}, {"rows", t.rows}});
            }
            fmt::print("{}\n", doc.dump(2));
        } else {
            if (version_table) {
                fmt::print("schema version ({}): {}\n", version_table->display(),
                           report.schema_version.value_or("(missing)"));
            }
            for (const TableCount& t : report.tables) {
                fmt::print("  {}.{}: {} rows\n", t.schema, t.name, t.rows);
            }
            for (const Check& c : report.checks) {
                fmt::print("{} {}: {}\n", c.passed ? "ok  " : "FAIL", c.name, c.actual);
            }
            for (const std::string& w : report.warnings) {
                fmt::print("warn {}\n", w);
            }
        }
        if (!report.passed()) {
            std::string failed;
            for (const Check& c : report.checks) {
                if (!c.passed) {
                    failed += (failed.empty() ? "" : "; ") + c.name + ": " + c.actual;
                }
            }
            throw failure(
                fmt::format("smoke checks failed on \"{}\": {}", conn.database(), failed));
        }
        return 0;
    }

  private:
    OptionTable options_;
    std::string version_table_;
    bool json_ = false;
};

class VerifyCommand : public Command {
  public:
    const char* name() const override { return "verify"; }
    const char* summary() const override {
        return "prove archives intact: SHA-256 vs manifest, header, pg_restore --list";
    }

    void setup(CLI::App& app) override {
        app.add_option("backup", backup_, "a .dump file, its name in --dir, latest or all")
            ->required();
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory (default /backups)");
        options_.add(app, "dbname", "-d,--dbname", "", "with latest/all: only this database");
        options_.add(app, "pg_bin", "--pg-bin", "PGWARD_PG_BIN", "directory of pg_restore");
        app.add_flag("--deep", deep_,
                     "also read every data block: each table's rows and fp1 against the manifest");
        app.add_flag("--remote", remote_,
                     "verify the backups in the remote store (streaming, nothing written to disk)");
        add_remote_options(options_, app, RemoteFlag::SelectsTheStore);
        add_identity_options(options_, app);
    }

    int run() override {
        if (remote_) {
            return run_remote();
        }
        const DecryptionKeys keys = decryption_keys(options_);
        std::filesystem::path dir = options_.get_or("dir", "/backups");
        std::optional<std::filesystem::path> pg_bin;
        if (auto s = options_.get("pg_bin")) {
            pg_bin = s->value;
        }
        pg::Tool pg_restore = pg::ToolFinder(pg_bin).find("pg_restore");
        std::vector<std::filesystem::path> files;
        if (backup_ == "all") {
            for (const BackupEntry& e : BackupRepository(dir).list(database_name(options_))) {
                files.push_back(e.dump_path);
            }
            if (files.empty()) {
                throw failure("no backups in " + dir.string(), "check --dir / POSTGRES_BACKUP_DIR");
            }
        } else {
            files.push_back(resolve_backup(backup_, dir, database_name(options_)));
        }
        size_t bad = 0;
        for (const auto& file : files) {
            if (deep_) {
                // The SHA-256 re-hash and the deep read each take a core.
                auto shallow = std::async(std::launch::async, [&] {
                    return verify_archive(file, pg_restore, true, keys);
                });
                DeepReport d = deep_verify(file, manifest_beside(file), keys);
                VerifyReport report = shallow.get();
                if (!report.ok || !d.ok) {
                    ++bad;
                    std::string problems = report.problem;
                    for (const std::string& p : d.problems) {
                        problems += (problems.empty() ? "" : "; ") + p;
                    }
                    fmt::print("FAIL {}: {}\n", file.filename().string(), problems);
                } else {
                    fmt::print(
                        "ok   {} ({}; read {} tables, {} rows, {} large objects{})\n",
                        file.filename().string(),
                        report.checksum.manifest ? "sha256 matches the manifest" : "no manifest",
                        d.tables, d.rows, d.large_objects,
                        report.checksum.manifest ? "; every table's rows and fp1 equal the manifest"
                                                 : unchecked_content_note(file));
                }
                continue;
            }
            VerifyReport report = verify_archive(file, pg_restore, false, keys);
            if (report.ok && !report.version) {
                fmt::print(
                    "ok   {} (sha256 matches the manifest, age header intact; encrypted: "
                    "--identity reads it through)\n",
                    file.filename().string());
            } else if (report.ok) {
                fmt::print(
                    "ok   {} (sha256 matches the manifest, archive {}, pg_restore --list reads "
                    "it)\n",
                    file.filename().string(), report.version->text());
            } else {
                ++bad;
                fmt::print("FAIL {}: {}\n", file.filename().string(), report.problem);
            }
        }
        if (bad > 0) {
            throw failure(fmt::format("{} of {} archive(s) failed verification", bad, files.size()),
                          "do not rely on them; take a new backup");
        }
        return 0;
    }

  private:
    int run_remote() {
        const RemoteConfig config = required_remote_config(options_);
        const storage::S3Store store(storage::S3Client(config.s3), config.prefix);
        const std::vector<BackupId> ids =
            select_stored_backups(store, backup_, database_name(options_));
        size_t bad = 0;
        for (const BackupId& id : ids) {
            RemoteVerifyReport report =
                verify_stored_backup(store, id, deep_, decryption_keys(options_));
            fmt::print("{} {} ({})\n", report.ok ? "ok  " : "FAIL",
                       store.location_of(id.dump_file()), report.detail);
            std::fflush(stdout);
            bad += report.ok ? 0 : 1;
        }
        if (bad > 0) {
            throw failure(
                fmt::format("{} of {} remote backup(s) failed verification", bad, ids.size()),
                "do not rely on them; the next cycle uploads what is still local");
        }
        return 0;
    }

    OptionTable options_;
    std::string backup_;
    bool deep_ = false;
    bool remote_ = false;
};

}  // namespace

std::unique_ptr<Command> make_smoke_command() {
    return std::make_unique<SmokeCommand>();
}
std::unique_ptr<Command> make_verify_command() {
    return std::make_unique<VerifyCommand>();
}

}  // namespace pgward::commands
