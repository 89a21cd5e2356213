package org.prefork.cli;

import java.util.TreeMap;
import java.util.concurrent.Callable;

import org.prefork.protocol.ControlClient;
import org.prefork.protocol.Reply;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

@Command(name = "status", mixinStandardHelpOptions = true,
        description = "Print the pool's counts, one key=value a line.")
final class StatusCommand implements Callable<Integer> {

    @Mixin
    private ControlSocketOption socket;

    @Override
    public Integer call() throws Exception {
        Reply reply = socket.ask(ControlClient::status);
        if (reply == null) {
            return ControlSocketOption.UNAVAILABLE;
        }
        if (!(reply instanceof Reply.Status status)) {
            System.err.println("prefork: unexpected reply: " + reply);
            return 1;
        }
        new TreeMap<>(status.values()).forEach((key, value) ->
                System.out.println(key + "=" + value));
        return 0;
    }
}
