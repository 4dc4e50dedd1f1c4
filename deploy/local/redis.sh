#!/usr/bin/env bash
# Redis 7 (Debian's redis-server) for Weir's online feature store and tests.
#
#   deploy/local/redis.sh install|start|stop|restart|status
#
# Runs as a plain daemonized process on 127.0.0.1:$WEIR_REDIS_PORT (16379),
# append-only, no RDB snapshots, data and log in $DATA/redis.
set -euo pipefail
# shellcheck source=deploy/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT=${WEIR_REDIS_PORT:-16379}
DIR=$DATA/redis
PIDFILE=$DIR/redis.pid
LOGFILE=$DIR/redis.log

ping() {
	[[ $(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null) == PONG ]]
}

cmd_install() {
	apt_install redis-server redis-tools
}

cmd_start() {
	if ping; then
		echo "redis: running on 127.0.0.1:$PORT"
		return 0
	fi
	if port_open 127.0.0.1 "$PORT"; then
		die "redis: port $PORT is taken by something that does not answer PING"
	fi
	mkdir -p "$DIR"
	log "starting redis on 127.0.0.1:$PORT (data in $DIR)"
	redis-server --port "$PORT" --bind 127.0.0.1 --dir "$DIR" \
		--save '' --appendonly yes \
		--daemonize yes --pidfile "$PIDFILE" --logfile "$LOGFILE"
	if ! wait_for 10 redis ping; then
		log_tail "$LOGFILE"
		exit 1
	fi
	echo "redis: running on 127.0.0.1:$PORT"
}

cmd_stop() {
	stop_pid redis "$PIDFILE" redis-server 30
}

cmd_status() {
	if ping; then
		echo "redis: running on 127.0.0.1:$PORT"
	else
		echo "redis: not running"
		return 1
	fi
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_stop && cmd_start ;;
status) cmd_status ;;
*)
	echo "usage: $0 install|start|stop|restart|status" >&2
	exit 2
	;;
esac
