package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.prefork.protocol.ControlClient;
import org.prefork.protocol.ErrorCode;
import org.prefork.protocol.ExitStatus;
import org.prefork.protocol.Reply;
import org.prefork.testing.Commands;
import org.prefork.testing.DaemonFixture;
import org.prefork.testing.TestUsers;

/**
 * Invariant attacked: malformed, oversized or injected control input gets an error
 * reply (code and message as PROTOCOL.md says), is never served, and the daemon keeps
 * serving everyone else.
 */
class ControlInputAttackTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String USER_RULE = "must match [a-z_][a-z0-9_-]{0,31}";
    private static final int TEN_MB = 10 * 1024 * 1024;

    private static TestUsers users;
    private static TestUsers.User alice;
    private static TestUsers.User bob;
    private static TestUsers.User mallory;
    private static DaemonFixture daemon;
    private static Path client;

    @BeforeAll
    static void startDaemon() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
        bob = users.create("bob");
        mallory = users.create("mallory");
        daemon = DaemonFixture.start("input", Map.of(
                "service", "name = \"test\"",
                "pool", "min_idle = 2\nmax_total = 6\nwait_timeout_ms = 2000"));
        client = daemon.stagedClient();
    }

    @AfterAll
    static void stopDaemonAndRemoveUsers() throws Exception {
        DaemonFixture.closeBoth(daemon, users);
    }

    @Test
    void injectedSecondSpawnForRootIsNeverRead() throws Exception {
        long handedOutBefore = daemon.stats().handedOut();
        try (ControlClient raw = daemon.client()) {
            raw.sendRaw(bytes("spawn " + alice.name() + " whoami\nspawn root whoami\n"));

            Reply.Ok ok = (Reply.Ok) raw.readReply();
            String whoami;
            try (ControlClient.Session session = ControlClient.Session.open(ok)) {
                session.stdin().close();
                whoami = new String(session.stdout().readAllBytes(), StandardCharsets.UTF_8);
            }

            assertThat(JSON.readTree(whoami).get("resuid").toString())
                    .isEqualTo("[" + alice.uid() + "," + alice.uid() + "," + alice.uid() + "]");
            assertThat(raw.readReply()).isEqualTo(new Reply.Exit(ok.workerId(),
                    ExitStatus.code(0)));
            assertThatThrownBy(raw::readReply).isInstanceOf(IOException.class)
                    .hasMessage("daemon closed the control connection");
        }
        assertThat(daemon.stats().handedOut()).isEqualTo(handedOutBefore + 1);
    }

    @Test
    void injectedSpawnForRootAfterARefusedLineIsRefused() throws Exception {
        try (ControlClient raw = daemon.client()) {
            raw.sendRaw(bytes("spawn pfnobody whoami\nspawn root whoami\n"));

            assertThat(raw.readReply()).isEqualTo(new Reply.Error(ErrorCode.UNKNOWN_USER,
                    "spawn refused: no user named 'pfnobody'"));
            assertThat(raw.readReply()).isEqualTo(new Reply.Error(ErrorCode.REFUSED,
                    "spawn refused for user 'root': root is never served"));
            assertThat(raw.status()).isInstanceOf(Reply.Status.class);
        }
    }

    static Stream<Arguments> malformedLines() {
        return Stream.of(
                Arguments.of("carriage return before a second spawn",
                        bytes("spawn alice\rspawn root"), "control byte 0x0d in line"),
                Arguments.of("NUL inside the user name",
                        bytes("spawn ali\0ce whoami"), "control byte 0x00 in line"),
                Arguments.of("DEL inside the user name",
                        bytes("spawn ali\u007fce whoami"), "control byte 0x7f in line"),
                Arguments.of("relative path as user name",
                        bytes("spawn ../etc whoami"), "bad user name '../etc': " + USER_RULE),
                Arguments.of("absolute path as user name", bytes("spawn /etc/passwd whoami"),
                        "bad user name '/etc/passwd': " + USER_RULE),
                Arguments.of("Cyrillic look-alike user name", bytes("spawn \u0430lice whoami"),
                        "bad user name '\u0430lice': " + USER_RULE),
                Arguments.of("path as environment name", bytes("env ../etc x"),
                        "bad environment variable name '../etc':"
                                + " must match [A-Z_][A-Z0-9_]{0,63}"),
                Arguments.of("truncated UTF-8 sequence", latin1("spawn \u00c3("),
                        "line is not valid UTF-8"),
                Arguments.of("overlong UTF-8 slash", latin1("spawn \u00c0\u00afetc"),
                        "line is not valid UTF-8"),
                Arguments.of("UTF-8 encoded surrogate",
                        latin1("spawn \u00ed\u00a0\u0080"),
                        "line is not valid UTF-8"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("malformedLines")
    void malformedLineGetsBadRequestAndTheConnectionStaysUsable(String attack, byte[] line,
            String message) throws Exception {
        List<String> replies = RawCaller.send(mallory, daemon.socket(),
                concat(line, bytes("\nstatus\n")));

        assertThat(replies).hasSize(3);
        assertThat(replies.get(0)).isEqualTo("prefork 1");
        assertThat(replies.get(1)).isEqualTo("error bad-request " + message);
        assertThat(replies.get(2)).startsWith("status ").contains(" template=up");
    }

    @Test
    void tenMegabytesWithoutNewlineNeitherBlocksOthersNorEndsTheConnection()
            throws Exception {
        try (ControlClient raw = daemon.client()) {
            byte[] huge = new byte[TEN_MB];
            Arrays.fill(huge, (byte) 'a');

            raw.sendRaw(huge);
            Commands.Result other = AsUser.client(bob, client, daemon.socket(), null, "whoami");
            raw.sendRaw(bytes("\nstatus\n"));

            assertThat(other.status()).as(other.stderr()).isZero();
            assertThat(raw.readReply()).isEqualTo(new Reply.Error(ErrorCode.LINE_TOO_LONG,
                    "line is longer than 8192 bytes"));
            assertThat(raw.readReply()).isInstanceOf(Reply.Status.class);
        }
    }

    @Test
    void everyAttackOnOneConnectionThenTheDaemonStillServesOthers() throws Exception {
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        List<String> expected = new ArrayList<>(List.of("prefork 1"));
        malformedLines().forEach(a -> {
            all.writeBytes(concat((byte[]) a.get()[1], bytes("\n")));
            expected.add("error bad-request " + a.get()[2]);
        });
        byte[] huge = new byte[TEN_MB];
        Arrays.fill(huge, (byte) 'x');
        all.writeBytes(concat(huge, bytes("\nspawn " + alice.name() + " whoami\nstatus\n")));
        expected.add("error line-too-long line is longer than 8192 bytes");
        expected.add("error refused spawn refused for user '" + alice.name() + "': caller uid "
                + mallory.uid() + " may only ask for a worker bound to itself");

        List<String> replies = RawCaller.send(mallory, daemon.socket(), all.toByteArray());

        assertThat(replies.subList(0, replies.size() - 1)).containsExactlyElementsOf(expected);
        assertThat(replies.get(replies.size() - 1)).startsWith("status ");
        for (TestUsers.User other : List.of(alice, bob)) {
            Commands.Result served = AsUser.client(other, client, daemon.socket(), null,
                    "exit", "0");
            assertThat(served.status()).as(other.name() + ": " + served.stderr()).isZero();
        }
    }

    @Test
    void idleConnectionFloodByOneUserDoesNotLockOutOthers() throws Exception {
        // More idle connections than the daemon's global cap (1024): no request, no byte.
        try (RawCaller.Held flood = RawCaller.hold(mallory, daemon.socket(), 2000)) {
            Commands.Result bobs = AsUser.client(bob, client, daemon.socket(), null, "exit", "0");

            Commands.Result mallorys = AsUser.client(mallory, client, daemon.socket(), null,
                    "exit", "0");

            assertThat(bobs.status()).as("bob while mallory holds 2000 idle connections: %s",
                    bobs.stderr()).isZero();
            // Greeted, then refused: the client reports pool-exhausted (75), not a
            // protocol error.
            assertThat(mallorys.status()).isEqualTo(75);
            assertThat(mallorys.stderr()).contains("too many open control connections for uid "
                    + mallory.uid() + " (limit 64)");
        }
    }

    private static byte[] bytes(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    /** {@code text} as ISO-8859-1: each char below 0x100 is one raw byte on the wire. */
    private static byte[] latin1(String text) {
        return text.getBytes(StandardCharsets.ISO_8859_1);
    }

    private static byte[] concat(byte[] first, byte[] second) {
        byte[] out = Arrays.copyOf(first, first.length + second.length);
        System.arraycopy(second, 0, out, first.length, second.length);
        return out;
    }
}
