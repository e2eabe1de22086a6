#include "commands/encryption_options.hpp"

#include <cstdlib>

namespace pgward::commands {
namespace {

std::optional<std::filesystem::path> path_setting(const OptionTable& table,
                                                  const std::string& key) {
    if (auto setting = table.get(key)) {
        return std::filesystem::path(setting->value);
    }
    return std::nullopt;
}

}  // namespace

void add_encryption_options(OptionTable& table, CLI::App& app) {
    table
        .add(app, "encrypt_to", "--encrypt-to", "POSTGRES_BACKUP_ENCRYPT_RECIPIENTS",
             "encrypt backups to this age public key (age1…; repeatable, or comma-separated)")
        ->multi_option_policy(CLI::MultiOptionPolicy::Join);
    table.add(app, "encrypt_recipients_file", "--encrypt-recipients-file",
              "POSTGRES_BACKUP_ENCRYPT_RECIPIENTS_FILE",
              "encrypt backups to the age public keys in FILE (one a line)");
    table.add(app, "encrypt_passphrase_file", "--encrypt-passphrase-file",
              "POSTGRES_BACKUP_ENCRYPT_PASSPHRASE_FILE",
              "encrypt backups to the passphrase on FILE's first line (age scrypt)");
}

EncryptionKeys encryption_keys(const OptionTable& table) {
    std::vector<std::string> recipients;
    if (auto to = table.get("encrypt_to")) {
        std::string value = to->value;
        for (char& c : value) {
            if (c == '\n') {
                c = ',';  // CLI11 joins repeated flags with newlines
            }
        }
        recipients.push_back(value);
    }
    return load_encryption_keys(recipients, path_setting(table, "encrypt_recipients_file"),
                                path_setting(table, "encrypt_passphrase_file"));
}

void add_identity_options(OptionTable& table, CLI::App& app) {
    table.add(app, "identity", "--identity", "PGWARD_AGE_IDENTITY_FILE",
              "age identity file (AGE-SECRET-KEY-1…) that opens encrypted backups");
    table.add(app, "passphrase_file", "--passphrase-file", "PGWARD_AGE_PASSPHRASE_FILE",
              "file whose first line is the passphrase of passphrase-encrypted backups");
}

DecryptionKeys decryption_keys(const OptionTable& table) {
    const std::optional<std::filesystem::path> identity = path_setting(table, "identity");
    std::optional<std::filesystem::path> passphrase = path_setting(table, "passphrase_file");
    const char* env = std::getenv("POSTGRES_BACKUP_ENCRYPT_PASSPHRASE_FILE");
    if (!passphrase && !identity && env != nullptr && *env != '\0') {
        passphrase = env;  // the same secret encrypts and opens
    }
    return load_decryption_keys(identity, passphrase);
}

}  // namespace pgward::commands
