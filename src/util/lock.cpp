#include "util/lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include "util/error.hpp"

namespace pgward {

std::optional<FileLock> FileLock::try_acquire(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        throw os_error("cannot open lock file", path.string(), errno);
    }
    return lock_open_fd(fd, path);
}

std::optional<FileLock> FileLock::try_acquire_directory(const std::filesystem::path& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        throw os_error("cannot open directory", dir.string(), errno);
    }
    return lock_open_fd(fd, dir);
}

std::optional<FileLock> FileLock::lock_open_fd(int fd, const std::filesystem::path& path) {
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int saved = errno;
        ::close(fd);
        if (saved == EWOULDBLOCK) {
            return std::nullopt;
        }
        throw os_error("cannot lock", path.string(), saved);
    }
    return FileLock(fd);
}

FileLock::~FileLock() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

}  // namespace pgward
