// The one loop. ppoll gives nanosecond timeouts, so a deadline is met to the scheduler's
// precision rather than rounded to a millisecond.
#include "tcpprobe/app/runner.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <span>
#include <stdexcept>

#include <cerrno>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "tcpprobe/app/edge.hpp"
#include "tcpprobe/io/system_clock.hpp"
#include "tcpprobe/wire/packet.hpp"

namespace tcpprobe::app {

namespace {
void carry_out(probe::Outbox& out, io::PacketSink& sink, Renderer& renderer, RunStats& stats) {
    // Send first: reporting must not delay what goes on the wire.
    for (const auto& s : out.send) {
        sink.send(s);
        ++stats.sent;
    }
    for (const auto& e : out.events) {
        if (const auto* st = std::get_if<probe::StateEvent>(&e.body))
            spdlog::info("[{}] {} {} -> {} ({})", e.flow, st->side, st->from, st->to, st->cause);
        else if (const auto* s = std::get_if<probe::SegmentEvent>(&e.body))
            spdlog::debug("[{}] {}", e.flow, s->line);
    }
    renderer.events(out.events);
    out.send.clear();
    out.events.clear();
}
}  // namespace

namespace {
/// The live status line on stderr: only on a TTY, never on stdout, redrawn in place.
class ProgressLine {
public:
    explicit ProgressLine(Instant start) : start_(start), on_(::isatty(STDERR_FILENO) == 1) {}
    ~ProgressLine() { clear(); }
    static constexpr Duration period = std::chrono::milliseconds{250};
    bool on() const { return on_; }
    void draw(Instant now, const std::string& status) {
        if (!on_ || status.empty()) return;
        // Several lines (one per experiment of a profile): redraw the block in place.
        clear();
        std::string block = fmt::format("[{:.1f} s] ", to_ms_f(now - start_) / 1000);
        lines_ = 1;
        for (char c : status) {
            if (c == '\n') {
                block += "\n\033[K    ";
                ++lines_;
            } else {
                block += c;
            }
        }
        fmt::print(stderr, "\r\033[K{}", block);
        std::fflush(stderr);
        shown_ = true;
    }
    void clear() {
        if (!shown_) return;
        // Back to the block's first line, clearing each line on the way up.
        std::string up;
        for (unsigned i = 1; i < lines_; ++i) up += "\r\033[K\033[1A";
        fmt::print(stderr, "{}\r\033[K", up);
        std::fflush(stderr);
        shown_ = false;
    }

private:
    Instant start_;
    bool on_;
    bool shown_ = false;
    unsigned lines_ = 1;
};
}  // namespace

bool wait_for_frames(std::span<const int> fds, Duration timeout) {
    timespec ts{static_cast<time_t>(timeout.count() / 1'000'000'000), static_cast<long>(timeout.count() % 1'000'000'000)};
    constexpr std::size_t max_fds = 4;
    if (fds.size() > max_fds) throw std::logic_error("wait_for_frames: too many descriptors");
    // The stop pipe (last) wakes the wait for a signal that arrived after the caller's
    // check. POLLERR (a socket's error queue holds transmit stamps) is always reported.
    pollfd pfd[max_fds + 1];
    for (std::size_t i = 0; i < fds.size(); ++i) pfd[i] = {fds[i], POLLIN, 0};
    pfd[fds.size()] = {io::stop_wake_fd(), POLLIN, 0};
    int rc = ::ppoll(pfd, fds.size() + 1, &ts, nullptr);
    if (rc < 0 && errno != EINTR) throw std::runtime_error("poll on the capture failed");
    return rc > 0 && std::any_of(pfd, pfd + fds.size(), [](const pollfd& p) { return p.revents != 0; });
}

namespace {
using Wait = std::function<bool(Duration)>;
constexpr int max_drain_batches = 16;

RunStats run_loop(probe::Session& session, io::PacketSink& sink, io::PacketSource& source, const io::Clock& clock,
                  const Wait& wait, Renderer& renderer) {
    RunStats stats;
    ProgressLine progress(clock.now());
    Instant next_progress = clock.now() + std::chrono::seconds{1};
    probe::Outbox out;
    if (io::stop_requested()) {
        // Ctrl-C during setup (route, capture, nft table): stop before the first packet.
        stats.interrupted = true;
        session.interrupt(clock.now(), out);  // nothing has started: nothing to settle
        out.send.clear();
        carry_out(out, sink, renderer, stats);
        return stats;
    }
    session.on_timer(clock.now(), out);
    carry_out(out, sink, renderer, stats);

    auto on_frame = [&](const io::CapturedFrame& f) {
        ++stats.frames;
        renderer.captured(f.timestamp);
        auto pkt = wire::decode_frame(f.link_type, f.bytes);
        if (!pkt) {
            // Hostile or unexpected bytes are data: reported, never fatal.
            ++stats.undecodable;
            out.events.push_back({f.timestamp, 0, probe::NoteEvent{probe::Severity::Anomaly,
                                                             fmt::format("undecodable packet ({} bytes): {}", f.bytes.size(), pkt.error())}});
            return;
        }
        session.on_packet(f.timestamp, *pkt, out);
    };

    while (!session.done()) {
        if (io::stop_requested()) {
            stats.interrupted = true;
            session.interrupt(clock.now(), out);
            carry_out(out, sink, renderer, stats);
            break;
        }
        Duration timeout = std::chrono::seconds{1};
        auto wake = session.next_deadline();
        if (progress.on() && (!wake || next_progress < *wake)) wake = next_progress;
        if (auto d = wake) timeout = std::clamp(*d - clock.now(), Duration::zero(), timeout);
        if (wait(timeout)) {
            // Everything already queued is read before any timer fires (bounded, so a flood
            // of answers cannot starve the timers): a probe must not be given up while its
            // answer waits in the kernel's queue.
            for (int batches = 0; source.drain(on_frame) > 0 && ++batches < max_drain_batches && wait(Duration::zero());) {
            }
        }
        session.on_timer(clock.now(), out);
        if (!out.events.empty()) progress.clear();  // never interleave with results
        carry_out(out, sink, renderer, stats);
        if (Instant now = clock.now(); progress.on() && now >= next_progress) {
            progress.draw(now, session.progress(now));
            next_progress = now + ProgressLine::period;
        }
    }
    progress.clear();
    // Whatever was captured in the last instant (e.g. our final ACK) still belongs to the trace.
    source.drain_last(on_frame);
    carry_out(out, sink, renderer, stats);
    stats.capture_drops = source.drops();
    if (const std::uint64_t unsent = source.unsent())
        spdlog::warn("{} of our packets were not seen reaching the network device (a local queueing discipline "
                     "dropped them, or their transmit timestamps were lost): they are dated from when they entered "
                     "the device layer", unsent);
    if (stats.capture_drops)
        spdlog::warn("the capture lost {} packets (ring full): answers may be missing; lower --rate or probe fewer flows at once",
                     stats.capture_drops);
    return stats;
}

}  // namespace

RunStats run_session(probe::Session& session, Edge& edge, Renderer& renderer) {
    return run_loop(session, edge.sink(), edge.source(), edge.clock(), [&edge](Duration d) { return edge.wait(d); }, renderer);
}

RunStats run_session(probe::Session& session, io::PacketSink& sink, io::PacketSource& source, const io::Clock& clock,
                     Renderer& renderer) {
    return run_loop(session, sink, source, clock, [&source](Duration d) { return wait_for_frames(source.fds(), d); }, renderer);
}

}  // namespace tcpprobe::app
