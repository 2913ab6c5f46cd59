package org.virtionetd.glue.bhyve;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * {@code scripts/bhyve}: takes a bhyve(8) command line and runs the VM on this host's VMM with virtio-netd serving
 * its virtio-net slots (one process per tap slot, one for all the VM's VALE slots; QEMU on Linux, bhyve itself on
 * FreeBSD). {@code --dry-run} prints the commands instead.
 * Exit codes follow bhyve: 1 usage, 4 slot or device configuration, 64 (EX_USAGE) a malformed option value;
 * otherwise the VMM's own.
 */
public final class BhyveMain {
    private BhyveMain() {
    }

    public static void main(String[] args) {
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tF %1$tT %4$s %3$s: %5$s%6$s%n");
        }
        System.exit(run(List.of(args), System.out, System.err, System.getProperty("os.name", "")));
    }

    /** Parses, plans, then prints (--dry-run) or runs. {@code osName} picks the VMM ("FreeBSD" or anything else). */
    public static int run(List<String> args, PrintStream out, PrintStream err, String osName) {
        BhyveCommandLine.Parsed parsed;
        Plan plan;
        try {
            parsed = BhyveCommandLine.parse(args);
            if (parsed.options().help()) {
                err.print(usage());
                return 0;
            }
            // The libvirt domain is for a Linux host, wherever the wrapper runs (a bhyve host converting its VMs).
            plan = osName.startsWith("FreeBSD") && !parsed.options().emitLibvirtXml() ? Planner.forFreeBsd(parsed)
                    : Planner.forLinux(parsed, virtioNetdCommand());
            if (parsed.options().emitLibvirtXml()) {
                return emitLibvirtXml(parsed, plan, out, err);
            }
        } catch (BhyveUsageException e) {
            err.println("bhyve: " + e.getMessage().replace("\n", "\nbhyve: "));
            if (e.exitCode() == BhyveUsageException.USAGE) {
                err.print(usage());
            }
            return e.exitCode();
        }
        for (String note : plan.notes()) {
            err.println("bhyve: note: " + note);
        }
        if (parsed.options().dryRun()) {
            plan.commandLines().forEach(out::println);
            out.flush();
            return 0;
        }
        try {
            return new Runner(plan, parsed.options(), err).run();
        } catch (Exception e) {
            err.println("bhyve: " + e.getMessage());
            return BhyveUsageException.CONFIG;
        }
    }

    /**
     * Prints the domain XML on {@code out}, and on {@code err} what must run first: libvirt's QEMU connects to each
     * vhost-user socket as the client, so every virtio-netd must listen before {@code virsh create/start}.
     */
    private static int emitLibvirtXml(BhyveCommandLine.Parsed parsed, Plan plan, PrintStream out, PrintStream err)
            throws BhyveUsageException {
        String xml = LibvirtDomain.xml(parsed, plan);
        for (String note : plan.notes()) {
            err.println("bhyve: note: " + note);
        }
        if (!plan.nics().isEmpty()) {
            err.println("bhyve: libvirt's QEMU connects to the vhost-user sockets as a client: run these first "
                    + "(also in the domain's <metadata>); QEMU's user (libvirt-qemu on Debian) must be able to "
                    + "connect to the sockets, see docs/libvirt.md:");
            LibvirtDomain.firstSteps(plan).forEach(line -> err.println("bhyve:   " + line));
        }
        out.print(xml);
        out.flush();
        return 0;
    }

    /** How to start virtio-netd: this JVM, and this jar (or this class path when not run from the jar). */
    static List<String> virtioNetdCommand() {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        try {
            Path self = Path.of(BhyveMain.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            if (Files.isRegularFile(self) && self.toString().endsWith(".jar")) {
                return List.of(java, "-jar", self.toString());
            }
        } catch (Exception e) {
            // fall through to the class path
        }
        return List.of(java, "-cp", System.getProperty("java.class.path"), "org.virtionetd.glue.cli.Main");
    }

    static String usage() {
        return String.join("\n",
                "Usage: bhyve [-aCDeHhPSuWwxY]",
                "             [-c [[cpus=]numcpus][,sockets=n][,cores=n][,threads=n]]",
                "             [-G port] [-k config_file] [-l lpc] [-m mem] [-o var=value]",
                "             [-p vcpu:hostcpu] [-r file] [-s pci] [-U uuid] vmname",
                "  the options of bhyve(8) and bhyve_config(5); every virtio-net slot is served by virtio-netd:",
                "  a tap slot (tapN, vmnetN) by its own, the VM's VALE slots (valeNAME:PORT) all by one whose",
                "  in-process switches stand in for VALE (another VM started by another invocation does not",
                "  share them); on Linux the VM runs on QEMU (TCG), on FreeBSD on bhyve.",
                "") + WrapperOptions.HELP;
    }
}
