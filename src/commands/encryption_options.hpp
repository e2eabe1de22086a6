#pragma once

#include "commands/options.hpp"
#include "domain/encryption.hpp"

namespace pgward::commands {

// What new backups are encrypted to: --encrypt-to age1… (repeatable) /
// POSTGRES_BACKUP_ENCRYPT_RECIPIENTS (comma-separated), a recipients file
// (--encrypt-recipients-file / POSTGRES_BACKUP_ENCRYPT_RECIPIENTS_FILE), or a
// passphrase file (--encrypt-passphrase-file /
// POSTGRES_BACKUP_ENCRYPT_PASSPHRASE_FILE). Unset: not encrypted.
void add_encryption_options(OptionTable& table, CLI::App& app);
EncryptionKeys encryption_keys(const OptionTable& table);

// What opens encrypted backups: --identity FILE / PGWARD_AGE_IDENTITY_FILE
// (age-keygen's format), or --passphrase-file / PGWARD_AGE_PASSPHRASE_FILE
// (falling back to POSTGRES_BACKUP_ENCRYPT_PASSPHRASE_FILE).
void add_identity_options(OptionTable& table, CLI::App& app);
DecryptionKeys decryption_keys(const OptionTable& table);

}  // namespace pgward::commands
