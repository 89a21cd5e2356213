package org.prefork.protocol;

import java.util.Arrays;
import java.util.Optional;

/** The error codes of the control protocol and whether the connection survives them. */
public enum ErrorCode {
    BAD_REQUEST("bad-request", true),
    LINE_TOO_LONG("line-too-long", true),
    REFUSED("refused", true),
    UNKNOWN_USER("unknown-user", true),
    BAD_COMMAND("bad-command", true),
    POOL_EXHAUSTED("pool-exhausted", false),
    WORKER_FAILED("worker-failed", false),
    SHUTTING_DOWN("shutting-down", false),
    INTERNAL("internal", false);

    private final String wireName;
    private final boolean keepsConnection;

    ErrorCode(String wireName, boolean keepsConnection) {
        this.wireName = wireName;
        this.keepsConnection = keepsConnection;
    }

    public String wireName() {
        return wireName;
    }

    /** True when the daemon keeps reading requests on the connection after this error. */
    public boolean keepsConnection() {
        return keepsConnection;
    }

    public static Optional<ErrorCode> fromWire(String name) {
        return Arrays.stream(values()).filter(c -> c.wireName.equals(name)).findFirst();
    }
}
