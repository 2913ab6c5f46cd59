package org.virtionetd.backends.vswitch;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.virtionetd.backends.vswitch.L2.*;

/** Forwarding, learning, flooding, VLANs, rings and specs, with the test thread playing each port's device. */
class VirtualSwitchTest {
    private static final AtomicInteger SEQ = new AtomicInteger();
    private final List<SwitchPort> ports = new ArrayList<>();
    private final VirtualSwitch sw = VirtualSwitch.named("t" + SEQ.incrementAndGet() + "-" + ProcessHandle.current().pid());

    private SwitchPort port(String name, VlanSet vlans) throws Exception {
        SwitchPort p = rawPort(sw, name, vlans, VirtioNetFeature.GUEST_OFFLOADS);
        ports.add(p);
        return p;
    }

    @AfterEach
    void closePorts() {
        ports.forEach(SwitchPort::close);
    }

    @Test
    void unknownDestinationIsFloodedThenTheLearnedPortAloneGetsIt() throws Exception {
        SwitchPort a = port("a", VlanSet.ALL), b = port("b", VlanSet.ALL), c = port("c", VlanSet.ALL);
        assertThat(send(a, frame(mac(2), mac(1), -1, 60, 1))).isTrue();
        assertThat(drain(b)).hasSize(1);
        assertThat(drain(c)).as("unknown destination floods").hasSize(1);
        assertThat(drain(a)).as("never back to the sender").isEmpty();

        send(b, frame(mac(1), mac(2), -1, 60, 2)); // B answers: A was learned
        List<byte[][]> atA = drain(a);
        assertThat(atA).hasSize(1);
        assertThat(atA.get(0)[1]).isEqualTo(frame(mac(1), mac(2), -1, 60, 2));
        assertThat(drain(c)).as("learned unicast goes to one port").isEmpty();

        send(a, frame(mac(2), mac(1), -1, 60, 3)); // now B is known too
        assertThat(drain(b)).hasSize(1);
        assertThat(drain(c)).isEmpty();
        assertThat(a.counters().snapshot()).containsEntry("tx_frames", 2L).containsEntry("tx_flooded", 1L)
                .containsEntry("tx_unicast", 1L).containsEntry("rx_enqueued", 1L);
        assertThat(c.counters().snapshot()).containsEntry("rx_enqueued", 1L);
        assertThat(sw.learnedAddresses()).isEqualTo(2);
    }

    @Test
    void aGuestMigratedToAnotherPortIsLearnedThereFromItsRarpAndItsPeerKeepsReachingIt() throws Exception {
        SwitchPort before = port("before", VlanSet.ALL), peer = port("peer", VlanSet.ALL);
        send(before, frame(mac(2), mac(1), -1, 60, 1));
        send(peer, frame(mac(1), mac(2), -1, 60, 2));
        assertThat(drain(before)).as("the peer reaches the guest at its first port").hasSize(1);
        drain(peer);

        // The guest migrated: its new port's device sends the RARP of SEND_RARP (broadcast from the guest's MAC,
        // EtherType 0x8035), as VirtioNetDevice.sendRarp does.
        SwitchPort after = port("after", VlanSet.ALL);
        byte[] rarp = frame(BROADCAST, mac(1), -1, 46, 0);
        rarp[12] = (byte) 0x80;
        rarp[13] = 0x35;
        send(after, rarp);
        assertThat(drain(peer)).as("the RARP is flooded").hasSize(1);
        drain(before);

        send(peer, frame(mac(1), mac(2), -1, 60, 3));
        assertThat(drain(after)).as("the peer's next frame reaches the guest at its new port").hasSize(1);
        assertThat(drain(before)).as("and not the port it left").isEmpty();
    }

    @Test
    void broadcastAndMulticastAreFloodedEvenToLearnedAddresses() throws Exception {
        SwitchPort a = port("a", VlanSet.ALL), b = port("b", VlanSet.ALL), c = port("c", VlanSet.ALL);
        send(b, frame(BROADCAST, mac(2), -1, 28, 1));
        send(c, frame(BROADCAST, mac(3), -1, 28, 1));
        drain(a);
        drain(b);
        drain(c);
        send(a, frame(BROADCAST, mac(1), -1, 28, 7));
        send(a, frame(0x0100_5e00_0001L, mac(1), -1, 28, 8));
        assertThat(drain(b)).hasSize(2);
        assertThat(drain(c)).hasSize(2);
        assertThat(drain(a)).isEmpty();
    }

    @Test
    void aDestinationOnTheSendersOwnPortIsFiltered() throws Exception {
        SwitchPort a = port("a", VlanSet.ALL), b = port("b", VlanSet.ALL);
        send(a, frame(BROADCAST, mac(1), -1, 28, 1));
        send(a, frame(BROADCAST, mac(5), -1, 28, 1)); // a second host behind port A
        drain(b);
        assertThat(send(a, frame(mac(5), mac(1), -1, 28, 2))).isFalse();
        assertThat(drain(b)).isEmpty();
        assertThat(drain(a)).isEmpty();
        assertThat(a.counters().txFilteredSamePort.sum()).isEqualTo(1);
    }

    @Test
    void vlansSeparateFloodingLearningAndMembership() throws Exception {
        SwitchPort trunk = port("trunk", VlanSet.ALL);
        SwitchPort v10 = port("v10", VlanSet.parse("10"));
        SwitchPort v20 = port("v20", VlanSet.parse("20"));
        SwitchPort untagged = port("u", VlanSet.parse("0"));

        send(trunk, frame(BROADCAST, mac(1), 10, 40, 1));
        assertThat(drain(v10)).hasSize(1);
        assertThat(drain(v20)).as("VLAN 10 broadcast stays out of VLAN 20").isEmpty();
        assertThat(drain(untagged)).isEmpty();

        send(trunk, frame(BROADCAST, mac(1), -1, 40, 2));
        assertThat(drain(untagged)).hasSize(1);
        assertThat(drain(v10)).isEmpty();

        // The same MAC on two VLANs is two entries: mac(9) on VLAN 10 behind v10, on VLAN 20 behind v20.
        send(v10, frame(BROADCAST, mac(9), 10, 40, 3));
        send(v20, frame(BROADCAST, mac(9), 20, 40, 4));
        drain(trunk);
        send(trunk, frame(mac(9), mac(1), 20, 40, 5));
        assertThat(drain(v20)).hasSize(1);
        assertThat(drain(v10)).isEmpty();
        send(trunk, frame(mac(9), mac(1), 10, 40, 6));
        assertThat(drain(v10)).hasSize(1);
        assertThat(drain(v20)).isEmpty();

        // A port may not send on a VLAN it is not a member of.
        assertThat(send(v20, frame(BROADCAST, mac(9), 10, 40, 7))).isFalse();
        assertThat(v20.counters().txDroppedVlan.sum()).isEqualTo(1);
        assertThat(drain(trunk)).isEmpty();
        assertThat(drain(v10)).isEmpty();
    }

    @Test
    void shortFramesAndMulticastSourcesAreDroppedAndCounted() throws Exception {
        SwitchPort a = port("a", VlanSet.ALL), b = port("b", VlanSet.ALL);
        assertThat(send(a, new byte[13])).isFalse();
        assertThat(send(a, frame(BROADCAST, 0x0100_0000_0001L, -1, 40, 1))).isFalse();
        assertThat(drain(b)).isEmpty();
        assertThat(a.counters().txDroppedInvalid.sum()).isEqualTo(2);
        assertThat(sw.learnedAddresses()).isZero();
    }

    @Test
    void aFullRingDropsAndCountsAndAcceptsAgainOnceDrained() throws Exception {
        SwitchPort a = port("a", VlanSet.ALL), b = port("b", VlanSet.ALL);
        int big = 60_000;
        int accepted = 0;
        for (int i = 0; i < 200; i++) {
            if (send(a, frame(BROADCAST, mac(1), -1, big, i))) {
                accepted++;
            }
        }
        long enq = b.counters().rxEnqueued.sum();
        long dropped = b.counters().rxDroppedRingFull.sum();
        assertThat(enq).isBetween(50L, (long) (VirtualSwitch.RING_BYTES / big));
        assertThat(enq + dropped).isEqualTo(200);
        List<byte[][]> got = drain(b);
        assertThat(got).hasSize((int) enq);
        for (int i = 0; i < got.size(); i++) {
            assertThat(got.get(i)[1]).as("frame %d in order and intact", i).isEqualTo(frame(BROADCAST, mac(1), -1, big, i));
        }
        assertThat(accepted).as("a flood reports success; the drops are the destination's").isEqualTo(200);
        // After draining, the ring wraps and takes frames again, including around its end.
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < 40; i++) {
                send(a, frame(BROADCAST, mac(1), -1, 1000 + 997 * i, round * 100 + i));
            }
            List<byte[][]> again = drain(b);
            assertThat(again).hasSize(40);
            for (int i = 0; i < 40; i++) {
                assertThat(again.get(i)[1]).isEqualTo(frame(BROADCAST, mac(1), -1, 1000 + 997 * i, round * 100 + i));
            }
        }
    }

    @Test
    void aDetachedPortsAddressesAreForgotten() throws Exception {
        SwitchPort a = port("a", VlanSet.ALL), b = port("b", VlanSet.ALL), c = port("c", VlanSet.ALL);
        send(b, frame(BROADCAST, mac(2), -1, 40, 1));
        drain(a);
        drain(c);
        b.close();
        ports.remove(b);
        send(a, frame(mac(2), mac(1), -1, 40, 2));
        assertThat(drain(c)).as("unknown again: flooded").hasSize(1);
        assertThat(sw.ports()).containsExactly(a, c);
    }

    @Test
    void headerFieldsTravelButReceiveOnlyFlagsAreCleared() throws Exception {
        SwitchPort a = port("a", VlanSet.ALL), b = port("b", VlanSet.ALL);
        byte[] f = frame(mac(2), mac(1), -1, 100, 1);
        send(a, f, VirtioNetHeader.F_DATA_VALID, 0, 0, 0, 0, 0);
        byte[][] got = receive(b);
        assertThat(got[0][0]).as("DATA_VALID from a sender is not passed on (5.1.6.2.1)").isEqualTo((byte) 0);
        assertThat(got[1]).isEqualTo(f);
    }

    @Test
    void forwardingTableAgesEntriesAndReusesTheirSlots() {
        ForwardingTable t = new ForwardingTable(4, 1000);
        t.learn(ForwardingTable.key(mac(1), 0), 1, 0);
        t.learn(ForwardingTable.key(mac(2), 0), 2, 0);
        assertThat(t.lookup(ForwardingTable.key(mac(1), 0), 1000)).isEqualTo(1);
        assertThat(t.lookup(ForwardingTable.key(mac(1), 5), 1000)).as("other VLAN").isEqualTo(-1);
        assertThat(t.lookup(ForwardingTable.key(mac(1), 0), 1001)).as("aged").isEqualTo(-1);
        for (int i = 3; i < 7; i++) {
            t.learn(ForwardingTable.key(mac(i), 0), i, 2000);
        }
        assertThat(t.fullCount()).as("two aged slots and two empty ones: 4 fit").isZero();
        t.learn(ForwardingTable.key(mac(7), 0), 7, 2000);
        assertThat(t.fullCount()).isEqualTo(1);
        for (int i = 3; i < 7; i++) {
            assertThat(t.lookup(ForwardingTable.key(mac(i), 0), 2500)).isEqualTo(i);
        }
        t.forgetPort(4);
        assertThat(t.lookup(ForwardingTable.key(mac(4), 0), 2500)).isEqualTo(-1);
        assertThat(t.lookup(ForwardingTable.key(mac(5), 0), 2500)).as("probe chain intact").isEqualTo(5);
        assertThat(t.size()).isEqualTo(3);
    }

    @Test
    void specsParseAndNameWhatIsWrong() {
        SwitchSpec s = SwitchSpec.parse("switch:sw0");
        assertThat(s.switchName()).isEqualTo("sw0");
        assertThat(s.portName()).isNull();
        assertThat(s.offload()).isTrue();
        SwitchSpec v = SwitchSpec.parse("vale0:1");
        assertThat(v.switchName()).isEqualTo("vale0");
        assertThat(v.portName()).isEqualTo("1");
        SwitchSpec o = SwitchSpec.parse("switch:lab,port=up,vlans=0:10-12,no-offload");
        assertThat(o.portName()).isEqualTo("up");
        assertThat(o.offload()).isFalse();
        assertThat(o.vlans().contains(0)).isTrue();
        assertThat(o.vlans().contains(11)).isTrue();
        assertThat(o.vlans().contains(13)).isFalse();
        assertThat(SwitchSpec.matches("tap:tap0")).isFalse();
        assertThat(SwitchSpec.matches("tap0")).isFalse();
        assertThatThrownBy(() -> SwitchSpec.parse("switch:")).hasMessageContaining("switch name ''");
        assertThatThrownBy(() -> SwitchSpec.parse("switch:a/b")).hasMessageContaining("'a/b'");
        assertThatThrownBy(() -> SwitchSpec.parse("switch:sw0,speed=9")).hasMessageContaining("unknown option 'speed=9'");
        assertThatThrownBy(() -> SwitchSpec.parse("switch:sw0,vlans=4095")).hasMessageContaining("4095");
        assertThatThrownBy(() -> SwitchSpec.parse("switch:sw0").open(2)).hasMessageContaining("one queue pair, 2 asked");
    }

    @Test
    void portNamesAreUniquePerSwitch() throws Exception {
        port("a", VlanSet.ALL);
        assertThatThrownBy(() -> sw.attach("a", VlanSet.ALL, true)).hasMessageContaining("already has a port named 'a'");
        assertThat(sw.freePortName()).isEqualTo("p0");
    }
}
