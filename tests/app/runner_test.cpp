// The loop's handling of Ctrl-C (app/runner.hpp, io stop signals). Signal state is
// process-wide and a second signal ends the process, so each case runs in a forked
// child that reports through its exit status: 0 when every check held, else the number
// of the first check that failed. Nothing here touches the network.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "tcpprobe/app/output.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/io/system_clock.hpp"
#include "tcpprobe/probe/scenario.hpp"

using namespace tcpprobe;
using namespace std::chrono_literals;

namespace {

const Instant t0 = instant_from_ns(1'000'000'000'000);

/// A flow that sends one SYN when it starts, then waits `wait` for an answer that never
/// comes; `on_start` runs inside start().
class OneSynFlow final : public probe::Flow {
public:
    explicit OneSynFlow(Duration wait) : wait_(wait) {}
    wire::FourTuple tuple() const override { return {{wire::Ipv4Addr{0xC6120001}, 40000}, {wire::Ipv4Addr{0xC6120002}, 80}}; }
    void start(Instant now, probe::Outbox& out) override {
        wire::Segment s;
        s.src = tuple().local;
        s.dst = tuple().remote;
        s.flags = wire::flag::syn;
        out.send.push_back(s);
        deadline_ = now + wait_;
    }
    void on_segment(Instant, const wire::Segment&, bool, probe::Outbox&) override {}
    void on_icmp(Instant, const wire::IcmpError&, probe::Outbox&) override {}
    void on_timer(Instant now, probe::Outbox&) override {
        if (deadline_ && now >= *deadline_) done_ = true;
    }
    void interrupt(Instant, probe::Outbox&) override { done_ = true; }
    std::optional<Instant> next_deadline() const override { return done_ ? std::nullopt : deadline_; }
    bool done() const override { return done_; }

private:
    Duration wait_;
    std::optional<Instant> deadline_;
    bool done_ = false;
};

struct CountingSink final : io::PacketSink {
    int sent = 0;
    void send(const wire::Segment&) override { ++sent; }
};

struct NoFrames final : io::PacketSource {
    std::span<const int> fds() const override { return {}; }  // only the stop pipe and the timeout wake the loop
    std::size_t drain(const std::function<void(const io::CapturedFrame&)>&) override { return 0; }
};

/// A clock frozen at t0 that calls `hook` whenever it is read (to raise a signal at an
/// exact point of the loop).
struct HookClock final : io::Clock {
    std::function<void()> hook;
    Instant now() const override {
        if (hook) hook();
        return t0;
    }
};

/// Runs `child` in a forked process and returns its exit status (-signal if killed).
int in_child(const std::function<int()>& child) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(child());
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

}  // namespace

TEST_SUITE_BEGIN("app");

TEST_CASE("runner: Ctrl-C during setup: the run stops before its first packet") {
    int rc = in_child([] {
        io::install_stop_signals();
        ::raise(SIGINT);  // e.g. while the nft table was being created
        probe::Session session;
        session.add(t0, std::make_unique<OneSynFlow>(10s));
        CountingSink sink;
        NoFrames source;
        HookClock clock;
        std::FILE* null = std::fopen("/dev/null", "w");
        auto renderer = app::make_json_renderer(null);
        auto stats = app::run_session(session, sink, source, clock, *renderer);
        if (!stats.interrupted) return 1;
        if (sink.sent != 0) return 2;
        if (stats.sent != 0) return 3;
        return 0;
    });
    CHECK(rc == 0);
}

TEST_CASE("runner: a signal just before the wait ends it at once, not after the poll timeout") {
    int rc = in_child([] {
        io::install_stop_signals();
        probe::Session session;
        session.add(t0, std::make_unique<OneSynFlow>(10s));
        CountingSink sink;
        NoFrames source;
        HookClock clock;
        bool started = false;
        // Once the SYN is out, the next clock read is the loop computing its timeout,
        // after its stop check: the signal arrives in between.
        clock.hook = [&] {
            if (started && !io::stop_requested()) ::raise(SIGINT);
        };
        std::FILE* null = std::fopen("/dev/null", "w");
        auto renderer = app::make_json_renderer(null);
        const auto before = std::chrono::steady_clock::now();
        struct Marker final : io::PacketSink {
            CountingSink* inner;
            bool* started;
            void send(const wire::Segment& s) override {
                inner->send(s);
                *started = true;
            }
        } marker;
        marker.inner = &sink;
        marker.started = &started;
        auto stats = app::run_session(session, marker, source, clock, *renderer);
        const auto took = std::chrono::steady_clock::now() - before;
        if (!stats.interrupted) return 1;
        if (sink.sent != 1) return 2;
        if (took >= 500ms) return 3;  // the loop's longest wait is 1 s
        return 0;
    });
    CHECK(rc == 0);
}

TEST_CASE("runner: a second SIGINT or SIGTERM exits at once with status 130") {
    for (int second : {SIGINT, SIGTERM}) {
        CAPTURE(second);
        int rc = in_child([second] {
            io::install_stop_signals();
            ::raise(SIGTERM);  // the first: an orderly stop is requested
            if (!io::stop_requested()) return 1;
            ::raise(second);   // the second: out now
            return 2;          // not reached
        });
        CHECK(rc == 130);
    }
}

TEST_SUITE_END();

namespace {
/// What a renderer wrote to a temporary file.
std::string rendered(const std::function<void(app::Renderer&)>& write) {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    {
        auto r = app::make_json_renderer(f);
        write(*r);
    }
    std::string out(static_cast<std::size_t>(std::ftell(f)), '\0');
    std::rewind(f);
    CHECK(std::fread(out.data(), 1, out.size(), f) == out.size());
    std::fclose(f);
    return out;
}
}  // namespace

TEST_CASE("runner: the wait wakes for any of the capture's descriptors, not only the first") {
    // A raw-socket capture is three sockets polled directly (io::RawSource::fds): an
    // answer on the ICMP socket or a transmit stamp on the sender's must end the wait.
    int a[2], b[2], c[2];
    REQUIRE(::pipe(a) == 0);
    REQUIRE(::pipe(b) == 0);
    REQUIRE(::pipe(c) == 0);
    const int fds[] = {a[0], b[0], c[0]};
    // Earlier tests in this process raised SIGINT, which left a byte in the stop pipe: it
    // would end every wait at once (ctest runs each case alone; the whole binary does not).
    if (const int w = io::stop_wake_fd(); w >= 0) {
        char buf[16];
        while (::read(w, buf, sizeof buf) > 0) {
        }
    }
    const auto t = std::chrono::steady_clock::now();
    CHECK_FALSE(app::wait_for_frames(fds, 20ms));  // nothing ready: the whole timeout
    CHECK(std::chrono::steady_clock::now() - t >= 20ms);
    REQUIRE(::write(c[1], "x", 1) == 1);
    CHECK(app::wait_for_frames(fds, 5s));
    CHECK(app::wait_for_frames(std::span<const int>(fds).last(1), 5s));
    CHECK_FALSE(app::wait_for_frames(std::span<const int>(fds).first(2), 0ms));
    for (int fd : {a[0], a[1], b[0], b[1], c[0], c[1]}) ::close(fd);
}

TEST_CASE("JSON summary: a streamed list gives the bytes of the whole object, one item made at a time") {
    auto item = [](std::size_t i) { return nlohmann::json{{"port", 20000 + i}, {"verdict", i % 2 ? "open" : "filtered"}}; };
    nlohmann::json head = {{"command", "ping"}, {"answered", 2}, {"zeta", nullptr}};
    for (std::size_t n : {0, 1, 3}) {
        CAPTURE(n);
        nlohmann::json whole = head;
        whole["destinations"] = nlohmann::json::array();
        for (std::size_t i = 0; i < n; ++i) whole["destinations"].push_back(item(i));
        const std::string want = rendered([&](app::Renderer& r) { r.summary("", whole); });

        std::size_t made = 0;
        const std::string got = rendered([&](app::Renderer& r) {
            r.summary("", head, {"destinations", n, [&](std::size_t i) {
                                     ++made;
                                     return item(i);
                                 }});
        });
        CHECK(got == want);
        CHECK(made == n);
        CHECK(nlohmann::json::parse(got)["destinations"].size() == n);
        CHECK(nlohmann::json::parse(got)["type"] == "summary");
    }
}
