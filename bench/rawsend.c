/* Minimal raw-socket SYN sender: the machine's raw send limit for bench/run.
 *
 *   rawsend SRC_IP DST_IP DST_PORT COUNT [rst]
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
 * Safety: the destination must lie inside 198.18.0.0/15 (the benchmark lab's
 * addresses, RFC 2544 benchmarking space) and COUNT is at most 1,000,000.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

int main(int argc, char **argv) {
    if ((argc != 5 && argc != 6) || (argc == 6 && strcmp(argv[5], "rst") != 0)) {
        fprintf(stderr, "usage: rawsend SRC_IP DST_IP DST_PORT COUNT [rst]\n");
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

    const int per = argc == 6 ? 2 : 1; /* packets per probe */
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
    close(fd);
    free(pkts);
    double secs = (double)(t1 - t0) / 1e9;
    long probes = sent / per;
    printf("{\"sent\": %ld, \"packets\": %ld, \"errors\": %ld, \"elapsed_ns\": %lld, \"pps\": %.1f}\n", probes, sent,
           errors, (long long)(t1 - t0), secs > 0 ? (double)probes / secs : 0.0);
    return sent == total ? 0 : 1;
}
