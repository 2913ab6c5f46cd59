package org.virtionetd.virtio.net;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;

import static org.assertj.core.api.Assertions.assertThat;

/** The IP version behind at most two VLAN tags, and nothing read past the bytes given. */
class EthernetFrameTest {
    private static ByteBuffer frame(int... etherTypes) {
        ByteBuffer b = ByteBuffer.allocate(64);
        int at = 12;
        for (int t : etherTypes) {
            b.putShort(at, (short) t);
            at += EthernetFrame.VLAN_HLEN;
        }
        return b;
    }

    @Test
    void theEtherTypeAfterUpToTwoTagsGivesTheIpVersion() {
        assertThat(EthernetFrame.ipVersionOf(frame(0x0800), 0, 64)).isEqualTo(4);
        assertThat(EthernetFrame.ipVersionOf(frame(0x86dd), 0, 64)).isEqualTo(6);
        assertThat(EthernetFrame.ipVersionOf(frame(0x8100, 0x86dd), 0, 64)).isEqualTo(6);
        assertThat(EthernetFrame.ipVersionOf(frame(0x88a8, 0x8100, 0x0800), 0, 64)).isEqualTo(4);
        assertThat(EthernetFrame.ipVersionOf(frame(0x8100, 0x8100, 0x8100, 0x0800), 0, 64)).as("three tags").isZero();
        assertThat(EthernetFrame.ipVersionOf(frame(0x0806), 0, 64)).as("ARP").isZero();
    }

    @Test
    void aFrameTooShortToShowItsEtherTypeIsNotIp() {
        assertThat(EthernetFrame.ipVersionOf(frame(0x0800), 0, 13)).isZero();
        assertThat(EthernetFrame.ipVersionOf(frame(0x8100, 0x0800), 0, 17)).isZero();
        assertThat(EthernetFrame.ipVersionOf(frame(0x8100, 0x0800), 0, 18)).isEqualTo(4);
    }
}
