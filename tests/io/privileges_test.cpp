// Who tcpprobe runs as once setup is over (io::identity_after_setup): never root, the
// invoking user under sudo, nobody otherwise; a file-capability user keeps its ids.
// The drop itself (capability sets, no_new_privs, seccomp) is checked on a running probe
// by the lab test tests/integration/test_hardening.py, which reads /proc/PID/status.
#include <doctest/doctest.h>

#include "tcpprobe/io/privileges.hpp"

using tcpprobe::io::identity_after_setup;
using tcpprobe::io::nobody_id;

TEST_CASE("privileges: root under sudo becomes the invoking user") {
    auto id = identity_after_setup(0, 0, 0, "1000", "1001");
    CHECK(id.switch_ids);
    CHECK(id.uid == 1000);
    CHECK(id.gid == 1001);
}

TEST_CASE("privileges: root without sudo becomes nobody") {
    auto id = identity_after_setup(0, 0, 0, nullptr, nullptr);
    CHECK(id.switch_ids);
    CHECK(id.uid == nobody_id);
    CHECK(id.gid == nobody_id);
}

TEST_CASE("privileges: SUDO_UID naming root, or not a number, is not trusted: nobody") {
    for (auto [u, g] : {std::pair{"0", "0"}, {"1000", "0"}, {"0", "1000"}, {"10x", "1000"}, {"", "1000"}, {"1000", nullptr},
                        {"-1", "1000"}, {"99999999999", "1000"}}) {
        CAPTURE(u);
        CAPTURE(g);
        auto id = identity_after_setup(0, 0, 0, u, g);
        CHECK(id.switch_ids);
        CHECK(id.uid == nobody_id);
        CHECK(id.gid == nobody_id);
    }
}

TEST_CASE("privileges: a user running a file-capability copy keeps its ids, whatever SUDO_UID says") {
    auto id = identity_after_setup(1000, 1000, 1000, "0", "0");
    CHECK_FALSE(id.switch_ids);
    CHECK(id.uid == 1000);
    CHECK(id.gid == 1000);
}

TEST_CASE("privileges: an effective or real uid of 0 alone still counts as root") {
    CHECK(identity_after_setup(0, 1000, 1000, nullptr, nullptr).switch_ids);
    CHECK(identity_after_setup(1000, 0, 1000, nullptr, nullptr).switch_ids);
}
