package org.virtionetd.glue.bhyve;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What the wrapper will do for one bhyve command line: commands to prepare (a private tap for a NIC without a
 * backend), one virtio-netd per virtio-net slot, then the VMM; and what to undo at the end.
 * {@code --dry-run} prints {@link #commandLines()}.
 */
public record Plan(List<List<String>> setup, List<Nic> nics, List<String> vmm, List<List<String>> teardown,
                   List<String> notes) {
    /**
     * One virtio-net slot served by its own virtio-netd.
     *
     * @param at       the PCI function in the guest
     * @param tap      the tap the device uses (the backend's name, or a private one for a NIC without backend)
     * @param privateTap true if the wrapper creates and removes {@code tap} (no backend: the NIC has no link)
     * @param mac      the MAC (given, or bhyve's generated one)
     * @param mtu      the MTU if {@code mtu=} was given (then VIRTIO_NET_F_MTU is offered), else null
     * @param socket   the vhost-user socket
     * @param control  the device's control socket (features, stats)
     * @param log      the device's output
     * @param command  the virtio-netd command line
     */
    public record Nic(PciAddress at, String tap, boolean privateTap, String mac, Integer mtu, Path socket, Path control,
                      Path log, List<String> command) {
    }

    public Plan {
        setup = List.copyOf(setup);
        nics = List.copyOf(nics);
        vmm = List.copyOf(vmm);
        teardown = List.copyOf(teardown);
        notes = List.copyOf(notes);
    }

    /** Every command in the order they run, one shell-quoted line each. */
    public List<String> commandLines() {
        List<String> out = new ArrayList<>();
        setup.forEach(c -> out.add(shellLine(c)));
        nics.forEach(n -> out.add(shellLine(n.command())));
        out.add(shellLine(vmm));
        return out;
    }

    /** A command as a POSIX shell would need it typed: words with special characters in single quotes. */
    public static String shellLine(List<String> argv) {
        StringBuilder sb = new StringBuilder();
        for (String w : argv) {
            if (sb.length() > 0) {
                sb.append(' ');
            }
            if (!w.isEmpty() && w.matches("[A-Za-z0-9_@%+=:,./-]+")) {
                sb.append(w);
            } else {
                sb.append('\'').append(w.replace("'", "'\\''")).append('\'');
            }
        }
        return sb.toString();
    }
}
