#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace pgward {

// What kind of failure, which alone decides the exit code (see exit_code()).
enum class ErrorKind {
    Usage,   // a bad flag or value: exit 2, before anything ran
    Failed,  // the operation ran and failed: exit 1
};

// The one error type: a lowercase message saying what failed (and for which
// host/database/file), plus a hint saying what to do. The message reaches the
// user unchanged.
class Error : public std::runtime_error {
  public:
    Error(ErrorKind kind, const std::string& message, std::string hint = {})
        : std::runtime_error(message), kind_(kind), hint_(std::move(hint)) {}

    ErrorKind kind() const { return kind_; }
    const std::string& hint() const { return hint_; }

  private:
    ErrorKind kind_;
    std::string hint_;
};

inline Error usage_error(const std::string& message, std::string hint = {}) {
    return Error(ErrorKind::Usage, message, std::move(hint));
}

inline Error failure(const std::string& message, std::string hint = {}) {
    return Error(ErrorKind::Failed, message, std::move(hint));
}

// An OS call that failed: "<what> <path>: <strerror(errnum)>".
Error os_error(const std::string& what, const std::string& path, int errnum, std::string hint = {});

// A std::filesystem call that threw, as an os_error: what it did, the path
// (and the second path, for a rename or a copy) and the errno's text, e.g.
// "cannot get file size (file_size) /backups/x.dump: Permission denied".
Error filesystem_failure(const std::filesystem::filesystem_error& error);

inline int exit_code(ErrorKind kind) {
    return kind == ErrorKind::Usage ? 2 : 1;
}

// The single line printed for an error: "pgward: <message> (hint: <hint>)".
std::string format_error_line(const Error& error);

}  // namespace pgward
