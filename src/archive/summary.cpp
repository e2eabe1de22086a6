#include "archive/summary.hpp"

#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward::archive {
namespace {

class Summarizer : public ArchiveVisitor {
  public:
    explicit Summarizer(ArchiveSummary& out) : out_(out) {}

    void on_toc(const Header& header, const std::vector<TocEntry>& toc) override {
        out_.header = header;
        for (const TocEntry& e : toc) {
            // "SET client_encoding = 'LATIN1';"
            size_t open = e.defn.find('\'');
            size_t close = open == std::string::npos ? open : e.defn.find('\'', open + 1);
            if (e.desc == "ENCODING" && close != std::string::npos) {
                out_.encoding = e.defn.substr(open + 1, close - open - 1);
            }
        }
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
        out_.tables.push_back(
            {entry.schema, entry.tag, fingerprint_.rows(), fingerprint_.to_string()});
    }
    void on_large_object(const TocEntry&, uint32_t, uint64_t bytes) override {
        ++out_.large_objects;
        out_.large_object_bytes += bytes;
    }

  private:
    ArchiveSummary& out_;
    TableFingerprint fingerprint_;
    std::unique_ptr<RowStream> rows_;
};

}  // namespace

const TableSummary* ArchiveSummary::find(const std::string& schema, const std::string& name) const {
    for (const TableSummary& t : tables) {
        if (t.schema == schema && t.name == name) {
            return &t;
        }
    }
    return nullptr;
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

void QueueSource::push(const char* data, size_t size) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return chunks_.size() < capacity_ || aborted_; });
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
