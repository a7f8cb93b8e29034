/* The latency floor of any libpcap tool: open a capture the way tcpprobe does
 * (immediate mode, 1 MiB buffer, snaplen 65535, nanosecond timestamps), activate it,
 * close it, exit. No packet is sent. bench/run times this process like the others.
 *
 *   pcapfloor IFACE
 */
#include <pcap/pcap.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: pcapfloor IFACE\n");
        return 64;
    }
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_create(argv[1], err);
    if (!p) {
        fprintf(stderr, "pcapfloor: %s\n", err);
        return 69;
    }
    pcap_set_snaplen(p, 65535);
    pcap_set_immediate_mode(p, 1);
    pcap_set_buffer_size(p, 1 << 20);
    pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO);
    if (pcap_activate(p) < 0) {
        fprintf(stderr, "pcapfloor: %s\n", pcap_geterr(p));
        pcap_close(p);
        return 69;
    }
    pcap_close(p);
    return 0;
}
