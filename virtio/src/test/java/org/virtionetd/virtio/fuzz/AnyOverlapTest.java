package org.virtionetd.virtio.fuzz;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/** The tx-rx oracle's sweep agrees with the plain pairwise check it replaced. */
class AnyOverlapTest {
    @Test
    void agreesWithThePairwiseCheck() {
        Random r = new Random(42);
        for (int round = 0; round < 2000; round++) {
            List<long[]> a = ranges(r);
            List<long[]> b = ranges(r);
            boolean pairwise = a.stream().anyMatch(x -> b.stream().anyMatch(y ->
                    Long.compareUnsigned(x[0], y[0] + y[1]) < 0 && Long.compareUnsigned(y[0], x[0] + x[1]) < 0));
            assertThat(ChainWalkFuzzTest.anyOverlap(a, b)).as("round %d: %s vs %s", round, show(a), show(b))
                    .isEqualTo(pairwise);
        }
    }

    private static List<long[]> ranges(Random r) {
        List<long[]> out = new ArrayList<>();
        int n = r.nextInt(6);
        for (int i = 0; i < n; i++) {
            out.add(new long[] {r.nextInt(200), 1 + r.nextInt(40), 0});
        }
        return out;
    }

    private static String show(List<long[]> l) {
        StringBuilder b = new StringBuilder();
        l.forEach(x -> b.append('[').append(x[0]).append('+').append(x[1]).append(']'));
        return b.toString();
    }
}
