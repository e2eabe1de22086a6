// The age format (src/crypto/age): what pgward encrypts, the reference `age`
// tool (Debian's age 1.1.1) decrypts, and the reverse, for keys and
// passphrases, at the sizes where chunking has edges (0, 1, 64 KiB - 1,
// 64 KiB, 64 KiB + 1, several chunks); and every way a file can be wrong: a
// changed byte is found in its chunk, a cut is found at chunk boundaries and
// inside one, the wrong key and the wrong kind of secret are named.
// Without the `age` tool the interop tests are skipped, saying so.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include <zlib.h>

#include <fmt/format.h>

#include "crypto/age.hpp"
#include "support/temp_dir.hpp"
#include "util/process.hpp"
#include "util/sha256.hpp"

namespace pgward {
namespace {

namespace fs = std::filesystem;
using crypto::AgeDecryptor;
using crypto::AgeEncryptor;
using crypto::AgeIdentity;
using crypto::AgeRecipient;

std::string random_text(size_t size, unsigned seed) {
    std::mt19937 random(seed);
    std::string out(size, '\0');
    for (char& c : out) {
        c = static_cast<char>(random() & 0xff);
    }
    return out;
}

std::string encrypt_to(const std::vector<AgeRecipient>& recipients, const std::string& plain,
                       size_t piece = 7000) {
    std::string out;
    AgeEncryptor encryptor(recipients, [&](const char* d, size_t n) { out.append(d, n); });
    for (size_t at = 0; at < plain.size(); at += piece) {
        encryptor.write(plain.data() + at, std::min(piece, plain.size() - at));
    }
    encryptor.finish();
    EXPECT_EQ(encryptor.bytes_out(), out.size());
    return out;
}

std::string decrypt_with(const std::vector<AgeIdentity>& identities, const std::string& sealed,
                         size_t piece = 5000) {
    std::string out;
    AgeDecryptor decryptor(identities, [&](const char* d, size_t n) { out.append(d, n); });
    for (size_t at = 0; at < sealed.size(); at += piece) {
        decryptor.write(sealed.data() + at, std::min(piece, sealed.size() - at));
    }
    decryptor.finish();
    return out;
}

// `age ARGS...` with `input` on a file, its output read back; exit code in `code`.
class AgeTool : public test::TempDirTest {
  protected:
    void SetUp() override {
        test::TempDirTest::SetUp();
        for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
            if (fs::exists(fs::path(dir) / "age")) {
                age_ = fs::path(dir) / "age";
                keygen_ = fs::path(dir) / "age-keygen";
            }
        }
    }
    bool have_age() const { return !age_.empty(); }
    std::string run(const fs::path& tool, std::vector<std::string> args, const std::string& input,
                    int* code) {
        std::ofstream(dir_ / "in", std::ios::binary) << input;
        args.insert(args.begin(), tool.string());
        args.push_back("-o");
        args.push_back((dir_ / "out").string());
        args.push_back((dir_ / "in").string());
        fs::remove(dir_ / "out");
        Child child = Child::spawn(Command{args, {}, {}});
        std::string err;
        PumpHandlers handlers;
        handlers.on_stderr_line = [&](std::string_view line) { err += line; };
        ExitStatus status = pump(child, handlers);
        *code = status.code;
        std::ifstream in(dir_ / "out", std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }

    fs::path age_;
    fs::path keygen_;
};

TEST(AgeKeys, RecipientsAndIdentitiesRoundTripAndBadOnesAreNamed) {
    AgeIdentity identity = crypto::generate_identity();
    const std::string secret = crypto::identity_text(identity);
    EXPECT_EQ(secret.rfind("AGE-SECRET-KEY-1", 0), 0U);
    EXPECT_EQ(secret.size(), 74U);
    AgeRecipient recipient = identity.recipient();
    EXPECT_EQ(recipient.text.rfind("age1", 0), 0U);
    EXPECT_EQ(recipient.text.size(), 62U);
    EXPECT_EQ(crypto::parse_recipient(recipient.text, "test").public_key, recipient.public_key);
    std::vector<AgeIdentity> parsed =
        crypto::parse_identities("# created: now\n# public key: x\n" + secret + "\n", "test");
    ASSERT_EQ(parsed.size(), 1U);
    EXPECT_EQ(parsed[0].secret_key, identity.secret_key);

    std::string typo = recipient.text;
    typo[10] = typo[10] == 'q' ? 'p' : 'q';
    EXPECT_EQ(
        test::error_message([&] { crypto::parse_recipient(typo, "--encrypt-to"); }),
        "invalid age recipient \"" + typo + "\" in --encrypt-to: expected an age1… public key");
    std::string bad_secret = secret;
    bad_secret[20] = bad_secret[20] == 'Q' ? 'P' : 'Q';
    const std::string message =
        test::error_message([&] { crypto::parse_identities(bad_secret, "the identity file"); });
    EXPECT_EQ(message,
              "the identity file holds a line that is not an age identity (AGE-SECRET-KEY-1…)");
    EXPECT_EQ(message.find(bad_secret), std::string::npos) << "a secret is never echoed";
    EXPECT_EQ(test::error_message([&] { crypto::parse_identities("# nothing\n", "F"); }),
              "F holds no age identity (AGE-SECRET-KEY-1…)");
    EXPECT_EQ(crypto::recipient_fingerprint(recipient),
              recipient.text.substr(0, 12) + "…" + recipient.text.substr(56));
    // A low-order point (here zero) would make the file key anyone's.
    AgeRecipient zero;
    zero.text = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqz";
    EXPECT_EQ(test::error_message([&] { AgeEncryptor e({zero}, [](const char*, size_t) {}); }),
              "the age recipient age1qqqqqqqq…qqqqqz is not a usable key");
}

TEST(AgeFormat, EverySizeRoundTripsAndEachChangedByteIsFoundInItsChunk) {
    AgeIdentity identity = crypto::generate_identity();
    AgeIdentity other = crypto::generate_identity();
    for (size_t size : {size_t{0}, size_t{1}, size_t{65535}, size_t{65536}, size_t{65537},
                        size_t{3 * 65536 + 11}}) {
        SCOPED_TRACE(size);
        const std::string plain = random_text(size, static_cast<unsigned>(size));
        const std::string sealed = encrypt_to({other.recipient(), identity.recipient()}, plain);
        EXPECT_TRUE(crypto::looks_like_age(sealed));
        EXPECT_EQ(decrypt_with({identity}, sealed), plain);
        EXPECT_EQ(decrypt_with({identity}, sealed, 1), plain) << "pushed a byte at a time";
    }
    constexpr size_t kSealed = 65536 + 16;  // a full chunk and its tag
    const std::string plain = random_text(3 * 65536 + 11, 7);
    const std::string sealed = encrypt_to({identity.recipient()}, plain);
    const size_t payload = sealed.size() - (3 * kSealed + 11 + 16);
    // A changed byte in the second chunk: named with its offsets.
    std::string changed = sealed;
    changed[payload + kSealed + 100] ^= 0x01;
    EXPECT_EQ(test::error_message([&] { decrypt_with({identity}, changed); }),
              fmt::format("age: chunk 1 (bytes {}-{}) does not authenticate: the file was changed",
                          payload + kSealed, payload + 2 * kSealed - 1));
    // In the header: its MAC.
    std::string header = sealed;
    header[30] ^= 0x01;
    EXPECT_FALSE(test::error_message([&] { decrypt_with({identity}, header); }).empty());
    // Cut at a chunk boundary, and inside the last chunk.
    EXPECT_EQ(test::error_message(
                  [&] { decrypt_with({identity}, sealed.substr(0, payload + 2 * kSealed)); }),
              fmt::format("age: the file ends after chunk 1 without its last chunk (truncated at "
                          "byte {})",
                          payload + 2 * kSealed));
    EXPECT_NE(test::error_message([&] {
                  decrypt_with({identity}, sealed.substr(0, sealed.size() - 5));
              }).find("does not authenticate"),
              std::string::npos);
    EXPECT_EQ(test::error_message([&] { decrypt_with({identity}, sealed.substr(0, 40)); }),
              "age: the file ends inside its header after 40 bytes (truncated)");
    // A byte added: the last chunk no longer authenticates.
    EXPECT_NE(test::error_message([&] {
                  decrypt_with({identity}, sealed + "x");
              }).find("chunk 3 (bytes "),
              std::string::npos);
    // Another key, a passphrase for a key file, and not age at all.
    EXPECT_EQ(test::error_message([&] { decrypt_with({other}, sealed); }),
              "age: none of the 1 identit(y/ies) given opens the file (it is for 1 X25519 "
              "recipient(s))");
    EXPECT_EQ(test::error_message([&] {
                  AgeDecryptor d(std::string("pw"), [](const char*, size_t) {});
                  d.write(sealed.data(), sealed.size());
              }),
              "age: the passphrase does not open the file: it is encrypted to 1 key(s)");
    EXPECT_EQ(test::error_message([&] { decrypt_with({identity}, "PGDMP" + plain); }),
              "not an age-encrypted file (no age-encryption.org/v1 header)");
}

TEST(AgeFormat, APassphraseFileOpensOnlyWithItsPassphrase) {
    const std::string plain = random_text(100000, 3);
    std::string sealed;
    {
        AgeEncryptor e(
            "correct horse", [&](const char* d, size_t n) { sealed.append(d, n); }, 10);
        e.write(plain.data(), plain.size());
        e.finish();
    }
    std::string out;
    AgeDecryptor good(std::string("correct horse"),
                      [&](const char* d, size_t n) { out.append(d, n); });
    good.write(sealed.data(), sealed.size());
    good.finish();
    EXPECT_EQ(out, plain);
    EXPECT_EQ(test::error_message([&] {
                  AgeDecryptor d(std::string("wrong"), [](const char*, size_t) {});
                  d.write(sealed.data(), sealed.size());
              }),
              "age: the passphrase does not open the file");
    EXPECT_EQ(test::error_message([&] { decrypt_with({crypto::generate_identity()}, sealed); }),
              "age: no identity opens the file: it is encrypted to a passphrase");
}

TEST_F(AgeTool, TheReferenceToolOpensOurFilesAndWeOpenItsFiles) {
    if (!have_age()) {
        GTEST_SKIP() << "the age tool is not installed (apt-get install age)";
    }
    AgeIdentity identity = crypto::generate_identity();
    const fs::path key_file = dir_ / "key.txt";
    std::ofstream(key_file) << "# a test key\n" << crypto::identity_text(identity) << "\n";
    for (size_t size : {size_t{0}, size_t{65536}, size_t{200000}}) {
        SCOPED_TRACE(size);
        const std::string plain = random_text(size, static_cast<unsigned>(size) + 1);
        int code = -1;
        // Ours, opened by age.
        std::string opened = run(age_, {"-d", "-i", key_file.string()},
                                 encrypt_to({identity.recipient()}, plain), &code);
        EXPECT_EQ(code, 0);
        EXPECT_EQ(opened, plain);
        // age's, opened by us (to our recipient, and with an extra one).
        std::string theirs = run(
            age_,
            {"-r", identity.recipient().text, "-r", crypto::generate_identity().recipient().text},
            plain, &code);
        EXPECT_EQ(code, 0);
        EXPECT_EQ(decrypt_with({identity}, theirs), plain);
    }
    // A key made by age-keygen.
    int code = -1;
    Child keygen =
        Child::spawn(Command{{keygen_.string(), "-o", (dir_ / "gen.txt").string()}, {}, {}});
    pump(keygen, PumpHandlers{});
    std::ifstream in(dir_ / "gen.txt");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<AgeIdentity> generated = crypto::parse_identities(text, "gen.txt");
    ASSERT_EQ(generated.size(), 1U);
    EXPECT_NE(text.find("# public key: " + generated[0].recipient().text), std::string::npos)
        << "our X25519 makes age-keygen's public key of its secret";
    std::string theirs = run(age_, {"-r", generated[0].recipient().text}, "hello", &code);
    EXPECT_EQ(decrypt_with(generated, theirs), "hello");
}

// A passphrase both ways: `age -p` reads it from a terminal only, so the
// tool runs under script(1), whose pty is fed the passphrase lines.
TEST_F(AgeTool, TheReferenceToolAndWeOpenEachOthersPassphraseFiles) {
    if (!have_age() || !fs::exists("/usr/bin/script")) {
        GTEST_SKIP() << "the age tool or script(1) is not installed (apt-get install age)";
    }
    const std::string passphrase = "correct horse battery staple";
    auto age_on_a_terminal = [&](const std::string& args, const std::string& typed) {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
        EXPECT_EQ(::write(fds[1], typed.data(), typed.size()), static_cast<ssize_t>(typed.size()));
        ::close(fds[1]);
        Command command{
            {"/usr/bin/script", "-qec", age_.string() + " " + args, "/dev/null"}, {}, {}};
        command.stdin_fd = fds[0];
        Child child = Child::spawn(command);
        ::close(fds[0]);
        return pump(child, PumpHandlers{}).code;
    };
    for (size_t size : {size_t{0}, size_t{65536}, size_t{200000}}) {
        SCOPED_TRACE(size);
        const std::string plain = random_text(size, static_cast<unsigned>(size) + 7);
        std::string ours;
        AgeEncryptor encryptor(passphrase, [&](const char* d, size_t n) { ours.append(d, n); });
        encryptor.write(plain.data(), plain.size());
        encryptor.finish();
        std::ofstream(dir_ / "ours.age", std::ios::binary) << ours;
        fs::remove(dir_ / "opened");
        EXPECT_EQ(age_on_a_terminal(
                      "-d -o " + (dir_ / "opened").string() + " " + (dir_ / "ours.age").string(),
                      passphrase + "\n"),
                  0);
        std::ifstream opened(dir_ / "opened", std::ios::binary);
        EXPECT_EQ(std::string(std::istreambuf_iterator<char>(opened), {}), plain);

        std::ofstream(dir_ / "plain", std::ios::binary) << plain;
        fs::remove(dir_ / "theirs.age");
        EXPECT_EQ(age_on_a_terminal(
                      "-p -o " + (dir_ / "theirs.age").string() + " " + (dir_ / "plain").string(),
                      passphrase + "\n" + passphrase + "\n"),
                  0);
        std::ifstream in(dir_ / "theirs.age", std::ios::binary);
        const std::string theirs(std::istreambuf_iterator<char>(in), {});
        EXPECT_NE(theirs.find("-> scrypt "), std::string::npos);
        std::string out;
        AgeDecryptor decryptor(passphrase, [&](const char* d, size_t n) { out.append(d, n); });
        decryptor.write(theirs.data(), theirs.size());
        decryptor.finish();
        EXPECT_EQ(out, plain);
    }
}

// C2SP's CCTV testkit (tests/unit/data/age-testkit): every vector's outcome
// (success, no match, HMAC failure, header failure, payload failure) and the
// SHA-256 of every plaintext byte released before a failure.
TEST(AgeTestkit, EveryVectorDecryptsOrFailsAsExpected) {
    const fs::path dir = fs::path(__FILE__).parent_path() / "data" / "age-testkit";
    size_t run = 0;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (name == "LICENSE" || name == "README.md") {
            continue;
        }
        SCOPED_TRACE(name);
        std::ifstream in(entry.path(), std::ios::binary);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const size_t blank = text.find("\n\n");
        ASSERT_NE(blank, std::string::npos);
        std::string expect, payload, compressed;
        std::vector<std::string> identities, passphrases;
        std::istringstream fields(text.substr(0, blank));
        for (std::string line; std::getline(fields, line);) {
            const size_t colon = line.find(": ");
            const std::string key = line.substr(0, colon), value = line.substr(colon + 2);
            if (key == "expect") {
                expect = value;
            } else if (key == "payload") {
                payload = value;
            } else if (key == "identity") {
                identities.push_back(value);
            } else if (key == "passphrase") {
                passphrases.push_back(value);
            } else if (key == "compressed") {
                compressed = value;
            }
        }
        std::string file = text.substr(blank + 2);
        if (compressed == "zlib") {
            std::string out(64 << 20, '\0');
            uLongf size = out.size();
            ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(out.data()), &size,
                                 reinterpret_cast<const Bytef*>(file.data()), file.size()),
                      Z_OK);
            out.resize(size);
            file = std::move(out);
        }
        Sha256 released;
        auto sink = [&](const char* d, size_t n) { released.update(d, n); };
        std::unique_ptr<AgeDecryptor> decryptor;
        if (!passphrases.empty()) {
            decryptor = std::make_unique<AgeDecryptor>(passphrases[0], sink);
        } else {
            std::vector<AgeIdentity> keys;
            for (const std::string& identity : identities) {
                std::vector<AgeIdentity> parsed = crypto::parse_identities(identity, name);
                keys.insert(keys.end(), parsed.begin(), parsed.end());
            }
            decryptor = std::make_unique<AgeDecryptor>(keys, sink);
        }
        std::string outcome = "success";
        try {
            decryptor->write(file.data(), file.size());
            decryptor->finish();
        } catch (const Error& e) {
            const std::string message = e.what();
            if (message.find("opens the file") != std::string::npos ||
                message.find("does not open the file") != std::string::npos) {
                outcome = "no match";
            } else if (message.find("MAC does not match") != std::string::npos) {
                outcome = "HMAC failure";
            } else {
                outcome = decryptor->header_parsed() ? "payload failure" : "header failure";
            }
            if (outcome != expect) {
                ADD_FAILURE() << "expected " << expect << ", got: " << message;
            }
        }
        EXPECT_EQ(outcome, expect);
        if (expect == "success" || expect == "payload failure") {
            EXPECT_EQ(released.hex_digest(), payload);
        }
        ++run;
    }
    EXPECT_GE(run, 90U);
}

}  // namespace
}  // namespace pgward
