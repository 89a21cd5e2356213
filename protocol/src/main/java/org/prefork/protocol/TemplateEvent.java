package org.prefork.protocol;

import java.util.List;

/** An event the Python template reports to preforkd on its stdout. */
public sealed interface TemplateEvent {

    record Ready(long templatePid, String service, long warmMs) implements TemplateEvent {
    }

    record Parked(String workerId, long pid, String dir) implements TemplateEvent {
    }

    record ForkFailed(String workerId, String reason) implements TemplateEvent {
    }

    record Bound(String workerId) implements TemplateEvent {
    }

    record BindFailed(String workerId, String reason) implements TemplateEvent {
    }

    record Exited(String workerId, long pid, ExitStatus status) implements TemplateEvent {
    }

    /** Parses one event line; the template is trusted less than nothing, so this is strict. */
    static TemplateEvent parse(byte[] line) throws ProtocolException {
        String text = Fields.decode(line);
        String verb = text.split(" ", 2)[0];
        boolean hasReason = verb.equals("fork-failed") || verb.equals("bind-failed");
        List<String> f = Fields.split(text, hasReason ? 3 : 5, hasReason);

        switch (verb + "/" + f.size()) {
            case "ready/4":
                return new Ready(number(f.get(1)), f.get(2), number(f.get(3)));
            case "parked/4":
                return new Parked(id(f.get(1)), number(f.get(2)), f.get(3));
            case "fork-failed/3":
                return new ForkFailed(id(f.get(1)), f.get(2));
            case "bound/2":
                return new Bound(id(f.get(1)));
            case "bind-failed/3":
                return new BindFailed(id(f.get(1)), f.get(2));
            case "exited/4":
                return new Exited(id(f.get(1)), number(f.get(2)), ExitStatus.parse(f.get(3)));
            default:
                throw new ProtocolException(ErrorCode.BAD_REQUEST,
                        "unknown template event '" + ControlCodec.printable(text) + "'");
        }
    }

    private static String id(String field) throws ProtocolException {
        if (!Limits.WORKER_ID.matcher(field).matches()) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST, "bad worker id '"
                    + ControlCodec.printable(field) + "'");
        }
        return field;
    }

    private static long number(String field) throws ProtocolException {
        if (!field.matches("[0-9]{1,12}")) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST, "bad number '"
                    + ControlCodec.printable(field) + "'");
        }
        return Long.parseLong(field);
    }
}
