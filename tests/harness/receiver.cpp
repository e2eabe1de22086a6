#include "harness/receiver.hpp"

namespace pgward::test {

Receiver::Receiver() {
    auto record = [this](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex_);
        requests_.push_back({req.method, req.path, req.target, req.body});
        res.status = req.path.rfind("/down/", 0) == 0 ? 503 : 200;
    };
    server_.Post(".*", record);
    server_.Get(".*", record);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
}

Receiver::~Receiver() {
    server_.stop();
    thread_.join();
}

std::string Receiver::url(const std::string& path_and_query) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path_and_query;
}

std::vector<Receiver::Request> Receiver::requests() {
    std::lock_guard lock(mutex_);
    return requests_;
}

size_t Receiver::count(const std::string& method) {
    size_t n = 0;
    for (const Request& r : requests()) {
        n += r.method == method ? 1 : 0;
    }
    return n;
}

std::optional<nlohmann::json> Receiver::first_event(const std::string& kind) {
    for (const Request& r : requests()) {
        if (r.method == "POST") {
            nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
            if (!body.is_discarded() && body.value("event", "") == kind) {
                return body;
            }
        }
    }
    return std::nullopt;
}

std::optional<nlohmann::json> Receiver::last_event(const std::string& kind) {
    std::optional<nlohmann::json> newest;
    for (const Request& r : requests()) {
        if (r.method == "POST") {
            nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
            if (!body.is_discarded() && body.value("event", "") == kind) {
                newest = std::move(body);
            }
        }
    }
    return newest;
}

}  // namespace pgward::test
