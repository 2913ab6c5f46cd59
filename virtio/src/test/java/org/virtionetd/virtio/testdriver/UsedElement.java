package org.virtionetd.virtio.testdriver;

/**
 * One {@code struct virtq_used_elem} read back from the used ring (virtio 1.2, 2.7.8): the head {@code id} and
 * the number of bytes the device wrote ({@code len}), with the driver's record of that chain and the used
 * ring index it was read from.
 */
public record UsedElement(int ringIndex, int id, int len, Chain chain) {
    @Override
    public String toString() {
        return "used[" + ringIndex + "]{id=" + id + " len=" + len + "}";
    }
}
