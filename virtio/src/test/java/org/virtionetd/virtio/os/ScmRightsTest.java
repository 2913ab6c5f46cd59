package org.virtionetd.virtio.os;

import jnr.constants.platform.Fcntl;
import jnr.posix.FileStat;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** File descriptors through sendmsg/recvmsg with SCM_RIGHTS (unix(7)) over a socketpair, with jnr-posix's MsgHdr. */
class ScmRightsTest {
    private static final int FD_CLOEXEC = 1;

    private final List<Integer> open = new ArrayList<>();
    private int sender;
    private int receiver;

    @BeforeEach
    void pair() throws Exception {
        int[] fds = LinuxNative.unixStreamPair();
        sender = track(fds[0]);
        receiver = track(fds[1]);
    }

    @AfterEach
    void closeAll() {
        open.forEach(LinuxNative::close);
    }

    private int track(int fd) {
        open.add(fd);
        return fd;
    }

    private static ByteBuffer direct(String text) {
        byte[] b = text.getBytes(StandardCharsets.US_ASCII);
        return ByteBuffer.allocateDirect(b.length).put(0, b);
    }

    private static String text(ByteBuffer b, int length) {
        byte[] out = new byte[length];
        b.get(b.position(), out);
        return new String(out, StandardCharsets.US_ASCII);
    }

    private static FileStat stat(int fd) {
        FileStat s = LinuxPosix.NATIVE.allocateStat();
        assertThat(LinuxPosix.NATIVE.fstat(fd, s)).as("fstat(%d)", fd).isZero();
        return s;
    }

    private static void assertSameFile(int sent, int received) {
        FileStat a = stat(sent);
        FileStat b = stat(received);
        assertThat(received).as("a new descriptor").isNotEqualTo(sent);
        assertThat(b.dev()).isEqualTo(a.dev());
        assertThat(b.ino()).as("inode of the fd received for %d", sent).isEqualTo(a.ino());
    }

    @Test
    void memfdsAndAnEventfdArriveAsNewCloseOnExecDescriptorsOfTheSameFiles() throws Exception {
        int small = track(LinuxNative.memfdCreate("scm-small", 4096));
        int large = track(LinuxNative.memfdCreate("scm-large", 3 * 4096));
        EventFd event = EventFd.create();
        open.add(event.fd());
        ScmRights out = new ScmRights(8);
        ScmRights in = new ScmRights(8);

        assertThat(out.send(sender, direct("hello"), new int[] {small, large, event.fd()})).isEqualTo(5);
        ByteBuffer into = ByteBuffer.allocateDirect(16);
        assertThat(in.receive(receiver, into)).isEqualTo(5);

        assertThat(text(into, 5)).isEqualTo("hello");
        assertThat(in.truncated()).isFalse();
        assertThat(in.receivedFds()).isEqualTo(3);
        int[] got = {track(in.receivedFd(0)), track(in.receivedFd(1)), track(in.receivedFd(2))};
        assertSameFile(small, got[0]);
        assertSameFile(large, got[1]);
        assertSameFile(event.fd(), got[2]);
        assertThat(LinuxNative.fileSize(got[0])).isEqualTo(4096);
        assertThat(LinuxNative.fileSize(got[1])).isEqualTo(3 * 4096);
        EventFd received = EventFd.adopt(got[2]);
        received.signal();
        assertThat(event.drain()).as("a signal on the received eventfd reaches the sent one").isEqualTo(1);
        for (int fd : got) {
            assertThat(LinuxPosix.NATIVE.fcntl(fd, Fcntl.F_GETFD) & FD_CLOEXEC).as("MSG_CMSG_CLOEXEC on %d", fd)
                    .isEqualTo(FD_CLOEXEC);
        }
    }

    @Test
    void moreFdsThanRoomAreReportedAsTruncatedAndTheOnesThatFitStillArrive() throws Exception {
        int a = track(LinuxNative.memfdCreate("scm-a", 4096));
        int b = track(LinuxNative.memfdCreate("scm-b", 4096));
        int c = track(LinuxNative.memfdCreate("scm-c", 4096));
        assertThat(new ScmRights(8).send(sender, direct("x"), new int[] {a, b, c})).isEqualTo(1);

        ScmRights in = new ScmRights(2);
        assertThat(in.receive(receiver, ByteBuffer.allocateDirect(4))).isEqualTo(1);
        assertThat(in.truncated()).as("MSG_CTRUNC").isTrue();
        assertThat(in.receivedFds()).isEqualTo(2);
        assertSameFile(a, track(in.receivedFd(0)));
        assertSameFile(b, track(in.receivedFd(1)));
    }

    @Test
    void bytesWithoutFdsGoIntoTheBufferFromItsPositionAndBringNoFds() {
        ScmRights out = new ScmRights(1);
        ScmRights in = new ScmRights(1);
        assertThat(out.send(sender, direct("abcdef").position(2), new int[0])).isEqualTo(4);
        ByteBuffer into = ByteBuffer.allocateDirect(10).position(3).limit(5);
        assertThat(in.receive(receiver, into)).as("at most the buffer's remaining bytes").isEqualTo(2);
        assertThat(text(into, 2)).isEqualTo("cd");
        assertThat(into.position()).isEqualTo(3);
        assertThat(in.receivedFds()).isZero();
        assertThat(in.truncated()).isFalse();
        assertThat(in.receive(receiver, ByteBuffer.allocateDirect(10))).isEqualTo(2);
    }

    @Test
    void anEmptyNonBlockingSocketGivesEagainAndAClosedPeerGivesEndOfStream() throws Exception {
        LinuxNative.setNonBlocking(receiver);
        ScmRights in = new ScmRights(1);
        assertThat(in.receive(receiver, ByteBuffer.allocateDirect(4))).isEqualTo(-LinuxNative.EAGAIN);
        open.remove(Integer.valueOf(sender));
        LinuxNative.close(sender);
        assertThat(in.receive(receiver, ByteBuffer.allocateDirect(4))).isZero();
        assertThat(new ScmRights(1).send(receiver, direct("x"), new int[0])).as("EPIPE, no SIGPIPE")
                .isEqualTo(-32);
    }

    @Test
    void theNativeMemoryOfEachCallSurvivesGarbageCollectionsBetweenCalls() throws Exception {
        int memfd = track(LinuxNative.memfdCreate("scm-gc", 4096));
        ScmRights out = new ScmRights(1);
        ScmRights in = new ScmRights(1);
        ByteBuffer into = ByteBuffer.allocateDirect(8);
        for (int i = 0; i < 20_000; i++) {
            if (i % 1000 == 0) {
                System.gc();
            }
            String n = String.format("%08d", i);
            assertThat(out.send(sender, direct(n), new int[] {memfd})).isEqualTo(8);
            assertThat(in.receive(receiver, into)).as("round %d", i).isEqualTo(8);
            assertThat(text(into, 8)).isEqualTo(n);
            assertThat(in.receivedFds()).isEqualTo(1);
            LinuxNative.close(in.receivedFd(0));
        }
    }
}
