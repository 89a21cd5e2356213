package org.prefork.protocol;

/**
 * How a worker ended: an exit code, or the signal that killed it. On the wire it is
 * {@code code:N} or {@code signal:N}.
 */
public record ExitStatus(boolean bySignal, int value) {

    public ExitStatus {
        if (value < 0 || value > 255) {
            throw new IllegalArgumentException("exit status out of range: " + value);
        }
    }

    public static ExitStatus code(int code) {
        return new ExitStatus(false, code);
    }

    public static ExitStatus signal(int signal) {
        return new ExitStatus(true, signal);
    }

    public static ExitStatus parse(String wire) throws ProtocolException {
        int colon = wire.indexOf(':');
        String kind = colon < 0 ? "" : wire.substring(0, colon);
        String number = wire.substring(colon + 1);
        if (!(kind.equals("code") || kind.equals("signal")) || !number.matches("[0-9]{1,3}")) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST, "bad exit status: " + wire);
        }
        int value = Integer.parseInt(number);
        if (value > 255) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST, "bad exit status: " + wire);
        }
        return new ExitStatus(kind.equals("signal"), value);
    }

    /** The status a shell would report: the code, or 128 plus the signal. */
    public int shellStatus() {
        return bySignal ? 128 + value : value;
    }

    public String toWire() {
        return (bySignal ? "signal:" : "code:") + value;
    }

    @Override
    public String toString() {
        return toWire();
    }
}
