#include "util/files.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <functional>
#include <vector>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/log.hpp"

namespace pgward {
namespace {

int open_exclusive(const fs::path& path) {
    return ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

}  // namespace

void write_all(int fd, const void* data, size_t size, const fs::path& path) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw os_error("cannot write", path.string(), errno);
        }
        p += n;
        size -= static_cast<size_t>(n);
    }
}

AtomicFile::AtomicFile(fs::path final_path, Publish publish)
    : final_path_(std::move(final_path)), publish_(publish) {
    temp_path_ = final_path_;
    temp_path_ += ".tmp";
    fd_ = open_exclusive(temp_path_);
    if (fd_ < 0 && errno == EEXIST) {
        // A temp file left by a crashed run (callers hold the directory's
        // lock). If it is a symlink, unlink removes the link, not its target.
        remove_file(temp_path_);
        fd_ = open_exclusive(temp_path_);
    }
    if (fd_ < 0) {
        throw os_error("cannot create", temp_path_.string(), errno);
    }
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
    if (!committed_ && ::unlink(temp_path_.c_str()) != 0 && errno != ENOENT) {
        // A destructor cannot throw; the next run's leftover cleanup retries.
        log::warn("cannot remove an unfinished temp file",
                  {{"file", temp_path_.string()}, {"error", std::strerror(errno)}});
    }
}

void AtomicFile::write(const void* data, size_t size) {
    if (buffer_.empty() && size >= kBufferSize) {
        write_all(fd_, data, size, temp_path_);
    } else {
        buffer_.append(static_cast<const char*>(data), size);
        if (buffer_.size() >= kBufferSize) {
            flush();
        }
    }
    bytes_written_ += size;
}

void AtomicFile::flush() {
    if (!buffer_.empty()) {
        write_all(fd_, buffer_.data(), buffer_.size(), temp_path_);
        buffer_.clear();
    }
}

void AtomicFile::commit() {
    flush();
    if (::fsync(fd_) != 0) {
        // Never retry a failed fsync: the page cache may have dropped the
        // dirty pages, so a second fsync could succeed over lost data.
        throw os_error("cannot fsync", temp_path_.string(), errno);
    }
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
        throw os_error("cannot close", temp_path_.string(), errno);
    }
    if (publish_ == Publish::NoReplace) {
        rename_no_replace(temp_path_, final_path_);
    } else if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
        throw os_error("cannot rename into place", final_path_.string(), errno);
    }
    committed_ = true;
    try {
        fsync_directory(final_path_.parent_path());
    } catch (const Error& e) {
        // The name is not durable, and a failed fsync is never retried: a
        // new file is unpublished again, so a failure never leaves it looking
        // complete. A replaced file cannot be put back; it keeps the new text.
        if (publish_ == Publish::NoReplace && ::unlink(final_path_.c_str()) != 0 &&
            errno != ENOENT) {
            throw failure(std::string(e.what()) + "; and it stays published: " +
                              os_error("cannot remove", final_path_.string(), errno).what(),
                          "delete that file: it may not survive a crash");
        }
        throw;
    }
}

void write_file_atomically(const fs::path& path, std::string_view content,
                           AtomicFile::Publish publish) {
    AtomicFile file(path, publish);
    file.write(content);
    file.commit();
}

void fsync_directory(const fs::path& dir) {
    fs::path target = dir.empty() ? fs::path(".") : dir;
    int fd = ::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        throw os_error("cannot open directory", target.string(), errno);
    }
    int rc = ::fsync(fd);
    int saved = errno;
    ::close(fd);
    if (rc != 0) {
        throw os_error("cannot fsync directory", target.string(), saved);
    }
}

void ensure_directory(const fs::path& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            throw failure("backup directory " + dir.string() + " is not a directory",
                          "point --dir/POSTGRES_BACKUP_DIR at a directory");
        }
        return;
    }
    if (errno != ENOENT) {
        throw os_error("cannot access", dir.string(), errno);
    }
    const bool has_parent = dir.has_parent_path() && dir.parent_path() != dir;
    if (has_parent) {
        ensure_directory(dir.parent_path());
    }
    if (::mkdir(dir.c_str(), 0700) != 0) {
        if (errno != EEXIST) {
            throw os_error("cannot create directory", dir.string(), errno);
        }
        return;  // another process made it
    }
    // A new directory is durable only once its entry in the parent is: the
    // files later fsynced into it must not vanish with it in a crash.
    fsync_directory(has_parent ? dir.parent_path() : fs::path("."));
}

void rename_no_replace(const fs::path& from, const fs::path& to) {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
        return;
    }
    if (errno != EINVAL && errno != ENOSYS) {
        int saved = errno;
        if (saved == EEXIST) {
            throw failure(to.string() + " already exists; pgward never overwrites a backup",
                          "this is a second backup in the same second; run it again");
        }
        throw os_error("cannot rename into place", to.string(), saved);
    }
    if (::link(from.c_str(), to.c_str()) != 0) {
        throw os_error("cannot link into place", to.string(), errno);
    }
    if (::unlink(from.c_str()) != 0 && errno != ENOENT) {
        // Not a rename: the file has two names. Take the new one back.
        Error error = os_error("cannot remove", from.string(), errno);
        if (::unlink(to.c_str()) != 0 && errno != ENOENT) {
            throw failure(std::string(error.what()) + "; and " +
                              os_error("cannot remove", to.string(), errno).what(),
                          "delete both: the file is published under two names");
        }
        throw error;
    }
}

void remove_file(const fs::path& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        throw os_error("cannot remove", path.string(), errno);
    }
}

void remove_file_or_warn(const fs::path& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        log::warn("cannot remove a file a failed operation left",
                  {{"file", path.string()}, {"error", std::strerror(errno)}});
    }
}

std::string read_file_start(const fs::path& path, size_t limit) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw os_error("cannot read", path.string(), errno);
    }
    std::string text(limit, '\0');
    ssize_t n;
    do {
        n = ::read(fd, text.data(), limit);
    } while (n < 0 && errno == EINTR);
    int err = errno;
    ::close(fd);
    if (n < 0) {
        throw os_error("cannot read", path.string(), err);
    }
    text.resize(static_cast<size_t>(n));
    return text;
}

namespace {

// One read(2), again when a signal interrupts it; 0 at the end of the file.
size_t read_some(int fd, char* into, size_t size, const fs::path& path) {
    for (;;) {
        ssize_t n = ::read(fd, into, size);
        if (n >= 0) {
            return static_cast<size_t>(n);
        }
        if (errno != EINTR) {
            throw os_error("cannot read", path.string(), errno);
        }
    }
}

}  // namespace

uint64_t read_file_chunks(const fs::path& path,
                          const std::function<void(const char*, size_t)>& sink, size_t chunk) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw os_error("cannot open", path.string(), errno);
    }
    std::vector<char> buffer(chunk);
    uint64_t total = 0;
    try {
        while (const size_t n = read_some(fd, buffer.data(), buffer.size(), path)) {
            sink(buffer.data(), n);
            total += n;
        }
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
    return total;
}

void read_file_into(const fs::path& path, std::string& into) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw os_error("cannot read", path.string(), errno);
    }
    try {
        // Sized from fstat, read in place. A file whose size says nothing
        // (a pipe, /proc) or that grows meanwhile is read to its end all the
        // same: the buffer doubles.
        struct stat st {};
        into.resize((::fstat(fd, &st) == 0 ? static_cast<size_t>(st.st_size) : 0) + 1);
        size_t used = 0;
        for (;;) {
            if (used == into.size()) {
                into.resize(into.size() * 2);
            }
            const size_t n = read_some(fd, into.data() + used, into.size() - used, path);
            if (n == 0) {
                break;
            }
            used += n;
        }
        into.resize(used);
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
}

std::string read_file(const fs::path& path) {
    std::string text;
    read_file_into(path, text);
    return text;
}

}  // namespace pgward

namespace pgward {
namespace {

void remove_orphaned_private_dirs(const fs::path& parent, std::string_view prefix) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(parent, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind(prefix, 0) != 0) {
            continue;
        }
        const std::string_view rest = std::string_view(name).substr(prefix.size());
        const size_t dash = rest.find('-');
        pid_t pid = 0;
        // Only <pid>-…: a name of an older pgward, or digits that overflow,
        // cannot be told apart from a live run's and are left.
        if (dash == std::string_view::npos) {
            continue;
        }
        const auto [end, parse_error] = std::from_chars(rest.data(), rest.data() + dash, pid);
        if (parse_error != std::errc() || end != rest.data() + dash || pid <= 0) {
            continue;
        }
        std::error_code status_ec;
        if (!fs::is_directory(entry.symlink_status(status_ec))) {
            continue;
        }
        if (::kill(pid, 0) == 0 || errno != ESRCH) {
            continue;
        }
        std::error_code remove_ec;
        fs::remove_all(entry.path(), remove_ec);
        if (!remove_ec) {
            log::warn("removed a temporary directory a killed run left",
                      {{"dir", entry.path().string()}});
        }
    }
}

}  // namespace

fs::path make_private_dir(const fs::path& parent, std::string_view prefix, std::string_view what) {
    remove_orphaned_private_dirs(parent, prefix);
    std::string pattern = (parent / fmt::format("{}{}-XXXXXX", prefix, ::getpid())).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
        throw os_error(fmt::format("cannot make a directory for {} in", what), parent.string(),
                       errno);
    }
    return pattern;
}

}  // namespace pgward
