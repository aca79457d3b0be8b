import { script, type Sh } from '../shell'

/** How often a holder proves it is alive, and after how long without a sign a waiter takes the lock over. */
export const HEARTBEAT_S = 5
export const STALE_S = 30

/**
 * The host-wide deploy lock: one run at a time changes the host, whatever repository or mode started it.
 *
 * It is a kernel lock (flock) held by a process of this run's own SSH session, which keeps it while its stdin stays
 * open. When the run ends, is killed or loses its connection, sshd ends the session, the process exits and the
 * kernel releases the lock: a dead holder never blocks anyone, and a live one is never robbed.
 *
 * A holder that hangs, or whose connection died without sshd noticing (a runner VM that vanished leaves a half-open
 * TCP connection sshd may keep for hours), stops sending its heartbeat line every HEARTBEAT_S; each line touches the
 * holder file. A waiter that sees no heartbeat for STALE_S ends the holder's process (its pid is in the lock file),
 * which releases the lock, and takes it: a stale holder costs STALE_S, never lock-timeout.
 */
export const lockScript = (lockFile: string, holderFile: string, timeoutS: number, holder: string, staleS = STALE_S): Sh =>
  script(
    'mkdir -p "$(dirname "$1")" || exit 1; exec 9>>"$1" || exit 1; ' +
      'if ! flock -n 9; then echo "BUSY $(cat "$2" 2>/dev/null)"; end=$(( $(date +%s) + $3 )); ' +
      'until flock -n 9; do ' +
      'age=$(( $(date +%s) - $(stat -c %Y "$2" 2>/dev/null || echo 0) )); pid=$(cat "$1" 2>/dev/null); ' +
      'if [ "$age" -gt "$5" ] && [ -n "$pid" ] && grep -qF -- "$1" "/proc/$pid/cmdline" 2>/dev/null && kill "$pid" 2>/dev/null; then echo "STALE $age"; fi; ' +
      '[ "$(date +%s)" -lt "$end" ] || { echo TIMEOUT; exit 75; }; sleep 1; done; fi; ' +
      'printf "%s\\n" "$$" > "$1"; printf "%s\\n" "$4" > "$2"; echo LOCKED; ' +
      'while read -r _; do touch "$2"; done',
    lockFile,
    holderFile,
    String(timeoutS),
    holder,
    String(staleS)
  )
