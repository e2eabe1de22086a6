#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace pgward {

// Incremental SHA-256 (OpenSSL EVP), so bytes are hashed as they stream.
class Sha256 {
  public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    void update(const void* data, size_t size);
    void update(std::string_view text) { update(text.data(), text.size()); }
    std::string hex_digest();  // finalises; lowercase hex

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(std::string_view data);
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace pgward
