#include "domain/encryption.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "util/signals.hpp"

namespace pgward {
namespace {

constexpr size_t kReadBlock = size_t{1} << 20;
constexpr const char* kPassphrase = "passphrase";

std::string base64(std::string_view data) {
    std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(data.data()),
                                  static_cast<int>(data.size()));
    out.resize(static_cast<size_t>(n));
    return out;
}

std::optional<std::string> unbase64(std::string_view text) {
    if (text.size() % 4 != 0) {
        return std::nullopt;
    }
    std::string out(3 * (text.size() / 4) + 1, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(text.data()),
                                  static_cast<int>(text.size()));
    if (n < 0) {
        return std::nullopt;
    }
    size_t size = static_cast<size_t>(n);
    // EVP_DecodeBlock counts the padding's zero bytes as data.
    for (size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) {
        --size;
    }
    out.resize(size);
    return out;
}

std::string trimmed(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' ||
                             text.back() == '\n')) {
        text.remove_suffix(1);
    }
    return std::string(text);
}

std::string read_passphrase(const std::filesystem::path& path) {
    std::string text = read_file(path);
    std::string line = text.substr(0, text.find('\n'));
    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }
    if (line.empty()) {
        throw usage_error(fmt::format("the passphrase file {} is empty", path.string()),
                          "write the passphrase on its first line");
    }
    return line;
}

// Thrown by a pipe's sink when its reader went away or it was told to stop.
struct ReaderGone {};

}  // namespace

std::vector<std::string> EncryptionKeys::fingerprints() const {
    if (passphrase) {
        return {kPassphrase};
    }
    std::vector<std::string> out;
    for (const crypto::AgeRecipient& r : recipients) {
        out.push_back(crypto::recipient_fingerprint(r));
    }
    return out;
}

std::unique_ptr<crypto::AgeEncryptor> EncryptionKeys::encryptor(crypto::Sink sink) const {
    if (passphrase) {
        return std::make_unique<crypto::AgeEncryptor>(*passphrase, std::move(sink));
    }
    return std::make_unique<crypto::AgeEncryptor>(recipients, std::move(sink));
}

std::unique_ptr<crypto::AgeDecryptor> DecryptionKeys::decryptor(crypto::Sink sink) const {
    if (passphrase) {
        return std::make_unique<crypto::AgeDecryptor>(*passphrase, std::move(sink));
    }
    return std::make_unique<crypto::AgeDecryptor>(identities, std::move(sink));
}

EncryptionKeys load_encryption_keys(const std::vector<std::string>& recipients,
                                    const std::optional<std::filesystem::path>& recipients_file,
                                    const std::optional<std::filesystem::path>& passphrase_file) {
    EncryptionKeys keys;
    for (const std::string& value : recipients) {
        // POSTGRES_BACKUP_ENCRYPT_RECIPIENTS is comma-separated.
        size_t at = 0;
        while (at <= value.size()) {
            size_t comma = value.find(',', at);
            std::string one = trimmed(
                value.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
            if (!one.empty()) {
                keys.recipients.push_back(crypto::parse_recipient(one, "--encrypt-to"));
            }
            if (comma == std::string::npos) {
                break;
            }
            at = comma + 1;
        }
    }
    if (recipients_file) {
        std::vector<crypto::AgeRecipient> from_file =
            crypto::parse_recipients(read_file(*recipients_file), recipients_file->string());
        if (from_file.empty()) {
            throw usage_error(
                fmt::format("the recipients file {} holds no age1… key", recipients_file->string()),
                "one public key a line, as age-keygen -y prints it");
        }
        keys.recipients.insert(keys.recipients.end(), from_file.begin(), from_file.end());
    }
    if (passphrase_file) {
        if (!keys.recipients.empty()) {
            throw usage_error(
                "backups are encrypted either to age recipients or to a passphrase, not both",
                "drop --encrypt-passphrase-file, or the recipients");
        }
        keys.passphrase = read_passphrase(*passphrase_file);
    }
    return keys;
}

DecryptionKeys load_decryption_keys(const std::optional<std::filesystem::path>& identity_file,
                                    const std::optional<std::filesystem::path>& passphrase_file) {
    DecryptionKeys keys;
    if (identity_file && passphrase_file) {
        throw usage_error("give an identity file or a passphrase file, not both");
    }
    if (identity_file) {
        keys.identities =
            crypto::parse_identities(read_file(*identity_file), identity_file->string());
        keys.origin = identity_file->string();
    }
    if (passphrase_file) {
        keys.passphrase = read_passphrase(*passphrase_file);
        keys.origin = passphrase_file->string();
    }
    return keys;
}

void seal_manifest(Manifest& manifest, const EncryptionKeys& keys) {
    const std::string text = manifest_private_to_json(manifest).dump();
    std::string sealed;
    std::unique_ptr<crypto::AgeEncryptor> encryptor =
        keys.encryptor([&](const char* data, size_t size) { sealed.append(data, size); });
    encryptor->write(text.data(), text.size());
    encryptor->finish();
    ManifestEncryption encryption;
    encryption.recipients = keys.fingerprints();
    encryption.sealed = base64(sealed);
    encryption.opened = true;
    manifest.encryption = std::move(encryption);
}

void open_manifest(Manifest& manifest, const DecryptionKeys& keys, const std::string& source) {
    if (!manifest.encryption || manifest.encryption->opened) {
        return;
    }
    const std::filesystem::path file = manifest.file;
    if (!keys.present()) {
        throw_cannot_open(file, "no identity was given", manifest, keys);
    }
    std::optional<std::string> sealed = unbase64(manifest.encryption->sealed);
    if (!sealed) {
        throw failure(fmt::format("manifest {}: its sealed part is not base64", source),
                      "the sidecar was edited or damaged");
    }
    std::string text;
    std::unique_ptr<crypto::AgeDecryptor> decryptor =
        keys.decryptor([&](const char* data, size_t size) { text.append(data, size); });
    try {
        const std::string& ciphertext = *sealed;
        decryptor->write(ciphertext.data(), ciphertext.size());
        decryptor->finish();
    } catch (const Error& e) {
        if (decryptor->key_refused()) {
            throw_cannot_open(file, e.what(), manifest, keys);
        }
        throw failure(
            fmt::format("manifest {}: its sealed part does not open: {}", source, e.what()),
            "the sidecar was edited or damaged");
    }
    nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
        throw failure(fmt::format("manifest {}: its sealed part is not JSON", source));
    }
    manifest_private_from_json(doc, manifest, source);
    manifest.encryption->opened = true;
}

bool is_encrypted_file(const std::filesystem::path& path) {
    return path.extension() == ".age";
}

void throw_cannot_open(const std::filesystem::path& file, const std::string& reason,
                       const std::optional<Manifest>& manifest, const DecryptionKeys& keys) {
    std::string for_whom;
    if (manifest && manifest->encryption) {
        for (const std::string& f : manifest->encryption->recipients) {
            for_whom += (for_whom.empty() ? "" : ", ") + f;
        }
    }
    std::string given = keys.present()
                            ? fmt::format("the keys in {} do not open it ({})", keys.origin, reason)
                            : reason;
    throw failure(fmt::format("{} is encrypted{}; {}", file.filename().string(),
                              for_whom.empty() ? std::string() : " to " + for_whom, given),
                  "give the identity file that holds one of those keys with --identity "
                  "(PGWARD_AGE_IDENTITY_FILE), or the passphrase file with --passphrase-file");
}

uint64_t decrypt_file(const std::filesystem::path& file, const DecryptionKeys& keys,
                      const std::optional<Manifest>& manifest, const crypto::Sink& sink) {
    if (!keys.present()) {
        throw_cannot_open(file, "no identity was given", manifest, keys);
    }
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw os_error("cannot open", file.string(), errno);
    }
    struct CloseFd {
        int fd;
        ~CloseFd() { ::close(fd); }
    } close_fd{fd};
    uint64_t plaintext = 0;
    std::unique_ptr<crypto::AgeDecryptor> decryptor =
        keys.decryptor([&](const char* data, size_t size) {
            plaintext += size;
            sink(data, size);
        });
    std::vector<char> block(kReadBlock);
    try {
        for (;;) {
            ssize_t n = ::read(fd, block.data(), block.size());
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                throw os_error("cannot read", file.string(), errno);
            }
            if (n == 0) {
                break;
            }
            // A private copy of a large dump takes a while: SIGTERM ends it.
            if (int signal = pending_interrupt(); signal != 0) {
                throw failure(fmt::format("interrupted by {}", signal_name(signal)));
            }
            decryptor->write(block.data(), static_cast<size_t>(n));
        }
        decryptor->finish();
    } catch (const Error& e) {
        if (decryptor->key_refused()) {
            throw_cannot_open(file, e.what(), manifest, keys);
        }
        if (pending_interrupt() != 0) {
            throw;  // "interrupted by SIGTERM", as every operation says it
        }
        throw failure(fmt::format("{}: {}", file.string(), e.what()), e.hint());
    }
    return plaintext;
}

std::string decrypt_head(const std::filesystem::path& file, const DecryptionKeys& keys,
                         const std::optional<Manifest>& manifest) {
    // The header (at most 64 KiB) and one sealed chunk (or all of a smaller
    // file, whose one chunk is its last).
    const size_t limit = (size_t{64} << 10) * 2 + 16 + 16;
    const std::string head = read_file_start(file, limit);
    if (!keys.present()) {
        throw_cannot_open(file, "no identity was given", manifest, keys);
    }
    std::string plaintext;
    std::unique_ptr<crypto::AgeDecryptor> decryptor =
        keys.decryptor([&](const char* data, size_t size) { plaintext.append(data, size); });
    try {
        decryptor->write(head.data(), head.size());
        if (head.size() < limit) {
            decryptor->finish();
        }
    } catch (const Error& e) {
        if (decryptor->key_refused()) {
            throw_cannot_open(file, e.what(), manifest, keys);
        }
        throw failure(fmt::format("{}: {}", file.string(), e.what()), e.hint());
    }
    if (!decryptor->header_parsed()) {
        throw failure(
            fmt::format("{}: age: the file ends inside its header after {} bytes "
                        "(truncated)",
                        file.string(), head.size()));
    }
    return plaintext;
}

DecryptingPipe::DecryptingPipe(std::filesystem::path file, DecryptionKeys keys,
                               std::optional<Manifest> manifest)
    : file_(std::move(file)), keys_(std::move(keys)), manifest_(std::move(manifest)) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw failure(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
    }
    read_fd_ = fds[0];
    write_fd_ = fds[1];
}

DecryptingPipe::~DecryptingPipe() {
    stop_ = true;
    if (read_fd_ >= 0) {
        ::close(read_fd_);
    }
    close_write_end();  // a writer blocked on a live reader gets EPIPE once it is gone
    if (writer_.joinable()) {
        writer_.join();
    }
}

void DecryptingPipe::close_write_end() {
    // Only the writer thread writes; it closes its end itself when done. Here
    // only before it started.
    if (!writer_.joinable() && write_fd_ >= 0) {
        ::close(write_fd_);
        write_fd_ = -1;
    }
}

void DecryptingPipe::start() {
    ::close(read_fd_);
    read_fd_ = -1;
    writer_ = std::thread([this] {
        try {
            decrypt_file(file_, keys_, manifest_, [this](const char* data, size_t size) {
                while (size > 0) {
                    if (stop_) {
                        throw ReaderGone{};
                    }
                    ssize_t n = ::write(write_fd_, data, size);
                    if (n < 0 && errno == EINTR) {
                        continue;
                    }
                    if (n < 0) {
                        throw ReaderGone{};  // EPIPE: the reader took what it needed
                    }
                    data += n;
                    size -= static_cast<size_t>(n);
                }
            });
        } catch (const ReaderGone&) {
        } catch (...) {
            failure_ = std::current_exception();
        }
        ::close(write_fd_);
        write_fd_ = -1;
    });
}

void DecryptingPipe::finish() {
    if (writer_.joinable()) {
        writer_.join();
    }
    if (failure_) {
        std::rethrow_exception(failure_);
    }
}

DecryptedCopy::DecryptedCopy(const std::filesystem::path& file, const DecryptionKeys& keys,
                             const std::optional<Manifest>& manifest) {
    dir_ = make_private_dir(file.parent_path().empty() ? "." : file.parent_path(),
                            ".pgward-decrypt-", "a decrypted copy");
    try {
        path_ = dir_ / file.stem();  // without ".age"
        AtomicFile copy(path_, AtomicFile::Publish::NoReplace);
        log::info("decrypting a copy for pg_restore --jobs", {{"file", path_.string()}});
        decrypt_file(file, keys, manifest,
                     [&](const char* data, size_t size) { copy.write(data, size); });
        copy.commit();
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
        throw;
    }
}

DecryptedCopy::~DecryptedCopy() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

}  // namespace pgward
