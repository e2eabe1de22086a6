// Issue 21: backups encrypted with age. `pgward keygen` writes an identity in
// age-keygen's own format; backups written to its public key leave no
// plaintext (dump, globals, manifest's tables), open with the stock `age`,
// and verify, restore and drill decrypt them as they read.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "util/process.hpp"
#include "util/sha256.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;

// A tool's exit code and stdout.
std::pair<int, std::string> run_tool(const std::vector<std::string>& argv) {
    Child child = Child::spawn(Command{argv, {}, {}});
    std::string out;
    PumpHandlers handlers;
    handlers.on_stdout = [&](const char* data, size_t size) { out.append(data, size); };
    ExitStatus status = pump(child, handlers);
    return {status.code, out};
}

class KeygenTest : public ScratchDirTest {
  protected:
    KeygenTest() : ScratchDirTest("keygen") {}
};

TEST_F(KeygenTest, TheIdentityIsAgesOwnFormatPrivateAndNeverOverwritten) {
    const fs::path key = dir_ / "backup-key.txt";
    RunResult r = run_pgward({"keygen", "-o", key.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string recipient = r.out.substr(0, r.out.find('\n'));
    EXPECT_EQ(recipient.rfind("age1", 0), 0U) << r.out;
    EXPECT_TRUE(contains(r.err, "Public key: " + recipient)) << r.err;
    struct stat st {};
    ASSERT_EQ(::stat(key.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600U);
    const std::string text = slurp(key);
    EXPECT_TRUE(contains(text, "# public key: " + recipient + "\nAGE-SECRET-KEY-1")) << text;

    // Never overwritten: exit 2, the file as it was.
    RunResult again = run_pgward({"keygen", "-o", key.string()});
    EXPECT_EQ(again.exit_code, 2);
    EXPECT_TRUE(contains(again.err, key.string() + " exists; pgward keygen never overwrites"))
        << again.err;
    EXPECT_EQ(slurp(key), text);

    // Without -o, the identity on stdout, nothing written.
    RunResult printed = run_pgward({"keygen"});
    EXPECT_EQ(printed.exit_code, 0);
    EXPECT_TRUE(contains(printed.out, "\nAGE-SECRET-KEY-1")) << printed.out;

    if (!fs::exists("/usr/bin/age-keygen")) {
        GTEST_SKIP() << "the age tool is not installed (apt-get install age): its reading of the "
                        "identity is not checked";
    }
    // The reference tool reads the file and derives the same public key.
    auto [code, derived] = run_tool({"/usr/bin/age-keygen", "-y", key.string()});
    EXPECT_EQ(code, 0);
    EXPECT_EQ(derived, recipient + "\n");
    write_text(dir_ / "plain", "a secret row\n");
    auto [enc, ignored] = run_tool({"/usr/bin/age", "-r", recipient, "-o",
                                    (dir_ / "sealed").string(), (dir_ / "plain").string()});
    ASSERT_EQ(enc, 0);
    auto [dec, opened] =
        run_tool({"/usr/bin/age", "-d", "-i", key.string(), (dir_ / "sealed").string()});
    EXPECT_EQ(dec, 0);
    EXPECT_EQ(opened, "a secret row\n");
}

bool have_age() {
    return fs::exists("/usr/bin/age") && fs::exists("/usr/bin/age-keygen");
}

// A database with rows whose names and values must never be readable in the
// backup directory, and backups of it to the key of `pgward keygen`.
class EncryptedBackupTest : public ScratchDirTest {
  protected:
    EncryptedBackupTest() : ScratchDirTest("encrypted") {}

    void SetUp() override {
        ScratchDirTest::SetUp();
        PgCluster& c = PgCluster::instance();
        c.create_database("vault");
        c.exec("vault",
               "CREATE TABLE customer_secrets(id serial PRIMARY KEY, card text); "
               "INSERT INTO customer_secrets(card) SELECT 'card-4111-' || g "
               "FROM generate_series(1, 500) g; "
               // Enough that the dump spans several 64 KiB chunks.
               "CREATE TABLE ledger AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS h "
               "FROM generate_series(1, 6000) g; "
               // An odd name and a large object: both private too.
               "CREATE SCHEMA \"Tenant \"\"Ö\"\"\"; "
               "CREATE TABLE \"Tenant \"\"Ö\"\"\".\"Payroll Ü\"(salary text); "
               "INSERT INTO \"Tenant \"\"Ö\"\"\".\"Payroll Ü\" VALUES ('salary-9931'), "
               "('salary-9932'); "
               "SELECT pg_catalog.lo_from_bytea(0, 'lo-secret-7731'::bytea);");
        key_ = dir_ / "keys" / "backup-key.txt";
        fs::create_directories(key_.parent_path());
        RunResult k = run_pgward({"keygen", "-o", key_.string()});
        ASSERT_EQ(k.exit_code, 0) << k.err;
        recipient_ = k.out.substr(0, k.out.find('\n'));
        backups_ = dir_ / "backups";
        fs::create_directories(backups_);
    }

    Env env(Env extra = {}) const {
        Env e = pg_env("vault", backups_);
        e.insert(e.end(), extra.begin(), extra.end());
        return e;
    }
    // One encrypted backup: the dump's path.
    fs::path backup(const std::string& recipient) {
        RunResult r = run_pgward({"backup", "--encrypt-to", recipient}, env());
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r.out.substr(0, r.out.find('\n'));
    }
    std::string rows(const std::string& db) const {
        return PgCluster::instance().query_value(db, "SELECT count(*) FROM customer_secrets");
    }
    std::string latest_dump() const {
        for (const std::string& name : list_dir(backups_)) {
            if (name.size() > 9 && name.substr(name.size() - 9) == ".dump.age") {
                return (backups_ / name).string();
            }
        }
        return "";
    }
    size_t leftovers() const {
        size_t n = 0;
        for (const std::string& name : list_dir(backups_)) {
            n += name.rfind(".pgward-decrypt-", 0) == 0;
        }
        return n;
    }

    fs::path key_;
    std::string recipient_;
    fs::path backups_;
};

TEST_F(EncryptedBackupTest, NothingThatNamesATableOrHoldsARowIsLeftInPlaintext) {
    const fs::path dump = backup(recipient_);
    const std::string stem = dump.filename().string().substr(
        0, dump.filename().string().size() - std::string(".dump.age").size());
    EXPECT_EQ(dump.extension(), ".age");
    std::vector<std::string> names = list_dir(backups_);
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{".pgward-vault.lock", stem + ".dump.age",
                                               stem + ".globals.sql.age", stem + ".json"}));
    for (const std::string& name : names) {
        const std::string bytes = slurp(backups_ / name);
        EXPECT_FALSE(contains(bytes, "customer_secrets")) << name;
        EXPECT_FALSE(contains(bytes, "card-4111-")) << name;
        EXPECT_FALSE(contains(bytes, "CREATE ROLE")) << name;
        for (const char* secret : {"Payroll", "salary-99", "lo-secret-7731"}) {
            EXPECT_FALSE(contains(bytes, secret)) << name << ": " << secret;
        }
    }
    const nlohmann::json manifest = nlohmann::json::parse(slurp(backups_ / (stem + ".json")));
    EXPECT_FALSE(manifest.contains("tables"));
    EXPECT_FALSE(manifest.contains("schema_version"));
    EXPECT_EQ(manifest["file"], stem + ".dump.age");
    EXPECT_EQ(manifest["sha256"], sha256_file_hex(dump));
    EXPECT_EQ(manifest["size_bytes"], fs::file_size(dump));
    const std::string fingerprint =
        recipient_.substr(0, 12) + "…" + recipient_.substr(recipient_.size() - 6);
    EXPECT_EQ(manifest["encryption"]["recipients"], nlohmann::json::array({fingerprint}));
    EXPECT_EQ(manifest["encryption"]["format"], "age-encryption.org/v1");

    // list says which key each backup needs.
    RunResult list = run_pgward({"list"}, env());
    EXPECT_EQ(list.exit_code, 0) << list.err;
    EXPECT_TRUE(contains(list.out, stem + ".dump.age")) << list.out;
    EXPECT_TRUE(contains(list.out, "encrypted to " + fingerprint)) << list.out;
    RunResult json_list = run_pgward({"list", "--json"}, env());
    EXPECT_EQ(nlohmann::json::parse(json_list.out)[0]["encrypted_to"],
              nlohmann::json::array({fingerprint}));

    if (!have_age()) {
        GTEST_SKIP() << "the age tool is not installed (apt-get install age): the stock tool's "
                        "reading is not checked";
    }
    // The stock tool opens the dump and the globals.
    auto [code, listed] = run_tool(
        {"/bin/sh", "-c", "/usr/bin/age -d -i \"$1\" \"$2\" | \"$3\" --list", "sh", key_.string(),
         dump.string(), (PgCluster::instance().client_bin_dir() / "pg_restore").string()});
    EXPECT_EQ(code, 0);
    EXPECT_TRUE(contains(listed, "TABLE DATA public customer_secrets")) << listed;
    auto [globals_code, globals] = run_tool({"/usr/bin/age", "-d", "-i", key_.string(),
                                             (backups_ / (stem + ".globals.sql.age")).string()});
    EXPECT_EQ(globals_code, 0);
    EXPECT_TRUE(contains(globals, "CREATE ROLE")) << globals;
}

TEST_F(EncryptedBackupTest, TheRunbooksRestoreWithoutPgwardAgeThenPgRestore) {
    if (!have_age()) {
        GTEST_SKIP() << "the age tool is not installed (apt-get install age)";
    }
    const fs::path dump = backup(recipient_);
    PgCluster& c = PgCluster::instance();
    c.exec("vault", "DELETE FROM customer_secrets WHERE id > 7");
    // docs/runbook.md, "An encrypted backup without pgward", as an operator
    // types it: the identity's file, the dump, pg_restore --clean.
    Command command{
        {"/bin/sh", "-c",
         "/usr/bin/age -d -i \"$1\" \"$2\" | \"$3\" -h 127.0.0.1 -p \"$4\" -U \"$5\" "
         "-d vault --clean --if-exists",
         "sh", key_.string(), dump.string(), (c.client_bin_dir() / "pg_restore").string(),
         std::to_string(c.port()), c.superuser()},
        {{"PGPASSWORD", c.password()}},
        {}};
    Child child = Child::spawn(command);
    std::string err;
    PumpHandlers handlers;
    handlers.on_stderr_line = [&](std::string_view line) { err += std::string(line) + "\n"; };
    ExitStatus status = pump(child, handlers);
    EXPECT_TRUE(status.ok()) << err;
    EXPECT_EQ(rows("vault"), "500");
}

TEST_F(EncryptedBackupTest, VerifyChecksTheHashWithoutTheKeyAndEveryRowWithIt) {
    const fs::path dump = backup(recipient_);
    RunResult shallow = run_pgward({"verify", "latest"}, env());
    EXPECT_EQ(shallow.exit_code, 0) << shallow.err;
    EXPECT_TRUE(contains(shallow.out, "age header intact")) << shallow.out;

    RunResult no_key = run_pgward({"verify", "latest", "--deep"}, env());
    EXPECT_EQ(no_key.exit_code, 1);
    EXPECT_TRUE(contains(no_key.out, "is encrypted to " + recipient_.substr(0, 12))) << no_key.out;
    EXPECT_TRUE(contains(no_key.out, "no identity was given")) << no_key.out;

    RunResult deep = run_pgward({"verify", "latest", "--deep", "--identity", key_.string()}, env());
    EXPECT_EQ(deep.exit_code, 0) << deep.err;
    EXPECT_TRUE(contains(deep.out, "6502 rows, 1 large objects")) << deep.out;
    EXPECT_TRUE(contains(deep.out, "every table's rows and fp1 equal the manifest")) << deep.out;
    RunResult by_env =
        run_pgward({"verify", "latest"}, env({{"PGWARD_AGE_IDENTITY_FILE", key_.string()}}));
    EXPECT_EQ(by_env.exit_code, 0) << by_env.err;
    EXPECT_TRUE(contains(by_env.out, "pg_restore --list reads it")) << by_env.out;

    // Another key: one line naming the key the file is for.
    const fs::path other = dir_ / "keys" / "other.txt";
    ASSERT_EQ(run_pgward({"keygen", "-o", other.string()}).exit_code, 0);
    RunResult wrong = run_pgward({"verify", "latest", "--identity", other.string()}, env());
    EXPECT_EQ(wrong.exit_code, 1);
    EXPECT_TRUE(contains(wrong.out, "is encrypted to " + recipient_.substr(0, 12))) << wrong.out;
    EXPECT_TRUE(contains(wrong.out, "the keys in " + other.string() + " do not open it"))
        << wrong.out;

    // A changed byte: the hash says so without a key; the key finds its chunk.
    std::string bytes = slurp(dump);
    const size_t at = bytes.size() / 2;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x20);
    write_text(dump, bytes);
    RunResult changed = run_pgward({"verify", "latest"}, env());
    EXPECT_EQ(changed.exit_code, 1);
    EXPECT_TRUE(contains(changed.out, "sha256")) << changed.out;
    RunResult found =
        run_pgward({"verify", "latest", "--deep", "--identity", key_.string()}, env());
    EXPECT_EQ(found.exit_code, 1);
    EXPECT_TRUE(contains(found.out, "does not authenticate: the file was changed")) << found.out;

    EXPECT_TRUE(contains(found.out, "(bytes ")) << found.out;

    // Cut short where a chunk ends: only age's last-chunk flag tells.
    bytes[at] = static_cast<char>(bytes[at] ^ 0x20);
    const size_t header = bytes.find('\n', bytes.find("\n---") + 1) + 1 + 16;
    ASSERT_GT(bytes.size(), header + 65552) << "the test needs a dump of two chunks or more";
    write_text(dump, bytes.substr(0, header + 65552));
    RunResult cut = run_pgward({"verify", "latest", "--deep", "--identity", key_.string()}, env());
    EXPECT_EQ(cut.exit_code, 1);
    EXPECT_TRUE(contains(cut.out, "age: the file ends after chunk 0 without its last chunk"))
        << cut.out;
}

TEST_F(EncryptedBackupTest, RestoreDecryptsAsItStreamsAndRefusesKeysItIsNotFor) {
    backup(recipient_);
    PgCluster& c = PgCluster::instance();
    c.exec("vault", "DELETE FROM customer_secrets WHERE id > 7");
    const std::vector<std::string> restore = {"restore",     "latest", "--clean",
                                              "--if-exists", "--yes",  "--no-safety-backup"};

    RunResult no_key = run_pgward(restore, env());
    EXPECT_EQ(no_key.exit_code, 1);
    EXPECT_TRUE(contains(no_key.err, "is encrypted to " + recipient_.substr(0, 12))) << no_key.err;
    EXPECT_TRUE(contains(no_key.err, "PGWARD_AGE_IDENTITY_FILE")) << no_key.err;
    const fs::path other = dir_ / "keys" / "other.txt";
    ASSERT_EQ(run_pgward({"keygen", "-o", other.string()}).exit_code, 0);
    std::vector<std::string> wrong_key = restore;
    wrong_key.insert(wrong_key.end(), {"--identity", other.string()});
    RunResult wrong = run_pgward(wrong_key, env());
    EXPECT_EQ(wrong.exit_code, 1);
    EXPECT_TRUE(contains(wrong.err, "do not open it")) << wrong.err;
    EXPECT_FALSE(contains(wrong.err, "restore begin")) << wrong.err;
    EXPECT_EQ(rows("vault"), "7") << "refused before anything was restored";

    // Through a pipe: nothing decrypted on disk.
    std::vector<std::string> piped = restore;
    piped.insert(piped.end(), {"--identity", key_.string()});
    RunResult r = run_pgward(piped, env());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(rows("vault"), "500");
    EXPECT_EQ(leftovers(), 0U);

    // A file changed after its first chunk, with no manifest to catch it
    // first: the pipe stops at the damaged chunk, and the restore fails
    // naming it before pg_restore's own complaint.
    {
        std::string bytes = slurp(fs::path(latest_dump()));
        bytes[bytes.size() - 100] = static_cast<char>(bytes[bytes.size() - 100] ^ 0x10);
        const fs::path loose = dir_ / "loose.dump.age";
        write_text(loose, bytes);
        c.drop_database("vault_cut");
        std::vector<std::string> cut = {"restore",  loose.string(), "--dbname",   "vault_cut",
                                        "--create", "--identity",   key_.string()};
        RunResult damaged = run_pgward(cut, env());
        EXPECT_EQ(damaged.exit_code, 1);
        EXPECT_TRUE(contains(damaged.err, "does not authenticate")) << damaged.err;
        EXPECT_EQ(leftovers(), 0U);
        c.drop_database("vault_cut");
    }

    // --jobs needs a seekable file: a private copy, removed afterwards; the
    // safety dump of what it replaces is encrypted like the backups.
    c.exec("vault", "DELETE FROM customer_secrets WHERE id > 9");
    RunResult jobs = run_pgward({"restore", "latest", "--clean", "--if-exists", "--yes", "--jobs",
                                 "2", "--identity", key_.string(), "--json"},
                                env({{"POSTGRES_BACKUP_ENCRYPT_RECIPIENTS", recipient_}}));
    ASSERT_EQ(jobs.exit_code, 0) << jobs.err;
    EXPECT_TRUE(contains(jobs.err, "decrypting a copy for pg_restore --jobs")) << jobs.err;
    EXPECT_EQ(rows("vault"), "500");
    EXPECT_EQ(leftovers(), 0U);
    const nlohmann::json result = nlohmann::json::parse(jobs.out);
    const std::string safety = result["safety_backup"].get<std::string>();
    EXPECT_TRUE(contains(safety, ".pre-restore.dump.age")) << safety;
    EXPECT_FALSE(contains(slurp(safety), "card-4111-"));
}

TEST_F(EncryptedBackupTest, ASandboxDrillRestoresAnEncryptedBackup) {
    backup(recipient_);
    const fs::path reports = dir_ / "reports";
    RunResult no_key = run_pgward(
        {"drill", "--backup", "latest", "--sandbox", "--report-dir", reports.string()}, env());
    EXPECT_EQ(no_key.exit_code, 1);
    EXPECT_TRUE(contains(no_key.err, "no identity was given")) << no_key.err;

    RunResult drill = run_pgward({"drill", "--backup", "latest", "--sandbox", "--report-dir",
                                  reports.string(), "--identity", key_.string()},
                                 env());
    ASSERT_EQ(drill.exit_code, 0) << drill.err;
    const nlohmann::json report =
        nlohmann::json::parse(slurp(drill.out.substr(0, drill.out.find('\n'))));
    EXPECT_EQ(report["restore_success"], true);
    bool fingerprints_checked = false;
    for (const auto& check : report["checks"]) {
        if (check["name"] == "table_fingerprints_match") {
            fingerprints_checked = check["passed"].get<bool>();
        }
    }
    EXPECT_TRUE(fingerprints_checked) << report.dump(2);
    EXPECT_EQ(leftovers(), 0U);
}

TEST_F(EncryptedBackupTest, KeysRotateAndAPassphraseWorksToo) {
    const fs::path first = backup(recipient_);
    const fs::path second_key = dir_ / "keys" / "second.txt";
    RunResult k = run_pgward({"keygen", "-o", second_key.string()});
    ASSERT_EQ(k.exit_code, 0);
    const std::string second = k.out.substr(0, k.out.find('\n'));
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    const fs::path newer = backup(second);
    RunResult list = run_pgward({"list"}, env());
    EXPECT_TRUE(contains(list.out, "encrypted to " + second.substr(0, 12))) << list.out;
    EXPECT_TRUE(contains(list.out, "encrypted to " + recipient_.substr(0, 12))) << list.out;
    // The old key still opens the old backup, not the new one.
    EXPECT_EQ(run_pgward({"verify", first.string(), "--deep", "--identity", key_.string()}, env())
                  .exit_code,
              0);
    EXPECT_EQ(run_pgward({"verify", newer.string(), "--deep", "--identity", key_.string()}, env())
                  .exit_code,
              1);
    // One identity file holding both keys opens all.
    write_text(dir_ / "keys" / "both.txt", slurp(key_) + slurp(second_key));
    RunResult all = run_pgward(
        {"verify", "all", "--deep", "--identity", (dir_ / "keys" / "both.txt").string()}, env());
    EXPECT_EQ(all.exit_code, 0) << all.out << all.err;

    // A passphrase (scrypt) instead of keys.
    write_text(dir_ / "keys" / "pass", "correct horse battery staple\n");
    write_text(dir_ / "keys" / "wrong", "not it\n");
    RunResult p = run_pgward(
        {"backup", "--encrypt-passphrase-file", (dir_ / "keys" / "pass").string()}, env());
    ASSERT_EQ(p.exit_code, 0) << p.err;
    const std::string dump = p.out.substr(0, p.out.find('\n'));
    RunResult opened = run_pgward(
        {"verify", dump, "--deep", "--passphrase-file", (dir_ / "keys" / "pass").string()}, env());
    EXPECT_EQ(opened.exit_code, 0) << opened.out << opened.err;
    RunResult refused = run_pgward(
        {"verify", dump, "--deep", "--passphrase-file", (dir_ / "keys" / "wrong").string()}, env());
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_TRUE(contains(refused.out, "is encrypted to passphrase")) << refused.out;
}

TEST_F(EncryptedBackupTest, RetentionAndPruneKeepEncryptedBackupsWhole) {
    const fs::path first = backup(recipient_);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    RunResult second = run_pgward(
        {"backup", "--encrypt-to", recipient_, "--encrypt-to", recipient_, "--retention", "1"},
        env());
    ASSERT_EQ(second.exit_code, 0) << second.err;
    const std::string newest = fs::path(second.out.substr(0, second.out.find('\n'))).filename();
    const std::string stem = newest.substr(0, newest.size() - std::string(".dump.age").size());
    std::vector<std::string> names = list_dir(backups_);
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{".pgward-vault.lock", newest,
                                               stem + ".globals.sql.age", stem + ".json"}))
        << "the older backup went with its globals and manifest";
    EXPECT_FALSE(fs::exists(first));
    RunResult prune = run_pgward({"prune", "--keep", "1", "--dry-run"}, env());
    EXPECT_EQ(prune.exit_code, 0) << prune.err;
    EXPECT_TRUE(contains(prune.err, newest)) << prune.err;
}

TEST_F(EncryptedBackupTest, BadEncryptionSettingsAreUsageErrorsBeforeAnyDump) {
    RunResult bad = run_pgward({"backup", "--encrypt-to", "age1notakey"}, env());
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_TRUE(contains(bad.err, "--encrypt-to")) << bad.err;
    write_text(dir_ / "keys" / "pass", "secret\n");
    RunResult both = run_pgward({"backup", "--encrypt-to", recipient_, "--encrypt-passphrase-file",
                                 (dir_ / "keys" / "pass").string()},
                                env());
    EXPECT_EQ(both.exit_code, 2);
    EXPECT_TRUE(contains(both.err, "not both")) << both.err;
    write_text(dir_ / "keys" / "empty", "\n");
    RunResult empty = run_pgward(
        {"backup", "--encrypt-passphrase-file", (dir_ / "keys" / "empty").string()}, env());
    EXPECT_EQ(empty.exit_code, 2);
    EXPECT_TRUE(contains(empty.err, "is empty")) << empty.err;
    // Comma-separated keys in the variable: both can open the backup.
    const fs::path second_key = dir_ / "keys" / "second.txt";
    RunResult k = run_pgward({"keygen", "-o", second_key.string()});
    const std::string second = k.out.substr(0, k.out.find('\n'));
    RunResult two = run_pgward(
        {"backup"}, env({{"POSTGRES_BACKUP_ENCRYPT_RECIPIENTS", recipient_ + ", " + second}}));
    ASSERT_EQ(two.exit_code, 0) << two.err;
    const std::string dump = two.out.substr(0, two.out.find('\n'));
    for (const fs::path& key : {key_, second_key}) {
        EXPECT_EQ(
            run_pgward({"verify", dump, "--deep", "--identity", key.string()}, env()).exit_code, 0);
    }
    EXPECT_EQ(list_dir(backups_).size(), 4U) << "only the one good backup was written";
}

}  // namespace
}  // namespace pgward::test
