# fish completion for tcpprobe(8)
#
# Installed as ${datadir}/fish/vendor_completions.d/tcpprobe.fish.
# Every command and option of the CLI must be listed here, per command:
# tests/app/cli_docs_test.cpp checks it.

set -l commands handshake teardown half-close retransmit listen time-wait ping fin-wait-2 keepalive idle profile
# Conditions: after any command, after a command that connects, after one of them.
set -l any "__fish_seen_subcommand_from handshake teardown half-close retransmit listen time-wait ping fin-wait-2 keepalive idle profile"
# --isn N and the flag --ts (time-wait gives both words of its own)
set -l num "__fish_seen_subcommand_from handshake teardown half-close retransmit listen ping fin-wait-2 keepalive idle"
set -l conn "__fish_seen_subcommand_from handshake teardown half-close retransmit time-wait fin-wait-2 keepalive idle profile"
set -l targets "__fish_seen_subcommand_from handshake teardown half-close retransmit time-wait ping fin-wait-2 keepalive idle profile"
set -l hs "__fish_seen_subcommand_from handshake"
set -l tw "__fish_seen_subcommand_from time-wait"
set -l ping "__fish_seen_subcommand_from ping"
set -l fw2 "__fish_seen_subcommand_from fin-wait-2"
set -l idle "__fish_seen_subcommand_from idle"
set -l ka "__fish_seen_subcommand_from keepalive"
set -l prof "__fish_seen_subcommand_from profile"
set -l retx "__fish_seen_subcommand_from retransmit"
set -l listen "__fish_seen_subcommand_from listen"
set -l close "__fish_seen_subcommand_from teardown half-close"
set -l td "__fish_seen_subcommand_from teardown"

complete -c tcpprobe -f

# --request @FILE: complete the file name after the @.
function __tcpprobe_request_file
    set -l tok (string replace -r -- '^--request=' '' (commandline -ct))
    if string match -q -- '@*' $tok
        __fish_complete_path (string sub -s 2 -- $tok) | string replace -r '^' '@'
    end
end

# Commands
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a handshake \
    -d 'SYN with chosen options, observe the answer, complete or reset'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a teardown \
    -d 'Open a connection, then play a close sequence (--mode)'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a half-close \
    -d 'Open a connection, send the request and our FIN, keep receiving'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a retransmit \
    -d 'Time the peer\'s SYN-ACK or FIN retransmissions, never ACKed'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a listen \
    -d 'Time a remote client\'s SYN retransmissions to a local port'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a time-wait \
    -d 'Make the peer close first, then probe its TIME-WAIT'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a ping \
    -d 'Half-open SYN probes timed at the wire, to one or many HOST:PORTS'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a fin-wait-2 \
    -d 'How long the peer holds FIN-WAIT-2 (one FIN per connection)'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a keepalive \
    -d 'Record the peer\'s keepalive probes on an idle connection (or send ours)'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a idle \
    -d 'How long the path (NAT, firewall) carries an idle connection'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -a profile \
    -d 'Every experiment at once, paced: the host\'s connection-management profile'

# Global options (accepted after the command too)
complete -c tcpprobe -s o -l output -x -a 'text json' -d 'Output format'
complete -c tcpprobe -s w -l write -r -F -d 'Write every captured packet to a pcap file'
complete -c tcpprobe -l write-limit -x -d 'Stop writing the pcap file at this size (e.g. 10M)'
complete -c tcpprobe -s v -l verbose -d 'More log output on stderr (repeatable)'
complete -c tcpprobe -s q -l quiet -d 'Log only errors'
complete -c tcpprobe -l no-color -d 'Never color the text output'
complete -c tcpprobe -l no-rst-guard -d 'Do not install the RST guard'
complete -c tcpprobe -l rst-guard -x -a 'socket nft' -d 'How the local kernel is kept from answering'
complete -c tcpprobe -l source -x -a '(__fish_print_hostnames)' -d 'Source address instead of the routed one'
complete -c tcpprobe -s i -l interface -x -a '(__fish_print_interfaces)' -d 'Send and capture on this interface'
complete -c tcpprobe -n "not __fish_seen_subcommand_from $commands" -l version -d 'Show the version and exit'
complete -c tcpprobe -s h -l help -d 'Show help and exit'

# Every command: the SYN options (for listen: those of our answer).
# Every command but listen: the target HOST:PORT (handshake, ping: HOST:PORTS, several).
# Every command that connects: the connection options.
complete -c tcpprobe -n $targets -x -a '(__fish_print_hostnames | string replace -r \'$\' :)' -d 'Target HOST:PORT'
complete -c tcpprobe -n $any -l mss -x -d 'MSS option value'
complete -c tcpprobe -n $any -l no-mss -d 'Send no MSS option'
complete -c tcpprobe -n $any -l wscale -x -a '(seq 0 14)' -d 'Window scale option, shift 0-14'
complete -c tcpprobe -n $any -l sack -d 'Send the SACK-permitted option'
complete -c tcpprobe -n $num -l ts -d 'Send the timestamps option'
complete -c tcpprobe -n $any -l option -x -d 'Raw option KIND:HEX (repeatable, kept in order)'
complete -c tcpprobe -n $any -l window -x -d 'Window field of the SYN'
complete -c tcpprobe -n $any -l ttl -x -d 'IP time to live'
complete -c tcpprobe -n $any -l tos -x -d 'IP type-of-service byte'
complete -c tcpprobe -n $any -l df -d 'Set the IP do-not-fragment bit (default)'
complete -c tcpprobe -n $any -l no-df -d 'Clear the IP do-not-fragment bit'
complete -c tcpprobe -n $any -l ip-id -x -d 'IP identification of the first packet'
complete -c tcpprobe -n $num -l isn -x -d 'Initial sequence number'
complete -c tcpprobe -n $any -l sport -x -d 'Source port'
complete -c tcpprobe -n $any -l flags -x -a 'fin syn rst psh ack urg ece cwr ece,cwr' -d 'Extra TCP flags on the SYN'
complete -c tcpprobe -n $conn -s W -l timeout -x -d 'No answer to our SYN by then means filtered (e.g. 3s)'
complete -c tcpprobe -n $conn -l rto -x -d 'Initial retransmission timeout (e.g. 1s)'
complete -c tcpprobe -n $conn -l retries -x -d 'Retransmissions before giving up'

# handshake
complete -c tcpprobe -n $hs -l half-open -d 'Answer the SYN-ACK with RST instead of ACK'
complete -c tcpprobe -n $hs -l stale-syn -d 'Send a stale SYN first (old duplicate SYN)'
complete -c tcpprobe -n $hs -s c -l count -x -d 'Number of handshakes'
complete -c tcpprobe -n $hs -l interval -x -d 'Time between handshake starts (e.g. 200ms)'
complete -c tcpprobe -n $hs -l linger -x -d 'Keep receiving and ACKing after the handshake'

# teardown and half-close
complete -c tcpprobe -n $td -l mode -x -d 'Close sequence' -a '
    active\t"We FIN first (default)"
    passive\t"The peer FINs first"
    simultaneous\t"Both FIN, through CLOSING"
    abort\t"RST, then check the peer dropped it"'
complete -c tcpprobe -n $td -l idle -x -d 'Quiet time before our FIN or RST; time in CLOSE-WAIT'
complete -c tcpprobe -n $close -l request -x -a '(__tcpprobe_request_file)' -d 'Data to send: TEXT with escapes, or @FILE'
complete -c tcpprobe -n $close -l max-wait -x -d 'Longest wait for the peer\'s part of the close'
complete -c tcpprobe -n $close -l time-wait -x -d 'Our own TIME-WAIT after an active close'

# retransmit
complete -c tcpprobe -n $retx -l segment -x -d 'Segment of the peer never acknowledged' -a '
    synack\t"One SYN, the SYN-ACK never ACKed (default)"
    fin\t"The peer\'s FIN never ACKed"'
complete -c tcpprobe -n $retx -l peer-closes-first -d 'fin: the peer closes first (after --request)'
complete -c tcpprobe -n $retx -l request -x -a '(__tcpprobe_request_file)' -d 'fin: data to send: TEXT with escapes, or @FILE'
complete -c tcpprobe -n $retx -l idle -x -d 'fin: time before our FIN (e.g. 200ms)'
complete -c tcpprobe -n $retx -l ack-delay -x -d 'fin: send our ACKs this late, so the peer\'s RTO grows (e.g. 150ms)'
complete -c tcpprobe -n $retx -l no-follow-up -d 'fin: no follow-up runs at a longer RTO'
complete -c tcpprobe -n $retx -l max-wait -x -d 'Longest measurement (e.g. 75s)'
complete -c tcpprobe -n $retx -l tolerance -x -d 'Gap tolerance FLOOR,PCT% (e.g. 50ms,10%)'
complete -c tcpprobe -n $retx -l no-cleanup -d 'Do not send the final RST that clears the peer\'s state'
complete -c tcpprobe -n $retx -s c -l count -x -d 'Measure N times, each on a fresh source port'

# listen: [ADDR:]PORT, then how to answer
complete -c tcpprobe -n $listen -l answer -x -d 'How to answer a client\'s first SYN' -a '
    none\t"Only time its SYNs (default)"
    synack\t"Answer with a SYN-ACK"
    syn\t"Answer with a bare SYN (simultaneous open)"'
complete -c tcpprobe -n $listen -l rto -x -d 'Our retransmission timeout when answering (e.g. 1s)'
complete -c tcpprobe -n $listen -l retries -x -d 'Our retransmissions when answering'
complete -c tcpprobe -n $listen -l max-wait -x -d 'Stop after this long (e.g. 60s)'
complete -c tcpprobe -n $listen -l tolerance -x -d 'Gap tolerance FLOOR,PCT% (e.g. 50ms,10%)'
complete -c tcpprobe -n $listen -s c -l count -x -d 'Stop once this many clients are done'

# time-wait
complete -c tcpprobe -n $tw -l test -x -d 'What to ask the peer\'s TIME-WAIT' -a '
    duration\t"Its length (default)"
    reuse\t"A new SYN on the same 4-tuple"
    rst\t"Does an in-window RST kill it"
    fin\t"Our FIN again: is it re-ACKed"
    all\t"Every test, each on its own connection"'
complete -c tcpprobe -n $tw -l isn -x -d 'reuse: the new SYN\'s ISN against the old SND.NXT' -a '
    higher\t"Above the old SND.NXT (default)"
    lower\t"Below the old SND.NXT"'
complete -c tcpprobe -n $tw -l ts -x -d 'Timestamps; reuse: the new SYN\'s TSval' -a '
    newer\t"Newer than ours on the old connection (default)"
    older\t"Older (PAWS)"
    none\t"No timestamps at all"'
complete -c tcpprobe -n $tw -l request -x -a '(__tcpprobe_request_file)' -d 'What makes the peer close first: TEXT with escapes, or @FILE'
complete -c tcpprobe -n $tw -l max-wait -x -d 'Longest wait for the peer to close first (e.g. 10s)'
complete -c tcpprobe -n $tw -l probe-interval -x -d 'duration: time between the series probes, at least 600ms (e.g. 1s)'
complete -c tcpprobe -n $tw -l max-duration -x -d 'duration: the longest TIME-WAIT looked for (e.g. 150s)'

# fin-wait-2
complete -c tcpprobe -n $fw2 -l request -x -a '(__tcpprobe_request_file)' -d 'What makes the peer close first: TEXT with escapes, or @FILE'
complete -c tcpprobe -n $fw2 -l max-wait -x -d 'Longest wait for the peer to close first (e.g. 10s)'
complete -c tcpprobe -n $fw2 -l max-duration -x -d 'The longest FIN-WAIT-2 looked for (e.g. 150s)'
complete -c tcpprobe -n $fw2 -l resolution -x -d 'Widest bracket the fine round leaves (e.g. 500ms)'

# idle
complete -c tcpprobe -n $idle -l max-idle -x -d 'The longest idle time tried (e.g. 300s)'
complete -c tcpprobe -n $idle -l resolution -x -d 'Widest bracket the fine round leaves (e.g. 2s)'
complete -c tcpprobe -n $idle -l data -d 'Probe with one byte of new data, not a keepalive-style ACK'
complete -c tcpprobe -n $idle -l request -x -a '(__tcpprobe_request_file)' -d 'Data to send once connected: TEXT with escapes, or @FILE'

# keepalive
complete -c tcpprobe -n $ka -l request -x -a '(__tcpprobe_request_file)' -d 'Data to send once connected: TEXT with escapes, or @FILE'
complete -c tcpprobe -n $ka -l answer -x -d 'Answer the peer\'s first N probes with an ACK'
complete -c tcpprobe -n $ka -l max-wait -x -d 'Longest wait for the peer\'s probes (e.g. 135m)'
complete -c tcpprobe -n $ka -l send -x -d 'Send our own keepalive probes this far apart (e.g. 1s)'
complete -c tcpprobe -n $ka -l count -x -d 'With --send: probes to send'

# ping
complete -c tcpprobe -n $ping -s c -l count -x -d 'Probes per destination'
complete -c tcpprobe -n $ping -l interval -x -d 'Time between probes over the whole run (e.g. 200ms)'
complete -c tcpprobe -n $ping -l rate -x -d 'Probes per second over the whole run'
complete -c tcpprobe -n $ping -l flood -d 'As fast as answers come back, no per-probe lines'
complete -c tcpprobe -n $ping -s W -l timeout -x -d 'A probe unanswered this long is lost (e.g. 1s)'

# profile
complete -c tcpprobe -n $prof -l quick -d 'Only what ends in about 10 s'
complete -c tcpprobe -n $prof -l keepalive -d 'Also record the peer\'s keepalive probes'
complete -c tcpprobe -n $prof -l idle -x -d 'Also measure the path\'s idle timeout up to MAX (e.g. 300s)'
complete -c tcpprobe -n $prof -l request -x -a '(__tcpprobe_request_file)' -d 'What makes the peer close first: TEXT with escapes, or @FILE'
complete -c tcpprobe -n $prof -l compare -r -F -d 'List only the differences from a profile saved with -o json'
complete -c tcpprobe -n $prof -l trace -d 'Text output: every segment before the table'
