package org.prefork.security;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** What /proc says about one process, read as root by the test. */
final class Proc {

    private Proc() {
    }

    /** The fields of one line of /proc/PID/status, such as the four ids after {@code Uid:}. */
    static List<String> status(long pid, String key) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
            if (line.startsWith(key + ":")) {
                return List.of(line.substring(key.length() + 1).strip().split("\\s+"));
            }
        }
        throw new IOException("no " + key + " in /proc/" + pid + "/status");
    }

    /** True while the process exists and is not a zombie waiting to be reaped. */
    static boolean running(long pid) {
        try {
            String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
            return stat.charAt(stat.lastIndexOf(')') + 2) != 'Z';
        } catch (IOException e) {
            return false;
        }
    }

    /** The template: the child of {@code parent} that runs prefork_template.py. */
    static ProcessHandle template(long parent) {
        return ProcessHandle.of(parent).orElseThrow().children()
                .filter(p -> p.info().commandLine().orElse("").contains("prefork_template.py"))
                .findFirst().orElseThrow(() -> new AssertionError("no template under "
                        + parent));
    }

    /** The template's children that still run as root: parked (not yet bound) workers. */
    static List<Long> parkedWorkers(ProcessHandle template) {
        List<Long> parked = new ArrayList<>();
        template.children().forEach(child -> {
            try {
                if (status(child.pid(), "Uid").get(0).equals("0")) {
                    parked.add(child.pid());
                }
            } catch (IOException e) {
                // It exited while we looked.
            }
        });
        return parked;
    }

    static byte[] bytes(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }
}
