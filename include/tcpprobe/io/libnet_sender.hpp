// The libnet sender: our segments on a raw IPv4 socket.
#pragma once

#include <cstdint>
#include <string>

#include "tcpprobe/io/ports.hpp"

struct libnet_context;

namespace tcpprobe::io {

class LibnetSender final : public PacketSink {
public:
    /// Opens a LIBNET_RAW4 context and sets SO_MARK on its socket.
    LibnetSender(const std::string& interface, std::uint32_t mark);
    ~LibnetSender() override;
    void send(const wire::Segment& segment) override;
    std::uint64_t sent() const { return sent_; }
    /// The raw socket (for its transmit timestamps, see RawSource).
    int fd() const;

private:
    libnet_context* l_ = nullptr;
    std::uint64_t sent_ = 0;
    /// The packet libnet holds: its blocks are updated in place (ptags) while the
    /// option and payload sizes stay the same, and rebuilt when either changes.
    std::uint32_t built_opt_len_ = 0, built_payload_len_ = 0;
    int opt_tag_ = 0, tcp_tag_ = 0, ip_tag_ = 0;
    bool built_ = false;
};

}  // namespace tcpprobe::io
