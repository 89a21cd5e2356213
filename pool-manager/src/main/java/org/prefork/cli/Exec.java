package org.prefork.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** Runs a helper program to completion and fails with its output when it fails. */
final class Exec {

    private Exec() {
    }

    static String run(List<String> command, Path directory, Map<String, String> env)
            throws IOException, InterruptedException {
        ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true);
        if (directory != null) {
            builder.directory(directory.toFile());
        }
        if (env != null) {
            builder.environment().clear();
            builder.environment().putAll(env);
        }
        Process process = builder.start();
        process.getOutputStream().close();
        String output = new String(process.getInputStream().readAllBytes(),
                StandardCharsets.UTF_8);
        int status = process.waitFor();
        if (status != 0) {
            throw new IOException(String.join(" ", command) + " failed with status " + status
                    + ": " + output.strip());
        }
        return output;
    }
}
