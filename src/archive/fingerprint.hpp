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

    uint64_t rows() const { return rows_; }
    std::string to_string() const;  // "fp1:" + 32 lowercase hex digits
    bool operator==(const TableFingerprint&) const = default;

  private:
    Uint128 sum_ = 0;
    uint64_t rows_ = 0;
};

Uint128 row_hash(std::string_view row);

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
