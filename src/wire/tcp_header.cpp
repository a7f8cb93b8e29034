// TCP header checks: the view exists only when the fixed header and the data offset fit.
#include "tcpprobe/wire/tcp_header.hpp"

namespace tcpprobe::wire {

Result<TcpHeaderView, WireError> TcpHeaderView::parse(Bytes segment) {
    if (segment.size() < 20) return Err{WireError::TcpTruncated};
    std::size_t offset = segment[12] >> 4;
    if (offset < 5) return Err{WireError::TcpBadDataOffset};
    if (offset * 4 > segment.size()) return Err{WireError::TcpDataOffsetPastEnd};
    return TcpHeaderView{segment};
}

}  // namespace tcpprobe::wire
