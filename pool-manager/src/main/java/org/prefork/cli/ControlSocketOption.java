package org.prefork.cli;

import java.io.IOException;
import java.nio.file.Path;

import org.prefork.protocol.ControlClient;
import org.prefork.protocol.ProtocolException;
import org.prefork.protocol.Reply;
import picocli.CommandLine.Option;

/** The {@code --socket} option of the commands that talk to a running daemon. */
final class ControlSocketOption {

    /** Exit status when the daemon cannot be reached (EX_UNAVAILABLE). */
    static final int UNAVAILABLE = 69;

    @Option(names = "--socket", paramLabel = "PATH", defaultValue = Main.DEFAULT_SOCKET,
            description = "The daemon's control socket (default: ${DEFAULT-VALUE}).")
    private Path socket;

    interface Exchange {
        Reply with(ControlClient client) throws IOException, ProtocolException;
    }

    /** Sends one request; null (after saying why on stderr) when the daemon is out of reach. */
    Reply ask(Exchange exchange) throws ProtocolException {
        try (ControlClient client = ControlClient.connect(socket)) {
            return exchange.with(client);
        } catch (IOException e) {
            System.err.println("prefork: cannot reach the daemon at " + socket + ": "
                    + e.getMessage());
            return null;
        }
    }
}
