package org.prefork.protocol;

import java.util.regex.Pattern;

/** The limits both protocols enforce, as written in {@code PROTOCOL.md}. */
public final class Limits {

    /** Longest line, including its terminating {@code \n}. */
    public static final int MAX_LINE_BYTES = 8192;

    /** Longest single field. */
    public static final int MAX_FIELD_BYTES = 1024;

    /** Most fields after the verb. */
    public static final int MAX_ARGS = 32;

    /** Same rule as Debian's default {@code NAME_REGEX}, without the trailing {@code $}. */
    public static final Pattern USER_NAME = Pattern.compile("[a-z_][a-z0-9_-]{0,31}");

    public static final Pattern WORKER_ID = Pattern.compile("w[0-9]{1,12}");

    public static final Pattern ENV_NAME = Pattern.compile("[A-Z_][A-Z0-9_]{0,63}");

    public static final int PROTOCOL_VERSION = 1;

    private Limits() {
    }
}
