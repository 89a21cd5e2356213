package org.prefork.testing;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** Runs real programs for tests and returns what they did. */
public final class Commands {

    public record Result(int status, String stdout, String stderr) {
    }

    private Commands() {
    }

    public static Result run(List<String> command, Path directory, Map<String, String> env,
            byte[] input) throws IOException, InterruptedException {
        ProcessBuilder builder = new ProcessBuilder(command);
        if (directory != null) {
            builder.directory(directory.toFile());
        }
        if (env != null) {
            builder.environment().clear();
            builder.environment().putAll(env);
        }
        Process process = builder.start();
        Thread feeder = new Thread(() -> feed(process, input));
        feeder.start();
        var stderr = new java.util.concurrent.CompletableFuture<String>();
        new Thread(() -> stderr.complete(readAll(process.getErrorStream()))).start();
        String stdout = readAll(process.getInputStream());
        if (!process.waitFor(120, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            throw new IOException("timed out: " + command);
        }
        feeder.join();
        return new Result(process.exitValue(), stdout, stderr.join());
    }

    public static Result run(List<String> command) throws IOException, InterruptedException {
        return run(command, null, null, new byte[0]);
    }

    /** Runs and insists on success; the failure message carries the program's output. */
    public static String check(List<String> command, Path directory, Map<String, String> env)
            throws IOException, InterruptedException {
        Result result = run(command, directory, env, new byte[0]);
        if (result.status() != 0) {
            throw new IOException(command + " failed with " + result.status() + ": "
                    + result.stdout() + result.stderr());
        }
        return result.stdout();
    }

    public static String check(String... command) throws IOException, InterruptedException {
        return check(List.of(command), null, null);
    }

    private static void feed(Process process, byte[] input) {
        try (var in = process.getOutputStream()) {
            in.write(input);
        } catch (IOException e) {
            // The program did not read all of its input; its status tells the test why.
        }
    }

    private static String readAll(java.io.InputStream in) {
        try {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }
}
