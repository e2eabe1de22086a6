#pragma once

// Encrypted backups: the keys a backup is written to (public keys only, or a
// passphrase), the keys that open one, the manifest's sealed private part,
// and the two ways a decrypted archive reaches pg_restore without a
// plaintext copy on disk (a pipe), or with a private one (for --jobs).
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "crypto/age.hpp"
#include "domain/manifest.hpp"

namespace pgward {

// Who can open a new backup: age recipients, or a passphrase (scrypt). Empty:
// backups are not encrypted.
struct EncryptionKeys {
    std::vector<crypto::AgeRecipient> recipients;
    std::optional<std::string> passphrase;

    bool enabled() const { return !recipients.empty() || passphrase.has_value(); }
    // What manifests and `list` show: each key's fingerprint, or "passphrase".
    std::vector<std::string> fingerprints() const;
    std::unique_ptr<crypto::AgeEncryptor> encryptor(crypto::Sink sink) const;
};

// What opens an encrypted backup: identities (AGE-SECRET-KEY-1…), or the
// passphrase. `origin` names where they came from, for messages.
struct DecryptionKeys {
    std::vector<crypto::AgeIdentity> identities;
    std::optional<std::string> passphrase;
    std::string origin;

    bool present() const { return !identities.empty() || passphrase.has_value(); }
    std::unique_ptr<crypto::AgeDecryptor> decryptor(crypto::Sink sink) const;
};

// From the settings: recipients (each an age1… key) and a recipients file,
// or a passphrase file (its first line); both at once is a usage error.
EncryptionKeys load_encryption_keys(const std::vector<std::string>& recipients,
                                    const std::optional<std::filesystem::path>& recipients_file,
                                    const std::optional<std::filesystem::path>& passphrase_file);
DecryptionKeys load_decryption_keys(const std::optional<std::filesystem::path>& identity_file,
                                    const std::optional<std::filesystem::path>& passphrase_file);

// Seals the manifest's private part to `keys` (manifest_to_json then writes
// only the public fields and the sealed part); the fields stay in memory.
void seal_manifest(Manifest& manifest, const EncryptionKeys& keys);
// Opens an encrypted manifest's private part with `keys` (nothing to do for
// a plain one); without keys, or with keys that do not open it, a failure
// naming the keys it is for.
void open_manifest(Manifest& manifest, const DecryptionKeys& keys, const std::string& source);

// A dump or globals file written encrypted ("….age").
bool is_encrypted_file(const std::filesystem::path& path);

// The one line for an encrypted file that cannot be opened: the keys it is
// for (from its manifest, when there is one) and what was given.
[[noreturn]] void throw_cannot_open(const std::filesystem::path& file, const std::string& reason,
                                    const std::optional<Manifest>& manifest,
                                    const DecryptionKeys& keys);

// Reads an encrypted file and hands its plaintext to `sink`, authenticating
// every chunk; a changed byte, a cut file or keys that do not open it throw
// (the message names the chunk and offset). Returns the plaintext's size.
uint64_t decrypt_file(const std::filesystem::path& file, const DecryptionKeys& keys,
                      const std::optional<Manifest>& manifest, const crypto::Sink& sink);

// Opens the header and the first chunk with `keys` (refusing a file other
// keys are for before anything is restored) and returns that chunk's
// plaintext: the start of the archive.
std::string decrypt_head(const std::filesystem::path& file, const DecryptionKeys& keys,
                         const std::optional<Manifest>& manifest);

// The decrypted archive on a pipe that a child (pg_restore) reads as its
// stdin, written by a thread of its own: nothing decrypted touches the disk.
// Destroy it after the child (it closes the pipe and joins the thread).
class DecryptingPipe {
  public:
    DecryptingPipe(std::filesystem::path file, DecryptionKeys keys,
                   std::optional<Manifest> manifest);
    ~DecryptingPipe();
    DecryptingPipe(const DecryptingPipe&) = delete;
    DecryptingPipe& operator=(const DecryptingPipe&) = delete;

    // For Command::stdin_fd; start() after the child is spawned.
    int child_stdin() const { return read_fd_; }
    void start();
    // Waits for the writer; a decryption failure (changed or cut file) is
    // rethrown. A reader that stopped early is not a failure of the pipe.
    void finish();

  private:
    void close_write_end();

    std::filesystem::path file_;
    DecryptionKeys keys_;
    std::optional<Manifest> manifest_;
    int read_fd_ = -1;
    int write_fd_ = -1;
    std::thread writer_;
    std::exception_ptr failure_;
    std::atomic<bool> stop_{false};
};

// A decrypted copy for a reader that needs a seekable file (pg_restore
// --jobs): 0600, in a private directory (0700) beside the encrypted file,
// removed with the object, also on failure; one a killed run left is removed
// by the next.
class DecryptedCopy {
  public:
    DecryptedCopy(const std::filesystem::path& file, const DecryptionKeys& keys,
                  const std::optional<Manifest>& manifest);
    ~DecryptedCopy();
    DecryptedCopy(const DecryptedCopy&) = delete;
    DecryptedCopy& operator=(const DecryptedCopy&) = delete;
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path dir_;
    std::filesystem::path path_;
};

}  // namespace pgward
