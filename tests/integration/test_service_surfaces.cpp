// What the running service shows to the outside: the HTTP listener (bounded
// in every way an unauthenticated client could push it), the alert URLs in
// its logs (never their secret path or query), and the state file's writers
// (one at a time, under the state file's lock).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "domain/state.hpp"
#include "harness/pg_cluster.hpp"
#include "harness/receiver.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "service/http_server.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// A blocking TCP connection to 127.0.0.1:port; -1 if refused.
int connect_loopback(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

struct Reply {
    int status = 0;  // 0: no answer
    std::string text;
    bool has_header(const std::string& line) const {
        return text.find("\r\n" + line + "\r\n") != std::string::npos;
    }
    std::string body() const {
        size_t end = text.find("\r\n\r\n");
        return end == std::string::npos ? "" : text.substr(end + 4);
    }
};

int status_of(const std::string& text) {
    if (text.rfind("HTTP/1.", 0) != 0 || text.size() < 12) {
        return 0;
    }
    return std::atoi(text.substr(9, 3).c_str());
}

// Reads what is there within `timeout` (until the server closes); at most 1 MiB.
std::string read_for(int fd, std::chrono::milliseconds timeout) {
    std::string text;
    auto deadline = SteadyClock::now() + timeout;
    char buffer[8192];
    while (SteadyClock::now() < deadline && text.size() < (1u << 20)) {
        pollfd p{fd, POLLIN, 0};
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
        if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 1))) <= 0) {
            break;
        }
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) {
            break;
        }
        text.append(buffer, static_cast<size_t>(n));
    }
    return text;
}

// Sends `request` as it is, then reads the answer.
Reply http_exchange(int port, const std::string& request, std::chrono::milliseconds timeout = 5s) {
    Reply reply;
    int fd = connect_loopback(port);
    if (fd < 0) {
        return reply;
    }
    size_t sent = 0;
    while (sent < request.size()) {
        ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        sent += static_cast<size_t>(n);
    }
    reply.text = read_for(fd, timeout);
    reply.status = status_of(reply.text);
    ::close(fd);
    return reply;
}

// Sends `head`, then body bytes as fast as the server takes them, up to
// `body_bytes`, reading whatever answer comes meanwhile (as curl does with an
// early answer) and sending on after it, until the server resets the
// connection, all is sent, or `timeout` passes.
Reply stream_body(int port, const std::string& head, uint64_t body_bytes,
                  std::chrono::milliseconds timeout, uint64_t* body_sent) {
    Reply reply;
    *body_sent = 0;
    int fd = connect_loopback(port);
    if (fd < 0) {
        return reply;
    }
    if (::send(fd, head.data(), head.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(head.size())) {
        ::close(fd);
        return reply;
    }
    const std::string chunk(1 << 16, 'x');
    auto deadline = SteadyClock::now() + timeout;
    char buffer[8192];
    bool sending = true;
    bool reading = true;
    while ((sending || reading) && SteadyClock::now() < deadline) {
        pollfd p{fd, static_cast<short>((reading ? POLLIN : 0) | (sending ? POLLOUT : 0)), 0};
        if (::poll(&p, 1, 100) < 0) {
            break;
        }
        if (reading && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
            if (n > 0) {
                reply.text.append(buffer, static_cast<size_t>(n));
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                reading = false;  // the answer is complete (or the connection reset)
            }
        }
        if (sending && (p.revents & (POLLOUT | POLLERR))) {
            size_t want =
                static_cast<size_t>(std::min<uint64_t>(chunk.size(), body_bytes - *body_sent));
            ssize_t n = ::send(fd, chunk.data(), want, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                sending = false;  // reset by the server
            } else if (n > 0) {
                *body_sent += static_cast<uint64_t>(n);
                sending = *body_sent < body_bytes;
            }
        }
    }
    ::close(fd);
    reply.status = status_of(reply.text);
    return reply;
}

// A /proc/PID/status field in kB.
uint64_t proc_status_kb(pid_t pid, const std::string& field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field + ":", 0) == 0) {
            return std::stoull(line.substr(field.size() + 1));
        }
    }
    return 0;
}

class ServiceSurfaceTest : public ScratchDirTest {
  protected:
    ServiceSurfaceTest() : ScratchDirTest("surfaces") {}
    static void SetUpTestSuite() {
        PgCluster& c = PgCluster::instance();
        c.create_database("surf");
        c.exec("surf",
               "CREATE TABLE users(id int, telegram_user_id bigint); "
               "INSERT INTO users SELECT g, g FROM generate_series(1, 100) g;");
    }

    Env env(Env extra = {}) const { return pg_env("surf", dir_, std::move(extra)); }

    std::optional<ServiceState> state() const {
        try {
            return load_state(dir_ / state_file_name("surf"));
        } catch (...) {
            return std::nullopt;
        }
    }

    // `pgward run` with the listener on a free port, no backup before the
    // first interval (so no pg_dump runs while memory is measured).
    std::unique_ptr<BackgroundPgward> start_listener(int port) {
        auto service = std::make_unique<BackgroundPgward>(
            std::vector<std::string>{"run"},
            env({{"PGWARD_HTTP_ADDR", "127.0.0.1:" + std::to_string(port)},
                 {"POSTGRES_BACKUP_ON_START", "false"},
                 {"POSTGRES_BACKUP_INTERVAL_SECONDS", "86400"}}));
        bool up = eventually(
            [&] {
                return http_exchange(port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 1s).status;
            },
            15s);
        EXPECT_TRUE(up) << "the listener never answered";
        return service;
    }

    static void stop(BackgroundPgward& service) {
        ::kill(service.pid(), SIGTERM);
        auto r = service.wait(15s);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
    }
};

TEST_F(ServiceSurfaceTest, ListenerAnswersOnlyGetAndHeadOfItsTwoPaths) {
    int port = free_loopback_port();
    auto service = start_listener(port);
    Reply get = http_exchange(port, "GET /healthz?probe=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_TRUE(get.status == 200 || get.status == 503) << get.text;
    EXPECT_TRUE(get.body().find("\"healthy\"") != std::string::npos) << get.text;
    Reply head = http_exchange(port, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(head.status, 200) << head.text;
    EXPECT_TRUE(head.body().empty()) << head.text;
    Reply metrics = http_exchange(port, "GET /metrics HTTP/1.0\r\n\r\n");
    EXPECT_EQ(metrics.status, 200) << metrics.text;
    EXPECT_TRUE(metrics.has_header("Content-Type: text/plain; version=0.0.4")) << metrics.text;

    Reply post =
        http_exchange(port, "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    EXPECT_EQ(post.status, 405) << post.text;
    EXPECT_TRUE(post.has_header("Allow: GET, HEAD")) << post.text;
    Reply put =
        http_exchange(port, "PUT /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(put.status, 405) << put.text;
    Reply unknown = http_exchange(port, "GET /admin HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(unknown.status, 404) << unknown.text;
    Reply post_unknown = http_exchange(port, "POST /upload HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(post_unknown.status, 404) << post_unknown.text;
    Reply get_with_body =
        http_exchange(port, "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    EXPECT_EQ(get_with_body.status, 413) << get_with_body.text;
    Reply chunked = http_exchange(
        port, "GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    EXPECT_EQ(chunked.status, 413) << chunked.text;
    // 20 KiB of headers, every line short, and one line of 20 KiB: both too large.
    std::string many = "GET /healthz HTTP/1.1\r\nHost: t\r\n";
    for (int i = 0; i < 400; ++i) {
        many += "X-Filler-" + std::to_string(i) + ": " + std::string(40, 'a') + "\r\n";
    }
    Reply too_many = http_exchange(port, many + "\r\n");
    EXPECT_EQ(too_many.status, 431) << too_many.text.substr(0, 200);
    Reply too_long = http_exchange(
        port, "GET /healthz HTTP/1.1\r\nX-Long: " + std::string(20 << 10, 'a') + "\r\n\r\n");
    EXPECT_EQ(too_long.status, 431) << too_long.text.substr(0, 200);
    Reply garbage = http_exchange(port, "hello\r\n\r\n");
    EXPECT_EQ(garbage.status, 400) << garbage.text;
    // Still serving after all of that.
    EXPECT_NE(http_exchange(port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").status, 0);
    stop(*service);
}

TEST_F(ServiceSurfaceTest, HugeRequestBodiesAreRefusedUnreadAndMemoryStaysSmall) {
    int port = free_loopback_port();
    auto service = start_listener(port);
    const pid_t pid = service->pid();
    const uint64_t rss_before_kb = proc_status_kb(pid, "VmRSS");
    const uint64_t hwm_before_kb = proc_status_kb(pid, "VmHWM");
    // Four clients at once, each announcing 1 GiB and streaming up to 64 MiB
    // of it as fast as pgward takes it.
    constexpr int kClients = 4;
    constexpr uint64_t kBody = uint64_t{64} << 20;
    std::vector<Reply> replies(kClients);
    std::vector<uint64_t> sent(kClients);
    std::vector<std::thread> clients;
    auto started = SteadyClock::now();
    for (int i = 0; i < kClients; ++i) {
        clients.emplace_back([&, i] {
            replies[i] =
                stream_body(port,
                            "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Type: "
                            "application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n",
                            kBody, 15s, &sent[i]);
        });
    }
    for (auto& t : clients) {
        t.join();
    }
    double took = std::chrono::duration<double>(SteadyClock::now() - started).count();
    const uint64_t hwm_after_kb = proc_status_kb(pid, "VmHWM");
    const uint64_t rss_after_kb = proc_status_kb(pid, "VmRSS");
    uint64_t total_sent = 0;
    for (int i = 0; i < kClients; ++i) {
        EXPECT_EQ(replies[i].status, 405) << replies[i].text.substr(0, 200);
        total_sent += sent[i];
    }
    std::fprintf(
        stderr,
        "measured: %d clients sent %.1f MiB of body in %.2f s; pgward VmRSS %.1f -> "
        "%.1f MiB, VmHWM %.1f -> %.1f MiB\n",
        kClients, static_cast<double>(total_sent) / (1 << 20), took,
        static_cast<double>(rss_before_kb) / 1024, static_cast<double>(rss_after_kb) / 1024,
        static_cast<double>(hwm_before_kb) / 1024, static_cast<double>(hwm_after_kb) / 1024);
    ASSERT_GT(hwm_before_kb, 0u);
    // Nothing of the bodies is held: the peak grows by less than 8 MiB.
    EXPECT_LT(hwm_after_kb, hwm_before_kb + 8 * 1024);
#if !defined(__SANITIZE_ADDRESS__)
    EXPECT_LT(hwm_after_kb, 40u * 1024);  // a few tens of MB at most, all told
#endif
    // A GET right after is answered at once.
    auto asked = SteadyClock::now();
    EXPECT_NE(http_exchange(port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 3s).status, 0);
    EXPECT_LT(SteadyClock::now() - asked, 2s);
    stop(*service);
}

TEST_F(ServiceSurfaceTest, SlowClientsCannotKeepHealthzFromBeingAnswered) {
    int port = free_loopback_port();
    auto service = start_listener(port);
    // Slowloris: more connections than pgward keeps, each sending a header a
    // byte at a time and never finishing it.
    constexpr int kSlow = 40;
    std::vector<int> slow;
    for (int i = 0; i < kSlow; ++i) {
        int fd = connect_loopback(port);
        ASSERT_GE(fd, 0);
        std::string start = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
        ::send(fd, start.data(), start.size(), MSG_NOSIGNAL);
        slow.push_back(fd);
    }
    std::atomic<bool> trickling{true};
    std::thread trickle([&] {
        while (trickling) {
            for (int fd : slow) {
                ::send(fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            }
            std::this_thread::sleep_for(500ms);
        }
    });
    std::this_thread::sleep_for(1s);
    auto asked = SteadyClock::now();
    Reply normal = http_exchange(port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 3s);
    double took = std::chrono::duration<double>(SteadyClock::now() - asked).count();
    std::fprintf(stderr, "measured: GET /healthz beside %d slow clients answered in %.3f s\n",
                 kSlow, took);
    EXPECT_TRUE(normal.status == 200 || normal.status == 503) << normal.text;
    EXPECT_LT(took, 2.0);
    // A request head has a time limit in all, not per byte: every slow
    // client is let go (408 or closed) within it, though it keeps sending.
    auto closed_by = SteadyClock::now() + HttpServer::kReadTimeout + 3s;
    int closed = 0;
    for (int fd : slow) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(closed_by - SteadyClock::now());
        std::string text = read_for(fd, std::max(left, std::chrono::milliseconds(1)));
        char byte;
        pollfd p{fd, POLLIN, 0};
        bool eof = ::poll(&p, 1, 0) == 1 && ::recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
        closed += (eof || status_of(text) == 408) ? 1 : 0;
    }
    trickling = false;
    trickle.join();
    for (int fd : slow) {
        ::close(fd);
    }
    EXPECT_EQ(closed, kSlow) << "slow clients still held after the read time limit";
    stop(*service);
}

TEST_F(ServiceSurfaceTest, WebhookAndPingSecretsNeverReachLogsOrStatus) {
    Receiver receiver;
    // Slack-style webhook (token in the path, more in the query); a
    // healthchecks.io-style ping whose receiver answers 503 (not delivered).
    const std::string hook = "/services/T000/B000/SECRETTOKEN?x=QUERYSECRET";
    const std::string ping = "/down/0f5e-PINGUUID-SECRET?k=PINGQUERY";
    BackgroundPgward service({"run"},
                             env({{"POSTGRES_BACKUP_INTERVAL_SECONDS", "1"},
                                  {"POSTGRES_BACKUP_RETENTION_COUNT", "2"},
                                  {"PGWARD_NOTIFY_URL", "http://alice:PASSWORDSECRET@127.0.0.1:" +
                                                            std::to_string(receiver.port()) + hook},
                                  {"PGWARD_NOTIFY_EVERY_SUCCESS", "true"},
                                  {"PGWARD_PING_URL", receiver.url(ping)}}));
    ASSERT_TRUE(
        eventually([&] { return receiver.count("POST") >= 2 && receiver.count("GET") >= 2; }, 60s));
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0) << r->err;
    // The deliveries used the whole URL ...
    bool hook_seen = false, ping_seen = false;
    for (const auto& req : receiver.requests()) {
        hook_seen = hook_seen || (req.method == "POST" && req.target == hook);
        ping_seen = ping_seen || (req.method == "GET" && req.target == ping);
    }
    EXPECT_TRUE(hook_seen);
    EXPECT_TRUE(ping_seen);
    // ... and the logs show scheme, host and port only.
    const std::string shown = "url=http://127.0.0.1:" + std::to_string(receiver.port());
    EXPECT_TRUE(contains(r->out, "msg=\"alert delivered\"")) << r->out;
    EXPECT_TRUE(contains(r->out, "msg=\"alert not delivered\"")) << r->out;
    EXPECT_TRUE(contains(r->out, shown + " ") || contains(r->out, shown + "\n")) << r->out;
    std::vector<std::pair<std::string, std::string>> outputs = {{"run stdout", r->out},
                                                                {"run stderr", r->err}};
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"status"}, {"status", "--json"}, {"healthcheck"}, {"list", "--json"}}) {
        RunResult other = run_pgward(args, env());
        outputs.emplace_back(args[0], other.out + other.err);
    }
    for (const std::string& name : list_dir(dir_)) {
        if (fs::is_regular_file(dir_ / name)) {
            outputs.emplace_back(name, slurp(dir_ / name));
        }
    }
    for (const auto& [what, text] : outputs) {
        for (const char* secret : {"SECRETTOKEN", "T000", "B000", "/services", "QUERYSECRET",
                                   "PINGUUID", "/down/", "PINGQUERY", "PASSWORDSECRET", "alice"}) {
            EXPECT_FALSE(contains(text, secret)) << what << " shows " << secret << ":\n" << text;
        }
    }
}

TEST_F(ServiceSurfaceTest, StateWriteWaitsForAnotherWriterInsteadOfRemovingItsTempFile) {
    const fs::path state_path = dir_ / state_file_name("surf");
    fs::path temp = state_path;
    temp += ".tmp";
    // Another writer of the state file, mid-write: it holds the state file's
    // lock and has written part of its temp file.
    int lock_fd = ::open(state_lock_path(state_path).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(lock_fd, 0);
    ASSERT_EQ(::flock(lock_fd, LOCK_EX), 0);
    ServiceState other;
    other.database = "surf";
    other.successes_total = 41;
    write_text(temp, state_to_json(other), 0600);
    struct stat before {};
    ASSERT_EQ(::stat(temp.c_str(), &before), 0);

    BackgroundPgward service({"run"}, env({{"POSTGRES_BACKUP_ON_START", "false"},
                                           {"POSTGRES_BACKUP_INTERVAL_SECONDS", "86400"}}));
    std::this_thread::sleep_for(1500ms);
    // pgward waits: the other writer's temp file is still its own, and
    // nothing was published under the final name.
    struct stat during {};
    EXPECT_EQ(::stat(temp.c_str(), &during), 0) << "pgward removed another writer's temp file";
    EXPECT_EQ(during.st_ino, before.st_ino);
    EXPECT_FALSE(fs::exists(state_path));
    // The other writer publishes and lets go; pgward's own write follows.
    std::error_code renamed;
    fs::rename(temp, state_path, renamed);
    ::close(lock_fd);
    EXPECT_TRUE(eventually(
        [&] {
            auto s = state();
            return s && !s->service_started_at.empty() && s->successes_total == 0;
        },
        15s));
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_FALSE(contains(r->out, "cannot write the state file")) << r->out;
    EXPECT_FALSE(fs::exists(temp));
}

}  // namespace
}  // namespace pgward::test
