#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "archive/summary.hpp"
#include "domain/encryption.hpp"
#include "domain/manifest.hpp"

#include "domain/inspect.hpp"
#include "pg/tools.hpp"

namespace pgward {

// The archive format version from a custom-format header ("PGDMP", major,
// minor, revision), and the oldest pg_restore that reads it.
struct ArchiveVersion {
    int major = 0;
    int minor = 0;
    int rev = 0;

    std::string text() const;
    int min_pg_restore_major() const;
};

// Throws a failure naming the file when it is not a custom-format archive.
ArchiveVersion read_archive_version(const std::filesystem::path& path);
// The same from an archive's first bytes; `source` names it in the error.
ArchiveVersion archive_version_of(std::string_view head, const std::string& source);

// Refuses (with the version it needs) a pg_restore too old for the archive.
void check_pg_restore_reads(const pg::Tool& pg_restore, const ArchiveVersion& version,
                            const std::filesystem::path& archive);

struct VerifyReport {
    std::filesystem::path file;
    bool ok = false;
    bool encrypted = false;  // a .dump.age: without keys, version stays unset
    ChecksumCheck checksum;
    std::optional<ArchiveVersion> version;
    std::string problem;  // empty when ok
    std::string hint;     // what to do about it, when there is more to say
};

// The checks `verify`, `restore` and `drill` run before trusting an archive:
// its header (a format the pg_restore in use reads), its manifest (re-hashed)
// and `pg_restore --list`. A missing manifest fails unless
// `allow_missing_manifest`. An encrypted archive without keys: its SHA-256
// and its age header only; with keys, the header is opened (keys that do not
// open it are refused naming the keys it is for) and pg_restore --list reads
// the decrypted stream.
VerifyReport verify_archive(const std::filesystem::path& file, const pg::Tool& pg_restore,
                            bool allow_missing_manifest, const DecryptionKeys& keys = {});

// The summary of an encrypted archive, decrypted as it is read.
archive::ArchiveSummary summarize_encrypted(const std::filesystem::path& file,
                                            const DecryptionKeys& keys,
                                            const std::optional<Manifest>& manifest);

// An encrypted archive needs keys to be read through: without them, the one
// line naming the keys it is for (restore and drill refuse before anything).
void require_keys_for(const std::filesystem::path& file, const DecryptionKeys& keys);

// A full read of the archive: every data block decompressed, every row
// hashed; with a manifest, every table's rows and fp1 compared with it.
struct DeepReport {
    bool ok = false;
    std::vector<std::string> problems;  // each names the table
    size_t tables = 0;
    uint64_t rows = 0;
    uint64_t large_objects = 0;
};
// The manifest beside a dump (<stem>.json), if there is a readable one.
std::optional<Manifest> manifest_beside(const std::filesystem::path& dump);

// An encrypted archive is decrypted as it is read (its manifest's private
// part opened with the same keys); nothing decrypted is written to disk.
DeepReport deep_verify(const std::filesystem::path& file, const std::optional<Manifest>& manifest,
                       const DecryptionKeys& keys = {});
// The same over a stream that `produce` writes into its sink (an object in a
// bucket): read as it arrives, nothing written to disk. `produce` always runs
// to its end (its caller hashes every byte), even when the archive ends or is
// found damaged early; its failure is rethrown unless the reader had already
// given its verdict.
DeepReport deep_verify_stream(
    const std::function<void(const std::function<void(const char*, size_t)>&)>& produce,
    const std::optional<Manifest>& manifest);

// FILE (a path, or a name in the backup directory) or "latest": the newest
// backup (never a safety dump) of the source database `database`, or, when
// none is named, of the only database in the directory. Backups of that name
// from more than one server are told apart by the system identifier in their
// manifests: with `server`, that server's backups; a database none of whose
// backups came from `server` but all from one other server (a restore onto a
// new server) takes those; anything else is ambiguous and refused, naming the
// servers. No backup of the named database is an error that names the
// databases that do have backups.
std::filesystem::path resolve_backup(const std::string& spec, const std::filesystem::path& dir,
                                     const std::optional<std::string>& database,
                                     const std::optional<std::string>& server = std::nullopt);

}  // namespace pgward
