#include "domain/offsite.hpp"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <map>
#include <set>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "domain/encryption.hpp"
#include "domain/verify.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "util/sha256.hpp"
#include "util/time.hpp"

namespace pgward {
namespace {

// "2026-12-10T10:00:00.000Z" or without the milliseconds.
std::optional<TimePoint> parse_lock_time(const std::string& text) {
    if (text.size() < 19) {
        return std::nullopt;
    }
    return parse_iso_utc(text.substr(0, 19) + "Z");
}

void remove_backup_objects(storage::S3Store& remote, const BackupId& id) {
    // The manifest first: a crash in between leaves no backup without its data.
    remote.remove(id.manifest_file());
    remote.remove(id.globals_file());
    remote.remove(id.dump_file());
}

}  // namespace

std::vector<RemoteBackup> list_remote(const storage::Store& store,
                                      const std::optional<std::string>& database) {
    std::map<std::string, RemoteBackup> by_stem;
    for (const storage::StoredFile& file : store.list()) {
        std::optional<ParsedFileName> parsed = parse_backup_file_name(file.name);
        if (!parsed || parsed->temporary || parsed->id.pre_restore ||
            (database && parsed->id.database != *database)) {
            continue;
        }
        RemoteBackup& backup = by_stem[parsed->id.stem()];
        // The manifest's name does not say whether the dump is encrypted.
        const bool encrypted = backup.id.encrypted || parsed->id.encrypted;
        backup.id = parsed->id;
        backup.id.encrypted = encrypted;
        switch (parsed->role) {
            case FileRole::Dump:
                backup.has_dump = true;
                backup.dump_size = file.size;
                break;
            case FileRole::Manifest:
                backup.has_manifest = true;
                break;
            case FileRole::Globals:
                backup.has_globals = true;
                break;
        }
    }
    std::vector<RemoteBackup> out;
    out.reserve(by_stem.size());
    for (auto& [stem, backup] : by_stem) {
        out.push_back(std::move(backup));
    }
    std::sort(out.begin(), out.end(), [](const RemoteBackup& a, const RemoteBackup& b) {
        return a.id.started != b.id.started ? a.id.started > b.id.started
                                            : a.id.database < b.id.database;
    });
    return out;
}

std::vector<BackupId> select_stored_backups(const storage::Store& store, const std::string& spec,
                                            const std::optional<std::string>& database) {
    std::vector<RemoteBackup> complete = list_remote(store, database);
    std::erase_if(complete, [](const RemoteBackup& b) { return !b.has_manifest; });
    std::vector<BackupId> out;
    if (spec == "all" || spec == "latest") {
        if (complete.empty()) {
            throw failure(fmt::format("no backups{} in {}",
                                      database ? " of \"" + *database + "\"" : std::string(),
                                      store.location()),
                          "a backup is there once its manifest is: check the remote's URL and "
                          "that uploads succeed (pgward status)");
        }
        if (spec == "all") {
            for (const RemoteBackup& b : complete) {
                out.push_back(b.id);
            }
            return out;
        }
        std::set<std::string> databases;
        for (const RemoteBackup& b : complete) {
            databases.insert(b.id.database);
        }
        if (!database && databases.size() > 1) {
            std::string names;
            for (const std::string& name : databases) {
                names += (names.empty() ? "\"" : ", \"") + name + "\"";
            }
            throw usage_error(fmt::format("{} holds backups of {} databases ({}): latest of which?",
                                          store.location(), databases.size(), names),
                              "name the source database with --dbname (or --from-db)");
        }
        out.push_back(complete.front().id);
        return out;
    }
    std::string name = spec;
    const std::string location = store.location();
    if (name.rfind("s3://", 0) == 0) {
        if (name.rfind(location, 0) != 0) {
            throw usage_error(fmt::format("{} is not in the remote store {}", spec, location),
                              "set --remote-url / POSTGRES_BACKUP_REMOTE to its bucket and prefix");
        }
        name = name.substr(location.size());
    }
    std::optional<ParsedFileName> parsed = parse_backup_file_name(name);
    if (!parsed || parsed->role != FileRole::Dump || parsed->temporary) {
        throw usage_error(fmt::format("\"{}\" is not the name of a backup's dump", spec),
                          "give latest, all, a <db>_<UTC>.dump name or its s3:// URL");
    }
    for (const RemoteBackup& b : list_remote(store, parsed->id.database)) {
        if (b.id == parsed->id) {
            if (!b.has_manifest) {
                throw failure(fmt::format("{} has no manifest: its upload never finished",
                                          store.location_of(name)),
                              "the next backup cycle uploads it again");
            }
            out.push_back(b.id);
            return out;
        }
    }
    throw failure(fmt::format("{} does not exist", store.location_of(name)),
                  "list what is there with: pgward list --remote");
}

RemoteCheck check_stored_dump(const storage::Store& store, const BackupId& id,
                              const Manifest& manifest, RemoteProof proof) {
    RemoteCheck check;
    const std::string where = store.location_of(id.dump_file());
    if (proof == RemoteProof::Size) {
        std::optional<storage::StoredFile> stored = store.stat(id.dump_file());
        if (!stored) {
            check.detail = where + " is missing";
        } else if (stored->size != manifest.size_bytes) {
            check.detail = fmt::format("{} has {} bytes; the manifest says {}", where, stored->size,
                                       manifest.size_bytes);
        } else {
            check.ok = true;
            check.detail = fmt::format("{} bytes, as the manifest says (size only: not read back)",
                                       stored->size);
        }
        return check;
    }
    Sha256 hash;
    check.bytes_read =
        store.read(id.dump_file(), [&](const char* data, size_t size) { hash.update(data, size); });
    std::string digest = hash.hex_digest();
    if (check.bytes_read != manifest.size_bytes) {
        check.detail = fmt::format("{} has {} bytes; the manifest says {}", where, check.bytes_read,
                                   manifest.size_bytes);
    } else if (digest != manifest.sha256) {
        check.detail =
            fmt::format("{} has SHA-256 {}; the manifest says {}", where, digest, manifest.sha256);
    } else {
        check.ok = true;
        check.detail =
            fmt::format("read back: {} bytes, SHA-256 as the manifest says", check.bytes_read);
    }
    return check;
}

namespace {

std::string read_stored_manifest_text(const storage::Store& store, const BackupId& id) {
    std::string text;
    store.read(id.manifest_file(), [&](const char* data, size_t size) {
        if (text.size() + size > size_t{256} * 1024 * 1024) {
            throw failure(store.location_of(id.manifest_file()) + " is too large for a manifest");
        }
        text.append(data, size);
    });
    return text;
}

Manifest parse_stored_manifest(const storage::Store& store, const BackupId& id,
                               const std::string& text) {
    const std::string source = store.location_of(id.manifest_file());
    nlohmann::json document = nlohmann::json::parse(text, nullptr, false);
    if (document.is_discarded()) {
        throw failure(source + " is not valid JSON");
    }
    return manifest_from_json(document, source);
}

}  // namespace

Manifest read_stored_manifest(const storage::Store& store, const BackupId& id) {
    return parse_stored_manifest(store, id, read_stored_manifest_text(store, id));
}

RemoteVerifyReport verify_stored_backup(const storage::Store& store, const BackupId& id, bool deep,
                                        const DecryptionKeys& keys) {
    RemoteVerifyReport report;
    const Manifest manifest = read_stored_manifest(store, id);
    Sha256 hash;
    auto produce = [&](const storage::Sink& sink) {
        report.bytes_read = store.read(id.dump_file(), [&](const char* data, size_t size) {
            hash.update(data, size);
            sink(data, size);
        });
    };
    std::vector<std::string> problems;
    if (deep && id.encrypted) {
        // Decrypted as it streams; a chunk that does not authenticate stops
        // the decryption, never the hash of every byte.
        std::string decrypt_error;
        Manifest opened = manifest;
        auto decrypting = [&](const storage::Sink& sink) {
            std::unique_ptr<crypto::AgeDecryptor> decryptor = keys.decryptor(sink);
            produce([&](const char* data, size_t size) {
                if (!decrypt_error.empty()) {
                    return;
                }
                try {
                    decryptor->write(data, size);
                } catch (const Error& e) {
                    decrypt_error = e.what();
                }
            });
            if (decrypt_error.empty()) {
                try {
                    decryptor->finish();
                } catch (const Error& e) {
                    decrypt_error = e.what();
                }
            }
        };
        try {
            open_manifest(opened, keys, store.location_of(id.manifest_file()));
            if (!keys.present()) {
                throw_cannot_open(id.dump_file(), "no identity was given", opened, keys);
            }
            DeepReport d = deep_verify_stream(decrypting, opened);
            problems = d.problems;
            report.tables = d.tables;
            report.rows = d.rows;
        } catch (const Error& e) {
            problems.push_back(e.what());
            if (report.bytes_read == 0) {
                produce([](const char*, size_t) {});  // the SHA-256 is checked all the same
            }
        }
        if (!decrypt_error.empty()) {
            problems.insert(problems.begin(), decrypt_error);
        }
    } else if (deep) {
        DeepReport d = deep_verify_stream(produce, manifest);
        problems = d.problems;
        report.tables = d.tables;
        report.rows = d.rows;
    } else {
        produce([](const char*, size_t) {});
    }
    const std::string digest = hash.hex_digest();
    if (report.bytes_read != manifest.size_bytes) {
        problems.insert(problems.begin(), fmt::format("{} bytes; the manifest says {}",
                                                      report.bytes_read, manifest.size_bytes));
    } else if (digest != manifest.sha256) {
        problems.insert(problems.begin(),
                        fmt::format("SHA-256 {}; the manifest says {}", digest, manifest.sha256));
    }
    report.ok = problems.empty();
    if (report.ok) {
        report.detail = deep ? fmt::format(
                                   "sha256 matches the manifest; read {} tables, {} rows; "
                                   "every table's rows and fp1 equal the manifest",
                                   report.tables, report.rows)
                             : "sha256 matches the manifest";
    } else {
        for (const std::string& p : problems) {
            report.detail += (report.detail.empty() ? "" : "; ") + p;
        }
    }
    return report;
}

FetchedBackup::FetchedBackup(const storage::Store& store, const BackupId& id,
                             const std::filesystem::path& parent)
    : source_(store.location_of(id.dump_file())) {
    dir_ = make_private_dir(parent, ".pgward-fetch-", "the fetched backup");
    try {
        const std::string manifest_text = read_stored_manifest_text(store, id);
        const Manifest manifest = parse_stored_manifest(store, id, manifest_text);
        write_file_atomically(dir_ / id.manifest_file(), manifest_text,
                              AtomicFile::Publish::NoReplace);
        if (store.stat(id.globals_file())) {
            AtomicFile globals(dir_ / id.globals_file(), AtomicFile::Publish::NoReplace);
            store.read(id.globals_file(),
                       [&](const char* data, size_t size) { globals.write(data, size); });
            globals.commit();
        }
        log::info("fetching a backup from the remote store",
                  {{"object", source_}, {"bytes", std::to_string(manifest.size_bytes)}});
        AtomicFile dump(dir_ / id.dump_file(), AtomicFile::Publish::NoReplace);
        Sha256 hash;
        store.read(id.dump_file(), [&](const char* data, size_t size) {
            hash.update(data, size);
            dump.write(data, size);
        });
        const std::string digest = hash.hex_digest();
        if (dump.bytes_written() != manifest.size_bytes || digest != manifest.sha256) {
            throw failure(fmt::format("{} is not the backup its manifest describes: {} bytes, "
                                      "SHA-256 {}; the manifest says {} bytes, {}",
                                      source_, dump.bytes_written(), digest, manifest.size_bytes,
                                      manifest.sha256),
                          "verify the bucket's copies with: pgward verify --remote all");
        }
        dump.commit();
        dump_ = dir_ / id.dump_file();
        log::info("fetched and checked", {{"object", source_}, {"sha256", digest}});
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
        throw;
    }
}

FetchedBackup::~FetchedBackup() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

std::vector<RemotePruneDecision> plan_remote_retention(const storage::S3Store& remote,
                                                       const std::string& database, size_t keep,
                                                       const BackupRepository* local) {
    const TimePoint now = now_seconds();
    std::vector<RemotePruneDecision> plan;
    size_t kept = 0;
    for (const RemoteBackup& backup : list_remote(remote, database)) {
        RemotePruneDecision d{backup.id, RemotePruneDecision::Action::Delete, ""};
        if (backup.has_manifest && kept < keep) {
            ++kept;
            d.action = RemotePruneDecision::Action::Keep;
            d.reason = fmt::format("among the newest {} proven", keep);
        } else if (!backup.has_manifest && local != nullptr &&
                   std::filesystem::exists(local->path_of(backup.id.dump_file()))) {
            d.action = RemotePruneDecision::Action::Keep;
            d.reason = "no manifest yet; the local backup is there for the next copy to finish";
        } else {
            d.reason = backup.has_manifest
                           ? fmt::format("beyond the newest {} proven", keep)
                           : std::string("no manifest: an upload that never finished");
            if (backup.has_dump) {
                auto head = remote.client().head(remote.key_of(backup.id.dump_file()));
                auto until = head ? parse_lock_time(head->lock_until) : std::nullopt;
                if (until && *until > now) {
                    d.action = RemotePruneDecision::Action::Locked;
                    d.reason += "; kept: under Object Lock until " + head->lock_until;
                }
            }
        }
        plan.push_back(std::move(d));
    }
    return plan;
}

std::vector<BackupId> apply_remote_retention(storage::S3Store& remote,
                                             const std::vector<RemotePruneDecision>& plan,
                                             bool dry_run) {
    std::vector<BackupId> deleted;
    for (const RemotePruneDecision& d : plan) {
        const char* verb = d.action == RemotePruneDecision::Action::Keep     ? "keep"
                           : d.action == RemotePruneDecision::Action::Locked ? "keep (locked)"
                           : dry_run                                         ? "would delete"
                                                                             : "delete";
        log::info("offsite retention", {{"store", remote.location()},
                                        {"file", d.id.dump_file()},
                                        {"decision", verb},
                                        {"reason", d.reason}});
        if (d.action == RemotePruneDecision::Action::Delete) {
            if (!dry_run) {
                remove_backup_objects(remote, d.id);
            }
            deleted.push_back(d.id);
        }
    }
    return deleted;
}

OffsiteResult copy_offsite(const BackupRepository& local, storage::S3Store& remote,
                           const std::string& database, const std::optional<std::string>& system,
                           const OffsiteOptions& options) {
    const auto started = std::chrono::steady_clock::now();
    OffsiteResult result;

    // Under the lock no other run of this database uploads: any multipart
    // upload of its names was left by a crashed or killed run.
    for (const storage::MultipartUpload& upload : remote.uploads(encode_db_name(database) + "_")) {
        // The listing is by prefix: "shop_" also lists shop_eu's uploads.
        auto parsed = parse_backup_file_name(upload.key.substr(remote.prefix().size()));
        if (!parsed || parsed->id.database != database) {
            continue;
        }
        remote.client().abort_upload(upload);
        ++result.aborted_uploads;
        log::warn("aborted a multipart upload a previous run left",
                  {{"object", upload.key}, {"initiated", upload.initiated}});
    }

    std::set<std::string> complete;
    for (const RemoteBackup& backup : list_remote(remote, database)) {
        if (backup.has_manifest) {
            complete.insert(backup.id.stem());
        }
    }
    const std::vector<BackupId> ids = local.ids_of_server(database, system);
    for (size_t i = 0; i < ids.size(); ++i) {
        const BackupId& id = ids[i];
        // Only what the bucket's retention keeps: an older backup would be
        // uploaded and pruned again on every cycle.
        if (options.retention && i >= *options.retention) {
            break;
        }
        if (complete.count(id.stem()) != 0) {
            continue;
        }
        const std::filesystem::path manifest_path = local.path_of(id.manifest_file());
        if (!std::filesystem::exists(manifest_path)) {
            log::warn("not copied offsite: the backup has no manifest to prove it with",
                      {{"file", local.path_of(id.dump_file()).string()}});
            continue;
        }
        const Manifest manifest = read_manifest(manifest_path);
        log::info("copying a backup offsite", {{"file", id.dump_file()},
                                               {"to", remote.location()},
                                               {"bytes", std::to_string(manifest.size_bytes)}});
        remote.put_file(id.dump_file(), local.path_of(id.dump_file()));
        result.bytes_uploaded += manifest.size_bytes;
        const std::filesystem::path globals = local.path_of(id.globals_file());
        std::error_code ec;
        const bool has_globals = std::filesystem::exists(globals, ec);
        if (has_globals) {
            remote.put_file(id.globals_file(), globals);
            result.bytes_uploaded += std::filesystem::file_size(globals, ec);
        }
        RemoteCheck check = check_stored_dump(remote, id, manifest, options.proof);
        if (check.ok && has_globals) {
            std::optional<storage::StoredFile> stored = remote.stat(id.globals_file());
            uint64_t local_size = std::filesystem::file_size(globals, ec);
            if (!stored || stored->size != local_size) {
                check.ok = false;
                check.detail = fmt::format(
                    "{} has {} bytes; the local file {}", remote.location_of(id.globals_file()),
                    stored ? std::to_string(stored->size) : "none", local_size);
            }
        }
        if (!check.ok) {
            try {
                remote.remove(id.globals_file());
                remote.remove(id.dump_file());
            } catch (const Error& e) {
                log::warn("could not remove an unproven copy; the next run replaces it",
                          {{"reason", e.what()}});
            }
            throw failure(fmt::format("the offsite copy of {} is not the backup: {}",
                                      id.dump_file(), check.detail),
                          "the local backup is kept; the next run uploads it again");
        }
        remote.put_file(id.manifest_file(), manifest_path);
        result.uploaded.push_back(id);
        log::info("backup copied offsite and proven",
                  {{"object", remote.location_of(id.dump_file())}, {"proof", check.detail}});
    }

    if (options.retention) {
        const auto plan = plan_remote_retention(remote, database, *options.retention, &local);
        result.pruned = apply_remote_retention(remote, plan, false);
        for (const RemotePruneDecision& d : plan) {
            if (d.action == RemotePruneDecision::Action::Locked) {
                result.kept_locked.push_back(d.id.dump_file());
            }
        }
    }
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return result;
}

std::string OffsiteTarget::location() const {
    return storage::s3_location(s3.bucket, prefix);
}

OffsiteResult copy_directory_offsite(const std::filesystem::path& dir, const std::string& database,
                                     const OffsiteTarget& target) {
    BackupRepository local(dir);
    storage::S3Store store(storage::S3Client(target.s3), target.prefix);
    FileLock lock = local.lock(database);
    std::optional<std::string> system;
    const std::vector<BackupId> ids = local.ids(database);
    if (!ids.empty()) {
        system = local.system_of(ids.front());
    }
    OffsiteResult copied = copy_offsite(local, store, database, system, target.offsite);
    log::info("offsite copy done", {{"store", store.location()},
                                    {"uploaded", std::to_string(copied.uploaded.size())},
                                    {"pruned", std::to_string(copied.pruned.size())},
                                    {"bytes", std::to_string(copied.bytes_uploaded)},
                                    {"seconds", fmt::format("{:.3f}", copied.seconds)}});
    return copied;
}

}  // namespace pgward
