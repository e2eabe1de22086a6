#include "domain/pitr_offsite.hpp"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "domain/naming.hpp"
#include "domain/wal_archive.hpp"
#include "pg/wal.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/lock.hpp"
#include "util/log.hpp"
#include "util/sha256.hpp"

namespace pgward {
namespace fs = std::filesystem;

namespace {

constexpr const char* kSumsFormat = "pgward-wal-sums/1";
constexpr const char* kSumsPrefix = "sums-";
constexpr const char* kSumsSuffix = ".json";
// WAL files named by one sums file: a killed run re-uploads at most these.
constexpr size_t kSumsBatch = 32;

std::string sums_file_of(const std::string& last_file) {
    return std::string(kSumsPrefix) + last_file + kSumsSuffix;
}

bool is_sums_file(std::string_view name) {
    return name.starts_with(kSumsPrefix) && name.ends_with(kSumsSuffix);
}

// One file of a folder: no path, not hidden.
bool is_plain_file_name(std::string_view name) {
    return !name.empty() && name.find('/') == std::string_view::npos && !name.starts_with(".");
}

// The WAL file an object in wal/<system>/ holds: its name, or without the
// .age of one that went up encrypted.
std::optional<std::string> wal_name_of_object(std::string_view object) {
    std::string name(object);
    if (name.ends_with(".age")) {
        name.resize(name.size() - 4);
    }
    if (!pg::WalFileName::parse(name)) {
        return std::nullopt;
    }
    return name;
}

std::string read_text(const storage::Store& store, std::string_view name) {
    std::string text;
    store.read(name, [&](const char* data, size_t size) { text.append(data, size); });
    return text;
}

nlohmann::ordered_json digest_json(const StoredDigest& digest) {
    nlohmann::ordered_json out{
        {"object", digest.object}, {"size", digest.size}, {"sha256", digest.sha256}};
    if (digest.plain_sha256) {
        out["plain_sha256"] = *digest.plain_sha256;
    }
    return out;
}

StoredDigest digest_from_json(const std::string& name, const nlohmann::json& doc) {
    StoredDigest digest{doc.value("object", name), doc.at("size").get<uint64_t>(),
                        doc.at("sha256").get<std::string>(), std::nullopt};
    if (doc.contains("plain_sha256")) {
        digest.plain_sha256 = doc.at("plain_sha256").get<std::string>();
    }
    return digest;
}

// A private folder (0700) for the encrypted copies on their way up, removed
// with the object; one a killed run left is removed by the next.
class UploadScratch {
  public:
    UploadScratch(fs::path parent) : parent_(std::move(parent)) {}
    ~UploadScratch() {
        if (!dir_.empty()) {
            std::error_code ec;
            fs::remove_all(dir_, ec);
        }
    }
    UploadScratch(const UploadScratch&) = delete;
    UploadScratch& operator=(const UploadScratch&) = delete;
    const fs::path& parent() const { return parent_; }
    const fs::path& dir() {
        if (dir_.empty()) {
            dir_ = make_private_dir(parent_, ".pgward-upload-", "files encrypted for upload");
        }
        return dir_;
    }

  private:
    fs::path parent_;
    fs::path dir_;
};

// `source` encrypted to `keys` into `destination` (0600); the ciphertext's
// digest.
StoredDigest encrypt_to(const fs::path& source, const EncryptionKeys& keys,
                        const fs::path& destination) {
    AtomicFile out(destination, AtomicFile::Publish::NoReplace);
    Sha256 cipher;
    Sha256 plain;
    auto encryptor = keys.encryptor([&](const char* data, size_t size) {
        cipher.update(data, size);
        out.write(data, size);
    });
    read_file_chunks(source, [&](const char* data, size_t size) {
        plain.update(data, size);
        encryptor->write(data, size);
    });
    encryptor->finish();
    out.commit();
    return {destination.filename().string(), out.bytes_written(), cipher.hex_digest(),
            plain.hex_digest()};
}

// Uploads `source` as `name` (encrypted to `keys` as <name>.age when they
// are set) and proves the copy: read back and hashed, or its size. An
// unproven copy is removed (the next run uploads it again).
StoredDigest upload_proven(storage::Store& store, const std::string& name, const fs::path& source,
                           RemoteProof proof, const EncryptionKeys& keys, UploadScratch& scratch) {
    StoredDigest local;
    fs::path upload = source;
    if (keys.enabled()) {
        // The ciphertext goes beside the archive for a while: never at the
        // cost of the room pg_receivewal needs.
        std::error_code space_ec;
        const fs::space_info space = fs::space(scratch.parent(), space_ec);
        const uint64_t size = fs::file_size(source);
        const uint64_t room = size + size / 10 + (uint64_t{256} << 20);
        if (!space_ec && space.available < room) {
            throw failure(
                fmt::format("not enough room in {} to encrypt {} for its upload: {} "
                            "bytes free, {} needed (with 256 MiB left for the WAL)",
                            scratch.parent().string(), source.string(), space.available, room),
                "free space on the backup volume; nothing was uploaded");
        }
        upload = scratch.dir() / (name + ".age");
        local = encrypt_to(source, keys, upload);
    } else {
        local = {name, fs::file_size(source), sha256_file_hex(source), std::nullopt};
    }
    std::string problem;
    try {
        store.put_file(local.object, upload);
        if (proof == RemoteProof::Read) {
            Sha256 hash;
            const uint64_t bytes = store.read(
                local.object, [&](const char* data, size_t size) { hash.update(data, size); });
            const std::string digest = hash.hex_digest();
            if (bytes != local.size || digest != local.sha256) {
                problem =
                    fmt::format("read back {} bytes, SHA-256 {}; what went up was {} bytes, {}",
                                bytes, digest, local.size, local.sha256);
            }
        } else {
            const std::optional<storage::StoredFile> stored = store.stat(local.object);
            if (!stored || stored->size != local.size) {
                problem = fmt::format("it has {} bytes; what went up {}",
                                      stored ? std::to_string(stored->size) : "none", local.size);
            }
        }
    } catch (...) {
        if (upload != source) {
            std::error_code ec;
            fs::remove(upload, ec);
        }
        throw;
    }
    if (upload != source) {
        std::error_code ec;
        fs::remove(upload, ec);
    }
    if (!problem.empty()) {
        try {
            store.remove(local.object);
        } catch (const Error& e) {
            log::warn("could not remove an unproven copy; the next run replaces it",
                      {{"reason", e.what()}});
        }
        throw failure(fmt::format("the offsite copy {} is not {}: {}",
                                  store.location_of(local.object), source.string(), problem),
                      "the local file is kept; the next run uploads it again");
    }
    return local;
}

// Streams a stored file into `destination` (a new file), decrypting one that
// went up encrypted, and checks the object's size and SHA-256 (and the
// plaintext's) before it is published.
void fetch_checked(const storage::Store& store, const StoredDigest& expected,
                   const DecryptionKeys& keys, const fs::path& destination) {
    const std::string location = store.location_of(expected.object);
    if (expected.plain_sha256 && !keys.present()) {
        throw usage_error(fmt::format("{} is encrypted, and no key to open it was given", location),
                          "give the identity file (--identity / PGWARD_AGE_IDENTITY_FILE) or the "
                          "passphrase file (--passphrase-file)");
    }
    AtomicFile out(destination, AtomicFile::Publish::NoReplace);
    Sha256 hash;
    Sha256 plain;
    std::unique_ptr<crypto::AgeDecryptor> decryptor;
    if (expected.plain_sha256) {
        decryptor = keys.decryptor([&](const char* data, size_t size) {
            plain.update(data, size);
            out.write(data, size);
        });
    }
    uint64_t bytes = 0;
    try {
        bytes = store.read(expected.object, [&](const char* data, size_t size) {
            hash.update(data, size);
            if (decryptor) {
                decryptor->write(data, size);
            } else {
                out.write(data, size);
            }
        });
        if (decryptor) {
            decryptor->finish();
        }
    } catch (const Error& e) {
        if (decryptor && decryptor->key_refused()) {
            throw failure(fmt::format("{} cannot be opened with the keys from {}: they are not "
                                      "the keys it was encrypted to",
                                      location, keys.origin),
                          "give the identity the WAL and base backups were encrypted to");
        }
        if (decryptor) {
            throw failure(fmt::format("{} cannot be decrypted: {}", location, e.what()),
                          "the copy in the store was changed or damaged; recover from the local "
                          "backup directory, or an older base backup");
        }
        throw;
    }
    const std::string digest = hash.hex_digest();
    const std::string plain_digest = expected.plain_sha256 ? plain.hex_digest() : digest;
    if (bytes != expected.size || digest != expected.sha256 ||
        plain_digest != expected.plain_sha256.value_or(digest)) {
        throw failure(fmt::format("{} is not the file that was uploaded and proven: {} bytes, "
                                  "SHA-256 {}; it was {} bytes, {}",
                                  location, bytes, digest, expected.size, expected.sha256),
                      "the copy in the store was changed or damaged; recover from the local "
                      "backup directory, or an older base backup");
    }
    out.commit();
}

// A base backup in the store: what base.json says, and what every file
// in its folder must be.
struct StoredBase {
    BaseBackup backup;
    std::map<std::string, StoredDigest> files;
};

// `without_info`, when given, receives the folders holding objects but no
// base.json: an upload that stopped before its end.
std::vector<StoredBase> list_stored_bases(const storage::S3Store& remote, uint64_t system,
                                          std::set<std::string>* without_info = nullptr) {
    const storage::S3Store store = base_store_of(remote, system);
    std::vector<StoredBase> found;
    std::set<std::string> folders;
    std::set<std::string> described;
    for (const storage::ObjectInfo& object : store.client().list(store.prefix())) {
        const std::string_view rest = std::string_view(object.key).substr(store.prefix().size());
        const size_t slash = rest.find('/');
        if (slash == std::string_view::npos || rest.starts_with(".")) {
            continue;
        }
        folders.emplace(rest.substr(0, slash));
        if (rest.substr(slash + 1) != kBaseBackupInfoFile) {
            continue;
        }
        const std::string name(rest.substr(0, slash));
        described.insert(name);
        const storage::S3Store folder = base_store_of(remote, system, name);
        try {
            const std::string text = read_text(folder, kBaseBackupInfoFile);
            StoredBase base{parse_base_backup_info(text, fs::path(folder.location())), {}};
            // What the store says becomes paths on this host: plain names only.
            if (base.backup.name != name) {
                throw failure(fmt::format("it names base backup \"{}\"", base.backup.name));
            }
            for (const std::string& file : base.backup.files) {
                if (!is_plain_file_name(file)) {
                    throw failure(fmt::format("it names a file \"{}\"", file));
                }
            }
            const nlohmann::json doc = nlohmann::json::parse(text);
            const nlohmann::json stored = doc.value("stored_files", nlohmann::json::object());
            for (const auto& [file, digest] : stored.items()) {
                base.files[file] = digest_from_json(file, digest);
            }
            found.push_back(std::move(base));
        } catch (const std::exception& e) {
            log::warn("a stored base backup's description cannot be read; it is skipped",
                      {{"object", folder.location_of(kBaseBackupInfoFile)}, {"error", e.what()}});
        }
    }
    std::sort(found.begin(), found.end(), [](const StoredBase& a, const StoredBase& b) {
        return std::tie(a.backup.started, a.backup.name) <
               std::tie(b.backup.started, b.backup.name);
    });
    if (without_info != nullptr) {
        std::set_difference(folders.begin(), folders.end(), described.begin(), described.end(),
                            std::inserter(*without_info, without_info->end()));
    }
    return found;
}

void remove_stored_base(const storage::S3Store& remote, uint64_t system, const std::string& name) {
    storage::S3Store folder = base_store_of(remote, system, name);
    // base.json first: a crash in between leaves no base backup without its files.
    folder.remove(kBaseBackupInfoFile);
    for (const storage::ObjectInfo& object : folder.client().list(folder.prefix())) {
        folder.client().remove(object.key);
    }
}

}  // namespace

storage::S3Store wal_store_of(const storage::S3Store& remote, uint64_t system) {
    return {remote.client(), fmt::format("{}wal/{}/", remote.prefix(), system)};
}

storage::S3Store base_store_of(const storage::S3Store& remote, uint64_t system,
                               const std::string& name) {
    return {remote.client(),
            fmt::format("{}base/{}/{}", remote.prefix(), system, name.empty() ? "" : name + "/")};
}

std::map<std::string, StoredDigest> read_wal_sums(const storage::Store& wal_store) {
    std::map<std::string, StoredDigest> sums;
    for (const storage::StoredFile& file : wal_store.list()) {
        if (!is_sums_file(file.name)) {
            continue;
        }
        try {
            const nlohmann::json doc = nlohmann::json::parse(read_text(wal_store, file.name));
            if (doc.value("format", "") != kSumsFormat) {
                throw failure("not a pgward WAL sums file");
            }
            for (const auto& [name, digest] : doc.at("files").items()) {
                sums[name] = digest_from_json(name, digest);
            }
        } catch (const std::exception& e) {
            log::warn("a WAL sums file cannot be read; the files it names count as not proven",
                      {{"object", wal_store.location_of(file.name)}, {"error", e.what()}});
        }
    }
    return sums;
}

WalOffsiteCopier::WalOffsiteCopier(fs::path backup_dir, uint64_t system,
                                   const storage::S3Store& remote, RemoteProof proof,
                                   EncryptionKeys keys)
    : backup_dir_(std::move(backup_dir)),
      system_(system),
      store_(wal_store_of(remote, system)),
      proof_(proof),
      keys_(std::move(keys)) {}

WalOffsiteResult WalOffsiteCopier::copy() {
    if (!proven_) {
        proven_.emplace();
        for (const auto& [name, digest] : read_wal_sums(store_)) {
            proven_->insert(name);
        }
    }
    WalOffsiteResult result;
    // One copier per archive at a time (the service's and a `push`): with
    // encryption, each upload of a file is another ciphertext, and the sums
    // of one must not vouch for the other's object.
    const std::optional<FileLock> lock =
        FileLock::try_acquire(backup_dir_ / fmt::format(".pgward-offsite-wal-{}.lock", system_));
    if (!lock) {
        result.busy = true;
        return result;
    }
    const WalArchive archive(backup_dir_, system_);
    std::vector<std::string> pending;
    for (const std::string& file : archive.file_names()) {
        if (pg::WalFileName::parse(file)->kind != pg::WalFileName::Kind::PartialSegment &&
            proven_->count(file) == 0) {
            pending.push_back(file);
        }
    }
    nlohmann::ordered_json batch = nlohmann::ordered_json::object();
    auto publish_batch = [&] {
        if (batch.empty()) {
            return;
        }
        const std::string last = std::prev(batch.end()).key();
        const nlohmann::ordered_json doc{{"format", kSumsFormat}, {"files", batch}};
        store_.client().put_text(store_.key_of(sums_file_of(last)), doc.dump(1) + "\n",
                                 "application/json");
        for (const auto& [name, digest] : batch.items()) {
            proven_->insert(name);
            result.uploaded.push_back(name);
        }
        log::info("WAL copied offsite and proven", {{"store", store_.location()},
                                                    {"files", std::to_string(batch.size())},
                                                    {"first", batch.begin().key()},
                                                    {"last", last}});
        batch = nlohmann::ordered_json::object();
    };
    UploadScratch scratch(backup_dir_);
    std::vector<std::string> damaged;
    std::string segment_buffer;
    try {
        for (const std::string& file : pending) {
            if (pg::WalFileName::parse(file)->kind == pg::WalFileName::Kind::Segment) {
                // A damaged segment never goes up as if it were proven; the
                // ones after it still do (a base backup after it needs them).
                try {
                    archive.check_segment(file, segment_buffer);
                } catch (const Error& e) {
                    damaged.emplace_back(e.what());
                    continue;
                }
            }
            const StoredDigest digest =
                upload_proven(store_, file, archive.dir() / file, proof_, keys_, scratch);
            result.bytes += digest.size;
            batch[file] = digest_json(digest);
            if (batch.size() >= kSumsBatch) {
                publish_batch();
            }
        }
    } catch (...) {
        // What went up and was proven before the failure counts.
        try {
            publish_batch();
        } catch (const Error& e) {
            log::warn(
                "cannot write the sums of the WAL copied before a failure; the next run "
                "copies it again",
                {{"error", e.what()}});
        }
        throw;
    }
    publish_batch();
    if (!damaged.empty()) {
        throw failure(
            fmt::format("{} WAL segment(s) not copied: {}", damaged.size(), damaged.front()),
            "the later ones were; take a base backup (pgward basebackup) so that "
            "recovery does not need the damaged one");
    }
    for (auto it = proven_->rbegin(); it != proven_->rend(); ++it) {
        auto name = pg::WalFileName::parse(*it);
        if (name && name->kind == pg::WalFileName::Kind::Segment) {
            result.newest = *it;
            break;
        }
    }
    return result;
}

std::vector<BaseBackup> list_stored_base_backups(const storage::S3Store& remote, uint64_t system) {
    std::vector<BaseBackup> out;
    for (StoredBase& base : list_stored_bases(remote, system)) {
        out.push_back(std::move(base.backup));
    }
    return out;
}

std::vector<uint64_t> stored_base_systems(const storage::S3Store& remote) {
    std::set<uint64_t> systems;
    const std::string prefix = remote.prefix() + "base/";
    for (const storage::ObjectInfo& object : remote.client().list(prefix)) {
        const std::string_view rest = std::string_view(object.key).substr(prefix.size());
        if (auto system = parse_system_identifier(rest.substr(0, rest.find('/')))) {
            systems.insert(*system);
        }
    }
    return {systems.begin(), systems.end()};
}

uint64_t stored_system(const storage::S3Store& remote, std::optional<uint64_t> system) {
    if (system) {
        return *system;
    }
    const std::vector<uint64_t> systems = stored_base_systems(remote);
    if (systems.empty()) {
        throw failure(fmt::format("no base backups in {}base/", remote.location()),
                      "point-in-time recovery starts from one: pgward basebackup, with the "
                      "service's --remote set (or pgward push) to copy it");
    }
    if (systems.size() > 1) {
        std::string names;
        for (uint64_t s : systems) {
            names += (names.empty() ? "" : ", ") + std::to_string(s);
        }
        throw usage_error(
            fmt::format("{} holds base backups of several servers ({})", remote.location(), names),
            "choose one with --system");
    }
    return systems.front();
}

std::optional<std::string> newest_stored_dump_with_restore_point(const storage::S3Store& remote,
                                                                 const std::string& database,
                                                                 uint64_t system) {
    for (const RemoteBackup& backup : list_remote(remote, database)) {
        if (!backup.has_manifest) {
            continue;
        }
        try {
            const Manifest manifest = read_stored_manifest(remote, backup.id);
            if (manifest.restore_point && manifest.system_identifier == std::to_string(system)) {
                return backup.id.manifest_file();
            }
        } catch (const Error&) {
            continue;  // a damaged manifest is verify's to report
        }
    }
    return std::nullopt;
}

BaseOffsiteResult copy_base_backups_offsite(const fs::path& backup_dir, uint64_t system,
                                            const storage::S3Store& remote, RemoteProof proof,
                                            std::optional<size_t> keep,
                                            const EncryptionKeys& keys) {
    BaseOffsiteResult result;
    const std::optional<FileLock> lock =
        FileLock::try_acquire(backup_dir / fmt::format(".pgward-offsite-base-{}.lock", system));
    if (!lock) {
        result.busy = true;
        return result;
    }
    UploadScratch scratch(backup_dir);
    std::set<std::string> stored;
    std::set<std::string> unfinished;
    for (const StoredBase& base : list_stored_bases(remote, system, &unfinished)) {
        stored.insert(base.backup.name);
    }
    std::vector<BaseBackup> local = list_base_backups(backup_dir, system);
    std::reverse(local.begin(), local.end());  // newest first
    for (size_t i = 0; i < local.size(); ++i) {
        const BaseBackup& b = local[i];
        // Only what the store's retention keeps.
        if (keep && i >= *keep) {
            break;
        }
        if (stored.count(b.name) != 0) {
            continue;
        }
        storage::S3Store folder = base_store_of(remote, system, b.name);
        log::info(
            "copying a base backup offsite",
            {{"name", b.name}, {"to", folder.location()}, {"bytes", std::to_string(b.bytes)}});
        std::vector<std::string> files = b.files;
        files.emplace_back("backup_manifest");
        nlohmann::ordered_json digests = nlohmann::ordered_json::object();
        for (const std::string& file : files) {
            const StoredDigest digest =
                upload_proven(folder, file, b.path / file, proof, keys, scratch);
            digests[file] = digest_json(digest);
            result.bytes += digest.size;
        }
        nlohmann::ordered_json info =
            nlohmann::ordered_json::parse(read_file(b.path / kBaseBackupInfoFile));
        info["stored_files"] = digests;
        folder.client().put_text(folder.key_of(kBaseBackupInfoFile), info.dump(2) + "\n",
                                 "application/json");
        result.uploaded.push_back(b.name);
        unfinished.erase(b.name);
        log::info("base backup copied offsite and proven",
                  {{"name", b.name}, {"to", folder.location()}});
    }
    // What an upload that stopped left (a crash, a full volume) and no pass
    // will finish, its base backup gone from here: files without a base.json
    // are no base backup, only cost. A local one is left for its own upload.
    for (const BaseBackup& b : local) {
        unfinished.erase(b.name);
    }
    for (const std::string& name : unfinished) {
        remove_stored_base(remote, system, name);
        result.swept.push_back(name);
        log::warn(
            "an unfinished base backup upload (files without base.json) was removed from the "
            "store",
            {{"name", name}, {"store", base_store_of(remote, system, name).location()}});
    }

    if (keep) {
        const std::vector<BaseBackup> bases = list_stored_base_backups(remote, system);
        storage::S3Store wal = wal_store_of(remote, system);
        // By WAL file name: the objects that hold it (X, or X.age when it
        // went up encrypted).
        std::map<std::string, std::vector<std::string>> objects;
        for (const storage::StoredFile& file : wal.list()) {
            if (auto name = wal_name_of_object(file.name)) {
                objects[*name].push_back(file.name);
            }
        }
        std::vector<std::string> wal_files;
        wal_files.reserve(objects.size());
        for (const auto& [name, held_in] : objects) {
            wal_files.push_back(name);
        }
        const BasePrunePlan plan = plan_base_prune(bases, wal_files, *keep);
        for (const BaseBackup& old : plan.remove) {
            remove_stored_base(remote, system, old.name);
            result.pruned.push_back(old.name);
            log::info("stored base backup removed by retention",
                      {{"name", old.name}, {"store", remote.location()}});
        }
        for (const std::string& file : plan.wal_files) {
            // Its sums file (if this was a batch's last) first: what it vouches for goes.
            if (wal.stat(sums_file_of(file))) {
                wal.remove(sums_file_of(file));
            }
            for (const std::string& object : objects[file]) {
                wal.remove(object);
            }
        }
        result.pruned_wal = plan.wal_files.size();
        if (!plan.wal_files.empty()) {
            log::info("stored WAL removed by retention",
                      {{"files", std::to_string(plan.wal_files.size())},
                       {"first", plan.wal_files.front()},
                       {"last", plan.wal_files.back()}});
        }
    }
    return result;
}

FetchedPitrArchive::FetchedPitrArchive(const storage::S3Store& remote,
                                       std::optional<uint64_t> system,
                                       const std::string& target_text, const fs::path& parent,
                                       const DecryptionKeys& keys) {
    // A bad --to is told before anything is fetched.
    std::optional<ParsedFileName> as_backup = parse_backup_file_name(target_text);
    if (as_backup && as_backup->temporary) {
        as_backup.reset();  // a name being written is nobody's restore point
    }
    if (!as_backup) {
        target_ = RecoveryTarget::parse(target_text.empty() ? "latest" : target_text);
    }
    system_ = stored_system(remote, system);
    const std::vector<StoredBase> bases = list_stored_bases(remote, system_);
    if (bases.empty()) {
        throw failure(
            fmt::format("no base backups of system {} in {}base/", system_, remote.location()),
            "point-in-time recovery starts from one: pgward basebackup");
    }
    const storage::S3Store wal = wal_store_of(remote, system_);
    wal_location_ = wal.location();

    dir_ = make_private_dir(parent, ".pgward-fetch-", "the fetched base backup and WAL");
    try {
        // The dumps' manifests: where their restore points lie.
        for (const storage::StoredFile& file : remote.list()) {
            auto parsed = parse_backup_file_name(file.name);
            if (parsed && parsed->role == FileRole::Manifest && !parsed->temporary) {
                write_file_atomically(dir_ / file.name, read_text(remote, file.name),
                                      AtomicFile::Publish::NoReplace);
            }
        }
        if (as_backup) {
            std::optional<RecoveryTarget> point =
                backup_restore_point(dir_, target_text, remote.location());
            if (!point) {
                throw failure(fmt::format("{} has no backup {} with a restore point",
                                          remote.location(), target_text),
                              "list what is there with: pgward list --remote");
            }
            target_ = *point;
        }
        // The timelines' history files first: recovery goes to the newest
        // timeline, and only a base backup on its history can.
        const std::map<std::string, StoredDigest> sums = read_wal_sums(wal);
        const fs::path wal_dir = dir_ / "wal" / std::to_string(system_);
        fs::create_directories(wal_dir);
        std::map<uint32_t, std::vector<pg::TimelineSwitch>> histories;
        for (const auto& [file, digest] : sums) {
            auto name = pg::WalFileName::parse(file);
            if (name && name->kind == pg::WalFileName::Kind::History) {
                fetch_checked(wal, digest, keys, wal_dir / file);
                histories[name->timeline] = pg::parse_history(read_file(wal_dir / file));
            }
        }
        std::vector<BaseBackup> every;
        every.reserve(bases.size());
        for (const StoredBase& base : bases) {
            every.push_back(base.backup);
        }
        const std::vector<BaseBackup> backups = base_backups_on_newest_timeline(every, histories);
        if (backups.empty()) {
            throw failure(
                fmt::format("no base backup in {}base/{}/ can reach timeline {}, the "
                            "newest in {}",
                            remote.location(), system_, histories.rbegin()->first, wal.location()),
                "take a base backup now (pgward basebackup) and copy it there");
        }
        const BaseBackup* chosen =
            choose_base_backup(backups, target_, target_position(dir_, target_));
        if (chosen == nullptr) {
            throw failure(
                fmt::format("{} is before every base backup in {}base/{}/: the oldest, "
                            "{}, finished at {}",
                            target_.describe(), remote.location(), system_, backups.front().name,
                            format_iso_utc(backups.front().finished)),
                "recover to a later target, or keep base backups longer");
        }
        const StoredBase& base =
            *std::find_if(bases.begin(), bases.end(),
                          [&](const StoredBase& b) { return b.backup.name == chosen->name; });

        // The base backup, every file checked against base.json's digests.
        const storage::S3Store folder = base_store_of(remote, system_, chosen->name);
        const fs::path base_dir = dir_ / "base" / std::to_string(system_) / chosen->name;
        fs::create_directories(base_dir);
        std::vector<std::string> needed = chosen->files;
        needed.emplace_back("backup_manifest");
        for (const std::string& file : needed) {
            auto digest = base.files.find(file);
            if (digest == base.files.end()) {
                throw failure(fmt::format("{} names no SHA-256 for {}: it cannot be proven",
                                          folder.location_of(kBaseBackupInfoFile), file),
                              "recover from the local backup directory");
            }
            log::info("fetching the base backup from the remote store",
                      {{"object", folder.location_of(file)},
                       {"bytes", std::to_string(digest->second.size)}});
            fetch_checked(folder, digest->second, keys, base_dir / file);
        }
        write_file_atomically(base_dir / kBaseBackupInfoFile, base_backup_info_text(*chosen),
                              AtomicFile::Publish::NoReplace);

        // The WAL from the base backup's start on (the history files are here).
        const uint64_t first = pg::segment_of(chosen->start, chosen->segment_size);
        std::vector<std::pair<std::string, StoredDigest>> wanted;
        for (const auto& [file, digest] : sums) {
            auto name = pg::WalFileName::parse(file);
            if (name && name->kind == pg::WalFileName::Kind::Segment &&
                name->segment_number(chosen->segment_size) >= first) {
                wanted.emplace_back(file, digest);
            }
        }
        size_t unproven = 0;
        for (const storage::StoredFile& file : wal.list()) {
            const std::optional<std::string> stored = wal_name_of_object(file.name);
            auto name = stored ? pg::WalFileName::parse(*stored) : std::nullopt;
            if (name && name->kind == pg::WalFileName::Kind::Segment &&
                name->segment_number(chosen->segment_size) >= first && sums.count(*stored) == 0) {
                ++unproven;
            }
        }
        if (unproven > 0) {
            log::warn(
                "WAL files in the store that no sums file vouches for are not used (an "
                "upload that stopped before its sums went up)",
                {{"store", wal.location()}, {"files", std::to_string(unproven)}});
        }
        const WalArchive fetched = WalArchive::at(wal_dir, system_);
        log::info("fetching WAL from the remote store",
                  {{"store", wal.location()},
                   {"files", std::to_string(wanted.size())},
                   {"from", wanted.empty() ? "none" : wanted.front().first}});
        for (size_t i = 0; i < wanted.size(); ++i) {
            const auto& [file, digest] = wanted[i];
            fetch_checked(wal, digest, keys, wal_dir / file);
            if (pg::WalFileName::parse(file)->kind == pg::WalFileName::Kind::Segment) {
                fetched.check_segment(file);
            }
            if ((i + 1) % 64 == 0) {
                log::info("fetching WAL", {{"fetched", std::to_string(i + 1)},
                                           {"of", std::to_string(wanted.size())}});
            }
        }
    } catch (...) {
        std::error_code ec;
        fs::remove_all(dir_, ec);
        throw;
    }
}

FetchedPitrArchive::~FetchedPitrArchive() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
}

}  // namespace pgward
