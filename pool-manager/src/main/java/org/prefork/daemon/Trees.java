package org.prefork.daemon;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Removes directory trees that users may have written into. A bound worker's user owns
 * its directory, so by the time root removes it, any part of the tree may have been
 * swapped for a symlink to somewhere root would rather not delete. Java's path-based
 * walk follows such a link half-way down; GNU rm walks with openat and unlinkat, never
 * follows a link, and copes with any depth.
 */
public final class Trees {

    private static final long TIMEOUT_SECONDS = 120;

    private Trees() {
    }

    public static void remove(Path tree) throws IOException {
        Process rm = new ProcessBuilder(List.of("/bin/rm", "-rf", "--one-file-system", "--",
                tree.toString())).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        rm.getOutputStream().close();
        try {
            String errors = new String(rm.getErrorStream().readAllBytes(),
                    StandardCharsets.UTF_8).strip();
            if (!rm.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                rm.destroyForcibly();
                throw new IOException("removing " + tree + " took over " + TIMEOUT_SECONDS
                        + " s");
            }
            if (rm.exitValue() != 0) {
                throw new IOException("cannot remove " + tree + ": " + errors);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while removing " + tree, e);
        }
    }
}
