package org.prefork.protocol;

/** Encodes preforkd's commands to the template and parses the template's events. */
public final class TemplateCodec {

    private TemplateCodec() {
    }

    public static TemplateEvent parseEvent(byte[] line) throws ProtocolException {
        return TemplateEvent.parse(line);
    }

    public static String fork(String workerId) {
        return "fork " + workerId + "\n";
    }

    /** The binding is one line of compact JSON; it may hold spaces inside strings. */
    public static String bind(String workerId, String bindingJson) {
        if (bindingJson.indexOf('\n') >= 0 || bindingJson.indexOf('\r') >= 0) {
            throw new IllegalArgumentException("binding JSON must be a single line");
        }
        return "bind " + workerId + " " + bindingJson + "\n";
    }

    public static String stop(String workerId) {
        return "stop " + workerId + "\n";
    }
}
