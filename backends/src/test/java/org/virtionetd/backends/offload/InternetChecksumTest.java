package org.virtionetd.backends.offload;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class InternetChecksumTest {

    private static ByteBuffer buffer(byte[] data, int kind) {
        ByteBuffer b;
        switch (kind) {
            case 0: b = ByteBuffer.allocateDirect(data.length); break;
            case 1: b = ByteBuffer.allocate(data.length); break;
            case 2: b = ByteBuffer.allocateDirect(data.length).order(ByteOrder.LITTLE_ENDIAN); break;
            default:
                // a read-only heap buffer has no array: the ByteBuffer path
                return ByteBuffer.wrap(data.clone()).asReadOnlyBuffer();
        }
        b.put(0, data);
        return b;
    }

    @Provide
    Arbitrary<byte[]> data() {
        return Arbitraries.bytes().array(byte[].class).ofMinSize(0).ofMaxSize(3000);
    }

    @Property(tries = 400)
    void sumOfAnyRangeMatchesTheNaiveReference(@ForAll("data") byte[] data, @ForAll @IntRange(max = 3) int kind,
                                               @ForAll long seed) {
        Random rnd = new Random(seed);
        int off = data.length == 0 ? 0 : rnd.nextInt(data.length + 1);
        int len = rnd.nextInt(data.length - off + 1);
        ByteBuffer b = buffer(data, kind);
        b.position(Math.min(data.length, rnd.nextInt(7)));
        int before = b.position();
        assertThat(InternetChecksum.sum(b, off, len))
                .as("sum of [%d, +%d) of %d bytes, buffer kind %d", off, len, data.length, kind)
                .isEqualTo(TestFrames.naiveSum(data, off, len));
        assertThat(b.position()).as("position untouched").isEqualTo(before);
    }

    @Property(tries = 300)
    void sumContinuedAcrossRandomSlicesMatchesTheWhole(@ForAll("data") byte[] data, @ForAll long seed) {
        Random rnd = new Random(seed);
        int pieces = 1 + rnd.nextInt(8);
        int[] cuts = new int[pieces + 1];
        cuts[pieces] = data.length;
        for (int i = 1; i < pieces; i++) {
            cuts[i] = rnd.nextInt(data.length + 1);
        }
        Arrays.sort(cuts);
        int sum = 0;
        for (int i = 0; i < pieces; i++) {
            int len = cuts[i + 1] - cuts[i];
            // each slice in a buffer of its own at a random offset, as guest-memory slices are
            int pad = rnd.nextInt(9);
            byte[] copy = new byte[pad + len];
            System.arraycopy(data, cuts[i], copy, pad, len);
            ByteBuffer b = buffer(copy, rnd.nextInt(4));
            sum = InternetChecksum.add(sum, cuts[i], b, pad, len);
        }
        assertThat(sum).as("slices at %s", Arrays.toString(cuts))
                .isEqualTo(TestFrames.naiveSum(data, 0, data.length));
    }

    @Property(tries = 20)
    void largeRangesMatch(@ForAll @IntRange(min = 60000, max = 70000) int len, @ForAll long seed) {
        byte[] data = new byte[len];
        new Random(seed).nextBytes(data);
        assertThat(InternetChecksum.sum(buffer(data, 0), 0, len)).isEqualTo(TestFrames.naiveSum(data, 0, len));
        assertThat(InternetChecksum.sum(buffer(data, 1), 1, len - 1)).isEqualTo(TestFrames.naiveSum(data, 1, len - 1));
    }

    @Example
    void carriesAreFoldedForAllOnes() {
        byte[] ones = new byte[65536 + 7];
        Arrays.fill(ones, (byte) 0xff);
        for (int len : new int[] {1, 2, 3, 8, 15, 16, 17, 1500, 65536, 65543}) {
            assertThat(InternetChecksum.sum(buffer(ones, 0), 0, len)).as("len %d", len)
                    .isEqualTo(TestFrames.naiveSum(ones, 0, len));
        }
        assertThat(InternetChecksum.fold(0x1_fffe_ffffL)).isEqualTo(TestFrames.naiveAdd(
                TestFrames.naiveAdd(0xfffe, 0xffff), 1));
    }

    @Example
    void rfc1071Example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        byte[] d = {0x00, 0x01, (byte) 0xf2, 0x03, (byte) 0xf4, (byte) 0xf5, (byte) 0xf6, (byte) 0xf7};
        assertThat(InternetChecksum.sum(buffer(d, 0), 0, 8)).isEqualTo(0xddf2);
        assertThat(InternetChecksum.finish(0xddf2)).isEqualTo(0x220d);
    }

    @Property(tries = 100)
    void pseudoHeadersMatchTheReference(@ForAll long seed, @ForAll @IntRange(max = 70000) int l4Len) {
        Random rnd = new Random(seed);
        byte[] f = new byte[80];
        rnd.nextBytes(f);
        ByteBuffer b = buffer(f, rnd.nextInt(3));
        assertThat(InternetChecksum.pseudoHeaderIpv4(b, 14, 6, l4Len))
                .isEqualTo(TestFrames.naivePseudo(f, 14, 4, 6, l4Len));
        assertThat(InternetChecksum.pseudoHeaderIpv6(b, 14, 17, l4Len))
                .isEqualTo(TestFrames.naivePseudo(f, 14, 6, 17, l4Len));
    }

    @Example
    void rangesOutsideTheBufferAreRefusedBeforeReading() {
        ByteBuffer b = ByteBuffer.allocateDirect(100);
        b.limit(50);
        assertThatThrownBy(() -> InternetChecksum.sum(b, 40, 11)).isInstanceOf(IndexOutOfBoundsException.class)
                .hasMessageContaining("limit 50");
        assertThatThrownBy(() -> InternetChecksum.sum(b, -1, 2)).isInstanceOf(IndexOutOfBoundsException.class);
        assertThatThrownBy(() -> InternetChecksum.sum(b, 10, Integer.MAX_VALUE))
                .isInstanceOf(IndexOutOfBoundsException.class);
    }
}
