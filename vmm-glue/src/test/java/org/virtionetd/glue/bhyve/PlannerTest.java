package org.virtionetd.glue.bhyve;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Parse-and-plan of real bhyve command lines (bhyve(8), vm-bhyve, bhyve_config(5) forms) for QEMU and bhyve. */
class PlannerTest {
    static final List<String> VND = List.of("java", "-jar", "/opt/virtio-netd.jar");
    static final String BOOT = " --kernel /boot/vmlinuz --initrd /boot/initrd.img --append console=ttyS0 ";

    static Plan linux(String line) throws BhyveUsageException {
        return Planner.forLinux(BhyveCommandLineTest.parse(line), VND);
    }

    static BhyveUsageException refused(String line) {
        try {
            linux(line);
        } catch (BhyveUsageException e) {
            return e;
        }
        throw new AssertionError("planned without error: " + line);
    }

    /** The value following {@code option} in argv, for each occurrence. */
    static List<String> values(List<String> argv, String option) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i + 1 < argv.size(); i++) {
            if (argv.get(i).equals(option)) {
                out.add(argv.get(i + 1));
            }
        }
        return out;
    }

    @Test
    void bhyve8LinuxGuestExample() throws Exception {
        Plan p = linux("-A -H -P -s 0:0,hostbridge -s 1:0,lpc -s 2:0,virtio-net,tap0 -s 3:0,virtio-blk,./linux.img "
                + "-s 4:0,ahci-cd,./cdrom.iso -l com1,stdio -c 4 -m 1024M" + BOOT + "linuxguest");
        assertThat(p.nics()).hasSize(1);
        Plan.Nic nic = p.nics().get(0);
        assertThat(nic.at()).isEqualTo(new PciAddress(0, 2, 0));
        assertThat(nic.tap()).isEqualTo("tap0");
        assertThat(nic.mac()).isEqualTo(BhyveMac.format(BhyveMac.generate(2, 0, "linuxguest")));
        assertThat(nic.mtu()).isNull();
        Path run = Path.of("/run/virtio-netd-bhyve/linuxguest");
        assertThat(nic.command()).containsExactly("java", "-jar", "/opt/virtio-netd.jar", "--socket",
                run.resolve("net-2-0.sock").toString(), "--backend", "tap:tap0", "--mac", nic.mac(), "--control",
                run.resolve("net-2-0.ctl").toString());
        List<String> q = p.vmm();
        assertThat(q.get(0)).isEqualTo("qemu-system-x86_64");
        assertThat(values(q, "-machine")).containsExactly("q35,memory-backend=mem");
        assertThat(values(q, "-accel")).containsExactly("tcg");
        assertThat(values(q, "-cpu")).containsExactly("max");
        assertThat(values(q, "-smp")).containsExactly("cpus=4,sockets=1,cores=1,threads=1");
        assertThat(values(q, "-m")).containsExactly("1024M");
        assertThat(values(q, "-object")).containsExactly("memory-backend-memfd,id=mem,size=1024M,share=on");
        assertThat(values(q, "-serial")).containsExactly("stdio");
        assertThat(values(q, "-rtc")).containsExactly("base=localtime");
        assertThat(values(q, "-chardev")).containsExactly("socket,id=chr-net-2-0,path=" + run.resolve("net-2-0.sock"));
        assertThat(values(q, "-netdev")).containsExactly("vhost-user,id=net-2-0,chardev=chr-net-2-0,queues=1");
        assertThat(values(q, "-device")).containsExactly(
                "virtio-net-pci,netdev=net-2-0,mac=" + nic.mac() + ",vectors=0,addr=2.0",
                "virtio-blk-pci,drive=blk-3-0,addr=3.0",
                "ahci,id=sata-4-0,addr=4.0",
                "ide-cd,drive=sata-4-0-0,bus=sata-4-0.0");
        assertThat(values(q, "-drive")).containsExactly(
                "file=./linux.img,if=none,id=blk-3-0,format=raw,discard=unmap",
                "file=./cdrom.iso,if=none,id=sata-4-0-0,format=raw,discard=unmap,media=cdrom,readonly=on");
        assertThat(values(q, "-kernel")).containsExactly("/boot/vmlinuz");
        assertThat(values(q, "-initrd")).containsExactly("/boot/initrd.img");
        assertThat(values(q, "-append")).containsExactly("console=ttyS0");
        assertThat(q).contains("-nodefaults", "-no-reboot");
        assertThat(p.setup()).isEmpty();
        assertThat(p.notes()).anyMatch(n -> n.contains("lpc is QEMU's q35 ICH9 LPC bridge"));
    }

    @Test
    void vmBhyveGeneratedLine() throws Exception {
        // The shape vm-bhyve's vm-run produces for a UEFI guest with a fixed MAC and a zvol disk.
        Plan p = linux("-c 2 -m 2G -AHPw -U 2c8c5b3a-8b0f-11ee-b9d1-0242ac120002 -u -s 0,hostbridge -s 31,lpc "
                + "-s 4:0,virtio-net,tap1,mac=58:9c:fc:0b:cd:ef -s 3:0,virtio-blk,/dev/zvol/zroot/vm/guest/disk0 "
                + "-l com1,stdio -l bootrom,/usr/share/OVMF/OVMF_CODE.fd guest");
        assertThat(p.nics()).singleElement().satisfies(n -> {
            assertThat(n.mac()).isEqualTo("58:9c:fc:0b:cd:ef");
            assertThat(n.tap()).isEqualTo("tap1");
        });
        assertThat(values(p.vmm(), "-uuid")).containsExactly("2c8c5b3a-8b0f-11ee-b9d1-0242ac120002");
        assertThat(values(p.vmm(), "-rtc")).containsExactly("base=utc");
        assertThat(values(p.vmm(), "-drive")).contains(
                "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd");
        assertThat(p.vmm()).doesNotContain("-kernel");
        assertThat(p.notes()).anyMatch(n -> n.startsWith("x86.strictmsr=false"));
    }

    @Test
    void vmBhyveNmdmConsoleIsRefusedOnLinux() {
        BhyveUsageException e = refused("-c 1 -m 256M -s 0,hostbridge -s 31,lpc -s 2,virtio-net,tap0 "
                + "-l com1,/dev/nmdm-guest.1A" + BOOT + "guest");
        assertThat(e.getMessage()).startsWith("-l com1,/dev/nmdm-guest.1A: nmdm(4) null-modem devices exist only "
                + "on FreeBSD");
    }

    @Test
    void bhyveConfigDashOFormsPlanTheSame() throws Exception {
        Plan viaS = linux("-s 0,hostbridge -s 5,virtio-net,tap0,mac=00:a0:98:01:02:03,mtu=9000" + BOOT + "vm");
        Plan viaO = linux("-o pci.0.0.0.device=hostbridge -o pci.0.5.0.device=virtio-net -o pci.0.5.0.backend=tap0 "
                + "-o pci.0.5.0.mac=00:a0:98:01:02:03 -o pci.0.5.0.mtu=9000" + BOOT + "vm");
        assertThat(viaO.commandLines()).isEqualTo(viaS.commandLines());
        Plan.Nic n = viaO.nics().get(0);
        assertThat(n.mtu()).isEqualTo(9000);
        assertThat(n.command()).containsSequence("--mtu", "9000");
        assertThat(values(viaO.vmm(), "-device")).contains(
                "virtio-net-pci,netdev=net-5-0,mac=00:a0:98:01:02:03,vectors=0,host_mtu=9000,addr=5.0");
    }

    @Test
    void severalNicsEachGetTheirOwnDevice() throws Exception {
        Plan p = linux("-s 0,hostbridge -s 2,virtio-net,tap0 -s 2:1,virtio-net,vmnet3 -s 6,virtio-net,tap7"
                + BOOT + "multi");
        assertThat(p.nics()).extracting(Plan.Nic::tap).containsExactly("tap0", "vmnet3", "tap7");
        assertThat(p.nics()).extracting(n -> n.socket().getFileName().toString())
                .containsExactly("net-2-0.sock", "net-2-1.sock", "net-6-0.sock");
        assertThat(p.nics()).extracting(Plan.Nic::mac).doesNotHaveDuplicates();
        // Function 1 of slot 2 needs multifunction=on on function 0 in QEMU.
        assertThat(values(p.vmm(), "-device")).anyMatch(d -> d.startsWith("virtio-net-pci,netdev=net-2-0,")
                && d.endsWith("addr=2.0,multifunction=on"));
        assertThat(values(p.vmm(), "-device")).anyMatch(d -> d.endsWith("addr=2.1"));
        assertThat(p.commandLines()).hasSize(4);
    }

    @Test
    void valeNicsOfTheVmShareOneVirtioNetdAndTapsKeepTheirOwn() throws Exception {
        Plan p = linux("-s 0,hostbridge -s 2,virtio-net,vale0:1 -s 3,virtio-net,tap0 -s 4,virtio-net,vale0:2,"
                + "mac=00:a0:98:01:02:04 -s 5,virtio-net,valeb:x" + BOOT + "valevm");
        Path run = Path.of("/run/virtio-netd-bhyve/valevm");
        assertThat(p.nics()).extracting(Plan.Nic::backend)
                .containsExactly("vale0:1", "tap:tap0", "vale0:2", "valeb:x");
        assertThat(p.nics()).extracting(Plan.Nic::tap).containsExactly(null, "tap0", null, null);
        List<Plan.Daemon> daemons = p.daemons();
        assertThat(daemons).hasSize(2);
        Plan.Daemon vale = daemons.get(0);
        assertThat(vale.nics()).extracting(n -> n.at().slot()).containsExactly(2, 4, 5);
        assertThat(vale.log()).isEqualTo(run.resolve("vale.log"));
        String mac2 = BhyveMac.format(BhyveMac.generate(2, 0, "valevm"));
        String mac5 = BhyveMac.format(BhyveMac.generate(5, 0, "valevm"));
        assertThat(vale.command()).containsExactly("java", "-jar", "/opt/virtio-netd.jar",
                "--device", "socket=" + run.resolve("net-2-0.sock") + ",backend=vale0:1,mac=" + mac2 + ",control="
                        + run.resolve("net-2-0.ctl"),
                "--device", "socket=" + run.resolve("net-4-0.sock") + ",backend=vale0:2,mac=00:a0:98:01:02:04,control="
                        + run.resolve("net-4-0.ctl"),
                "--device", "socket=" + run.resolve("net-5-0.sock") + ",backend=valeb:x,mac=" + mac5 + ",control="
                        + run.resolve("net-5-0.ctl"));
        assertThat(daemons.get(1).command()).containsSequence("--backend", "tap:tap0");
        assertThat(daemons.get(1).nics()).extracting(Plan.Nic::tap).containsExactly("tap0");
        // Every NIC keeps its own socket and control socket (--show-features asks each).
        assertThat(p.nics()).extracting(Plan.Nic::control).doesNotHaveDuplicates();
        assertThat(values(p.vmm(), "-chardev")).containsExactly(
                "socket,id=chr-net-2-0,path=" + run.resolve("net-2-0.sock"),
                "socket,id=chr-net-3-0,path=" + run.resolve("net-3-0.sock"),
                "socket,id=chr-net-4-0,path=" + run.resolve("net-4-0.sock"),
                "socket,id=chr-net-5-0,path=" + run.resolve("net-5-0.sock"));
        assertThat(p.commandLines()).hasSize(3);
        assertThat(p.commandLines().get(0)).startsWith("java -jar /opt/virtio-netd.jar --device socket=");
        assertThat(p.notes()).anyMatch(n -> n.contains("vale0:1, vale0:2, valeb:x")
                && n.contains("switches vale0, valeb") && n.contains("another wrapper invocation"));
    }

    @Test
    void valeNicsWithOneMtuPassItToTheirVirtioNetd() throws Exception {
        Plan p = linux("-s 0,hostbridge -s 2,virtio-net,vale0:1,mtu=9000 -s 3,virtio-net,vale0:2,mtu=9000"
                + BOOT + "jumbo");
        assertThat(p.daemons()).singleElement().satisfies(d -> assertThat(d.command()).endsWith("--mtu", "9000"));
        assertThat(values(p.vmm(), "-device")).allMatch(d -> d.contains(",host_mtu=9000,"));
    }

    @Test
    void noBackendIsANicWithNoLink() throws Exception {
        Plan p = linux("-s 0,hostbridge -s 3,virtio-net" + BOOT + "lonely");
        Plan.Nic n = p.nics().get(0);
        assertThat(n.privateTap()).isTrue();
        assertThat(n.tap()).matches("vnl[0-9a-f]{6}030").hasSizeLessThanOrEqualTo(15);
        assertThat(p.setup()).containsExactly(List.of("ip", "tuntap", "add", "dev", n.tap(), "mode", "tap"));
        assertThat(p.teardown()).containsExactly(List.of("ip", "link", "del", n.tap()));
        assertThat(p.commandLines().get(0)).isEqualTo("ip tuntap add dev " + n.tap() + " mode tap");
        // Never "ip link set up": the tap stays down.
        assertThat(p.commandLines()).noneMatch(l -> l.contains(" up"));
    }

    @Test
    void diskOptionsMapToQemuProperties() throws Exception {
        Plan p = linux("-s 0,hostbridge -s 3,virtio-blk,/vm/a.img,ro,nocache,direct,sectorsize=512/4096,ser=ABC,"
                + "nodelete -s 4,ahci,hd:/vm/b.img,bootindex=1,cd:/iso/c.iso -o pci.0.4.0.port.1.path=/iso/c,d.iso -s 5,ahci-hd,/vm/e.img -s 7,virtio-rnd"
                + BOOT + "disks");
        assertThat(values(p.vmm(), "-drive")).containsExactly(
                "file=/vm/a.img,if=none,id=blk-3-0,format=raw,readonly=on,cache=directsync,discard=ignore",
                "file=/vm/b.img,if=none,id=sata-4-0-0,format=raw,discard=unmap",
                "file=/iso/c,,d.iso,if=none,id=sata-4-0-1,format=raw,discard=unmap,media=cdrom,readonly=on",
                "file=/vm/e.img,if=none,id=sata-5-0-0,format=raw,discard=unmap");
        assertThat(values(p.vmm(), "-device")).containsExactly(
                "virtio-blk-pci,drive=blk-3-0,logical_block_size=512,physical_block_size=4096,serial=ABC,addr=3.0",
                "ahci,id=sata-4-0,addr=4.0",
                "ide-hd,drive=sata-4-0-0,bus=sata-4-0.0,bootindex=1",
                "ide-cd,drive=sata-4-0-1,bus=sata-4-0.1",
                "ahci,id=sata-5-0,addr=5.0",
                "ide-hd,drive=sata-5-0-0,bus=sata-5-0.0",
                "virtio-rng-pci,addr=7.0");
    }

    @Test
    void comPortsInOrderWithGaps() throws Exception {
        Plan p = linux("-s 31,lpc -l com2,tcp=127.0.0.1:4444 -l com4,stdio" + BOOT + "vm");
        assertThat(values(p.vmm(), "-serial")).containsExactly("null", "tcp:127.0.0.1:4444,server=on,wait=off",
                "null", "stdio");
        Plan noLpc = linux("-l com1,stdio" + BOOT + "vm");
        assertThat(values(noLpc.vmm(), "-serial")).isEmpty();
        assertThat(noLpc.notes()).anyMatch(n -> n.contains("without an lpc slot"));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "-s 2,virtio-net,netmap:ix0| pci slot 0:2:0: backend 'netmap:ix0' is a netmap port of a host interface; "
            + "virtio-netd has no equivalent (use valeNAME:PORT for its in-process switch, or tapN or vmnetN)",
        "-s 2,virtio-net,vale0| pci slot 0:2:0: backend 'vale0' is not a VALE port valeNAME:PORT (switch and port "
            + "names of letters, digits, '_', '.', '-'; the switch name at most 32 characters)",
        "-s 2,virtio-net,vale0:1 -s 3,virtio-net,vale0:1| pci slot 0:3:0: VALE port vale0:1 is used by another slot "
            + "too",
        "-s 2,virtio-net,vale0:1,mtu=9000 -s 3,virtio-net,vale1:1| pci slot 0:3:0: mtu (none) differs from pci slot "
            + "0:2:0's 9000; the VALE NICs of a VM share one virtio-netd, whose --mtu applies to all of them",
        "-s 2,virtio-net,netgraph,path=ng0:,peerhook=a| pci slot 0:2:0: backend 'netgraph' has no virtio-netd "
            + "equivalent yet (use tapN or vmnetN)",
        "-s 2,virtio-net,eth0| pci slot 0:2:0: unknown backend 'eth0'",
        "-s 2,virtio-net,tap_with_a_long_name| pci slot 0:2:0: backend 'tap_with_a_long_name' is not a Linux "
            + "interface name (1..15 of letters, digits, '_', '.', '-')",
        "-s 2,virtio-net,tap0,mtu=30| Device emulation initialization error: Invalid argument (pci slot 0:2:0 "
            + "virtio-net: mtu 30 is outside 46..65535)",
        "-s 2,virtio-net,tap0,mtu=65536| Device emulation initialization error: Invalid argument (pci slot 0:2:0 "
            + "virtio-net: mtu 65536 is outside 46..65535)",
        "-s 2,virtio-net,tap0,mtu=-1500| Device emulation initialization error: Invalid argument (pci slot 0:2:0 "
            + "virtio-net: mtu '-1500' is not a number)",
        "-s 2,virtio-net,tap0,mtu=15oo| Device emulation initialization error: Invalid argument (pci slot 0:2:0 "
            + "virtio-net: mtu '15oo' is not a number)",
        "-s 2,virtio-net,tap0,mtu=50| pci slot 0:2:0: mtu 50 is valid for bhyve (46..65535) but not for virtio-netd, "
            + "which follows virtio 1.2 5.1.4.1 (68..65535)",
        "-s 2,virtio-net,tap0,queues=4| pci slot 0:2:0: virtio-net option 'queues=4' has no mapping in this wrapper "
            + "(it knows backend, device, mac, mtu, type)",
        "-s 29,fbuf,tcp=0.0.0.0:5900,w=800,h=600| pci slot 0:29:0: device \"fbuf\" has no QEMU equivalent in this "
            + "wrapper (it maps hostbridge, amd_hostbridge, lpc, virtio-net, virtio-blk, virtio-rnd, ahci, ahci-hd, "
            + "ahci-cd)",
        "-s 30,xhci,tablet| pci slot 0:30:0: device \"xhci\" has no QEMU equivalent in this wrapper (it maps "
            + "hostbridge, amd_hostbridge, lpc, virtio-net, virtio-blk, virtio-rnd, ahci, ahci-hd, ahci-cd)",
        "-s 31,virtio-net,tap0| pci slot 0:31:0: device \"virtio-net\" cannot be at slot 31 under QEMU: the q35 LPC "
            + "bridge, SATA and SMBus functions are there; move it to a free slot",
        "-o pci.0.0.0.device=virtio-net -o pci.0.0.0.backend=tap0| pci slot 0:0:0: device \"virtio-net\" cannot be at slot 0 under QEMU: the q35 host "
            + "bridge is there (bhyve's hostbridge belongs at slot 0)",
        "-s 1:2:0,virtio-net,tap0| pci slot 1:2:0: device \"virtio-net\" is on bus 1; this wrapper puts bhyve's "
            + "slots on QEMU's bus 0 only",
        "-s 2:1,virtio-net,tap0| pci slot 0:2:1: QEMU needs a device at function 0 of slot 2 before function 1",
        "-s 3,virtio-blk| pci slot 0:3:0: virtio-blk needs a backing file or device",
        "-s 4,ahci,hd:/a,hd:/b,hd:/c,hd:/d,hd:/e,hd:/f,cd:/g| pci slot 0:4:0: ahci port 6: QEMU's ahci has ports 0..5",
        "-p 0:1| -p 0:1: vCPU pinning has no equivalent in this wrapper (QEMU has no per-vCPU host pinning option)",
        "-c 3,sockets=2| Invalid CPU topology: 3 vCPUs but sockets 2 x cores 1 x threads 1 = 2"})
    void refusedWithTheSlotNamed(String options, String message) {
        BhyveUsageException e = refused("-s 0,hostbridge " + options + BOOT + "vm");
        assertThat(e.getMessage()).isEqualTo(message);
        assertThat(e.exitCode()).isEqualTo(BhyveUsageException.CONFIG);
    }

    @Test
    void multicastMacIsRefusedWithBhyvesTwoLines() {
        BhyveUsageException e = refused("-s 2,virtio-net,tap0,mac=01:00:5e:00:00:01" + BOOT + "vm");
        assertThat(e.getMessage()).isEqualTo("Invalid MAC 01:00:5e:00:00:01\nDevice emulation initialization error: "
                + "Invalid argument (pci slot 0:2:0 virtio-net)");
        assertThat(e.exitCode()).isEqualTo(BhyveUsageException.CONFIG);
    }

    @Test
    void badMemorySizeIsExUsage() {
        BhyveUsageException e = refused("-m 12Q" + BOOT + "vm");
        assertThat(e.getMessage()).isEqualTo("invalid memsize '12Q'");
        assertThat(e.exitCode()).isEqualTo(BhyveUsageException.EX_USAGE);
    }

    @Test
    void nothingToBootIsSaidPlainly() {
        BhyveUsageException e = refused("-s 0,hostbridge -s 2,virtio-net,tap0 vm");
        assertThat(e.getMessage()).startsWith("nothing to boot: bhyve runs what bhyveload(8) or grub-bhyve loaded");
        assertThat(e.exitCode()).isEqualTo(BhyveUsageException.USAGE);
    }

    @Test
    void freeBsdRunsBhyveItselfWithTheSameArguments() throws Exception {
        List<String> args = Arrays.asList("-A", "-H", "-P", "-s", "0:0,hostbridge", "-s", "1:0,lpc", "-s",
                "2:0,virtio-net,tap0", "-l", "com1,stdio", "-c", "4", "-m", "1024M", "linuxguest");
        List<String> withWrapper = new ArrayList<>(args);
        withWrapper.add(0, "--dry-run");
        Plan p = Planner.forFreeBsd(BhyveCommandLine.parse(withWrapper));
        List<String> expected = new ArrayList<>(List.of("/usr/sbin/bhyve"));
        expected.addAll(args);
        assertThat(p.vmm()).isEqualTo(expected);
        assertThat(p.nics()).isEmpty();
        assertThat(p.notes()).singleElement().asString().contains("docs/freebsd.md");
    }

    @Test
    void dryRunPrintsOneCommandPerLineAndStartsNothing() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc = BhyveMain.run(Arrays.asList(("--dry-run -c 1 -m 512M -s 0,hostbridge -s 2,virtio-net,tap0 "
                        + "-s 3,virtio-net -s 31,lpc -l com1,stdio --kernel /k --run-dir /nonexistent/dir vm").split(" ")),
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8),
                "Linux");
        assertThat(rc).isZero();
        List<String> lines = out.toString(StandardCharsets.UTF_8).lines().toList();
        assertThat(lines).hasSize(4);
        assertThat(lines.get(0)).startsWith("ip tuntap add dev vnl");
        assertThat(lines.get(1)).contains("--socket /nonexistent/dir/net-2-0.sock --backend tap:tap0");
        assertThat(lines.get(2)).contains("--socket /nonexistent/dir/net-3-0.sock --backend tap:vnl");
        assertThat(lines.get(3)).startsWith("qemu-system-x86_64 ").contains("-serial stdio");
        assertThat(java.nio.file.Files.exists(Path.of("/nonexistent/dir"))).isFalse();
        assertThat(err.toString(StandardCharsets.UTF_8)).contains("bhyve: note: pci slot 0:3:0: no backend");
    }

    @Test
    void errorsGoToStderrWithBhyvesExitCode() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc = BhyveMain.run(List.of("-s", "2,virtio-net,tap0,mac=00:00:00:00:00:00", "--kernel", "/k", "vm"),
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8),
                "Linux");
        assertThat(rc).isEqualTo(4);
        assertThat(out.size()).isZero();
        assertThat(err.toString(StandardCharsets.UTF_8)).startsWith("bhyve: Invalid MAC 00:00:00:00:00:00\n"
                + "bhyve: Device emulation initialization error: Invalid argument");
    }

    @Test
    void shellLinesQuoteWhatNeedsIt() {
        assertThat(Plan.shellLine(List.of("qemu", "-append", "console=ttyS0 quiet", "it's", "a,b=c")))
                .isEqualTo("qemu -append 'console=ttyS0 quiet' 'it'\\''s' a,b=c");
    }
}
