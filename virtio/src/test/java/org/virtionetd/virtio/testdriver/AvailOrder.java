package org.virtionetd.virtio.testdriver;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * The chains a driver made available, in that order, and which of them a used entry returns: the one it names, or
 * with VIRTIO_F_IN_ORDER every chain made available up to it (2.7.9 / 2.8.9: one used entry may stand for a batch;
 * the driver finds the batch by the ID). Shared by {@link SplitQueueDriver} and {@link PackedQueueDriver}.
 */
final class AvailOrder {
    private final ArrayDeque<Chain> chains = new ArrayDeque<>();

    void offered(Chain c) {
        chains.addLast(c);
    }

    List<Chain> returnedBy(Chain c, boolean inOrder) {
        if (!inOrder) {
            chains.remove(c);
            return List.of(c);
        }
        List<Chain> batch = new ArrayList<>();
        while (true) {
            Chain b = chains.removeFirst();
            batch.add(b);
            if (b == c) {
                return batch;
            }
        }
    }
}
