package dev.weir.bench;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueBytesStoreSupplier;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * Kafka Streams twin of Weir's processor for the demo view card_activity
 * (deploy/demo/weir.yaml), for the side-by-side benchmark in bench/processors.
 *
 * <p>For every input event of a card, "as of the event" (exact sliding
 * windows, not hops): count and sum of amount over (t-5m, t] and (t-1h, t],
 * max of amount over (t-1h, t], and the event's own amount. One output record
 * per input event, keyed by card.
 *
 * <p>Input: the source topic as Weir reads it, key = card_id, value = Avro in
 * the Confluent wire format (magic byte 0, 4-byte schema id, then the
 * Transaction record of schemas/transaction.avsc), decoded by hand here.
 *
 * <p>State: one entry per card in a changelog-backed KeyValueStore (in memory
 * by default, like Weir's default store; RocksDB with --store rocksdb),
 * holding the card's events within the longest window plus the allowed
 * lateness, as Weir's engine does. An event older than the card's newest by
 * more than the lateness is dropped and counted (Weir dead-letters it).
 *
 * <p>Output value (compact binary, big-endian, 76 bytes): int32 source
 * partition, int64 source offset, int64 event time (ms), int64 wall clock
 * when processed (ms), then 6 doubles: txn_count_5m, amount_sum_5m,
 * txn_count_1h, amount_sum_1h, amount_max_1h, amount_last. The record's
 * timestamp is the wall clock when processed.
 */
public final class CardActivity {
    static final String STORE = "card-events";
    static final long W5M = 5 * 60_000L;
    static final long W1H = 60 * 60_000L;
    static final int OUT_BYTES = 4 + 8 + 8 + 8 + 6 * 8;

    static final AtomicLong processed = new AtomicLong();
    static final AtomicLong late = new AtomicLong();
    static final AtomicLong undecodable = new AtomicLong();
    static final AtomicLong firstProcessedMs = new AtomicLong();

    public static void main(String[] args) throws Exception {
        Map<String, String> a = parseArgs(args);
        String bootstrap = need(a, "bootstrap");
        String input = need(a, "input");
        String output = need(a, "output");
        String appId = need(a, "app-id");
        String stateDir = need(a, "state-dir");
        String guarantee = a.getOrDefault("guarantee", StreamsConfig.EXACTLY_ONCE_V2);
        long commitMs = Long.parseLong(a.getOrDefault("commit-ms", "100"));
        int threads = Integer.parseInt(a.getOrDefault("threads", "1"));
        String store = a.getOrDefault("store", "memory");
        String compression = a.getOrDefault("compression", "snappy");
        long latenessMs = Long.parseLong(a.getOrDefault("lateness-ms", "60000"));

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitMs);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // No global stores here; set only to silence a start-up warning.
        p.put("processing.exception.handler.global.enabled", "true");
        // franz-go (Weir) compresses its batches with snappy by default.
        p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), compression);

        KeyValueBytesStoreSupplier supplier = store.equals("rocksdb")
                ? Stores.persistentKeyValueStore(STORE)
                : Stores.inMemoryKeyValueStore(STORE);
        // Logging on (the changelog topic), caching on: the cache merges a
        // card's updates between commits, so the changelog gets one record per
        // card touched per commit, as Weir writes one per entity per transaction.
        StoreBuilder<KeyValueStore<Bytes, byte[]>> sb = Stores
                .keyValueStoreBuilder(supplier, Serdes.Bytes(), Serdes.ByteArray())
                .withLoggingEnabled(new HashMap<>())
                .withCachingEnabled();

        Topology topo = new Topology();
        topo.addSource("source", Serdes.ByteArray().deserializer(), Serdes.ByteArray().deserializer(), input);
        topo.addProcessor("card_activity", () -> new Features(W1H + latenessMs, latenessMs), "source");
        topo.addStateStore(sb, "card_activity");
        topo.addSink("features", output, Serdes.ByteArray().serializer(), Serdes.ByteArray().serializer(), "card_activity");

        KafkaStreams ks = new KafkaStreams(topo, p);
        CountDownLatch done = new CountDownLatch(1);
        final int[] exit = {0};
        ks.setStateListener((now, before) -> {
            System.out.printf("state %s -> %s at %d%n", before, now, System.currentTimeMillis());
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                done.countDown();
            }
        });
        ks.setUncaughtExceptionHandler(e -> {
            System.err.println("fatal: " + e);
            e.printStackTrace();
            exit[0] = 1;
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            ks.close(Duration.ofSeconds(30));
            System.out.printf("done: processed=%d late=%d undecodable=%d first_processed_ms=%d%n",
                    processed.get(), late.get(), undecodable.get(), firstProcessedMs.get());
            System.out.flush();
        }));
        ks.start();
        done.await();
        System.exit(exit[0]);
    }

    /** The per-card feature processor. */
    static final class Features implements Processor<byte[], byte[], byte[], byte[]> {
        private final long retain; // ms of history kept behind the card's newest event
        private final long lateness;
        private ProcessorContext<byte[], byte[]> ctx;
        private KeyValueStore<Bytes, byte[]> store;

        Features(long retain, long lateness) {
            this.retain = retain;
            this.lateness = lateness;
        }

        @Override
        public void init(ProcessorContext<byte[], byte[]> context) {
            this.ctx = context;
            this.store = context.getStateStore(STORE);
        }

        @Override
        public void process(Record<byte[], byte[]> r) {
            byte[] key = r.key();
            byte[] v = r.value();
            if (key == null || key.length == 0 || v == null) {
                undecodable.incrementAndGet();
                return;
            }
            Avro d = new Avro(v);
            long t;
            double amount;
            try {
                if (v.length < 5 || v[0] != 0) {
                    throw new IllegalArgumentException("not Confluent-framed");
                }
                d.pos = 5; // magic byte and schema id
                d.skipString(); // txn_id
                int cardLen = (int) d.readLong(); // card_id: must equal the key
                if (cardLen != key.length || !Arrays.equals(v, d.pos, d.pos + cardLen, key, 0, key.length)) {
                    throw new IllegalArgumentException("key mismatch");
                }
                d.pos += cardLen;
                d.skipString(); // merchant_id
                amount = d.readDouble();
                d.skipString(); // currency
                d.skipString(); // country
                d.skipString(); // device_id
                t = d.readLong(); // event_time
            } catch (RuntimeException e) {
                undecodable.incrementAndGet();
                return;
            }

            Bytes k = Bytes.wrap(key);
            byte[] st = store.get(k);
            // State: int64 newest event time, then (int64 time, double amount)
            // per retained event, in processing order.
            long newest = Long.MIN_VALUE;
            int n = 0;
            ByteBuffer in = null;
            if (st != null) {
                in = ByteBuffer.wrap(st);
                newest = in.getLong(0);
                n = (st.length - 8) / 16;
                if (t < newest - lateness) {
                    late.incrementAndGet();
                    return;
                }
            }
            newest = Math.max(newest, t);
            long horizon = newest - retain;
            int drop = 0; // events no window of a future (not too late) event reaches
            while (drop < n && in.getLong(8 + 16 * drop) <= horizon) {
                drop++;
            }
            int kept = n - drop;
            ByteBuffer next = ByteBuffer.allocate(8 + 16 * (kept + 1));
            next.putLong(newest);
            if (kept > 0) {
                next.put(st, 8 + 16 * drop, 16 * kept);
            }
            next.putLong(t).putDouble(amount);

            long lo5 = t - W5M, lo1h = t - W1H;
            double c5 = 0, s5 = 0, c1h = 0, s1h = 0, mx1h = Double.NEGATIVE_INFINITY;
            for (int i = 0; i <= kept; i++) {
                long et = next.getLong(8 + 16 * i);
                if (et > t) {
                    continue; // out of order: a newer event processed before this one
                }
                double x = next.getDouble(8 + 16 * i + 8);
                if (et > lo1h) {
                    c1h++;
                    s1h += x;
                    mx1h = Math.max(mx1h, x);
                }
                if (et > lo5) {
                    c5++;
                    s5 += x;
                }
            }
            store.put(k, next.array());

            long now = System.currentTimeMillis();
            firstProcessedMs.compareAndSet(0, now);
            RecordMetadata md = ctx.recordMetadata().orElseThrow();
            ByteBuffer out = ByteBuffer.allocate(OUT_BYTES);
            out.putInt(md.partition()).putLong(md.offset()).putLong(t).putLong(now);
            out.putDouble(c5).putDouble(s5).putDouble(c1h).putDouble(s1h).putDouble(mx1h).putDouble(amount);
            ctx.forward(new Record<>(key, out.array(), now));
            processed.incrementAndGet();
        }
    }

    /** A cursor over Avro binary data. */
    static final class Avro {
        final byte[] b;
        int pos;

        Avro(byte[] b) {
            this.b = b;
        }

        long readLong() { // zigzag varint
            long raw = 0;
            int shift = 0;
            while (true) {
                if (shift > 63) {
                    throw new IllegalArgumentException("varint too long");
                }
                byte x = b[pos++];
                raw |= (long) (x & 0x7f) << shift;
                if ((x & 0x80) == 0) {
                    break;
                }
                shift += 7;
            }
            return (raw >>> 1) ^ -(raw & 1);
        }

        void skipString() {
            long n = readLong();
            if (n < 0 || pos + n > b.length) {
                throw new IllegalArgumentException("bad string length");
            }
            pos += (int) n;
        }

        double readDouble() {
            if (pos + 8 > b.length) {
                throw new IllegalArgumentException("short double");
            }
            double d = ByteBuffer.wrap(b, pos, 8).order(ByteOrder.LITTLE_ENDIAN).getDouble();
            pos += 8;
            return d;
        }
    }

    static Map<String, String> parseArgs(String[] args) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String s = args[i];
            if (!s.startsWith("--")) {
                usage("unexpected argument " + s);
            }
            s = s.substring(2);
            int eq = s.indexOf('=');
            if (eq >= 0) {
                m.put(s.substring(0, eq), s.substring(eq + 1));
            } else if (i + 1 < args.length) {
                m.put(s, args[++i]);
            } else {
                usage("--" + s + " needs a value");
            }
        }
        return m;
    }

    static String need(Map<String, String> a, String k) {
        String v = a.get(k);
        if (v == null || v.isEmpty()) {
            usage("--" + k + " is required");
        }
        return v;
    }

    static void usage(String why) {
        System.err.println(why);
        System.err.println("usage: CardActivity --bootstrap HOST:PORT --input TOPIC --output TOPIC --app-id ID --state-dir DIR"
                + " [--guarantee exactly_once_v2|at_least_once] [--commit-ms 100] [--threads 1]"
                + " [--store memory|rocksdb] [--compression snappy] [--lateness-ms 60000]");
        System.exit(2);
    }
}
