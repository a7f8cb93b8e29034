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

RunStats run_session(probe::Session& session, io::PacketSink& sink, io::PacketSource& source,
                     const io::Clock& clock, Renderer& renderer);

}  // namespace tcpprobe::app
