// The host clock in the capture's time base, and stop signals.
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>

#include "tcpprobe/io/system_clock.hpp"

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
// The self-pipe: the handler writes a byte, the runner polls the read end with the
// capture, so a signal that lands between the loop's check and its wait still wakes it.
int g_wake[2] = {-1, -1};

extern "C" void on_stop_signal(int sig) {
    if (g_stop_signal != 0) {
        // A second signal: the user wants out now, whatever the orderly stop is waiting
        // for. _exit closes every descriptor; the kernel deletes the nft table (flags
        // owner) with its netlink socket, and the reserved ports with their sockets.
        static constexpr char msg[] = "tcpprobe: interrupted again, exiting at once\n";
        [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
        ::_exit(130);
    }
    g_stop_signal = sig;
    if (g_wake[1] >= 0) {
        const int saved = errno;
        [[maybe_unused]] auto n = ::write(g_wake[1], "!", 1);
        errno = saved;
    }
}
}  // namespace

void install_stop_signals() {
    if (g_wake[0] < 0 && ::pipe2(g_wake, O_NONBLOCK | O_CLOEXEC) != 0) g_wake[0] = g_wake[1] = -1;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    // Neither signal interrupts the other's handler: the second one waits for the first
    // to have set the flag.
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = 0;  // no SA_RESTART: poll() returns EINTR at once
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() { return g_stop_signal != 0; }
int stop_signal() { return g_stop_signal; }
int stop_wake_fd() { return g_wake[0]; }

}  // namespace tcpprobe::io
