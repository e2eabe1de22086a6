#pragma once

// A small S3 client over libcurl: the handful of calls a backup repository
// needs, every request signed with Signature V4 over the payload's real
// SHA-256 and (when it has a body) carrying Content-MD5, retried with
// backoff on the failures that are worth retrying. No x-amz-checksum-*
// headers: several S3-compatible stores refuse them.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "storage/sigv4.hpp"

namespace pgward::storage {

enum class Addressing { Path, VirtualHosted };

struct S3Settings {
    // scheme://host[:port], no path. AWS's regional endpoint when empty.
    std::string endpoint;
    std::string region = "us-east-1";
    std::string bucket;
    Addressing addressing = Addressing::Path;
    std::string ca_bundle;  // empty: the system's
    AwsCredentials credentials;
    std::string storage_class;   // x-amz-storage-class, empty: the bucket's default
    std::string sse;             // "AES256" or "aws:kms"; empty: none asked
    std::string sse_kms_key_id;  // with "aws:kms"
    uint32_t lock_days = 0;      // Object Lock retention of each new object; 0: none
    std::string lock_mode = "GOVERNANCE";
    uint64_t bandwidth_limit = 0;  // bytes per second of an upload; 0: none
    uint64_t part_size = 0;        // 0: derived from the file's size
    uint32_t max_parts = 10000;
    // A request that moves no byte for this long is abandoned (and retried).
    std::chrono::seconds stall_timeout{60};
    int attempts = 5;
    std::chrono::milliseconds first_backoff{200};
};

struct ObjectInfo {
    std::string key;
    uint64_t size = 0;
    std::string etag;
    std::string last_modified;
    std::string lock_until;  // HEAD only: x-amz-object-lock-retain-until-date, if any
};

struct MultipartUpload {
    std::string key;
    std::string upload_id;
    std::string initiated;
};

// What an upload of a file was split into.
struct UploadPlan {
    uint64_t part_size = 0;
    uint64_t parts = 0;  // 0: one PUT
};

// Equal parts of whole MiB of at least `minimum` bytes, at most `max_parts`
// of them; a file that fits in one part goes up in one PUT. Throws when the
// file needs more than max_parts parts of 5 GiB.
UploadPlan plan_upload(uint64_t file_size, uint64_t minimum_part, uint32_t max_parts);

// "s3://bucket/some/prefix" -> {"bucket", "some/prefix/"}; a usage error
// naming `origin` otherwise.
std::pair<std::string, std::string> parse_s3_url(std::string_view url, std::string_view origin);

class S3Client {
  public:
    explicit S3Client(S3Settings settings);

    const S3Settings& settings() const { return settings_; }

    // Every object under the prefix (all pages), in key order; with
    // direct_only, only those with no '/' after the prefix.
    std::vector<ObjectInfo> list(std::string_view prefix, bool direct_only = false) const;
    std::optional<ObjectInfo> head(std::string_view key) const;
    // Single PUT or multipart, by plan_upload; a failed multipart upload is
    // aborted before this throws.
    UploadPlan put_file(std::string_view key, const std::filesystem::path& file,
                        std::string_view content_type) const;
    void put_text(std::string_view key, std::string_view body, std::string_view content_type) const;
    // Streams the object into `sink`; a broken transfer resumes at the byte
    // it reached (a Range request). Returns the bytes delivered.
    uint64_t get(std::string_view key, const std::function<void(const char*, size_t)>& sink) const;
    // With bypass, a GOVERNANCE lock is bypassed (the role needs the right).
    void remove(std::string_view key, bool bypass_governance = false) const;
    std::vector<MultipartUpload> uploads(std::string_view prefix) const;
    void abort_upload(const MultipartUpload& upload) const;

    struct Request;
    struct Response {
        long status = 0;
        std::string body;  // error and listing bodies; a GET streams to its sink instead
        std::vector<std::pair<std::string, std::string>> headers;  // lowercase names
        std::string header(std::string_view name) const;
    };

  private:
    Response perform(Request& request) const;
    Response perform_once(Request& request, uint64_t resume_from) const;

    S3Settings settings_;
    std::string host_;    // the Host header
    std::string origin_;  // scheme://host[:port] the requests go to
};

}  // namespace pgward::storage
