package org.prefork.daemon;

import java.util.LinkedHashMap;
import java.util.Map;

/** A consistent snapshot of the pool's counts, taken under its lock. */
public record PoolStats(int parked, int forking, int bound, int waiting, long handedOut,
                        long exhausted, String template) {

    public int total() {
        return parked + forking + bound;
    }

    /** The fields of the control protocol's {@code status} reply. */
    public Map<String, String> toStatusFields() {
        Map<String, String> fields = new LinkedHashMap<>();
        fields.put("parked", Integer.toString(parked));
        fields.put("forking", Integer.toString(forking));
        fields.put("bound", Integer.toString(bound));
        fields.put("waiting", Integer.toString(waiting));
        fields.put("total", Integer.toString(total()));
        fields.put("handed_out", Long.toString(handedOut));
        fields.put("exhausted", Long.toString(exhausted));
        fields.put("template", template);
        return fields;
    }

    @Override
    public String toString() {
        return "total=" + total() + " parked=" + parked + " forking=" + forking
                + " bound=" + bound + " waiting=" + waiting + " template=" + template;
    }
}
