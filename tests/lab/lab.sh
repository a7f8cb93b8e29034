#!/usr/bin/env bash
# tcpprobe integration-test lab: two network namespaces joined by a veth pair.
#
#   ${TP_LAB}-cli  [${TP_LAB}c0 ${TP_LAB_NET}.1/24] <--veth--> [${TP_LAB}pc  br0  ${TP_LAB}ps] <--veth--> [${TP_LAB}s0 ${TP_LAB_NET}.2/24]  ${TP_LAB}-srv
#                                                     ${TP_LAB}-path (L2 bridge; nft bridge table tppath for loss)
#
# Usage: lab.sh up|down|status|env|exec-client CMD...|exec-server CMD...|exec-path CMD...
#        lab.sh firewall drop|reset SECONDS | firewall off
#
#   up           (re)create the lab; tears an existing one down first and
#                cleans up after itself if any step fails
#   down         kill everything in the lab namespaces, delete nft table and
#                namespaces (the veth goes with them); never fails
#   status       print what exists; exit 0 if the lab is fully up, else 1
#   env          print shell assignments (TP_CLI_NS=... TP_SRV_IP=...) for eval
#   exec-client  run CMD inside the client namespace
#   exec-server  run CMD inside the server namespace
#   firewall     make the path a stateful firewall that forgets idle connections
#                (the `idle` command's middlebox): conntrack on the bridged traffic
#                (br_netfilter), nf_conntrack_tcp_timeout_established=SECONDS,
#                nf_conntrack_tcp_loose=0 (no pick-up of a forgotten connection)
#                and `ct state invalid drop` (drop) or `... reject with tcp reset`
#                (reset: the path answers with its own RST, TTL 255); `off`
#                restores the plain bridge. Nothing of it exists unless asked for.
#
# Server-namespace ports (see README.md and servers.py):
#   7 echo | 80 http (server closes first) | 81 closed (RST) |
#   82 SYN dropped (nft) | 83 nft reject icmp admin-prohibited (3/13) |
#   8001 close 0.5 s after client EOF | 8002 close at client EOF |
#   8003 send 5000 x after client EOF, close | 8004 reply, then RST (linger 0) |
#   8005 never close | 8006 http, then shutdown(SHUT_WR), socket kept open |
#   8007 echo with SO_KEEPALIVE, TCP_KEEPIDLE 3 s, TCP_KEEPINTVL 1 s, TCP_KEEPCNT 4
#
# Environment:
#   TP_LAB       instance name (default tp, [A-Za-z0-9_-], at most 13 chars)
#   TP_LAB_NET   first three octets of the /24 (default 198.18.0; commands
#                other than `up` default to what `up` recorded)
#   TCP_SYNACK_RETRIES=2 TCP_FIN_TIMEOUT=3 TCP_ORPHAN_RETRIES=2
#   TCP_SYNCOOKIES=1 TCP_RFC1337=0 ICMP_RATELIMIT=0      (server ns sysctls)
#   TCP_TIMESTAMPS TCP_SACK TCP_WINDOW_SCALING  (server ns; kernel default
#                                                unless set)
#   TP_LAB_IDLE_TIMEOUT  per-connection idle timeout of servers.py (120 s)
#
# Offloads (tx/rx checksum, sg, tso, gso, gro) are turned off on both veth
# ends with ethtool, or with offload_off.py when ethtool is not installed.
#
# Safety: every address used lives inside the two namespaces created here;
# nothing is routed to or from the host's own network namespace.

set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVERS_PY=$LAB_DIR/servers.py

TP_LAB=${TP_LAB:-tp}

die() { echo "lab.sh: $*" >&2; exit 1; }
warn() { echo "lab.sh: $*" >&2; }

[[ $TP_LAB =~ ^[A-Za-z0-9_-]{1,13}$ ]] ||
    die "TP_LAB must match [A-Za-z0-9_-]{1,13} (interface names are <= 15 chars)"
STATE_DIR=/run/tcpprobe-lab/${TP_LAB}

# `up` records the network it used; other commands default to that record,
# so only `up` needs TP_LAB_NET.
if [[ -z ${TP_LAB_NET:-} ]]; then
    TP_LAB_NET=198.18.0
    if [[ ${1:-} != up && -r $STATE_DIR/net ]]; then TP_LAB_NET=$(<"$STATE_DIR/net"); fi
fi
[[ $TP_LAB_NET =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
    die "TP_LAB_NET must be three octets, e.g. 198.18.1"
for _o in "${BASH_REMATCH[@]:1}"; do
    (( 10#$_o <= 255 )) || die "TP_LAB_NET: bad octet $_o"
done
case $TP_LAB_NET in 0.*|127.*|22[4-9].*|2[3-5][0-9].*)
    die "TP_LAB_NET $TP_LAB_NET is not a unicast lab network";; esac

CLI_NS=${TP_LAB}-cli
SRV_NS=${TP_LAB}-srv
PATH_NS=${TP_LAB}-path
CLI_IF=${TP_LAB}c0
SRV_IF=${TP_LAB}s0
PATH_CLI_IF=${TP_LAB}pc
PATH_SRV_IF=${TP_LAB}ps
PATH_BR=br0
PATH_TABLE=tppath
CLI_IP=${TP_LAB_NET}.1
SRV_IP=${TP_LAB_NET}.2
PREFIX=24
PIDFILE=$STATE_DIR/servers.pid
LOGFILE=$STATE_DIR/servers.log
NFT_TABLE=tplab
CLOSED_PORT=81
DROP_PORT=82
REJECT_PORT=83

ns_exists() { [[ -e /run/netns/$1 ]]; }
in_cli() { ip netns exec "$CLI_NS" "$@"; }
in_srv() { ip netns exec "$SRV_NS" "$@"; }
in_path() { ip netns exec "$PATH_NS" "$@"; }

# Ports servers.py listens on (single source of truth: its BEHAVIOURS table).
server_ports() { python3 "$SERVERS_PY" --list | awk '{print $1}'; }

# Zombies count as dead (they may wait for a slow-reaping init as parent).
pid_alive() {
    local stat
    [[ -n ${1:-} ]] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# TERM, wait up to 3 s, KILL, wait up to 2 s.
kill_pid() {
    local pid=$1 i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 30; i++)); do pid_alive "$pid" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do pid_alive "$pid" || return 0; sleep 0.1; done
    warn "pid $pid did not die"
}

servers_pid() {
    local pid
    [[ -r $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    pid_alive "$pid" || return 1
    # Guard against PID reuse: must really be our servers.py.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'servers\.py' || return 1
    echo "$pid"
}

lab_down() {
    local ns pid
    if pid=$(servers_pid); then kill_pid "$pid"; fi
    for ns in "$SRV_NS" "$CLI_NS" "$PATH_NS"; do
        ns_exists "$ns" || continue
        # Anything else still running inside our namespaces is lab-owned.
        for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
            kill_pid "$pid"
        done
        if [[ $ns == "$SRV_NS" ]]; then
            ip netns exec "$ns" nft delete table inet "$NFT_TABLE" 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || warn "could not delete netns $ns"
    done
    rm -rf "$STATE_DIR"
}

# set_sysctl NS KEY VALUE
set_sysctl() { ip netns exec "$1" sysctl -q -w "$2=$3" >/dev/null; }

disable_offloads() { # NS IF
    local f
    if command -v ethtool >/dev/null 2>&1; then
        for f in rx tx sg tso gso gro lro rxvlan txvlan; do
            ip netns exec "$1" ethtool -K "$2" "$f" off >/dev/null 2>&1 || true
        done
    # No ethtool binary: same ioctls from python (stdlib only).
    elif ! ip netns exec "$1" python3 "$LAB_DIR/offload_off.py" "$2" >/dev/null; then
        warn "could not turn off all offloads on $2 (continuing)"
    fi
}

wait_link_up() { # NS IF
    local i
    for ((i = 0; i < 50; i++)); do             # <= ~5 s
        [[ $(ip netns exec "$1" cat "/sys/class/net/$2/operstate") == up ]] && return 0
        sleep 0.1
    done
    warn "$2 in $1 not up after 5 s"
    return 1
}

wait_listening() {
    local ports want p i missing out
    ports=$(server_ports)
    for ((i = 0; i < 100; i++)); do            # <= ~10 s
        if ! servers_pid >/dev/null; then
            warn "servers.py exited; log follows"
            cat "$LOGFILE" >&2 || true
            return 1
        fi
        out=$(in_srv ss -Hltn 2>/dev/null || true)
        missing=
        for p in $ports; do
            want="$SRV_IP:$p"
            grep -qF " $want " <<<"$out " || missing+=" $p"
        done
        [[ -z $missing ]] && return 0
        sleep 0.1
    done
    warn "ports not listening after 10 s:$missing"
    return 1
}

_up_done=0
_up_abort() {
    local rc=$?
    if (( ! _up_done )); then
        warn "up failed (rc=$rc), tearing the lab down"
        set +e
        lab_down
    fi
}

lab_up() {
    local ns name var val pid i mac_c mac_s

    lab_down
    _up_done=0
    trap _up_abort EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    mkdir -p "$STATE_DIR"
    echo "$TP_LAB_NET" >"$STATE_DIR/net"
    ip netns add "$CLI_NS"
    ip netns add "$SRV_NS"
    ip netns add "$PATH_NS"
    for ns in "$CLI_NS" "$SRV_NS" "$PATH_NS"; do
        # New devices in this namespace start with IPv6 off (no RS/DAD/MLD).
        set_sysctl "$ns" net.ipv6.conf.default.disable_ipv6 1
        ip netns exec "$ns" ip link set lo up
    done

    # Created directly inside the namespaces: never visible in the host ns. The path
    # namespace is a plain L2 bridge between the two veth pairs: loss is injected there
    # (nft bridge table $PATH_TABLE, empty unless a test adds rules), after the sender's
    # transmit succeeded and before the receiver's capture, as on a real path. Dropping
    # in the server's own output hooks would not do: Linux sees the send fail and
    # changes its timers (a SYN-ACK that fails to send drops the request).
    ip link add "$CLI_IF" netns "$CLI_NS" type veth peer name "$PATH_CLI_IF" netns "$PATH_NS"
    ip link add "$SRV_IF" netns "$SRV_NS" type veth peer name "$PATH_SRV_IF" netns "$PATH_NS"
    set_sysctl "$CLI_NS" "net.ipv6.conf.$CLI_IF.disable_ipv6" 1
    set_sysctl "$SRV_NS" "net.ipv6.conf.$SRV_IF.disable_ipv6" 1
    set_sysctl "$PATH_NS" "net.ipv6.conf.$PATH_CLI_IF.disable_ipv6" 1
    set_sysctl "$PATH_NS" "net.ipv6.conf.$PATH_SRV_IF.disable_ipv6" 1
    in_path ip link add "$PATH_BR" type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    set_sysctl "$PATH_NS" "net.ipv6.conf.$PATH_BR.disable_ipv6" 1
    in_path ip link set "$PATH_CLI_IF" master "$PATH_BR"
    in_path ip link set "$PATH_SRV_IF" master "$PATH_BR"
    disable_offloads "$CLI_NS" "$CLI_IF"
    disable_offloads "$SRV_NS" "$SRV_IF"
    disable_offloads "$PATH_NS" "$PATH_CLI_IF"
    disable_offloads "$PATH_NS" "$PATH_SRV_IF"
    in_path ip link set "$PATH_CLI_IF" up
    in_path ip link set "$PATH_SRV_IF" up
    in_path ip link set "$PATH_BR" up
    in_path nft add table bridge "$PATH_TABLE"
    in_path nft add chain bridge "$PATH_TABLE" forward '{ type filter hook forward priority 0; policy accept; }'

    in_cli ip addr add "$CLI_IP/$PREFIX" dev "$CLI_IF"
    in_srv ip addr add "$SRV_IP/$PREFIX" dev "$SRV_IF"
    in_cli ip link set "$CLI_IF" up
    in_srv ip link set "$SRV_IF" up
    wait_link_up "$CLI_NS" "$CLI_IF"
    wait_link_up "$SRV_NS" "$SRV_IF"
    wait_link_up "$PATH_NS" "$PATH_BR"

    # Permanent neighbour entries: no ARP traffic or ARP delay in tests.
    mac_c=$(in_cli cat "/sys/class/net/$CLI_IF/address")
    mac_s=$(in_srv cat "/sys/class/net/$SRV_IF/address")
    in_cli ip neigh replace "$SRV_IP" lladdr "$mac_s" dev "$CLI_IF" nud permanent
    in_srv ip neigh replace "$CLI_IP" lladdr "$mac_c" dev "$SRV_IF" nud permanent

    # Server namespace TCP sysctls (env var = upper-case sysctl name).
    for name in tcp_synack_retries:2 tcp_fin_timeout:3 tcp_orphan_retries:2 \
                tcp_syncookies:1 tcp_rfc1337:0 icmp_ratelimit:0 \
                tcp_timestamps: tcp_sack: tcp_window_scaling:; do
        var=${name%%:*}; var=${var^^}
        val=${!var:-${name#*:}}
        [[ -z $val ]] && continue          # keep kernel default
        set_sysctl "$SRV_NS" "net.ipv4.${name%%:*}" "$val"
    done

    in_srv nft -f - <<EOF
table inet $NFT_TABLE {
    chain input {
        type filter hook input priority filter; policy accept;
        tcp dport $DROP_PORT drop
        meta nfproto ipv4 tcp dport $REJECT_PORT reject with icmp type admin-prohibited
        meta nfproto ipv6 tcp dport $REJECT_PORT reject with icmpv6 type admin-prohibited
    }
}
EOF

    : >"$LOGFILE"
    # setsid: detach from the caller's session/terminal; servers.py writes
    # its own PID file (the PID of this background job may be a wrapper).
    setsid ip netns exec "$SRV_NS" python3 -u "$SERVERS_PY" \
        --bind "$SRV_IP" --pidfile "$PIDFILE" \
        --idle-timeout "${TP_LAB_IDLE_TIMEOUT:-120}" \
        </dev/null >>"$LOGFILE" 2>&1 &
    pid=$!
    for ((i = 0; i < 50; i++)); do             # <= ~5 s
        servers_pid >/dev/null && break
        kill -0 "$pid" 2>/dev/null || break    # died before writing its PID
        sleep 0.1
    done
    servers_pid >/dev/null || { cat "$LOGFILE" >&2 || true; die "servers.py did not start"; }
    wait_listening

    _up_done=1
    trap - EXIT INT TERM
    echo "lab '$TP_LAB' up: $CLI_NS/$CLI_IF $CLI_IP <-> $SRV_NS/$SRV_IF $SRV_IP" \
         "(servers pid $(servers_pid), log $LOGFILE)"
}

FW_TABLE=tpfirewall
FW_ADDR_SUFFIX=254

# The idle-timeout firewall (see the header). Per-namespace sysctls of the path
# namespace only; the previous values are kept in $STATE_DIR/firewall and restored.
firewall_off() {
    local saved key val
    ns_exists "$PATH_NS" || return 0
    in_path nft delete table inet "$FW_TABLE" 2>/dev/null || true
    in_path ip addr del "$TP_LAB_NET.$FW_ADDR_SUFFIX/$PREFIX" dev "$PATH_BR" 2>/dev/null || true
    saved=$STATE_DIR/firewall
    if [[ -r $saved ]]; then
        while read -r key val; do
            [[ -n $key && -n $val ]] && set_sysctl "$PATH_NS" "$key" "$val"
        done <"$saved"
        rm -f "$saved"
    fi
}

firewall_on() { # drop|reset SECONDS
    local mode=$1 secs=$2 action key saved
    [[ $mode == drop || $mode == reset ]] || die "firewall: mode must be drop or reset, not '$mode'"
    [[ $secs =~ ^[0-9]{1,7}$ ]] && (( secs > 0 )) || die "firewall: SECONDS must be a positive integer, not '$secs'"
    ns_exists "$PATH_NS" || die "netns $PATH_NS does not exist (run: lab.sh up)"
    in_path test -e /proc/sys/net/bridge/bridge-nf-call-iptables ||
        die "firewall: br_netfilter is not loaded (modprobe br_netfilter): no conntrack on the bridge"
    firewall_off
    saved=$STATE_DIR/firewall
    : >"$saved"
    for key in net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_loose \
               net.ipv4.ip_default_ttl net.bridge.bridge-nf-call-iptables; do
        echo "$key $(in_path sysctl -n "$key" 2>/dev/null || echo)" >>"$saved"
    done
    set_sysctl "$PATH_NS" net.bridge.bridge-nf-call-iptables 1
    action=drop
    if [[ $mode == reset ]]; then
        # The RST needs a route back to the client, and carries the path's own TTL.
        in_path ip addr add "$TP_LAB_NET.$FW_ADDR_SUFFIX/$PREFIX" dev "$PATH_BR"
        set_sysctl "$PATH_NS" net.ipv4.ip_default_ttl 255
        action="reject with tcp reset"
    fi
    # A `ct timeout` policy object would be the per-flow way, but the kernel does not
    # apply it to bridged traffic (tried: it stays at 5 days): the namespace's sysctl.
    in_path nft -f - <<EOF
table inet $FW_TABLE {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ip saddr $CLI_IP ip daddr $SRV_IP ct state invalid counter $action
        ip saddr $SRV_IP ip daddr $CLI_IP ct state invalid counter drop
    }
}
EOF
    set_sysctl "$PATH_NS" net.netfilter.nf_conntrack_tcp_loose 0
    set_sysctl "$PATH_NS" net.netfilter.nf_conntrack_tcp_timeout_established "$secs"
    echo "lab '$TP_LAB' path: firewall $mode, established timeout ${secs} s"
}

lab_status() {
    local ok=0 ns pid
    echo "lab '$TP_LAB' (net $TP_LAB_NET.0/$PREFIX, state $STATE_DIR)"
    for ns in "$CLI_NS" "$PATH_NS" "$SRV_NS"; do
        if ns_exists "$ns"; then
            echo "netns $ns: present"
            ip netns exec "$ns" ip -br addr show 2>/dev/null | sed 's/^/    /'
        else
            echo "netns $ns: absent"; ok=1
        fi
    done
    if ns_exists "$SRV_NS"; then
        if in_srv nft list table inet "$NFT_TABLE" >/dev/null 2>&1; then
            echo "nft table inet $NFT_TABLE: present"
            in_srv nft list table inet "$NFT_TABLE" | sed 's/^/    /'
        else
            echo "nft table inet $NFT_TABLE: absent"; ok=1
        fi
    fi
    if pid=$(servers_pid); then
        echo "servers.py: running, pid $pid (log $LOGFILE)"
    else
        echo "servers.py: not running"; ok=1
    fi
    if ns_exists "$SRV_NS"; then
        echo "listening in $SRV_NS:"
        in_srv ss -Hltn 2>/dev/null | awk '{print "    " $4}'
    fi
    return $ok
}

lab_env() {
    cat <<EOF
TP_LAB=$TP_LAB
TP_CLI_NS=$CLI_NS
TP_SRV_NS=$SRV_NS
TP_PATH_NS=$PATH_NS
TP_PATH_TABLE=$PATH_TABLE
TP_CLI_IF=$CLI_IF
TP_SRV_IF=$SRV_IF
TP_CLI_IP=$CLI_IP
TP_SRV_IP=$SRV_IP
TP_LAB_STATE=$STATE_DIR
TP_PORT_CLOSED=$CLOSED_PORT
TP_PORT_DROP=$DROP_PORT
TP_PORT_REJECT=$REJECT_PORT
EOF
}

usage() {
    echo "usage: ${0##*/} up|down|status|env|exec-client CMD...|exec-server CMD...|exec-path CMD...|firewall drop|reset SECONDS|firewall off" >&2
    exit 2
}

[[ $EUID -eq 0 ]] || [[ ${1:-} == env ]] || die "must run as root"

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
    up)          lab_up ;;
    down)        lab_down ;;
    status)      lab_status ;;
    env)         lab_env ;;
    firewall)
        case ${1:-} in
            off) firewall_off ;;
            drop|reset) [[ $# -eq 2 ]] || usage; firewall_on "$1" "$2" ;;
            *) usage ;;
        esac ;;
    exec-client|exec-server|exec-path)
        [[ $# -gt 0 ]] || usage
        case $cmd in exec-client) ns=$CLI_NS ;; exec-server) ns=$SRV_NS ;; *) ns=$PATH_NS ;; esac
        ns_exists "$ns" || die "netns $ns does not exist (run: lab.sh up)"
        exec ip netns exec "$ns" "$@" ;;
    *) usage ;;
esac
