package org.prefork.protocol;

import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * The one codec of the control protocol, used by the daemon and the Java client alike.
 * Every parse is strict: what {@code PROTOCOL.md} does not allow is a
 * {@link ProtocolException} naming the problem.
 */
public final class ControlCodec {

    private static final int MAX_FIELDS = Limits.MAX_ARGS + 1;

    private ControlCodec() {
    }

    public static Request parseRequest(byte[] line) throws ProtocolException {
        String text = Fields.decode(line);
        String verb = text.split(" ", 2)[0];
        boolean isEnv = verb.equals("env");
        List<String> fields = Fields.split(text, isEnv ? 3 : MAX_FIELDS, isEnv);

        switch (verb) {
            case "spawn":
                return parseSpawn(fields);
            case "env":
                return parseEnv(fields);
            case "status":
                expectArity(fields, 1);
                return new Request.Status();
            case "shutdown":
                expectArity(fields, 1);
                return new Request.Shutdown();
            default:
                throw new ProtocolException(ErrorCode.BAD_REQUEST,
                        "unknown request '" + printable(verb) + "'");
        }
    }

    private static Request parseSpawn(List<String> fields) throws ProtocolException {
        if (fields.size() < 2) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST, "spawn needs a user name");
        }
        String user = fields.get(1);
        check(Limits.USER_NAME, user, "user name");
        return new Request.Spawn(user, fields.subList(2, fields.size()));
    }

    private static Request parseEnv(List<String> fields) throws ProtocolException {
        expectArity(fields, 3);
        check(Limits.ENV_NAME, fields.get(1), "environment variable name");
        return new Request.Env(fields.get(1), fields.get(2));
    }

    public static String encodeRequest(Request request) {
        if (request instanceof Request.Spawn spawn) {
            StringBuilder line = new StringBuilder("spawn ").append(spawn.user());
            spawn.args().forEach(arg -> line.append(' ').append(arg));
            return line.append('\n').toString();
        }
        if (request instanceof Request.Env env) {
            return "env " + env.name() + " " + env.value() + "\n";
        }
        return request instanceof Request.Status ? "status\n" : "shutdown\n";
    }

    public static String encodeReply(Reply reply) {
        return encodeReplyText(reply) + "\n";
    }

    private static String encodeReplyText(Reply reply) {
        if (reply instanceof Reply.Greeting greeting) {
            return "prefork " + greeting.version();
        }
        if (reply instanceof Reply.Ok ok) {
            return String.join(" ", "ok", ok.workerId(), Long.toString(ok.pid()),
                    ok.stdinFifo(), ok.stdoutFifo(), ok.stderrFifo());
        }
        if (reply instanceof Reply.Exit exit) {
            return "exit " + exit.workerId() + " " + exit.status().toWire();
        }
        if (reply instanceof Reply.Status status) {
            StringBuilder line = new StringBuilder("status");
            new TreeMap<>(status.values()).forEach(
                    (key, value) -> line.append(' ').append(key).append('=').append(value));
            return line.toString();
        }
        if (reply instanceof Reply.ShutdownOk) {
            return "ok shutdown";
        }
        Reply.Error error = (Reply.Error) reply;
        return "error " + error.code().wireName() + " " + oneLine(error.message());
    }

    public static Reply parseReply(byte[] line) throws ProtocolException {
        String text = Fields.decode(line);
        String verb = text.split(" ", 2)[0];
        boolean isError = verb.equals("error");
        List<String> fields = Fields.split(text, isError ? 3 : MAX_FIELDS, isError);

        switch (verb) {
            case "prefork":
                expectArity(fields, 2);
                return new Reply.Greeting(parseNumber(fields.get(1), "version"));
            case "ok":
                return parseOk(fields);
            case "exit":
                expectArity(fields, 3);
                check(Limits.WORKER_ID, fields.get(1), "worker id");
                return new Reply.Exit(fields.get(1), ExitStatus.parse(fields.get(2)));
            case "status":
                return parseStatus(fields);
            case "error":
                expectArity(fields, 3);
                ErrorCode code = ErrorCode.fromWire(fields.get(1)).orElseThrow(
                        () -> new ProtocolException(ErrorCode.BAD_REQUEST,
                                "unknown error code '" + printable(fields.get(1)) + "'"));
                return new Reply.Error(code, fields.get(2));
            default:
                throw new ProtocolException(ErrorCode.BAD_REQUEST,
                        "unknown reply '" + printable(verb) + "'");
        }
    }

    private static Reply parseOk(List<String> fields) throws ProtocolException {
        if (fields.size() == 2 && fields.get(1).equals("shutdown")) {
            return new Reply.ShutdownOk();
        }
        expectArity(fields, 6);
        check(Limits.WORKER_ID, fields.get(1), "worker id");
        long pid = parseNumber(fields.get(2), "pid");
        return new Reply.Ok(fields.get(1), pid, fields.get(3), fields.get(4), fields.get(5));
    }

    private static Reply parseStatus(List<String> fields) throws ProtocolException {
        Map<String, String> values = new TreeMap<>();
        for (String field : fields.subList(1, fields.size())) {
            int eq = field.indexOf('=');
            if (eq <= 0) {
                throw new ProtocolException(ErrorCode.BAD_REQUEST,
                        "status field without key=value: " + printable(field));
            }
            values.put(field.substring(0, eq), field.substring(eq + 1));
        }
        return new Reply.Status(values);
    }

    private static void expectArity(List<String> fields, int count) throws ProtocolException {
        if (fields.size() != count) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST, "'" + fields.get(0)
                    + "' takes " + (count - 1) + " field(s), got " + (fields.size() - 1));
        }
    }

    private static void check(Pattern rule, String value, String what)
            throws ProtocolException {
        if (!rule.matcher(value).matches()) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST, "bad " + what + " '"
                    + printable(value) + "': must match " + rule.pattern());
        }
    }

    private static int parseNumber(String field, String what) throws ProtocolException {
        if (!field.matches("[0-9]{1,9}")) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST,
                    "bad " + what + " '" + printable(field) + "'");
        }
        return Integer.parseInt(field);
    }

    /** Shortens a value quoted back in an error, so an error never echoes 1 KB of input. */
    static String printable(String value) {
        return value.length() <= 40 ? value : value.substring(0, 40) + "...";
    }

    /** Error messages must stay on one line whatever text produced them. */
    private static String oneLine(String message) {
        String flat = message.replaceAll("[\\x00-\\x1f\\x7f]", " ").strip();
        return flat.isEmpty() ? "(no message)" : flat;
    }
}
