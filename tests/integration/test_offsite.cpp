// Issue 20, the offsite copy, against a real S3 server (Ceph RGW, started by
// tests/harness/s3_server.cpp) and checked with an independent client
// (boto3, tests/s3/check_bucket.py): each backup copied, proven there and
// listed; catch-up; retention in the bucket; verify, restore and a sandbox
// drill from the bucket alone; and the failures a wrong key, a missing
// bucket, a skewed clock and a killed upload cause.
#include <gtest/gtest.h>

#include <csignal>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "harness/pg_cluster.hpp"
#include "harness/receiver.hpp"
#include "harness/runner.hpp"
#include "harness/s3_server.hpp"
#include "harness/scratch.hpp"
#include "util/sha256.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

class OffsiteTest : public ScratchDirTest {
  protected:
    OffsiteTest() : ScratchDirTest("offsite") {}

    void SetUp() override {
        ScratchDirTest::SetUp();
        s3_ = S3Server::instance();
        if (s3_ == nullptr) {
            GTEST_SKIP() << S3Server::skip_reason();
        }
        // One bucket per test: nothing one test leaves is seen by another.
        const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
        std::string name = "t-" + std::to_string(++buckets_made_) + "-" + info->name();
        for (char& c : name) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        bucket_ = s3_->make_bucket(name.substr(0, 50));
        PgCluster& c = PgCluster::instance();
        c.create_database("offsite");
        c.exec("offsite",
               "CREATE TABLE orders(id serial PRIMARY KEY, item text); "
               "INSERT INTO orders(item) SELECT 'item ' || g FROM generate_series(1, 500) g;");
    }

    std::string remote() const { return "s3://" + bucket_ + "/prod/pg"; }
    // pgward's environment: the cluster, the backup directory, the S3 user.
    Env env(Env extra = {}) const {
        Env e = pg_env("offsite", dir_);
        for (auto& kv : s3_->credentials_env()) {
            e.push_back(kv);
        }
        e.emplace_back("AWS_ENDPOINT_URL", s3_->endpoint());
        e.emplace_back("POSTGRES_BACKUP_REMOTE", remote());
        e.insert(e.end(), extra.begin(), extra.end());
        return e;
    }
    std::vector<std::string> keys() const {
        std::vector<std::string> out;
        for (const auto& [key, size] : s3_->list(bucket_, "prod/pg/")) {
            out.push_back(key.substr(std::string("prod/pg/").size()));
        }
        return out;
    }
    std::string backup(const Env& e) {
        RunResult r = run_pgward({"backup"}, e);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return fs::path(r.out.substr(0, r.out.find('\n'))).filename().string();
    }
    static std::string stem(const std::string& dump) { return dump.substr(0, dump.size() - 5); }

    S3Server* s3_ = nullptr;
    std::string bucket_;
    static inline int buckets_made_ = 0;
};

TEST_F(OffsiteTest, EachBackupIsCopiedProvenThereAndListed) {
    const std::string dump = backup(env());
    const std::string s = stem(dump);
    EXPECT_EQ(keys(), (std::vector<std::string>{s + ".dump", s + ".globals.sql", s + ".json"}));
    // What the independent client reads is the local file, byte for byte.
    json manifest = json::parse(slurp(dir_ / (s + ".json")));
    EXPECT_EQ(s3_->sha256(bucket_, "prod/pg/" + dump), manifest["sha256"]);
    EXPECT_EQ(s3_->sha256(bucket_, "prod/pg/" + dump), sha256_file_hex(dir_ / dump));
    s3_->get(bucket_, "prod/pg/" + s + ".json", dir_ / "remote-manifest");
    EXPECT_EQ(slurp(dir_ / "remote-manifest"), slurp(dir_ / (s + ".json")));
    EXPECT_TRUE(s3_->uploads(bucket_, "").empty());

    RunResult list = run_pgward({"list", "--remote", "--json"}, env());
    ASSERT_EQ(list.exit_code, 0) << list.err;
    json listed = json::parse(list.out);
    ASSERT_EQ(listed.size(), 1U) << list.out;
    EXPECT_EQ(listed[0]["file"], dump);
    EXPECT_EQ(listed[0]["state"], "proven");
    EXPECT_EQ(listed[0]["copies"], "local+remote");
    EXPECT_EQ(listed[0]["url"], remote() + "/" + dump);

    // A backup only here is listed as such.
    fs::remove(dir_ / dump);
    fs::remove(dir_ / (s + ".json"));
    fs::remove(dir_ / (s + ".globals.sql"));
    RunResult plain = run_pgward({"list", "--remote"}, env());
    EXPECT_EQ(plain.exit_code, 0) << plain.err;
    EXPECT_TRUE(contains(plain.out, "proven      remote only")) << plain.out;
}

TEST_F(OffsiteTest, ALargeDumpGoesUpInEqualPartsAndNoUploadIsLeft) {
    PgCluster::instance().exec(
        "offsite",
        "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS v "
        "FROM generate_series(1, 250000) g");
    const std::string dump = backup(env(
        {{"POSTGRES_BACKUP_COMPRESSION", "none"}, {"POSTGRES_BACKUP_REMOTE_PART_SIZE_MIB", "5"}}));
    const uintmax_t size = fs::file_size(dir_ / dump);
    ASSERT_GT(size, 15U * 1024 * 1024) << "the dump must need several parts";
    EXPECT_EQ(s3_->sha256(bucket_, "prod/pg/" + dump), sha256_file_hex(dir_ / dump));
    EXPECT_TRUE(s3_->uploads(bucket_, "").empty());
    RunResult verify = run_pgward({"verify", "--remote", "latest", "--deep"}, env());
    EXPECT_EQ(verify.exit_code, 0) << verify.err;
    EXPECT_TRUE(contains(verify.out, "every table's rows and fp1 equal the manifest"))
        << verify.out;
}

TEST_F(OffsiteTest, CatchUpCopiesWhatTheBucketLacksNewestFirstAndRetentionKeepsN) {
    Env local_only = pg_env("offsite", dir_);
    const std::string first = backup(local_only);
    std::this_thread::sleep_for(1100ms);
    const std::string second = backup(local_only);
    std::this_thread::sleep_for(1100ms);
    EXPECT_TRUE(keys().empty());
    RunResult r = run_pgward({"backup"}, env());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string third = fs::path(r.out.substr(0, r.out.find('\n'))).filename().string();
    // Newest first: the outage's backups after the new one.
    size_t at_third = r.err.find("copying a backup offsite\" file=" + third);
    size_t at_second = r.err.find("copying a backup offsite\" file=" + second);
    size_t at_first = r.err.find("copying a backup offsite\" file=" + first);
    ASSERT_NE(at_first, std::string::npos) << r.err;
    EXPECT_LT(at_third, at_second);
    EXPECT_LT(at_second, at_first);
    EXPECT_EQ(keys().size(), 9U);

    // Retention in the bucket: the newest two, each with its manifest.
    std::this_thread::sleep_for(1100ms);
    RunResult kept = run_pgward({"backup", "--remote-retention", "2"}, env());
    ASSERT_EQ(kept.exit_code, 0) << kept.err;
    const std::string fourth =
        fs::path(kept.out.substr(0, kept.out.find('\n'))).filename().string();
    std::vector<std::string> left = keys();
    EXPECT_EQ(left,
              (std::vector<std::string>{stem(third) + ".dump", stem(third) + ".globals.sql",
                                        stem(third) + ".json", stem(fourth) + ".dump",
                                        stem(fourth) + ".globals.sql", stem(fourth) + ".json"}));
    // Local backups are untouched by the bucket's retention.
    for (const std::string& dump : {first, second, third, fourth}) {
        EXPECT_TRUE(fs::exists(dir_ / dump)) << dump;
    }
}

TEST_F(OffsiteTest, PushCopiesWhatTheBucketLacksAndNothingTwice) {
    const std::string dump = backup(pg_env("offsite", dir_));
    RunResult first = run_pgward({"push"}, env());
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_EQ(first.out, dump + "\n");
    EXPECT_EQ(keys().size(), 3U);
    RunResult again = run_pgward({"push"}, env());
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out, "");
    RunResult nothing = run_pgward({"push"}, env({{"POSTGRES_BACKUP_REMOTE", ""}}));
    EXPECT_EQ(nothing.exit_code, 2);
    EXPECT_TRUE(contains(nothing.err, "push needs a remote store")) << nothing.err;
}

TEST_F(OffsiteTest, VerifyRemoteFindsAChangedObjectAndDeepReadsEveryRow) {
    const std::string dump = backup(env());
    RunResult good = run_pgward({"verify", "--remote", "all", "--deep"}, env());
    EXPECT_EQ(good.exit_code, 0) << good.err;
    EXPECT_TRUE(contains(good.out, "ok   " + remote() + "/" + dump)) << good.out;
    EXPECT_TRUE(contains(good.out, "500 rows")) << good.out;

    // The object in the bucket replaced by a copy with one byte changed.
    std::string bytes = slurp(dir_ / dump);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
    write_text(dir_ / "changed.dump", bytes);
    s3_->put(bucket_, "prod/pg/" + dump, dir_ / "changed.dump");
    RunResult bad = run_pgward({"verify", "--remote", "latest"}, env());
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_TRUE(contains(bad.out, "FAIL " + remote() + "/" + dump + " (SHA-256 ")) << bad.out;
    EXPECT_TRUE(contains(bad.err, "1 of 1 remote backup(s) failed verification")) << bad.err;

    // A restore from it refuses before anything is restored.
    RunResult restore =
        run_pgward({"restore", remote() + "/" + dump, "--clean", "--if-exists", "--yes"}, env());
    EXPECT_EQ(restore.exit_code, 1);
    EXPECT_TRUE(contains(restore.err, "is not the backup its manifest describes")) << restore.err;
    EXPECT_FALSE(contains(restore.err, "restore begin")) << restore.err;
    for (const std::string& name : list_dir(dir_)) {
        EXPECT_NE(name.rfind(".pgward-fetch-", 0), 0U) << name;
    }
}

TEST_F(OffsiteTest, AnEncryptedBackupIsCopiedProvenInTheBucketAndRestoredFromIt) {
    const fs::path key = shared_subdir("keys") / "key.txt";
    RunResult k = run_pgward({"keygen", "-o", key.string()});
    ASSERT_EQ(k.exit_code, 0) << k.err;
    const std::string recipient = k.out.substr(0, k.out.find('\n'));
    const std::string dump = backup(env({{"POSTGRES_BACKUP_ENCRYPT_RECIPIENTS", recipient}}));
    ASSERT_EQ(dump.substr(dump.size() - 9), ".dump.age");
    const std::string stem = dump.substr(0, dump.size() - 9);
    std::vector<std::string> stored = keys();
    std::sort(stored.begin(), stored.end());
    EXPECT_EQ(stored, (std::vector<std::string>{dump, stem + ".globals.sql.age", stem + ".json"}));
    // The bucket holds what the host holds: the same ciphertext.
    EXPECT_EQ(s3_->sha256(bucket_, "prod/pg/" + dump), sha256_file_hex(dir_ / dump));

    // Proven there without the key (its SHA-256), and read through with it.
    RunResult shallow = run_pgward({"verify", "--remote", "latest"}, env());
    EXPECT_EQ(shallow.exit_code, 0) << shallow.out << shallow.err;
    RunResult no_key = run_pgward({"verify", "--remote", "latest", "--deep"}, env());
    EXPECT_EQ(no_key.exit_code, 1);
    EXPECT_TRUE(contains(no_key.out, "is encrypted to " + recipient.substr(0, 12))) << no_key.out;
    RunResult deep =
        run_pgward({"verify", "--remote", "latest", "--deep", "--identity", key.string()}, env());
    EXPECT_EQ(deep.exit_code, 0) << deep.out << deep.err;
    EXPECT_TRUE(contains(deep.out, "500 rows")) << deep.out;

    // The host is gone: restored from the bucket with the identity alone.
    PgCluster& c = PgCluster::instance();
    c.exec("offsite", "DELETE FROM orders WHERE id > 10");
    const fs::path empty = shared_subdir("new-host");
    RunResult r = run_pgward({"restore", "latest", "--remote", "--clean", "--if-exists", "--yes",
                              "--no-safety-backup", "--identity", key.string()},
                             env({{"POSTGRES_BACKUP_DIR", empty.string()}}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(c.query_value("offsite", "SELECT count(*) FROM orders"), "500");
    EXPECT_TRUE(list_dir(empty).empty());
}

TEST_F(OffsiteTest, RestoreAndASandboxDrillFromTheBucketAloneWithAnEmptyDirectory) {
    backup(env());
    PgCluster& c = PgCluster::instance();
    c.exec("offsite", "DELETE FROM orders WHERE id > 10");
    // The host is gone: a new, empty backup directory.
    const fs::path empty = shared_subdir("new-host");
    Env e = env({{"POSTGRES_BACKUP_DIR", empty.string()}});
    RunResult r = run_pgward(
        {"restore", "latest", "--remote", "--clean", "--if-exists", "--yes", "--no-safety-backup"},
        e);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "fetched and checked")) << r.err;
    EXPECT_EQ(c.query_value("offsite", "SELECT count(*) FROM orders"), "500");
    EXPECT_TRUE(list_dir(empty).empty());

    const fs::path reports = shared_subdir("reports");
    RunResult drill =
        run_pgward({"drill", "--remote", "--sandbox", "--report-dir", reports.string()}, e);
    ASSERT_EQ(drill.exit_code, 0) << drill.err;
    json report = json::parse(slurp(drill.out.substr(0, drill.out.find('\n'))));
    EXPECT_EQ(report["restore_success"], true);
    EXPECT_TRUE(list_dir(empty).empty());
}

TEST_F(OffsiteTest, AWrongSecretNamesTheKeyIdNeverTheSecretAndKeepsTheLocalBackup) {
    const std::string secret = "wrong" + s3_->secret_access_key();
    RunResult r = run_pgward({"backup"}, env({{"AWS_SECRET_ACCESS_KEY", secret}}));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "SignatureDoesNotMatch")) << r.err;
    EXPECT_TRUE(contains(r.err, "for access key id " + s3_->access_key_id())) << r.err;
    EXPECT_TRUE(contains(r.err, "the backup is kept in " + dir_.string())) << r.err;
    EXPECT_FALSE(contains(r.err + r.out, secret));
    const std::string dump = fs::path(r.out.substr(0, r.out.find('\n'))).filename().string();
    EXPECT_TRUE(fs::exists(dir_ / dump));
    EXPECT_TRUE(keys().empty());
    // Once the key is right, the next run copies it.
    backup(env());
    EXPECT_EQ(keys().size(), 6U);
}

TEST_F(OffsiteTest, AMissingBucketAndASkewedClockAreNamed) {
    RunResult missing =
        run_pgward({"backup"}, env({{"POSTGRES_BACKUP_REMOTE", "s3://no-such-bucket-here/x"}}));
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_TRUE(contains(missing.err, "NoSuchBucket")) << missing.err;
    EXPECT_TRUE(contains(missing.err, "create the bucket \"no-such-bucket-here\"")) << missing.err;

    const fs::path offset = dir_ / "clock-offset";
    write_text(offset, "1200");
    const char* asan = std::getenv("ASAN_OPTIONS");
    RunResult skewed = run_pgward(
        {"list", "--remote"},
        env({{"LD_PRELOAD", PGWARD_FAKECLOCK_LIB},
             {"PGWARD_FAKECLOCK_FILE", offset.string()},
             {"ASAN_OPTIONS", std::string(asan ? asan : "") + ":verify_asan_link_order=0"}}));
    EXPECT_EQ(skewed.exit_code, 1);
    EXPECT_TRUE(contains(skewed.err, "RequestTimeTooSkewed")) << skewed.err;
    EXPECT_TRUE(contains(skewed.err, "clock is off")) << skewed.err;
}

TEST_F(OffsiteTest, AnUploadLeftByAKilledRunIsAbortedByTheNextOne) {
    PgCluster::instance().exec(
        "offsite",
        "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS v "
        "FROM generate_series(1, 250000) g");
    Env slow = env({{"POSTGRES_BACKUP_COMPRESSION", "none"},
                    {"POSTGRES_BACKUP_REMOTE_PART_SIZE_MIB", "5"},
                    {"POSTGRES_BACKUP_REMOTE_BANDWIDTH_KIB", "2048"}});
    {
        BackgroundPgward run({"backup"}, slow);
        ASSERT_TRUE(eventually([&] { return !s3_->uploads(bucket_, "").empty(); }, 60s));
        ::kill(run.pid(), SIGKILL);
        ASSERT_TRUE(run.wait(30s));
    }
    EXPECT_EQ(s3_->uploads(bucket_, "").size(), 1U);
    EXPECT_TRUE(keys().empty()) << "nothing under a final key";
    RunResult next = run_pgward({"backup"}, env({{"POSTGRES_BACKUP_COMPRESSION", "none"}}));
    ASSERT_EQ(next.exit_code, 0) << next.err;
    EXPECT_TRUE(contains(next.err, "aborted a multipart upload a previous run left")) << next.err;
    EXPECT_TRUE(s3_->uploads(bucket_, "").empty());
    EXPECT_EQ(keys().size(), 6U);  // both backups, each proven
}

TEST_F(OffsiteTest, PruneRemotePrintsItsPlanAndSkipsWhatIsUnderObjectLock) {
    bucket_ = s3_->make_bucket(bucket_.substr(0, 40) + "-lock", true);
    const std::string first = backup(env({{"POSTGRES_BACKUP_REMOTE_LOCK_DAYS", "1"}}));
    std::this_thread::sleep_for(1100ms);
    const std::string second = backup(env());
    std::this_thread::sleep_for(1100ms);
    const std::string third = backup(env());
    ASSERT_EQ(keys().size(), 9U);

    RunResult dry = run_pgward({"prune", "--remote", "--keep", "1", "--dry-run"}, env());
    ASSERT_EQ(dry.exit_code, 0) << dry.err;
    EXPECT_TRUE(
        contains(dry.out, "keep   " + remote() + "/" + third + " (among the newest 1 proven)"))
        << dry.out;
    EXPECT_TRUE(
        contains(dry.out, "delete " + remote() + "/" + second + " (beyond the newest 1 proven)"))
        << dry.out;
    EXPECT_TRUE(contains(dry.out, "locked " + remote() + "/" + first +
                                      " (beyond the newest 1 proven; kept: under Object Lock "
                                      "until "))
        << dry.out;
    EXPECT_EQ(keys().size(), 9U) << "a dry run deletes nothing";

    RunResult real = run_pgward({"prune", "--remote", "--keep", "1"}, env());
    ASSERT_EQ(real.exit_code, 0) << real.err;
    EXPECT_EQ(keys(),
              (std::vector<std::string>{stem(first) + ".dump", stem(first) + ".globals.sql",
                                        stem(first) + ".json", stem(third) + ".dump",
                                        stem(third) + ".globals.sql", stem(third) + ".json"}));
    RunResult list = run_pgward({"list", "--remote", "--json"}, env());
    json listed = json::parse(list.out);
    ASSERT_EQ(listed.size(), 3U) << list.out;
    EXPECT_TRUE(listed[0]["locked_until"].is_null()) << list.out;
    EXPECT_TRUE(listed[1]["locked_until"].is_string()) << list.out;
    EXPECT_EQ(listed[2]["file"], second);
    EXPECT_EQ(listed[2]["copies"], "local only");

    // The next cycle does not upload the pruned one again: only what the
    // bucket's retention keeps is copied.
    std::this_thread::sleep_for(1100ms);
    RunResult next = run_pgward({"backup", "--remote-retention", "1"}, env());
    ASSERT_EQ(next.exit_code, 0) << next.err;
    EXPECT_FALSE(contains(next.err, "copying a backup offsite\" file=" + second)) << next.err;
}

// The service: a cycle whose upload failed keeps its local backup, is
// degraded (state, status, /metrics, healthcheck) and `run --once` exits 1;
// the next good cycle copies what was missed.
TEST_F(OffsiteTest, AFailedUploadKeepsTheLocalBackupAndDegradesTheCycle) {
    Receiver receiver;
    const Env alerts = {{"PGWARD_NOTIFY_URL", receiver.url("/hook")},
                        {"PGWARD_PING_URL", receiver.url("/ping")}};
    const std::string secret = "wrong" + s3_->secret_access_key();
    Env wrong = env(alerts);
    wrong.emplace_back("AWS_SECRET_ACCESS_KEY", secret);
    RunResult bad = run_pgward({"run", "--once"}, wrong);
    EXPECT_EQ(bad.exit_code, 1) << bad.err;
    EXPECT_TRUE(contains(bad.out + bad.err, "offsite copy failed; the cycle is degraded"))
        << bad.out << bad.err;
    EXPECT_FALSE(contains(bad.err + bad.out, secret));
    std::vector<std::string> dumps;
    for (const std::string& name : list_dir(dir_)) {
        if (name.size() > 5 && name.compare(name.size() - 5, 5, ".dump") == 0) {
            dumps.push_back(name);
        }
    }
    ASSERT_EQ(dumps.size(), 1U);
    EXPECT_TRUE(keys().empty());
    RunResult status = run_pgward({"status"}, env());
    EXPECT_TRUE(contains(status.out, "offsite:         " + remote() + "/")) << status.out;
    EXPECT_TRUE(contains(status.out, "offsite copies:  0 succeeded, 1 failed, 1 failed in a row"))
        << status.out;
    RunResult health = run_pgward({"healthcheck"}, env());
    EXPECT_EQ(health.exit_code, 1) << health.out;
    EXPECT_TRUE(contains(health.out, "offsite cop(y/ies)")) << health.out;
    EXPECT_TRUE(contains(health.out, "SignatureDoesNotMatch")) << health.out;
    // One alert of its own kind, and the cycle's one ping is a failure.
    std::optional<json> alert = receiver.first_event("offsite_failed");
    ASSERT_TRUE(alert.has_value());
    EXPECT_TRUE(contains((*alert)["reason"], "SignatureDoesNotMatch")) << alert->dump();
    EXPECT_EQ((*alert)["consecutive_failures"], 1);
    EXPECT_FALSE(contains(alert->dump(), secret));
    auto pings = [&] {
        std::vector<std::string> out;
        for (const Receiver::Request& r : receiver.requests()) {
            if (r.method == "GET") {
                out.push_back(r.path);
            }
        }
        return out;
    };
    EXPECT_EQ(pings(), std::vector<std::string>{"/ping/fail"});

    // The store is back: the next cycle copies both backups and is healthy.
    std::this_thread::sleep_for(1100ms);
    RunResult good = run_pgward({"run", "--once"}, env(alerts));
    EXPECT_EQ(good.exit_code, 0) << good.err;
    EXPECT_EQ(keys().size(), 6U);
    RunResult healthy = run_pgward({"healthcheck"}, env());
    EXPECT_EQ(healthy.exit_code, 0) << healthy.out;
    json state = json::parse(slurp(dir_ / ".pgward-offsite.state.json"));
    EXPECT_EQ(state["remote_consecutive_failures"], 0);
    EXPECT_EQ(state["remote_successes_total"], 1);
    EXPECT_EQ(state["remote_failures_total"], 1);
    EXPECT_EQ(state["remote_proof"], "read");
    EXPECT_TRUE(receiver.first_event("offsite_recovered").has_value());
    EXPECT_EQ(pings(), (std::vector<std::string>{"/ping/fail", "/ping"}));
}

TEST_F(OffsiteTest, RemoteSettingsAreCheckedBeforeTheDump) {
    Env no_key = env();
    std::erase_if(no_key, [](const auto& kv) { return kv.first == "AWS_SECRET_ACCESS_KEY"; });
    RunResult r = run_pgward({"backup"}, no_key);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_TRUE(contains(r.err, "POSTGRES_BACKUP_REMOTE is set but AWS_SECRET_ACCESS_KEY is not"))
        << r.err;
    RunResult url = run_pgward({"backup", "--remote", "gs://x/y"}, env());
    EXPECT_EQ(url.exit_code, 2);
    EXPECT_TRUE(contains(url.err, "invalid remote \"gs://x/y\" in --remote")) << url.err;
    RunResult verify =
        run_pgward({"verify", "--remote", "latest"}, env({{"POSTGRES_BACKUP_REMOTE", ""}}));
    EXPECT_EQ(verify.exit_code, 2);
    EXPECT_TRUE(contains(verify.err, "set POSTGRES_BACKUP_REMOTE or --remote-url")) << verify.err;
    EXPECT_TRUE(list_dir(dir_).empty()) << "nothing was dumped";
}

// POSTGRES_DRILL_FROM=remote: the service's scheduled drill is the host-loss
// rehearsal, the bucket's newest proven backup fetched and restored into a
// sandbox; the report names the object it came from and nothing fetched stays.
TEST_F(OffsiteTest, AScheduledDrillFromTheBucketRestoresItsNewestBackup) {
    BackgroundPgward service({"run"}, env({{"POSTGRES_DRILL_INTERVAL_SECONDS", "2"},
                                           {"POSTGRES_DRILL_FROM", "remote"},
                                           {"PGWARD_HEALTH_GRACE_SECONDS", "5"}}));
    const fs::path state_file = dir_ / ".pgward-offsite.state.json";
    ASSERT_TRUE(eventually(
        [&] {
            try {
                json state = json::parse(slurp(state_file));
                return state.value("drills_succeeded_total", 0) +
                           state.value("drills_failed_total", 0) >=
                       1;
            } catch (const std::exception&) {
                return false;
            }
        },
        90s));
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(30s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0) << r->err;
    json state = json::parse(slurp(state_file));
    ASSERT_EQ(state["last_drill_success"], true) << state.dump();
    json report = json::parse(slurp(state["last_drill_report"].get<std::string>()));
    EXPECT_EQ(report["restore_success"], true);
    EXPECT_EQ(report["mode"], "backup-sandbox");
    const std::string source = report["dump_source"];
    EXPECT_EQ(source.rfind(remote() + "/offsite_", 0), 0U) << source;
    EXPECT_TRUE(contains(r->out + r->err, "fetched and checked")) << r->out << r->err;
    for (const std::string& name : list_dir(dir_)) {
        EXPECT_NE(name.rfind(".pgward-fetch-", 0), 0U) << name;
    }

    RunResult local_only =
        run_pgward({"run", "--once"},
                   env({{"POSTGRES_DRILL_FROM", "remote"}, {"POSTGRES_BACKUP_REMOTE", ""}}));
    EXPECT_EQ(local_only.exit_code, 2);
    EXPECT_TRUE(
        contains(local_only.err, "POSTGRES_DRILL_FROM is remote but no remote store is set"))
        << local_only.err;
    RunResult bad = run_pgward({"run", "--once"}, env({{"POSTGRES_DRILL_FROM", "cloud"}}));
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_TRUE(contains(bad.err, "invalid value \"cloud\" for POSTGRES_DRILL_FROM")) << bad.err;
}

// A scheduled drill from the bucket whose fetch fails (the newest object no
// longer matches its manifest) is a failed drill, alerted, with nothing
// fetched left behind; never a skipped one.
TEST_F(OffsiteTest, AScheduledDrillWhoseFetchFailsIsAFailedDrill) {
    const std::string dump = backup(env());
    std::string bytes = slurp(dir_ / dump);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
    write_text(dir_ / "changed.bin", bytes);
    s3_->put(bucket_, "prod/pg/" + dump, dir_ / "changed.bin");
    fs::remove(dir_ / "changed.bin");
    Receiver receiver;
    BackgroundPgward service({"run"}, env({{"POSTGRES_DRILL_INTERVAL_SECONDS", "2"},
                                           {"POSTGRES_DRILL_FROM", "remote"},
                                           {"POSTGRES_BACKUP_ON_START", "false"},
                                           {"POSTGRES_BACKUP_INTERVAL_SECONDS", "86400"},
                                           {"PGWARD_NOTIFY_URL", receiver.url("/hook")}}));
    const fs::path state_file = dir_ / ".pgward-offsite.state.json";
    ASSERT_TRUE(eventually(
        [&] {
            try {
                return json::parse(slurp(state_file)).value("drills_failed_total", 0) >= 1;
            } catch (const std::exception&) {
                return false;
            }
        },
        90s));
    ::kill(service.pid(), SIGTERM);
    ASSERT_TRUE(service.wait(30s));
    json state = json::parse(slurp(state_file));
    EXPECT_EQ(state["last_drill_success"], false);
    const std::string failure = state["last_drill_failure"];
    EXPECT_TRUE(contains(failure, "fetching the newest remote backup: ")) << failure;
    EXPECT_TRUE(contains(failure, "is not the backup its manifest describes")) << failure;
    ASSERT_TRUE(eventually([&] { return receiver.first_event("drill_failed").has_value(); }, 15s));
    for (const std::string& name : list_dir(dir_)) {
        EXPECT_NE(name.rfind(".pgward-fetch-", 0), 0U) << name;
    }
}

}  // namespace
}  // namespace pgward::test
