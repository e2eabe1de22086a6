#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "harness/runner.hpp"

namespace pgward::test {

// The integration tests' S3 server: Ceph's RADOS Gateway on a one-node
// cluster of its own (tests/s3/rgw.sh), on a free loopback port, with its
// files in a temp dir (under TMPDIR, else /tmp). Started on the first
// instance() call, so a suite without S3 tests never pays for it; stopped when
// the test binary exits, its files removed, or kept with their path printed if
// a test failed. Interrupted (SIGINT, SIGTERM), the binary kills the daemons
// before it dies; killed outright, rgw.sh's watcher stops them within a second.
// The objects are checked with tests/s3/check_bucket.py, a boto3 client
// independent of pgward's own S3 code.
class S3Server {
  public:
    // nullptr when there is no server: Ceph is not installed (rgw.sh exits 3;
    // the reason, naming the package, in skip_reason()) or it failed to start
    // (that is reported as a failure of the test that asked first).
    static S3Server* instance();
    static const std::string& skip_reason();

    const std::string& endpoint() const { return endpoint_; }  // http://127.0.0.1:PORT
    const std::string& access_key_id() const { return access_key_id_; }
    const std::string& secret_access_key() const { return secret_access_key_; }
    const std::string& region() const { return region_; }
    const std::filesystem::path& dir() const { return dir_; }  // config, logs, pids

    // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION of the S3 user.
    Env credentials_env() const;

    // tests/s3/check_bucket.py SUBCOMMAND ENDPOINT ARGS...: `args` is the
    // subcommand and its arguments, the endpoint goes in after the subcommand.
    // Runs with the S3 user's credentials, then `env` (e.g. a wrong secret).
    RunResult check_bucket(const std::vector<std::string>& args, const Env& env = {}) const;

    // check_bucket.py's subcommands; each throws std::runtime_error, with
    // the script's stderr, when it fails.
    std::string make_bucket(std::string_view name, bool object_lock = false);  // returns name
    // (key, size) of every object under `prefix`, sorted by key.
    std::vector<std::pair<std::string, uint64_t>> list(std::string_view bucket,
                                                       std::string_view prefix);
    // (key, upload id) of every multipart upload in progress under `prefix`.
    std::vector<std::pair<std::string, std::string>> uploads(std::string_view bucket,
                                                             std::string_view prefix);
    std::string sha256(std::string_view bucket, std::string_view key);  // hex
    // Every object under `prefix` with its size and SHA-256 (each read whole)
    // and every multipart upload in progress there, in one client run.
    struct Snapshot {
        std::map<std::string, std::pair<uint64_t, std::string>> objects;  // key -> size, sha256
        std::vector<std::pair<std::string, std::string>> uploads;         // key, upload id
    };
    Snapshot snapshot(std::string_view bucket, std::string_view prefix);
    void get(std::string_view bucket, std::string_view key, const std::filesystem::path& to);
    void put(std::string_view bucket, std::string_view key, const std::filesystem::path& from);
    void remove(std::string_view bucket, std::string_view key);

    // The scripts in the source tree.
    static std::filesystem::path rgw_script();
    static std::filesystem::path check_bucket_script();

    // Stops the daemons; removes the files unless `keep_files`. At exit.
    void stop(bool keep_files);

    S3Server(const S3Server&) = delete;
    S3Server& operator=(const S3Server&) = delete;

  private:
    S3Server();
    // rgw.sh start in a fresh temp dir: the server, or nullptr with the
    // reason, and `failed` when that is an error rather than a skip.
    static std::unique_ptr<S3Server> start(std::string& reason, bool& failed);

    std::string checked(const std::vector<std::string>& args) const;

    // check_bucket.py serve: one client for every check without extra
    // variables (boto3 loads in ~0.3 s of CPU, and a suite checks hundreds
    // of times). Started at the first check, ended with the server.
    struct Checker;
    mutable std::mutex checker_mutex_;
    mutable std::unique_ptr<Checker> checker_;

    std::filesystem::path dir_;
    std::string endpoint_;
    std::string access_key_id_;
    std::string secret_access_key_;
    std::string region_;
};

}  // namespace pgward::test
