package org.virtionetd.glue.bhyve;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class BhyveCommandLineTest {
    static BhyveCommandLine.Parsed parse(String line) throws BhyveUsageException {
        return BhyveCommandLine.parse(Arrays.asList(line.trim().split("\\s+")));
    }

    static BhyveUsageException failure(String line) {
        try {
            parse(line);
        } catch (BhyveUsageException e) {
            return e;
        }
        throw new AssertionError("no error for: " + line);
    }

    @Test
    void bhyve8ExampleBecomesBhyvesConfigTree() throws Exception {
        // bhyve(8) EXAMPLES, the classic Linux guest line.
        BhyveCommandLine.Parsed p = parse("-A -H -P -s 0:0,hostbridge -s 1:0,lpc -s 2:0,virtio-net,tap0 "
                + "-s 3:0,virtio-blk,./userdisk.img -s 4:0,ahci-cd,./cdrom.iso -l com1,stdio -c 4 -m 1024M linuxguest");
        BhyveConfig c = p.config();
        assertThat(p.vmName()).isEqualTo("linuxguest");
        assertThat(c.get("name")).isEqualTo("linuxguest");
        assertThat(c.get("memory.size")).isEqualTo("1024M");
        assertThat(c.get("cpus")).isEqualTo("4");
        assertThat(c.get("x86.vmexit_on_hlt")).isEqualTo("true");
        assertThat(c.get("x86.vmexit_on_pause")).isEqualTo("true");
        assertThat(c.node("pci.0.0.0")).containsEntry("device", "hostbridge");
        assertThat(c.node("pci.0.1.0")).containsEntry("device", "lpc");
        assertThat(c.node("pci.0.2.0")).containsEntry("device", "virtio-net").containsEntry("backend", "tap0");
        assertThat(c.node("pci.0.3.0")).containsEntry("device", "virtio-blk").containsEntry("path", "./userdisk.img");
        // ahci-cd is an alias of ahci with port 0 a CD (pci_ahci.c pe_alias).
        assertThat(c.node("pci.0.4.0")).containsEntry("device", "ahci").containsEntry("port.0.type", "cd")
                .containsEntry("port.0.path", "./cdrom.iso");
        assertThat(c.get("lpc.com1.path")).isEqualTo("stdio");
        assertThat(c.pciFunctions()).extracting(PciAddress::slot).containsExactly(0, 1, 2, 3, 4);
        assertThat(p.options().dryRun()).isFalse();
    }

    @Test
    void groupedFlagsAndAttachedArgumentsAsGetopt() throws Exception {
        BhyveConfig c = parse("-AHPwu -c2 -m512M -s0,hostbridge -lcom1,stdio -Sx vm").config();
        assertThat(c.get("cpus")).isEqualTo("2");
        assertThat(c.get("memory.size")).isEqualTo("512M");
        assertThat(c.get("x86.strictmsr")).isEqualTo("false");
        assertThat(c.get("rtc.use_localtime")).isEqualTo("false");
        assertThat(c.get("memory.wired")).isEqualTo("true");
        assertThat(c.get("x86.x2apic")).isEqualTo("true");
        assertThat(c.get("pci.0.0.0.device")).isEqualTo("hostbridge");
        assertThat(c.get("lpc.com1.path")).isEqualTo("stdio");
    }

    @Test
    void dashOFormsAreTheSameDeviceAsDashS() throws Exception {
        BhyveConfig viaO = parse("-o pci.0.2.0.device=virtio-net -o pci.0.2.0.backend=tap0 "
                + "-o pci.0.2.0.mac=00:a0:98:01:02:03 -o pci.0.2.0.mtu=9000 vm").config();
        BhyveConfig viaS = parse("-s 2,virtio-net,tap0,mac=00:a0:98:01:02:03,mtu=9000 vm").config();
        assertThat(viaO.node("pci.0.2.0")).isEqualTo(viaS.node("pci.0.2.0"));
        // A later -o overrides what -s set, as in bhyve.
        BhyveConfig both = parse("-s 2,virtio-net,tap0 -o pci.0.2.0.backend=tap9 vm").config();
        assertThat(both.get("pci.0.2.0.backend")).isEqualTo("tap9");
    }

    @Test
    void nameMayComeFromDashO() throws Exception {
        assertThat(parse("-o name=fromconfig -s 0,hostbridge").vmName()).isEqualTo("fromconfig");
    }

    @Test
    void configFileWithDashK(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path f = dir.resolve("vm.conf");
        Files.writeString(f, "# bhyve_config(5)\nname=filevm\nmemory.size=1G\npci.0.2.0.device=virtio-net\n"
                + "pci.0.2.0.backend=tap3\nlpc.com1.path=stdio\n");
        BhyveCommandLine.Parsed p = parse("-k " + f);
        assertThat(p.vmName()).isEqualTo("filevm");
        assertThat(p.config().get("pci.0.2.0.backend")).isEqualTo("tap3");
        Files.writeString(f, "name=x\nnot an option\n");
        assertThat(failure("-k " + f).getMessage()).isEqualTo(f + " line 2: invalid config option 'not an option'");
    }

    @Test
    void virtioNetLegacyConfigWithoutBackend() throws Exception {
        // netbe_legacy_config: a first item with '=' means there is no backend.
        BhyveConfig c = parse("-s 2,virtio-net,mac=00:a0:98:00:00:01 vm").config();
        assertThat(c.node("pci.0.2.0")).doesNotContainKey("backend").containsEntry("mac", "00:a0:98:00:00:01");
        assertThat(parse("-s 2,virtio-net vm").config().node("pci.0.2.0")).containsOnlyKeys("device");
    }

    @Test
    void ahciPortsSyntax() throws Exception {
        BhyveConfig c = parse("-s 4,ahci,hd:/vm/disk.img,nocache,cd:/iso/x.iso vm").config();
        assertThat(c.node("pci.0.4.0")).containsEntry("port.0.type", "hd").containsEntry("port.0.path", "/vm/disk.img")
                .containsEntry("port.0.nocache", "true").containsEntry("port.1.type", "cd")
                .containsEntry("port.1.path", "/iso/x.iso");
    }

    @ParameterizedTest(name = "-s {0} is bus {1} slot {2} func {3}")
    @CsvSource({"'2,virtio-net', 0, 2, 0", "'2:1,virtio-net', 0, 2, 1", "'1:2:3,virtio-net', 1, 2, 3",
            "'0:31:7,virtio-net', 0, 31, 7", "' 5,virtio-net', 0, 5, 0", "'6x,virtio-net', 0, 6, 0"})
    void slotNumbersReadLikeSscanf(String opt, int bus, int slot, int func) throws Exception {
        BhyveConfig c = parse("-s " + opt.replace(" ", "") + " vm").config();
        assertThat(c.pciFunctions()).containsExactly(new PciAddress(bus, slot, func));
        int[] v = new int[3];
        assertThat(BhyveCommandLine.Sscanf.ints(" 5", 1, v)).isEqualTo(1);
        assertThat(v[0]).isEqualTo(5);
    }

    @ParameterizedTest(name = "{0} -> {2}")
    @CsvSource(delimiter = '|', value = {
        "-s 2 vm| 4| Invalid PCI slot info field \"2\"",
        "-s 32,virtio-net vm| 4| Invalid PCI slot info field \"32,virtio-net\"",
        "-s 2:8,virtio-net vm| 4| Invalid PCI slot info field \"2:8,virtio-net\"",
        "-s 256:0:0,virtio-net vm| 4| Invalid PCI slot info field \"256:0:0,virtio-net\"",
        "-s x,virtio-net vm| 4| Invalid PCI slot info field \"x,virtio-net\"",
        "-s -1,virtio-net vm| 4| Invalid PCI slot info field \"-1,virtio-net\"",
        "-s 2,virtio-nett vm| 4| pci slot 0:2:0: unknown device \"virtio-nett\"",
        "-s 2,virtio-net -s 0:2:0,virtio-blk,/d vm| 4| pci slot 0:2:0 already occupied!",
        "-o novalue vm| 64| invalid configuration option 'novalue'",
        "-o key= vm| 64| invalid configuration option 'key='",
        "-l com5,stdio vm| 64| invalid lpc device configuration 'com5,stdio'",
        "-l com1 vm| 64| invalid lpc device configuration 'com1'",
        "-l bootrom vm| 64| invalid lpc device configuration 'bootrom'",
        "-c 0 vm| 64| invalid cpu topology '0'",
        "-c cpus=2,sockets=x vm| 64| invalid cpu topology 'cpus=2,sockets=x'",
        "-c 2,4 vm| 64| invalid cpu topology '2,4'",
        "-c cpus=2,dies=2 vm| 64| invalid cpu topology 'cpus=2,dies=2'",
        "-z vm| 1| bhyve: illegal option -- z",
        "-H -s| 1| bhyve: option requires an argument -- s",
        "-H| 1| the VM name is missing (the last argument, or -o name=NAME)",
        "-H vm1 vm2| 1| one VM name expected last, got 2 operands: [vm1, vm2]",
        "--kernel| 1| option --kernel needs a value",
        "--wait 0 vm| 1| --wait 0 is not a positive number of seconds",
        "--frobnicate 1 vm| 1| unknown wrapper option --frobnicate"})
    void errorsAreBhyves(String line, int exit, String message) {
        BhyveUsageException e = failure(line);
        assertThat(e.getMessage()).isEqualTo(message);
        assertThat(e.exitCode()).isEqualTo(exit);
    }

    @Test
    void optionsStopAtTheFirstOperandAsBsdGetopt() {
        // "-c 2" after the VM name is two more operands, not an option: bhyve prints its usage.
        assertThat(failure("-m 1G vm -c 2").getMessage()).startsWith("one VM name expected last, got 3 operands");
    }

    @Test
    void wrapperOptionsAnywhereAndBhyveArgsKeptApart() throws Exception {
        BhyveCommandLine.Parsed p = BhyveCommandLine.parse(List.of("--dry-run", "-c", "1", "--kernel", "/k",
                "--append=console=ttyS0 x=y", "-s", "2,virtio-net,tap0", "--show-features", "--run-dir", "/tmp/r",
                "--wait", "30", "vm"));
        assertThat(p.options().dryRun()).isTrue();
        assertThat(p.options().showFeatures()).isTrue();
        assertThat(p.options().kernel()).isEqualTo(Path.of("/k"));
        assertThat(p.options().append()).isEqualTo("console=ttyS0 x=y");
        assertThat(p.options().runDir()).isEqualTo(Path.of("/tmp/r"));
        assertThat(p.options().waitSeconds()).isEqualTo(30);
        assertThat(p.bhyveArgs()).containsExactly("-c", "1", "-s", "2,virtio-net,tap0", "vm");
    }

    @Test
    void topologyAsBhyveComputesIt() throws Exception {
        assertThat(CpuTopology.of(parse("-c sockets=2,cores=2,threads=2 vm").config()))
                .isEqualTo(new CpuTopology(8, 2, 2, 2));
        assertThat(CpuTopology.of(parse("-c 4,sockets=1,cores=4 vm").config())).isEqualTo(new CpuTopology(4, 1, 4, 1));
        assertThat(CpuTopology.of(parse("vm").config())).isEqualTo(new CpuTopology(1, 1, 1, 1));
        BhyveConfig bad = parse("-c 3,sockets=2 vm").config();
        assertThatThrownBy(() -> CpuTopology.of(bad)).hasMessage(
                "Invalid CPU topology: 3 vCPUs but sockets 2 x cores 1 x threads 1 = 2");
    }

    @Test
    void helpNeedsNoVmName() throws Exception {
        assertThat(parse("-h").options().help()).isTrue();
        assertThat(parse("--help").options().help()).isTrue();
    }
}
