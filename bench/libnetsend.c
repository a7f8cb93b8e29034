/* The libnet send limit for bench/run: what one packet costs when libnet crafts and
 * injects it, with nothing else of a tool around it.
 *
 *   libnetsend SRC_IP DST_IP DST_PORT COUNT
 *
 * Sends COUNT IPv4+TCP SYNs through libnet's raw IPv4 injection (LIBNET_RAW4: one
 * IP_HDRINCL socket, one sendto() per libnet_write). Each SYN carries the options
 * tcpprobe's SYN carries by default (MSS, SACK permitted, timestamps, NOP, window
 * scale: 20 bytes) and differs in source port (32768..60999, cycling), sequence number
 * and TSval. As tcpprobe's sender does, the packet is built once and then updated in
 * place through its libnet tags (options, TCP, IPv4), which recomputes the checksums,
 * and written with libnet_write(). The timed loop holds exactly that per-packet work,
 * so its rate is the ceiling of any tool that lets libnet craft and send every packet.
 * Prints one JSON object: {"sent": N, "errors": E, "elapsed_ns": T, "pps": P}.
 *
 * Safety: the destination must lie inside 198.18.0.0/15 (the benchmark lab's
 * addresses, RFC 2544 benchmarking space) and COUNT is at most 1,000,000.
 */
#include <arpa/inet.h>
#include <libnet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_COUNT = 1000000 };

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: libnetsend SRC_IP DST_IP DST_PORT COUNT\n");
        return 64;
    }
    struct in_addr src, dst;
    if (inet_pton(AF_INET, argv[1], &src) != 1 || inet_pton(AF_INET, argv[2], &dst) != 1) {
        fprintf(stderr, "libnetsend: bad address\n");
        return 64;
    }
    if ((ntohl(dst.s_addr) & 0xfffe0000u) != 0xc6120000u) { /* 198.18.0.0/15 only */
        fprintf(stderr, "libnetsend: %s is outside the lab range 198.18.0.0/15\n", argv[2]);
        return 64;
    }
    long dport = strtol(argv[3], NULL, 10), count = strtol(argv[4], NULL, 10);
    if (dport < 1 || dport > 65535 || count < 1 || count > MAX_COUNT) {
        fprintf(stderr, "libnetsend: port 1-65535, count 1-%d\n", MAX_COUNT);
        return 64;
    }
    char err[LIBNET_ERRBUF_SIZE];
    libnet_t *l = libnet_init(LIBNET_RAW4, NULL, err);
    if (!l) {
        fprintf(stderr, "libnetsend: libnet_init: %s\n", err);
        return 77;
    }
    /* MSS 1460, SACK permitted, timestamps (TSval patched per packet), NOP, window scale 7. */
    uint8_t opts[20] = {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7};
    libnet_ptag_t opt_tag = 0, tcp_tag = 0, ip_tag = 0;
    uint32_t seq = 0x5eed1234u;
    long sent = 0, errors = 0;
    int64_t t0 = now_ns();
    /* Bounded: at most 2 * count attempts; a failed write is retried and counted. */
    for (long attempt = 0; sent < count && attempt < 2 * count; ++attempt) {
        const long i = sent;
        seq = seq * 1664525u + 1013904223u;
        const uint32_t tsval = (uint32_t)i;
        opts[8] = (uint8_t)(tsval >> 24), opts[9] = (uint8_t)(tsval >> 16), opts[10] = (uint8_t)(tsval >> 8),
        opts[11] = (uint8_t)tsval;
        if ((opt_tag = libnet_build_tcp_options(opts, sizeof opts, l, opt_tag)) == -1 ||
            (tcp_tag = libnet_build_tcp((uint16_t)(32768 + i % (61000 - 32768)), (uint16_t)dport, seq, 0, TH_SYN, 64240, 0,
                                        0, LIBNET_TCP_H + sizeof opts, NULL, 0, l, tcp_tag)) == -1 ||
            (ip_tag = libnet_build_ipv4(LIBNET_IPV4_H + LIBNET_TCP_H + sizeof opts, 0, (uint16_t)i, IP_DF, 64, IPPROTO_TCP, 0,
                                        src.s_addr, dst.s_addr, NULL, 0, l, ip_tag)) == -1) {
            fprintf(stderr, "libnetsend: build: %s\n", libnet_geterror(l));
            libnet_destroy(l);
            return 70;
        }
        if (libnet_write(l) == -1)
            ++errors;
        else
            ++sent;
    }
    int64_t t1 = now_ns();
    libnet_destroy(l);
    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"sent\": %ld, \"errors\": %ld, \"elapsed_ns\": %lld, \"pps\": %.1f}\n", sent, errors, (long long)(t1 - t0),
           secs > 0 ? (double)sent / secs : 0.0);
    return sent == count ? 0 : 1;
}
