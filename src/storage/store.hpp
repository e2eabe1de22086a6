#pragma once

// One interface over where a repository's files live: the local backup
// directory or an S3 bucket under a prefix (as pgBackRest's storage/ does).
// Names are plain file names ("app_20260224T031500Z.dump"); a store maps
// them to paths or keys.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/s3_client.hpp"

namespace pgward::storage {

struct StoredFile {
    std::string name;
    uint64_t size = 0;
};

using Sink = std::function<void(const char* data, size_t size)>;

class Store {
  public:
    virtual ~Store() = default;
    // "/backups" or "s3://bucket/prefix/": what messages name.
    virtual std::string location() const = 0;
    std::string location_of(std::string_view name) const { return location() + std::string(name); }
    // Every file directly in the store, by name.
    virtual std::vector<StoredFile> list() const = 0;
    virtual std::optional<StoredFile> stat(std::string_view name) const = 0;
    // Streams the file into `sink`; returns its bytes.
    virtual uint64_t read(std::string_view name, const Sink& sink) const = 0;
    // Nothing is visible under `name` until all of `source` is.
    virtual void put_file(std::string_view name, const std::filesystem::path& source) = 0;
    virtual void remove(std::string_view name) = 0;
};

class LocalStore final : public Store {
  public:
    explicit LocalStore(std::filesystem::path dir) : dir_(std::move(dir)) {}
    std::string location() const override;
    std::vector<StoredFile> list() const override;
    std::optional<StoredFile> stat(std::string_view name) const override;
    uint64_t read(std::string_view name, const Sink& sink) const override;
    void put_file(std::string_view name, const std::filesystem::path& source) override;
    void remove(std::string_view name) override;

  private:
    std::filesystem::path dir_;
};

// "s3://bucket/prefix": how messages name a bucket and a prefix ("" or ending in '/').
std::string s3_location(std::string_view bucket, std::string_view prefix);

class S3Store final : public Store {
  public:
    // `prefix` is "" or ends in '/'.
    S3Store(S3Client client, std::string prefix)
        : client_(std::move(client)), prefix_(std::move(prefix)) {}
    std::string location() const override;
    std::vector<StoredFile> list() const override;
    std::optional<StoredFile> stat(std::string_view name) const override;
    uint64_t read(std::string_view name, const Sink& sink) const override;
    void put_file(std::string_view name, const std::filesystem::path& source) override;
    void remove(std::string_view name) override;

    const S3Client& client() const { return client_; }
    const std::string& prefix() const { return prefix_; }
    std::string key_of(std::string_view name) const { return prefix_ + std::string(name); }
    // Multipart uploads under the prefix whose names start with `name_prefix`.
    std::vector<MultipartUpload> uploads(std::string_view name_prefix) const;

  private:
    S3Client client_;
    std::string prefix_;
};

}  // namespace pgward::storage
