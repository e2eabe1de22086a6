#include "archive/fingerprint.hpp"

#include <fmt/format.h>

#include <cstring>
#include <new>

namespace pgward::archive {
namespace {

// COPY's end-of-data line, after which pg_dump adds only blank lines.
bool is_end_marker(const char* row, uint64_t length) {
    return length == 2 && row[0] == '\\' && row[1] == '.';
}

}  // namespace

Uint128 row_hash(std::string_view row) {
    XXH128_hash_t h = XXH3_128bits(row.data(), row.size());
    return (static_cast<Uint128>(h.high64) << 64) | h.low64;
}

void TableFingerprint::add_row(std::string_view row) {
    add_hash(row_hash(row));
}

std::string TableFingerprint::hex() const {
    return fmt::format("{:016x}{:016x}", static_cast<uint64_t>(sum_ >> 64),
                       static_cast<uint64_t>(sum_));
}

std::string TableFingerprint::to_string() const {
    return "fp1:" + hex();
}

LargeObjectHasher::LargeObjectHasher(TableFingerprint& target)
    : target_(target), state_(XXH3_createState()) {
    if (state_ == nullptr) {
        throw std::bad_alloc();
    }
}

LargeObjectHasher::~LargeObjectHasher() {
    XXH3_freeState(state_);
}

void LargeObjectHasher::begin(uint32_t oid) {
    XXH3_128bits_reset(state_);
    const unsigned char bytes[4] = {
        static_cast<unsigned char>(oid & 0xff), static_cast<unsigned char>((oid >> 8) & 0xff),
        static_cast<unsigned char>((oid >> 16) & 0xff), static_cast<unsigned char>(oid >> 24)};
    XXH3_128bits_update(state_, bytes, sizeof bytes);
}

void LargeObjectHasher::feed(const char* data, size_t size) {
    XXH3_128bits_update(state_, data, size);
}

void LargeObjectHasher::end() {
    XXH128_hash_t h = XXH3_128bits_digest(state_);
    target_.add_hash((static_cast<Uint128>(h.high64) << 64) | h.low64);
}

std::string large_objects_fingerprint_text(const TableFingerprint& fingerprint) {
    return "lo1:" + fingerprint.hex();
}

RowStream::RowStream(TableFingerprint& target) : target_(target), state_(XXH3_createState()) {
    if (state_ == nullptr) {
        throw std::bad_alloc();
    }
    XXH3_128bits_reset(state_);
}

RowStream::~RowStream() {
    XXH3_freeState(state_);
}

void RowStream::end_row() {
    if (is_end_marker(first_, row_length_)) {
        ended_ = true;
    } else {
        XXH128_hash_t h = XXH3_128bits_digest(state_);
        target_.add_hash((static_cast<Uint128>(h.high64) << 64) | h.low64);
    }
    XXH3_128bits_reset(state_);
    row_length_ = 0;
}

void RowStream::feed(const char* data, size_t size) {
    while (size > 0 && !ended_) {
        const void* found = std::memchr(data, '\n', size);
        size_t take =
            found == nullptr ? size : static_cast<size_t>(static_cast<const char*>(found) - data);
        if (found != nullptr && row_length_ == 0) {
            // A whole row in this piece, the common case: XXH3's one-shot
            // hash gives the streaming state's value without its per-row cost.
            if (is_end_marker(data, take)) {
                ended_ = true;
            } else {
                target_.add_hash(row_hash(std::string_view(data, take)));
            }
            data += take + 1;
            size -= take + 1;
            continue;
        }
        if (take > 0) {
            for (size_t i = 0; i < take && row_length_ + i < 2; ++i) {
                first_[row_length_ + i] = data[i];
            }
            XXH3_128bits_update(state_, data, take);
            row_length_ += take;
        }
        if (found == nullptr) {
            return;
        }
        end_row();
        data += take + 1;
        size -= take + 1;
    }
}

bool RowStream::finish() {
    return row_length_ == 0 || ended_;
}

}  // namespace pgward::archive
