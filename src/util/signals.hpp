#pragma once

namespace pgward {

// SIGTERM/SIGINT (what `docker stop` and Ctrl-C send) are turned into a
// readable file descriptor, so a poll loop notices them between two reads and
// can kill its child and clean up before exiting.
void install_interrupt_handlers();
int interrupt_fd();       // readable once a signal arrived; -1 if not installed
int pending_interrupt();  // the signal number, or 0
const char* signal_name(int signal);

}  // namespace pgward
