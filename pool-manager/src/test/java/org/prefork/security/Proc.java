package org.prefork.security;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** What /proc says about one process, read as root by the test. */
final class Proc {

    /** Memory regions larger than this are not the heap of a small Python process. */
    private static final long MAX_REGION_BYTES = 512L << 20;

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

    /**
     * Where the first copy of {@code needle} sits in the process's writable memory (heap,
     * anonymous and data mappings), or empty. Root may read any /proc/PID/mem.
     */
    static Optional<String> findInMemory(long pid, byte[] needle) throws IOException {
        Path proc = Path.of("/proc", Long.toString(pid));
        try (RandomAccessFile mem = new RandomAccessFile(proc.resolve("mem").toFile(), "r")) {
            for (String map : Files.readAllLines(proc.resolve("maps"))) {
                Optional<String> found = scanRegion(mem, map, needle);
                if (found.isPresent()) {
                    return found;
                }
            }
        }
        return Optional.empty();
    }

    private static Optional<String> scanRegion(RandomAccessFile mem, String map, byte[] needle)
            throws IOException {
        String[] fields = map.split("\\s+");
        String[] range = fields[0].split("-");
        long start = Long.parseUnsignedLong(range[0], 16);
        long end = Long.parseUnsignedLong(range[1], 16);
        if (!fields[1].startsWith("rw") || end - start > MAX_REGION_BYTES
                || map.contains("[vvar]") || map.contains("[vsyscall]")) {
            return Optional.empty();
        }
        byte[] region = new byte[(int) (end - start)];
        try {
            mem.seek(start);
            mem.readFully(region);
        } catch (IOException e) {
            return Optional.empty();
        }
        int at = indexOf(region, needle);
        return at < 0 ? Optional.empty()
                : Optional.of(String.format("0x%x (%s)", start + at, map.strip()));
    }

    private static int indexOf(byte[] haystack, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= haystack.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (haystack[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }

    static byte[] bytes(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }
}
