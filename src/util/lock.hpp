#pragma once

#include <filesystem>
#include <optional>

namespace pgward {

// A non-blocking exclusive flock on a file, held for the object's lifetime.
// The kernel drops it when the process dies, so a crash never leaves a stale lock.
class FileLock {
  public:
    static std::optional<FileLock> try_acquire(const std::filesystem::path& path);
    // The lock taken on a directory itself: no lock file is left in it.
    static std::optional<FileLock> try_acquire_directory(const std::filesystem::path& dir);

    FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    FileLock& operator=(FileLock&&) = delete;
    FileLock(const FileLock&) = delete;
    ~FileLock();

  private:
    explicit FileLock(int fd) : fd_(fd) {}
    // Takes the flock on `fd` (closed if the lock is held elsewhere).
    static std::optional<FileLock> lock_open_fd(int fd, const std::filesystem::path& path);
    int fd_;
};

}  // namespace pgward
