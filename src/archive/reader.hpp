#pragma once

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pgward::archive {

// A reader of pg_dump's custom archive format (-Fc), written from the format
// as PostgreSQL's src/bin/pg_dump defines it: the header (archive versions
// 1.12 to 1.16, pg_dump 11 to 18), the TOC, and the data blocks (zlib; for
// 1.15+ also lz4, zstd or none), for archives written to a file (with data
// offsets) or to a pipe (without). It reads forward only, in bounded
// buffers: memory stays flat whatever the table size. Any damage throws a
// pgward::Error saying where: the byte offset, the TOC entry or table, the block.

enum class Compression { None, Gzip, Lz4, Zstd };
const char* to_string(Compression c);

struct Header {
    int vmaj = 0, vmin = 0, vrev = 0;
    int int_size = 0;
    int off_size = 0;
    int format = 0;
    Compression compression = Compression::None;
    int level = 0;  // < 1.15: the recorded level (-1 default, 0 none)
    std::string database;
    std::string server_version;
    std::string pg_dump_version;

    std::string version_text() const;
    bool at_least(int minor) const { return vmaj > 1 || (vmaj == 1 && vmin >= minor); }
};

struct TocEntry {
    int dump_id = 0;
    bool had_dumper = false;
    std::string table_oid, oid;
    std::string tag, desc, defn, drop_stmt, copy_stmt, schema, tablespace, tableam, owner;
    int section = 0;
    int relkind = 0;
    std::vector<int> dependencies;
    int data_state = 0;  // 1 offset not set (pipe), 2 offset set, 3 no data
    uint64_t data_offset = 0;

    bool has_data() const { return data_state == 1 || data_state == 2; }
    bool is_table_data() const { return desc == "TABLE DATA"; }
    bool is_large_objects() const { return desc == "BLOBS"; }
};

// Where bytes come from: a file, or the pipe a backup is writing.
class ByteSource {
  public:
    virtual ~ByteSource() = default;
    // Up to `size` bytes; 0 only at the end.
    virtual size_t read(char* buffer, size_t size) = 0;
    // How many bytes there are in all, when that is known (a file, not a
    // pipe): what the archive claims (a TOC entry count, a string's length)
    // is held against it before anything is allocated for it.
    virtual std::optional<uint64_t> total_size() const { return std::nullopt; }
};

class FileSource : public ByteSource {
  public:
    explicit FileSource(const std::filesystem::path& path);
    ~FileSource() override;
    FileSource(const FileSource&) = delete;
    FileSource& operator=(const FileSource&) = delete;
    size_t read(char* buffer, size_t size) override;
    std::optional<uint64_t> total_size() const override { return size_; }
    void seek(uint64_t offset);

  private:
    std::filesystem::path path_;
    int fd_ = -1;
    std::optional<uint64_t> size_;  // a regular file's size at open
};

class ArchiveVisitor {
  public:
    virtual ~ArchiveVisitor() = default;
    virtual void on_toc(const Header&, const std::vector<TocEntry>&) {}
    virtual void on_table_begin(const TocEntry&) {}
    // Decompressed COPY text, in chunks that may split rows anywhere.
    virtual void on_table_data(const TocEntry&, const char*, size_t) {}
    virtual void on_table_end(const TocEntry&) {}
    // One large object: begin, its decompressed content in chunks, then its size.
    virtual void on_large_object_begin(const TocEntry&, uint32_t /*oid*/) {}
    virtual void on_large_object_data(const TocEntry&, const char*, size_t) {}
    virtual void on_large_object(const TocEntry&, uint32_t /*oid*/, uint64_t /*bytes*/) {}
};

// The header and TOC of an archive file, read without its data.
struct ArchiveIndex {
    Header header;
    std::vector<TocEntry> toc;

    // True when every entry with data records where its block starts (the
    // archive was written to a seekable file), so blocks can be read apart.
    bool has_offsets() const;
};
ArchiveIndex read_index(const std::filesystem::path& path);

// Reads the data blocks of `entries` (from `index`, each with an offset),
// each where its offset says; the visitor sees them in the given order.
void read_blocks_at(const std::filesystem::path& path, const ArchiveIndex& index,
                    const std::vector<const TocEntry*>& entries, ArchiveVisitor& visitor);

// Reads the whole archive; throws on any damage or truncation.
void read_archive(ByteSource& source, ArchiveVisitor& visitor);
void read_archive_file(const std::filesystem::path& path, ArchiveVisitor& visitor);

// "schema.table" of a TOC entry, for messages.
std::string display_name(const TocEntry& entry);

}  // namespace pgward::archive
