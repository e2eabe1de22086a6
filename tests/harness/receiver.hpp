#pragma once

#include <httplib.h>

#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgward::test {

// A local HTTP receiver for alerts and pings, on a free loopback port: every
// GET and POST recorded and answered 200, except 503 under /down/ (a
// receiver that is up but failing).
class Receiver {
  public:
    Receiver();
    ~Receiver();
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;

    std::string url(const std::string& path_and_query) const;
    int port() const { return port_; }

    struct Request {
        std::string method;
        std::string path;
        std::string target;  // path and query, as sent
        std::string body;
    };
    std::vector<Request> requests();
    size_t count(const std::string& method);
    // The body of the first JSON POST whose "event" is `kind`.
    std::optional<nlohmann::json> first_event(const std::string& kind);
    // The body of the newest one.
    std::optional<nlohmann::json> last_event(const std::string& kind);

  private:
    httplib::Server server_;
    int port_ = 0;
    std::thread thread_;
    std::mutex mutex_;
    std::vector<Request> requests_;
};

}  // namespace pgward::test
