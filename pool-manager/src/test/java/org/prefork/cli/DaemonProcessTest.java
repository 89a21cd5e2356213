package org.prefork.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;
import org.prefork.protocol.ControlClient;
import org.prefork.protocol.ExitStatus;
import org.prefork.protocol.Reply;
import org.prefork.testing.DaemonFixture;
import org.prefork.testing.Processes;
import org.prefork.testing.Sandbox;
import org.prefork.testing.TestUsers;

/** preforkd as operators run it: a process of its own, stopped by a signal. */
class DaemonProcessTest {

    private static Process startDaemon(Path config, Path log) throws IOException {
        List<String> command = new ArrayList<>(List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Dprefork.home=" + System.getProperty("prefork.home"),
                "-cp", System.getProperty("java.class.path"),
                Main.class.getName(), "daemon", "--config", config.toString()));
        return new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(log.toFile()).start();
    }

    @Test
    void sigtermDrainsAndLeavesNoProcessSocketOrFifo() throws Exception {
        try (Sandbox sandbox = new Sandbox("sigterm")) {
            Process daemon = startDaemon(testConfig(sandbox), sandbox.resolve("daemon.log"));
            Awaitility.await().atMost(Duration.ofSeconds(60))
                    .until(() -> parked(sandbox.resolve("control.sock")) == 3);

            new ProcessBuilder("kill", "-TERM", Long.toString(daemon.pid())).start().waitFor();

            assertThat(daemon.waitFor(30, TimeUnit.SECONDS)).isTrue();
            // The JVM reports death by SIGTERM after its shutdown hook has run.
            assertThat(daemon.exitValue()).isEqualTo(143);
            assertThat(Files.readString(sandbox.resolve("daemon.log"))).contains("stopped");
            assertThat(Processes.matching(sandbox.resolve("workers").toString())).isEmpty();
            assertThat(sandbox.resolve("control.sock")).doesNotExist();
            try (Stream<Path> left = Files.list(sandbox.resolve("workers"))) {
                assertThat(left.toList()).isEmpty();
            }
        }
    }

    @Test
    void badConfigExitsWith78AndNamesTheKey() throws Exception {
        assertConfigRefused("badconfig", "[pool]\nmin_idle = -1\n",
                "prefork: pool.min_idle = -1 is invalid: must be an integer from 0 to 256");
    }

    @Test
    void aSecondDaemonOnTheSameConfigRefusesAndLeavesTheFirstAlone() throws Exception {
        try (Sandbox sandbox = new Sandbox("twice")) {
            Path config = testConfig(sandbox);
            Process first = startDaemon(config, sandbox.resolve("first.log"));
            try {
                Awaitility.await().atMost(Duration.ofSeconds(60))
                        .until(() -> parked(sandbox.resolve("control.sock")) == 3);

                Process second = startDaemon(config, sandbox.resolve("second.log"));

                assertThat(second.waitFor(60, TimeUnit.SECONDS)).isTrue();
                assertThat(second.exitValue()).isEqualTo(1);
                assertThat(Files.readString(sandbox.resolve("second.log")))
                        .contains("prefork: cannot start: another daemon is already listening on "
                                + sandbox.resolve("control.sock"));
                // The first daemon still has its socket, its workers and their directories.
                assertThat(parked(sandbox.resolve("control.sock"))).isEqualTo(3);
                try (Stream<Path> dirs = Files.list(sandbox.resolve("workers"))) {
                    assertThat(dirs.filter(d -> d.getFileName().toString().startsWith("w")))
                            .hasSize(3);
                }
            } finally {
                first.destroy();
                first.waitFor(30, TimeUnit.SECONDS);
            }
        }
    }

    @Test
    void aPythonThatCannotRunIsAConfigurationError() throws Exception {
        assertConfigRefused("python", "[service]\npython = \"/nonexistent/python3\"\n",
                "prefork: service.python = \"/nonexistent/python3\" is invalid: there is no"
                        + " executable file there");
    }

    @Test
    void sighupReloadsThePoolAndPolicyWithoutDroppingASession() throws Exception {
        try (TestUsers users = TestUsers.requireRoot(); Sandbox sandbox = new Sandbox("hup")) {
            TestUsers.User alice = users.create("alice");
            Path config = testConfig(sandbox);
            Path socket = sandbox.resolve("control.sock");
            Process daemon = startDaemon(config, sandbox.resolve("daemon.log"));
            try {
                Awaitility.await().atMost(Duration.ofSeconds(60)).until(() -> parked(socket) == 3);
                try (ControlClient client = ControlClient.connect(socket)) {
                    Reply.Ok ok = (Reply.Ok) client.spawn(alice.name(), List.of("echo"), Map.of());
                    try (ControlClient.Session session = ControlClient.Session.open(ok)) {
                        Files.writeString(config, Files.readString(config)
                                .replace("min_idle = 3", "min_idle = 5")
                                .replace("control.sock", "elsewhere.sock"));
                        hangUp(daemon);
                        Awaitility.await().atMost(Duration.ofSeconds(30))
                                .until(() -> parked(socket) == 5);

                        Files.writeString(config, "[pool]\nmin_idle = -1\n");
                        hangUp(daemon);
                        Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> Files
                                .readString(sandbox.resolve("daemon.log")).contains("refused"));

                        session.stdin().write("still served\n".getBytes(StandardCharsets.UTF_8));
                        session.stdin().close();
                        assertThat(new String(session.stdout().readAllBytes(),
                                StandardCharsets.UTF_8)).isEqualTo("still served\n");
                    }
                    assertThat(client.readReply())
                            .isEqualTo(new Reply.Exit(ok.workerId(), ExitStatus.code(0)));
                }
                String log = Files.readString(sandbox.resolve("daemon.log"));
                assertThat(log).contains("reload: daemon.socket changed; it takes effect on"
                        + " restart").contains("configuration reloaded from " + config)
                        .contains("reload refused, the running configuration stays:"
                                + " pool.min_idle = -1 is invalid");
                assertThat(parked(socket)).isEqualTo(5);
            } finally {
                daemon.destroy();
                daemon.waitFor(30, TimeUnit.SECONDS);
            }
        }
    }

    @Test
    void theMetricsEndpointServesThePoolToPrometheus() throws Exception {
        try (Sandbox sandbox = new Sandbox("metrics")) {
            int port;
            try (java.net.ServerSocket probe = new java.net.ServerSocket(0, 1,
                    java.net.InetAddress.getByName("127.0.0.1"))) {
                port = probe.getLocalPort();
            }
            Path config = testConfig(sandbox);
            Files.writeString(config, Files.readString(config)
                    + "[metrics]\naddress = \"127.0.0.1:" + port + "\"\n");
            Process daemon = startDaemon(config, sandbox.resolve("daemon.log"));
            try {
                Awaitility.await().atMost(Duration.ofSeconds(60))
                        .until(() -> parked(sandbox.resolve("control.sock")) == 3);

                String scrape = java.net.http.HttpClient.newHttpClient().send(
                        java.net.http.HttpRequest.newBuilder(java.net.URI.create(
                                "http://127.0.0.1:" + port + "/metrics")).build(),
                        java.net.http.HttpResponse.BodyHandlers.ofString()).body();

                assertThat(scrape).contains("prefork_workers{state=\"parked\"} 3.0")
                        .contains("prefork_requests_waiting 0.0");
            } finally {
                daemon.destroy();
                daemon.waitFor(30, TimeUnit.SECONDS);
            }
        }
    }

    private static void hangUp(Process daemon) throws Exception {
        new ProcessBuilder("kill", "-HUP", Long.toString(daemon.pid())).start().waitFor();
    }

    private static Path testConfig(Sandbox sandbox) throws IOException {
        return Files.writeString(sandbox.resolve("prefork.toml"), DaemonFixture.config(sandbox,
                Map.of("service", "name = \"test\"", "pool", "min_idle = 3")));
    }

    /** Starts a daemon on {@code toml} and expects it to refuse with 78 and {@code message}. */
    private static void assertConfigRefused(String name, String toml, String message)
            throws Exception {
        try (Sandbox sandbox = new Sandbox(name)) {
            Path config = Files.writeString(sandbox.resolve("prefork.toml"), toml);

            Process daemon = startDaemon(config, sandbox.resolve("daemon.log"));

            assertThat(daemon.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(daemon.exitValue()).isEqualTo(78);
            assertThat(Files.readString(sandbox.resolve("daemon.log"), StandardCharsets.UTF_8))
                    .contains(message);
        }
    }

    private static int parked(Path socket) {
        try (ControlClient client = ControlClient.connect(socket)) {
            Reply.Status status = (Reply.Status) client.status();
            return Integer.parseInt(status.values().get("parked"));
        } catch (Exception e) {
            return -1;
        }
    }
}
