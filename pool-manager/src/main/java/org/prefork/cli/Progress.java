package org.prefork.cli;

/**
 * Progress for long commands: shown on a terminal, silent in a pipe, always on stderr so
 * that stdout carries only the result.
 */
final class Progress {

    private final boolean visible;

    Progress() {
        this(System.console() != null);
    }

    Progress(boolean visible) {
        this.visible = visible;
    }

    void step(String format, Object... args) {
        if (visible) {
            System.err.printf("prefork: " + format + "%n", args);
        }
    }
}
