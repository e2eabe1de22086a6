#include "archive/summary.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward::archive {
namespace {

// The archive's encoding, from its ENCODING entry: "SET client_encoding = 'LATIN1';".
std::string archive_encoding(const std::vector<TocEntry>& toc) {
    for (const TocEntry& e : toc) {
        size_t open = e.defn.find('\'');
        size_t close = open == std::string::npos ? open : e.defn.find('\'', open + 1);
        if (e.desc == "ENCODING" && close != std::string::npos) {
            return e.defn.substr(open + 1, close - open - 1);
        }
    }
    return {};
}

std::vector<SequenceValue> archive_sequences(const std::vector<TocEntry>& toc) {
    std::vector<SequenceValue> out;
    for (const TocEntry& e : toc) {
        if (e.desc == "SEQUENCE SET") {
            if (std::optional<SequenceValue> value = parse_setval(e.defn)) {
                out.push_back(std::move(*value));
            }
        }
    }
    return out;
}

class Summarizer : public ArchiveVisitor {
  public:
    explicit Summarizer(ArchiveSummary& out)
        : out_(out), large_objects_(out.large_objects_content) {}

    void on_toc(const Header& header, const std::vector<TocEntry>& toc) override {
        out_.header = header;
        out_.encoding = archive_encoding(toc);
        out_.sequences = archive_sequences(toc);
    }
    void on_table_begin(const TocEntry&) override {
        fingerprint_ = TableFingerprint();
        rows_ = std::make_unique<RowStream>(fingerprint_);
    }
    void on_table_data(const TocEntry&, const char* data, size_t size) override {
        rows_->feed(data, size);
    }
    void on_table_end(const TocEntry& entry) override {
        if (!rows_->finish()) {
            throw failure(
                fmt::format("archive damaged: the data of table {} stops in the middle of a row",
                            display_name(entry)),
                "this archive cannot be trusted; use another backup");
        }
        out_.tables.push_back({entry.schema, entry.tag, fingerprint_.rows(),
                               fingerprint_.to_string(), parse_copy_columns(entry.copy_stmt)});
    }
    void on_large_object_begin(const TocEntry&, uint32_t oid) override {
        large_objects_.begin(oid);
    }
    void on_large_object_data(const TocEntry&, const char* data, size_t size) override {
        large_objects_.feed(data, size);
    }
    void on_large_object(const TocEntry&, uint32_t, uint64_t bytes) override {
        large_objects_.end();
        ++out_.large_objects;
        out_.large_object_bytes += bytes;
    }

  private:
    ArchiveSummary& out_;
    TableFingerprint fingerprint_;
    std::unique_ptr<RowStream> rows_;
    LargeObjectHasher large_objects_;
};

}  // namespace

namespace {
// No identifier holds a NUL byte.
std::string table_key(const std::string& schema, const std::string& name) {
    std::string key;
    key.reserve(schema.size() + 1 + name.size());
    key.append(schema).push_back('\0');
    key.append(name);
    return key;
}
}  // namespace

TableLookup::TableLookup(const std::vector<TableSummary>& tables) {
    by_name_.reserve(tables.size());
    for (const TableSummary& t : tables) {
        by_name_.emplace(table_key(t.schema, t.name), &t);
    }
}

const TableSummary* TableLookup::find(const std::string& schema, const std::string& name) const {
    auto found = by_name_.find(table_key(schema, name));
    return found == by_name_.end() ? nullptr : found->second;
}

ArchiveSummary summarize(ByteSource& source) {
    ArchiveSummary summary;
    Summarizer visitor(summary);
    read_archive(source, visitor);
    return summary;
}

ArchiveSummary summarize_file(const std::filesystem::path& path) {
    FileSource source(path);
    return summarize(source);
}

ArchiveSummary summarize_file_parallel(const std::filesystem::path& path, unsigned threads) {
    ArchiveIndex index = read_index(path);
    if (threads < 2 || !index.has_offsets()) {
        return summarize_file(path);
    }
    std::vector<const TocEntry*> blocks;
    for (const TocEntry& e : index.toc) {
        if (e.has_data()) {
            blocks.push_back(&e);
        }
    }
    std::sort(blocks.begin(), blocks.end(),
              [](const TocEntry* a, const TocEntry* b) { return a->data_offset < b->data_offset; });
    // Each block's size is the distance to the next; the biggest go first to
    // the least loaded reader.
    uint64_t file_size = std::filesystem::file_size(path);
    std::vector<std::pair<uint64_t, const TocEntry*>> sized;
    for (size_t i = 0; i < blocks.size(); ++i) {
        uint64_t end = i + 1 < blocks.size() ? blocks[i + 1]->data_offset : file_size;
        sized.emplace_back(end > blocks[i]->data_offset ? end - blocks[i]->data_offset : 0,
                           blocks[i]);
    }
    std::sort(sized.begin(), sized.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<std::vector<const TocEntry*>> groups(threads);
    std::vector<uint64_t> load(threads, 0);
    for (const auto& [size, entry] : sized) {
        size_t least =
            static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
        groups[least].push_back(entry);
        load[least] += size;
    }
    std::vector<ArchiveSummary> parts(threads);
    std::vector<std::exception_ptr> errors(threads);
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
        std::sort(groups[t].begin(), groups[t].end(), [](const TocEntry* a, const TocEntry* b) {
            return a->data_offset < b->data_offset;
        });
        workers.emplace_back([&, t] {
            try {
                Summarizer visitor(parts[t]);
                read_blocks_at(path, index, groups[t], visitor);
            } catch (...) {
                errors[t] = std::current_exception();
            }
        });
    }
    for (std::thread& w : workers) {
        w.join();
    }
    for (const std::exception_ptr& e : errors) {
        if (e) {
            std::rethrow_exception(e);
        }
    }
    ArchiveSummary summary;
    summary.header = index.header;
    summary.encoding = archive_encoding(index.toc);
    summary.sequences = archive_sequences(index.toc);
    std::vector<TableLookup> lookups;
    for (const ArchiveSummary& part : parts) {
        lookups.emplace_back(part.tables);
    }
    for (const TocEntry& e : index.toc) {
        for (const TableLookup& part : lookups) {
            if (const TableSummary* t = e.is_table_data() ? part.find(e.schema, e.tag) : nullptr) {
                summary.tables.push_back(*t);
            }
        }
    }
    for (const ArchiveSummary& part : parts) {
        summary.large_objects += part.large_objects;
        summary.large_object_bytes += part.large_object_bytes;
        summary.large_objects_content.merge(part.large_objects_content);
    }
    return summary;
}

void QueueSource::push(const char* data, size_t size, const std::function<void()>& while_full) {
    std::unique_lock lock(mutex_);
    while (!changed_.wait_for(lock, std::chrono::milliseconds(100),
                              [&] { return chunks_.size() < capacity_ || aborted_; })) {
        if (while_full) {
            lock.unlock();
            while_full();
            lock.lock();
        }
    }
    if (aborted_) {
        return;
    }
    chunks_.emplace_back(data, size);
    changed_.notify_all();
}

void QueueSource::close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    changed_.notify_all();
}

void QueueSource::abort() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    chunks_.clear();
    changed_.notify_all();
}

size_t QueueSource::read(char* buffer, size_t size) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !chunks_.empty() || closed_ || aborted_; });
    if (aborted_ || chunks_.empty()) {
        return 0;
    }
    std::string& front = chunks_.front();
    size_t n = std::min(size, front.size() - front_pos_);
    std::memcpy(buffer, front.data() + front_pos_, n);
    front_pos_ += n;
    if (front_pos_ == front.size()) {
        chunks_.pop_front();
        front_pos_ = 0;
        changed_.notify_all();
    }
    return n;
}

}  // namespace pgward::archive
