#pragma once

// AWS Signature Version 4 (docs.aws.amazon.com, "Signature Version 4 signing
// process"), computed with OpenSSL. Pure functions: no clock, no network.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgward::storage {

struct AwsCredentials {
    std::string access_key_id;
    std::string secret_access_key;
    std::string session_token;  // empty: none
};

struct SigningRequest {
    std::string method;  // "GET", "PUT", ...
    // The path as it goes on the wire, already percent-encoded ("/bucket/a%20b").
    std::string path;
    // Query parameters, not encoded; a valueless one ("?uploads") has "".
    std::vector<std::pair<std::string, std::string>> query;
    // Every header that is sent and signed, "host" included; names in any case.
    std::vector<std::pair<std::string, std::string>> headers;
    // Lowercase hex SHA-256 of the body (of "" for none).
    std::string payload_sha256;
};

struct SigningScope {
    std::string amz_date;  // "20150830T123600Z"
    std::string region;    // "us-east-1"
    std::string service;   // "s3"
};

// RFC 3986 unreserved characters stay, every other byte becomes %XX
// (uppercase); '/' stays when encode_slash is false (object key paths).
std::string uri_encode(std::string_view text, bool encode_slash);

// S3 signs the path as sent; other services normalise it ("/a/./b/../c" ->
// "/a/c") and encode it a second time. The AWS test suite is of the latter.
enum class PathRule { AsSent, NormalizeAndEncodeAgain };

std::string canonical_request(const SigningRequest& request, PathRule rule = PathRule::AsSent);
std::string signed_header_names(const SigningRequest& request);  // "host;x-amz-date"
std::string string_to_sign(const SigningScope& scope, std::string_view canonical_request);
// The value of the Authorization header.
std::string authorization_header(const SigningRequest& request, const SigningScope& scope,
                                 const AwsCredentials& credentials,
                                 PathRule rule = PathRule::AsSent);

}  // namespace pgward::storage
