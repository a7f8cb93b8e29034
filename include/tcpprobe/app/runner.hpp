// The single event loop: poll on the capture descriptor until the session's next
// deadline, hand captured frames in as (timestamp, bytes), carry out what the session
// returns (send, report). Stops when the session is done or a stop signal arrives.
#pragma once

#include "tcpprobe/app/output.hpp"
#include "tcpprobe/io/ports.hpp"
#include "tcpprobe/probe/scenario.hpp"

namespace tcpprobe::app {

struct RunStats {
    std::uint64_t frames = 0;
    std::uint64_t undecodable = 0;
    std::uint64_t sent = 0;
    std::uint64_t capture_drops = 0;  ///< frames the kernel ring could not hold
    bool interrupted = false;
};

class Edge;

/// Runs `session` on `edge` until it is done or a stop signal arrives.
RunStats run_session(probe::Session& session, Edge& edge, Renderer& renderer);

/// The same on separate pieces, waiting with wait_for_frames on source.fds().
RunStats run_session(probe::Session& session, io::PacketSink& sink, io::PacketSource& source,
                     const io::Clock& clock, Renderer& renderer);

/// ppoll on `fds` (at most four) and the stop pipe, for at most `timeout`: true when one
/// of `fds` is ready.
bool wait_for_frames(std::span<const int> fds, Duration timeout);

}  // namespace tcpprobe::app
