#pragma once

#include <xxhash.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace pgward::archive {

// 128-bit arithmetic is a GCC/Clang extension; the sum wraps modulo 2^128.
__extension__ typedef unsigned __int128 Uint128;

// fp1: a table's content fingerprint. Each row (its COPY text line without
// the newline) is hashed with XXH3-128; the hashes are summed modulo 2^128.
// Order-independent (a restore may return rows in any order), duplicates
// count (two equal rows add twice), and computable from a stream: the
// archive's COPY data, or a live `COPY ... TO STDOUT`. See docs/fingerprint.md.
class TableFingerprint {
  public:
    void add_row(std::string_view row);
    void add_hash(Uint128 row_hash) {
        sum_ += row_hash;
        ++rows_;
    }

    // Another part of the same set (a sum: the order of parts is free).
    void merge(const TableFingerprint& other) {
        sum_ += other.sum_;
        rows_ += other.rows_;
    }

    uint64_t rows() const { return rows_; }
    std::string to_string() const;  // "fp1:" + 32 lowercase hex digits
    std::string hex() const;        // the 32 hex digits alone
    bool operator==(const TableFingerprint&) const = default;

  private:
    Uint128 sum_ = 0;
    uint64_t rows_ = 0;
};

Uint128 row_hash(std::string_view row);

// lo1: the content fingerprint of a database's large objects. Each object is
// hashed with XXH3-128 over its oid (4 bytes, little-endian) followed by its
// content; the hashes are summed modulo 2^128 like fp1's rows, and counted.
// Written "lo1:" + 32 hex digits. See docs/fingerprint.md.
class LargeObjectHasher {
  public:
    explicit LargeObjectHasher(TableFingerprint& target);
    ~LargeObjectHasher();
    LargeObjectHasher(const LargeObjectHasher&) = delete;
    LargeObjectHasher& operator=(const LargeObjectHasher&) = delete;

    void begin(uint32_t oid);
    void feed(const char* data, size_t size);
    void end();

  private:
    TableFingerprint& target_;
    XXH3_state_t* state_;
};
std::string large_objects_fingerprint_text(const TableFingerprint& fingerprint);

// Feeds COPY text in arbitrary chunks and adds one row per newline, hashing
// incrementally: a row is never held in memory, however long it is. A line
// that is exactly "\." (COPY's end marker) ends the data.
class RowStream {
  public:
    explicit RowStream(TableFingerprint& target);
    ~RowStream();
    RowStream(const RowStream&) = delete;
    RowStream& operator=(const RowStream&) = delete;

    void feed(const char* data, size_t size);
    // Returns false when the data ended without a final newline (a torn row).
    bool finish();

  private:
    void end_row();

    TableFingerprint& target_;
    XXH3_state_t* state_;
    uint64_t row_length_ = 0;
    char first_[2] = {0, 0};
    bool ended_ = false;
};

}  // namespace pgward::archive
