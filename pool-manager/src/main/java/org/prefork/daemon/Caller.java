package org.prefork.daemon;

/** Who is on the other end of a control connection, as the kernel says (SO_PEERCRED). */
public record Caller(int uid, int gid, int pid) {

    public boolean isRoot() {
        return uid == 0;
    }
}
