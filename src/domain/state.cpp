#include "domain/state.hpp"

#include <cerrno>
#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "domain/json_fields.hpp"
#include "domain/naming.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/lock.hpp"

namespace pgward {
namespace {

constexpr const char* kStateFormat = "pgward-state/1";
// How long a state write waits for another writer of the same file.
constexpr std::chrono::seconds kStateLockWait{10};

}  // namespace

std::string state_file_name(const std::string& database) {
    return ".pgward-" + encode_db_name(database) + ".state.json";
}

std::string state_to_json(const ServiceState& s) {
    nlohmann::ordered_json doc;
    doc["format"] = kStateFormat;
    doc["database"] = s.database;
    doc["interval_seconds"] = s.interval_seconds;
    doc["service_started_at"] = s.service_started_at;
    doc["last_attempt_at"] = optional_json(s.last_attempt_at);
    doc["last_success_at"] = optional_json(s.last_success_at);
    doc["last_success_file"] = optional_json(s.last_success_file);
    doc["last_success_bytes"] = s.last_success_bytes;
    doc["last_success_duration_seconds"] = s.last_success_duration_seconds;
    doc["last_failure_at"] = optional_json(s.last_failure_at);
    doc["last_failure_reason"] = optional_json(s.last_failure_reason);
    doc["consecutive_failures"] = s.consecutive_failures;
    doc["successes_total"] = s.successes_total;
    doc["failures_total"] = s.failures_total;
    doc["retained_count"] = s.retained_count;
    doc["running"] = s.running;
    doc["running_since"] = optional_json(s.running_since);
    doc["last_drill_at"] = optional_json(s.last_drill_at);
    doc["last_drill_success"] = optional_json(s.last_drill_success);
    doc["last_drill_report"] = optional_json(s.last_drill_report);
    doc["last_drill_failure"] = optional_json(s.last_drill_failure);
    doc["drills_succeeded_total"] = s.drills_succeeded_total;
    doc["drills_failed_total"] = s.drills_failed_total;
    doc["remote"] = optional_json(s.remote);
    doc["remote_proof"] = optional_json(s.remote_proof);
    doc["last_remote_success_at"] = optional_json(s.last_remote_success_at);
    doc["last_remote_file"] = optional_json(s.last_remote_file);
    doc["last_remote_duration_seconds"] = s.last_remote_duration_seconds;
    doc["last_remote_failure_at"] = optional_json(s.last_remote_failure_at);
    doc["last_remote_failure_reason"] = optional_json(s.last_remote_failure_reason);
    doc["remote_consecutive_failures"] = s.remote_consecutive_failures;
    doc["remote_successes_total"] = s.remote_successes_total;
    doc["remote_failures_total"] = s.remote_failures_total;
    doc["remote_bytes_total"] = s.remote_bytes_total;
    if (s.wal) {
        const WalStreamState& w = *s.wal;
        doc["wal"] = {{"slot", w.slot},
                      {"slot_exists", w.slot_exists},
                      {"streaming", w.streaming},
                      {"since", w.since},
                      {"checked_at", optional_json(w.checked_at)},
                      {"lag_bytes", optional_json(w.lag_bytes)},
                      {"lag_seconds", optional_json(w.lag_seconds)},
                      {"slot_retained_bytes", optional_json(w.slot_retained_bytes)},
                      {"slot_wal_status", optional_json(w.slot_wal_status)},
                      {"problem", optional_json(w.problem)},
                      {"problem_kind", optional_json(w.problem_kind)},
                      {"alerts_total", w.alerts_total},
                      {"gap", optional_json(w.gap)},
                      {"gap_at", optional_json(w.gap_at)},
                      {"timeline_switch", optional_json(w.timeline_switch)},
                      {"timeline_switch_at", optional_json(w.timeline_switch_at)},
                      {"stopped_because", optional_json(w.stopped_because)},
                      {"offsite_newest", optional_json(w.offsite_newest)},
                      {"offsite_at", optional_json(w.offsite_at)},
                      {"offsite_failure", optional_json(w.offsite_failure)},
                      {"offsite_failure_at", optional_json(w.offsite_failure_at)},
                      {"offsite_failures", w.offsite_failures},
                      {"base_failure", optional_json(w.base_failure)},
                      {"base_failure_at", optional_json(w.base_failure_at)},
                      {"base_failures", w.base_failures},
                      {"last_base_backup_at", optional_json(w.last_base_backup_at)}};
    } else {
        doc["wal"] = nullptr;
    }
    // A reason may quote a server's message in another encoding: never a
    // failure to write the state.
    return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

ServiceState state_from_json(const std::string& text, const std::string& source) {
    nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || doc.value("format", "") != kStateFormat) {
        throw failure("state file " + source + " is not a " + kStateFormat + " document",
                      "it is rewritten by the next backup of `pgward run`");
    }
    try {
        ServiceState s;
        s.database = doc.at("database").get<std::string>();
        s.interval_seconds = doc.value("interval_seconds", uint64_t{0});
        s.service_started_at = doc.value("service_started_at", "");
        s.last_attempt_at = optional_string(doc, "last_attempt_at");
        s.last_success_at = optional_string(doc, "last_success_at");
        s.last_success_file = optional_string(doc, "last_success_file");
        s.last_success_bytes = doc.value("last_success_bytes", uint64_t{0});
        s.last_success_duration_seconds = doc.value("last_success_duration_seconds", 0.0);
        s.last_failure_at = optional_string(doc, "last_failure_at");
        s.last_failure_reason = optional_string(doc, "last_failure_reason");
        s.consecutive_failures = doc.value("consecutive_failures", uint64_t{0});
        s.successes_total = doc.value("successes_total", uint64_t{0});
        s.failures_total = doc.value("failures_total", uint64_t{0});
        s.retained_count = doc.value("retained_count", uint64_t{0});
        s.running = doc.value("running", false);
        s.running_since = optional_string(doc, "running_since");
        s.last_drill_at = optional_string(doc, "last_drill_at");
        if (doc.contains("last_drill_success") && !doc.at("last_drill_success").is_null()) {
            s.last_drill_success = doc.at("last_drill_success").get<bool>();
        }
        s.last_drill_report = optional_string(doc, "last_drill_report");
        s.last_drill_failure = optional_string(doc, "last_drill_failure");
        s.drills_succeeded_total = doc.value("drills_succeeded_total", uint64_t{0});
        s.drills_failed_total = doc.value("drills_failed_total", uint64_t{0});
        s.remote = optional_string(doc, "remote");
        s.remote_proof = optional_string(doc, "remote_proof");
        s.last_remote_success_at = optional_string(doc, "last_remote_success_at");
        s.last_remote_file = optional_string(doc, "last_remote_file");
        s.last_remote_duration_seconds = doc.value("last_remote_duration_seconds", 0.0);
        s.last_remote_failure_at = optional_string(doc, "last_remote_failure_at");
        s.last_remote_failure_reason = optional_string(doc, "last_remote_failure_reason");
        s.remote_consecutive_failures = doc.value("remote_consecutive_failures", uint64_t{0});
        s.remote_successes_total = doc.value("remote_successes_total", uint64_t{0});
        s.remote_failures_total = doc.value("remote_failures_total", uint64_t{0});
        s.remote_bytes_total = doc.value("remote_bytes_total", uint64_t{0});
        if (doc.contains("wal") && doc.at("wal").is_object()) {
            const nlohmann::json& w = doc.at("wal");
            WalStreamState wal;
            wal.slot = w.at("slot").get<std::string>();
            wal.slot_exists = w.value("slot_exists", false);
            wal.streaming = w.value("streaming", false);
            wal.since = w.value("since", "");
            wal.checked_at = optional_string(w, "checked_at");
            if (w.contains("lag_bytes") && !w.at("lag_bytes").is_null()) {
                wal.lag_bytes = w.at("lag_bytes").get<uint64_t>();
            }
            if (w.contains("lag_seconds") && !w.at("lag_seconds").is_null()) {
                wal.lag_seconds = w.at("lag_seconds").get<double>();
            }
            if (w.contains("slot_retained_bytes") && !w.at("slot_retained_bytes").is_null()) {
                wal.slot_retained_bytes = w.at("slot_retained_bytes").get<uint64_t>();
            }
            wal.slot_wal_status = optional_string(w, "slot_wal_status");
            wal.problem = optional_string(w, "problem");
            wal.problem_kind = optional_string(w, "problem_kind");
            wal.alerts_total = w.value("alerts_total", uint64_t{0});
            wal.gap = optional_string(w, "gap");
            wal.gap_at = optional_string(w, "gap_at");
            wal.timeline_switch = optional_string(w, "timeline_switch");
            wal.timeline_switch_at = optional_string(w, "timeline_switch_at");
            wal.stopped_because = optional_string(w, "stopped_because");
            wal.offsite_newest = optional_string(w, "offsite_newest");
            wal.offsite_at = optional_string(w, "offsite_at");
            wal.offsite_failure = optional_string(w, "offsite_failure");
            wal.offsite_failure_at = optional_string(w, "offsite_failure_at");
            wal.offsite_failures = w.value("offsite_failures", uint64_t{0});
            wal.base_failure = optional_string(w, "base_failure");
            wal.base_failure_at = optional_string(w, "base_failure_at");
            wal.base_failures = w.value("base_failures", uint64_t{0});
            wal.last_base_backup_at = optional_string(w, "last_base_backup_at");
            s.wal = std::move(wal);
        }
        return s;
    } catch (const nlohmann::json::exception& e) {
        throw failure("state file " + source + " is malformed: " + e.what());
    }
}

std::optional<ServiceState> load_state(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
        return std::nullopt;
    }
    return state_from_json(read_file(path), path.string());
}

std::filesystem::path state_lock_path(const std::filesystem::path& state_path) {
    std::filesystem::path lock = state_path;
    lock += ".lock";
    return lock;
}

void save_state(const std::filesystem::path& path, const ServiceState& state) {
    // AtomicFile writes "<state>.tmp" and, finding one already there, removes
    // it as a crashed writer's leftover: that is only safe while no other
    // process can be writing the same file, i.e. under a lock every writer of
    // it holds. The database's lock (".pgward-<db>.lock") is not that lock:
    // a backup holds it for hours, and a service (or a `run --once` beside
    // it) records its state while another process backs up, so waiting for
    // it would stall the service and skipping would lose the record. The
    // state file's writers therefore take a lock of their own, held only
    // while they write, and wait for it a bounded time.
    const std::filesystem::path lock_path = state_lock_path(path);
    const auto deadline = std::chrono::steady_clock::now() + kStateLockWait;
    for (;;) {
        if (std::optional<FileLock> lock = FileLock::try_acquire(lock_path)) {
            write_file_atomically(path, state_to_json(state), AtomicFile::Publish::Replace);
            return;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            throw failure(
                fmt::format("cannot write the state file {}: another process has held "
                            "its lock {} for {} s",
                            path.string(), lock_path.filename().string(), kStateLockWait.count()),
                "is a second pgward writing the same directory? the next update retries");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

}  // namespace pgward
