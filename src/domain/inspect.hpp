#pragma once

#include <optional>
#include <string>

#include "domain/manifest.hpp"
#include "domain/repository.hpp"

namespace pgward {

// How far a dump agrees with its manifest. Cheap by default (the manifest
// parses, names this dump, and records its size); with a full check the
// bytes are re-hashed and compared with the recorded SHA-256.
enum class ChecksumState {
    NoManifest,
    BadManifest,
    SizeMismatch,
    Sha256Mismatch,
    SizeMatches,  // cheap check passed, not re-hashed
    Verified,     // SHA-256 re-computed and equal
};

struct ChecksumCheck {
    ChecksumState state;
    std::string detail;
    std::optional<Manifest> manifest;
    std::string compression;                       // from the manifest, when it was read
    std::optional<std::string> system_identifier;  // the server's, from the manifest

    bool good() const {
        return state == ChecksumState::SizeMatches || state == ChecksumState::Verified;
    }
};

const char* to_string(ChecksumState state);
// Without `rehash`, only the manifest's head is read (file, database, size)
// and `manifest` stays empty; with it, the whole manifest is returned.
ChecksumCheck check_checksum(const BackupRepository& repo, const BackupEntry& entry, bool rehash);

}  // namespace pgward
