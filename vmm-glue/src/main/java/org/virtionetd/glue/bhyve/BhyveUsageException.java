package org.virtionetd.glue.bhyve;

/**
 * A command line bhyve would refuse, with bhyve's own message where bhyve has one and the exit code bhyve uses:
 * {@link #USAGE} (1) after its usage text, {@link #EX_USAGE} (64, sysexits.h) from errx(EX_USAGE, ...), and
 * {@link #CONFIG} (4) for slot and device errors (pci_parse_slot, device initialisation).
 */
public final class BhyveUsageException extends Exception {
    public static final int USAGE = 1;
    public static final int EX_USAGE = 64;
    public static final int CONFIG = 4;

    private final int exitCode;

    public BhyveUsageException(int exitCode, String message) {
        super(message);
        this.exitCode = exitCode;
    }

    public int exitCode() {
        return exitCode;
    }
}
