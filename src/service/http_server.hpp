#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>

namespace pgward {

// The service's HTTP listener: /healthz (200 or 503 with a JSON body saying
// why) and /metrics (Prometheus text). The handlers ask for the current
// answer, so the server holds no state.
//
// Anyone who can reach the port can talk to it (the compose file binds all
// of the container's interfaces), so nothing a client sends may make pgward
// hold more than a few MB or keep others from being answered. One thread
// polls every connection (no thread per client) and each request is bounded:
//  - only GET and HEAD of /healthz and /metrics; a request with a body is
//    answered without reading the body (405 wrong method on a known path,
//    404 unknown path, 413 a GET/HEAD with a body);
//  - request line and headers together at most kMaxRequestHead bytes (431);
//  - the whole request head within kReadTimeout of the connection (408);
//  - at most kMaxConnections at once: a new one closes the oldest, so clients
//    that connect and stall (slowloris) cannot crowd out a scraper;
//  - one request per connection (`Connection: close`), the answer written
//    within kWriteTimeout; what the client still sends after it is read and
//    dropped for at most kLingerTime, so the answer is not lost to a reset.
class HttpServer {
  public:
    static constexpr size_t kMaxRequestHead = size_t{8} * 1024;
    static constexpr size_t kMaxConnections = 32;
    static constexpr std::chrono::milliseconds kReadTimeout{5000};
    static constexpr std::chrono::milliseconds kWriteTimeout{5000};
    static constexpr std::chrono::milliseconds kLingerTime{1000};

    struct Response {
        int status = 200;
        std::string content_type;
        std::string body;
    };
    struct Handlers {
        std::function<Response()> healthz;
        std::function<Response()> metrics;
    };

    // Binds at once (so a bad or busy address fails before the first
    // backup) and serves on a thread of its own.
    HttpServer(const std::string& address, const Handlers& handlers);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    int port() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// "host:port" → (host, port); throws a usage error naming PGWARD_HTTP_ADDR.
std::pair<std::string, int> parse_http_address(const std::string& address,
                                               const std::string& origin);

}  // namespace pgward
