package org.prefork.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;

import org.prefork.protocol.ControlClient;
import org.prefork.protocol.Reply;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "status", description = "Print the pool's counts, one key=value a line.")
final class StatusCommand implements Callable<Integer> {

    @Option(names = "--socket", paramLabel = "PATH", defaultValue = Main.DEFAULT_SOCKET,
            description = "The daemon's control socket (default: ${DEFAULT-VALUE}).")
    private Path socket;

    @Override
    public Integer call() throws Exception {
        try (ControlClient client = ControlClient.connect(socket)) {
            Reply reply = client.status();
            if (reply instanceof Reply.Status status) {
                status.values().forEach((key, value) -> System.out.println(key + "=" + value));
                return 0;
            }
            System.err.println("prefork: unexpected reply: " + reply);
            return 1;
        } catch (java.io.IOException e) {
            System.err.println("prefork: cannot reach the daemon at " + socket + ": "
                    + e.getMessage());
            return 69;
        }
    }
}
