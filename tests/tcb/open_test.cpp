// Opening a connection: RFC 9293 §3.5 (three-way handshake, simultaneous open),
// §3.10.1 (OPEN), §3.10.7.2 (LISTEN), §3.10.7.3 (SYN-SENT), and the option negotiation
// of §3.7.1 (MSS), RFC 7323 (window scaling, timestamps) and RFC 2018 (SACK-permitted).
//
// Our ISS and the peer's ISN sit just below 2^32 (support/segment_builder.hpp), so the
// handshakes here cross the sequence-number wrap-around.
#include <doctest/doctest.h>

#include "support/tcb_fixtures.hpp"
#include "tcpprobe/wire/tcp_header.hpp"

using namespace tcpprobe;
using namespace tcpprobe::test;
using namespace tcpprobe::wire;
using tcb::SendReason;
using tcb::State;
using tcb::TimerKind;

namespace {

FixtureOptions with_config(tcb::TcbConfig cfg, OptionList peer = default_peer_syn_options()) {
    FixtureOptions o;
    o.config = std::move(cfg);
    o.peer_syn_options = std::move(peer);
    return o;
}

/// The peer's SYN-ACK options as Linux sends them, with a chosen TSval.
OptionList linux_peer_options(std::uint32_t tsval, std::uint32_t tsecr) {
    return {opt::Mss{1460}, opt::SackPermitted{}, opt::Timestamps{tsval, tsecr}, opt::Nop{}, opt::WindowScale{7}};
}

}  // namespace

TEST_SUITE_BEGIN("tcb");

// ---------------------------------------------------------------------------
// SYN-SENT: our SYN

TEST_CASE("SYN-SENT: OPEN sends one SYN at ISS and arms the retransmission timer one RTO later") {
    Connection c = tcb_in_syn_sent();
    expect_sent(c.history, {sent("S", 0).why(SendReason::Syn).win(65535)});
    expect_transitions(c.history, {State::Closed, State::SynSent});
    expect_armed(c.history, TimerKind::Retransmit, c.now() + 1s);
    CHECK(c.tcb.next_deadline() == c.now() + 1s);
    CHECK(c.tcb.snd.una == c.flow.iss);
    CHECK(c.tcb.snd.nxt == c.flow.iss + 1);
    const Segment syn = sent_segments(c.history).at(0);
    CHECK(syn.ack == Seq{0});
    CHECK(syn.options == OptionList{opt::Mss{1460}});
}

TEST_CASE("SYN-SENT: the SYN carries the configured options in the configured order") {
    SUBCASE("Linux's order: mss, sackOK, TS, nop, wscale; TSval from ts_offset, TSecr 0") {
        Connection c = tcb_in_syn_sent(with_config(linux_like_config()));
        const Segment syn = sent_segments(c.history).at(0);
        CHECK(syn.options == OptionList{opt::Mss{1460}, opt::SackPermitted{}, opt::Timestamps{1000, 0}, opt::Nop{},
                                        opt::WindowScale{7}});
        // RFC 7323 §2.2: the window field of a SYN is never scaled.
        CHECK(syn.window == 65535);
    }
    SUBCASE("default_syn_options pads with NOPs when SACK or timestamps are off") {
        CHECK(tcb::default_syn_options(1460, std::nullopt, true, false) ==
              OptionList{opt::Mss{1460}, opt::Nop{}, opt::Nop{}, opt::SackPermitted{}});
        CHECK(tcb::default_syn_options(std::nullopt, 2, false, true) ==
              OptionList{opt::Nop{}, opt::Nop{}, opt::Timestamps{}, opt::Nop{}, opt::WindowScale{2}});
        CHECK(tcb::default_syn_options(std::nullopt, std::nullopt, false, false).empty());
    }
    SUBCASE("a hand-made list is sent exactly as given, unknown kinds included") {
        tcb::TcbConfig cfg = default_config();
        cfg.syn_options = {opt::WindowScale{3}, opt::Nop{}, opt::Unknown{253, {0xCA, 0xFE}}, opt::Mss{1200},
                           opt::Eol{}};
        Connection c = tcb_in_syn_sent(with_config(cfg));
        CHECK(sent_segments(c.history).at(0).options == cfg.syn_options);
    }
    SUBCASE("extra flags, window, and IP fields are the configured ones") {
        tcb::TcbConfig cfg = default_config();
        cfg.extra_syn_flags = flag::ece | flag::cwr;
        cfg.syn_window = 1234;
        cfg.ip = IpFields{7, 0x10, false, 4242};
        Connection c = tcb_in_syn_sent(with_config(cfg));
        expect_sent(c.history, {sent("SEW", 0).why(SendReason::Syn).win(1234)});
        const Segment syn = sent_segments(c.history).at(0);
        CHECK(syn.ip.ttl == 7);
        CHECK(syn.ip.tos == 0x10);
        CHECK_FALSE(syn.ip.df);
        CHECK(syn.ip.id == 4242);
    }
}

TEST_CASE("SYN-SENT: OPEN twice is refused with a note and sends nothing") {
    Connection c = tcb_in_syn_sent();
    auto out = c.tcb.open_active(c.now());
    expect_nothing_sent(out);
    CHECK(has_note(out, "already exists"));
    expect_state(c.tcb, State::SynSent);
}

// ---------------------------------------------------------------------------
// SYN-SENT: the answer

TEST_CASE("SYN-SENT: a SYN-ACK acknowledging our SYN moves to ESTABLISHED and is ACKed") {
    Connection c = tcb_in_syn_sent();
    c.clock.advance(10ms);
    auto out = inject(c.tcb, c.now(), c.seg("S.").seq(0).ack(1).win(29200).mss(1460));
    expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack).win(65535)});
    expect_transitions(out, {State::SynSent, State::Established});
    CHECK(find<tcb::CancelTimer>(out).has_value());
    CHECK_FALSE(c.tcb.next_deadline().has_value());
    CHECK(c.tcb.irs() == c.flow.irs);
    CHECK(c.tcb.snd.una == c.flow.iss + 1);
    CHECK(c.tcb.snd.nxt == c.flow.iss + 1);
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 1);
    CHECK(c.tcb.snd.wnd == 29200);
    // The ACK carries no options: none but MSS was negotiated, and MSS lives on SYNs only.
    CHECK(sent_segments(out).at(0).options.empty());
}

TEST_CASE("SYN-SENT: the effective MSS is min(peer's, ours), 536 when the peer sends none") {
    struct Row {
        const char* name;
        OptionList ours;
        OptionList peers;
        std::uint16_t effective;
    };
    const Row rows[] = {
        {"peer smaller", {opt::Mss{1460}}, {opt::Mss{1200}}, 1200},
        {"ours smaller", {opt::Mss{1000}}, {opt::Mss{1460}}, 1000},
        {"equal", {opt::Mss{1460}}, {opt::Mss{1460}}, 1460},
        {"peer sends no MSS: RFC 9293 §3.7.1 default 536", {opt::Mss{1460}}, {}, 536},
        {"peer sends no MSS and ours is smaller than 536", {opt::Mss{500}}, {}, 500},
        {"we send no MSS: the peer's", {}, {opt::Mss{9000}}, 9000},
    };
    for (const auto& r : rows) {
        SUBCASE(r.name) {
            tcb::TcbConfig cfg = default_config();
            cfg.syn_options = r.ours;
            Connection c = tcb_in_established(with_config(cfg, r.peers));
            CHECK(c.tcb.negotiated().effective_mss == r.effective);
            CHECK(c.tcb.negotiated().payload_per_segment() == r.effective);
            // And send() cuts data at that size.
            auto out = c.tcb.send(c.now(), ByteVec(r.effective + 1u, 'x'));
            expect_sent(out, {sent(".", 1, 1).len(r.effective).why(SendReason::Data),
                              sent("P.", 1 + r.effective, 1).len(1).why(SendReason::Data)});
        }
    }
}

TEST_CASE("SYN-SENT: window scaling is on only when both SYNs carry the option") {
    SUBCASE("both offer: the peer's windows are shifted by its scale, ours by our scale") {
        Connection c = tcb_in_established(with_config(linux_like_config(), linux_peer_options(5000, 1000)));
        const auto& n = c.tcb.negotiated();
        CHECK(n.window_scaling);
        CHECK(n.our_wscale == 7);
        CHECK(n.peer_wscale == 7);
        // The SYN-ACK's own window (65535) is never scaled (RFC 7323 §2.2).
        CHECK(c.tcb.snd.wnd == 65535);
        // Our ACK advertises 1 MiB >> 7.
        CHECK(sent_segments(c.history).back().window == 8192);
        // A later segment's window is scaled by the peer's shift.
        inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1).win(100).ts(5001, 1010));
        CHECK(c.tcb.snd.wnd == 100u << 7);
    }
    SUBCASE("only we offer: no scaling either way") {
        Connection c = tcb_in_established(with_config(linux_like_config(), {opt::Mss{1460}}));
        CHECK_FALSE(c.tcb.negotiated().window_scaling);
        CHECK(c.tcb.negotiated().our_wscale == 7);
        CHECK_FALSE(c.tcb.negotiated().peer_wscale.has_value());
        CHECK(sent_segments(c.history).back().window == 65535);  // 1 MiB capped, unscaled
        inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1).win(100));
        CHECK(c.tcb.snd.wnd == 100);
    }
    SUBCASE("only the peer offers: no scaling either way") {
        Connection c = tcb_in_established(with_config(default_config(), {opt::Mss{1460}, opt::Nop{}, opt::WindowScale{7}}));
        CHECK_FALSE(c.tcb.negotiated().window_scaling);
        CHECK(c.tcb.negotiated().peer_wscale == 7);
        inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1).win(100));
        CHECK(c.tcb.snd.wnd == 100);
    }
    SUBCASE("a peer shift above 14 is used as 14 (RFC 7323 §2.3)") {
        Connection c = tcb_in_established(with_config(linux_like_config(), {opt::Mss{1460}, opt::WindowScale{15}}));
        CHECK(c.tcb.negotiated().window_scaling);
        inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1).win(3));
        CHECK(c.tcb.snd.wnd == 3u << 14);
    }
}

TEST_CASE("SYN-SENT: SACK-permitted is negotiated only when both SYNs carry it") {
    SUBCASE("both") {
        Connection c = tcb_in_established(with_config(linux_like_config(), linux_peer_options(5000, 1000)));
        CHECK(c.tcb.negotiated().sack);
    }
    SUBCASE("only the peer") {
        Connection c = tcb_in_established(with_config(default_config(), {opt::Mss{1460}, opt::SackPermitted{}}));
        CHECK_FALSE(c.tcb.negotiated().sack);
    }
    SUBCASE("only us") {
        Connection c = tcb_in_established(with_config(linux_like_config(), {opt::Mss{1460}}));
        CHECK_FALSE(c.tcb.negotiated().sack);
    }
}

TEST_CASE("SYN-SENT: with timestamps negotiated, every later segment echoes TS.Recent in TSecr") {
    tcb::TcbConfig cfg = linux_like_config();  // TSval = 1000 + ms since OPEN
    Connection c = tcb_in_syn_sent(with_config(cfg));
    const Instant t0 = c.now();

    // +10 ms < S. 0:0(0) ack 1 <..., TS val 5000 ecr 1000, ...>  >  . 1:1(0) ack 1 <nop,nop,TS val 1010 ecr 5000>
    c.clock.advance(10ms);
    auto out = inject(c.tcb, c.now(), c.seg("S.").seq(0).ack(1).options(linux_peer_options(5000, 1000)));
    REQUIRE(c.tcb.negotiated().timestamps);
    CHECK(c.tcb.negotiated().payload_per_segment() == 1448);
    expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack)});
    CHECK(sent_segments(out).at(0).options == OptionList{opt::Nop{}, opt::Nop{}, opt::Timestamps{1010, 5000}});
    CHECK(c.tcb.ts_recent() == 5000);

    // +20 ms < P. 1:11(10) ack 1 <TS val 5020 ecr 1010>: TS.Recent follows, the ACK echoes it.
    c.clock.advance(20ms);
    out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(10).ts(5020, 1010));
    expect_sent(out, {sent(".", 1, 11).why(SendReason::Ack)});
    CHECK(sent_segments(out).at(0).options == OptionList{opt::Nop{}, opt::Nop{}, opt::Timestamps{1030, 5020}});

    // Our data, our FIN and a retransmission of the FIN all carry TSecr 5020.
    c.clock.advance(10ms);
    out = c.tcb.send(c.now(), ByteVec(5, 'x'));
    CHECK(sent_segments(out).at(0).options == OptionList{opt::Nop{}, opt::Nop{}, opt::Timestamps{1040, 5020}});
    out = inject(c.tcb, c.now(), c.seg(".").seq(11).ack(6).ts(5030, 1040));
    out = c.tcb.close(c.now());
    expect_sent(out, {sent("F.", 6, 11).why(SendReason::Fin)});
    CHECK(sent_segments(out).at(0).options == OptionList{opt::Nop{}, opt::Nop{}, opt::Timestamps{1040, 5030}});
    out = advance(c.tcb, c.clock, 1s);
    expect_sent(out, {sent("F.", 6, 11).why(SendReason::Retransmission)});
    CHECK(sent_segments(out).at(0).options == OptionList{opt::Nop{}, opt::Nop{}, opt::Timestamps{2040, 5030}});
    CHECK(c.now() - t0 == 1040ms);
}

TEST_CASE("SYN-SENT: timestamps offered by us only are not used afterwards") {
    Connection c = tcb_in_established(with_config(linux_like_config(), {opt::Mss{1460}}));
    CHECK_FALSE(c.tcb.negotiated().timestamps);
    CHECK(sent_segments(c.history).back().options.empty());
    CHECK(c.tcb.negotiated().payload_per_segment() == 1460);
}

TEST_CASE("SYN-SENT: an unacceptable ACK is answered with <SEQ=SEG.ACK><CTL=RST>, our SYN goes again behind it, the timer is kept") {
    Connection c = tcb_in_syn_sent();
    const auto deadline = c.tcb.next_deadline();
    SUBCASE("SYN-ACK acknowledging ISS itself (SEG.ACK =< ISS)") {
        auto out = inject(c.tcb, c.now(), c.seg("S.").seq(0).ack(0));
        expect_sent(out, {sent("R", 0).why(SendReason::ResetReply).win(0), sent("S", 0).why(SendReason::Retransmission)});
        CHECK(has_note(out, "unacceptable ack"));
    }
    SUBCASE("SYN-ACK acknowledging more than we sent (SEG.ACK > SND.NXT)") {
        auto out = inject(c.tcb, c.now(), c.seg("S.").seq(0).ack(2));
        expect_sent(out, {sent("R", 2).why(SendReason::ResetReply), sent("S", 0).why(SendReason::Retransmission)});
    }
    SUBCASE("a bare ACK from an old connection (the peer's TIME-WAIT or challenge ACK)") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(77).ack(0x40000000));
        expect_sent(out, {sent("R", 0x40000000).why(SendReason::ResetReply), sent("S", 0).why(SendReason::Retransmission)});
        CHECK(has_note(out, "another connection on this 4-tuple"));
    }
    SUBCASE("a RST with a bad ACK is dropped without a reply") {
        auto out = inject(c.tcb, c.now(), c.seg("R.").seq(0).ack(5));
        expect_nothing_sent(out);
        CHECK(find_all<tcb::ConnectionReset>(out).empty());
    }
    expect_state(c.tcb, State::SynSent);
    CHECK_FALSE(c.tcb.irs().has_value());
    CHECK(c.tcb.next_deadline() == deadline);
}

TEST_CASE("SYN-SENT: our SYN goes again behind a RST once per copy: a second unacceptable ACK gets the RST alone until the timer's copy") {
    Connection c = tcb_in_syn_sent();
    auto first = inject(c.tcb, c.now(), c.seg(".").seq(77).ack(0x40000000));
    expect_sent(first, {sent("R", 0x40000000).why(SendReason::ResetReply), sent("S", 0).why(SendReason::Retransmission)});
    auto second = inject(c.tcb, c.now(), c.seg(".").seq(77).ack(0x40000000));
    expect_sent(second, {sent("R", 0x40000000).why(SendReason::ResetReply)});
    const auto due = c.tcb.next_deadline();
    REQUIRE(due);
    auto timer = c.tcb.on_timer(*due);
    expect_sent(timer, {sent("S", 0).why(SendReason::Retransmission)});
    auto third = inject(c.tcb, *due, c.seg(".").seq(77).ack(0x40000000));
    expect_sent(third, {sent("R", 0x40000000).why(SendReason::ResetReply), sent("S", 0).why(SendReason::Retransmission)});
    expect_state(c.tcb, State::SynSent);
}

TEST_CASE("SYN-SENT: a RST with an acceptable ACK resets the connection to CLOSED") {
    Connection c = tcb_in_syn_sent();
    auto out = inject(c.tcb, c.now() + 5ms, c.seg("R.").seq(0).ack(1).win(0));
    expect_nothing_sent(out);
    expect_transitions(out, {State::SynSent, State::Closed});
    REQUIRE(find<tcb::ConnectionReset>(out).has_value());
    CHECK(find<tcb::ConnectionReset>(out)->in_state == State::SynSent);
    CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
    CHECK_FALSE(c.tcb.next_deadline().has_value());
}

TEST_CASE("SYN-SENT: a RST without an ACK is ignored (RFC 5961 §3.2)") {
    Connection c = tcb_in_syn_sent();
    auto out = inject(c.tcb, c.now(), c.seg("R").seq(0));
    expect_nothing_sent(out);
    CHECK(find_all<tcb::StateChanged>(out).empty());
    CHECK(has_note(out, "RST without an acceptable ACK"));
    expect_state(c.tcb, State::SynSent);
    CHECK(c.tcb.next_deadline() == c.now() + 1s);
}

TEST_CASE("SYN-SENT: a segment with neither SYN nor RST is dropped") {
    Connection c = tcb_in_syn_sent();
    SUBCASE("acceptable ACK alone") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(0).ack(1));
        expect_nothing_sent(out);
    }
    SUBCASE("FIN without ACK") {
        auto out = inject(c.tcb, c.now(), c.seg("F").seq(0));
        expect_nothing_sent(out);
    }
    expect_state(c.tcb, State::SynSent);
    CHECK(c.tcb.snd.una == c.flow.iss);
}

TEST_CASE("SYN-SENT: data on the SYN-ACK is delivered, noted, and acknowledged") {
    Connection c = tcb_in_syn_sent();
    auto out = inject(c.tcb, c.now(), c.seg("S.").seq(0).ack(1).mss(1460).data(5));
    expect_sent(out, {sent(".", 1, 6).why(SendReason::Ack)});
    CHECK(has_note(out, "SYN-ACK carries 5 bytes"));
    auto d = find<tcb::DataReceived>(out);
    REQUIRE(d.has_value());
    CHECK(d->seq == c.flow.irs + 1);
    CHECK(d->data == stream_bytes(1, 5));
    expect_state(c.tcb, State::Established);
}

TEST_CASE("SYN-SENT: a FIN on the SYN-ACK moves on to CLOSE-WAIT and is acknowledged") {
    Connection c = tcb_in_syn_sent();
    auto out = inject(c.tcb, c.now(), c.seg("FS.").seq(0).ack(1).mss(1460));
    expect_sent(out, {sent(".", 1, 2).why(SendReason::Ack)});
    expect_transitions(out, {State::SynSent, State::Established, State::CloseWait});
    CHECK(c.tcb.fin_received());
}

// ---------------------------------------------------------------------------
// Simultaneous open (RFC 9293 §3.5, Figure 8)

TEST_CASE("SYN-SENT: the peer's SYN (simultaneous open) is answered with SYN-ACK from ISS") {
    Connection c = tcb_in_syn_sent();
    auto out = inject(c.tcb, c.now() + 5ms, c.seg("S").seq(0).mss(1200));
    expect_sent(out, {sent("S.", 0, 1).why(SendReason::SynAck)});
    expect_transitions(out, {State::SynSent, State::SynReceived});
    CHECK(c.tcb.negotiated().effective_mss == 1200);
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 1);
    CHECK(c.tcb.snd.una == c.flow.iss);  // our SYN is still unacknowledged
    CHECK(c.tcb.next_deadline() == c.now() + 1s);  // the SYN's timer keeps running
}

TEST_CASE("simultaneous open completes whichever way the peer acknowledges our SYN") {
    Connection c = tcb_in_syn_sent();
    c.clock.advance(5ms);
    inject(c.tcb, c.now(), c.seg("S").seq(0).mss(1460));
    REQUIRE(c.tcb.state() == State::SynReceived);
    c.clock.advance(5ms);
    SUBCASE("its SYN-ACK (SEQ=IRS, as Linux sends it)") {
        auto out = inject(c.tcb, c.now(), c.seg("S.").seq(0).ack(1).mss(1460));
        expect_nothing_sent(out);
        expect_transitions(out, {State::SynReceived, State::Established});
    }
    SUBCASE("a plain ACK") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1));
        expect_nothing_sent(out);
        expect_transitions(out, {State::SynReceived, State::Established});
    }
    CHECK(c.tcb.snd.una == c.flow.iss + 1);
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 1);
    CHECK_FALSE(c.tcb.next_deadline().has_value());
}

TEST_CASE("simultaneous open: a SYN-ACK that does not acknowledge our SYN is not taken for one") {
    Connection c = tcb_in_syn_sent();
    inject(c.tcb, c.now(), c.seg("S").seq(0).mss(1460));
    // The same SYN-ACK numbers but ack 2 (beyond SND.NXT): not the simultaneous-open answer.
    auto out = inject(c.tcb, c.now(), c.seg("S.").seq(0).ack(2));
    // It is an old duplicate of the peer's SYN as far as RCV.NXT goes: acknowledged, dropped.
    expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack)});
    expect_state(c.tcb, State::SynReceived);
    CHECK(find_all<tcb::StateChanged>(out).empty());
}

// ---------------------------------------------------------------------------
// LISTEN and the passive open

TEST_CASE("LISTEN: passive OPEN sends nothing and arms nothing") {
    Connection c = tcb_in_listen();
    expect_nothing_sent(c.history);
    expect_transitions(c.history, {State::Closed, State::Listen});
    CHECK_FALSE(c.tcb.next_deadline().has_value());
}

TEST_CASE("LISTEN: a SYN moves to SYN-RECEIVED and is answered with SYN-ACK carrying our options") {
    tcb::TcbConfig cfg = linux_like_config();
    Connection c = tcb_in_listen(with_config(cfg));
    c.clock.advance(7ms);  // TSval = 1000 + 7
    auto out = inject(c.tcb, c.now(), c.seg("S").seq(0).win(64240).options(linux_peer_options(5000, 0)));
    expect_sent(out, {sent("S.", 0, 1).why(SendReason::SynAck).win(65535)});
    expect_transitions(out, {State::Listen, State::SynReceived});
    expect_armed(out, TimerKind::Retransmit, c.now() + 1s);
    // Our SYN options, in our order; TSecr echoes the peer's TSval.
    CHECK(sent_segments(out).at(0).options == OptionList{opt::Mss{1460}, opt::SackPermitted{},
                                                         opt::Timestamps{1007, 5000}, opt::Nop{}, opt::WindowScale{7}});
    CHECK(c.tcb.irs() == c.flow.irs);
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 1);
    CHECK(c.tcb.snd.nxt == c.flow.iss + 1);
    CHECK(c.tcb.snd.wnd == 64240);  // unscaled in a SYN
    CHECK(c.tcb.negotiated().window_scaling);
    CHECK(c.tcb.negotiated().timestamps);
}

TEST_CASE("SYN-RECEIVED: the ACK of our SYN-ACK moves to ESTABLISHED and sends nothing") {
    Connection c = tcb_in_syn_received();
    expect_sent(c.history, {sent("S.", 0, 1).why(SendReason::SynAck)});
    c.clock.advance(10ms);
    auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1).win(501));
    expect_nothing_sent(out);
    expect_transitions(out, {State::SynReceived, State::Established});
    CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
    CHECK_FALSE(c.tcb.next_deadline().has_value());
    CHECK(c.tcb.snd.una == c.flow.iss + 1);
    CHECK(c.tcb.snd.wnd == 501);
}

TEST_CASE("SYN-RECEIVED: the ACK completing the handshake may carry data") {
    Connection c = tcb_in_syn_received();
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(3));
    expect_sent(out, {sent(".", 1, 4).why(SendReason::Ack)});
    CHECK(find<tcb::DataReceived>(out)->data == stream_bytes(1, 3));
    expect_state(c.tcb, State::Established);
}

TEST_CASE("SYN-RECEIVED: an unacceptable ACK is answered with <SEQ=SEG.ACK><CTL=RST>") {
    Connection c = tcb_in_syn_received();
    SUBCASE("acknowledges nothing new (SEG.ACK = SND.UNA)") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(0));
        expect_sent(out, {sent("R", 0).why(SendReason::ResetReply)});
    }
    SUBCASE("acknowledges beyond SND.NXT") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(9));
        expect_sent(out, {sent("R", 9).why(SendReason::ResetReply)});
    }
    expect_state(c.tcb, State::SynReceived);
}

TEST_CASE("LISTEN: a RST is ignored") {
    Connection c = tcb_in_listen();
    SUBCASE("RST") {
        expect_nothing_sent(inject(c.tcb, c.now(), c.seg("R").seq(5)));
    }
    SUBCASE("RST,ACK") {
        expect_nothing_sent(inject(c.tcb, c.now(), c.seg("R.").seq(5).ack(3)));
    }
    expect_state(c.tcb, State::Listen);
}

TEST_CASE("LISTEN: anything carrying an ACK is answered with <SEQ=SEG.ACK><CTL=RST>") {
    Connection c = tcb_in_listen();
    SUBCASE("ACK") {
        expect_sent(inject(c.tcb, c.now(), c.seg(".").seq(5).ack(77)), {sent("R", 77).why(SendReason::ResetReply)});
    }
    SUBCASE("SYN-ACK") {
        expect_sent(inject(c.tcb, c.now(), c.seg("S.").seq(0).ack(3)), {sent("R", 3).why(SendReason::ResetReply)});
    }
    SUBCASE("FIN-ACK") {
        expect_sent(inject(c.tcb, c.now(), c.seg("F.").seq(9).ack(4)), {sent("R", 4).why(SendReason::ResetReply)});
    }
    expect_state(c.tcb, State::Listen);
    CHECK_FALSE(c.tcb.irs().has_value());
}

TEST_CASE("LISTEN: a segment with neither SYN, ACK nor RST is dropped silently") {
    Connection c = tcb_in_listen();
    auto out = inject(c.tcb, c.now(), c.seg("F").seq(1));
    expect_nothing_sent(out);
    expect_state(c.tcb, State::Listen);
}

TEST_CASE("LISTEN: data on a SYN is noted and not acknowledged before the handshake completes") {
    Connection c = tcb_in_listen();
    auto out = inject(c.tcb, c.now(), c.seg("S").seq(0).mss(1460).data(10));
    expect_sent(out, {sent("S.", 0, 1).why(SendReason::SynAck)});
    CHECK(has_note(out, "SYN carries data"));
    CHECK(find_all<tcb::DataReceived>(out).empty());
}

TEST_CASE("SYN-RECEIVED (passive): an exact RST returns to LISTEN, and a new SYN is served afresh") {
    // The first peer offers everything; the second one nothing.
    Connection c = tcb_in_syn_received(with_config(linux_like_config(), linux_peer_options(5000, 0)));
    REQUIRE(c.tcb.negotiated().window_scaling);
    auto out = inject(c.tcb, c.now(), c.seg("R").seq(1));
    expect_nothing_sent(out);
    expect_transitions(out, {State::SynReceived, State::Listen});
    CHECK(find_all<tcb::ConnectionReset>(out).empty());
    CHECK_FALSE(c.tcb.next_deadline().has_value());

    // A new peer, new ISN, no MSS option this time.
    Flow other = c.flow;
    other.irs = Seq{0x12345678};
    out = inject(c.tcb, c.now(), seg("S", other).seq(0));
    expect_sent(out, {sent("S.", 0, 1).why(SendReason::SynAck)}, other);
    CHECK(c.tcb.irs() == other.irs);
    CHECK(c.tcb.negotiated().effective_mss == 536);
    CHECK_FALSE(c.tcb.negotiated().peer_mss.has_value());
    CHECK_FALSE(c.tcb.negotiated().peer_wscale.has_value());
    CHECK_FALSE(c.tcb.negotiated().window_scaling);
    CHECK_FALSE(c.tcb.negotiated().timestamps);
    CHECK_FALSE(c.tcb.negotiated().sack);
    // Without scaling, the handshake's ACK window is taken as it is, and ours is unscaled.
    out = inject(c.tcb, c.now(), seg(".", other).seq(1).ack(1).win(100));
    REQUIRE(c.tcb.state() == State::Established);
    CHECK(c.tcb.snd.wnd == 100);
    out = c.tcb.send(c.now(), ByteVec(1, 'x'));
    expect_sent(out, {sent("P.", 1, 1).len(1).why(SendReason::Data).win(65535)}, other);
    CHECK(sent_segments(out).at(0).options.empty());
}

TEST_CASE("SYN-RECEIVED (passive): a SYN returns to LISTEN (RFC 9293 §3.10.7.4, fourth)") {
    Connection c = tcb_in_syn_received();
    auto out = inject(c.tcb, c.now(), c.seg("S").seq(100));
    expect_nothing_sent(out);
    expect_transitions(out, {State::SynReceived, State::Listen});
    CHECK_FALSE(c.tcb.next_deadline().has_value());
}

TEST_CASE("CLOSE before the connection exists goes straight to CLOSED") {
    SUBCASE("LISTEN") {
        Connection c = tcb_in_listen();
        auto out = c.tcb.close(c.now());
        expect_nothing_sent(out);
        expect_transitions(out, {State::Listen, State::Closed});
    }
    SUBCASE("SYN-SENT: the SYN's timer is cancelled") {
        Connection c = tcb_in_syn_sent();
        auto out = c.tcb.close(c.now());
        expect_nothing_sent(out);
        expect_transitions(out, {State::SynSent, State::Closed});
        CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
        CHECK_FALSE(c.tcb.next_deadline().has_value());
    }
}

TEST_CASE("CLOSED: every segment but a RST is answered with a RST (RFC 9293 §3.10.7.1)") {
    Connection c = tcb_closed();
    SUBCASE("with ACK: <SEQ=SEG.ACK><CTL=RST>") {
        expect_sent(inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1)), {sent("R", 1).why(SendReason::ResetReply)});
    }
    SUBCASE("without ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>") {
        expect_sent(inject(c.tcb, c.now(), c.seg("S").seq(0)),
                    {sent("R.", 0, 1).absolute().why(SendReason::ResetReply)});
        expect_sent(inject(c.tcb, c.now(), c.seg("FP").seq(10).data(5)),
                    {sent("R.", 0, 16).absolute().why(SendReason::ResetReply)});
    }
    SUBCASE("RST: nothing") {
        expect_nothing_sent(inject(c.tcb, c.now(), c.seg("R").seq(1)));
    }
    expect_state(c.tcb, State::Closed);
}

TEST_CASE("SYN-RECEIVED (simultaneous open): an exact RST refuses the connection (CLOSED, not LISTEN)") {
    Connection c = tcb_in_syn_sent();
    inject(c.tcb, c.now(), c.seg("S").seq(0).mss(1460));
    auto out = inject(c.tcb, c.now(), c.seg("R").seq(1));
    expect_nothing_sent(out);
    expect_transitions(out, {State::SynReceived, State::Closed});
    CHECK(find<tcb::ConnectionReset>(out)->in_state == State::SynReceived);
    CHECK_FALSE(c.tcb.next_deadline().has_value());
}

TEST_CASE("SYN-RECEIVED (passive): the peer's retransmitted SYN gets our SYN-ACK again, state kept") {
    // RFC 9293 §3.10.7.4 would send a bare ACK (SEG.SEQ = IRS is left of the window);
    // like Linux (tcp_check_req) we resend the SYN-ACK so the client completes at once.
    Connection c = tcb_in_syn_received();
    auto out = inject(c.tcb, c.now() + 1s - 1ms, c.seg("S").seq(0).mss(1460));
    expect_sent(out, {sent("S.", 0, 1).why(SendReason::SynAck)});
    expect_state(c.tcb, State::SynReceived);
    SUBCASE("a SYN with another sequence number is still an unacceptable segment: ACK") {
        auto other = inject(c.tcb, c.now() + 1s, c.seg("S").seq(100000).mss(1460));
        expect_sent(other, {sent(".", 1, 1).why(SendReason::Ack)});
    }
}

TEST_CASE("ESTABLISHED: a retransmitted SYN-ACK (our ACK was lost) is ACKed again") {
    Connection c = tcb_in_established();
    auto out = inject(c.tcb, c.now() + 1s, c.seg("S.").seq(0).ack(1).mss(1460));
    expect_sent(out, {sent(".", 1, 1)});
    expect_state(c.tcb, State::Established);
}

TEST_CASE("CLOSED: OPEN on a TCB whose connection has ended starts a fresh connection (RFC 9293 §3.10.1)") {
    SUBCASE("after giving up: a full retransmission schedule again") {
        Connection c = tcb_in_syn_sent();
        advance(c.tcb, c.clock, 15s);
        REQUIRE(c.tcb.state() == State::Closed);
        auto out = c.tcb.open_active(c.now());
        expect_sent(out, {sent("S", 0).why(SendReason::Syn)});
        CHECK(c.tcb.next_deadline() == c.now() + 1s);
        out = advance(c.tcb, c.clock, 1s);
        expect_sent(out, {sent("S", 0).why(SendReason::Retransmission)});
        CHECK(c.tcb.next_deadline() == c.now() + 2s);
    }
    SUBCASE("after a full close: no FIN, IRS or options of the old connection remain") {
        Connection c = tcb_in_time_wait(
            [] {
                FixtureOptions o;
                o.peer_syn_options = {opt::Mss{1000}, opt::Nop{}, opt::WindowScale{7}};
                return o;
            }());
        advance(c.tcb, c.clock, 60s);
        REQUIRE(c.tcb.state() == State::Closed);
        auto out = c.tcb.open_passive(c.now());
        expect_state(c.tcb, State::Listen);
        CHECK_FALSE(c.tcb.fin_sent());
        CHECK_FALSE(c.tcb.fin_received());
        CHECK_FALSE(c.tcb.irs().has_value());
        CHECK_FALSE(c.tcb.negotiated().peer_mss.has_value());
        CHECK(c.tcb.snd.nxt == c.flow.iss);
        // The IP ID is the sender's (probe::IpIds), not the TCB's: every segment carries
        // the configured one, the last connection's and the new one's alike.
        CHECK(sent_segments(c.history).back().ip.id == c.tcb.config().ip.id);
        out = inject(c.tcb, c.now(), c.seg("S").seq(0));
        expect_sent(out, {sent("S.", 0, 1).why(SendReason::SynAck)});
        CHECK(sent_segments(out).at(0).ip.id == c.tcb.config().ip.id);
        CHECK(c.tcb.negotiated().effective_mss == 536);
    }
}

TEST_CASE("SEND before the connection is established is refused with a note") {
    Connection c = tcb_in_syn_sent();
    auto out = c.tcb.send(c.now(), ByteVec(10, 'x'));
    expect_nothing_sent(out);
    CHECK(has_note(out, "not allowed in SYN-SENT"));
    CHECK(c.tcb.snd.nxt == c.flow.iss + 1);
}

TEST_SUITE_END();

TEST_CASE("LISTEN: the SYN-ACK offers window scale, timestamps and SACK only when the peer's SYN did (RFC 7323, RFC 2018)") {
    tcb::TcbConfig cfg;
    cfg.tuple = {{{0xC6120002}, 80}, {{0xC6120001}, 40000}};
    cfg.iss = wire::Seq{500};
    cfg.syn_options = tcb::default_syn_options(1460, 7, true, true);
    auto synack_options = [&](wire::OptionList peer_syn_options) {
        tcb::Tcb t(cfg);
        const Instant at = instant_from_ns(1'000'000'000);
        (void)t.open_passive(at);
        wire::Segment syn;
        syn.src = cfg.tuple.remote;
        syn.dst = cfg.tuple.local;
        syn.seq = wire::Seq{9000};
        syn.flags = wire::flag::syn;
        syn.window = 1000;
        syn.options = std::move(peer_syn_options);
        for (const auto& a : t.on_segment(at, syn))
            if (const auto* s = std::get_if<tcb::SendSegment>(&a)) return wire::format_options(s->segment.options);
        return std::string("nothing sent");
    };
    SUBCASE("a bare SYN with only an MSS: the SYN-ACK carries only our MSS") {
        CHECK(synack_options({wire::opt::Mss{1400}}) == "mss 1460");
    }
    SUBCASE("a SYN offering everything: the SYN-ACK offers everything, echoing the TSval") {
        CHECK(synack_options(tcb::default_syn_options(1400, 5, true, true)) ==
              "mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 7");
    }
}

TEST_CASE("config: TCBs whose configurations differ only in 4-tuple, ISS, IP fields and TSval offset share one copy of the rest") {
    // A run of 10,000 flows held 10,000 copies of the same options, timers and windows.
    auto make = [](std::uint16_t port, std::uint32_t iss, std::uint16_t ip_id, std::uint32_t ts) {
        tcb::TcbConfig c;
        c.tuple = {{{0xC6120001u}, port}, {{0xC6120002u}, 80}};
        c.iss = wire::Seq{iss};
        c.ip.id = ip_id;
        c.ts_offset = ts;
        c.syn_options = tcb::default_syn_options(1460, 7, true, true);
        c.time_wait = std::chrono::seconds{2};
        return c;
    };
    const tcb::TcbConfig ca = make(40000, 1000, 7, 123), cb = make(40001, 2000, 8, 456);
    tcb::Tcb a(ca), b(cb);
    CHECK(&a.syn_options() == &b.syn_options());
    // Each still reads back its own configuration, whole.
    CHECK(a.config() == ca);
    CHECK(b.config() == cb);
    CHECK(a.tuple() == ca.tuple);
    CHECK(b.iss() == cb.iss);
    // A different policy is not merged into theirs.
    tcb::TcbConfig cc = make(40002, 3000, 9, 789);
    cc.time_wait = std::chrono::seconds{60};
    tcb::Tcb c(cc);
    CHECK(&c.syn_options() != &a.syn_options());
    CHECK(c.config() == cc);
}
