package org.prefork.cli;

import java.util.concurrent.Callable;

import org.prefork.protocol.ControlClient;
import org.prefork.protocol.Reply;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

@Command(name = "shutdown", mixinStandardHelpOptions = true,
        description = "Ask the daemon to drain its sessions and stop.")
final class ShutdownCommand implements Callable<Integer> {

    /** Exit status when the daemon refuses (EX_NOPERM), as prefork connect uses it. */
    private static final int REFUSED = 77;

    @Mixin
    private ControlSocketOption socket;

    @Override
    public Integer call() throws Exception {
        Reply reply = socket.ask(ControlClient::shutdown);
        if (reply == null) {
            return ControlSocketOption.UNAVAILABLE;
        }
        if (reply instanceof Reply.ShutdownOk) {
            return 0;
        }
        String why = reply instanceof Reply.Error error ? error.message() : reply.toString();
        System.err.println("prefork: " + why);
        return REFUSED;
    }
}
