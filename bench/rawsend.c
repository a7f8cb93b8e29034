/* Minimal raw-socket SYN sender: the machine's raw send limit for bench/run.
 *
 *   rawsend SRC_IP DST_IP DST_PORT COUNT [rst|capture|stamped]
 *
 * Prebuilds COUNT IPv4+TCP SYNs (source ports cycling through 32768..60999, a
 * different sequence number each, checksums computed once), then sends them with
 * one sendto() each on an IPPROTO_RAW socket (IP_HDRINCL) in a bounded loop and
 * prints one JSON object: {"sent": N, "errors": E, "elapsed_ns": T, "pps": P}
 * (N and P count probes). With `rst`, every SYN is followed by a RST (seq + 1) from
 * the same port, as tcpprobe ping sends one per answered probe: two sendto() per
 * probe, the packet pattern of ping without its capture and bookkeeping.
 * Nothing else happens inside the timed loop.
 *
 * `capture` and `stamped` measure the ceiling of a sender that sees every answer, as
 * tcpprobe ping must to correlate them: the same SYNs and loop, while a second thread
 * (the machine's other core) reads every answer from a raw TCP socket with the
 * kernel's receive timestamp (SO_TIMESTAMPNS), in batches (recvmmsg), busy-polling so
 * the sender never pays for waking it. `stamped` also asks for the software transmit
 * timestamps tcpprobe takes of each packet it sends (SCHED and SND, with OPT_ID), which
 * the same thread reads from the error queue. The answers and stamps read are printed
 * ("answers", "stamps") so a ceiling is only taken when nothing was missed. On veth the
 * kernel work of receiving (cloning each answer to the raw socket, queueing each
 * stamp) runs on the sender's core, inside its sendto(): that is the cost measured.
 *
 * Safety: the destination must lie inside 198.18.0.0/15 (the benchmark lab's
 * addresses, RFC 2544 benchmarking space) and COUNT is at most 1,000,000.
 */
#define _GNU_SOURCE /* recvmmsg */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { PKT = 40, MAX_COUNT = 1000000 };

static uint16_t csum(const uint8_t *p, size_t n, uint32_t sum) {
    for (; n > 1; p += 2, n -= 2) sum += (uint32_t)(p[0] << 8 | p[1]);
    if (n) sum += (uint32_t)(p[0] << 8);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The receiving thread of `capture` and `stamped`. */
struct reader {
    int rx_fd, tx_fd; /* tx_fd < 0: no transmit stamps */
    uint16_t peer_port;
    uint32_t peer_addr; /* network order */
    atomic_int stop;
    atomic_long answers, stamps; /* written by the reader, read by the sender */
};

enum { BATCH = 64, SLOT = 256 };

/* Reads what is queued on fd (the error queue with MSG_ERRQUEUE) in batches; returns the
 * number of messages, and counts the answers from the peer among them. */
static long read_batches(struct reader *r, int fd, int flags) {
    static uint8_t data[BATCH][SLOT];
    static char control[BATCH][256];
    struct mmsghdr h[BATCH];
    struct iovec iov[BATCH];
    long got_total = 0, answers = 0;
    for (int rounds = 0; rounds < 1024; ++rounds) { /* bounded per call */
        memset(h, 0, sizeof h);
        for (int i = 0; i < BATCH; ++i) {
            iov[i].iov_base = data[i];
            iov[i].iov_len = SLOT;
            h[i].msg_hdr.msg_iov = &iov[i];
            h[i].msg_hdr.msg_iovlen = 1;
            h[i].msg_hdr.msg_control = control[i];
            h[i].msg_hdr.msg_controllen = sizeof control[i];
        }
        int n = recvmmsg(fd, h, BATCH, flags | MSG_DONTWAIT, NULL);
        if (n <= 0) break;
        got_total += n;
        if (!(flags & MSG_ERRQUEUE))
            for (int i = 0; i < n; ++i) {
                const uint8_t *ip = data[i];
                size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
                if (h[i].msg_len >= ihl + 20 && memcmp(ip + 12, &r->peer_addr, 4) == 0 &&
                    (uint16_t)(ip[ihl] << 8 | ip[ihl + 1]) == r->peer_port)
                    ++answers;
            }
        if (n < BATCH) break;
    }
    atomic_fetch_add(&r->answers, answers);
    return got_total;
}

static void *read_answers(void *arg) {
    struct reader *r = arg;
    for (;;) {
        const int stopping = atomic_load(&r->stop);
        if (r->tx_fd >= 0) atomic_fetch_add(&r->stamps, read_batches(r, r->tx_fd, MSG_ERRQUEUE));
        read_batches(r, r->rx_fd, 0);
        if (stopping) return NULL;
    }
}

int main(int argc, char **argv) {
    const char *mode = argc == 6 ? argv[5] : "";
    if ((argc != 5 && argc != 6) ||
        (argc == 6 && strcmp(mode, "rst") != 0 && strcmp(mode, "capture") != 0 && strcmp(mode, "stamped") != 0)) {
        fprintf(stderr, "usage: rawsend SRC_IP DST_IP DST_PORT COUNT [rst|capture|stamped]\n");
        return 64;
    }
    struct in_addr src, dst;
    if (inet_pton(AF_INET, argv[1], &src) != 1 || inet_pton(AF_INET, argv[2], &dst) != 1) {
        fprintf(stderr, "rawsend: bad address\n");
        return 64;
    }
    uint32_t d = ntohl(dst.s_addr);
    if ((d & 0xfffe0000u) != 0xc6120000u) { /* 198.18.0.0/15 only */
        fprintf(stderr, "rawsend: %s is outside the lab range 198.18.0.0/15\n", argv[2]);
        return 64;
    }
    long dport = strtol(argv[3], NULL, 10), count = strtol(argv[4], NULL, 10);
    if (dport < 1 || dport > 65535 || count < 1 || count > MAX_COUNT) {
        fprintf(stderr, "rawsend: port 1-65535, count 1-%d\n", MAX_COUNT);
        return 64;
    }

    const int per = strcmp(mode, "rst") == 0 ? 2 : 1; /* packets per probe */
    uint8_t *pkts = calloc((size_t)count * per, PKT);
    if (!pkts) return 70;
    uint32_t seq = 0x5eed1234u;
    for (long j = 0; j < count * per; ++j) {
        long i = j / per;
        int rst = per == 2 && j % 2 == 1;
        uint8_t *ip = pkts + (size_t)j * PKT, *tcp = ip + 20;
        ip[0] = 0x45;
        put16(ip + 2, PKT);
        put16(ip + 4, (uint16_t)j);
        put16(ip + 6, 0x4000); /* DF */
        ip[8] = 64;
        ip[9] = IPPROTO_TCP;
        memcpy(ip + 12, &src.s_addr, 4);
        memcpy(ip + 16, &dst.s_addr, 4);
        put16(ip + 10, csum(ip, 20, 0));
        put16(tcp, (uint16_t)(32768 + i % (61000 - 32768)));
        put16(tcp + 2, (uint16_t)dport);
        if (!rst) seq = seq * 1664525u + 1013904223u;
        put32(tcp + 4, rst ? seq + 1 : seq);
        tcp[12] = 5 << 4;
        tcp[13] = rst ? 0x04 : 0x02; /* RST : SYN */
        put16(tcp + 14, rst ? 0 : 64240);
        uint8_t pseudo[12];
        memcpy(pseudo, ip + 12, 8);
        pseudo[8] = 0;
        pseudo[9] = IPPROTO_TCP;
        put16(pseudo + 10, 20);
        uint32_t s = 0;
        for (int k = 0; k < 12; k += 2) s += (uint32_t)(pseudo[k] << 8 | pseudo[k + 1]);
        put16(tcp + 16, csum(tcp, 20, s));
    }

    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (fd < 0) {
        perror("rawsend: socket");
        return 77;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = dst};
    const int capture = strcmp(mode, "capture") == 0 || strcmp(mode, "stamped") == 0;
    struct reader reader = {.rx_fd = -1, .tx_fd = -1, .peer_port = (uint16_t)dport, .peer_addr = dst.s_addr};
    pthread_t thread;
    if (capture) {
        const int on = 1, bytes = 32 << 20;
        reader.rx_fd = socket(AF_INET, SOCK_RAW, IPPROTO_TCP);
        if (reader.rx_fd < 0 || setsockopt(reader.rx_fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) != 0 ||
            setsockopt(reader.rx_fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
            perror("rawsend: capture socket");
            return 77;
        }
        if (strcmp(mode, "stamped") == 0) {
            const unsigned flags = SOF_TIMESTAMPING_TX_SCHED | SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE |
                                   SOF_TIMESTAMPING_OPT_ID;
            if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) != 0 ||
                setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
                perror("rawsend: transmit timestamps");
                return 77;
            }
            reader.tx_fd = fd;
        }
        if (pthread_create(&thread, NULL, read_answers, &reader) != 0) {
            fprintf(stderr, "rawsend: no reader thread\n");
            return 71;
        }
    }
    long sent = 0, errors = 0, total = count * per;
    int64_t t0 = now_ns();
    /* Bounded: at most 2 * total attempts; ENOBUFS/EAGAIN are retried, counted as errors. */
    for (long attempt = 0; sent < total && attempt < 2 * total; ++attempt) {
        if (sendto(fd, pkts + (size_t)sent * PKT, PKT, 0, (struct sockaddr *)&to, sizeof to) == PKT)
            ++sent;
        else
            ++errors;
    }
    int64_t t1 = now_ns();
    if (capture) {
        /* Bounded: the last answers get at most one second to be read. */
        for (int waited = 0; waited < 100 && atomic_load(&reader.answers) < sent; ++waited) usleep(10000);
        atomic_store(&reader.stop, 1);
        pthread_join(thread, NULL);
        close(reader.rx_fd);
    }
    close(fd);
    free(pkts);
    double secs = (double)(t1 - t0) / 1e9;
    long probes = sent / per;
    printf("{\"sent\": %ld, \"packets\": %ld, \"errors\": %ld, \"elapsed_ns\": %lld, \"pps\": %.1f", probes, sent,
           errors, (long long)(t1 - t0), secs > 0 ? (double)probes / secs : 0.0);
    if (capture) printf(", \"answers\": %ld, \"stamps\": %ld", atomic_load(&reader.answers), atomic_load(&reader.stamps));
    printf("}\n");
    return sent == total ? 0 : 1;
}
