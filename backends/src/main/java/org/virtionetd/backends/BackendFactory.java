package org.virtionetd.backends;

import org.virtionetd.virtio.net.NetBackend;

import java.io.IOException;
import java.util.List;

/** A backend named on the command line, ready to open one {@link NetBackend} per queue pair. */
public interface BackendFactory {
    List<NetBackend> open(int queuePairs) throws IOException;

    /** The same backend handing no offload to the host side (the {@code --no-offload} flag). */
    BackendFactory withoutOffload();
}
