#include "domain/inspect.hpp"

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/sha256.hpp"

namespace pgward {

const char* to_string(ChecksumState state) {
    switch (state) {
        case ChecksumState::NoManifest:
            return "no-manifest";
        case ChecksumState::BadManifest:
            return "bad-manifest";
        case ChecksumState::SizeMismatch:
            return "size-mismatch";
        case ChecksumState::Sha256Mismatch:
            return "sha256-mismatch";
        case ChecksumState::SizeMatches:
            return "size-ok";
        case ChecksumState::Verified:
            return "verified";
    }
    return "unknown";
}

namespace {

// The checks a manifest's head settles: it describes this dump, and the
// dump's size on disk is the size it recorded. nullopt when both hold.
std::optional<ChecksumCheck> check_head(const ManifestHead& head, const BackupEntry& entry) {
    if (head.file != entry.id.dump_file() || head.database != entry.id.database) {
        return ChecksumCheck{ChecksumState::BadManifest,
                             fmt::format("the manifest describes {}, not this dump", head.file),
                             std::nullopt,
                             {},
                             {}};
    }
    if ((head.kind == kKindPreRestore) != entry.id.pre_restore) {
        return ChecksumCheck{ChecksumState::BadManifest,
                             fmt::format("the manifest's kind \"{}\" does not match the name {}",
                                         head.kind, entry.id.dump_file()),
                             std::nullopt,
                             {},
                             {}};
    }
    if (head.size_bytes != entry.size_bytes) {
        return ChecksumCheck{
            ChecksumState::SizeMismatch,
            fmt::format("{} bytes on disk, {} in the manifest", entry.size_bytes, head.size_bytes),
            std::nullopt,
            {},
            {}};
    }
    return std::nullopt;
}

}  // namespace

ChecksumCheck check_checksum(const BackupRepository& repo, const BackupEntry& entry, bool rehash) {
    if (!entry.has_manifest) {
        return {ChecksumState::NoManifest,
                "no sidecar " + entry.id.manifest_file(),
                std::nullopt,
                {},
                {}};
    }
    std::filesystem::path path = repo.path_of(entry.id.manifest_file());
    if (!rehash) {
        ManifestHead head;
        try {
            head = read_manifest_head(path);
            if (auto problem = check_head(head, entry)) {
                return *problem;
            }
        } catch (const Error& e) {
            return {ChecksumState::BadManifest, e.what(), std::nullopt, {}, {}};
        }
        return {ChecksumState::SizeMatches, "", std::nullopt, head.compression,
                head.system_identifier};
    }
    Manifest manifest;
    try {
        manifest = read_manifest(path);
    } catch (const Error& e) {
        return {ChecksumState::BadManifest, e.what(), std::nullopt, {}, {}};
    }
    if (auto problem = check_head(
            ManifestHead{manifest.database, manifest.file, manifest.size_bytes,
                         manifest.compression, manifest.kind, manifest.system_identifier},
            entry)) {
        problem->manifest = manifest;
        return *problem;
    }
    std::string actual = sha256_file_hex(entry.dump_path);
    if (actual != manifest.sha256) {
        return {ChecksumState::Sha256Mismatch,
                fmt::format("sha256 {} on disk, {} in the manifest", actual, manifest.sha256),
                manifest, manifest.compression, manifest.system_identifier};
    }
    return {ChecksumState::Verified, "", manifest, manifest.compression,
            manifest.system_identifier};
}

}  // namespace pgward
