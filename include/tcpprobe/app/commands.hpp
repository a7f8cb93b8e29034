// Options of each command, as the command line binds them; each command's prepare step
// validates them (UsageError) before anything is opened (see command.hpp).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/close.hpp"
#include "tcpprobe/probe/listen.hpp"
#include "tcpprobe/probe/retransmit.hpp"
#include "tcpprobe/probe/time_wait.hpp"

namespace tcpprobe::app {

struct GlobalOptions {
    std::string output = "text";
    std::string write_pcap;
    std::string write_limit;  ///< --write-limit SIZE; empty: no limit
    int verbosity = 0;
    bool quiet = false;
    bool no_color = false;
    bool no_rst_guard = false;
    std::string rst_guard = "socket";  ///< --rst-guard: socket (listening sockets that refuse) or nft
    std::string source;
    std::string interface;
};

/// The SYN every probing command sends: options, IP fields, ISN, port.
struct SynOptions {
    std::optional<unsigned> mss;
    bool no_mss = false;
    std::optional<unsigned> wscale;
    bool sack = false;
    bool ts = false;
    std::vector<std::string> raw_options;
    std::optional<unsigned> window;
    unsigned ttl = 64;
    unsigned tos = 0;
    bool df = true;
    std::optional<std::string> ip_id;
    std::optional<std::string> isn;
    std::optional<unsigned> sport;
    std::string flags;
};

/// How we open the connection: our SYN schedule and the patience for an answer.
struct ConnectOptions {
    std::string timeout = "5s";
    std::string rto = "1s";
    unsigned retries = 4;
};

struct HandshakeOptions {
    std::vector<std::string> targets;  ///< HOST:PORTS, several allowed
    SynOptions syn;
    ConnectOptions conn;
    bool half_open = false;
    unsigned count = 1;
    std::string interval = "1s";
    bool stale_syn = false;
    std::string linger = "0s";
};

/// teardown and half-close share these.
struct CloseOptions {
    std::string target;
    SynOptions syn;
    ConnectOptions conn;
    probe::CloseMode mode = probe::CloseMode::Active;  ///< teardown only
    std::string request;          ///< TEXT with \r \n \t \\ \xHH escapes, or @FILE
    std::string idle = "200ms";
    std::string max_wait = "10s";
    std::string time_wait = "2s";
};

struct RetransmitOptions {
    std::string target;
    SynOptions syn;
    ConnectOptions conn;
    probe::RetxSegment segment = probe::RetxSegment::SynAck;
    bool peer_closes_first = false;
    std::string request;
    std::string idle = "200ms";
    std::string ack_delay = "0";
    std::string max_wait = "75s";
    std::string tolerance = "50ms,10%";
    bool no_cleanup = false;
    bool no_follow_up = false;
    unsigned count = 3;
};

struct ListenOptions {
    std::string endpoint;          ///< [ADDR:]PORT or :PORT
    SynOptions syn;                ///< the options of our SYN-ACK / SYN when answering
    ConnectOptions conn;
    probe::ListenAnswer answer = probe::ListenAnswer::None;
    std::string max_wait = "60s";
    std::string tolerance = "50ms,10%";
    unsigned count = 1;
};

struct TimeWaitOptions {
    std::string target;
    SynOptions syn;
    ConnectOptions conn;
    /// --test: one of the probe's tests, or all of them.
    enum class Test { Duration, Reuse, Rst, Fin, All };
    Test test = Test::Duration;
    probe::TwIsn isn = probe::TwIsn::Higher;
    probe::TwTs ts = probe::TwTs::Newer;
    std::string request = "GET / HTTP/1.0\\r\\n\\r\\n";
    std::string max_wait = "10s";
    std::string probe_interval = "1s";
    std::string max_duration = "150s";
};

/// fin-wait-2 and idle: connections probed once each by the lifetime engine.
struct LifetimeOptions {
    std::string target;
    SynOptions syn;
    ConnectOptions conn;
    std::string request;            ///< fin-wait-2: default an HTTP/1.0 GET; idle: none
    std::string max_wait = "10s";   ///< fin-wait-2: for the peer to close first
    std::string max_duration;       ///< the longest lifetime looked for (fin-wait-2 150s, idle --max-idle)
    std::string resolution;         ///< widest bracket left (fin-wait-2 500ms, idle 2s)
    bool data = false;              ///< idle: probe with one byte of data
};

struct KeepaliveOptions {
    std::string target;
    SynOptions syn;
    ConnectOptions conn;
    std::string request;
    unsigned answer = 0;
    std::string max_wait = "135m";
    std::string send;               ///< INTERVAL: send our own probes
    unsigned count = 3;
};

struct ProfileOptions {
    std::string target;
    ConnectOptions conn;
    bool quick = false;
    bool keepalive = false;
    std::string idle;                                  ///< MAX: run the idle experiment up to MAX
    std::string request = "GET / HTTP/1.0\\r\\n\\r\\n";  ///< makes the peer close first
    std::string compare;                               ///< FILE: a profile JSON saved earlier
    bool trace = false;                                ///< text: print every segment too
};

struct PingOptions {
    std::vector<std::string> targets;   ///< HOST:PORTS, e.g. host:80,443 or host:8000-8100
    SynOptions syn;
    unsigned count = 5;                 ///< probes per destination (host and port)
    std::string interval = "1s";
    std::optional<double> rate;         ///< probes per second over the whole run
    bool flood = false;
    std::string timeout = "1s";
};


}  // namespace tcpprobe::app
