package org.prefork.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;
import org.prefork.protocol.ControlClient;
import org.prefork.protocol.Reply;
import org.prefork.testing.Processes;
import org.prefork.testing.Sandbox;

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
            Path config = sandbox.resolve("prefork.toml");
            Files.writeString(config, String.join("\n",
                    "[daemon]",
                    "socket = \"" + sandbox.resolve("control.sock") + "\"",
                    "worker_dir = \"" + sandbox.resolve("workers") + "\"",
                    "state_dir = \"" + sandbox.resolve("state") + "\"",
                    "[service]",
                    "name = \"test\"",
                    "[pool]",
                    "min_idle = 3",
                    ""));
            Process daemon = startDaemon(config, sandbox.resolve("daemon.log"));
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
        try (Sandbox sandbox = new Sandbox("badconfig")) {
            Path config = sandbox.resolve("prefork.toml");
            Files.writeString(config, "[pool]\nmin_idle = -1\n");

            Process daemon = startDaemon(config, sandbox.resolve("daemon.log"));

            assertThat(daemon.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(daemon.exitValue()).isEqualTo(78);
            assertThat(Files.readString(sandbox.resolve("daemon.log"), StandardCharsets.UTF_8))
                    .contains("prefork: pool.min_idle = -1 is invalid:"
                            + " must be an integer from 0 to 256");
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
