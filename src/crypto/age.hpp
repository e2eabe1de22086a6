#pragma once

// The age file format (age-encryption.org/v1, https://age-encryption.org/v1):
// a header of recipient stanzas (X25519 public keys, or one scrypt
// passphrase stanza) that each wrap a random 16-byte file key, a header MAC,
// then the payload in ChaCha20-Poly1305 chunks of 64 KiB, the last one
// flagged. Written here with OpenSSL's primitives; files open with the stock
// `age` tool, and the stock tool's files open here.
//
// Both directions stream: bytes are pushed in as they come (from pg_dump's
// pipe, a file, an S3 GET) and come out through a sink, nothing buffered
// beyond one chunk.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace pgward::crypto {

using Sink = std::function<void(const char* data, size_t size)>;

// An X25519 recipient, "age1…" (bech32).
struct AgeRecipient {
    std::array<uint8_t, 32> public_key{};
    std::string text;  // the age1… form
};

// An X25519 identity, "AGE-SECRET-KEY-1…" (bech32, upper case).
struct AgeIdentity {
    std::array<uint8_t, 32> secret_key{};
    AgeRecipient recipient() const;
};

// One recipient; a usage error naming `origin` when it is not an age1 key.
AgeRecipient parse_recipient(std::string_view text, std::string_view origin);
// A recipients file: one age1… key a line; blank lines and # comments skipped.
std::vector<AgeRecipient> parse_recipients(std::string_view text, std::string_view origin);
// An identity file as age-keygen writes it: AGE-SECRET-KEY-1… lines, blank
// lines and # comments skipped; at least one.
std::vector<AgeIdentity> parse_identities(std::string_view text, std::string_view origin);
// A new identity (age-keygen's job; for tests and `pgward keygen`).
AgeIdentity generate_identity();
std::string identity_text(const AgeIdentity& identity);

// The short, stable name of a recipient that logs and manifests show:
// "age1" and the key's first 8 and last 6 characters.
std::string recipient_fingerprint(const AgeRecipient& recipient);

class AgeEncryptor {
  public:
    // To X25519 recipients (at least one).
    AgeEncryptor(const std::vector<AgeRecipient>& recipients, Sink sink);
    // To a passphrase (scrypt, work factor 2^log_n).
    AgeEncryptor(std::string_view passphrase, Sink sink, int log_n = 18);
    ~AgeEncryptor();
    AgeEncryptor(const AgeEncryptor&) = delete;
    AgeEncryptor& operator=(const AgeEncryptor&) = delete;

    void write(const char* data, size_t size);
    // The last chunk; nothing may be written after it.
    void finish();
    uint64_t bytes_out() const { return bytes_out_; }

  private:
    void start(const std::string& stanzas);
    void seal_chunk(bool last);

    Sink sink_;
    std::array<uint8_t, 16> file_key_{};
    std::array<uint8_t, 32> payload_key_{};
    std::string chunk_;
    std::vector<uint8_t> sealed_;
    uint64_t counter_ = 0;
    uint64_t bytes_out_ = 0;
    bool finished_ = false;
};

class AgeDecryptor {
  public:
    // With X25519 identities (any that opens one stanza).
    AgeDecryptor(std::vector<AgeIdentity> identities, Sink sink);
    // With a passphrase.
    AgeDecryptor(std::string passphrase, Sink sink);
    ~AgeDecryptor();
    AgeDecryptor(const AgeDecryptor&) = delete;
    AgeDecryptor& operator=(const AgeDecryptor&) = delete;

    // Throws an Error naming the byte offset (of the encrypted file) and the
    // chunk of a damaged chunk, or what is wrong with the header.
    void write(const char* data, size_t size);
    // Throws when the file ended before its last chunk (truncated).
    void finish();
    uint64_t bytes_in() const { return bytes_in_; }
    // The header and the payload nonce were read and the MAC checked (a
    // failure after that is the payload's).
    bool header_parsed() const { return nonce_done_; }
    // The header was whole but none of the keys given opens it.
    bool key_refused() const { return key_refused_; }

  private:
    void parse_header();
    // Opens one sealed chunk and releases its plaintext; true when it was
    // the last chunk. `at_end`: nothing follows it.
    bool open_chunk(std::string_view sealed, bool at_end);

    std::vector<AgeIdentity> identities_;
    std::string passphrase_;
    bool with_passphrase_ = false;
    Sink sink_;
    std::string pending_;
    bool header_done_ = false;
    bool nonce_done_ = false;
    bool last_seen_ = false;
    bool key_refused_ = false;
    std::array<uint8_t, 16> file_key_{};
    std::array<uint8_t, 32> payload_key_{};
    uint64_t counter_ = 0;
    uint64_t bytes_in_ = 0;
    uint64_t chunk_start_ = 0;  // offset in the file of the pending chunk
};

// What an age header says without a key: its size and its stanzas (an
// X25519 stanza does not name its recipient). Throws when `head` (the file's
// first bytes, up to 64 KiB) is not a whole, well-formed age header.
struct AgeHeaderInfo {
    size_t size = 0;
    size_t x25519 = 0;
    bool scrypt = false;
};
AgeHeaderInfo inspect_age_header(std::string_view head);

// True when `head` (the file's first bytes) starts like an age file.
bool looks_like_age(std::string_view head);

}  // namespace pgward::crypto
