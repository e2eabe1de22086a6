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

ChecksumCheck check_checksum(const BackupRepository& repo, const BackupEntry& entry, bool rehash) {
    if (!entry.has_manifest) {
        return {ChecksumState::NoManifest, "no sidecar " + entry.id.manifest_file(), std::nullopt};
    }
    if (!rehash) {
        ManifestHead head;
        try {
            head = read_manifest_head(repo.path_of(entry.id.manifest_file()));
        } catch (const Error& e) {
            return {ChecksumState::BadManifest, e.what(), std::nullopt};
        }
        if (head.file != entry.id.dump_file() || head.database != entry.id.database) {
            return {ChecksumState::BadManifest,
                    fmt::format("the manifest describes {}, not this dump", head.file),
                    std::nullopt};
        }
        if (head.size_bytes != entry.size_bytes) {
            return {ChecksumState::SizeMismatch,
                    fmt::format("{} bytes on disk, {} in the manifest", entry.size_bytes,
                                head.size_bytes),
                    std::nullopt};
        }
        return {ChecksumState::SizeMatches, "", std::nullopt};
    }
    Manifest manifest;
    try {
        manifest = read_manifest(repo.path_of(entry.id.manifest_file()));
    } catch (const Error& e) {
        return {ChecksumState::BadManifest, e.what(), std::nullopt};
    }
    if (manifest.file != entry.id.dump_file() || manifest.database != entry.id.database) {
        return {ChecksumState::BadManifest,
                fmt::format("the manifest describes {}, not this dump", manifest.file), manifest};
    }
    if (manifest.size_bytes != entry.size_bytes) {
        return {ChecksumState::SizeMismatch,
                fmt::format("{} bytes on disk, {} in the manifest", entry.size_bytes,
                            manifest.size_bytes),
                manifest};
    }
    std::string actual = sha256_file_hex(entry.dump_path);
    if (actual != manifest.sha256) {
        return {ChecksumState::Sha256Mismatch,
                fmt::format("sha256 {} on disk, {} in the manifest", actual, manifest.sha256),
                manifest};
    }
    return {ChecksumState::Verified, "", manifest};
}

}  // namespace pgward
