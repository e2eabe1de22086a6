#pragma once

// The offsite copy: every local backup of a database copied to the remote
// store (dump, globals, then the manifest last, so a backup exists there
// only when its manifest does), proven there before the manifest goes up,
// and retention applied in the bucket only after that.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "domain/encryption.hpp"
#include "domain/manifest.hpp"
#include "domain/naming.hpp"
#include "domain/repository.hpp"
#include "storage/store.hpp"

namespace pgward {

// How an uploaded dump is proven before its manifest is uploaded: read back
// and hashed (SHA-256 against the manifest), or its size only (where egress
// costs money).
enum class RemoteProof { Read, Size };

struct OffsiteOptions {
    RemoteProof proof = RemoteProof::Read;
    std::optional<size_t> retention;  // keep the newest N remote backups; none: keep all
};

// Where the copies go and how.
struct OffsiteTarget {
    storage::S3Settings s3;
    std::string prefix;  // "" or ending in '/'
    OffsiteOptions offsite;

    std::string location() const;  // s3://bucket/prefix/, as messages name it
};

struct RemoteBackup {
    BackupId id;
    uint64_t dump_size = 0;
    bool has_dump = false;
    bool has_manifest = false;  // a backup exists in the store only with its manifest
    bool has_globals = false;
};

// The backups in a store (one database's, or all), newest first; safety
// dumps are never copied and never listed.
std::vector<RemoteBackup> list_remote(const storage::Store& store,
                                      const std::optional<std::string>& database = {});

// SPEC in a store: "latest" (the newest complete backup of `database`, or of
// the only database there), "all" (every complete backup, of `database` if
// named), a file name, or the s3:// URL of one. Throws naming what is there
// when nothing matches.
std::vector<BackupId> select_stored_backups(const storage::Store& store, const std::string& spec,
                                            const std::optional<std::string>& database);

struct RemoteCheck {
    bool ok = false;
    std::string detail;  // what was compared, or what differs
    uint64_t bytes_read = 0;
};

// Checks a stored dump against its manifest: its size, and with Read its
// SHA-256, streaming (nothing is written to disk).
RemoteCheck check_stored_dump(const storage::Store& store, const BackupId& id,
                              const Manifest& manifest, RemoteProof proof);

// The manifest of a stored backup, read from the store.
Manifest read_stored_manifest(const storage::Store& store, const BackupId& id);

struct RemoteVerifyReport {
    bool ok = false;
    std::string detail;  // what was proven, or every problem found
    uint64_t bytes_read = 0;
    size_t tables = 0;
    uint64_t rows = 0;
};
// `verify --remote`: the stored dump read once, streaming, its SHA-256 and
// size against its stored manifest; with deep, every table's rows and fp1 too.
// An encrypted backup's deep read decrypts with `keys` as it streams.
RemoteVerifyReport verify_stored_backup(const storage::Store& store, const BackupId& id, bool deep,
                                        const DecryptionKeys& keys = {});

// A stored backup fetched for `restore` and `drill`: its dump, manifest and
// globals in a private directory (0700, files 0600) made under `parent`,
// the dump's SHA-256 and size checked against the manifest as it streams
// (a mismatch throws, leaving nothing). The directory goes with the object,
// also when what used it failed; it is named for its process
// (.pgward-fetch-<pid>-XXXXXX), and one whose process is gone (killed
// outright) is removed by the next fetch into `parent`.
class FetchedBackup {
  public:
    FetchedBackup(const storage::Store& store, const BackupId& id,
                  const std::filesystem::path& parent);
    ~FetchedBackup();
    FetchedBackup(const FetchedBackup&) = delete;
    FetchedBackup& operator=(const FetchedBackup&) = delete;
    const std::filesystem::path& dump() const { return dump_; }
    const std::string& source() const { return source_; }  // the dump's s3:// URL

  private:
    std::filesystem::path dir_;
    std::filesystem::path dump_;
    std::string source_;
};

// Retention in the bucket, as a plan with a reason per backup: keep the
// newest `keep` complete backups of the database (so never the newest proven
// one); delete the older ones, and copies whose manifest never went up (an
// upload that died) unless their local backup is still there to finish
// them; skip what is under Object Lock.
struct RemotePruneDecision {
    enum class Action { Keep, Delete, Locked };
    BackupId id;
    Action action = Action::Keep;
    std::string reason;
};
std::vector<RemotePruneDecision> plan_remote_retention(const storage::S3Store& remote,
                                                       const std::string& database, size_t keep,
                                                       const BackupRepository* local);
// Deletes the plan's Delete entries (manifest first), logging every decision
// with its reason; with dry_run, only logs. Returns the deleted.
std::vector<BackupId> apply_remote_retention(storage::S3Store& remote,
                                             const std::vector<RemotePruneDecision>& plan,
                                             bool dry_run);

struct OffsiteResult {
    std::vector<BackupId> uploaded;  // newest first
    std::vector<BackupId> pruned;
    std::vector<std::string> kept_locked;  // pruning skipped: under Object Lock
    size_t aborted_uploads = 0;            // multipart uploads a crashed run left
    uint64_t bytes_uploaded = 0;
    double seconds = 0;
};

// Under the database's lock: aborts multipart uploads left by a crashed run,
// uploads and proves every local backup (of this server) the store lacks,
// newest first, then applies retention there. Throws on the first failure;
// local backups are never touched.
OffsiteResult copy_offsite(const BackupRepository& local, storage::S3Store& remote,
                           const std::string& database, const std::optional<std::string>& system,
                           const OffsiteOptions& options);

// copy_offsite from the backup directory `dir` to `target`, under the
// database's lock there, for the server of the newest local backup; one log
// line of what was done. What `backup`, `push` and each cycle of `run` do.
OffsiteResult copy_directory_offsite(const std::filesystem::path& dir, const std::string& database,
                                     const OffsiteTarget& target);

}  // namespace pgward
