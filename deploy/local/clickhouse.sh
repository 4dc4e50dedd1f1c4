#!/usr/bin/env bash
# ClickHouse (Debian's clickhouse-server 18.16) for Weir's offline store and
# monitoring tables.
#
#   deploy/local/clickhouse.sh install|start|stop|restart|status
#
# Runs as a plain background process with Debian's config file, every path
# and port overridden on the command line: native protocol on
# 127.0.0.1:$WEIR_CLICKHOUSE_PORT (19000), HTTP on 18123, interserver 19009,
# data and logs in $DATA/clickhouse.
set -euo pipefail
# shellcheck source=deploy/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TCP_PORT=${WEIR_CLICKHOUSE_PORT:-19000}
HTTP_PORT=${WEIR_CLICKHOUSE_HTTP_PORT:-18123}
INTERSERVER_PORT=${WEIR_CLICKHOUSE_INTERSERVER_PORT:-19009}
DIR=$DATA/clickhouse
PIDFILE=$DIR/clickhouse.pid
LOGFILE=$DIR/log.txt
ERRFILE=$DIR/err.txt
STDOUT=$DIR/stdout.txt

query() {
	timeout 10 clickhouse-client --host 127.0.0.1 --port "$TCP_PORT" -q "$1"
}

answers() {
	query 'select version()' >/dev/null 2>&1
}

cmd_install() {
	apt_install clickhouse-server clickhouse-client
}

cmd_start() {
	if answers; then
		echo "clickhouse: running on 127.0.0.1:$TCP_PORT (http $HTTP_PORT)"
		return 0
	fi
	if ! pid_alive "$PIDFILE" clickhouse-server; then
		if port_open 127.0.0.1 "$TCP_PORT"; then
			die "clickhouse: port $TCP_PORT is taken by something that does not answer queries"
		fi
		mkdir -p "$DIR"/{tmp,uf,fs}
		log "starting clickhouse on 127.0.0.1:$TCP_PORT (data in $DIR)"
		# It runs as root without complaint and writes only under $DIR. setsid keeps
		# it out of the caller's process group, so ^C on make leaves it running.
		setsid nohup clickhouse-server --config-file=/etc/clickhouse-server/config.xml -- \
			--path="$DIR/" --tmp_path="$DIR/tmp/" --user_files_path="$DIR/uf/" \
			--format_schema_path="$DIR/fs/" \
			--tcp_port="$TCP_PORT" --http_port="$HTTP_PORT" \
			--interserver_http_port="$INTERSERVER_PORT" \
			--logger.log="$LOGFILE" --logger.errorlog="$ERRFILE" --logger.console=0 \
			>"$STDOUT" 2>&1 </dev/null &
		echo $! >"$PIDFILE"
	fi
	wait_for 60 clickhouse started
	echo "clickhouse: running on 127.0.0.1:$TCP_PORT (http $HTTP_PORT), version $(query 'select version()')"
}

# started: answers, or gives up at once if the server has exited.
started() {
	if ! pid_running "$PIDFILE"; then
		log_tail "$ERRFILE"
		log_tail "$STDOUT"
		die "clickhouse exited; its logs are in $DIR"
	fi
	answers
}

cmd_stop() {
	stop_pid clickhouse "$PIDFILE" clickhouse-server 60
}

cmd_status() {
	if answers; then
		echo "clickhouse: running on 127.0.0.1:$TCP_PORT (http $HTTP_PORT)"
	else
		echo "clickhouse: not running"
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
