#include "storage/s3_client.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <pugixml.hpp>

#include "util/error.hpp"
#include "util/log.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace pgward::storage {
namespace {

constexpr uint64_t kMiB = uint64_t{1024} * 1024;
constexpr uint64_t kMinimumPart = 5 * kMiB;  // S3's floor for all but the last part
constexpr uint64_t kMaximumPart = uint64_t{5} * 1024 * kMiB;  // and its ceiling
constexpr uint64_t kDefaultPart = 16 * kMiB;

// The hashes a request body is signed and checked with.
struct BodyDigest {
    std::string sha256_hex;
    std::string md5_base64;
};

class Digests {
  public:
    Digests() : sha_(EVP_MD_CTX_new()), md5_(EVP_MD_CTX_new()) {
        if (sha_ == nullptr || md5_ == nullptr ||
            EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr) != 1 ||
            EVP_DigestInit_ex(md5_, EVP_md5(), nullptr) != 1) {
            EVP_MD_CTX_free(sha_);
            EVP_MD_CTX_free(md5_);
            throw failure("OpenSSL could not start SHA-256 and MD5");
        }
    }
    ~Digests() {
        EVP_MD_CTX_free(sha_);
        EVP_MD_CTX_free(md5_);
    }
    Digests(const Digests&) = delete;
    Digests& operator=(const Digests&) = delete;
    void update(const void* data, size_t size) {
        EVP_DigestUpdate(sha_, data, size);
        EVP_DigestUpdate(md5_, data, size);
    }
    BodyDigest finish() {
        unsigned char sha[EVP_MAX_MD_SIZE];
        unsigned char md5[EVP_MAX_MD_SIZE];
        unsigned int sha_size = 0;
        unsigned int md5_size = 0;
        EVP_DigestFinal_ex(sha_, sha, &sha_size);
        EVP_DigestFinal_ex(md5_, md5, &md5_size);
        BodyDigest out;
        for (unsigned int i = 0; i < sha_size; ++i) {
            out.sha256_hex += fmt::format("{:02x}", sha[i]);
        }
        unsigned char encoded[64];
        int n = EVP_EncodeBlock(encoded, md5, static_cast<int>(md5_size));
        out.md5_base64.assign(reinterpret_cast<char*>(encoded), static_cast<size_t>(n));
        return out;
    }

  private:
    EVP_MD_CTX* sha_;
    EVP_MD_CTX* md5_;
};

BodyDigest digest_text(std::string_view text) {
    Digests d;
    d.update(text.data(), text.size());
    return d.finish();
}

BodyDigest digest_range(int fd, uint64_t offset, uint64_t length, const std::string& path) {
    Digests d;
    std::vector<char> buffer(kMiB);
    uint64_t done = 0;
    while (done < length) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), length - done));
        ssize_t n = ::pread(fd, buffer.data(), want, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            throw os_error("cannot read", path, n < 0 ? errno : EIO);
        }
        d.update(buffer.data(), static_cast<size_t>(n));
        done += static_cast<uint64_t>(n);
    }
    return d.finish();
}

void ensure_curl() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool retryable_curl(CURLcode rc) {
    switch (rc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
            return true;
        default:
            return false;
    }
}

// A failure worth another attempt (a reset, a timeout), thrown only
// between perform_once and perform.
struct TransientFailure {
    std::string reason;
};

struct ErrorBody {
    std::string code;
    std::string message;
};

ErrorBody parse_error(const std::string& body) {
    pugi::xml_document doc;
    ErrorBody out;
    if (doc.load_string(body.c_str())) {
        pugi::xml_node error = doc.child("Error");
        out.code = error.child_value("Code");
        out.message = error.child_value("Message");
    }
    return out;
}

bool retryable_status(long status, const std::string& code) {
    return status >= 500 || status == 408 || status == 429 || code == "RequestTimeout" ||
           code == "SlowDown" || code == "BadDigest" || code == "XAmzContentSHA256Mismatch";
}

std::string hint_for(const std::string& code, const S3Settings& s) {
    if (code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" ||
        code == "InvalidSecurity") {
        return fmt::format(
            "check AWS_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY_FILE) for access key id {}",
            s.credentials.access_key_id);
    }
    if (code == "RequestTimeTooSkewed") {
        return "this machine's clock is off: synchronise it (chrony or systemd-timesyncd)";
    }
    if (code == "NoSuchBucket") {
        return fmt::format("create the bucket \"{}\" or fix POSTGRES_BACKUP_REMOTE", s.bucket);
    }
    if (code == "AccessDenied") {
        return "the key's policy must allow s3:ListBucket, s3:GetObject, s3:PutObject, "
               "s3:DeleteObject, s3:ListBucketMultipartUploads and s3:AbortMultipartUpload "
               "(docs/offsite.md)";
    }
    return {};
}

std::string lower(std::string text) {
    for (char& c : text) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return text;
}

std::string trim(std::string_view text) {
    while (!text.empty() && (text.back() == '\r' || text.back() == '\n' || text.back() == ' ')) {
        text.remove_suffix(1);
    }
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1);
    }
    return std::string(text);
}

uint64_t to_u64(std::string_view text) {
    uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            break;
        }
        value = value * 10 + static_cast<uint64_t>(c - '0');
    }
    return value;
}

}  // namespace

struct S3Client::Request {
    std::string method;
    std::string key;  // empty: the bucket itself
    std::vector<std::pair<std::string, std::string>> query;
    std::vector<std::pair<std::string, std::string>> headers;
    // A body: text, or a range of an open file.
    std::optional<std::string> text;
    int fd = -1;
    uint64_t offset = 0;
    uint64_t length = 0;
    std::string path;                               // of fd, for messages
    std::function<void(const char*, size_t)> sink;  // a GET's body
    bool head = false;
    bool missing_ok = false;  // a 404 is an answer (HEAD, GET, DELETE), not a failure
    std::string what;         // "PUT s3://bucket/key", for messages
};

std::string S3Client::Response::header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
        if (n == name) {
            return v;
        }
    }
    return {};
}

UploadPlan plan_upload(uint64_t file_size, uint64_t minimum_part, uint32_t max_parts) {
    uint64_t part = std::max(minimum_part == 0 ? kDefaultPart : minimum_part, kMinimumPart);
    if (max_parts == 0) {
        max_parts = 1;
    }
    // The smallest part that keeps the count within max_parts, in whole MiB.
    uint64_t needed = (file_size + max_parts - 1) / max_parts;
    part = std::max(part, (needed + kMiB - 1) / kMiB * kMiB);
    if (part > kMaximumPart) {
        throw failure(fmt::format("a file of {} bytes needs more than {} parts of 5 GiB", file_size,
                                  max_parts),
                      "raise the part count limit (POSTGRES_BACKUP_REMOTE_MAX_PARTS)");
    }
    if (file_size <= part) {
        return {part, 0};
    }
    return {part, (file_size + part - 1) / part};
}

std::pair<std::string, std::string> parse_s3_url(std::string_view url, std::string_view origin) {
    constexpr std::string_view kScheme = "s3://";
    auto bad = [&](const std::string& why) {
        return usage_error(fmt::format("invalid remote \"{}\" in {}: {}", url, origin, why),
                           "write it as s3://BUCKET or s3://BUCKET/PREFIX");
    };
    if (url.substr(0, kScheme.size()) != kScheme) {
        throw bad("it does not start with s3://");
    }
    std::string_view rest = url.substr(kScheme.size());
    size_t slash = rest.find('/');
    std::string bucket(rest.substr(0, slash));
    std::string prefix(slash == std::string_view::npos ? "" : rest.substr(slash + 1));
    if (bucket.size() < 3 || bucket.size() > 63) {
        throw bad("a bucket name has 3 to 63 characters");
    }
    for (char c : bucket) {
        if (!(std::islower(static_cast<unsigned char>(c)) ||
              std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.')) {
            throw bad("a bucket name has only lowercase letters, digits, '-' and '.'");
        }
    }
    while (!prefix.empty() && prefix.back() == '/') {
        prefix.pop_back();
    }
    if (prefix.find("//") != std::string::npos) {
        throw bad("the prefix has an empty path segment");
    }
    if (!prefix.empty()) {
        prefix += '/';
    }
    return {bucket, prefix};
}

S3Client::S3Client(S3Settings settings) : settings_(std::move(settings)) {
    ensure_curl();
    std::string endpoint = settings_.endpoint.empty()
                               ? "https://s3." + settings_.region + ".amazonaws.com"
                               : settings_.endpoint;
    while (!endpoint.empty() && endpoint.back() == '/') {
        endpoint.pop_back();
    }
    size_t scheme_end = endpoint.find("://");
    if (scheme_end == std::string::npos ||
        (endpoint.compare(0, scheme_end, "http") != 0 &&
         endpoint.compare(0, scheme_end, "https") != 0) ||
        endpoint.find('/', scheme_end + 3) != std::string::npos) {
        throw usage_error(
            fmt::format("invalid S3 endpoint \"{}\": expected http(s)://HOST[:PORT]", endpoint),
            "fix --s3-endpoint or AWS_ENDPOINT_URL");
    }
    std::string scheme = endpoint.substr(0, scheme_end);
    std::string host = endpoint.substr(scheme_end + 3);
    if (settings_.addressing == Addressing::VirtualHosted) {
        host = settings_.bucket + "." + host;
    }
    host_ = host;
    origin_ = scheme + "://" + host;
}

S3Client::Response S3Client::perform(Request& request) const {
    uint64_t delivered = 0;
    std::function<void(const char*, size_t)> outer = request.sink;
    if (outer) {
        request.sink = [&](const char* data, size_t size) {
            outer(data, size);
            delivered += size;
        };
    }
    static thread_local std::mt19937_64 random{std::random_device{}()};
    for (int attempt = 1;; ++attempt) {
        std::string reason;
        std::string hint;
        try {
            Response response = perform_once(request, delivered);
            if (response.status < 300) {
                return response;
            }
            ErrorBody error = parse_error(response.body);
            if (response.status == 404 && request.missing_ok && error.code != "NoSuchBucket") {
                return response;
            }
            reason = fmt::format("{}: HTTP {}{}{}", request.what, response.status,
                                 error.code.empty() ? "" : " " + error.code,
                                 error.message.empty() ? "" : " (" + error.message + ")");
            hint = hint_for(error.code, settings_);
            if (!retryable_status(response.status, error.code)) {
                throw failure("S3 request failed: " + reason, hint);
            }
        } catch (const TransientFailure& transient) {
            reason = transient.reason;
        }
        if (attempt >= settings_.attempts) {
            throw failure(
                fmt::format("S3 request failed after {} attempts: {}", settings_.attempts, reason),
                hint);
        }
        auto base = settings_.first_backoff * (1LL << std::min(attempt - 1, 10));
        std::uniform_int_distribution<int64_t> jitter(base.count() / 2, base.count());
        auto wait = std::chrono::milliseconds(jitter(random));
        log::warn("S3 request failed; retrying", {{"request", request.what},
                                                  {"reason", reason},
                                                  {"attempt", std::to_string(attempt)},
                                                  {"wait_ms", std::to_string(wait.count())}});
        for (auto slept = std::chrono::milliseconds(0); slept < wait;
             slept += std::chrono::milliseconds(50)) {
            if (int sig = pending_interrupt(); sig != 0) {
                throw failure(
                    fmt::format("interrupted by {} during {}", signal_name(sig), request.what));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
}

S3Client::Response S3Client::perform_once(Request& request, uint64_t resume_from) const {
    std::string path;
    if (settings_.addressing == Addressing::Path) {
        path = "/" + settings_.bucket;
        if (!request.key.empty()) {
            path += "/" + uri_encode(request.key, false);
        }
    } else {
        path = "/" + uri_encode(request.key, false);
    }

    BodyDigest digest;
    bool has_body = request.text.has_value() || request.fd >= 0;
    if (request.text) {
        digest = digest_text(*request.text);
    } else if (request.fd >= 0) {
        digest = digest_range(request.fd, request.offset, request.length, request.path);
    } else {
        digest = digest_text("");
    }

    SigningRequest signing;
    signing.method = request.method;
    signing.path = path;
    signing.query = request.query;
    signing.payload_sha256 = digest.sha256_hex;
    const std::string amz_date = format_compact_utc(now_seconds());
    signing.headers = {
        {"host", host_}, {"x-amz-date", amz_date}, {"x-amz-content-sha256", digest.sha256_hex}};
    if (!settings_.credentials.session_token.empty()) {
        signing.headers.emplace_back("x-amz-security-token", settings_.credentials.session_token);
    }
    if (has_body) {
        signing.headers.emplace_back("content-md5", digest.md5_base64);
    }
    for (const auto& header : request.headers) {
        signing.headers.push_back(header);
    }
    if (resume_from > 0) {
        signing.headers.emplace_back("range", fmt::format("bytes={}-", resume_from));
    }
    const std::string authorization =
        authorization_header(signing, {amz_date, settings_.region, "s3"}, settings_.credentials);

    // The URL's query in the canonical form the signature covers.
    std::string canonical = canonical_request(signing);
    size_t first = canonical.find('\n');
    size_t second = canonical.find('\n', first + 1);
    std::string query = canonical.substr(second + 1, canonical.find('\n', second + 1) - second - 1);
    std::string url = origin_ + path + (query.empty() ? "" : "?" + query);

    CURL* curl = curl_easy_init();
    if (curl == nullptr) {
        throw failure("libcurl could not start a request");
    }
    curl_slist* headers = nullptr;
    for (const auto& [name, value] : signing.headers) {
        std::string line = name;
        line += ": ";
        line += value;
        headers = curl_slist_append(headers, line.c_str());
    }
    headers = curl_slist_append(headers, ("Authorization: " + authorization).c_str());
    headers = curl_slist_append(headers, "Expect:");
    if (!has_body && request.method == "POST") {
        headers = curl_slist_append(headers, "Content-Type:");
    }

    Response response;
    uint64_t sent = 0;
    struct Context {
        Request* request;
        Response* response;
        uint64_t* sent;
        CURL* curl;
        // The stall watch: the bytes moved either way, and when that last
        // changed. curl's own low-speed limit averages over several seconds,
        // so a stall right after a burst would go unseen that long.
        std::chrono::steady_clock::duration stall_timeout;
        curl_off_t moved = 0;
        std::chrono::steady_clock::time_point moved_at = std::chrono::steady_clock::now();
        bool stalled = false;
    } context{&request, &response, &sent, curl, settings_.stall_timeout};

    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "pgward/" PGWARD_VERSION);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
    if (!settings_.ca_bundle.empty()) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, settings_.ca_bundle.c_str());
    }
    if (request.head) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (request.method == "PUT") {
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        uint64_t body_size = request.text ? request.text->size() : request.length;
        curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body_size));
        if (settings_.bandwidth_limit > 0) {
            curl_easy_setopt(curl, CURLOPT_MAX_SEND_SPEED_LARGE,
                             static_cast<curl_off_t>(settings_.bandwidth_limit));
        }
        curl_easy_setopt(curl, CURLOPT_READDATA, &context);
        curl_easy_setopt(
            curl, CURLOPT_READFUNCTION,
            +[](char* buffer, size_t size, size_t count, void* user) -> size_t {
                auto* c = static_cast<Context*>(user);
                size_t room = size * count;
                if (c->request->text) {
                    const std::string& text = *c->request->text;
                    size_t n = std::min<size_t>(room, text.size() - *c->sent);
                    std::memcpy(buffer, text.data() + *c->sent, n);
                    *c->sent += n;
                    return n;
                }
                uint64_t left = c->request->length - *c->sent;
                size_t want = static_cast<size_t>(std::min<uint64_t>(room, left));
                if (want == 0) {
                    return 0;
                }
                ssize_t n;
                do {
                    n = ::pread(c->request->fd, buffer, want,
                                static_cast<off_t>(c->request->offset + *c->sent));
                } while (n < 0 && errno == EINTR);
                if (n <= 0) {
                    return CURL_READFUNC_ABORT;
                }
                *c->sent += static_cast<uint64_t>(n);
                return static_cast<size_t>(n);
            });
    } else if (request.method == "POST") {
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        const std::string& body = request.text ? *request.text : std::string();
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
        curl_easy_setopt(curl, CURLOPT_COPYPOSTFIELDS, body.c_str());
    } else if (request.method != "GET") {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &context);
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION,
        +[](char* data, size_t size, size_t count, void* user) -> size_t {
            auto* c = static_cast<Context*>(user);
            size_t n = size * count;
            long status = 0;
            curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
            if (status >= 200 && status < 300 && c->request->sink) {
                c->request->sink(data, n);
            } else if (c->response->body.size() < kMiB) {
                c->response->body.append(data, n);
            }
            return n;
        });
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &context);
    curl_easy_setopt(
        curl, CURLOPT_HEADERFUNCTION,
        +[](char* data, size_t size, size_t count, void* user) -> size_t {
            auto* c = static_cast<Context*>(user);
            std::string_view line(data, size * count);
            if (line.rfind("HTTP/", 0) == 0) {
                c->response->headers.clear();  // a 100 Continue's, or a redirect's
            }
            size_t colon = line.find(':');
            if (colon != std::string_view::npos) {
                c->response->headers.emplace_back(lower(std::string(line.substr(0, colon))),
                                                  trim(line.substr(colon + 1)));
            }
            return size * count;
        });
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &context);
    curl_easy_setopt(
        curl, CURLOPT_XFERINFOFUNCTION,
        +[](void* user, curl_off_t, curl_off_t down, curl_off_t, curl_off_t up) -> int {
            auto* c = static_cast<Context*>(user);
            if (pending_interrupt() != 0) {
                return 1;
            }
            const auto now = std::chrono::steady_clock::now();
            if (down + up != c->moved) {
                c->moved = down + up;
                c->moved_at = now;
            } else if (now - c->moved_at >= c->stall_timeout) {
                c->stalled = true;
                return 1;
            }
            return 0;
        });

    CURLcode rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (rc == CURLE_ABORTED_BY_CALLBACK && pending_interrupt() != 0) {
        throw failure(fmt::format("interrupted by {} during {}", signal_name(pending_interrupt()),
                                  request.what));
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK && context.stalled) {
        throw TransientFailure{fmt::format(
            "{}: no byte moved for {} s", request.what,
            std::chrono::duration_cast<std::chrono::seconds>(settings_.stall_timeout).count())};
    }
    if (rc != CURLE_OK) {
        std::string text = fmt::format("{}: {}", request.what, curl_easy_strerror(rc));
        if (retryable_curl(rc)) {
            throw TransientFailure{text};
        }
        throw failure("S3 request failed: " + text,
                      "check the endpoint (--s3-endpoint / AWS_ENDPOINT_URL) and the CA bundle");
    }
    if (resume_from > 0 && response.status == 200) {
        // The server ignored the Range: what it sends again would be delivered twice.
        throw failure(fmt::format("S3 request failed: {}: the server does not resume downloads",
                                  request.what));
    }
    return response;
}

std::vector<ObjectInfo> S3Client::list(std::string_view prefix, bool direct_only) const {
    std::vector<ObjectInfo> out;
    std::string token;
    for (;;) {
        Request request;
        request.method = "GET";
        request.what = fmt::format("list s3://{}/{}", settings_.bucket, prefix);
        request.query = {{"list-type", "2"}, {"prefix", std::string(prefix)}};
        if (direct_only) {
            // The "folders" below come back as CommonPrefixes, not paged through.
            request.query.emplace_back("delimiter", "/");
        }
        if (!token.empty()) {
            request.query.emplace_back("continuation-token", token);
        }
        Response response = perform(request);
        pugi::xml_document doc;
        if (!doc.load_string(response.body.c_str())) {
            throw failure(fmt::format("{}: the answer is not XML", request.what));
        }
        pugi::xml_node result = doc.child("ListBucketResult");
        for (pugi::xml_node item : result.children("Contents")) {
            ObjectInfo info;
            info.key = item.child_value("Key");
            info.size = to_u64(item.child_value("Size"));
            info.etag = item.child_value("ETag");
            info.last_modified = item.child_value("LastModified");
            out.push_back(std::move(info));
        }
        if (std::string_view(result.child_value("IsTruncated")) != "true") {
            break;
        }
        token = result.child_value("NextContinuationToken");
        if (token.empty()) {
            throw failure(
                fmt::format("{}: a truncated listing without a continuation token", request.what));
        }
    }
    std::sort(out.begin(), out.end(),
              [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
}

std::optional<ObjectInfo> S3Client::head(std::string_view key) const {
    Request request;
    request.method = "HEAD";
    request.head = true;
    request.missing_ok = true;
    request.key = key;
    request.what = fmt::format("HEAD s3://{}/{}", settings_.bucket, key);
    Response response = perform(request);
    if (response.status == 404) {
        return std::nullopt;
    }
    ObjectInfo info;
    info.key = key;
    info.size = to_u64(response.header("content-length"));
    info.etag = response.header("etag");
    info.last_modified = response.header("last-modified");
    info.lock_until = response.header("x-amz-object-lock-retain-until-date");
    return info;
}

namespace {

std::vector<std::pair<std::string, std::string>> object_headers(const S3Settings& s,
                                                                std::string_view content_type) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!content_type.empty()) {
        headers.emplace_back("content-type", std::string(content_type));
    }
    if (!s.storage_class.empty()) {
        headers.emplace_back("x-amz-storage-class", s.storage_class);
    }
    if (!s.sse.empty()) {
        headers.emplace_back("x-amz-server-side-encryption", s.sse);
        if (!s.sse_kms_key_id.empty()) {
            headers.emplace_back("x-amz-server-side-encryption-aws-kms-key-id", s.sse_kms_key_id);
        }
    }
    if (s.lock_days > 0) {
        headers.emplace_back("x-amz-object-lock-mode", s.lock_mode);
        headers.emplace_back("x-amz-object-lock-retain-until-date",
                             format_iso_utc(now_seconds() + std::chrono::hours(24) * s.lock_days));
    }
    return headers;
}

class OpenFile {
  public:
    explicit OpenFile(const std::filesystem::path& path)
        : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
        if (fd_ < 0) {
            throw os_error("cannot open", path.string(), errno);
        }
    }
    ~OpenFile() { ::close(fd_); }
    OpenFile(const OpenFile&) = delete;
    OpenFile& operator=(const OpenFile&) = delete;
    int fd() const { return fd_; }

  private:
    int fd_;
};

}  // namespace

UploadPlan S3Client::put_file(std::string_view key, const std::filesystem::path& file,
                              std::string_view content_type) const {
    OpenFile in(file);
    struct stat st {};
    if (::fstat(in.fd(), &st) != 0) {
        throw os_error("cannot stat", file.string(), errno);
    }
    const auto size = static_cast<uint64_t>(st.st_size);
    const UploadPlan plan = plan_upload(size, settings_.part_size, settings_.max_parts);
    const std::string target = fmt::format("s3://{}/{}", settings_.bucket, key);
    if (plan.parts == 0) {
        Request request;
        request.method = "PUT";
        request.key = key;
        request.fd = in.fd();
        request.length = size;
        request.path = file.string();
        request.headers = object_headers(settings_, content_type);
        request.what = "PUT " + target;
        perform(request);
        return plan;
    }

    Request create;
    create.method = "POST";
    create.key = key;
    create.query = {{"uploads", ""}};
    create.headers = object_headers(settings_, content_type);
    create.what = "start the multipart upload of " + target;
    Response created = perform(create);
    pugi::xml_document doc;
    doc.load_string(created.body.c_str());
    MultipartUpload upload{std::string(key),
                           doc.child("InitiateMultipartUploadResult").child_value("UploadId"), ""};
    if (upload.upload_id.empty()) {
        throw failure(fmt::format("{}: the answer has no UploadId", create.what));
    }
    try {
        std::string complete = "<CompleteMultipartUpload>";
        for (uint64_t part = 1; part <= plan.parts; ++part) {
            Request put;
            put.method = "PUT";
            put.key = key;
            put.query = {{"partNumber", std::to_string(part)}, {"uploadId", upload.upload_id}};
            put.fd = in.fd();
            put.offset = (part - 1) * plan.part_size;
            put.length = std::min(plan.part_size, size - put.offset);
            put.path = file.string();
            put.what = fmt::format("PUT part {} of {} of {}", part, plan.parts, target);
            Response response = perform(put);
            std::string etag = response.header("etag");
            if (etag.empty()) {
                throw failure(fmt::format("{}: the answer has no ETag", put.what));
            }
            complete +=
                fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", part, etag);
            log::info("uploaded a part", {{"object", target},
                                          {"part", std::to_string(part)},
                                          {"of", std::to_string(plan.parts)}});
        }
        complete += "</CompleteMultipartUpload>";
        Request finish;
        finish.method = "POST";
        finish.key = key;
        finish.query = {{"uploadId", upload.upload_id}};
        finish.text = complete;
        finish.headers = {{"content-type", "application/xml"}};
        finish.what = "complete the multipart upload of " + target;
        Response done = perform(finish);
        // S3 may answer 200 and put the error in the body.
        ErrorBody error = parse_error(done.body);
        if (!error.code.empty()) {
            throw failure(fmt::format("S3 request failed: {}: {} ({})", finish.what, error.code,
                                      error.message),
                          hint_for(error.code, settings_));
        }
    } catch (const Error&) {
        try {
            abort_upload(upload);
        } catch (const Error& e) {
            log::warn("could not abort a failed multipart upload; the next upload aborts it",
                      {{"object", target}, {"reason", e.what()}});
        }
        throw;
    }
    return plan;
}

void S3Client::put_text(std::string_view key, std::string_view body,
                        std::string_view content_type) const {
    Request request;
    request.method = "PUT";
    request.key = key;
    request.text = std::string(body);
    request.headers = object_headers(settings_, content_type);
    request.what = fmt::format("PUT s3://{}/{}", settings_.bucket, key);
    perform(request);
}

uint64_t S3Client::get(std::string_view key,
                       const std::function<void(const char*, size_t)>& sink) const {
    uint64_t delivered = 0;
    Request request;
    request.method = "GET";
    request.key = key;
    request.missing_ok = true;
    request.what = fmt::format("GET s3://{}/{}", settings_.bucket, key);
    request.sink = [&](const char* data, size_t size) {
        sink(data, size);
        delivered += size;
    };
    Response response = perform(request);
    if (response.status == 404) {
        throw failure(fmt::format("s3://{}/{} does not exist", settings_.bucket, key));
    }
    return delivered;
}

void S3Client::remove(std::string_view key, bool bypass_governance) const {
    Request request;
    request.method = "DELETE";
    request.key = key;
    if (bypass_governance) {
        request.headers = {{"x-amz-bypass-governance-retention", "true"}};
    }
    request.missing_ok = true;
    request.what = fmt::format("DELETE s3://{}/{}", settings_.bucket, key);
    perform(request);
}

std::vector<MultipartUpload> S3Client::uploads(std::string_view prefix) const {
    std::vector<MultipartUpload> out;
    std::string key_marker;
    std::string id_marker;
    for (;;) {
        Request request;
        request.method = "GET";
        request.query = {{"uploads", ""}, {"prefix", std::string(prefix)}};
        if (!key_marker.empty()) {
            request.query.emplace_back("key-marker", key_marker);
            request.query.emplace_back("upload-id-marker", id_marker);
        }
        request.what =
            fmt::format("list the multipart uploads under s3://{}/{}", settings_.bucket, prefix);
        Response response = perform(request);
        pugi::xml_document doc;
        doc.load_string(response.body.c_str());
        pugi::xml_node result = doc.child("ListMultipartUploadsResult");
        for (pugi::xml_node item : result.children("Upload")) {
            out.push_back({item.child_value("Key"), item.child_value("UploadId"),
                           item.child_value("Initiated")});
        }
        if (std::string_view(result.child_value("IsTruncated")) != "true") {
            break;
        }
        key_marker = result.child_value("NextKeyMarker");
        id_marker = result.child_value("NextUploadIdMarker");
        if (key_marker.empty()) {
            break;
        }
    }
    return out;
}

void S3Client::abort_upload(const MultipartUpload& upload) const {
    Request request;
    request.method = "DELETE";
    request.key = upload.key;
    request.query = {{"uploadId", upload.upload_id}};
    request.missing_ok = true;
    request.what =
        fmt::format("abort the multipart upload of s3://{}/{}", settings_.bucket, upload.key);
    perform(request);  // a 404: already gone
}

}  // namespace pgward::storage
