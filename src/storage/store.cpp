#include "storage/store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/files.hpp"

namespace pgward::storage {

std::string LocalStore::location() const {
    std::string text = dir_.string();
    if (text.empty() || text.back() != '/') {
        text += '/';
    }
    return text;
}

std::vector<StoredFile> LocalStore::list() const {
    std::vector<StoredFile> out;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
        std::error_code size_ec;
        if (entry.is_regular_file(size_ec)) {
            uint64_t size = entry.file_size(size_ec);
            if (!size_ec) {
                out.push_back({entry.path().filename().string(), size});
            }
        }
    }
    if (ec) {
        throw os_error("cannot list", dir_.string(), ec.value());
    }
    return out;
}

std::optional<StoredFile> LocalStore::stat(std::string_view name) const {
    std::error_code ec;
    uint64_t size = std::filesystem::file_size(dir_ / name, ec);
    if (ec) {
        return std::nullopt;
    }
    return StoredFile{std::string(name), size};
}

uint64_t LocalStore::read(std::string_view name, const Sink& sink) const {
    return read_file_chunks(dir_ / name, sink);
}

void LocalStore::put_file(std::string_view name, const std::filesystem::path& source) {
    AtomicFile out(dir_ / name, AtomicFile::Publish::NoReplace);
    LocalStore(source.parent_path()).read(source.filename().string(), [&](const char* d, size_t n) {
        out.write(d, n);
    });
    out.commit();
}

void LocalStore::remove(std::string_view name) {
    remove_file(dir_ / name);
}

std::string s3_location(std::string_view bucket, std::string_view prefix) {
    return fmt::format("s3://{}/{}", bucket, prefix);
}

std::string S3Store::location() const {
    return s3_location(client_.settings().bucket, prefix_);
}

std::vector<StoredFile> S3Store::list() const {
    std::vector<StoredFile> out;
    for (const ObjectInfo& object : client_.list(prefix_, true)) {
        std::string_view name = std::string_view(object.key).substr(prefix_.size());
        if (!name.empty() && name.find('/') == std::string_view::npos) {
            out.push_back({std::string(name), object.size});
        }
    }
    return out;
}

std::optional<StoredFile> S3Store::stat(std::string_view name) const {
    auto object = client_.head(key_of(name));
    if (!object) {
        return std::nullopt;
    }
    return StoredFile{std::string(name), object->size};
}

uint64_t S3Store::read(std::string_view name, const Sink& sink) const {
    return client_.get(key_of(name), sink);
}

void S3Store::put_file(std::string_view name, const std::filesystem::path& source) {
    std::string_view type = "application/octet-stream";
    std::string text(name);
    if (text.size() > 5 && text.compare(text.size() - 5, 5, ".json") == 0) {
        type = "application/json";
    } else if (text.size() > 4 && text.compare(text.size() - 4, 4, ".sql") == 0) {
        type = "application/sql";
    }
    client_.put_file(key_of(name), source, type);
}

void S3Store::remove(std::string_view name) {
    client_.remove(key_of(name));
}

std::vector<MultipartUpload> S3Store::uploads(std::string_view name_prefix) const {
    return client_.uploads(prefix_ + std::string(name_prefix));
}

}  // namespace pgward::storage
