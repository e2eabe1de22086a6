#include "storage/sigv4.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "util/error.hpp"
#include "util/sha256.hpp"

namespace pgward::storage {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

using Digest = std::array<unsigned char, 32>;

std::span<const unsigned char> bytes_of(std::string_view text) {
    return {reinterpret_cast<const unsigned char*>(text.data()), text.size()};
}

Digest hmac_sha256(std::span<const unsigned char> key, std::string_view data) {
    Digest digest{};
    unsigned int length = 0;
    const std::span<const unsigned char> message = bytes_of(data);
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), message.data(), message.size(),
             digest.data(), &length) == nullptr ||
        length != digest.size()) {
        throw failure("cannot compute HMAC-SHA256 (OpenSSL)");
    }
    return digest;
}

std::string hex(std::span<const unsigned char> bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string text;
    text.reserve(bytes.size() * 2);
    for (unsigned char byte : bytes) {
        text += kHex[byte >> 4];
        text += kHex[byte & 0xf];
    }
    return text;
}

// ASCII only: std::isalnum and std::tolower follow the locale, the
// signature must not.
bool is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

std::string lowercase(std::string_view text) {
    std::string lower(text);
    for (char& c : lower) {
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
    }
    return lower;
}

bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

std::string trim_and_collapse(std::string_view value) {
    std::string result;
    bool pending_space = false;
    for (char c : value) {
        if (is_blank(c)) {
            pending_space = !result.empty();
            continue;
        }
        if (pending_space) {
            result += ' ';
            pending_space = false;
        }
        result += c;
    }
    return result;
}

// RFC 3986 section 5.2.4, plus AWS's rule that empty segments ("//") go
// too. A path that ended on a directory ("/a/", "/a/.", "/a/b/..") keeps
// its trailing slash.
std::string remove_dot_segments(std::string_view path) {
    std::vector<std::string_view> segments;
    bool directory = false;
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find('/', start);
        if (end == std::string_view::npos) {
            end = path.size();
        }
        const std::string_view segment = path.substr(start, end - start);
        directory = segment.empty() || segment == "." || segment == "..";
        if (segment == "..") {
            if (!segments.empty()) {
                segments.pop_back();
            }
        } else if (!segment.empty() && segment != ".") {
            segments.push_back(segment);
        }
        start = end + 1;
    }
    std::string normalized;
    for (std::string_view segment : segments) {
        normalized += '/';
        normalized += segment;
    }
    if (normalized.empty() || directory) {
        normalized += '/';
    }
    return normalized;
}

std::string canonical_uri(std::string_view path, PathRule rule) {
    if (rule == PathRule::NormalizeAndEncodeAgain) {
        return uri_encode(remove_dot_segments(path), false);
    }
    return path.empty() ? std::string("/") : std::string(path);
}

std::string canonical_query(const SigningRequest& request) {
    std::vector<std::pair<std::string, std::string>> encoded;
    encoded.reserve(request.query.size());
    for (const auto& [name, value] : request.query) {
        encoded.emplace_back(uri_encode(name, true), uri_encode(value, true));
    }
    std::sort(encoded.begin(), encoded.end());
    std::string query;
    for (const auto& [name, value] : encoded) {
        if (!query.empty()) {
            query += '&';
        }
        query += name;
        query += '=';
        query += value;
    }
    return query;
}

// A repeated header is one entry whose values keep the order they were
// sent in: AWS signs "a:1,2", and sorting the values would break it.
std::map<std::string, std::string> canonical_header_map(const SigningRequest& request) {
    std::map<std::string, std::string> headers;
    for (const auto& [name, value] : request.headers) {
        auto [it, inserted] = headers.try_emplace(lowercase(name));
        if (!inserted) {
            it->second += ',';
        }
        it->second += trim_and_collapse(value);
    }
    return headers;
}

std::string joined_names(const std::map<std::string, std::string>& headers) {
    std::string names;
    for (const auto& entry : headers) {
        if (!names.empty()) {
            names += ';';
        }
        names += entry.first;
    }
    return names;
}

std::string credential_scope(const SigningScope& scope) {
    return scope.amz_date.substr(0, 8) + "/" + scope.region + "/" + scope.service + "/aws4_request";
}

Digest signing_key(const SigningScope& scope, const AwsCredentials& credentials) {
    const std::string secret = "AWS4" + credentials.secret_access_key;
    const Digest date = hmac_sha256(bytes_of(secret), scope.amz_date.substr(0, 8));
    const Digest region = hmac_sha256(date, scope.region);
    const Digest service = hmac_sha256(region, scope.service);
    return hmac_sha256(service, "aws4_request");
}

}  // namespace

std::string uri_encode(std::string_view text, bool encode_slash) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string encoded;
    encoded.reserve(text.size());
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (is_unreserved(byte) || (c == '/' && !encode_slash)) {
            encoded += c;
        } else {
            encoded += '%';
            encoded += kHex[byte >> 4];
            encoded += kHex[byte & 0xf];
        }
    }
    return encoded;
}

std::string canonical_request(const SigningRequest& request, PathRule rule) {
    const std::map<std::string, std::string> headers = canonical_header_map(request);
    std::string text = request.method + "\n" + canonical_uri(request.path, rule) + "\n" +
                       canonical_query(request) + "\n";
    for (const auto& [name, value] : headers) {
        text += name;
        text += ':';
        text += value;
        text += '\n';
    }
    text += '\n';
    text += joined_names(headers);
    text += '\n';
    text += request.payload_sha256;
    return text;
}

std::string signed_header_names(const SigningRequest& request) {
    return joined_names(canonical_header_map(request));
}

std::string string_to_sign(const SigningScope& scope, std::string_view canonical_request) {
    return std::string(kAlgorithm) + "\n" + scope.amz_date + "\n" + credential_scope(scope) + "\n" +
           sha256_hex(canonical_request);
}

std::string authorization_header(const SigningRequest& request, const SigningScope& scope,
                                 const AwsCredentials& credentials, PathRule rule) {
    const std::string to_sign = string_to_sign(scope, canonical_request(request, rule));
    const Digest signature = hmac_sha256(signing_key(scope, credentials), to_sign);
    return std::string(kAlgorithm) + " Credential=" + credentials.access_key_id + "/" +
           credential_scope(scope) + ", SignedHeaders=" + signed_header_names(request) +
           ", Signature=" + hex(signature);
}

}  // namespace pgward::storage
