#include "util/error.hpp"

#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>

namespace pgward {

Error os_error(const std::string& what, const std::string& path, int errnum, std::string hint) {
    if (hint.empty()) {
        if (errnum == ENOSPC || errnum == EDQUOT) {
            hint = "free space on that filesystem or point --dir at a larger one";
        } else if (errnum == EACCES || errnum == EPERM || errnum == EROFS) {
            hint = "make the directory writable by the user pgward runs as";
        }
    }
    return failure(what + " " + path + ": " + std::strerror(errnum), std::move(hint));
}

Error filesystem_failure(const std::filesystem::filesystem_error& error) {
    // libstdc++ says "filesystem error: <operation>: <errno text> [<path1>] [<path2>]";
    // the operation is the part before the errno text.
    std::string_view text = error.what();
    constexpr std::string_view kPrefix = "filesystem error: ";
    if (text.substr(0, kPrefix.size()) == kPrefix) {
        text.remove_prefix(kPrefix.size());
    }
    const std::string reason = error.code().message();
    if (size_t at = text.find(": " + reason); at != std::string_view::npos) {
        text = text.substr(0, at);
    }
    std::string what(text);
    if (what == "status" || what == "symlink_status" || what.empty()) {
        what = "cannot access";
    } else if (what.rfind("cannot ", 0) != 0) {
        what = "cannot " + what;
    }
    std::string path = error.path1().string();
    if (!error.path2().empty()) {
        path += " -> " + error.path2().string();
    }
    if (error.code().category() == std::generic_category() ||
        error.code().category() == std::system_category()) {
        return os_error(what, path, error.code().value());
    }
    return failure(what + " " + path + ": " + reason);
}

std::string format_error_line(const Error& error) {
    std::string line = "pgward: " + std::string(error.what());
    if (!error.hint().empty()) {
        line += " (hint: " + error.hint() + ")";
    }
    // One line, whatever a server or a child put into the message.
    for (char& c : line) {
        if (c == '\n' || c == '\r') {
            c = ' ';
        }
    }
    return line;
}

}  // namespace pgward
