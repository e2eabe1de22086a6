#include "service/http_server.hpp"

#include <httplib.h>

#include <thread>

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward {

struct HttpServer::Impl {
    httplib::Server server;
    std::thread thread;
    int port = 0;
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

HttpServer::HttpServer(const std::string& address, const Handlers& handlers)
    : impl_(std::make_unique<Impl>()) {
    auto [host, port] = parse_http_address(address, "PGWARD_HTTP_ADDR");
    auto serve = [](const std::function<Response()>& handler) {
        return [handler](const httplib::Request&, httplib::Response& res) {
            Response r = handler();
            res.status = r.status;
            res.set_content(r.body, r.content_type.c_str());
        };
    };
    impl_->server.Get("/healthz", serve(handlers.healthz));
    impl_->server.Get("/metrics", serve(handlers.metrics));
    if (!impl_->server.bind_to_port(host.c_str(), port)) {
        throw failure(fmt::format("cannot listen on {} (PGWARD_HTTP_ADDR): the address is in use "
                                  "or not available",
                                  address),
                      "choose another port or unset PGWARD_HTTP_ADDR");
    }
    impl_->port = port;
    impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
}

HttpServer::~HttpServer() {
    impl_->server.stop();
    if (impl_->thread.joinable()) {
        impl_->thread.join();
    }
}

int HttpServer::port() const {
    return impl_->port;
}

}  // namespace pgward
