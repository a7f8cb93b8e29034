// The clock, and the stop signals that wake the runner.
#pragma once

#include "tcpprobe/io/ports.hpp"

namespace tcpprobe::io {

class SystemClock final : public Clock {
public:
    Instant now() const override;
};

/// The first SIGINT/SIGTERM sets a flag and wakes the runner (stop_wake_fd) instead of
/// killing the process, so the run stops in order and destructors remove what it
/// created. A second one exits at once with status 130 (nothing is left behind: the nft
/// table is owned by the process's netlink socket).
void install_stop_signals();
bool stop_requested();
int stop_signal();
/// Readable once a stop signal has arrived (a self-pipe); -1 before install_stop_signals.
int stop_wake_fd();

}  // namespace tcpprobe::io
