package org.virtionetd.glue.bhyve;

import java.nio.file.Path;

/**
 * The wrapper's own options, which bhyve does not have (all spelled {@code --name}, so that no bhyve command line
 * means something else here).
 *
 * @param dryRun         print the commands, one per line, and start nothing
 * @param showFeatures   print each virtio-net slot's feature table once the guest driver has acknowledged features
 * @param kernel         QEMU-only: a Linux kernel to boot directly (bhyve needs bhyveload or a boot ROM instead)
 * @param initrd         QEMU-only: its initrd
 * @param append         QEMU-only: its command line
 * @param runDir         where the sockets, control sockets and device logs go
 * @param qemu           the QEMU binary
 * @param waitSeconds    bound of every wait (sockets, feature negotiation)
 * @param emitLibvirtXml print a libvirt domain XML for the VM (docs/libvirt.md) and start nothing
 * @param libvirtType    the libvirt domain type of that XML: {@code qemu} (TCG, as the QEMU plan) or {@code kvm}
 */
public record WrapperOptions(boolean dryRun, boolean showFeatures, Path kernel, Path initrd, String append,
                             Path runDir, String qemu, int waitSeconds, boolean emitLibvirtXml, String libvirtType,
                             boolean help) {
    public static final String DEFAULT_QEMU = "qemu-system-x86_64";
    public static final int DEFAULT_WAIT_SECONDS = 180;
    /** TCG, like the QEMU plan: KVM does not boot normal guests on the machines this was made on. */
    public static final String DEFAULT_LIBVIRT_TYPE = "qemu";

    static final String HELP = String.join("\n",
            "Wrapper options (not bhyve's; each spelled --name):",
            "  --dry-run              print the commands it would run, one per line; start nothing",
            "  --show-features        once a guest driver is up, print each virtio-net slot's feature table (stderr)",
            "  --kernel FILE          QEMU only, not bhyve: boot this Linux kernel (bhyve uses bhyveload/-l bootrom)",
            "  --initrd FILE          QEMU only, not bhyve: its initrd",
            "  --append STRING        QEMU only, not bhyve: its command line",
            "  --run-dir DIR          sockets and device logs (default /run/virtio-netd-bhyve/VMNAME)",
            "  --qemu BINARY          QEMU to run (default " + DEFAULT_QEMU + ")",
            "  --wait SECONDS         bound of each wait for a socket or a driver (default " + DEFAULT_WAIT_SECONDS + ")",
            "  --emit-libvirt-xml     print a libvirt domain XML for this VM instead (vhostuser NICs, shared memfd",
            "                         memory; docs/libvirt.md); the virtio-netd commands to start first go to stderr",
            "                         and into the domain's <metadata>; starts nothing",
            "  --libvirt-type TYPE    with --emit-libvirt-xml: domain type qemu (TCG, default) or kvm",
            "");
}
