// Issue 20's fault table: pgward's offsite copy through tests/s3/fault_proxy.py,
// a proxy between pgward and the real S3 server (Ceph RGW) that answers 500,
// 503 SlowDown or 429, resets a connection mid-request or mid-response,
// stalls past the request timeout, or flips a byte of an upload or of a
// download, at the Nth request. For every fault the copy ends in success
// after retries or in a named failure, and then, whatever happened: the local
// backups are whole; no object under a final key differs from the local file;
// no manifest in the bucket without its proven dump; every request with a
// body carried Content-MD5 and its real SHA-256 and no x-amz-checksum-*
// header; the parts of an upload were of equal size; and the next `push`
// leaves no multipart upload and the same newest backups at both ends.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <csignal>
#include <map>
#include <set>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/s3_server.hpp"
#include "harness/scratch.hpp"
#include "util/sha256.hpp"

extern char** environ;

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

// tests/s3/fault_proxy.py in front of `upstream`, its rules in control.json
// and its request log in log.jsonl under `dir`; stopped when destroyed.
class FaultProxy {
  public:
    FaultProxy(const std::string& upstream, const fs::path& dir) : dir_(dir) {
        const std::string script =
            (fs::path(PGWARD_SOURCE_DIR) / "tests/s3/fault_proxy.py").string();
        std::vector<std::string> args = {"python3",     script,
                                         "--upstream",  upstream,
                                         "--control",   (dir / "control.json").string(),
                                         "--log",       (dir / "log.jsonl").string(),
                                         "--port-file", (dir / "port").string()};
        std::vector<char*> argv;
        argv.reserve(args.size() + 1);
        for (std::string& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        // Its warnings go to a file: a pipe nobody drains would block it.
        const std::string stderr_path = (dir / "proxy.stderr").string();
        posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(),
                                         O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        int rc = posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) {
            throw std::runtime_error("cannot start tests/s3/fault_proxy.py");
        }
        if (!eventually([&] { return fs::exists(dir / "port"); }, 10s)) {
            throw std::runtime_error("tests/s3/fault_proxy.py wrote no port file: " +
                                     slurp(dir / "proxy.stderr"));
        }
        endpoint_ = "http://127.0.0.1:" + slurp(dir / "port");
        while (!endpoint_.empty() && std::isspace(static_cast<unsigned char>(endpoint_.back()))) {
            endpoint_.pop_back();
        }
    }
    ~FaultProxy() {
        ::kill(pid_, SIGTERM);
        int status = 0;
        if (!eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, 5s)) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
    }
    FaultProxy(const FaultProxy&) = delete;
    FaultProxy& operator=(const FaultProxy&) = delete;

    const std::string& endpoint() const { return endpoint_; }

    // The rules from now on (counts start from zero); an empty list: no faults.
    void set_rules(const json& rules) {
        write_text(dir_ / "control.json.tmp", json{{"rules", rules}}.dump());
        fs::rename(dir_ / "control.json.tmp", dir_ / "control.json");
    }
    // Every request logged so far.
    std::vector<json> log() const {
        std::vector<json> out;
        std::istringstream lines(fs::exists(dir_ / "log.jsonl") ? slurp(dir_ / "log.jsonl") : "");
        for (std::string line; std::getline(lines, line);) {
            if (!line.empty()) {
                out.push_back(json::parse(line));
            }
        }
        return out;
    }

  private:
    fs::path dir_;
    pid_t pid_ = -1;
    std::string endpoint_;
};

struct Fault {
    std::string name;
    json rules;
    Env settings;                       // more of pgward's environment for this row
    int exit_code;                      // of the backup
    std::vector<std::string> messages;  // in its stderr
    std::string in_the_log;             // the fault the log must show fired
    bool resumes = false;               // a broken read must resume (a Range from its byte)
};

class OffsiteFaultTest : public ScratchDirTest {
  protected:
    OffsiteFaultTest() : ScratchDirTest("offsite-faults") {}

    void SetUp() override {
        ScratchDirTest::SetUp();
        s3_ = S3Server::instance();
        if (s3_ == nullptr) {
            GTEST_SKIP() << S3Server::skip_reason();
        }
        // A bucket per test: nothing one test leaves is seen by another.
        static int made = 0;
        bucket_ = s3_->make_bucket(fmt::format("faults-{}-{}", ::getpid(), ++made));
        PgCluster& c = PgCluster::instance();
        c.create_database("offsite_faults");
        // About 8 MiB uncompressed: two parts of 5 MiB.
        c.exec("offsite_faults",
               "CREATE TABLE events AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS v "
               "FROM generate_series(1, 110000) g");
        proxy_ = std::make_unique<FaultProxy>(s3_->endpoint(), shared_subdir("proxy"));
    }
    void TearDown() override {
        proxy_.reset();
        ScratchDirTest::TearDown();
    }

    Env env(const Env& extra = {}) const {
        Env e = pg_env("offsite_faults", dir_ / "backups");
        for (auto& kv : s3_->credentials_env()) {
            e.push_back(kv);
        }
        e.emplace_back("AWS_ENDPOINT_URL", proxy_->endpoint());
        e.emplace_back("POSTGRES_BACKUP_REMOTE", "s3://" + bucket_ + "/pg");
        e.emplace_back("POSTGRES_BACKUP_COMPRESSION", "none");
        e.emplace_back("POSTGRES_BACKUP_REMOTE_PART_SIZE_MIB", "5");
        e.emplace_back("POSTGRES_BACKUP_RETENTION_COUNT", "2");
        e.emplace_back("POSTGRES_BACKUP_REMOTE_RETENTION_COUNT", "2");
        // Far above any honest pause, even under the sanitizers; the stall rows set 1 s.
        e.emplace_back("POSTGRES_BACKUP_REMOTE_TIMEOUT_SECONDS", "10");
        e.insert(e.end(), extra.begin(), extra.end());
        return e;
    }
    fs::path backups() const { return dir_ / "backups"; }

    // The stems of the complete local backups, and checks that each is whole.
    std::set<std::string> local_backups() const {
        std::set<std::string> stems;
        for (const std::string& name : list_dir(backups())) {
            if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0 &&
                name[0] != '.') {
                const std::string stem = name.substr(0, name.size() - 5);
                json manifest = json::parse(slurp(backups() / name));
                EXPECT_EQ(sha256_file_hex(backups() / (stem + ".dump")), manifest["sha256"])
                    << stem;
                EXPECT_TRUE(fs::exists(backups() / (stem + ".globals.sql"))) << stem;
                stems.insert(stem);
            }
        }
        return stems;
    }

    // What is in the bucket may be less than the local backups, never
    // different: every object under a final key is the local file, and a
    // manifest has its dump. The stems with a manifest, and the uploads in
    // progress, from one read by the independent client.
    std::pair<std::set<std::string>, size_t> remote_backups() {
        S3Server::Snapshot bucket = s3_->snapshot(bucket_, "pg/");
        std::set<std::string> manifests;
        for (const auto& [key, object] : bucket.objects) {
            const std::string name = key.substr(3);
            if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0) {
                const std::string stem = name.substr(0, name.size() - 5);
                manifests.insert(stem);
                EXPECT_EQ(bucket.objects.count("pg/" + stem + ".dump"), 1U)
                    << stem << ": a manifest without its dump";
                EXPECT_EQ(bucket.objects.count("pg/" + stem + ".globals.sql"), 1U) << stem;
            }
            if (fs::exists(backups() / name)) {
                EXPECT_EQ(object.second, sha256_file_hex(backups() / name)) << name;
            }
        }
        return {manifests, bucket.uploads.size()};
    }

    // The requests pgward sent since `from`: each body with Content-MD5 and
    // its SHA-256, no x-amz-checksum-* header, the parts of each upload of
    // one size but the last.
    void check_requests(size_t from) const {
        std::map<std::string, std::map<int, uint64_t>> parts;  // upload id -> part -> bytes
        std::vector<json> log = proxy_->log();
        for (size_t i = from; i < log.size(); ++i) {
            const json& r = log[i];
            const json& headers = r["headers"];
            const std::string what = fmt::format(
                "request {} {} {}?{}", r["n"].get<int>(), r["method"].get<std::string>(),
                r["path"].get<std::string>(), r["query"].get<std::string>());
            for (const auto& [name, value] : headers.items()) {
                EXPECT_NE(name.rfind("x-amz-checksum", 0), 0U) << what << ": " << name;
            }
            EXPECT_EQ(headers.value("x-amz-content-sha256", "").size(), 64U)
                << what << ": the payload's real SHA-256, never UNSIGNED-PAYLOAD";
            if (r["body_bytes"].get<uint64_t>() > 0) {
                EXPECT_TRUE(headers.contains("content-md5")) << what;
            }
            const std::string query = r["query"];
            if (r["method"] == "PUT" && contains(query, "partNumber=") && r["status"] == 200) {
                size_t at = query.find("partNumber=") + 11;
                int number = std::stoi(query.substr(at));
                size_t id_at = query.find("uploadId=");
                std::string upload = query.substr(id_at, query.find('&', id_at) - id_at);
                parts[upload][number] = r["body_bytes"].get<uint64_t>();
            }
        }
        for (const auto& [upload, sizes] : parts) {
            const uint64_t first = sizes.begin()->second;
            for (auto it = sizes.begin(); it != sizes.end(); ++it) {
                if (std::next(it) != sizes.end()) {
                    EXPECT_EQ(it->second, first) << "part " << it->first << " of " << upload;
                } else {
                    EXPECT_LE(it->second, first) << "the last part of " << upload;
                }
            }
        }
    }
    // The faults that fired since `from`.
    std::multiset<std::string> fired(size_t from) const {
        std::multiset<std::string> out;
        std::vector<json> log = proxy_->log();
        for (size_t i = from; i < log.size(); ++i) {
            if (!log[i]["fault"].is_null()) {
                out.insert(log[i]["fault"].get<std::string>());
            }
        }
        return out;
    }

    S3Server* s3_ = nullptr;
    std::string bucket_;
    std::unique_ptr<FaultProxy> proxy_;
};

json rule(const std::string& method, const std::string& action, json extra = json::object()) {
    json r = std::move(extra);
    r["method"] = method;
    r["action"] = action;
    return r;
}

TEST_F(OffsiteFaultTest, EveryFaultEndsInRetriedSuccessOrANamedFailureAndNothingIsLostOrWrong) {
    const json first_part = {{"path_contains", ".dump"}, {"query_contains", "partNumber=1&"}};
    const json second_part = {{"path_contains", ".dump"}, {"query_contains", "partNumber=2&"}};
    const json read_back = {{"path_contains", ".dump"}};
    const std::vector<Fault> table = {
        {"500 on a part, once", {rule("PUT", "status", second_part)}, {}, 0, {}, "status"},
        {"503 SlowDown on the dump, twice",
         {rule("PUT", "status", {{"path_contains", ".dump"}, {"status", 503}, {"times", 2}})},
         {},
         0,
         {},
         "status"},
        {"429 on the manifest",
         {rule("PUT", "status", {{"path_contains", ".json"}, {"status", 429}})},
         {},
         0,
         {},
         "status"},
        {"reset after 1 MiB of a part's body",
         {rule("PUT", "reset_request",
               {{"path_contains", ".dump"},
                {"query_contains", "partNumber=1&"},
                {"after_bytes", 1 << 20}})},
         {},
         0,
         {},
         "reset_request"},
        {"reset after 1 MiB of the read-back",
         {rule("GET", "reset_response", {{"path_contains", ".dump"}, {"after_bytes", 1 << 20}})},
         {},
         0,
         {},
         "reset_response",
         true},
        {"a part stalls past the timeout",
         {rule("PUT", "stall",
               {{"path_contains", ".dump"}, {"query_contains", "partNumber=2&"}, {"seconds", 3}})},
         {{"POSTGRES_BACKUP_REMOTE_TIMEOUT_SECONDS", "1"}},
         0,
         {},
         "stall"},
        {"a flipped byte in a part's body",
         {rule("PUT", "flip_request_byte", first_part)},
         {},
         0,
         {},
         "flip_request_byte"},
        {"a flipped byte in the read-back",
         {rule("GET", "flip_response_byte", read_back)},
         {},
         1,
         {"is not the backup: ", "has SHA-256 "},
         "flip_response_byte"},
        {"500 on every part",
         {rule("PUT", "status",
               {{"path_contains", ".dump"}, {"query_contains", "partNumber="}, {"times", -1}})},
         {{"POSTGRES_BACKUP_REMOTE_ATTEMPTS", "3"}},
         1,
         {"S3 request failed after 3 attempts: ", ": HTTP 500 InternalError"},
         "status"},
        {"503 on every completion of the upload",
         {rule("POST", "status",
               {{"query_contains", "uploadId="}, {"status", 503}, {"times", -1}})},
         {{"POSTGRES_BACKUP_REMOTE_ATTEMPTS", "3"}},
         1,
         {"S3 request failed after 3 attempts: ", ": HTTP 503 SlowDown"},
         "status"},
        {"every part stalls",
         {rule("PUT", "stall",
               {{"path_contains", ".dump"},
                {"query_contains", "partNumber="},
                {"seconds", 3},
                {"times", -1}})},
         {{"POSTGRES_BACKUP_REMOTE_ATTEMPTS", "2"},
          {"POSTGRES_BACKUP_REMOTE_TIMEOUT_SECONDS", "1"}},
         1,
         {"S3 request failed after 2 attempts: ", ": no byte moved for 1 s"},
         "stall"},
        {"every read-back is reset",
         {rule("GET", "reset_response",
               {{"path_contains", ".dump"}, {"after_bytes", 4096}, {"times", -1}})},
         {{"POSTGRES_BACKUP_REMOTE_ATTEMPTS", "3"}},
         1,
         {"S3 request failed after 3 attempts: "},
         "reset_response"},
    };
    for (const Fault& fault : table) {
        SCOPED_TRACE(fault.name);
        proxy_->set_rules(fault.rules);
        const size_t from = proxy_->log().size();
        RunResult r = run_pgward({"backup"}, env(fault.settings));
        EXPECT_EQ(r.exit_code, fault.exit_code) << r.err;
        for (const std::string& message : fault.messages) {
            EXPECT_TRUE(contains(r.err, message)) << message << "\n" << r.err;
        }
        if (fault.exit_code != 0) {
            EXPECT_TRUE(contains(r.err, "the backup is kept in")) << r.err;
        }
        // A stalled request is logged when the proxy's sleep ends.
        EXPECT_TRUE(eventually([&] { return fired(from).count(fault.in_the_log) > 0; }, 10s))
            << "the fault never fired";
        if (fault.resumes) {
            std::vector<json> log = proxy_->log();
            EXPECT_TRUE(std::any_of(log.begin() + static_cast<std::ptrdiff_t>(from), log.end(),
                                    [&](const json& request) {
                                        const std::string range =
                                            request["headers"].value("range", "");
                                        return range.rfind("bytes=", 0) == 0 && range != "bytes=0-";
                                    }))
                << "the broken read resumes where it broke";
        }
        std::set<std::string> local = local_backups();
        ASSERT_FALSE(local.empty());
        const std::string newest = *local.rbegin();
        auto [remote, uploads] = remote_backups();
        EXPECT_EQ(remote.count(newest), fault.exit_code == 0 ? 1U : 0U);
        EXPECT_EQ(uploads, 0U) << "a failed multipart upload is aborted before the copy fails";

        // The store is well again: the next push leaves the same newest
        // backups at both ends and no upload behind.
        proxy_->set_rules(json::array());
        RunResult push = run_pgward({"push"}, env());
        EXPECT_EQ(push.exit_code, 0) << push.err;
        check_requests(from);  // the row's and the push's
        auto [after_push, left] = remote_backups();
        EXPECT_EQ(after_push, local);
        EXPECT_LE(local.size(), 2U);
        EXPECT_EQ(left, 0U);
    }
}

// --remote-verify size: where egress costs, the proof is the size alone, no
// byte of the dump is read back, and `status` says so.
TEST_F(OffsiteFaultTest, ASizeOnlyProofReadsNothingBackAndStatusSaysSo) {
    RunResult r = run_pgward({"run", "--once"}, env({{"POSTGRES_BACKUP_REMOTE_VERIFY", "size"}}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out + r.err, "size only: not read back")) << r.out << r.err;
    for (const json& request : proxy_->log()) {
        EXPECT_FALSE(request["method"] == "GET" && contains(request["path"], ".dump"))
            << "request " << request["n"] << " read the dump back";
    }
    EXPECT_EQ(remote_backups().first, local_backups());
    RunResult status = run_pgward({"status"}, env());
    EXPECT_TRUE(contains(status.out, "(proof: size only, not read back)")) << status.out;
}

// The storage class goes with every new object and the store takes it; the
// bandwidth limit holds the upload to its rate; a server-side encryption the
// store cannot do is a named failure that keeps the local backup.
TEST_F(OffsiteFaultTest, StorageClassBandwidthAndEncryptionReachTheStore) {
    const auto started = std::chrono::steady_clock::now();
    RunResult r = run_pgward({"backup"}, env({{"POSTGRES_BACKUP_REMOTE_STORAGE_CLASS", "STANDARD"},
                                              {"POSTGRES_BACKUP_REMOTE_BANDWIDTH_KIB", "4096"}}));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string newest = *local_backups().rbegin();
    const uint64_t size = fs::file_size(backups() / (newest + ".dump"));
    // The dump alone, at 4 MiB/s, takes size / 4 MiB seconds at the least.
    EXPECT_GE(seconds, static_cast<double>(size) / (4 << 20) * 0.9)
        << size << " bytes went up in " << seconds << " s";
    size_t created = 0;
    for (const json& request : proxy_->log()) {
        const std::string query = request["query"];
        const bool creates = (request["method"] == "PUT" && !contains(query, "partNumber=")) ||
                             (request["method"] == "POST" && contains(query, "uploads"));
        if (creates) {
            ++created;
            EXPECT_EQ(request["headers"].value("x-amz-storage-class", ""), "STANDARD")
                << request.dump();
        }
    }
    EXPECT_GE(created, 3U);  // the dump (an upload), the globals and the manifest
    check_requests(0);

    std::this_thread::sleep_for(1100ms);
    RunResult sse =
        run_pgward({"backup"}, env({{"POSTGRES_BACKUP_REMOTE_SSE", "aws:kms"},
                                    {"POSTGRES_BACKUP_REMOTE_SSE_KMS_KEY_ID", "no-such-key"}}));
    if (sse.exit_code == 0) {
        GTEST_SKIP() << "this store accepted SSE-KMS with a key it does not have";
    }
    EXPECT_EQ(sse.exit_code, 1) << sse.err;
    EXPECT_TRUE(contains(sse.err, "the backup is kept in")) << sse.err;
    EXPECT_TRUE(contains(sse.err, "S3 request failed: start the multipart upload of s3://"))
        << sse.err;
    const std::vector<json> log = proxy_->log();
    EXPECT_TRUE(std::any_of(log.begin(), log.end(), [](const json& request) {
        return request["headers"].value("x-amz-server-side-encryption", "") == "aws:kms" &&
               request["headers"].value("x-amz-server-side-encryption-aws-kms-key-id", "") ==
                   "no-such-key";
    }));
    EXPECT_EQ(local_backups().size(), 2U);
    EXPECT_EQ(remote_backups().first.size(), 1U);
}

// A restore killed outright while it fetches leaves its private directory;
// the next fetch into that backup directory removes it (its process is
// gone) and leaves a live one's alone.
TEST_F(OffsiteFaultTest, AFetchDirectoryAKilledRestoreLeftGoesAtTheNextFetch) {
    RunResult backup = run_pgward({"backup"}, env());
    ASSERT_EQ(backup.exit_code, 0) << backup.err;
    auto fetch_dirs = [&] {
        std::vector<std::string> out;
        for (const std::string& name : list_dir(backups())) {
            if (name.rfind(".pgward-fetch-", 0) == 0) {
                out.push_back(name);
            }
        }
        return out;
    };
    // The download never answers: the restore waits in its fetch.
    proxy_->set_rules({rule("GET", "stall", {{"path_contains", ".dump"}, {"seconds", 30}})});
    const std::vector<std::string> restore = {
        "restore", "latest", "--remote", "--clean", "--if-exists", "--yes", "--no-safety-backup"};
    {
        BackgroundPgward killed(restore, env());
        ASSERT_TRUE(eventually([&] { return !fetch_dirs().empty(); }, 30s));
        ::kill(killed.pid(), SIGKILL);
        ASSERT_TRUE(killed.wait(30s));
    }
    const std::vector<std::string> left = fetch_dirs();
    ASSERT_EQ(left.size(), 1U);
    EXPECT_EQ(left[0].rfind(".pgward-fetch-", 0), 0U);
    // A directory of a process that is alive (this test's) is not touched.
    const std::string live = fmt::format(".pgward-fetch-{}-keepme", ::getpid());
    fs::create_directory(backups() / live);

    proxy_->set_rules(json::array());
    RunResult next = run_pgward(restore, env());
    ASSERT_EQ(next.exit_code, 0) << next.err;
    EXPECT_TRUE(contains(next.err, "removed a temporary directory a killed run left")) << next.err;
    EXPECT_TRUE(contains(next.err, left[0])) << next.err;
    EXPECT_EQ(fetch_dirs(), std::vector<std::string>{live});
}

}  // namespace
}  // namespace pgward::test
