# shellcheck shell=bash
# Shared by the scripts in deploy/local; source it, don't run it.
#
# Every service runs as a plain process (no systemd here) with its own ports
# and its data, pid file and log under $DATA, so several stacks can run side by
# side by setting WEIR_DATA and the port variables.

WEIR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DATA=${WEIR_DATA:-$WEIR_ROOT/.weir}
# Relative paths would break once a server changes its working directory.
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)

log() { echo "==> $*"; }
die() {
	echo "error: $*" >&2
	exit 1
}

# port_open HOST PORT: whether something accepts TCP connections there.
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_for SECONDS WHAT CMD...: run CMD every half second until it succeeds;
# give up after SECONDS.
wait_for() {
	local seconds=$1 what=$2
	shift 2
	local deadline=$((SECONDS + seconds))
	until "$@"; do
		if ((SECONDS >= deadline)); then
			echo "error: $what not ready after ${seconds}s" >&2
			return 1
		fi
		sleep 0.5
	done
}

# wait_for_port SECONDS HOST PORT
wait_for_port() {
	wait_for "$1" "port $2:$3" port_open "$2" "$3"
}

# pid_alive PIDFILE MATCH: whether the process named in PIDFILE is running
# and its command line contains MATCH (a stale pid file may name another
# process by now).
pid_alive() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(<"$1")
	kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# pid_running PIDFILE: whether the process named in PIDFILE exists. For a
# process this script has just started, whose command line may not show the
# server yet (between fork and exec).
pid_running() {
	[[ -s $1 ]] && kill -0 "$(<"$1")" 2>/dev/null
}

# stop_pid NAME PIDFILE MATCH SECONDS: SIGTERM the process (see pid_alive),
# wait for it to exit, SIGKILL it after SECONDS. Removes the pid file.
stop_pid() {
	local name=$1 pidfile=$2 match=$3 seconds=$4
	if ! pid_alive "$pidfile" "$match"; then
		rm -f "$pidfile"
		echo "$name: not running"
		return 0
	fi
	local pid
	pid=$(<"$pidfile")
	log "stopping $name (pid $pid)"
	kill "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + seconds))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "$name did not exit after ${seconds}s; killing it"
			kill -9 "$pid" 2>/dev/null || true
		fi
		sleep 0.2
	done
	rm -f "$pidfile"
	echo "$name: stopped"
}

# log_tail FILE: the end of a server log, to explain a failed start.
log_tail() {
	[[ -f $1 ]] || return 0
	echo "--- last lines of $1" >&2
	tail -n 30 "$1" >&2
}

# apt_install PKG...: install the Debian packages that are missing. Runs
# `apt-get update` first, and only when something is missing. Waits for any
# other apt or dpkg run on the machine rather than fighting it for the lock.
apt_install() {
	local missing=() pkg
	for pkg in "$@"; do
		if ! apt_installed "$pkg"; then
			# Another apt run may be installing it right now.
			wait_apt_idle
			apt_installed "$pkg" || missing+=("$pkg")
		fi
	done
	((${#missing[@]})) || return 0
	((EUID == 0)) || die "need root to install: ${missing[*]}"
	log "installing Debian packages: ${missing[*]}"
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
	mkdir -p "$DATA"
	if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; } >"$DATA/apt.log" 2>&1; then
		cat "$DATA/apt.log" >&2
		die "apt-get install ${missing[*]} failed"
	fi
}

apt_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# wait_apt_idle: wait (up to 15 minutes) while apt-get, apt or dpkg runs.
wait_apt_idle() {
	local deadline=$((SECONDS + 900)) said=
	while pgrep -x apt-get >/dev/null || pgrep -x apt >/dev/null || pgrep -x dpkg >/dev/null; do
		if [[ -z $said ]]; then
			log "waiting for another apt/dpkg run to finish"
			said=1
		fi
		((SECONDS < deadline)) || die "apt/dpkg still busy after 15 minutes"
		sleep 2
	done
}
