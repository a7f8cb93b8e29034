// The run's random numbers (see random.hpp).
#include "tcpprobe/io/random.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"

namespace tcpprobe::io {

Random::result_type Random::operator()() {
    if (seeded_) return (*seeded_)();
    if (left_ == 0) {
        auto* bytes = reinterpret_cast<unsigned char*>(batch_.data());
        std::size_t have = 0;
        const std::size_t want = sizeof batch_;
        // Requests of up to 256 bytes are never cut short once the pool is ready; the
        // loop covers a signal arriving while getrandom waits for it (early boot).
        for (int tries = 0; have < want && tries < 16; ++tries) {
            ssize_t n = ::getrandom(bytes + have, want - have, 0);
            if (n < 0 && errno != EINTR) throw EnvironmentError(fmt::format("getrandom: {}", std::strerror(errno)));
            if (n > 0) have += static_cast<std::size_t>(n);
        }
        if (have < want) throw EnvironmentError("getrandom: no random bytes");
        left_ = batch_.size();
    }
    return batch_[--left_];
}

}  // namespace tcpprobe::io
