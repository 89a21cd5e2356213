package org.prefork.testing;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/** What /proc says about processes, for checks that nothing was left behind. */
public final class Processes {

    private Processes() {
    }

    /** Pids (with their state letter) whose command line contains {@code needle}. */
    public static List<String> matching(String needle) throws IOException {
        List<String> found = new ArrayList<>();
        try (Stream<Path> entries = Files.list(Path.of("/proc"))) {
            for (Path entry : entries.toList()) {
                String name = entry.getFileName().toString();
                if (!name.matches("[0-9]+") || name.equals(Long.toString(ProcessHandle
                        .current().pid()))) {
                    continue;
                }
                String cmdline = read(entry.resolve("cmdline")).replace('\0', ' ');
                if (cmdline.contains(needle)) {
                    found.add(name + " " + state(entry) + " " + cmdline.strip());
                }
            }
        }
        return found;
    }

    private static String state(Path proc) {
        String stat = read(proc.resolve("stat"));
        int close = stat.lastIndexOf(')');
        return close < 0 || close + 2 >= stat.length() ? "?" : stat.substring(close + 2,
                close + 3);
    }

    private static String read(Path file) {
        try {
            return new String(Files.readAllBytes(file), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }
}
