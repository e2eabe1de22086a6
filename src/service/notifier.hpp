#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace pgward {

// Alerts over HTTP (libcurl), sent from a worker thread with a timeout, so
// an alert that cannot be delivered is logged and never blocks or fails a
// backup.
//  - notify_url: a JSON POST on every failure and on the first success after
//    a failure (and on every success with notify_every_success);
//  - ping_url: the healthchecks.io convention, once a cycle: GET <url> when
//    the cycle succeeded (its backup and, if set, its offsite copy), GET
//    <url>/fail when it failed or was degraded.
// Logs show either URL as scheme://host[:port] only: webhook tokens and
// ping UUIDs are in the path, and credentials in the userinfo or query.
class Notifier {
  public:
    struct Event {
        std::string kind;  // backup_failed, backup_recovered, backup_succeeded, offsite_...
        std::string database;
        std::string at;
        std::string detail;  // the failure reason or the new file
        uint64_t consecutive_failures = 0;
    };

    Notifier(std::optional<std::string> notify_url, std::optional<std::string> ping_url,
             bool notify_every_success, std::chrono::seconds timeout);
    ~Notifier();
    Notifier(const Notifier&) = delete;
    Notifier& operator=(const Notifier&) = delete;

    void backup_succeeded(const Event& event, bool recovered);
    void backup_failed(const Event& event);
    void drill_finished(const Event& event, bool success, bool recovered);
    // offsite_failed, offsite_recovered, or offsite_succeeded (every success).
    void offsite_finished(const Event& event, bool success, bool recovered);
    // wal_failing (a new problem) or wal_recovered.
    void wal_changed(const Event& event, bool healthy);
    // wal_timeline_switched: the server moved to a newer timeline (promoted
    // or failed over) and streaming follows it. Not a failure: someone
    // should know the history forked.
    void wal_timeline_switched(const Event& event);
    // wal_offsite_failed (the first of a run of failures) or wal_offsite_recovered:
    // the offsite copy of the WAL and base backups.
    void wal_offsite_changed(const Event& event, bool healthy);
    // base_backup_failed (the first of a run of failures) or base_backup_recovered.
    void base_backup_changed(const Event& event, bool healthy);
    // The ping of a cycle.
    void cycle_finished(bool success);

    // Waits up to `timeout` for queued alerts to go out (used at shutdown).
    void drain(std::chrono::milliseconds timeout);

  private:
    // `failed` with the reason and the count in a row, or `recovered`.
    void failing_or_recovered(const Event& event, bool healthy, const char* failed,
                              const char* recovered);
    struct Request {
        std::string url;
        std::optional<std::string> json_body;  // POST when set, else GET
    };
    void enqueue(Request request);
    void work();

    std::optional<std::string> notify_url_;
    std::optional<std::string> ping_url_;
    bool notify_every_success_;
    std::chrono::seconds timeout_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Request> queue_;
    bool busy_ = false;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace pgward
