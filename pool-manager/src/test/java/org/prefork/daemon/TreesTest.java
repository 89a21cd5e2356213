package org.prefork.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TreesTest {

    @TempDir
    Path scratch;

    @Test
    void removesATreeWithoutFollowingTheLinksAUserLeftInIt() throws Exception {
        Path outside = Files.createDirectories(scratch.resolve("outside"));
        Path victim = Files.writeString(outside.resolve("victim"), "keep me\n");
        Path tree = Files.createDirectories(scratch.resolve("w7/a"));
        Files.createSymbolicLink(tree.resolve("escape"), outside);
        Files.createSymbolicLink(scratch.resolve("w7/victim"), victim);

        Trees.remove(scratch.resolve("w7"));

        assertThat(scratch.resolve("w7")).doesNotExist();
        assertThat(victim).hasContent("keep me");
    }

    @Test
    void saysWhatItCouldNotRemove() {
        assertThatThrownBy(() -> Trees.remove(Path.of("/proc/self")))
                .isInstanceOf(IOException.class).hasMessageStartingWith("cannot remove");
    }
}
