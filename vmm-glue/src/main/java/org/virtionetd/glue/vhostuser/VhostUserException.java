package org.virtionetd.glue.vhostuser;

/**
 * A vhost-user message that the back-end cannot take. {@link #kind()} says what follows: a malformed message
 * ends the connection (the stream cannot be trusted any more), a refused one gets an error reply.
 */
public final class VhostUserException extends Exception {
    private static final long serialVersionUID = 1L;

    /** What broke. */
    public enum Kind {
        /** Wrong size, wrong number of fds, bad version, truncated: the connection is closed. */
        MALFORMED,
        /** A well-formed request with a value we refuse (bad queue, memory, state): error reply, keep going. */
        REFUSED,
        /** A request we do not implement: error reply if one was asked for, logged once per request number. */
        UNSUPPORTED
    }

    private final Kind kind;

    public VhostUserException(Kind kind, String message) {
        super(message);
        this.kind = kind;
    }

    public VhostUserException(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }

    static VhostUserException malformed(String message) {
        return new VhostUserException(Kind.MALFORMED, message);
    }

    static VhostUserException refused(String message) {
        return new VhostUserException(Kind.REFUSED, message);
    }

    static VhostUserException refused(String message, Throwable cause) {
        return new VhostUserException(Kind.REFUSED, message, cause);
    }
}
