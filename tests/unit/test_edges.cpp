// Issue 18's careless edges that need no server: children and their process
// groups, waitpid errors, a child that closes its pipes and runs on, stderr
// lines without end, and what an archive may claim before its bytes exist.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "archive/reader.hpp"
#include "support/temp_dir.hpp"
#include "util/error.hpp"
#include "util/process.hpp"

// The largest single allocation while `g_track` is set: what a claimed length
// makes the reader allocate before the bytes exist.
namespace {
std::atomic<bool> g_track{false};
std::atomic<size_t> g_largest{0};

void* tracked_alloc(size_t size) {
    if (g_track.load(std::memory_order_relaxed)) {
        size_t seen = g_largest.load(std::memory_order_relaxed);
        while (size > seen && !g_largest.compare_exchange_weak(seen, size)) {
        }
    }
    if (void* p = std::malloc(size == 0 ? 1 : size)) {
        return p;
    }
    throw std::bad_alloc();
}
}  // namespace

void* operator new(size_t size) {
    return tracked_alloc(size);
}
void* operator new[](size_t size) {
    return tracked_alloc(size);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, size_t) noexcept {
    std::free(p);
}

namespace pgward {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// True once `pid` is gone (or a zombie nobody reaps, as under a bare PID 1).
bool gone(pid_t pid) {
    if (::kill(pid, 0) != 0) {
        return errno == ESRCH;
    }
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z';
}

template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate()) {
            return true;
        }
        std::this_thread::sleep_for(20ms);
    }
    return predicate();
}

Command shell(const std::string& script) {
    Command command;
    command.argv = {"/bin/sh", "-c", script};
    return command;
}

// The first line the child writes to stdout.
std::string first_line(const Child& child) {
    std::string line;
    char c = 0;
    while (::read(child.stdout_fd(), &c, 1) == 1 && c != '\n') {
        line += c;
    }
    return line;
}

TEST(ChildEdges, TerminateKillsTheGrandchildrenOfAShell) {
    Child child = Child::spawn(shell("sleep 1000 & echo $!; sleep 1000"));
    pid_t grandchild = std::stoi(first_line(child));
    ASSERT_GT(grandchild, 0);
    child.terminate(500ms);
    bool killed = eventually([&] { return gone(grandchild); }, 5s);
    EXPECT_TRUE(killed) << "the shell's background sleep " << grandchild
                        << " outlived the shell's termination";
    if (!killed) {
        ::kill(grandchild, SIGKILL);
    }
}

TEST(ChildEdges, TheChildLeadsAProcessGroupOfItsOwn) {
    Child child = Child::spawn(shell("sleep 1000"));
    EXPECT_EQ(::getpgid(child.pid()), child.pid());
    EXPECT_NE(::getpgid(child.pid()), ::getpgrp());
}

TEST(ChildEdges, AFailedWaitpidIsAnErrorWithItsErrnoNotExitCodeMinusOne) {
    Child child = Child::spawn(shell("exit 3"));
    const pid_t pid = child.pid();
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);  // reaped behind the Child's back
    std::string message;
    try {
        ExitStatus result = child.wait();
        message = "no error but " + result.describe();
    } catch (const Error& e) {
        message = e.what();
    }
    EXPECT_EQ(message, "cannot wait for sh (pid " + std::to_string(pid) + "): No child processes");
}

TEST(ChildEdges, APumpOverAChildThatClosedItsPipesStillTicks) {
    // Both pipes closed, the child runs on: the watchdog (on_tick) must end it.
    Child child = Child::spawn(shell("exec >/dev/null 2>&1; exec sleep 1000"));
    const pid_t pid = child.pid();
    auto deadline = std::chrono::steady_clock::now() + 1s;
    PumpHandlers handlers;
    handlers.on_tick = [&] {
        if (std::chrono::steady_clock::now() > deadline) {
            throw failure("the watchdog's limit passed");
        }
    };
    auto pumped = std::async(std::launch::async,
                             [&] { return test::error_message([&] { pump(child, handlers); }); });
    if (pumped.wait_for(20s) != std::future_status::ready) {
        ADD_FAILURE() << "pump still waiting 20 s after the child closed its pipes";
        ::kill(pid, SIGKILL);
    }
    EXPECT_EQ(pumped.get(), "the watchdog's limit passed");
}

TEST(ChildEdges, AStderrLineWithoutANewlineKeepsItsHeadAndTail) {
    // 3,000,000 bytes of one line, then a short one, then one without an end.
    Child child = Child::spawn(
        shell("{ printf HEAD; head -c 3000000 /dev/zero | tr '\\000' x; printf 'TAIL\\nshort\\n'; "
              "head -c 1000000 /dev/zero | tr '\\000' y; } >&2"));
    std::vector<std::string> lines;
    PumpHandlers handlers;
    handlers.on_stderr_line = [&](std::string_view line) { lines.emplace_back(line); };
    ExitStatus status = pump(child, handlers);
    EXPECT_TRUE(status.ok());
    ASSERT_EQ(lines.size(), 3U);
    const size_t side = size_t{64} << 10;
    const std::string marker = "[... " + std::to_string(3000008 - 2 * side) + " bytes elided ...]";
    EXPECT_EQ(lines[0].size(), 2 * side + marker.size());
    EXPECT_EQ(lines[0].substr(0, 4), "HEAD");
    EXPECT_EQ(lines[0].substr(lines[0].size() - 4), "TAIL");
    EXPECT_NE(lines[0].find(marker), std::string::npos) << lines[0].substr(side, 80);
    EXPECT_EQ(lines[1], "short");
    EXPECT_LE(lines[2].size(), 2 * side + 64);
}

TEST(HeadTailTextEdges, ShortTextIsKeptWholeAndLongTextKeepsWholeCharacters) {
    HeadTailText small(8);
    small.append("0123456789abcdef");  // exactly both sides: nothing cut
    EXPECT_EQ(small.str(), "0123456789abcdef");
    EXPECT_EQ(small.elided(), 0U);

    HeadTailText text(4);
    // "é" is two bytes: the head's fourth byte and the tail's first would cut one.
    text.append("abcé");
    text.append(std::string(100, '-'));
    text.append("éxyz");
    EXPECT_EQ(text.str(), "abc[... 104 bytes elided ...]xyz");
    text.clear();
    EXPECT_TRUE(text.empty());
    EXPECT_EQ(text.str(), "");
}

// The header of a custom-format archive of version 1.14 (4-byte integers).
class ArchiveBytes {
  public:
    ArchiveBytes() {
        bytes_ = "PGDMP";
        bytes_ += {1, 14, 0, 4, 8, 1};
        integer(-1);  // compression level: default
        for (int i = 0; i < 7; ++i) {
            integer(0);  // creation date
        }
    }
    ArchiveBytes& integer(int64_t value) {
        bytes_ += static_cast<char>(value < 0 ? 1 : 0);
        uint64_t magnitude = static_cast<uint64_t>(value < 0 ? -value : value);
        for (int i = 0; i < 4; ++i) {
            bytes_ += static_cast<char>((magnitude >> (8 * i)) & 0xFF);
        }
        return *this;
    }
    ArchiveBytes& text(const std::string& value) {
        integer(static_cast<int64_t>(value.size()));
        bytes_ += value;
        return *this;
    }
    const std::string& bytes() const { return bytes_; }

  private:
    std::string bytes_;
};

// A pipe: bytes without a known total.
class PipeSource : public archive::ByteSource {
  public:
    explicit PipeSource(std::string bytes) : bytes_(std::move(bytes)) {}
    size_t read(char* buffer, size_t size) override {
        size_t n = std::min(size, bytes_.size() - at_);
        bytes_.copy(buffer, n, at_);
        at_ += n;
        return n;
    }

  private:
    std::string bytes_;
    size_t at_ = 0;
};

class ArchiveEdges : public test::TempDirTest {
  protected:
    fs::path write(const std::string& bytes) {
        fs::path path = dir_ / "claims.dump";
        std::ofstream(path, std::ios::binary) << bytes;
        return path;
    }
};

TEST_F(ArchiveEdges, ATocEntryCountTheFileCannotHoldIsRejectedBeforeAnyEntry) {
    ArchiveBytes archive;
    archive.text("app").text("15.4").text("15.4").integer(40'000'000);
    fs::path path = write(archive.bytes() + std::string(100, '\0'));
    std::string message = test::error_message([&] { archive::read_index(path); });
    EXPECT_NE(message.find("implausible TOC entry count 40000000: the 100 bytes left hold at "
                           "most 1 entries"),
              std::string::npos)
        << message;
}

TEST_F(ArchiveEdges, AStringLengthIsNotReservedBeforeItsBytesArrive) {
    ArchiveBytes archive;
    archive.integer(200 << 20);  // the database name claims 200 MiB; 10 bytes follow
    std::string bytes = archive.bytes() + "0123456789";

    archive::ArchiveVisitor none;
    PipeSource pipe(bytes);
    g_largest = 0;
    g_track = true;
    std::string from_pipe = test::error_message([&] { archive::read_archive(pipe, none); });
    g_track = false;
    EXPECT_NE(from_pipe.find("the file ends inside the database name (truncated)"),
              std::string::npos)
        << from_pipe;
    EXPECT_LT(g_largest.load(), size_t{1} << 20) << "allocated for bytes that never came";

    fs::path path = write(bytes);
    g_largest = 0;
    g_track = true;
    std::string from_file = test::error_message([&] { archive::read_index(path); });
    g_track = false;
    EXPECT_NE(from_file.find("the database name of 209715200 bytes is longer than the 10 bytes "
                             "left (truncated)"),
              std::string::npos)
        << from_file;
    EXPECT_LT(g_largest.load(), size_t{1} << 20);
}

TEST(ErrorEdges, AFilesystemExceptionKeepsItsPathAndErrno) {
    std::string name(300, 'n');
    std::string message;
    try {
        (void)fs::exists(fs::path("/tmp") / name);
    } catch (const fs::filesystem_error& e) {
        message = filesystem_failure(e).what();
    }
    EXPECT_EQ(message, "cannot access /tmp/" + name + ": File name too long");
}

}  // namespace
}  // namespace pgward
