// The host clock in the capture's time base, and stop signals.
#include <signal.h>
#include <time.h>

#include <atomic>

#include "tcpprobe/io/system.hpp"

namespace tcpprobe::io {

Instant SystemClock::now() const {
    // pcap's "host" timestamps on veth and lo come from the realtime clock; deadlines use
    // the same base so a deadline and a capture time compare directly.
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return instant_from_ns(static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec);
}

namespace {
volatile sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }
}  // namespace

void install_stop_signals() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: poll() returns EINTR at once
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() { return g_stop_signal != 0; }
int stop_signal() { return g_stop_signal; }

}  // namespace tcpprobe::io
