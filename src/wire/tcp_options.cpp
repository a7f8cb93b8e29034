// Option decoding and encoding. Fixed lengths per kind come from the defining RFCs:
// MSS 4 (RFC 9293), WS 3 and TS 10 (RFC 7323), SACK-permitted 2 and SACK 2+8n (RFC 2018),
// MD5 18 (RFC 2385), TFO 2 or 6..18 (RFC 7413 §4.1.1).
#include "tcpprobe/wire/tcp_options.hpp"

namespace tcpprobe::wire {

namespace {

Result<TcpOption, WireError> decode_one(std::uint8_t kind, Bytes data) {
    const std::size_t n = data.size();
    switch (kind) {
        case opt::kind_mss:
            if (n != 2) return Err{WireError::OptionBadLength};
            return TcpOption{opt::Mss{load_be16(data, 0)}};
        case opt::kind_wscale:
            if (n != 1) return Err{WireError::OptionBadLength};
            return TcpOption{opt::WindowScale{data[0]}};
        case opt::kind_sack_permitted:
            if (n != 0) return Err{WireError::OptionBadLength};
            return TcpOption{opt::SackPermitted{}};
        case opt::kind_sack: {
            if (n == 0 || n % 8 != 0) return Err{WireError::OptionBadLength};
            opt::Sack s;
            for (std::size_t i = 0; i < n; i += 8)
                s.blocks.emplace_back(Seq{load_be32(data, i)}, Seq{load_be32(data, i + 4)});
            return TcpOption{std::move(s)};
        }
        case opt::kind_timestamps:
            if (n != 8) return Err{WireError::OptionBadLength};
            return TcpOption{opt::Timestamps{load_be32(data, 0), load_be32(data, 4)}};
        case opt::kind_md5: {
            if (n != 16) return Err{WireError::OptionBadLength};
            opt::Md5 m;
            std::copy(data.begin(), data.end(), m.digest.begin());
            return TcpOption{m};
        }
        case opt::kind_fast_open:
            if (n != 0 && (n < 4 || n > 16)) return Err{WireError::OptionBadLength};
            return TcpOption{opt::FastOpen{ByteVec(data.begin(), data.end())}};
        default:
            return TcpOption{opt::Unknown{kind, ByteVec(data.begin(), data.end())}};
    }
}

struct Visitor {
    ByteVec& out;
    void tlv(std::uint8_t kind, Bytes data) const {
        out.push_back(kind);
        out.push_back(static_cast<std::uint8_t>(data.size() + 2));
        out.insert(out.end(), data.begin(), data.end());
    }
    void operator()(const opt::Eol&) const { out.push_back(opt::kind_eol); }
    void operator()(const opt::Nop&) const { out.push_back(opt::kind_nop); }
    // The option bodies are laid out on the stack: one allocation per encoded list (a
    // flood encodes one list per probe).
    void operator()(const opt::Mss& m) const {
        std::uint8_t d[2];
        store_be16(d, 0, m.value);
        tlv(opt::kind_mss, d);
    }
    void operator()(const opt::WindowScale& w) const {
        std::uint8_t d[1] = {w.shift};
        tlv(opt::kind_wscale, d);
    }
    void operator()(const opt::SackPermitted&) const { tlv(opt::kind_sack_permitted, {}); }
    void operator()(const opt::Sack& s) const {
        // More blocks than fit (4) are encoded all the same and refused by the length check.
        ByteVec d;
        d.reserve(8 * s.blocks.size());
        for (auto [l, r] : s.blocks) {
            append_be32(d, l.raw());
            append_be32(d, r.raw());
        }
        tlv(opt::kind_sack, d);
    }
    void operator()(const opt::Timestamps& t) const {
        std::uint8_t d[8];
        store_be32(d, 0, t.tsval);
        store_be32(d, 4, t.tsecr);
        tlv(opt::kind_timestamps, d);
    }
    void operator()(const opt::FastOpen& f) const { tlv(opt::kind_fast_open, f.cookie); }
    void operator()(const opt::Md5& m) const { tlv(opt::kind_md5, m.digest); }
    void operator()(const opt::Unknown& u) const { tlv(u.kind, u.data); }
};

}  // namespace

std::optional<WireError> decode_options_into(Bytes raw, OptionList& list) {
    // The list's size first (the same walk, without checks), so it is allocated once.
    std::size_t count = 0, j = 0;
    for (; j < raw.size() && raw[j] != opt::kind_eol; ++count)
        j += raw[j] == opt::kind_nop || j + 1 >= raw.size() || raw[j + 1] < 2 ? 1 : raw[j + 1];
    if (j < raw.size()) ++count;  // the EOL
    if (count > 0) list.reserve(list.size() + count);
    std::size_t i = 0;
    while (i < raw.size()) {
        std::uint8_t kind = raw[i];
        if (kind == opt::kind_eol) {
            list.emplace_back(opt::Eol{});
            break;  // the rest is padding (RFC 9293 §3.1)
        }
        if (kind == opt::kind_nop) {
            list.emplace_back(opt::Nop{});
            ++i;
            continue;
        }
        if (i + 1 >= raw.size()) return WireError::OptionPastEnd;
        std::size_t len = raw[i + 1];
        if (len < 2) return WireError::OptionLengthTooSmall;
        if (i + len > raw.size()) return WireError::OptionPastEnd;
        auto one = decode_one(kind, raw.subspan(i + 2, len - 2));
        if (!one) return one.error();
        list.push_back(std::move(one).value());
        i += len;
    }
    return std::nullopt;
}

Result<OptionList, WireError> decode_options(Bytes raw) {
    OptionList list;
    if (auto e = decode_options_into(raw, list)) return Err{*e};
    return list;
}

std::size_t encoded_size(const OptionList& options) {
    ByteVec out;
    for (const auto& o : options) std::visit(Visitor{out}, o);
    return out.size();
}

Result<ByteVec, WireError> encode_options(const OptionList& options) {
    ByteVec out;
    out.reserve(max_option_bytes);
    for (const auto& o : options) {
        // A single option's length byte cannot exceed 255; anything that long is also over 40.
        std::visit(Visitor{out}, o);
        if (out.size() > max_option_bytes) return Err{WireError::OptionsTooLong};
    }
    while (out.size() % 4 != 0) out.push_back(opt::kind_eol);
    return out;
}

}  // namespace tcpprobe::wire
