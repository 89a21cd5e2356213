package org.prefork.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * A temporary directory other users can pass through (mode 0755). JUnit's own temporary
 * directories are private to root, and workers bound to test users must reach their FIFOs.
 */
public final class Sandbox implements AutoCloseable {

    private final Path root;

    public Sandbox(String name) throws IOException {
        root = Files.createTempDirectory("prefork-" + name + "-");
        Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rwxr-xr-x"));
    }

    public Path root() {
        return root;
    }

    public Path resolve(String relative) {
        return root.resolve(relative);
    }

    @Override
    public void close() throws IOException {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(root)) {
            for (Path path : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(path);
            }
        }
    }
}
