package org.prefork.cli;

import java.nio.file.Path;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code bin/prefork}: the subcommands that run on the JVM ({@code connect} is C). */
@Command(name = "prefork", mixinStandardHelpOptions = true, version = "prefork 0.1.0",
        description = "A pre-fork worker pool for bzr+ssh smart-server sessions.",
        footer = {"", "Per SSH connection: prefork connect [--socket PATH] [--user USER]"
                + " [-- ARGS...]", "(a small C program; see 'prefork connect --help')."},
        subcommands = {DaemonCommand.class, StatusCommand.class, ShutdownCommand.class,
                DemoCommand.class, CommandLine.HelpCommand.class})
public final class Main {

    static final String DEFAULT_SOCKET = "/run/prefork/control.sock";

    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }

    static CommandLine commandLine() {
        return new CommandLine(new Main()).setExecutionExceptionHandler(Main::failed);
    }

    /** An operator gets one line saying what failed, not a stack trace. */
    private static int failed(Exception e, CommandLine command, CommandLine.ParseResult parsed) {
        String message = e.getMessage() == null ? e.toString() : e.getMessage();
        command.getErr().println("prefork " + command.getCommandName() + ": " + message);
        return 1;
    }

    /** The checkout or install root, set by {@code bin/prefork}. */
    static Path home() {
        return Path.of(System.getProperty("prefork.home", ".")).toAbsolutePath().normalize();
    }
}
