#pragma once

// verify's steps for an encrypted archive (<stem>.dump.age).
#include <filesystem>
#include <optional>

#include "domain/verify.hpp"
#include "util/process.hpp"

namespace pgward {

// Without keys: the age header's shape only (nullopt). With keys: the header
// opened and the archive version read from the first decrypted bytes.
std::optional<ArchiveVersion> encrypted_archive_version(const std::filesystem::path& file,
                                                        const DecryptionKeys& keys,
                                                        const std::optional<Manifest>& manifest);

// `pg_restore --list` reading the decrypted archive from a pipe; a
// decryption failure is a failed run whose error comes first.
CapturedRun list_encrypted_archive(const pg::Tool& pg_restore, const std::filesystem::path& file,
                                   const DecryptionKeys& keys,
                                   const std::optional<Manifest>& manifest);

DeepReport deep_verify_encrypted(const std::filesystem::path& file,
                                 const std::optional<Manifest>& manifest,
                                 const DecryptionKeys& keys);

}  // namespace pgward
