#pragma once

#include <functional>
#include <memory>
#include <string>

namespace pgward {

// The service's HTTP listener (cpp-httplib): /healthz (200 or 503 with a
// JSON body saying why) and /metrics (Prometheus text). The handlers ask
// `snapshot` for the current answer, so the server holds no state.
class HttpServer {
  public:
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
