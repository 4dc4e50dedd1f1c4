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
 * Kafka Streams twin of Weir's processor for the side-by-side benchmark in
 * bench/processors: per-card features over exact sliding windows, as Weir's
 * sliding views compute them.
 *
 * <p>For every input event of a card at event time t, "as of the event"
 * (exact sliding windows, not hops): each feature of --features
 * (agg:window_ms, agg one of count, sum, mean, min, max, last of amount;
 * window 0 is unbounded) over the card's accepted events with a time in
 * (t-window, t], an event at the same time t counting if it came before this
 * one. One output record per input event, keyed by card.
 *
 * <p>Input: the source topic as Weir reads it, key = card_id, value = Avro in
 * the Confluent wire format (magic byte 0, 4-byte schema id, then the
 * Transaction record of schemas/transaction.avsc), decoded by hand here.
 *
 * <p>State: one entry per card in a changelog-backed KeyValueStore (in memory
 * by default, like Weir's default store; RocksDB with --store rocksdb),
 * holding the card's events within the longest window plus the allowed
 * lateness, in time order, as Weir's engine does. Time as Weir keeps it: a
 * task (one input partition) has a watermark, its newest event time; an event
 * behind it by more than the lateness is dropped and counted (Weir
 * dead-letters it). An event within the lateness but older than the card's
 * newest is inserted in time order and its row computed there; unlike Weir,
 * the rows of the card's later events are not corrected (the benchmark's
 * input is in order: the app counts such events, and the harness expects 0).
 * The watermark is held in memory, not restored after a restart.
 *
 * <p>Output value (compact binary, big-endian, 28 + 8 x features bytes):
 * int32 source partition, int64 source offset, int64 event time (ms), int64
 * wall clock when processed (ms), then one double per feature. The record's
 * timestamp is the wall clock when processed.
 */
public final class CardActivity {
    static final String STORE = "card-events";
    static final int COUNT = 0, SUM = 1, MEAN = 2, MIN = 3, MAX = 4, LAST = 5;

    static final AtomicLong processed = new AtomicLong();
    static final AtomicLong late = new AtomicLong();
    static final AtomicLong undecodable = new AtomicLong();
    static final AtomicLong outOfOrder = new AtomicLong();
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
        String[] fs = a.getOrDefault("features", "count:300000,sum:300000,count:3600000,sum:3600000,max:3600000,last:0").split(",");
        int[] aggs = new int[fs.length];
        long[] windows = new long[fs.length];
        long longest = 0;
        for (int i = 0; i < fs.length; i++) {
            String[] kv = fs[i].split(":");
            if (kv.length != 2) {
                usage("--features: want agg:window_ms, got " + fs[i]);
            }
            aggs[i] = switch (kv[0]) {
                case "count" -> COUNT;
                case "sum" -> SUM;
                case "mean" -> MEAN;
                case "min" -> MIN;
                case "max" -> MAX;
                case "last" -> LAST;
                default -> {
                    usage("--features: unknown aggregation " + kv[0]);
                    yield -1;
                }
            };
            windows[i] = Long.parseLong(kv[1]);
            longest = Math.max(longest, windows[i]);
        }
        final long retain = longest + latenessMs;

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
        topo.addProcessor("card_activity", () -> new Features(retain, latenessMs, aggs, windows), "source");
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
            System.out.printf("done: processed=%d late=%d out_of_order=%d undecodable=%d first_processed_ms=%d%n",
                    processed.get(), late.get(), outOfOrder.get(), undecodable.get(), firstProcessedMs.get());
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
        private final int[] aggs;
        private final long[] windows;
        private final int outBytes;
        private final double[] n, sum, lo, hi, last;
        private long watermark = Long.MIN_VALUE; // this task's (partition's) newest event time
        private ProcessorContext<byte[], byte[]> ctx;
        private KeyValueStore<Bytes, byte[]> store;

        Features(long retain, long lateness, int[] aggs, long[] windows) {
            this.retain = retain;
            this.lateness = lateness;
            this.aggs = aggs;
            this.windows = windows;
            this.outBytes = 4 + 8 + 8 + 8 + 8 * aggs.length;
            int k = aggs.length;
            n = new double[k];
            sum = new double[k];
            lo = new double[k];
            hi = new double[k];
            last = new double[k];
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
            if (watermark != Long.MIN_VALUE && t < watermark - lateness) {
                late.incrementAndGet();
                return;
            }
            watermark = Math.max(watermark, t);

            Bytes k = Bytes.wrap(key);
            byte[] st = store.get(k);
            // State: int64 newest event time, then (int64 time, double amount)
            // per retained event, in time order (equal times in processing
            // order).
            long newest = Long.MIN_VALUE;
            int cnt = 0;
            ByteBuffer in = null;
            if (st != null) {
                in = ByteBuffer.wrap(st);
                newest = in.getLong(0);
                cnt = (st.length - 8) / 16;
            }
            if (t < newest) {
                outOfOrder.incrementAndGet();
            }
            newest = Math.max(newest, t);
            long horizon = newest - retain;
            int drop = 0; // events no window of a future (not too late) event reaches
            while (drop < cnt && in.getLong(8 + 16 * drop) <= horizon) {
                drop++;
            }
            int kept = cnt - drop;
            // Insert after the kept events at or before t.
            int at = kept;
            while (at > 0 && in.getLong(8 + 16 * (drop + at - 1)) > t) {
                at--;
            }
            ByteBuffer next = ByteBuffer.allocate(8 + 16 * (kept + 1));
            next.putLong(newest);
            if (at > 0) {
                next.put(st, 8 + 16 * drop, 16 * at);
            }
            next.putLong(t).putDouble(amount);
            if (kept > at) {
                next.put(st, 8 + 16 * (drop + at), 16 * (kept - at));
            }

            // The features as of the event at position at: a scan back over
            // the events at or before it.
            int k2 = aggs.length;
            for (int i = 0; i < k2; i++) {
                n[i] = 0;
                sum[i] = 0;
                lo[i] = Double.POSITIVE_INFINITY;
                hi[i] = Double.NEGATIVE_INFINITY;
                last[i] = amount;
            }
            for (int j = at; j >= 0; j--) {
                long et = next.getLong(8 + 16 * j);
                double x = next.getDouble(8 + 16 * j + 8);
                boolean any = false;
                for (int i = 0; i < k2; i++) {
                    if (windows[i] == 0 || et > t - windows[i]) {
                        any = true;
                        n[i]++;
                        sum[i] += x;
                        lo[i] = Math.min(lo[i], x);
                        hi[i] = Math.max(hi[i], x);
                    }
                }
                if (!any) {
                    break; // older events are out of every window
                }
            }
            store.put(k, next.array());

            long now = System.currentTimeMillis();
            firstProcessedMs.compareAndSet(0, now);
            RecordMetadata md = ctx.recordMetadata().orElseThrow();
            ByteBuffer out = ByteBuffer.allocate(outBytes);
            out.putInt(md.partition()).putLong(md.offset()).putLong(t).putLong(now);
            for (int i = 0; i < k2; i++) {
                out.putDouble(switch (aggs[i]) {
                    case COUNT -> n[i];
                    case SUM -> sum[i];
                    case MEAN -> sum[i] / n[i];
                    case MIN -> lo[i];
                    case MAX -> hi[i];
                    default -> last[i];
                });
            }
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
                + " [--store memory|rocksdb] [--compression snappy] [--lateness-ms 60000]"
                + " [--features agg:window_ms,...]");
        System.exit(2);
    }
}
