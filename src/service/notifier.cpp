#include "service/notifier.hpp"

#include <curl/curl.h>

#include <nlohmann/json.hpp>

#include "util/log.hpp"

namespace pgward {
namespace {

size_t discard(char*, size_t size, size_t count, void*) {
    return size * count;
}

// The URL as logs may show it: scheme, host and port only. Webhook and ping
// services put their secret in the path (Slack's /services/T.../B.../<token>,
// Discord's /api/webhooks/<id>/<token>, healthchecks.io's /<uuid>), the query
// or the userinfo, so none of the three is ever logged.
std::string redact_url(const std::string& url) {
    size_t scheme_end = url.find("://");
    if (scheme_end == std::string::npos) {
        return "(url)";
    }
    size_t host_begin = scheme_end + 3;
    size_t host_end = url.find_first_of("/?#", host_begin);
    std::string authority = url.substr(
        host_begin, host_end == std::string::npos ? std::string::npos : host_end - host_begin);
    size_t at = authority.rfind('@');
    if (at != std::string::npos) {
        authority.erase(0, at + 1);
    }
    return url.substr(0, host_begin) + authority;
}

}  // namespace

Notifier::Notifier(std::optional<std::string> notify_url, std::optional<std::string> ping_url,
                   bool notify_every_success, std::chrono::seconds timeout)
    : notify_url_(std::move(notify_url)),
      ping_url_(std::move(ping_url)),
      notify_every_success_(notify_every_success),
      timeout_(timeout) {
    if (notify_url_ || ping_url_) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        worker_ = std::thread([this] { work(); });
    }
}

Notifier::~Notifier() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (worker_.joinable()) {
        worker_.join();
    }
}

void Notifier::enqueue(Request request) {
    if (!worker_.joinable()) {
        return;
    }
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(request));
    }
    wake_.notify_all();
}

void Notifier::backup_succeeded(const Event& event, bool recovered) {
    if (notify_url_ && (recovered || notify_every_success_)) {
        Event copy = event;
        copy.kind = recovered ? "backup_recovered" : "backup_succeeded";
        nlohmann::ordered_json body{{"event", copy.kind},
                                    {"database", copy.database},
                                    {"at", copy.at},
                                    {"file", copy.detail},
                                    {"healthy", true}};
        enqueue({*notify_url_, body.dump()});
    }
}

void Notifier::backup_failed(const Event& event) {
    if (notify_url_) {
        nlohmann::ordered_json body{{"event", "backup_failed"},
                                    {"database", event.database},
                                    {"at", event.at},
                                    {"reason", event.detail},
                                    {"consecutive_failures", event.consecutive_failures},
                                    {"healthy", false}};
        enqueue(
            {*notify_url_, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
    }
}

void Notifier::offsite_finished(const Event& event, bool success, bool recovered) {
    if (!notify_url_ || (success && !recovered && !notify_every_success_)) {
        return;
    }
    std::string kind =
        !success ? "offsite_failed" : (recovered ? "offsite_recovered" : "offsite_succeeded");
    nlohmann::ordered_json body{{"event", kind}, {"database", event.database}, {"at", event.at}};
    body[success ? "store" : "reason"] = event.detail;
    if (!success) {
        body["consecutive_failures"] = event.consecutive_failures;
    }
    body["healthy"] = success;
    enqueue({*notify_url_, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
}

void Notifier::wal_changed(const Event& event, bool healthy) {
    if (!notify_url_) {
        return;
    }
    nlohmann::ordered_json body{{"event", healthy ? "wal_recovered" : "wal_failing"},
                                {"database", event.database},
                                {"at", event.at}};
    if (!healthy) {
        body["reason"] = event.detail;
    }
    body["healthy"] = healthy;
    enqueue({*notify_url_, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
}

void Notifier::wal_timeline_switched(const Event& event) {
    if (!notify_url_) {
        return;
    }
    const nlohmann::ordered_json body{{"event", "wal_timeline_switched"},
                                      {"database", event.database},
                                      {"at", event.at},
                                      {"detail", event.detail},
                                      {"healthy", true}};
    enqueue({*notify_url_, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
}

void Notifier::wal_offsite_changed(const Event& event, bool healthy) {
    failing_or_recovered(event, healthy, "wal_offsite_failed", "wal_offsite_recovered");
}

void Notifier::base_backup_changed(const Event& event, bool healthy) {
    failing_or_recovered(event, healthy, "base_backup_failed", "base_backup_recovered");
}

void Notifier::failing_or_recovered(const Event& event, bool healthy, const char* failed,
                                    const char* recovered) {
    if (!notify_url_) {
        return;
    }
    nlohmann::ordered_json body{
        {"event", healthy ? recovered : failed}, {"database", event.database}, {"at", event.at}};
    if (!healthy) {
        body["reason"] = event.detail;
        body["consecutive_failures"] = event.consecutive_failures;
    }
    body["healthy"] = healthy;
    enqueue({*notify_url_, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
}

void Notifier::cycle_finished(bool success) {
    if (!ping_url_) {
        return;
    }
    if (success) {
        enqueue({*ping_url_, std::nullopt});
        return;
    }
    std::string url = *ping_url_;
    while (!url.empty() && url.back() == '/') {
        url.pop_back();
    }
    enqueue({url + "/fail", std::nullopt});
}

void Notifier::drill_finished(const Event& event, bool success, bool recovered) {
    if (!notify_url_ || (success && !recovered && !notify_every_success_)) {
        return;
    }
    std::string kind =
        !success ? "drill_failed" : (recovered ? "drill_recovered" : "drill_succeeded");
    nlohmann::ordered_json body{{"event", kind},
                                {"database", event.database},
                                {"at", event.at},
                                {success ? "report" : "reason", event.detail},
                                {"healthy", success}};
    enqueue({*notify_url_, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
}

void Notifier::drain(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; });
}

void Notifier::work() {
    for (;;) {
        Request request;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) {
                return;  // stopping, nothing left
            }
            request = std::move(queue_.front());
            queue_.pop_front();
            busy_ = true;
        }
        CURL* curl = curl_easy_init();
        long status = 0;
        CURLcode rc = CURLE_FAILED_INIT;
        if (curl != nullptr) {
            curl_slist* headers = nullptr;
            curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
            curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count() * 1000));
            curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &discard);
            curl_easy_setopt(curl, CURLOPT_USERAGENT, "pgward/" PGWARD_VERSION);
            if (request.json_body) {
                headers = curl_slist_append(headers, "Content-Type: application/json");
                curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.json_body->c_str());
            }
            rc = curl_easy_perform(curl);
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
            curl_slist_free_all(headers);
            curl_easy_cleanup(curl);
        }
        if (rc != CURLE_OK || status >= 400) {
            log::warn("alert not delivered",
                      {{"to", request.json_body ? "PGWARD_NOTIFY_URL" : "PGWARD_PING_URL"},
                       {"url", redact_url(request.url)},
                       {"error", rc != CURLE_OK ? curl_easy_strerror(rc)
                                                : "HTTP status " + std::to_string(status)}});
        } else {
            log::info("alert delivered",
                      {{"to", request.json_body ? "PGWARD_NOTIFY_URL" : "PGWARD_PING_URL"},
                       {"url", redact_url(request.url)},
                       {"status", std::to_string(status)}});
        }
        {
            std::lock_guard lock(mutex_);
            busy_ = false;
        }
        wake_.notify_all();
    }
}

}  // namespace pgward
