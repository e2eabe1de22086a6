#include "crypto/age.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward::crypto {

namespace {

constexpr std::string_view kIntro = "age-encryption.org/v1";
constexpr size_t kChunk = size_t{64} * 1024;
constexpr size_t kTag = 16;
constexpr size_t kSealedChunk = kChunk + kTag;
constexpr size_t kMaxHeader = size_t{64} * 1024;
constexpr int kMaxScryptLogN = 22;

using Bytes = std::vector<uint8_t>;

// ---- encodings -------------------------------------------------------------

constexpr std::string_view kBech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

uint32_t bech32_polymod(const Bytes& values) {
    static constexpr uint32_t kGenerator[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd,
                                               0x2a1462b3};
    uint32_t checksum = 1;
    for (uint8_t v : values) {
        uint32_t top = checksum >> 25;
        checksum = ((checksum & 0x1ffffff) << 5) ^ v;
        for (int i = 0; i < 5; ++i) {
            if ((top >> i) & 1) {
                checksum ^= kGenerator[i];
            }
        }
    }
    return checksum;
}

Bytes bech32_hrp_expand(std::string_view hrp) {
    Bytes out;
    for (char c : hrp) {
        out.push_back(static_cast<uint8_t>(c) >> 5);
    }
    out.push_back(0);
    for (char c : hrp) {
        out.push_back(static_cast<uint8_t>(c) & 31);
    }
    return out;
}

// Regroups bits: 8 -> 5 (with padding) or 5 -> 8 (padding must be zero).
std::optional<Bytes> convert_bits(const Bytes& in, int from, int to, bool pad) {
    uint32_t acc = 0;
    int bits = 0;
    Bytes out;
    const uint32_t max = (1U << to) - 1;
    for (uint8_t v : in) {
        acc = (acc << from) | v;
        bits += from;
        while (bits >= to) {
            bits -= to;
            out.push_back(static_cast<uint8_t>((acc >> bits) & max));
        }
    }
    if (pad) {
        if (bits > 0) {
            out.push_back(static_cast<uint8_t>((acc << (to - bits)) & max));
        }
    } else if (bits >= from || ((acc << (to - bits)) & max) != 0) {
        return std::nullopt;
    }
    return out;
}

std::string bech32_encode(std::string_view hrp, const uint8_t* data, size_t size) {
    Bytes five = *convert_bits(Bytes(data, data + size), 8, 5, true);
    Bytes values = bech32_hrp_expand(hrp);
    values.insert(values.end(), five.begin(), five.end());
    values.insert(values.end(), 6, 0);
    uint32_t mod = bech32_polymod(values) ^ 1;
    std::string out(hrp);
    out += '1';
    for (uint8_t v : five) {
        out += kBech32Charset[v];
    }
    for (int i = 0; i < 6; ++i) {
        out += kBech32Charset[(mod >> (5 * (5 - i))) & 31];
    }
    return out;
}

// The data of a bech32 string whose human-readable part is `hrp` (compared
// case-insensitively; mixed case refused).
std::optional<Bytes> bech32_decode(std::string_view text, std::string_view hrp) {
    bool lower = false;
    bool upper = false;
    std::string s;
    for (char c : text) {
        lower = lower || (c >= 'a' && c <= 'z');
        upper = upper || (c >= 'A' && c <= 'Z');
        s += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    if (lower && upper) {
        return std::nullopt;
    }
    size_t separator = s.rfind('1');
    std::string want(hrp);
    std::transform(want.begin(), want.end(), want.begin(), [](char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
    if (separator == std::string::npos || s.substr(0, separator) != want ||
        s.size() - separator - 1 < 6) {
        return std::nullopt;
    }
    Bytes values = bech32_hrp_expand(want);
    Bytes data;
    for (size_t i = separator + 1; i < s.size(); ++i) {
        size_t at = kBech32Charset.find(s[i]);
        if (at == std::string_view::npos) {
            return std::nullopt;
        }
        data.push_back(static_cast<uint8_t>(at));
    }
    values.insert(values.end(), data.begin(), data.end());
    if (bech32_polymod(values) != 1) {
        return std::nullopt;
    }
    data.resize(data.size() - 6);
    return convert_bits(data, 5, 8, false);
}

constexpr std::string_view kBase64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Standard base64 without padding, as age writes it.
std::string b64(const uint8_t* data, size_t size) {
    std::string out;
    size_t i = 0;
    for (; i + 3 <= size; i += 3) {
        uint32_t v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
        for (int k = 3; k >= 0; --k) {
            out += kBase64[(v >> (6 * k)) & 63];
        }
    }
    if (size - i == 1) {
        uint32_t v = data[i] << 16;
        out += kBase64[(v >> 18) & 63];
        out += kBase64[(v >> 12) & 63];
    } else if (size - i == 2) {
        uint32_t v = (data[i] << 16) | (data[i + 1] << 8);
        out += kBase64[(v >> 18) & 63];
        out += kBase64[(v >> 12) & 63];
        out += kBase64[(v >> 6) & 63];
    }
    return out;
}

// Canonical unpadded base64 only (age refuses anything else).
std::optional<Bytes> unb64(std::string_view text) {
    if (text.size() % 4 == 1) {
        return std::nullopt;
    }
    Bytes out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
        size_t v = kBase64.find(c);
        if (v == std::string_view::npos) {
            return std::nullopt;
        }
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
        }
    }
    if ((acc & ((1U << bits) - 1)) != 0) {
        return std::nullopt;
    }
    return out;
}

// ---- primitives (OpenSSL) -------------------------------------------------------

void random_bytes(uint8_t* out, size_t size) {
    if (RAND_bytes(out, static_cast<int>(size)) != 1) {
        throw failure("cannot get random bytes from OpenSSL");
    }
}

std::array<uint8_t, 32> hkdf_sha256(const uint8_t* key, size_t key_size, const uint8_t* salt,
                                    size_t salt_size, std::string_view info) {
    std::unique_ptr<EVP_KDF, decltype(&EVP_KDF_free)> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr),
                                                          EVP_KDF_free);
    std::unique_ptr<EVP_KDF_CTX, decltype(&EVP_KDF_CTX_free)> ctx(
        kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr, EVP_KDF_CTX_free);
    if (!ctx) {
        throw failure("OpenSSL has no HKDF");
    }
    char digest[] = "SHA256";
    OSSL_PARAM params[5];
    size_t n = 0;
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[n++] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(key), key_size);
    if (salt_size > 0) {
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                        const_cast<uint8_t*>(salt), salt_size);
    }
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                    const_cast<char*>(info.data()), info.size());
    params[n] = OSSL_PARAM_construct_end();
    std::array<uint8_t, 32> out{};
    if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
        throw failure("HKDF-SHA256 failed in OpenSSL");
    }
    return out;
}

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

// ChaCha20-Poly1305 with no associated data: `out` gets the ciphertext and
// the 16-byte tag.
void aead_seal(const uint8_t* key, const uint8_t* nonce, const uint8_t* in, size_t size,
               uint8_t* out) {
    CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    int len = 0;
    if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_chacha20_poly1305(), nullptr, key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx.get(), out, &len, in, static_cast<int>(size)) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), out + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, kTag, out + size) != 1) {
        throw failure("ChaCha20-Poly1305 failed in OpenSSL");
    }
}

// The reverse: false when the tag does not authenticate (`size` counts the tag).
bool aead_open(const uint8_t* key, const uint8_t* nonce, const uint8_t* in, size_t size,
               uint8_t* out) {
    if (size < kTag) {
        return false;
    }
    const size_t body = size - kTag;
    CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    int len = 0;
    if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_chacha20_poly1305(), nullptr, key, nonce) != 1 ||
        EVP_DecryptUpdate(ctx.get(), out, &len, in, static_cast<int>(body)) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, kTag,
                            const_cast<uint8_t*>(in + body)) != 1) {
        throw failure("ChaCha20-Poly1305 failed in OpenSSL");
    }
    return EVP_DecryptFinal_ex(ctx.get(), out + len, &len) == 1;
}

using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

std::array<uint8_t, 32> x25519_public(const uint8_t* secret) {
    Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, secret, 32), EVP_PKEY_free);
    std::array<uint8_t, 32> out{};
    size_t size = out.size();
    if (!key || EVP_PKEY_get_raw_public_key(key.get(), out.data(), &size) != 1) {
        throw failure("X25519 failed in OpenSSL");
    }
    return out;
}

// X25519(secret, point); nullopt for a point that gives the all-zero secret.
std::optional<std::array<uint8_t, 32>> x25519(const uint8_t* secret, const uint8_t* point) {
    Pkey mine(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, secret, 32), EVP_PKEY_free);
    Pkey theirs(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, point, 32), EVP_PKEY_free);
    if (!mine || !theirs) {
        throw failure("X25519 failed in OpenSSL");
    }
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
        EVP_PKEY_CTX_new(mine.get(), nullptr), EVP_PKEY_CTX_free);
    std::array<uint8_t, 32> out{};
    size_t size = out.size();
    if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
        EVP_PKEY_derive_set_peer(ctx.get(), theirs.get()) != 1 ||
        EVP_PKEY_derive(ctx.get(), out.data(), &size) != 1) {
        return std::nullopt;  // OpenSSL refuses an all-zero shared secret
    }
    uint8_t any = 0;
    for (uint8_t b : out) {
        any |= b;
    }
    if (any == 0) {
        return std::nullopt;
    }
    return out;
}

std::array<uint8_t, 32> scrypt_key(std::string_view passphrase, const uint8_t* salt, int log_n) {
    std::string full_salt = "age-encryption.org/v1/scrypt";
    full_salt.append(reinterpret_cast<const char*>(salt), 16);
    std::array<uint8_t, 32> out{};
    const uint64_t n = uint64_t{1} << log_n;
    if (EVP_PBE_scrypt(passphrase.data(), passphrase.size(),
                       reinterpret_cast<const unsigned char*>(full_salt.data()), full_salt.size(),
                       n, 8, 1, uint64_t{128} * 8 * n + (uint64_t{64} << 20), out.data(),
                       out.size()) != 1) {
        throw failure("scrypt failed in OpenSSL");
    }
    return out;
}

std::array<uint8_t, 32> header_mac(const std::array<uint8_t, 16>& file_key,
                                   std::string_view header_through_dashes) {
    std::array<uint8_t, 32> key =
        hkdf_sha256(file_key.data(), file_key.size(), nullptr, 0, "header");
    std::array<uint8_t, 32> mac{};
    unsigned int size = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(header_through_dashes.data()),
         header_through_dashes.size(), mac.data(), &size);
    return mac;
}

// age's stanza body: base64 in lines of 64 columns, the last one shorter
// (empty when the text fills its last line).
std::string wrap_body(const std::string& text) {
    std::string out;
    size_t at = 0;
    for (; at + 64 <= text.size(); at += 64) {
        out += text.substr(at, 64) + "\n";
    }
    out += text.substr(at) + "\n";
    return out;
}

std::array<uint8_t, 12> chunk_nonce(uint64_t counter, bool last) {
    std::array<uint8_t, 12> nonce{};
    for (int i = 0; i < 8; ++i) {
        nonce[10 - i] = static_cast<uint8_t>(counter >> (8 * i));
    }
    nonce[11] = last ? 1 : 0;
    return nonce;
}

std::string lower_hrp_key(const std::array<uint8_t, 32>& key) {
    return bech32_encode("age", key.data(), key.size());
}

std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> out;
    while (!text.empty()) {
        size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        out.push_back(line);
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    }
    return out;
}

std::string_view trimmed(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

}  // namespace

// ---- keys -------------------------------------------------------------------

AgeRecipient AgeIdentity::recipient() const {
    AgeRecipient r;
    r.public_key = x25519_public(secret_key.data());
    r.text = lower_hrp_key(r.public_key);
    return r;
}

AgeRecipient parse_recipient(std::string_view text, std::string_view origin) {
    std::optional<Bytes> data = bech32_decode(text, "age");
    if (!data || data->size() != 32 || text.rfind("age1", 0) != 0) {
        throw usage_error(
            fmt::format("invalid age recipient \"{}\" in {}: expected an age1… public key",
                        text.substr(0, 80), origin),
            "age-keygen prints it as \"Public key: age1…\"; age-keygen -y IDENTITY_FILE prints it "
            "again");
    }
    AgeRecipient r;
    std::copy(data->begin(), data->end(), r.public_key.begin());
    r.text = std::string(text);
    return r;
}

std::vector<AgeRecipient> parse_recipients(std::string_view text, std::string_view origin) {
    std::vector<AgeRecipient> out;
    for (std::string_view line : lines_of(text)) {
        line = trimmed(line);
        if (line.empty() || line.front() == '#') {
            continue;
        }
        out.push_back(parse_recipient(line, origin));
    }
    return out;
}

std::vector<AgeIdentity> parse_identities(std::string_view text, std::string_view origin) {
    std::vector<AgeIdentity> out;
    for (std::string_view line : lines_of(text)) {
        line = trimmed(line);
        if (line.empty() || line.front() == '#') {
            continue;
        }
        std::optional<Bytes> data = bech32_decode(line, "AGE-SECRET-KEY-");
        if (!data || data->size() != 32 || line.rfind("AGE-SECRET-KEY-1", 0) != 0) {
            // Never echo the line: it may be a secret with a typo.
            throw usage_error(fmt::format("{} holds a line that is not an age identity "
                                          "(AGE-SECRET-KEY-1…)",
                                          origin),
                              "use the file age-keygen wrote");
        }
        AgeIdentity identity;
        std::copy(data->begin(), data->end(), identity.secret_key.begin());
        OPENSSL_cleanse(data->data(), data->size());
        out.push_back(identity);
    }
    if (out.empty()) {
        throw usage_error(fmt::format("{} holds no age identity (AGE-SECRET-KEY-1…)", origin),
                          "use the file age-keygen wrote");
    }
    return out;
}

AgeIdentity generate_identity() {
    AgeIdentity identity;
    random_bytes(identity.secret_key.data(), identity.secret_key.size());
    return identity;
}

std::string identity_text(const AgeIdentity& identity) {
    std::string lower =
        bech32_encode("age-secret-key-", identity.secret_key.data(), identity.secret_key.size());
    std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
        return static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    });
    return lower;
}

std::string recipient_fingerprint(const AgeRecipient& recipient) {
    const std::string& t = recipient.text;
    if (t.size() < 4 + 8 + 6) {
        return t;
    }
    return t.substr(0, 12) + "…" + t.substr(t.size() - 6);
}

bool looks_like_age(std::string_view head) {
    return head.substr(0, kIntro.size() + 1) == std::string(kIntro) + "\n";
}

// ---- encryption ---------------------------------------------------------------

AgeEncryptor::AgeEncryptor(const std::vector<AgeRecipient>& recipients, Sink sink)
    : sink_(std::move(sink)) {
    if (recipients.empty()) {
        throw usage_error("encryption needs at least one age recipient");
    }
    random_bytes(file_key_.data(), file_key_.size());
    std::string stanzas;
    for (const AgeRecipient& recipient : recipients) {
        std::array<uint8_t, 32> ephemeral{};
        random_bytes(ephemeral.data(), ephemeral.size());
        const std::array<uint8_t, 32> share = x25519_public(ephemeral.data());
        // A low-order public key gives the all-zero secret with any scalar.
        std::optional<std::array<uint8_t, 32>> shared =
            x25519(ephemeral.data(), recipient.public_key.data());
        if (!shared) {
            throw usage_error(fmt::format("the age recipient {} is not a usable key",
                                          recipient_fingerprint(recipient)));
        }
        OPENSSL_cleanse(ephemeral.data(), ephemeral.size());
        uint8_t salt[64];
        std::memcpy(salt, share.data(), 32);
        std::memcpy(salt + 32, recipient.public_key.data(), 32);
        std::array<uint8_t, 32> wrap_key = hkdf_sha256(shared->data(), shared->size(), salt,
                                                       sizeof salt, "age-encryption.org/v1/X25519");
        uint8_t body[32];
        const std::array<uint8_t, 12> zero{};
        aead_seal(wrap_key.data(), zero.data(), file_key_.data(), file_key_.size(), body);
        OPENSSL_cleanse(wrap_key.data(), wrap_key.size());
        stanzas += "-> X25519 " + b64(share.data(), share.size()) + "\n" +
                   wrap_body(b64(body, sizeof body));
    }
    start(stanzas);
}

AgeEncryptor::AgeEncryptor(std::string_view passphrase, Sink sink, int log_n)
    : sink_(std::move(sink)) {
    if (passphrase.empty()) {
        throw usage_error("the encryption passphrase is empty");
    }
    random_bytes(file_key_.data(), file_key_.size());
    uint8_t salt[16];
    random_bytes(salt, sizeof salt);
    std::array<uint8_t, 32> key = scrypt_key(passphrase, salt, log_n);
    uint8_t body[32];
    const std::array<uint8_t, 12> zero{};
    aead_seal(key.data(), zero.data(), file_key_.data(), file_key_.size(), body);
    OPENSSL_cleanse(key.data(), key.size());
    start("-> scrypt " + b64(salt, sizeof salt) + " " + std::to_string(log_n) + "\n" +
          wrap_body(b64(body, sizeof body)));
}

AgeEncryptor::~AgeEncryptor() {
    OPENSSL_cleanse(file_key_.data(), file_key_.size());
    OPENSSL_cleanse(payload_key_.data(), payload_key_.size());
}

void AgeEncryptor::start(const std::string& stanzas) {
    std::string header(kIntro);
    header += '\n';
    header += stanzas;
    header += "---";
    std::array<uint8_t, 32> mac = header_mac(file_key_, header);
    header += ' ';
    header += b64(mac.data(), mac.size());
    header += '\n';
    uint8_t nonce[16];
    random_bytes(nonce, sizeof nonce);
    payload_key_ = hkdf_sha256(file_key_.data(), file_key_.size(), nonce, sizeof nonce, "payload");
    header.append(reinterpret_cast<const char*>(nonce), sizeof nonce);
    sink_(header.data(), header.size());
    bytes_out_ += header.size();
    chunk_.reserve(kChunk + 1);
}

void AgeEncryptor::write(const char* data, size_t size) {
    if (finished_) {
        throw failure("age: write after finish");
    }
    while (size > 0) {
        // A full chunk is sealed only once a byte follows it: the last chunk
        // is flagged, and it may be full.
        if (chunk_.size() == kChunk) {
            seal_chunk(false);
        }
        size_t n = std::min(size, kChunk - chunk_.size());
        chunk_.append(data, n);
        data += n;
        size -= n;
    }
}

void AgeEncryptor::finish() {
    if (!finished_) {
        seal_chunk(true);
        finished_ = true;
    }
}

void AgeEncryptor::seal_chunk(bool last) {
    std::array<uint8_t, 12> nonce = chunk_nonce(counter_++, last);
    sealed_.resize(chunk_.size() + kTag);  // one buffer for every chunk
    aead_seal(payload_key_.data(), nonce.data(), reinterpret_cast<const uint8_t*>(chunk_.data()),
              chunk_.size(), sealed_.data());
    OPENSSL_cleanse(chunk_.data(), chunk_.size());
    chunk_.clear();
    sink_(reinterpret_cast<const char*>(sealed_.data()), sealed_.size());
    bytes_out_ += sealed_.size();
}

// ---- decryption ---------------------------------------------------------------

AgeDecryptor::AgeDecryptor(std::vector<AgeIdentity> identities, Sink sink)
    : identities_(std::move(identities)), sink_(std::move(sink)) {}

AgeDecryptor::AgeDecryptor(std::string passphrase, Sink sink)
    : passphrase_(std::move(passphrase)), with_passphrase_(true), sink_(std::move(sink)) {}

AgeDecryptor::~AgeDecryptor() {
    OPENSSL_cleanse(file_key_.data(), file_key_.size());
    OPENSSL_cleanse(payload_key_.data(), payload_key_.size());
    for (AgeIdentity& identity : identities_) {
        OPENSSL_cleanse(identity.secret_key.data(), identity.secret_key.size());
    }
    OPENSSL_cleanse(passphrase_.data(), passphrase_.size());
}

void AgeDecryptor::write(const char* data, size_t size) {
    pending_.append(data, size);
    bytes_in_ += size;
    if (!header_done_) {
        parse_header();
        if (!header_done_) {
            return;
        }
    }
    if (!nonce_done_) {
        if (pending_.size() < 16) {
            return;
        }
        payload_key_ =
            hkdf_sha256(file_key_.data(), file_key_.size(),
                        reinterpret_cast<const uint8_t*>(pending_.data()), 16, "payload");
        pending_.erase(0, 16);
        chunk_start_ += 16;
        nonce_done_ = true;
    }
    // A sealed chunk with a byte after it is read as the reference reader
    // does: not the last one, or, if only the last flag opens it, the last
    // one with data after it.
    size_t used = 0;
    while (pending_.size() - used > kSealedChunk) {
        if (open_chunk(std::string_view(pending_.data() + used, kSealedChunk), false)) {
            throw failure(fmt::format("age: data after the last chunk at byte {}", chunk_start_));
        }
        used += kSealedChunk;
    }
    pending_.erase(0, used);
}

bool AgeDecryptor::open_chunk(std::string_view sealed, bool at_end) {
    if (last_seen_) {
        throw failure(fmt::format("age: data after the last chunk at byte {}", chunk_start_));
    }
    const auto* in = reinterpret_cast<const uint8_t*>(sealed.data());
    const bool full = sealed.size() == kSealedChunk;
    // Only a full chunk can be followed by another; a short one is the last.
    bool last = !full;
    if (last && counter_ > 0 && sealed.size() == kTag) {
        throw failure(fmt::format("age: chunk {} is an empty last chunk after others (at byte {})",
                                  counter_, chunk_start_));
    }
    std::vector<uint8_t> out(sealed.size() - std::min(sealed.size(), kTag));
    std::array<uint8_t, 12> nonce = chunk_nonce(counter_, last);
    bool opened = sealed.size() >= kTag &&
                  aead_open(payload_key_.data(), nonce.data(), in, sealed.size(), out.data());
    if (!opened && !last) {
        last = true;  // a full last chunk
        nonce = chunk_nonce(counter_, true);
        opened = aead_open(payload_key_.data(), nonce.data(), in, sealed.size(), out.data());
    }
    if (!opened) {
        throw failure(
            fmt::format("age: chunk {} (bytes {}-{}) does not authenticate: the file "
                        "was changed{}",
                        counter_, chunk_start_, chunk_start_ + sealed.size() - 1,
                        at_end ? " or cut short" : ""));
    }
    if (!out.empty()) {
        sink_(reinterpret_cast<const char*>(out.data()), out.size());
    }
    OPENSSL_cleanse(out.data(), out.size());
    ++counter_;
    chunk_start_ += sealed.size();
    last_seen_ = last;
    return last;
}

void AgeDecryptor::finish() {
    if (!header_done_) {
        throw failure(bytes_in_ == 0 ? "age: the file is empty"
                                     : fmt::format("age: the file ends inside its header after {} "
                                                   "bytes (truncated)",
                                                   bytes_in_));
    }
    if (!nonce_done_) {
        throw failure("age: the file ends inside its header, before the payload nonce (truncated)");
    }
    if (last_seen_ && pending_.empty()) {
        return;
    }
    if (!pending_.empty() && open_chunk(pending_, true)) {
        pending_.clear();
        return;
    }
    throw failure(
        fmt::format("age: the file ends after chunk {} without its last chunk "
                    "(truncated at byte {})",
                    counter_ == 0 ? 0 : counter_ - 1, bytes_in_));
}

namespace {

struct Stanza {
    std::vector<std::string> args;
    Bytes body;
};

// A whole header, split: its text (through the MAC line), its stanzas and
// its MAC.
struct HeaderParts {
    std::string text;
    std::vector<Stanza> stanzas;
    Bytes mac;
    size_t mac_line_size = 0;
};

// nullopt while `pending` does not yet hold the whole header; throws when
// what it holds is not an age header.
std::optional<HeaderParts> split_header(std::string_view pending) {
    const size_t dashes = pending.find("\n---");
    if (dashes == std::string::npos) {
        if (pending.size() > kMaxHeader) {
            throw failure("age: no header end in the first 64 KiB: not an age file");
        }
        if (!looks_like_age(pending) && pending.size() >= kIntro.size() + 1) {
            throw failure("not an age-encrypted file (no age-encryption.org/v1 header)");
        }
        return std::nullopt;
    }
    const size_t mac_end = pending.find('\n', dashes + 1);
    if (mac_end == std::string::npos) {
        return std::nullopt;
    }
    if (!looks_like_age(pending)) {
        throw failure("not an age-encrypted file (no age-encryption.org/v1 header)");
    }
    HeaderParts parts;
    parts.text = std::string(pending.substr(0, mac_end + 1));
    std::vector<std::string_view> lines;
    {
        std::string_view rest(parts.text);
        while (!rest.empty()) {
            size_t end = rest.find('\n');
            lines.push_back(rest.substr(0, end));
            rest.remove_prefix(end + 1);
        }
    }
    std::vector<Stanza>& stanzas = parts.stanzas;
    size_t i = 1;
    auto malformed = [](const std::string& what) {
        return failure("age: malformed header: " + what);
    };
    while (i < lines.size() && lines[i].rfind("-> ", 0) == 0) {
        Stanza stanza;
        std::string_view rest = lines[i].substr(3);
        for (;;) {
            size_t space = rest.find(' ');
            std::string_view arg = rest.substr(0, space);
            if (arg.empty() ||
                !std::all_of(arg.begin(), arg.end(), [](char c) { return c >= 33 && c <= 126; })) {
                throw malformed("a stanza argument that is empty or not printable ASCII");
            }
            stanza.args.emplace_back(arg);
            if (space == std::string_view::npos) {
                break;
            }
            rest = rest.substr(space + 1);
        }
        ++i;
        std::string body_text;
        for (;;) {
            if (i >= lines.size()) {
                throw malformed("a stanza body does not end");
            }
            std::string_view line = lines[i++];
            if (line.size() > 64) {
                throw malformed("a stanza body line is longer than 64 columns");
            }
            body_text += line;
            if (line.size() < 64) {
                break;
            }
        }
        std::optional<Bytes> body = unb64(body_text);
        if (!body || stanza.args.empty()) {
            throw malformed("a stanza is not canonical base64");
        }
        stanza.body = *body;
        stanzas.push_back(std::move(stanza));
    }
    if (i != lines.size() - 1 || lines[i].rfind("--- ", 0) != 0) {
        throw malformed("no MAC line where the stanzas end");
    }
    std::optional<Bytes> mac = unb64(lines[i].substr(4));
    if (!mac || mac->size() != 32 || stanzas.empty()) {
        throw malformed("a bad MAC line or no recipient stanza");
    }
    parts.mac = std::move(*mac);
    parts.mac_line_size = lines[i].size();
    return parts;
}

}  // namespace

AgeHeaderInfo inspect_age_header(std::string_view head) {
    std::optional<HeaderParts> parts = split_header(head);
    if (!parts) {
        throw failure(head.empty() ? "age: the file is empty"
                                   : fmt::format("age: the file ends inside its header after {} "
                                                 "bytes (truncated)",
                                                 head.size()));
    }
    AgeHeaderInfo info;
    info.size = parts->text.size();
    for (const Stanza& stanza : parts->stanzas) {
        if (stanza.args[0] == "X25519") {
            ++info.x25519;
        } else if (stanza.args[0] == "scrypt") {
            info.scrypt = true;
        }
    }
    return info;
}

void AgeDecryptor::parse_header() {
    std::optional<HeaderParts> parts = split_header(pending_);
    if (!parts) {
        return;
    }
    const std::string& header = parts->text;
    const std::vector<Stanza>& stanzas = parts->stanzas;
    const Bytes* mac = &parts->mac;
    auto malformed = [](const std::string& what) {
        return failure("age: malformed header: " + what);
    };
    bool opened = false;
    size_t x25519_stanzas = 0;
    bool scrypt_seen = false;
    for (const Stanza& stanza : stanzas) {
        const std::array<uint8_t, 12> zero{};
        if (stanza.args[0] == "X25519") {
            ++x25519_stanzas;
            std::optional<Bytes> share =
                stanza.args.size() == 2 ? unb64(stanza.args[1]) : std::nullopt;
            if (!share || share->size() != 32 || stanza.body.size() != 32) {
                throw malformed("an X25519 stanza of the wrong shape");
            }
            for (const AgeIdentity& identity : identities_) {
                if (opened) {
                    break;
                }
                std::optional<std::array<uint8_t, 32>> shared =
                    x25519(identity.secret_key.data(), share->data());
                if (!shared) {
                    throw malformed("an X25519 stanza with a low-order share");
                }
                const std::array<uint8_t, 32> mine = x25519_public(identity.secret_key.data());
                uint8_t salt[64];
                std::memcpy(salt, share->data(), 32);
                std::memcpy(salt + 32, mine.data(), 32);
                std::array<uint8_t, 32> wrap_key =
                    hkdf_sha256(shared->data(), shared->size(), salt, sizeof salt,
                                "age-encryption.org/v1/X25519");
                opened = aead_open(wrap_key.data(), zero.data(), stanza.body.data(),
                                   stanza.body.size(), file_key_.data());
                OPENSSL_cleanse(wrap_key.data(), wrap_key.size());
            }
        } else if (stanza.args[0] == "scrypt") {
            scrypt_seen = true;
            if (stanzas.size() != 1) {
                throw malformed("a scrypt stanza beside others");
            }
            std::optional<Bytes> salt =
                stanza.args.size() == 3 ? unb64(stanza.args[1]) : std::nullopt;
            const std::string& work = stanza.args.size() == 3 ? stanza.args[2] : std::string();
            if (!salt || salt->size() != 16 || work.empty() || work.size() > 2 ||
                !std::all_of(work.begin(), work.end(),
                             [](char c) { return c >= '0' && c <= '9'; }) ||
                work[0] == '0' || stanza.body.size() != 32) {
                throw malformed("a scrypt stanza of the wrong shape");
            }
            const int log_n = std::stoi(work);
            if (!with_passphrase_) {
                break;
            }
            if (log_n > kMaxScryptLogN) {
                throw failure(fmt::format("age: the passphrase's work factor 2^{} is above 2^{}",
                                          log_n, kMaxScryptLogN));
            }
            std::array<uint8_t, 32> key = scrypt_key(passphrase_, salt->data(), log_n);
            opened = aead_open(key.data(), zero.data(), stanza.body.data(), stanza.body.size(),
                               file_key_.data());
            OPENSSL_cleanse(key.data(), key.size());
        }
    }
    if (!opened) {
        key_refused_ = true;
        if (scrypt_seen && !with_passphrase_) {
            throw failure("age: no identity opens the file: it is encrypted to a passphrase",
                          "give the passphrase file instead of an identity");
        }
        if (with_passphrase_ && !scrypt_seen) {
            throw failure(
                fmt::format("age: the passphrase does not open the file: it is encrypted to {} "
                            "key(s)",
                            x25519_stanzas),
                "give an identity file (AGE-SECRET-KEY-1…) instead");
        }
        throw failure(with_passphrase_
                          ? "age: the passphrase does not open the file"
                          : fmt::format("age: none of the {} identit(y/ies) given opens the file "
                                        "(it is for {} X25519 recipient(s))",
                                        identities_.size(), x25519_stanzas));
    }
    const std::array<uint8_t, 32> expected = header_mac(
        file_key_,
        std::string_view(header).substr(0, header.size() - parts->mac_line_size + 3 - 1));
    if (CRYPTO_memcmp(expected.data(), mac->data(), 32) != 0) {
        throw failure("age: the header's MAC does not match: the header was changed");
    }
    chunk_start_ = header.size();
    pending_.erase(0, header.size());
    header_done_ = true;
}

}  // namespace pgward::crypto
