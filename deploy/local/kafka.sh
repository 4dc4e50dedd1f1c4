#!/usr/bin/env bash
# Apache Kafka 4.3.1 for Weir's streams and tests: one KRaft node that is both
# broker and controller.
#
#   deploy/local/kafka.sh install|start|stop|restart|status
#
# Kafka comes from Maven Central (deploy/local/kafka/pom.xml lists the jars;
# no tarball can be fetched here) into $DATA/kafka/lib. The broker listens on
# 127.0.0.1:$WEIR_KAFKA_PORT (19092), its controller on 19093; log segments in
# $DATA/kafka/data, broker log in $DATA/kafka/kafka.log.
set -euo pipefail
# shellcheck source=deploy/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT=${WEIR_KAFKA_PORT:-19092}
CONTROLLER_PORT=${WEIR_KAFKA_CONTROLLER_PORT:-19093}
POM=$WEIR_ROOT/deploy/local/kafka/pom.xml
DIR=$DATA/kafka
LIB=$DIR/lib
PIDFILE=$DIR/kafka.pid
LOGFILE=$DIR/kafka.log
PROPS=$DIR/server.properties
LOG4J=$DIR/log4j2.properties

# How to run one of Kafka's command-line tools: they start faster with a small
# heap and the C1 compiler only, and report their own errors, so their logging
# is off.
TOOL=(java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.level=off -cp "$LIB/*")

# answers: the port is open and a metadata request (list topics) succeeds.
answers() {
	port_open 127.0.0.1 "$PORT" &&
		timeout 30 "${TOOL[@]}" org.apache.kafka.tools.TopicCommand \
			--bootstrap-server "127.0.0.1:$PORT" --list >/dev/null 2>&1
}

cmd_install() {
	# Java runs the broker, Maven fetches it; both come with this machine's
	# image, and from Debian where they are missing.
	command -v java >/dev/null || apt_install openjdk-17-jre-headless
	command -v mvn >/dev/null || apt_install maven
	# The stamp holds the pom's hash: a changed pom fetches the jars again.
	local want
	want=$(sha256sum "$POM" | cut -d' ' -f1)
	if [[ -f $LIB/.pom.sha256 && $(<"$LIB/.pom.sha256") == "$want" ]]; then
		return 0
	fi
	log "fetching Kafka jars from Maven Central into $LIB"
	rm -rf "$LIB"
	mkdir -p "$DIR"
	if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
		-DoutputDirectory="$LIB" -DincludeScope=runtime >"$DIR/mvn.log" 2>&1; then
		cat "$DIR/mvn.log" >&2
		die "kafka: mvn dependency:copy-dependencies failed"
	fi
	echo "$want" >"$LIB/.pom.sha256"
}

write_config() {
	mkdir -p "$DIR/data"
	cat >"$PROPS" <<EOF
# Written by deploy/local/kafka.sh on every start; edit the script, not this.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data

# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Tests create their topics explicitly; groups start without the 3 s wait.
num.partitions=4
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0

# Compacted topics (changelogs, registries) need the cleaner.
log.cleaner.enable=true
EOF
	cat >"$LOG4J" <<EOF
# Written by deploy/local/kafka.sh: INFO to stdout, which goes to kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
# The controller and the cleaner are chatty at INFO.
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = warn
EOF
}

# format: give the data directory a cluster id, once.
format() {
	[[ -f $DIR/data/meta.properties ]] && return 0
	local id
	id=$("${TOOL[@]}" kafka.tools.StorageTool random-uuid)
	log "formatting $DIR/data (cluster $id)"
	"${TOOL[@]}" kafka.tools.StorageTool format -t "$id" -c "$PROPS" >/dev/null
}

cmd_start() {
	if answers; then
		echo "kafka: running on 127.0.0.1:$PORT"
		return 0
	fi
	[[ -f $LIB/.pom.sha256 ]] || die "kafka: not installed; run $0 install"
	if ! pid_alive "$PIDFILE" kafka.Kafka; then
		if port_open 127.0.0.1 "$PORT" || port_open 127.0.0.1 "$CONTROLLER_PORT"; then
			die "kafka: port $PORT or $CONTROLLER_PORT is taken by another process"
		fi
		write_config
		format
		log "starting kafka on 127.0.0.1:$PORT (data in $DIR/data)"
		# Each run logs to a fresh file; the previous run's log is kept as .1.
		if [[ -f $LOGFILE ]]; then mv -f "$LOGFILE" "$LOGFILE.1"; fi
		# setsid keeps it out of the caller's process group, so ^C on make
		# leaves it running.
		setsid nohup java -Xmx512m \
			-Dlog4j2.configurationFile="$LOG4J" -cp "$LIB/*" \
			kafka.Kafka "$PROPS" >"$LOGFILE" 2>&1 </dev/null &
		echo $! >"$PIDFILE"
	fi
	wait_for 90 kafka started
	echo "kafka: running on 127.0.0.1:$PORT"
}

# started: answers, or gives up at once if the broker has exited.
started() {
	if ! pid_running "$PIDFILE"; then
		log_tail "$LOGFILE"
		die "kafka exited; its log is $LOGFILE"
	fi
	answers
}

cmd_stop() {
	# A controlled shutdown of one node takes a few seconds.
	stop_pid kafka "$PIDFILE" kafka.Kafka 60
}

cmd_status() {
	if answers; then
		echo "kafka: running on 127.0.0.1:$PORT"
	else
		echo "kafka: not running"
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
