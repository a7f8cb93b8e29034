# bash completion for tcpprobe(8)
#
# Installed as ${datadir}/bash-completion/completions/tcpprobe. Works with the
# bash-completion package's helpers when they are loaded, and without them.
# Every command and option of the CLI must be listed here, per command:
# tests/app/cli_docs_test.cpp checks it.

_tcpprobe_commands='handshake teardown half-close retransmit listen time-wait
    ping fin-wait-2 keepalive idle profile'

_tcpprobe_global_opts='-o --output -w --write --write-limit -v --verbose -q --quiet --no-color
    --no-rst-guard --rst-guard --source -i --interface --version -h --help'

# The SYN options every command takes (for listen: the options of our answer;
# for time-wait, --isn and --ts take words instead of a number and a flag).
_tcpprobe_synonly_opts='--mss --no-mss --wscale --sack --ts --option --window
    --ttl --tos --df --no-df --ip-id --isn --sport --flags -h --help'

# ... and the connection options of every command that connects.
_tcpprobe_syn_opts="$_tcpprobe_synonly_opts"'
    -W --timeout --rto --retries'

_tcpprobe_handshake_opts="$_tcpprobe_syn_opts"'
    --half-open --stale-syn -c --count --interval --linger'

_tcpprobe_teardown_opts="$_tcpprobe_syn_opts"'
    --mode --idle --request --max-wait --time-wait'

_tcpprobe_half_close_opts="$_tcpprobe_syn_opts"'
    --request --max-wait --time-wait'

_tcpprobe_retransmit_opts="$_tcpprobe_syn_opts"'
    --segment --peer-closes-first --request --idle --ack-delay --no-follow-up --max-wait
    --tolerance --no-cleanup -c --count'

_tcpprobe_listen_opts="$_tcpprobe_synonly_opts"'
    --rto --retries --answer --max-wait --tolerance -c --count'

_tcpprobe_time_wait_opts="$_tcpprobe_syn_opts"'
    --test --request --max-wait --probe-interval --max-duration'

_tcpprobe_fin_wait_2_opts="$_tcpprobe_syn_opts"'
    --request --max-wait --max-duration --resolution'

_tcpprobe_idle_opts="$_tcpprobe_syn_opts"'
    --max-idle --resolution --data --request'

_tcpprobe_keepalive_opts="$_tcpprobe_syn_opts"'
    --request --answer --max-wait --send --count'

_tcpprobe_profile_opts='-W --timeout --rto --retries --quick --keepalive --idle
    --request --compare --trace -h --help'

_tcpprobe_ping_opts="$_tcpprobe_synonly_opts"'
    -c --count --interval --rate --flood -W --timeout'

# Options that take a value (the next word is that value, not a command or target).
_tcpprobe_value_opts='-o --output -w --write --write-limit --source -i --interface -c -W --mss --wscale
    --option --window --ttl --tos --ip-id --isn --sport --flags --timeout --rto
    --retries --count --interval --linger --mode --idle --request --max-wait
    --time-wait --segment --tolerance --answer --test --probe-interval
    --max-duration --rate --resolution --max-idle --send --compare'

_tcpprobe_interfaces() {
    local d
    for d in /sys/class/net/*; do
        [[ -e $d ]] && printf '%s\n' "${d##*/}"
    done
}

_tcpprobe() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        # Keep HOST:PORT and --opt=value in one word.
        _init_completion -n :=, || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
        # Without bash-completion, "--opt=value" arrives as three words.
        if [[ $cur == = ]]; then
            cur=""
        elif [[ $prev == = ]] && ((cword >= 2)); then
            prev=${words[cword-2]}
        fi
    fi

    # Find the command, skipping options and their values: it decides what some
    # options take (--isn and --ts of time-wait).
    local i w command=""
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        if [[ " ${_tcpprobe_value_opts//$'\n'/ } " == *" $w "* ]]; then
            ((i++))
            continue
        fi
        [[ $w == -* ]] && continue
        command=$w
        break
    done

    # --opt=value: complete the value part.
    local opt=$prev
    if [[ $cur == --*=* ]]; then
        opt=${cur%%=*}
        cur=${cur#*=}
    fi

    case $opt in
        -o | --output)
            mapfile -t COMPREPLY < <(compgen -W 'text json' -- "$cur")
            return
            ;;
        --rst-guard)
            mapfile -t COMPREPLY < <(compgen -W 'socket nft' -- "$cur")
            return
            ;;
        -w | --write)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return
            ;;
        --compare)
            # A profile saved with -o json.
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return
            ;;
        --interface)
            mapfile -t COMPREPLY < <(compgen -W "$(_tcpprobe_interfaces)" -- "$cur")
            return
            ;;
        --mode)
            mapfile -t COMPREPLY < <(compgen -W 'active passive simultaneous abort' -- "$cur")
            return
            ;;
        --segment)
            mapfile -t COMPREPLY < <(compgen -W 'synack fin' -- "$cur")
            return
            ;;
        # listen: how to answer; keepalive: a number of probes (nothing to offer).
        --answer)
            mapfile -t COMPREPLY < <([[ $command == listen ]] && compgen -W 'none synack syn' -- "$cur")
            return
            ;;
        --test)
            mapfile -t COMPREPLY < <(compgen -W 'duration reuse rst fin all' -- "$cur")
            return
            ;;
        --isn)
            # time-wait: the reuse test's ISN; any other command: a number.
            [[ $command == time-wait ]] &&
                mapfile -t COMPREPLY < <(compgen -W 'higher lower' -- "$cur")
            return
            ;;
        --ts)
            # time-wait: the reuse test's timestamp; any other command: a flag,
            # so the word after it is completed as usual.
            if [[ $command == time-wait ]]; then
                mapfile -t COMPREPLY < <(compgen -W 'newer older none' -- "$cur")
                return
            fi
            ;;
        --request)
            # @FILE sends a file; anything else is the text itself.
            if [[ $cur == @* ]]; then
                compopt -o filenames 2>/dev/null
                mapfile -t COMPREPLY < <(compgen -f -P @ -- "${cur#@}")
            fi
            return
            ;;
        --flags)
            # A comma-separated list: complete the last element.
            local head="" last=$cur
            if [[ $cur == *,* ]]; then
                head=${cur%,*},
                last=${cur##*,}
            fi
            mapfile -t COMPREPLY < <(compgen -P "$head" -W 'fin syn rst psh ack urg ece cwr' -- "$last")
            compopt -o nospace 2>/dev/null
            return
            ;;
        --source | --mss | --wscale | --option | --window | --ttl | --tos | --ip-id | \
            --sport | --count | --interval | --linger | --timeout | --rto | \
            --retries | --idle | --max-wait | --time-wait | --tolerance | \
            --probe-interval | --max-duration | --rate | --resolution | \
            --max-idle | --send)
            # A free-form value: nothing sensible to offer.
            return
            ;;
    esac
    [[ $cur == --*=* ]] && return

    local opts
    case $command in
        "")
            if [[ $cur == -* ]]; then
                mapfile -t COMPREPLY < <(compgen -W "$_tcpprobe_global_opts" -- "$cur")
            else
                mapfile -t COMPREPLY < <(compgen -W "$_tcpprobe_commands" -- "$cur")
            fi
            return
            ;;
        handshake) opts=$_tcpprobe_handshake_opts ;;
        teardown) opts=$_tcpprobe_teardown_opts ;;
        half-close) opts=$_tcpprobe_half_close_opts ;;
        retransmit) opts=$_tcpprobe_retransmit_opts ;;
        listen) opts=$_tcpprobe_listen_opts ;;
        time-wait) opts=$_tcpprobe_time_wait_opts ;;
        ping) opts=$_tcpprobe_ping_opts ;;
        fin-wait-2) opts=$_tcpprobe_fin_wait_2_opts ;;
        idle) opts=$_tcpprobe_idle_opts ;;
        keepalive) opts=$_tcpprobe_keepalive_opts ;;
        profile) opts=$_tcpprobe_profile_opts ;;
        *) return ;;
    esac
    if [[ $cur == -* ]]; then
        # Global options are accepted after the command too.
        mapfile -t COMPREPLY < <(compgen -W "$opts $_tcpprobe_global_opts" -- "$cur")
    elif [[ $command == listen ]]; then
        # [ADDR:]PORT: a local port, optionally after one of this host's addresses.
        return
    elif [[ $cur != *:* ]]; then
        # The target: a host, then ":PORT".
        mapfile -t COMPREPLY < <(compgen -A hostname -S : -- "$cur")
        compopt -o nospace 2>/dev/null
    fi
}

complete -F _tcpprobe tcpprobe
