#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace pgward {

namespace fs = std::filesystem;

// A file that appears under its final name only complete and durable:
// written as "<final>.tmp" (0600, never through a symlink) in blocks of up to
// 1 MiB, then on commit() fsynced, renamed into place and the directory
// fsynced; if that last fsync fails, a new file is unpublished again.
// Destroyed without a commit, it removes its temp file, so a failure leaves
// nothing half-written.
class AtomicFile {
  public:
    enum class Publish {
        NoReplace,  // an existing file of the final name is never overwritten
        Replace,    // state files: the old version is replaced atomically
    };

    AtomicFile(fs::path final_path, Publish publish);
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile();

    void write(const void* data, size_t size);
    void write(std::string_view text) { write(text.data(), text.size()); }
    // Writes out what is gathered, so that the temp file can be read.
    void flush();
    void commit();

    const fs::path& final_path() const { return final_path_; }
    const fs::path& temp_path() const { return temp_path_; }
    uint64_t bytes_written() const { return bytes_written_; }

  private:
    fs::path final_path_;
    fs::path temp_path_;
    Publish publish_;
    int fd_ = -1;
    bool committed_ = false;
    uint64_t bytes_written_ = 0;
    // Small pieces (pg_dump's pipe hands over a few KiB at a time) are
    // gathered into writes of kBufferSize: fewer system calls, and the same
    // calls for the same data, whatever the pipe's timing.
    static constexpr size_t kBufferSize = size_t{1} << 20;
    std::string buffer_;
};

void write_file_atomically(const fs::path& path, std::string_view content,
                           AtomicFile::Publish publish);

// Writes all of data to fd, retrying short writes and EINTR; throws os_error
// naming `path` on failure.
void write_all(int fd, const void* data, size_t size, const fs::path& path);

void fsync_directory(const fs::path& dir);

// Creates dir (0700, and its parents) if missing; throws if it is not a
// directory or cannot be created.
void ensure_directory(const fs::path& dir);

// Renames without ever replacing an existing `to` (renameat2 RENAME_NOREPLACE,
// falling back to link+unlink on filesystems without it).
void rename_no_replace(const fs::path& from, const fs::path& to);

// Removes a file (a symlink itself, never its target). Missing is not an error.
void remove_file(const fs::path& path);
// The same on a failure path, where the failure being reported matters more:
// a file that cannot be removed is logged with the reason (the next run's
// leftover cleanup takes it), never thrown.
void remove_file_or_warn(const fs::path& path);

std::string read_file(const fs::path& path);
// The same into `into`, whose memory is reused: reading file after file of
// the same size (WAL segments) then costs no new pages.
void read_file_into(const fs::path& path, std::string& into);
// Hands the file to `sink` in pieces of at most `chunk` bytes; returns its bytes.
uint64_t read_file_chunks(const fs::path& path,
                          const std::function<void(const char*, size_t)>& sink,
                          size_t chunk = size_t{1} << 20);

// A private directory (0700) under `parent` for one run's temporary files,
// named for its process: <prefix><pid>-XXXXXX. Directories of that prefix
// whose process is gone (a run killed outright) are removed first; a live
// pid's are left alone. `what` names its use in errors.
fs::path make_private_dir(const fs::path& parent, std::string_view prefix, std::string_view what);
// At most the first `limit` bytes, in one read.
std::string read_file_start(const fs::path& path, size_t limit);

}  // namespace pgward
