#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgward {

inline constexpr const char* kManifestFormat = "pgward-manifest/1";
inline constexpr const char* kKindBackup = "backup";
inline constexpr const char* kKindPreRestore = "pre-restore";

struct TableEntry {
    std::string schema;
    std::string name;
    std::optional<uint64_t> rows;            // counted in the dump's snapshot
    std::optional<std::string> fingerprint;  // fp1, when computed
    // The extension whose configuration table this is (its data is in the
    // dump, filtered by the extension's condition).
    std::optional<std::string> extension;

    bool operator==(const TableEntry&) const = default;
};

// An encrypted backup's manifest: the keys that open it, and its private part
// (every field that names a table or holds a row: tables, fingerprints,
// sequences, indexes, the schema version) sealed with age to the same keys.
struct ManifestEncryption {
    std::string format = "age-encryption.org/v1";
    // recipient_fingerprint() of each key, or "passphrase" (scrypt).
    std::vector<std::string> recipients;
    std::string sealed;   // base64 of the age file holding the private part's JSON
    bool opened = false;  // the private fields below were read from `sealed`

    bool operator==(const ManifestEncryption&) const = default;
};

// The sidecar <stem>.json that describes one dump. Self-describing: `format`
// names its version.
struct Manifest {
    std::string database;
    // "backup", or "pre-restore" for the safety dump a restore takes of the
    // database it replaces (then `restoring` names the file it restored).
    std::string kind = kKindBackup;
    std::optional<std::string> restoring;
    // The server's pg_control system identifier (decimal): backups of one
    // database name from two clusters are told apart by it.
    std::optional<std::string> system_identifier;
    std::string file;
    uint64_t size_bytes = 0;
    std::string sha256;
    std::string started_at;
    std::string finished_at;
    double duration_seconds = 0;
    std::string server_version;
    std::string pg_dump_version;
    std::optional<std::string> schema_version;
    std::string pgward_version;
    std::string archive_version;  // e.g. "1.14"
    std::string compression;      // gzip, lz4, zstd, none
    std::optional<uint64_t> large_objects;
    // The named restore point pgward wrote into the server's WAL right after
    // exporting the dump's snapshot (when it streams that server's WAL):
    // recovering to it gives the database as dumped, so the dump and
    // point-in-time recovery prove each other.
    struct RestorePoint {
        std::string name;
        std::string lsn;
        // Milliseconds from the snapshot to the restore point: what a write
        // committed in between is in the recovery and not in the dump.
        std::optional<double> gap_ms;
        // How long after the snapshot the write counters were read again
        // (written_around_restore_point).
        std::optional<double> counters_window_ms;
        bool operator==(const RestorePoint&) const = default;
    };
    std::optional<RestorePoint> restore_point;
    // The tables the server's write counters saw written between the
    // snapshot and counters_window_ms later (schema, name): a recovery to the
    // restore point may differ from the dump there, and the PITR drill says
    // so instead of failing. Unset when the counters were not read.
    std::optional<std::vector<std::pair<std::string, std::string>>> written_around_restore_point;
    // lo1 of every large object (oid and content), as in the archive.
    std::optional<std::string> large_objects_fingerprint;
    // Conditions that already held in the source when it was dumped, so that
    // a drill finding them after a restore reports them as warnings, not as
    // damage: column-owned sequences behind their column, invalid indexes.
    std::optional<std::vector<std::string>> sequences_behind;
    std::optional<std::vector<std::string>> invalid_indexes;
    std::vector<TableEntry> tables;
    // Set for an encrypted backup: then size_bytes and sha256 are the
    // ciphertext's, and the private fields are empty until opened
    // (domain/encryption.hpp).
    std::optional<ManifestEncryption> encryption;

    bool operator==(const Manifest&) const = default;
};

// The private part of a manifest as its own JSON document (what an
// encrypted backup's manifest seals), and back into `m`.
nlohmann::ordered_json manifest_private_to_json(const Manifest& m);
void manifest_private_from_json(const nlohmann::json& doc, Manifest& m, const std::string& source);

nlohmann::ordered_json manifest_to_json(const Manifest& manifest);
// Throws a failure naming `source` when the document is not a valid manifest.
Manifest manifest_from_json(const nlohmann::json& document, const std::string& source);
Manifest read_manifest(const std::filesystem::path& path);

// The fields `list` checks a dump against (which file, which database, how
// many bytes), read without building the table list: a directory of 10,000
// backups lists in well under 100 ms. Throws as read_manifest does.
struct ManifestHead {
    std::string database;
    std::string file;
    uint64_t size_bytes = 0;
    std::string compression;  // "" in manifests that do not say
    std::string kind = kKindBackup;
    std::optional<std::string> system_identifier;
    bool encrypted = false;
};
ManifestHead read_manifest_head(const std::filesystem::path& path);

}  // namespace pgward
