package org.virtionetd.virtio.testdriver;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.os.Epoll;
import org.virtionetd.virtio.os.LinuxNative;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;

class InMemoryBackendDriverTest {

    private static boolean readable(Epoll epoll) throws Exception {
        return epoll.await(0) > 0;
    }

    @Test
    void recordsConfigurationAndSentPackets() {
        long caps = VirtioNetFeature.bits(VirtioNetFeature.CSUM, VirtioNetFeature.HOST_TSO4);
        try (InMemoryBackend b = new InMemoryBackend("b0", caps)) {
            assertThat(b.capabilities()).isEqualTo(caps);
            assertThat(b.name()).isEqualTo("memory:b0");
            b.configure(0x1234, 12);
            b.setGuestOffloads(VirtioNetFeature.bits(VirtioNetFeature.GUEST_CSUM));
            assertThat(b.configureCalls()).containsExactly(new InMemoryBackend.Configured(0x1234, 12));
            assertThat(b.guestOffloadCalls()).containsExactly(2L);

            Packet p = new Packet(4);
            p.reset(12);
            p.header().flags(1).csumStart(34).csumOffset(16);
            ByteBuffer s1 = ByteBuffer.wrap(new byte[] {0, 1, 2, 3, 4, 5, 6, 7}, 2, 3);
            ByteBuffer s2 = ByteBuffer.wrap(new byte[] {9, 8});
            p.add(s1);
            p.add(s2);
            assertThat(b.send(p)).isTrue();
            InMemoryBackend.Sent sent = b.sent().get(0);
            assertThat(sent.frame()).containsExactly(2, 3, 4, 9, 8);
            assertThat(sent.header()).hasSize(12);
            assertThat(sent.fields().csumStart()).isEqualTo(34);
            assertThat(sent.fields().flags()).isEqualTo(1);
            assertThat(s1.position()).as("positions untouched").isEqualTo(2);

            b.setAcceptSends(false);
            assertThat(b.send(p)).isFalse();
            assertThat(b.sentCount()).isEqualTo(1);
            assertThat(b.violations()).isEmpty();

            p.reset(10);
            p.add(ByteBuffer.wrap(new byte[] {1}));
            b.setAcceptSends(true);
            b.send(p);
            assertThat(b.violations()).containsExactly("send with header length 10 but configured 12");
        }
    }

    @Test
    void deliversFramesScatteredWithTheConfiguredHeaderLength() throws Exception {
        try (InMemoryBackend b = new InMemoryBackend("b1", 0); Epoll epoll = new Epoll(4)) {
            b.configure(0, 10);
            epoll.add(b.receiveReadyFd(), LinuxNative.EPOLLIN, 1);
            assertThat(readable(epoll)).isFalse();
            assertThat(b.peekLength()).isZero();

            byte[] header = NetHeaderFields.partialCsum(14, 6).encode(12);
            b.deliver(header, new byte[] {10, 11, 12, 13, 14});
            b.deliver(new byte[] {20});
            assertThat(readable(epoll)).isTrue();
            assertThat(b.peekLength()).isEqualTo(15);

            ByteBuffer d1 = ByteBuffer.allocate(7);
            ByteBuffer d2 = ByteBuffer.allocate(20);
            d2.position(4);
            assertThat(b.receive(new ByteBuffer[] {d1, d2}, 2)).isEqualTo(15);
            assertThat(d2.position()).as("position untouched").isEqualTo(4);
            byte[] got = new byte[15];
            d1.get(0, got, 0, 7);
            d2.get(4, got, 7, 8);
            NetHeaderFields f = NetHeaderFields.decode(java.util.Arrays.copyOf(got, 10));
            assertThat(f.flags()).isEqualTo(NetHeaderFields.F_NEEDS_CSUM);
            assertThat(f.csumStart()).isEqualTo(14);
            assertThat(java.util.Arrays.copyOfRange(got, 10, 15)).containsExactly(10, 11, 12, 13, 14);
            assertThat(readable(epoll)).as("one frame still queued").isTrue();

            assertThat(b.peekLength()).isEqualTo(11);
            ByteBuffer small = ByteBuffer.allocate(5);
            assertThat(b.receive(new ByteBuffer[] {small}, 1)).isZero();
            assertThat(b.violations()).singleElement().asString().contains("room for 5 bytes, frame needs 11");
            assertThat(readable(epoll)).as("queue empty: not readable, no spinning").isFalse();
            assertThat(b.receive(new ByteBuffer[] {ByteBuffer.allocate(64)}, 1)).isZero();
        }
    }

    @Test
    void waitsForPacketsSentFromAnotherThread() throws Exception {
        try (InMemoryBackend b = new InMemoryBackend("b2", 0)) {
            b.configure(0, 12);
            AtomicInteger sentOk = new AtomicInteger();
            Thread t = new Thread(() -> {
                for (int i = 0; i < 50; i++) {
                    Packet p = new Packet(1);
                    p.reset(12);
                    p.add(ByteBuffer.wrap(new byte[] {(byte) i}));
                    if (b.send(p)) {
                        sentOk.incrementAndGet();
                    }
                }
            });
            t.start();
            assertThat(b.awaitSent(50, Duration.ofSeconds(10))).hasSize(50);
            t.join();
            assertThat(sentOk.get()).isEqualTo(50);
        }
    }
}
