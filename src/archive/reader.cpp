#include "archive/reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "archive/decompressor.hpp"
#include "util/error.hpp"

namespace pgward::archive {
namespace {

constexpr int kBlockData = 1;
constexpr int kBlockBlob = 2;
constexpr int kBlockBlobs = 3;
constexpr int kFormatCustom = 1;
constexpr int kNoData = 3;
// Sanity bounds on lengths read from the file: a damaged length must not
// become a huge allocation or an endless loop.
constexpr int64_t kMaxString = 256LL << 20;
constexpr int64_t kMaxChunk = 1LL << 30;
constexpr int64_t kMaxTocEntries = 50'000'000;

class Reader {
  public:
    Reader(ByteSource& source, ArchiveVisitor& visitor) : source_(source), visitor_(visitor) {}

    void run() {
        read_header();
        read_toc();
        read_blocks();
    }

    ArchiveIndex index() {
        read_header();
        read_toc();
        return ArchiveIndex{header_, toc_};
    }

    void blocks_at(FileSource& file, const ArchiveIndex& index,
                   const std::vector<const TocEntry*>& entries) {
        header_ = index.header;
        toc_ = index.toc;
        for (size_t i = 0; i < toc_.size(); ++i) {
            if (toc_[i].has_data()) {
                by_id_.emplace(toc_[i].dump_id, i);
            }
        }
        for (const TocEntry* e : entries) {
            file.seek(e->data_offset);
            pos_ = len_ = 0;
            offset_ = e->data_offset;
            where_ = fmt::format("in the block that the TOC places at byte {}", e->data_offset);
            auto type = try_byte();
            if (!type) {
                damaged(fmt::format("the data block of {} is past the end of the file (truncated)",
                                    display_name(*e)));
            }
            check_block_type(*type);
            int64_t id = integer("a block's dump id");
            if (id != e->dump_id) {
                damaged(fmt::format("the block at the offset of {} belongs to dump id {}",
                                    display_name(*e), id));
            }
            read_block(*type, id, e->data_offset);
        }
    }

  private:
    [[noreturn]] void damaged(const std::string& message) const {
        throw failure(fmt::format("archive damaged at byte {}{}: {}", offset_,
                                  where_.empty() ? "" : " " + where_, message),
                      "this archive cannot be trusted; use another backup");
    }

    // Fills the buffer; false at the end of the input.
    bool fill() {
        if (pos_ < len_) {
            return true;
        }
        len_ = source_.read(buffer_.data(), buffer_.size());
        pos_ = 0;
        return len_ > 0;
    }

    std::optional<int> try_byte() {
        if (!fill()) {
            return std::nullopt;
        }
        ++offset_;
        return static_cast<unsigned char>(buffer_[pos_++]);
    }

    int byte(const char* what) {
        auto b = try_byte();
        if (!b) {
            damaged(fmt::format("the file ends inside {} (truncated)", what));
        }
        return *b;
    }

    // Calls `sink` with up to `size` bytes in buffer-sized pieces.
    template <typename Sink>
    void bytes(uint64_t size, const char* what, Sink&& sink) {
        while (size > 0) {
            if (!fill()) {
                damaged(fmt::format("the file ends inside {} (truncated)", what));
            }
            size_t take = std::min<uint64_t>(size, len_ - pos_);
            sink(buffer_.data() + pos_, take);
            pos_ += take;
            offset_ += take;
            size -= take;
        }
    }

    // The bytes after the current one, when the source's size is known.
    std::optional<uint64_t> bytes_left() const {
        std::optional<uint64_t> total = source_.total_size();
        if (!total) {
            return std::nullopt;
        }
        return *total > offset_ ? *total - offset_ : 0;
    }

    // The fewest bytes a TOC entry takes: every string absent (a length of -1),
    // an empty dependency list.
    uint64_t smallest_toc_entry() const {
        int integers = 15 + (header_.at_least(14) ? 1 : 0) + (header_.at_least(16) ? 1 : 0);
        return static_cast<uint64_t>(integers) * (1 + static_cast<uint64_t>(header_.int_size)) + 1 +
               static_cast<uint64_t>(header_.off_size);
    }

    int64_t integer(const char* what) {
        int sign = byte(what);
        if (sign > 1) {
            damaged(fmt::format("bad sign byte {} in {}", sign, what));
        }
        uint64_t value = 0;
        for (int i = 0; i < header_.int_size; ++i) {
            value |= static_cast<uint64_t>(byte(what)) << (8 * i);
        }
        if (value > static_cast<uint64_t>(INT64_MAX)) {
            damaged(fmt::format("{} out of range", what));
        }
        auto v = static_cast<int64_t>(value);
        return sign != 0 ? -v : v;
    }

    std::optional<std::string> string(const char* what) {
        int64_t length = integer(what);
        if (length < 0) {
            return std::nullopt;
        }
        if (length > kMaxString) {
            damaged(fmt::format("{} of {} bytes is implausible", what, length));
        }
        if (auto left = bytes_left(); left && static_cast<uint64_t>(length) > *left) {
            damaged(fmt::format("{} of {} bytes is longer than the {} bytes left (truncated)", what,
                                length, *left));
        }
        // Never more room than the bytes already read: the length is only a
        // claim until they arrive (from a pipe, the string grows as they do).
        std::string out;
        out.reserve(std::min<uint64_t>(static_cast<uint64_t>(length), len_ - pos_));
        bytes(static_cast<uint64_t>(length), what,
              [&](const char* data, size_t n) { out.append(data, n); });
        return out;
    }

    std::string text(const char* what) { return string(what).value_or(""); }

    void read_header() {
        where_ = "in the header";
        std::string magic;
        for (int i = 0; i < 5; ++i) {
            auto b = try_byte();
            if (!b) {
                damaged(offset_ == 0 ? "the file is empty"
                                     : "the file ends inside the header (truncated)");
            }
            magic += static_cast<char>(*b);
        }
        if (magic != "PGDMP") {
            damaged("not a pg_dump custom-format archive (no PGDMP magic)");
        }
        header_.vmaj = byte("the version");
        header_.vmin = byte("the version");
        header_.vrev = byte("the version");
        if (header_.vmaj != 1 || header_.vmin < 12 || header_.vmin > 16) {
            damaged(
                fmt::format("unsupported archive version {}.{} (this reader knows 1.12 to 1.16)",
                            header_.vmaj, header_.vmin));
        }
        header_.int_size = byte("the integer size");
        header_.off_size = byte("the offset size");
        if (header_.int_size < 1 || header_.int_size > 8 || header_.off_size < 1 ||
            header_.off_size > 8) {
            damaged(fmt::format("implausible integer/offset sizes {}/{}", header_.int_size,
                                header_.off_size));
        }
        header_.format = byte("the format");
        if (header_.format != kFormatCustom) {
            damaged(
                fmt::format("archive format {} is not the custom format (-Fc)", header_.format));
        }
        if (header_.at_least(15)) {
            int algorithm = byte("the compression algorithm");
            if (algorithm > 3) {
                damaged(fmt::format("unknown compression algorithm {}", algorithm));
            }
            header_.compression = static_cast<Compression>(algorithm);
        } else {
            header_.level = static_cast<int>(integer("the compression level"));
            if (header_.level < -1 || header_.level > 9) {
                damaged(fmt::format("implausible compression level {}", header_.level));
            }
            header_.compression = header_.level == 0 ? Compression::None : Compression::Gzip;
        }
        for (int i = 0; i < 7; ++i) {
            integer("the creation date");
        }
        header_.database = text("the database name");
        header_.server_version = text("the server version");
        header_.pg_dump_version = text("the pg_dump version");
    }

    void read_toc() {
        where_ = "in the TOC";
        int64_t count = integer("the TOC entry count");
        if (count < 0 || count > kMaxTocEntries) {
            damaged(fmt::format("implausible TOC entry count {}", count));
        }
        if (auto left = bytes_left()) {
            uint64_t most = *left / smallest_toc_entry();
            if (static_cast<uint64_t>(count) > most) {
                damaged(fmt::format(
                    "implausible TOC entry count {}: the {} bytes left hold at most {} entries",
                    count, *left, most));
            }
        }
        for (int64_t i = 0; i < count; ++i) {
            where_ = fmt::format("in TOC entry {} of {}", i + 1, count);
            TocEntry e;
            e.dump_id = static_cast<int>(integer("a dump id"));
            e.had_dumper = integer("the data flag") != 0;
            e.table_oid = text("a table oid");
            e.oid = text("an oid");
            e.tag = text("a tag");
            e.desc = text("a description");
            e.section = static_cast<int>(integer("a section"));
            e.defn = text("a definition");
            e.drop_stmt = text("a drop statement");
            e.copy_stmt = text("a COPY statement");
            e.schema = text("a schema name");
            e.tablespace = text("a tablespace");
            if (header_.at_least(14)) {
                e.tableam = text("a table access method");
            }
            if (header_.at_least(16)) {
                e.relkind = static_cast<int>(integer("a relkind"));
            }
            e.owner = text("an owner");
            text("the with-oids flag");
            for (int d = 0;; ++d) {
                auto dep = string("a dependency");
                if (!dep) {
                    break;
                }
                if (d > 1'000'000) {
                    damaged("an endless dependency list");
                }
                e.dependencies.push_back(std::atoi(dep->c_str()));
            }
            e.data_state = byte("a data offset flag");
            if (e.data_state < 1 || e.data_state > 3) {
                damaged(fmt::format("bad data offset flag {}", e.data_state));
            }
            for (int b = 0; b < header_.off_size; ++b) {
                e.data_offset |= static_cast<uint64_t>(byte("a data offset")) << (8 * b);
            }
            if (e.has_data() && !by_id_.emplace(e.dump_id, toc_.size()).second) {
                damaged(fmt::format("dump id {} appears twice", e.dump_id));
            }
            toc_.push_back(std::move(e));
        }
        where_.clear();
        visitor_.on_toc(header_, toc_);
    }

    const TocEntry& entry_for_block(int64_t id, int type) {
        auto it = by_id_.find(static_cast<int>(id));
        if (it == by_id_.end()) {
            damaged(
                fmt::format("a data block for dump id {}, which no TOC entry with data has", id));
        }
        const TocEntry& e = toc_[it->second];
        if (!seen_.insert(e.dump_id).second) {
            damaged(fmt::format("a second data block for {}", display_name(e)));
        }
        bool blobs = type == kBlockBlobs;
        if (blobs != e.is_large_objects()) {
            damaged(fmt::format("a {} block for TOC entry \"{}\" ({})",
                                blobs ? "large-object" : "table data", display_name(e), e.desc));
        }
        return e;
    }

    // One compressed stream (a table's data, or one large object).
    uint64_t stream(const TocEntry& e, bool table) {
        auto decompressor = Decompressor::create(header_.compression);
        uint64_t produced = 0;
        auto sink = [&](const char* data, size_t n) {
            produced += n;
            if (table) {
                visitor_.on_table_data(e, data, n);
            } else {
                visitor_.on_large_object_data(e, data, n);
            }
        };
        for (uint64_t chunk = 1;; ++chunk) {
            int64_t length = integer("a chunk length");
            if (length == 0) {
                break;
            }
            if (length < 0 || length > kMaxChunk) {
                damaged(fmt::format("implausible chunk length {}", length));
            }
            std::string error;
            bytes(static_cast<uint64_t>(length), "a data chunk", [&](const char* data, size_t n) {
                if (error.empty()) {
                    error = decompressor->feed(data, n, sink);
                }
            });
            if (!error.empty()) {
                damaged(fmt::format("chunk {}: {}", chunk, error));
            }
        }
        if (std::string error = decompressor->finish(); !error.empty()) {
            damaged(error);
        }
        return produced;
    }

    void read_blocks() {
        size_t expected = by_id_.size();
        for (;;) {
            where_.clear();
            if (seen_.size() == expected) {
                // Every data block is read. pg_dump 17+ writing to stdout may
                // append its rewritten TOC (with offsets) after the data; it
                // holds no data, so the archive's content is complete.
                break;
            }
            uint64_t block_start = offset_;
            auto type = try_byte();
            if (!type) {
                break;
            }
            where_ = fmt::format("in the block starting at byte {}", block_start);
            check_block_type(*type);
            int64_t id = integer("a block's dump id");
            read_block(*type, id, block_start);
        }
        where_ = "at the end of the file";
        for (const TocEntry& e : toc_) {
            if (e.has_data() && seen_.count(e.dump_id) == 0) {
                damaged(fmt::format("no data block for {} (the archive is truncated or damaged)",
                                    display_name(e)));
            }
        }
    }

    void check_block_type(int type) {
        if (type == kBlockBlob) {
            damaged("an old-style single large-object block (archive versions before 1.12)");
        }
        if (type != kBlockData && type != kBlockBlobs) {
            damaged(fmt::format("unknown block type {}", type));
        }
    }

    void read_block(int type, int64_t id, uint64_t block_start) {
        const TocEntry& e = entry_for_block(id, type);
        where_ = fmt::format("in the data block (at byte {}) of {} {}", block_start,
                             type == kBlockData ? "table" : "large objects", display_name(e));
        if (type == kBlockData) {
            visitor_.on_table_begin(e);
            stream(e, true);
            visitor_.on_table_end(e);
            return;
        }
        for (;;) {
            int64_t oid = integer("a large object's oid");
            if (oid == 0) {
                break;
            }
            if (oid < 0 || oid > UINT32_MAX) {
                damaged(fmt::format("implausible large object oid {}", oid));
            }
            visitor_.on_large_object_begin(e, static_cast<uint32_t>(oid));
            uint64_t size = stream(e, false);
            visitor_.on_large_object(e, static_cast<uint32_t>(oid), size);
        }
    }

    ByteSource& source_;
    ArchiveVisitor& visitor_;
    std::array<char, 1 << 16> buffer_{};
    size_t pos_ = 0;
    size_t len_ = 0;
    uint64_t offset_ = 0;
    std::string where_;
    Header header_;
    std::vector<TocEntry> toc_;
    std::map<int, size_t> by_id_;
    std::set<int> seen_;
};

}  // namespace

const char* to_string(Compression c) {
    switch (c) {
        case Compression::None:
            return "none";
        case Compression::Gzip:
            return "gzip";
        case Compression::Lz4:
            return "lz4";
        case Compression::Zstd:
            return "zstd";
    }
    return "unknown";
}

std::string Header::version_text() const {
    return fmt::format("{}.{}", vmaj, vmin);
}

std::string display_name(const TocEntry& entry) {
    if (entry.is_large_objects()) {
        return "large objects (" + entry.tag + ")";
    }
    return entry.schema.empty() ? entry.tag : entry.schema + "." + entry.tag;
}

FileSource::FileSource(const std::filesystem::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
        throw os_error("cannot open", path.string(), errno);
    }
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
        size_ = static_cast<uint64_t>(st.st_size);
    }
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
}

FileSource::~FileSource() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

size_t FileSource::read(char* buffer, size_t size) {
    for (;;) {
        ssize_t n = ::read(fd_, buffer, size);
        if (n >= 0) {
            return static_cast<size_t>(n);
        }
        if (errno != EINTR) {
            throw os_error("cannot read", path_.string(), errno);
        }
    }
}

void FileSource::seek(uint64_t offset) {
    if (::lseek(fd_, static_cast<off_t>(offset), SEEK_SET) < 0) {
        throw os_error("cannot seek in", path_.string(), errno);
    }
}

bool ArchiveIndex::has_offsets() const {
    for (const TocEntry& e : toc) {
        if (e.data_state == 1) {
            return false;
        }
    }
    return true;
}

ArchiveIndex read_index(const std::filesystem::path& path) {
    FileSource source(path);
    ArchiveVisitor none;
    return Reader(source, none).index();
}

void read_blocks_at(const std::filesystem::path& path, const ArchiveIndex& index,
                    const std::vector<const TocEntry*>& entries, ArchiveVisitor& visitor) {
    FileSource source(path);
    Reader(source, visitor).blocks_at(source, index, entries);
}

void read_archive(ByteSource& source, ArchiveVisitor& visitor) {
    Reader(source, visitor).run();
}

void read_archive_file(const std::filesystem::path& path, ArchiveVisitor& visitor) {
    FileSource source(path);
    read_archive(source, visitor);
}

}  // namespace pgward::archive
