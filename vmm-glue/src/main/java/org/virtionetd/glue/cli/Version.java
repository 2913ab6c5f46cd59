package org.virtionetd.glue.cli;

import picocli.CommandLine;

/** Version from the jar manifest when packaged, else the development marker. */
final class Version implements CommandLine.IVersionProvider {
    @Override
    public String[] getVersion() {
        String v = Version.class.getPackage().getImplementationVersion();
        return new String[] {"virtio-netd " + (v != null ? v : "0.1.0-dev")};
    }
}
