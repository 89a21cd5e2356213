package org.prefork.daemon;

import org.prefork.protocol.ErrorCode;

/** A request the daemon will not serve; the message is sent to the caller as it is. */
public class Refusal extends Exception {

    private static final long serialVersionUID = 1L;

    private final ErrorCode code;

    public Refusal(ErrorCode code, String message) {
        super(message);
        this.code = code;
    }

    public ErrorCode code() {
        return code;
    }
}
