#include "util/error.hpp"

#include <cerrno>
#include <cstring>

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
