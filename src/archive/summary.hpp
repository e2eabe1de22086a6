#pragma once

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "archive/fingerprint.hpp"
#include "archive/reader.hpp"
#include "archive/statements.hpp"

namespace pgward::archive {

struct TableSummary {
    std::string schema;
    std::string name;
    uint64_t rows = 0;
    std::string fingerprint;  // fp1
    // The columns of its COPY statement, in the archive's order (nullopt if
    // the statement could not be read).
    std::optional<std::vector<std::string>> columns;
};

struct ArchiveSummary {
    Header header;
    std::vector<TableSummary> tables;  // in archive order
    uint64_t large_objects = 0;
    uint64_t large_object_bytes = 0;
    TableFingerprint large_objects_content;  // lo1 of every large object
    std::vector<SequenceValue> sequences;    // the SEQUENCE SET entries
    std::string encoding;                    // from the ENCODING entry, e.g. UTF8, LATIN1

    std::string large_objects_fingerprint() const {
        return large_objects_fingerprint_text(large_objects_content);
    }
};

// The tables of a summary by (schema, name): a database can have tens of
// thousands, and every check looks each one up. Holds pointers into `tables`.
class TableLookup {
  public:
    explicit TableLookup(const std::vector<TableSummary>& tables);
    const TableSummary* find(const std::string& schema, const std::string& name) const;

  private:
    std::unordered_map<std::string, const TableSummary*> by_name_;
};

// Reads a whole archive and sums up every table's rows and fp1; a table
// whose data stops mid-row is damage like any other.
ArchiveSummary summarize(ByteSource& source);
ArchiveSummary summarize_file(const std::filesystem::path& path);
// The same, with the tables split over `threads` readers when the archive
// records its data offsets (else one sequential read).
ArchiveSummary summarize_file_parallel(const std::filesystem::path& path, unsigned threads);

// A ByteSource fed by another thread (the backup's pump), bounded so memory
// stays flat: push() waits while `capacity` chunks are queued, calling
// `while_full` every 100 ms of the wait (it may throw: a watchdog, a signal),
// so a reader that stopped reading can never hold the producer forever.
class QueueSource : public ByteSource {
  public:
    explicit QueueSource(size_t capacity = 32) : capacity_(capacity) {}
    void push(const char* data, size_t size, const std::function<void()>& while_full = {});
    void close();  // the end of the stream
    void abort();  // the producer failed: read() reports a truncated stream
    size_t read(char* buffer, size_t size) override;

  private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::string> chunks_;
    size_t front_pos_ = 0;
    size_t capacity_;
    bool closed_ = false;
    bool aborted_ = false;
};

}  // namespace pgward::archive
