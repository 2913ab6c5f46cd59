package org.virtionetd.glue.bhyve;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What the wrapper will do for one bhyve command line: commands to prepare (a private tap for a NIC without a
 * backend), the virtio-netd processes (one per tap NIC; one for all the VM's VALE NICs, whose switches live inside
 * it), then the VMM; and what to undo at the end. {@code --dry-run} prints {@link #commandLines()}.
 */
public record Plan(List<List<String>> setup, List<Nic> nics, List<String> vmm, List<List<String>> teardown,
                   List<String> notes) {
    /**
     * One virtio-net slot and the virtio-netd that serves it.
     *
     * @param at       the PCI function in the guest
     * @param backend  the device's backend as virtio-netd spells it: {@code tap:NAME} or {@code valeNAME:PORT}
     * @param tap      the tap the device uses (the backend's name, or a private one for a NIC without backend);
     *                 null for a VALE port
     * @param privateTap true if the wrapper creates and removes {@code tap} (no backend: the NIC has no link)
     * @param mac      the MAC (given, or bhyve's generated one)
     * @param mtu      the MTU if {@code mtu=} was given (then VIRTIO_NET_F_MTU is offered), else null
     * @param socket   the vhost-user socket
     * @param control  the device's control socket (features, stats)
     * @param log      the output of the virtio-netd serving it
     * @param command  the command line of the virtio-netd serving it (the same list for every VALE NIC of the VM)
     */
    public record Nic(PciAddress at, String backend, String tap, boolean privateTap, String mac, Integer mtu, Path socket, Path control,
                      Path log, List<String> command) {
    }

    /** One virtio-netd process: its command line, its output, and the NICs it serves (in slot order). */
    public record Daemon(List<String> command, Path log, List<Nic> nics) {
        public Daemon {
            command = List.copyOf(command);
            nics = List.copyOf(nics);
        }
    }

    public Plan {
        setup = List.copyOf(setup);
        nics = List.copyOf(nics);
        vmm = List.copyOf(vmm);
        teardown = List.copyOf(teardown);
        notes = List.copyOf(notes);
    }

    /** The virtio-netd processes to start, in the order of their first NIC: NICs with one command share one. */
    public List<Daemon> daemons() {
        Map<List<String>, List<Nic>> byCommand = new LinkedHashMap<>();
        for (Nic n : nics) {
            byCommand.computeIfAbsent(n.command(), c -> new ArrayList<>()).add(n);
        }
        List<Daemon> out = new ArrayList<>();
        byCommand.forEach((command, served) -> out.add(new Daemon(command, served.get(0).log(), served)));
        return out;
    }

    /** Every command in the order they run, one shell-quoted line each. */
    public List<String> commandLines() {
        List<String> out = new ArrayList<>();
        setup.forEach(c -> out.add(shellLine(c)));
        daemons().forEach(d -> out.add(shellLine(d.command())));
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
