#include "service/http_server.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <list>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward {

// Why not cpp-httplib, which this used to be: the version Debian 12 ships
// (0.11.4) reads a request line or a header line of any length into memory,
// any number of headers, and the whole body of any POST before routing; its
// read timeout is per recv(), so a client sending a byte every few seconds
// holds one of its worker threads for ever, and a handful of such clients
// leave none for a scraper. None of that can be bounded through its API.

namespace {

using SteadyClock = std::chrono::steady_clock;

struct Connection {
    enum class Phase { Reading, Writing, Lingering };
    int fd = -1;
    Phase phase = Phase::Reading;
    SteadyClock::time_point deadline;
    std::string head;  // at most kMaxRequestHead bytes
    std::string out;   // the response
    size_t sent = 0;
};

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
        s.remove_suffix(1);
    }
    return s;
}

const char* reason_phrase(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 400:
            return "Bad Request";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 413:
            return "Content Too Large";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 503:
            return "Service Unavailable";
        default:
            return "Unknown";
    }
}

std::string render(int status, const std::string& content_type, const std::string& body,
                   bool head_only) {
    std::string out = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n", status,
        reason_phrase(status), content_type, body.size());
    if (status == 405) {
        out += "Allow: GET, HEAD\r\n";
    }
    out += "\r\n";
    if (!head_only) {
        out += body;
    }
    return out;
}

std::string error_response(int status, const std::string& message, bool head_only = false) {
    return render(status, "text/plain; charset=utf-8", message + "\n", head_only);
}

}  // namespace

struct HttpServer::Impl {
    Handlers handlers;
    int listen_fd = -1;
    int wake_read = -1;  // a byte on the pipe stops the loop
    int wake_write = -1;
    int port = 0;
    std::list<Connection> connections;
    std::thread thread;

    ~Impl() {
        for (int fd : {listen_fd, wake_read, wake_write}) {
            if (fd >= 0) {
                ::close(fd);
            }
        }
    }

    void loop();
    // false when out of descriptors (the loop stops accepting for a moment)
    bool accept_all(SteadyClock::time_point now);
    // false when the connection is done and to be closed
    bool on_readable(Connection& c, SteadyClock::time_point now);
    bool on_writable(Connection& c, SteadyClock::time_point now);
    void respond(Connection& c, std::string response, SteadyClock::time_point now);
    std::string answer(const std::string& head);
};

std::pair<std::string, int> parse_http_address(const std::string& address,
                                               const std::string& origin) {
    size_t colon = address.rfind(':');
    std::string host = colon == std::string::npos ? "" : address.substr(0, colon);
    std::string port_text = colon == std::string::npos ? "" : address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    bool digits = !port_text.empty() && port_text.size() <= 5 &&
                  port_text.find_first_not_of("0123456789") == std::string::npos;
    int port = digits ? std::stoi(port_text) : -1;
    if (host.empty() || port < 1 || port > 65535) {
        throw usage_error(fmt::format("invalid value \"{}\" for {}: expected host:port, e.g. "
                                      "0.0.0.0:9187",
                                      address, origin),
                          fmt::format("fix {}", origin));
    }
    return {host, port};
}

namespace {

int listen_on(const std::string& host, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) {
        return -1;
    }
    int fd = -1;
    for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
        fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        int yes = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        if (ai->ai_family == AF_INET6) {
            int no = 0;  // [::] also answers IPv4, as it did with cpp-httplib
            ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof no);
        }
        if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
            ::close(fd);
            fd = -1;
        }
    }
    ::freeaddrinfo(found);
    return fd;
}

}  // namespace

HttpServer::HttpServer(const std::string& address, const Handlers& handlers)
    : impl_(std::make_unique<Impl>()) {
    auto [host, port] = parse_http_address(address, "PGWARD_HTTP_ADDR");
    impl_->handlers = handlers;
    impl_->listen_fd = listen_on(host, port);
    if (impl_->listen_fd < 0) {
        throw failure(fmt::format("cannot listen on {} (PGWARD_HTTP_ADDR): the address is in use "
                                  "or not available",
                                  address),
                      "choose another port or unset PGWARD_HTTP_ADDR");
    }
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        throw os_error("cannot create a pipe", "for the HTTP listener", errno);
    }
    impl_->wake_read = pipe_fds[0];
    impl_->wake_write = pipe_fds[1];
    impl_->port = port;
    impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
}

HttpServer::~HttpServer() {
    char byte = 0;
    ssize_t n;
    do {
        n = ::write(impl_->wake_write, &byte, 1);
    } while (n < 0 && errno == EINTR);
    if (impl_->thread.joinable()) {
        impl_->thread.join();
    }
    for (Connection& c : impl_->connections) {
        ::close(c.fd);
    }
}

int HttpServer::port() const {
    return impl_->port;
}

void HttpServer::Impl::loop() {
    std::vector<pollfd> fds;
    bool accepting = true;
    SteadyClock::time_point resume_accept{};
    for (;;) {
        auto now = SteadyClock::now();
        if (!accepting && now >= resume_accept) {
            accepting = true;
        }
        fds.clear();
        fds.push_back({wake_read, POLLIN, 0});
        fds.push_back({accepting ? listen_fd : -1, POLLIN, 0});
        auto next = now + std::chrono::seconds(1);
        for (const Connection& c : connections) {
            fds.push_back(
                {c.fd, static_cast<short>(c.phase == Connection::Phase::Writing ? POLLOUT : POLLIN),
                 0});
            next = std::min(next, c.deadline);
        }
        if (!accepting) {
            next = std::min(next, resume_accept);
        }
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
        int rc = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(wait, 0)) + 1);
        if (rc < 0 && errno != EINTR) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));  // ENOMEM: try again
            continue;
        }
        if (fds[0].revents != 0) {
            return;  // stopping
        }
        now = SteadyClock::now();
        size_t i = 2;
        for (auto it = connections.begin(); it != connections.end(); ++i) {
            short revents = fds[i].revents;
            bool keep = true;
            if (revents != 0) {
                keep = it->phase == Connection::Phase::Writing ? on_writable(*it, now)
                                                               : on_readable(*it, now);
            } else if (now >= it->deadline) {
                if (it->phase == Connection::Phase::Reading) {
                    respond(*it, error_response(408, "request not received in time"), now);
                    keep = on_writable(*it, now);
                } else {
                    keep = false;  // the answer is not read, or lingering is over
                }
            }
            if (keep) {
                ++it;
            } else {
                ::close(it->fd);
                it = connections.erase(it);
            }
        }
        // Out of descriptors: stop polling the listener for a moment, or
        // poll() would return at once for ever.
        if (fds[1].revents != 0 && !accept_all(now)) {
            accepting = false;
            resume_accept = now + std::chrono::milliseconds(100);
        }
    }
}

bool HttpServer::Impl::accept_all(SteadyClock::time_point now) {
    for (;;) {
        int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        if (connections.size() >= kMaxConnections) {
            // Full: the oldest connection goes. A real client is answered in
            // milliseconds, so the oldest is the likeliest to be stalling.
            ::close(connections.front().fd);
            connections.pop_front();
        }
        Connection c;
        c.fd = fd;
        c.deadline = now + kReadTimeout;
        connections.push_back(std::move(c));
    }
}

bool HttpServer::Impl::on_readable(Connection& c, SteadyClock::time_point now) {
    std::array<char, 4096> buffer;
    if (c.phase == Connection::Phase::Lingering) {
        // Whatever the client still sends is dropped, so closing does not
        // reset the connection before it has read the answer.
        for (int reads = 0; reads < 16; ++reads) {
            ssize_t n = ::recv(c.fd, buffer.data(), buffer.size(), 0);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                return false;
            }
            if (n < 0) {
                return true;
            }
        }
        return true;
    }
    size_t room = kMaxRequestHead - c.head.size();
    ssize_t n = ::recv(c.fd, buffer.data(), std::min(room, buffer.size()), 0);
    if (n < 0) {
        return errno == EINTR || errno == EAGAIN;
    }
    if (n == 0) {
        return false;  // closed before a whole request came
    }
    // The blank line that ends the head (CRLF CRLF, or bare LF LF), looked
    // for from just before the new bytes on.
    size_t from = c.head.size() >= 3 ? c.head.size() - 3 : 0;
    c.head.append(buffer.data(), static_cast<size_t>(n));
    size_t crlf = c.head.find("\r\n\r\n", from);
    size_t lf = c.head.find("\n\n", from);
    size_t end = std::min(crlf == std::string::npos ? crlf : crlf + 2,
                          lf == std::string::npos ? lf : lf + 1);
    if (end == std::string::npos) {
        if (c.head.size() >= kMaxRequestHead) {
            respond(c,
                    error_response(431, fmt::format("request line and headers exceed {} bytes",
                                                    kMaxRequestHead)),
                    now);
            return on_writable(c, now);
        }
        return true;
    }
    c.head.resize(end);  // what came after it (a body) is never looked at
    std::string response;
    try {
        response = answer(c.head);
    } catch (const std::exception&) {
        response = error_response(500, "internal error");
    }
    respond(c, std::move(response), now);
    return on_writable(c, now);
}

void HttpServer::Impl::respond(Connection& c, std::string response, SteadyClock::time_point now) {
    c.head.clear();
    c.head.shrink_to_fit();
    c.out = std::move(response);
    c.sent = 0;
    c.phase = Connection::Phase::Writing;
    c.deadline = now + kWriteTimeout;
}

bool HttpServer::Impl::on_writable(Connection& c, SteadyClock::time_point now) {
    while (c.sent < c.out.size()) {
        ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN;
        }
        c.sent += static_cast<size_t>(n);
    }
    c.out.clear();
    c.out.shrink_to_fit();
    ::shutdown(c.fd, SHUT_WR);
    c.phase = Connection::Phase::Lingering;
    c.deadline = now + kLingerTime;
    return true;
}

// The answer to one request head (request line and headers, without the
// blank line). The body, if any, is never read.
std::string HttpServer::Impl::answer(const std::string& head) {
    size_t line_end = head.find('\n');
    std::string_view line = trim(std::string_view(head).substr(0, line_end));
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0) {
        return error_response(400, "malformed request line");
    }
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view path = target.substr(0, target.find('?'));
    const bool head_only = method == "HEAD";
    bool has_body = false;
    std::string_view rest = line_end == std::string::npos
                                ? std::string_view()
                                : std::string_view(head).substr(line_end + 1);
    while (!rest.empty()) {
        size_t eol = rest.find('\n');
        std::string_view header = rest.substr(0, eol);
        rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
        size_t colon = header.find(':');
        if (colon == std::string_view::npos) {
            continue;
        }
        std::string_view name = trim(header.substr(0, colon));
        std::string_view value = trim(header.substr(colon + 1));
        if (iequals(name, "Transfer-Encoding") ||
            (iequals(name, "Content-Length") && value.find_first_not_of('0') != value.npos)) {
            has_body = true;
        }
    }
    const std::function<Response()>* handler = nullptr;
    if (path == "/healthz") {
        handler = &handlers.healthz;
    } else if (path == "/metrics") {
        handler = &handlers.metrics;
    } else {
        return error_response(404, "not found: only /healthz and /metrics", head_only);
    }
    if (method != "GET" && !head_only) {
        return error_response(405, "method not allowed: only GET and HEAD");
    }
    if (has_body) {
        return error_response(413, "a GET or HEAD request carries no body", head_only);
    }
    Response r = (*handler)();
    return render(r.status, r.content_type, r.body, head_only);
}

}  // namespace pgward
