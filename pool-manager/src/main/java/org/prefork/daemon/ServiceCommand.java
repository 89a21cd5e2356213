package org.prefork.daemon;

import java.util.ArrayList;
import java.util.List;

import org.prefork.protocol.ErrorCode;

/**
 * Checks the arguments a frontend passed for the service and puts them in the one form
 * the worker accepts. For Breezy that is what its client sends over SSH:
 * {@code [bzr|brz] serve --inet --directory=/ --allow-writes}.
 */
public final class ServiceCommand {

    private ServiceCommand() {
    }

    public static List<String> normalize(String service, List<String> args) throws Refusal {
        if (service.equals("test")) {
            // The built-in test service checks its own arguments; it serves no user data.
            if (args.isEmpty()) {
                throw bad("the test service needs a command: echo, exit N, kill SIG,"
                        + " stderr TEXT, sleep MS, whoami, read PATH or signal PID SIG");
            }
            return List.copyOf(args);
        }
        return normalizeBreezy(args);
    }

    private static List<String> normalizeBreezy(List<String> args) throws Refusal {
        List<String> rest = new ArrayList<>(args);
        if (!rest.isEmpty() && (rest.get(0).equals("bzr") || rest.get(0).equals("brz"))) {
            rest.remove(0);
        }
        if (rest.isEmpty() || !rest.get(0).equals("serve")) {
            throw bad("this host only serves Breezy smart-server sessions"
                    + " (bzr+ssh: 'brz serve --inet'), got '" + String.join(" ", args) + "'");
        }

        String directory = "/";
        boolean inet = false;
        boolean allowWrites = false;
        for (String option : rest.subList(1, rest.size())) {
            if (option.equals("--inet")) {
                inet = true;
            } else if (option.equals("--allow-writes")) {
                allowWrites = true;
            } else if (option.startsWith("--directory=")) {
                directory = checkDirectory(option.substring("--directory=".length()));
            } else {
                throw bad("'brz serve' option '" + option + "' is not allowed here;"
                        + " allowed: --inet, --directory=PATH, --allow-writes");
            }
        }
        if (!inet) {
            throw bad("'brz serve' needs --inet: sessions run over the SSH channel");
        }

        List<String> normal = new ArrayList<>(List.of("serve", "--inet",
                "--directory=" + directory));
        if (allowWrites) {
            normal.add("--allow-writes");
        }
        return List.copyOf(normal);
    }

    private static String checkDirectory(String directory) throws Refusal {
        boolean climbs = List.of(directory.split("/")).contains("..");
        if (!directory.startsWith("/") || climbs) {
            throw bad("--directory must be an absolute path without '..', got '"
                    + directory + "'");
        }
        return directory;
    }

    private static Refusal bad(String message) {
        return new Refusal(ErrorCode.BAD_COMMAND, message);
    }
}
