#include "util/signals.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

namespace pgward {
namespace {

int pipe_fds[2] = {-1, -1};
std::atomic<int> received{0};

extern "C" void on_interrupt(int signal) {
    int saved = errno;
    received.store(signal);
    if (pipe_fds[1] >= 0) {
        char byte = 1;
        [[maybe_unused]] ssize_t n = ::write(pipe_fds[1], &byte, 1);
    }
    errno = saved;
}

}  // namespace

void install_interrupt_handlers() {
    if (pipe_fds[0] < 0 && ::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        pipe_fds[0] = pipe_fds[1] = -1;
    }
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
}

int interrupt_fd() {
    return pipe_fds[0];
}

int pending_interrupt() {
    return received.load();
}

const char* signal_name(int signal) {
    switch (signal) {
        case SIGTERM:
            return "SIGTERM";
        case SIGINT:
            return "SIGINT";
        case SIGKILL:
            return "SIGKILL";
        case SIGPIPE:
            return "SIGPIPE";
        case SIGSEGV:
            return "SIGSEGV";
        case SIGABRT:
            return "SIGABRT";
        default:
            return strsignal(signal);
    }
}

}  // namespace pgward
