package org.virtionetd.backends.fuzz;

import org.junit.jupiter.api.Test;
import org.virtionetd.backends.offload.TestFrames;
import org.virtionetd.virtio.fuzz.SeedWriter;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

/**
 * The committed seeds of {@link OffloadFuzzTest}: valid GSO frames of every type the engine segments (TSO over
 * IPv4 and IPv6 with a VLAN tag and an extension header, USO, UFO over both IP versions) and a plain NEEDS_CSUM
 * frame, each in a few slices, so that the fuzzer starts deep in the parser. Frames come from the offload tests'
 * {@link TestFrames} builder. {@code -Dvnd.fuzz.writeSeeds=true} rewrites the files.
 */
class OffloadSeedCorpusTest {
    // OffloadFuzzTest.FEATURES bit order: CSUM, HOST_TSO4, HOST_TSO6, HOST_UFO, HOST_USO, HOST_ECN.
    static final int ALL_HOST = 0x3f;

    static byte[] seed(TestFrames.Built b, VirtioNetHeader h, int... cuts) {
        SeedWriter w = new SeedWriter().u8(ALL_HOST);
        w.u8(h.flags()).u8(h.gsoType()).u16(h.hdrLen()).u16(h.gsoSize()).u16(h.csumStart()).u16(h.csumOffset());
        w.u8(cuts.length);
        for (int c : cuts) {
            w.u16(c);
        }
        return w.u8(0).bytes(b.frame).toBytes();
    }

    static Map<String, byte[]> seeds() {
        Map<String, byte[]> seeds = new LinkedHashMap<>();
        Random rnd = new Random(7);
        TestFrames.Built tso4 = TestFrames.build(rnd, 0, 4, 0, 0, TestFrames.L4_TCP, 12, 4000, 0x18);
        seeds.put("tso4", seed(tso4, TestFrames.gsoHeader(tso4, VirtioNetHeader.GSO_TCPV4, 1448), 54, 1000));
        TestFrames.Built tso6 = TestFrames.build(rnd, 1, 6, 0, 1, TestFrames.L4_TCP, 0, 3000, 0x19);
        seeds.put("tso6-vlan-ext", seed(tso6, TestFrames.gsoHeader(tso6, VirtioNetHeader.GSO_TCPV6, 1200), 30));
        TestFrames.Built uso = TestFrames.build(rnd, 0, 4, 8, 0, 17, 0, 2500, 0);
        seeds.put("uso4", seed(uso, TestFrames.gsoHeader(uso, VirtioNetHeader.GSO_UDP_L4, 1000)));
        TestFrames.Built ufo4 = TestFrames.build(rnd, 0, 4, 0, 0, 17, 0, 3000, 0);
        seeds.put("ufo4", seed(ufo4, TestFrames.gsoHeader(ufo4, VirtioNetHeader.GSO_UDP, 1480), 20, 2000));
        TestFrames.Built ufo6 = TestFrames.build(rnd, 0, 6, 0, 0, 17, 0, 3000, 0);
        seeds.put("ufo6", seed(ufo6, TestFrames.gsoHeader(ufo6, VirtioNetHeader.GSO_UDP, 1280)));
        TestFrames.Built csum = TestFrames.build(rnd, 0, 4, 0, 0, TestFrames.L4_TCP, 0, 1000, 0x10);
        VirtioNetHeader h = TestFrames.gsoHeader(csum, VirtioNetHeader.GSO_TCPV4, 0);
        h.gsoType(VirtioNetHeader.GSO_NONE).hdrLen(0);
        seeds.put("needs-csum", seed(csum, h, 40));
        return seeds;
    }

    @Test
    void committedSeedsAreWhatTheBuilderMakes() {
        SeedWriter.writeOrCheck(OffloadFuzzTest.class, "offload", seeds());
    }
}
