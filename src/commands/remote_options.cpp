#include "commands/remote_options.hpp"

#include <cstdlib>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/files.hpp"

namespace pgward::commands {

void add_remote_options(OptionTable& table, CLI::App& app, RemoteFlag flag) {
    if (flag == RemoteFlag::IsTheUrl) {
        table.add(app, "remote", "--remote", "POSTGRES_BACKUP_REMOTE",
                  "copy each backup to s3://BUCKET/PREFIX and prove the copy");
    } else {
        table.add(app, "remote", "--remote-url", "POSTGRES_BACKUP_REMOTE",
                  "the store --remote reads: s3://BUCKET/PREFIX");
    }
    table.add(app, "s3_endpoint", "--s3-endpoint", "AWS_ENDPOINT_URL",
              "S3 endpoint, http(s)://HOST[:PORT] (default: AWS in the region)");
    table.add(app, "s3_region", "--s3-region", "AWS_REGION", "S3 region (default us-east-1)");
    table.add(app, "s3_addressing", "--s3-addressing", "POSTGRES_BACKUP_S3_ADDRESSING",
              "path or virtual (default: path with an endpoint, virtual on AWS)");
    table.add(app, "s3_ca_bundle", "--s3-ca-bundle", "AWS_CA_BUNDLE",
              "CA certificates to trust for the endpoint (default: the system's)");
    table.add(app, "remote_retention", "--remote-retention",
              "POSTGRES_BACKUP_REMOTE_RETENTION_COUNT",
              "keep the newest N backups in the bucket (default: the local count)");
    table.add(app, "remote_verify", "--remote-verify", "POSTGRES_BACKUP_REMOTE_VERIFY",
              "read (default: read each upload back and compare its SHA-256) or size");
    table.add(app, "remote_storage_class", "--remote-storage-class",
              "POSTGRES_BACKUP_REMOTE_STORAGE_CLASS", "storage class of uploaded objects");
    table.add(app, "remote_sse", "--remote-sse", "POSTGRES_BACKUP_REMOTE_SSE",
              "server-side encryption: AES256 or aws:kms");
    table.add(app, "remote_sse_kms_key", "--remote-sse-kms-key-id",
              "POSTGRES_BACKUP_REMOTE_SSE_KMS_KEY_ID", "the KMS key of aws:kms");
    table.add(app, "remote_lock_days", "--remote-lock-days", "POSTGRES_BACKUP_REMOTE_LOCK_DAYS",
              "Object Lock retention of each upload, in days");
    table.add(app, "remote_lock_mode", "--remote-lock-mode", "POSTGRES_BACKUP_REMOTE_LOCK_MODE",
              "GOVERNANCE (default) or COMPLIANCE");
    table.add(app, "remote_bandwidth", "--remote-bandwidth-kib",
              "POSTGRES_BACKUP_REMOTE_BANDWIDTH_KIB", "upload bandwidth limit, KiB per second");
    table.add(app, "remote_part_size", "--remote-part-size-mib",
              "POSTGRES_BACKUP_REMOTE_PART_SIZE_MIB",
              "smallest multipart part, MiB (default 16; larger files get larger parts)");
    table.add(app, "remote_max_parts", "--remote-max-parts", "POSTGRES_BACKUP_REMOTE_MAX_PARTS",
              "most parts of one upload (default 10000; Scaleway: 1000)");
    table.add(app, "remote_timeout", "--remote-timeout", "POSTGRES_BACKUP_REMOTE_TIMEOUT_SECONDS",
              "retry a request that moves no byte for this long, seconds (default 60)");
    table.add(app, "remote_attempts", "--remote-attempts", "POSTGRES_BACKUP_REMOTE_ATTEMPTS",
              "tries of each request before the copy fails (default 5)");
}

std::optional<RemoteConfig> remote_config(const OptionTable& table) {
    auto remote = table.get("remote");
    if (!remote) {
        return std::nullopt;
    }
    RemoteConfig config;
    auto [bucket, prefix] = storage::parse_s3_url(remote->value, remote->origin);
    config.s3.bucket = bucket;
    config.prefix = prefix;
    config.s3.endpoint = table.get_or("s3_endpoint", "");
    config.s3.region = table.get_or("s3_region", "us-east-1");
    config.s3.ca_bundle = table.get_or("s3_ca_bundle", "");
    if (auto addressing = table.get("s3_addressing")) {
        if (addressing->value == "path") {
            config.s3.addressing = storage::Addressing::Path;
        } else if (addressing->value == "virtual") {
            config.s3.addressing = storage::Addressing::VirtualHosted;
        } else {
            throw usage_error(fmt::format("invalid value \"{}\" for {}: expected path or virtual",
                                          addressing->value, addressing->origin),
                              fmt::format("fix {}", addressing->origin));
        }
    } else {
        config.s3.addressing = config.s3.endpoint.empty() ? storage::Addressing::VirtualHosted
                                                          : storage::Addressing::Path;
    }

    auto key_id = secret_from_environment("AWS_ACCESS_KEY_ID");
    auto secret = secret_from_environment("AWS_SECRET_ACCESS_KEY");
    if (!key_id || !secret) {
        throw usage_error(
            fmt::format("{} is set but {} is not", remote->origin,
                        !key_id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY"),
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their *_FILE variants)");
    }
    config.s3.credentials.access_key_id = *key_id;
    config.s3.credentials.secret_access_key = *secret;
    config.s3.credentials.session_token = secret_from_environment("AWS_SESSION_TOKEN").value_or("");

    if (auto verify = table.get("remote_verify")) {
        if (verify->value == "read") {
            config.offsite.proof = RemoteProof::Read;
        } else if (verify->value == "size") {
            config.offsite.proof = RemoteProof::Size;
        } else {
            throw usage_error(fmt::format("invalid value \"{}\" for {}: expected read or size",
                                          verify->value, verify->origin),
                              fmt::format("fix {}", verify->origin));
        }
    }
    if (auto retention = table.get_number("remote_retention", 1, 1000000)) {
        config.offsite.retention = static_cast<size_t>(*retention);
    }
    config.s3.storage_class = table.get_or("remote_storage_class", "");
    if (auto sse = table.get("remote_sse")) {
        if (sse->value != "AES256" && sse->value != "aws:kms") {
            throw usage_error(fmt::format("invalid value \"{}\" for {}: expected AES256 or aws:kms",
                                          sse->value, sse->origin),
                              fmt::format("fix {}", sse->origin));
        }
        config.s3.sse = sse->value;
    }
    config.s3.sse_kms_key_id = table.get_or("remote_sse_kms_key", "");
    if (!config.s3.sse_kms_key_id.empty() && config.s3.sse != "aws:kms") {
        throw usage_error("a KMS key id is set but the server-side encryption is not aws:kms",
                          "set --remote-sse aws:kms (POSTGRES_BACKUP_REMOTE_SSE)");
    }
    if (auto days = table.get_number("remote_lock_days", 1, 36500)) {
        config.s3.lock_days = static_cast<uint32_t>(*days);
    }
    if (auto mode = table.get("remote_lock_mode")) {
        if (mode->value != "GOVERNANCE" && mode->value != "COMPLIANCE") {
            throw usage_error(
                fmt::format("invalid value \"{}\" for {}: expected GOVERNANCE or COMPLIANCE",
                            mode->value, mode->origin),
                fmt::format("fix {}", mode->origin));
        }
        config.s3.lock_mode = mode->value;
    }
    if (auto kib = table.get_number("remote_bandwidth", 1, 100ULL * 1024 * 1024)) {
        config.s3.bandwidth_limit = *kib * 1024;
    }
    if (auto mib = table.get_number("remote_part_size", 5, 5120)) {
        config.s3.part_size = *mib * 1024 * 1024;
    }
    if (auto parts = table.get_number("remote_max_parts", 1, 10000)) {
        config.s3.max_parts = static_cast<uint32_t>(*parts);
    }
    if (auto seconds = table.get_number("remote_timeout", 1, 3600)) {
        config.s3.stall_timeout = std::chrono::seconds(*seconds);
    }
    if (auto attempts = table.get_number("remote_attempts", 1, 20)) {
        config.s3.attempts = static_cast<int>(*attempts);
    }
    storage::S3Client check(config.s3);  // a malformed endpoint is exit 2 before any dump
    return config;
}

RemoteConfig required_remote_config(const OptionTable& table) {
    std::optional<RemoteConfig> config = remote_config(table);
    if (!config) {
        throw usage_error("--remote needs a store, and none is set",
                          "set POSTGRES_BACKUP_REMOTE or --remote-url to s3://BUCKET/PREFIX");
    }
    return *config;
}

}  // namespace pgward::commands
