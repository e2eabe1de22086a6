// Encrypted backups' pure parts, on the real fixture archives: the names,
// the keys from the settings, the manifest's sealed part, and the readers
// that decrypt (the header check, the pipe a child reads, the private copy
// for --jobs, the streaming summary).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>

#include "archive/summary.hpp"
#include "domain/encryption.hpp"
#include "domain/naming.hpp"
#include "domain/verify.hpp"
#include "support/temp_dir.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/process.hpp"
#include "util/sha256.hpp"
#include "util/signals.hpp"

namespace pgward {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = PGWARD_FIXTURES_DIR;

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// `argv` run with the pipe as its stdin: whether it exited 0, and its stdout.
std::pair<bool, std::string> read_by(DecryptingPipe& pipe, std::vector<std::string> argv) {
    Command command{std::move(argv), {}, {}};
    command.stdin_fd = pipe.child_stdin();
    Child child = Child::spawn(command);
    pipe.start();
    std::string out;
    PumpHandlers handlers;
    handlers.on_stdout = [&](const char* d, size_t n) { out.append(d, n); };
    const bool ok = pump(child, handlers).ok();
    return {ok, out};
}

TEST(EncryptedNames, DumpAndGlobalsEndInAgeAndTheManifestDoesNot) {
    auto dump = parse_backup_file_name("app_20260101T000000Z.dump.age");
    ASSERT_TRUE(dump);
    EXPECT_EQ(dump->role, FileRole::Dump);
    EXPECT_TRUE(dump->id.encrypted);
    EXPECT_EQ(dump->id.dump_file(), "app_20260101T000000Z.dump.age");
    EXPECT_EQ(dump->id.globals_file(), "app_20260101T000000Z.globals.sql.age");
    EXPECT_EQ(dump->id.manifest_file(), "app_20260101T000000Z.json");
    auto globals = parse_backup_file_name("app_20260101T000000Z.globals.sql.age");
    ASSERT_TRUE(globals);
    EXPECT_EQ(globals->role, FileRole::Globals);
    auto tmp = parse_backup_file_name("app_20260101T000000Z.pre-restore.dump.age.tmp");
    ASSERT_TRUE(tmp);
    EXPECT_TRUE(tmp->temporary);
    EXPECT_TRUE(tmp->id.pre_restore);
    EXPECT_TRUE(tmp->id.encrypted);
    EXPECT_FALSE(parse_backup_file_name("app_20260101T000000Z.json.age"));
    EXPECT_FALSE(parse_backup_file_name("app_20260101T000000Z.age"));
    auto plain = parse_backup_file_name("app_20260101T000000Z.dump");
    ASSERT_TRUE(plain);
    EXPECT_FALSE(plain->id.encrypted);
}

class EncryptionTest : public test::TempDirTest {
  protected:
    void SetUp() override {
        test::TempDirTest::SetUp();
        identity_ = crypto::generate_identity();
        keys_.recipients = {identity_.recipient()};
        opener_.identities = {identity_};
        opener_.origin = "key.txt";
    }
    // The fixture archive encrypted to keys_, as the backup writes it.
    fs::path encrypted_fixture(const std::string& name) {
        const fs::path out = dir_ / (name + ".age");
        AtomicFile file(out, AtomicFile::Publish::NoReplace);
        auto encryptor = keys_.encryptor([&](const char* d, size_t n) { file.write(d, n); });
        const std::string plain = read_file(kFixtures / name);
        encryptor->write(plain.data(), plain.size());
        encryptor->finish();
        file.commit();
        return out;
    }

    crypto::AgeIdentity identity_;
    EncryptionKeys keys_;
    DecryptionKeys opener_;
};

TEST_F(EncryptionTest, KeysComeFromCommasLinesAFileOrAPassphraseNeverBoth) {
    const std::string a = crypto::generate_identity().recipient().text;
    const std::string b = crypto::generate_identity().recipient().text;
    const std::string c = crypto::generate_identity().recipient().text;
    write_file_atomically(dir_ / "recipients", "# team\n" + c + "\n", AtomicFile::Publish::Replace);
    EncryptionKeys keys = load_encryption_keys({a + " , " + b + ",", ""}, dir_ / "recipients", {});
    ASSERT_EQ(keys.recipients.size(), 3U);
    EXPECT_EQ(keys.recipients[1].text, b);
    EXPECT_EQ(keys.fingerprints()[2], crypto::recipient_fingerprint(keys.recipients[2]));
    EXPECT_FALSE(load_encryption_keys({}, {}, {}).enabled());

    write_file_atomically(dir_ / "pass", "two words\r\nignored\n", AtomicFile::Publish::Replace);
    EncryptionKeys pass = load_encryption_keys({}, {}, dir_ / "pass");
    EXPECT_EQ(pass.passphrase, "two words");
    EXPECT_EQ(pass.fingerprints(), std::vector<std::string>{"passphrase"});
    EXPECT_TRUE(
        contains(error_of([&] { load_encryption_keys({a}, {}, dir_ / "pass"); }), "not both"));
    write_file_atomically(dir_ / "empty", "\n", AtomicFile::Publish::Replace);
    EXPECT_TRUE(
        contains(error_of([&] { load_encryption_keys({}, {}, dir_ / "empty"); }), "is empty"));
    write_file_atomically(dir_ / "none", "# nothing\n", AtomicFile::Publish::Replace);
    EXPECT_TRUE(
        contains(error_of([&] { load_encryption_keys({}, dir_ / "none", {}); }), "holds no age1"));
    EXPECT_TRUE(
        contains(error_of([&] { load_decryption_keys(dir_ / "x", dir_ / "pass"); }), "not both"));
    DecryptionKeys opened = load_decryption_keys({}, dir_ / "pass");
    EXPECT_EQ(opened.passphrase, "two words");
    EXPECT_EQ(opened.origin, (dir_ / "pass").string());
}

TEST_F(EncryptionTest, TheManifestsPrivatePartIsSealedAndOpensOnlyWithItsKeys) {
    Manifest m;
    m.database = "app";
    m.file = "app_20260101T000000Z.dump.age";
    m.schema_version = "20260101_add_orders";
    m.large_objects = 2;
    m.large_objects_fingerprint = "lo1:abc";
    m.sequences_behind = std::vector<std::string>{"public.orders_id_seq"};
    m.invalid_indexes = std::vector<std::string>{};
    m.tables = {TableEntry{"public", "customer_secrets", 500, "fp1:x", std::nullopt}};
    seal_manifest(m, keys_);
    const std::string text = manifest_to_json(m).dump();
    // Each secret holds a character base64 never writes (or is long enough): a
    // short one like "v7" turns up by chance in the sealed base64 text.
    for (const char* secret :
         {"customer_secrets", "fp1:x", "20260101_add_orders", "lo1:abc", "orders_id_seq"}) {
        EXPECT_FALSE(contains(text, secret)) << secret;
    }
    EXPECT_TRUE(contains(text, crypto::recipient_fingerprint(identity_.recipient())));

    Manifest read = manifest_from_json(nlohmann::json::parse(text), "m.json");
    ASSERT_TRUE(read.encryption);
    EXPECT_FALSE(read.encryption->opened);
    EXPECT_TRUE(read.tables.empty());
    EXPECT_EQ(read.large_objects, 2U);

    Manifest no_key = read;
    const std::string missing = error_of([&] { open_manifest(no_key, {}, "m.json"); });
    EXPECT_TRUE(contains(missing,
                         "is encrypted to " + crypto::recipient_fingerprint(identity_.recipient())))
        << missing;
    DecryptionKeys other{{crypto::generate_identity()}, std::nullopt, "other.txt"};
    EXPECT_TRUE(contains(error_of([&] { open_manifest(no_key, other, "m.json"); }),
                         "the keys in other.txt do not open it"));

    open_manifest(read, opener_, "m.json");
    EXPECT_TRUE(read.encryption->opened);
    EXPECT_EQ(read.tables, m.tables);
    EXPECT_EQ(read.schema_version, m.schema_version);
    EXPECT_EQ(read.sequences_behind, m.sequences_behind);
    EXPECT_EQ(read.invalid_indexes, m.invalid_indexes);
    EXPECT_EQ(read.large_objects_fingerprint, m.large_objects_fingerprint);
    open_manifest(read, {}, "m.json");  // already open: nothing to do

    // A sealed part that was edited.
    Manifest damaged = manifest_from_json(nlohmann::json::parse(text), "m.json");
    damaged.encryption->sealed = "not base64!";
    EXPECT_TRUE(contains(error_of([&] { open_manifest(damaged, opener_, "m.json"); }),
                         "its sealed part is not base64"));
    damaged = manifest_from_json(nlohmann::json::parse(text), "m.json");
    std::string& sealed = damaged.encryption->sealed;
    sealed[sealed.size() - 8] = sealed[sealed.size() - 8] == 'A' ? 'B' : 'A';
    EXPECT_TRUE(contains(error_of([&] { open_manifest(damaged, opener_, "m.json"); }),
                         "its sealed part does not open"));
}

TEST_F(EncryptionTest, TheHeaderIsCheckedWithoutAKeyAndOpenedWithOne) {
    const fs::path file = encrypted_fixture("pg17_gzip.dump");
    const std::string head = read_file_start(file, 65536);
    crypto::AgeHeaderInfo info = crypto::inspect_age_header(head);
    EXPECT_EQ(info.x25519, 1U);
    EXPECT_FALSE(info.scrypt);
    EXPECT_EQ(head.substr(info.size - 48, 4), "--- ");
    EXPECT_TRUE(contains(error_of([&] { crypto::inspect_age_header(head.substr(0, 40)); }),
                         "ends inside its header"));
    EXPECT_TRUE(contains(error_of([&] { crypto::inspect_age_header(""); }), "is empty"));
    EXPECT_TRUE(contains(error_of([&] { crypto::inspect_age_header("PGDMP is not age\n--- x\n"); }),
                         "not an age-encrypted file"));

    const std::string plain_head = decrypt_head(file, opener_, std::nullopt);
    EXPECT_EQ(plain_head.substr(0, 5), "PGDMP");
    EXPECT_EQ(archive_version_of(plain_head, "x").text(),
              read_archive_version(kFixtures / "pg17_gzip.dump").text());
    // A file of one chunk, its last (the header check once saw nothing of it).
    write_file_atomically(dir_ / "small", "PGDMP\x01\x0e\x00", AtomicFile::Publish::Replace);
    {
        AtomicFile out(dir_ / "small.age", AtomicFile::Publish::NoReplace);
        auto enc = keys_.encryptor([&](const char* d, size_t n) { out.write(d, n); });
        enc->write("PGDMP\x01\x0e\x00", 8);
        enc->finish();
        out.commit();
    }
    EXPECT_EQ(decrypt_head(dir_ / "small.age", opener_, std::nullopt),
              std::string("PGDMP\x01\x0e\x00", 8));
    EXPECT_TRUE(
        contains(error_of([&] { decrypt_head(file, {}, std::nullopt); }), "no identity was given"));
    DecryptionKeys other{{crypto::generate_identity()}, std::nullopt, "other.txt"};
    EXPECT_TRUE(
        contains(error_of([&] { decrypt_head(file, other, std::nullopt); }), "do not open it"));
}

TEST_F(EncryptionTest, ThePipeFeedsAChildAndAChangedChunkIsItsFailure) {
    const fs::path file = encrypted_fixture("pg15_gzip.dump");
    const std::string expected = sha256_file_hex(kFixtures / "pg15_gzip.dump");
    // As in pgward (commands/cli.cpp): a reader that went away is EPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    // sha256sum reads all of the pipe.
    {
        DecryptingPipe pipe(file, opener_, std::nullopt);
        auto [ok, out] = read_by(pipe, {"/usr/bin/sha256sum"});
        EXPECT_TRUE(ok);
        pipe.finish();
        EXPECT_EQ(out.substr(0, 64), expected);
    }
    // head reads 10 bytes and goes: not a failure of the pipe.
    {
        DecryptingPipe pipe(file, opener_, std::nullopt);
        auto [ok, out] = read_by(pipe, {"/usr/bin/head", "-c", "5"});
        EXPECT_TRUE(ok);
        EXPECT_NO_THROW(pipe.finish());
        EXPECT_EQ(out, "PGDMP");
    }
    // A byte changed in the second chunk: the reader sees the first chunk
    // only, and the pipe names the chunk and its bytes.
    std::string bytes = read_file(file);
    ASSERT_GT(bytes.size(), 140000U);
    bytes[100000] = static_cast<char>(bytes[100000] ^ 1);
    write_file_atomically(file, bytes, AtomicFile::Publish::Replace);
    DecryptingPipe pipe(file, opener_, std::nullopt);
    auto [ok, out] = read_by(pipe, {"/usr/bin/wc", "-c"});
    EXPECT_TRUE(ok);
    EXPECT_EQ(std::stoul(out), 65536U);
    EXPECT_TRUE(contains(error_of([&] { pipe.finish(); }), "chunk 1 (bytes "));
}

TEST_F(EncryptionTest, APrivateCopyForJobsIsRemovedAndNothingIsLeftOnFailure) {
    const fs::path file = encrypted_fixture("pg17_gzip.dump");
    fs::path dir;
    {
        DecryptedCopy copy(file, opener_, std::nullopt);
        dir = copy.path().parent_path();
        EXPECT_EQ(copy.path().filename(), "pg17_gzip.dump");
        EXPECT_EQ(sha256_file_hex(copy.path()), sha256_file_hex(kFixtures / "pg17_gzip.dump"));
        struct stat st {};
        ASSERT_EQ(::stat(copy.path().c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600U);
        ASSERT_EQ(::stat(dir.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0700U);
        EXPECT_EQ(dir.filename().string().rfind(".pgward-decrypt-" + std::to_string(::getpid()), 0),
                  0U);
    }
    EXPECT_FALSE(fs::exists(dir));
    // One a run killed outright left goes with the next copy; a live one stays.
    pid_t gone = ::fork();
    ASSERT_GE(gone, 0);
    if (gone == 0) {
        ::_exit(0);
    }
    ASSERT_EQ(::waitpid(gone, nullptr, 0), gone);
    const fs::path orphan = dir_ / (".pgward-decrypt-" + std::to_string(gone) + "-left");
    const fs::path live = dir_ / (".pgward-decrypt-" + std::to_string(::getppid()) + "-live");
    fs::create_directories(orphan);
    fs::create_directories(live);
    write_file_atomically(orphan / "pg17_gzip.dump", "rows", AtomicFile::Publish::Replace);
    // A file (not a directory) of that name is not ours to remove.
    const fs::path not_a_dir = dir_ / (".pgward-decrypt-" + std::to_string(gone) + "-file");
    write_file_atomically(not_a_dir, "x", AtomicFile::Publish::Replace);
    { DecryptedCopy copy(file, opener_, std::nullopt); }
    EXPECT_FALSE(fs::exists(orphan));
    EXPECT_TRUE(fs::exists(live));
    EXPECT_TRUE(fs::exists(not_a_dir));
    fs::remove(not_a_dir);
    fs::remove_all(live);
    // No directory to make it in: one line naming the place.
    EXPECT_TRUE(
        contains(error_of([&] {
                     make_private_dir(dir_ / "missing", ".pgward-decrypt-", "a decrypted copy");
                 }),
                 "cannot make a directory for a decrypted copy in " + (dir_ / "missing").string()));
    // Cut short: the copy fails and leaves nothing.
    const std::string bytes = read_file(file);
    write_file_atomically(file, bytes.substr(0, bytes.size() - 100), AtomicFile::Publish::Replace);
    EXPECT_TRUE(contains(error_of([&] { DecryptedCopy copy(file, opener_, std::nullopt); }),
                         "does not authenticate"));
    for (const auto& entry : fs::directory_iterator(dir_)) {
        EXPECT_NE(entry.path().filename().string().rfind(".pgward-decrypt-", 0), 0U)
            << entry.path();
    }
}

// SIGTERM ends a private copy between two reads, leaving nothing (in a
// child process: a pending signal cannot be taken back).
TEST_F(EncryptionTest, SigtermEndsAPrivateCopyAndLeavesNothing) {
    const fs::path file = encrypted_fixture("pg15_none.dump");
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        install_interrupt_handlers();
        ::raise(SIGTERM);
        const std::string message =
            error_of([&] { DecryptedCopy copy(file, opener_, std::nullopt); });
        bool left = false;
        for (const auto& entry : fs::directory_iterator(dir_)) {
            left = left || entry.path().filename().string().rfind(".pgward-decrypt-", 0) == 0;
        }
        ::_exit(message == "interrupted by SIGTERM" && !left ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(EncryptionTest, TheStreamingSummaryEqualsThePlainFiles) {
    for (const char* name : {"pg15_gzip.dump", "pg17_lz4.dump", "pg17_none.dump"}) {
        const fs::path file = encrypted_fixture(name);
        archive::ArchiveSummary streamed = summarize_encrypted(file, opener_, std::nullopt);
        archive::ArchiveSummary plain = archive::summarize_file(kFixtures / name);
        ASSERT_EQ(streamed.tables.size(), plain.tables.size()) << name;
        for (size_t i = 0; i < plain.tables.size(); ++i) {
            EXPECT_EQ(streamed.tables[i].fingerprint, plain.tables[i].fingerprint) << name;
            EXPECT_EQ(streamed.tables[i].rows, plain.tables[i].rows) << name;
        }
        EXPECT_EQ(streamed.large_objects_fingerprint(), plain.large_objects_fingerprint());
        DeepReport deep = deep_verify(file, std::nullopt, opener_);
        EXPECT_TRUE(deep.ok) << name;
        EXPECT_EQ(deep.tables, plain.tables.size());
    }
    const fs::path file = encrypted_fixture("pg17_gzip.dump");
    EXPECT_FALSE(deep_verify(file, std::nullopt, {}).ok);
    std::string bytes = read_file(file);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 4);
    write_file_atomically(file, bytes, AtomicFile::Publish::Replace);
    EXPECT_TRUE(contains(error_of([&] { summarize_encrypted(file, opener_, std::nullopt); }),
                         "does not authenticate"));
    DeepReport damaged = deep_verify(file, std::nullopt, opener_);
    ASSERT_FALSE(damaged.ok);
    EXPECT_TRUE(contains(damaged.problems.front(), "does not authenticate"))
        << damaged.problems.front();
}

}  // namespace
}  // namespace pgward
