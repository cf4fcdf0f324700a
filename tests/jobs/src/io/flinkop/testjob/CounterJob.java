/*
 * The flinkop test job: a rate-limited generator feeding a keyed, stateful counter.
 *
 *   source (uid "source") --keyBy(n % keys)--> counter (uid "counter") --> sink (uid "sink")
 *
 * The counter keeps a ValueState<Long> count per key and registers two gauges, readable over
 * Flink's REST API (GET /jobs/<jid>/vertices/<vid>/subtasks/metrics?get=counter.maxCount&agg=max):
 *   maxCount      the largest per-key count this subtask has produced since it (re)started. After a
 *                 restore it goes on from the restored counts, not from zero.
 *   restoredKeys  how many keys this subtask found with a count already in state when it first saw
 *                 them after its (re)start: 0 after a fresh start, > 0 after a restore.
 *
 * Program arguments (all optional):
 *   --rate N                     records per second of the whole source (default 100), split
 *                                evenly over its subtasks; rate-limited at the source.
 *   --keys N                     number of distinct keys (default 8)
 *   --checkpoint-interval-ms N   checkpoint interval (default 2000)
 *   --job-name NAME              job name (default "flinkop-testjob")
 *   --drop-counter               the program without the stateful counter (source -> sink):
 *                                restoring a savepoint of the normal job needs allowNonRestoredState.
 *   --counter-uid X              uid of the counter (default "counter"); its name stays "counter".
 *   --fail-at-start              the job fails as soon as it runs (the source throws on its first
 *                                record) and has no restarts, so it ends FAILED quickly.
 *   --fail-in-main               main() throws before execute(): /jars/<id>/run answers an error.
 *   --slow-snapshot-file PATH    while PATH exists, the counter's snapshotState sleeps
 *   --slow-snapshot-ms N         ... N ms (default 10000): slow checkpoints and savepoints.
 *   --fail-snapshot-file PATH    while PATH exists, the counter's snapshots fail: checkpoints and
 *                                savepoints fail, the job keeps running (failed checkpoints are
 *                                tolerated without limit). The failure is raised in the asynchronous
 *                                part of the snapshot (the serializer of a small operator state
 *                                throws), because an exception thrown by snapshotState itself, in the
 *                                synchronous part, fails the task and restarts the job.
 *                                Note: a failed stop-with-savepoint makes Flink recover from a
 *                                global failure: the job (same id) restarts from its latest checkpoint.
 *   --fail-on-state              the counter throws on every record of a key that already has a count:
 *                                a version that cannot process its restored state. It restarts
 *                                without end under the default restart strategy.
 *   --fail-once-file PATH        the counter throws once, on the record that finds PATH missing (it
 *                                creates PATH first); after that restart it runs normally.
 *   --stock-splits               the stock DataGeneratorSource splitting: one split per subtask of
 *                                the first run (see below). Only to reproduce that gotcha.
 *
 * Parallelism is not set here: it is the one given at submission.
 *
 * The source splits its number sequence into a fixed number of splits (MAX_SPLITS), not into
 * as many as its first parallelism: readers take one split at a time from the enumerator, and
 * the unassigned rest stays in the enumerator's state. A restore at a higher parallelism then
 * hands the new readers splits of their own, instead of leaving them without a split (such
 * subtasks finish at once, and a later restore can fail with "mixed operator finished state").
 * --stock-splits brings that behaviour back.
 */
package io.flinkop.testjob;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.typeutils.SimpleTypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.base.LongSerializer;
import org.apache.flink.api.connector.source.lib.NumberSequenceSource;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.util.Collector;

public final class CounterJob {

    /** Splits of the source's number sequence; readers beyond this many would stay idle. */
    static final int MAX_SPLITS = 128;

    private CounterJob() {}

    public static void main(String[] args) throws Exception {
        Options opts = Options.parse(args);
        if (opts.failInMain) {
            throw new IllegalStateException("flinkop test job: --fail-in-main given, failing before execute()");
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.enableCheckpointing(opts.checkpointIntervalMs);
        env.getCheckpointConfig().setTolerableCheckpointFailureNumber(Integer.MAX_VALUE);
        if (opts.failAtStart) {
            Configuration conf = new Configuration();
            conf.set(RestartStrategyOptions.RESTART_STRATEGY, "none");
            env.configure(conf);
        }

        DataGeneratorSource<Long> source = new DataGeneratorSource<>(
                new Numbers(opts.failAtStart),
                opts.stockSplits
                        ? new NumberSequenceSource(0, Long.MAX_VALUE - 1)
                        : new FixedSplitsSequence(0, Long.MAX_VALUE - 1),
                RateLimiterStrategy.perSecond(opts.rate),
                Types.LONG);
        DataStream<Long> numbers = env
                .fromSource(source, WatermarkStrategy.noWatermarks(), "source")
                .uid("source")
                .name("source");

        DataStream<Long> out;
        if (opts.dropCounter) {
            out = numbers;
        } else {
            final long keys = opts.keys;
            out = numbers
                    .keyBy(n -> n % keys, Types.LONG)
                    .process(new Counter(
                            opts.slowSnapshotFile, opts.slowSnapshotMs, opts.failSnapshotFile,
                            opts.failOnState, opts.failOnceFile))
                    .returns(Types.LONG)
                    .uid(opts.counterUid)
                    .name("counter");
        }
        out.sinkTo(new DiscardingSink<>()).uid("sink").name("sink");

        env.execute(opts.jobName);
    }

    /** Program arguments; see the top of this file. */
    static final class Options {
        double rate = 100;
        long keys = 8;
        long checkpointIntervalMs = 2000;
        String jobName = "flinkop-testjob";
        boolean dropCounter;
        String counterUid = "counter";
        boolean failAtStart;
        boolean failInMain;
        String slowSnapshotFile;
        long slowSnapshotMs = 10000;
        String failSnapshotFile;
        boolean failOnState;
        String failOnceFile;
        boolean stockSplits;

        static Options parse(String[] args) {
            Options o = new Options();
            List<String> unknown = new ArrayList<>();
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                switch (a) {
                    case "--rate": o.rate = Double.parseDouble(value(args, ++i, a)); break;
                    case "--keys": o.keys = Long.parseLong(value(args, ++i, a)); break;
                    case "--checkpoint-interval-ms": o.checkpointIntervalMs = Long.parseLong(value(args, ++i, a)); break;
                    case "--job-name": o.jobName = value(args, ++i, a); break;
                    case "--drop-counter": o.dropCounter = true; break;
                    case "--counter-uid": o.counterUid = value(args, ++i, a); break;
                    case "--fail-at-start": o.failAtStart = true; break;
                    case "--fail-in-main": o.failInMain = true; break;
                    case "--slow-snapshot-file": o.slowSnapshotFile = value(args, ++i, a); break;
                    case "--slow-snapshot-ms": o.slowSnapshotMs = Long.parseLong(value(args, ++i, a)); break;
                    case "--fail-snapshot-file": o.failSnapshotFile = value(args, ++i, a); break;
                    case "--fail-on-state": o.failOnState = true; break;
                    case "--fail-once-file": o.failOnceFile = value(args, ++i, a); break;
                    case "--stock-splits": o.stockSplits = true; break;
                    default: unknown.add(a);
                }
            }
            if (!unknown.isEmpty()) {
                throw new IllegalArgumentException("flinkop test job: unknown arguments " + unknown);
            }
            if (o.keys < 1 || o.rate <= 0) {
                throw new IllegalArgumentException("flinkop test job: --keys and --rate must be positive");
            }
            return o;
        }

        private static String value(String[] args, int i, String name) {
            if (i >= args.length) {
                throw new IllegalArgumentException("flinkop test job: " + name + " needs a value");
            }
            return args[i];
        }
    }

    /** A number sequence cut into MAX_SPLITS splits, whatever the source's first parallelism. */
    static final class FixedSplitsSequence extends NumberSequenceSource {
        private static final long serialVersionUID = 1L;

        FixedSplitsSequence(long from, long to) {
            super(from, to);
        }

        @Override
        protected List<NumberSequenceSplit> splitNumberRange(long from, long to, int numSplits) {
            return super.splitNumberRange(from, to, Math.max(numSplits, MAX_SPLITS));
        }
    }

    /**
     * The generator: the sequence number itself. Under --fail-at-start it throws on the first number,
     * not in open(): a reader failing in open() races with the enumerator's split assignment, and the
     * job's root exception is then sometimes "TaskNotRunningException" instead of this one.
     */
    static final class Numbers implements GeneratorFunction<Long, Long> {
        private static final long serialVersionUID = 1L;
        private final boolean failAtStart;

        Numbers(boolean failAtStart) {
            this.failAtStart = failAtStart;
        }

        @Override
        public Long map(Long n) {
            if (failAtStart) {
                throw new IllegalStateException("flinkop test job: --fail-at-start given, failing at start");
            }
            return n;
        }
    }

    /** Counts records per key in a ValueState and emits the new count. */
    static final class Counter extends KeyedProcessFunction<Long, Long, Long> implements CheckpointedFunction {
        private static final long serialVersionUID = 1L;

        private final String slowSnapshotFile;
        private final long slowSnapshotMs;
        private final String failSnapshotFile;
        private final boolean failOnState;
        private final String failOnceFile;

        private transient ValueState<Long> count;
        private transient ListState<Long> failSwitch;
        private transient Set<Long> seenKeys;
        private transient volatile long maxCount;
        private transient volatile long restoredKeys;

        Counter(String slowSnapshotFile, long slowSnapshotMs, String failSnapshotFile,
                boolean failOnState, String failOnceFile) {
            this.slowSnapshotFile = slowSnapshotFile;
            this.slowSnapshotMs = slowSnapshotMs;
            this.failSnapshotFile = failSnapshotFile;
            this.failOnState = failOnState;
            this.failOnceFile = failOnceFile;
        }

        @Override
        public void open(OpenContext openContext) {
            count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Types.LONG));
            seenKeys = new HashSet<>();
            getRuntimeContext().getMetricGroup().gauge("maxCount", (Gauge<Long>) () -> maxCount);
            getRuntimeContext().getMetricGroup().gauge("restoredKeys", (Gauge<Long>) () -> restoredKeys);
        }

        @Override
        public void processElement(Long n, Context ctx, Collector<Long> out) throws Exception {
            Long current = count.value();
            if (failOnState && current != null) {
                throw new IllegalStateException(
                        "flinkop test job: --fail-on-state given, cannot process the count " + current + " of key "
                                + ctx.getCurrentKey());
            }
            if (failOnceFile != null) {
                try {
                    Files.createFile(Paths.get(failOnceFile));
                    throw new IllegalStateException("flinkop test job: failing once (" + failOnceFile + " created)");
                } catch (java.nio.file.FileAlreadyExistsException alreadyFailed) {
                    // failed once already: run normally
                }
            }
            if (seenKeys.add(ctx.getCurrentKey()) && current != null) {
                restoredKeys++;
            }
            long next = (current == null ? 0L : current) + 1;
            count.update(next);
            if (next > maxCount) {
                maxCount = next;
            }
            out.collect(next);
        }

        @Override
        public void initializeState(FunctionInitializationContext context) throws Exception {
            if (failSnapshotFile != null) {
                failSwitch = context.getOperatorStateStore().getListState(
                        new ListStateDescriptor<>("fail-snapshot-switch", new SwitchedLongSerializer(failSnapshotFile)));
            }
        }

        @Override
        public void snapshotState(FunctionSnapshotContext context) throws Exception {
            if (failSwitch != null) {
                // Written in the snapshot's asynchronous part, where SwitchedLongSerializer may throw.
                failSwitch.update(Collections.singletonList(maxCount));
            }
            if (slowSnapshotFile != null && Files.exists(Paths.get(slowSnapshotFile))) {
                Thread.sleep(slowSnapshotMs);
            }
        }
    }

    /**
     * LongSerializer, except that serialize() throws while a file exists. Operator state is
     * serialized in the asynchronous part of a snapshot: a failure there declines the checkpoint
     * or savepoint and leaves the task running.
     */
    public static final class SwitchedLongSerializer extends TypeSerializer<Long> {
        private static final long serialVersionUID = 1L;
        private final String failFile;

        public SwitchedLongSerializer() {
            this(null);
        }

        SwitchedLongSerializer(String failFile) {
            this.failFile = failFile;
        }

        @Override public boolean isImmutableType() { return true; }
        @Override public TypeSerializer<Long> duplicate() { return this; }
        @Override public Long createInstance() { return 0L; }
        @Override public Long copy(Long from) { return from; }
        @Override public Long copy(Long from, Long reuse) { return from; }
        @Override public int getLength() { return 8; }

        @Override
        public void serialize(Long record, DataOutputView target) throws IOException {
            if (failFile != null && Files.exists(Paths.get(failFile))) {
                throw new IOException("flinkop test job: " + failFile + " exists, failing the snapshot");
            }
            LongSerializer.INSTANCE.serialize(record, target);
        }

        @Override
        public Long deserialize(DataInputView source) throws IOException {
            return LongSerializer.INSTANCE.deserialize(source);
        }

        @Override
        public Long deserialize(Long reuse, DataInputView source) throws IOException {
            return LongSerializer.INSTANCE.deserialize(source);
        }

        @Override
        public void copy(DataInputView source, DataOutputView target) throws IOException {
            LongSerializer.INSTANCE.copy(source, target);
        }

        @Override public boolean equals(Object o) { return o instanceof SwitchedLongSerializer; }
        @Override public int hashCode() { return SwitchedLongSerializer.class.hashCode(); }

        @Override
        public TypeSerializerSnapshot<Long> snapshotConfiguration() {
            return new Snapshot();
        }

        /** Restores as a plain (never failing) SwitchedLongSerializer. */
        public static final class Snapshot extends SimpleTypeSerializerSnapshot<Long> {
            public Snapshot() {
                super(SwitchedLongSerializer::new);
            }
        }
    }
}
