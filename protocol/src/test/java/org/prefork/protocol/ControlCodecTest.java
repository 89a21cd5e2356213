package org.prefork.protocol;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

class ControlCodecTest {

    private static Request parse(String line) throws ProtocolException {
        return ControlCodec.parseRequest(line.getBytes(StandardCharsets.UTF_8));
    }

    private static void assertRejected(byte[] line, ErrorCode code, String messagePart) {
        assertThatThrownBy(() -> ControlCodec.parseRequest(line))
                .isInstanceOf(ProtocolException.class)
                .hasMessageContaining(messagePart)
                .extracting(e -> ((ProtocolException) e).code()).isEqualTo(code);
    }

    private static void assertRejected(String line, ErrorCode code, String messagePart) {
        assertRejected(line.getBytes(StandardCharsets.UTF_8), code, messagePart);
    }

    @Test
    void parsesSpawnAsBreezyClientSendsIt() throws Exception {
        Request request = parse("spawn alice bzr serve --inet --directory=/ --allow-writes");

        assertThat(request).isEqualTo(new Request.Spawn("alice",
                List.of("bzr", "serve", "--inet", "--directory=/", "--allow-writes")));
    }

    @Test
    void parsesEnvValueWithSpaces() throws Exception {
        assertThat(parse("env BRZ_EMAIL Alice Example <alice@example.com>"))
                .isEqualTo(new Request.Env("BRZ_EMAIL", "Alice Example <alice@example.com>"));
    }

    @Test
    void newlineInjectionNeverYieldsASecondRequest() throws Exception {
        // A name carrying "\nspawn root" arrives as two lines; the first is a plain spawn
        // for a user that does not match the name rule once the attacker adds anything.
        byte[] wire = "spawn alice\nspawn root\n".getBytes(StandardCharsets.UTF_8);
        LineReader reader = new LineReader(new ByteArrayInputStream(wire));

        assertThat(ControlCodec.parseRequest(reader.readLine()))
                .isEqualTo(new Request.Spawn("alice", List.of()));
        assertThat(ControlCodec.parseRequest(reader.readLine()))
                .isEqualTo(new Request.Spawn("root", List.of()));
    }

    @Test
    void rejectsCarriageReturnAndNul() {
        assertRejected("spawn alice\rspawn root", ErrorCode.BAD_REQUEST, "control byte 0x0d");
        assertRejected("spawn ali\0ce", ErrorCode.BAD_REQUEST, "control byte 0x00");
    }

    @Test
    void rejectsInvalidUtf8() {
        byte[] line = {'s', 'p', 'a', 'w', 'n', ' ', (byte) 0xc3, (byte) 0x28};
        assertRejected(line, ErrorCode.BAD_REQUEST, "not valid UTF-8");
    }

    @Test
    void rejectsUserNamesOutsideTheRule() {
        assertRejected("spawn ../etc", ErrorCode.BAD_REQUEST, "bad user name '../etc'");
        assertRejected("spawn Alice", ErrorCode.BAD_REQUEST, "bad user name 'Alice'");
        assertRejected("spawn 1001", ErrorCode.BAD_REQUEST, "bad user name '1001'");
        assertRejected("spawn " + "a".repeat(33), ErrorCode.BAD_REQUEST, "bad user name");
        assertRejected("spawn", ErrorCode.BAD_REQUEST, "spawn needs a user name");
    }

    @Test
    void rejectsEmptyFieldsAndUnknownVerbs() {
        assertRejected("spawn  alice", ErrorCode.BAD_REQUEST, "empty field");
        assertRejected("spawn alice ", ErrorCode.BAD_REQUEST, "empty field");
        assertRejected("", ErrorCode.BAD_REQUEST, "empty field");
        assertRejected("fork alice", ErrorCode.BAD_REQUEST, "unknown request 'fork'");
        assertRejected("status now", ErrorCode.BAD_REQUEST, "'status' takes 0 field(s), got 1");
    }

    @Test
    void rejectsTooManyAndTooLongFields() {
        String many = "spawn alice" + " x".repeat(Limits.MAX_ARGS);
        assertRejected(many, ErrorCode.BAD_REQUEST, "more than 32 fields");
        assertRejected("spawn alice " + "x".repeat(1025), ErrorCode.BAD_REQUEST,
                "field longer than 1024 bytes");
    }

    @Test
    void rejectsBadEnvNames() {
        assertRejected("env ld_preload x", ErrorCode.BAD_REQUEST, "bad environment variable");
        assertRejected("env BRZ_EMAIL", ErrorCode.BAD_REQUEST, "'env' takes 2 field(s)");
    }

    @Test
    void tenMegabyteLineIsOneErrorAndTheNextLineStillParses() throws Exception {
        byte[] huge = new byte[10 * 1024 * 1024];
        java.util.Arrays.fill(huge, (byte) 'a');
        byte[] tail = "\nstatus\n".getBytes(StandardCharsets.UTF_8);
        byte[] wire = new byte[huge.length + tail.length];
        System.arraycopy(huge, 0, wire, 0, huge.length);
        System.arraycopy(tail, 0, wire, huge.length, tail.length);
        LineReader reader = new LineReader(new ByteArrayInputStream(wire));

        assertThatThrownBy(reader::readLine).isInstanceOf(ProtocolException.class)
                .hasMessage("line is longer than 8192 bytes")
                .extracting(e -> ((ProtocolException) e).code())
                .isEqualTo(ErrorCode.LINE_TOO_LONG);
        assertThat(ControlCodec.parseRequest(reader.readLine()))
                .isEqualTo(new Request.Status());
    }

    @Test
    void lineOfExactlyTheLimitIsAcceptedAndOneMoreIsNot() throws Exception {
        String fits = "x".repeat(Limits.MAX_LINE_BYTES - 1) + "\n";
        String over = "x".repeat(Limits.MAX_LINE_BYTES) + "\n";
        LineReader reader = new LineReader(new ByteArrayInputStream(
                (fits + over).getBytes(StandardCharsets.UTF_8)));

        assertThat(reader.readLine()).hasSize(Limits.MAX_LINE_BYTES - 1);
        assertThatThrownBy(reader::readLine).isInstanceOf(ProtocolException.class);
        assertThat(reader.readLine()).isNull();
    }

    @Test
    void repliesRoundTrip() throws Exception {
        List<Reply> replies = List.of(
                new Reply.Greeting(1),
                new Reply.Ok("w12", 4242, "/run/prefork/workers/w12/stdin",
                        "/run/prefork/workers/w12/stdout", "/run/prefork/workers/w12/stderr"),
                new Reply.Exit("w12", ExitStatus.code(3)),
                new Reply.Exit("w12", ExitStatus.signal(9)),
                new Reply.Status(Map.of("parked", "4", "template", "up")),
                new Reply.ShutdownOk(),
                new Reply.Error(ErrorCode.POOL_EXHAUSTED, "pool exhausted: no worker free"));

        for (Reply reply : replies) {
            String wire = ControlCodec.encodeReply(reply);
            assertThat(wire).endsWith("\n").doesNotContain("\r");
            byte[] line = wire.substring(0, wire.length() - 1).getBytes(StandardCharsets.UTF_8);
            assertThat(ControlCodec.parseReply(line)).isEqualTo(reply);
        }
    }

    @Test
    void errorMessagesAreFlattenedToOneLine() throws Exception {
        String wire = ControlCodec.encodeReply(
                new Reply.Error(ErrorCode.INTERNAL, "first\nsecond\r\0third"));

        assertThat(wire).isEqualTo("error internal first second  third\n");
    }

    @Test
    void exitStatusMapsToShellStatus() throws Exception {
        assertThat(ExitStatus.parse("code:0").shellStatus()).isZero();
        assertThat(ExitStatus.parse("code:3").shellStatus()).isEqualTo(3);
        assertThat(ExitStatus.parse("signal:9").shellStatus()).isEqualTo(137);
        assertThatThrownBy(() -> ExitStatus.parse("code:256"))
                .isInstanceOf(ProtocolException.class);
        assertThatThrownBy(() -> ExitStatus.parse("killed"))
                .isInstanceOf(ProtocolException.class);
    }

    @Test
    void templateEventsAreStrict() throws Exception {
        assertThat(TemplateCodec.parseEvent("parked w3 812 /run/prefork/workers/w3"
                .getBytes(StandardCharsets.UTF_8)))
                .isEqualTo(new TemplateEvent.Parked("w3", 812, "/run/prefork/workers/w3"));
        assertThat(TemplateCodec.parseEvent("bind-failed w3 setuid verification failed"
                .getBytes(StandardCharsets.UTF_8)))
                .isEqualTo(new TemplateEvent.BindFailed("w3", "setuid verification failed"));
        assertThatThrownBy(() -> TemplateCodec.parseEvent(
                "parked w3; 812 /x".getBytes(StandardCharsets.UTF_8)))
                .hasMessageContaining("bad worker id");
        assertThatThrownBy(() -> TemplateCodec.bind("w1", "{\"a\":\n1}"))
                .isInstanceOf(IllegalArgumentException.class);
    }
}
