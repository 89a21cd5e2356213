package org.prefork.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;

import org.prefork.protocol.ControlClient;
import org.prefork.protocol.Reply;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "shutdown", description = "Ask the daemon to drain its sessions and stop.")
final class ShutdownCommand implements Callable<Integer> {

    @Option(names = "--socket", paramLabel = "PATH", defaultValue = Main.DEFAULT_SOCKET,
            description = "The daemon's control socket (default: ${DEFAULT-VALUE}).")
    private Path socket;

    @Override
    public Integer call() throws Exception {
        try (ControlClient client = ControlClient.connect(socket)) {
            Reply reply = client.shutdown();
            if (reply instanceof Reply.ShutdownOk) {
                return 0;
            }
            String why = reply instanceof Reply.Error error ? error.message() : reply.toString();
            System.err.println("prefork: " + why);
            return 77;
        } catch (java.io.IOException e) {
            System.err.println("prefork: cannot reach the daemon at " + socket + ": "
                    + e.getMessage());
            return 69;
        }
    }
}
