package org.virtionetd.backends.offload.bench;

import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;

import java.util.Collection;
import java.util.HashMap;
import java.util.Map;

/**
 * Runs the offload benchmarks briefly and prints GB/s and the ratio to memcpy measured in the same run (absolute
 * numbers on a shared machine mean little; ratios travel better). Run from backends/ after test-compile:
 * <pre>
 *   mvn -o -q -B -pl backends -am test-compile
 *   mvn -o -q -B -pl backends dependency:build-classpath -Dmdep.outputFile=/tmp/cp.txt -Dmdep.includeScope=test
 *   java -cp backends/target/test-classes:backends/target/classes:virtio/target/classes:$(cat /tmp/cp.txt) \
 *        org.virtionetd.backends.offload.bench.BenchMain [warmup-seconds measure-seconds iterations]
 * </pre>
 * or any JMH option through {@code org.openjdk.jmh.Main} on the same class path.
 */
public final class BenchMain {
    public static void main(String[] args) throws Exception {
        int warm = args.length > 0 ? Integer.parseInt(args[0]) : 1;
        int measure = args.length > 1 ? Integer.parseInt(args[1]) : 1;
        int iterations = args.length > 2 ? Integer.parseInt(args[2]) : 3;
        Options opt = new OptionsBuilder()
                .include(ChecksumBenchmark.class.getSimpleName())
                .include(SegmentationBenchmark.class.getSimpleName())
                .forks(1)
                .warmupIterations(iterations).warmupTime(TimeValue.seconds(warm))
                .measurementIterations(iterations).measurementTime(TimeValue.seconds(measure))
                .build();
        Collection<RunResult> results = new Runner(opt).run();
        Map<String, Double> gbps = new HashMap<>();
        for (RunResult r : results) {
            String name = r.getParams().getBenchmark();
            String size = r.getParams().getParam("size");
            int bytes = size != null ? Integer.parseInt(size) : SegmentationBenchmark.FRAME;
            String key = name.substring(name.lastIndexOf('.', name.lastIndexOf('.') - 1) + 1)
                    + (size != null ? "[" + size + "]" : "");
            gbps.put(key, r.getPrimaryResult().getScore() * bytes / 1e9);
        }
        System.out.println();
        for (String size : new String[] {"1500", "65536"}) {
            ratio("checksum " + size + " B", gbps.get("ChecksumBenchmark.checksum[" + size + "]"),
                    gbps.get("ChecksumBenchmark.memcpy[" + size + "]"));
        }
        ratio("TSO 64 KiB @1448", gbps.get("SegmentationBenchmark.segment"), gbps.get("SegmentationBenchmark.memcpy"));
    }

    private static void ratio(String what, Double value, Double memcpy) {
        if (value == null || memcpy == null) {
            System.out.println(what + ": missing result");
            return;
        }
        System.out.printf("%-20s %6.2f GB/s   memcpy %6.2f GB/s   ratio %.2f%n", what, value, memcpy, value / memcpy);
    }
}
