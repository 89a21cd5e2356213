package org.prefork.protocol;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** Strict decoding of one protocol line into fields. */
public final class Fields {

    private Fields() {
    }

    /** Decodes a line as strict UTF-8 and rejects every control byte. */
    public static String decode(byte[] line) throws ProtocolException {
        for (byte b : line) {
            if ((b >= 0 && b < 0x20) || b == 0x7f) {
                throw new ProtocolException(ErrorCode.BAD_REQUEST,
                        String.format("control byte 0x%02x in line", b));
            }
        }
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(line))
                    .toString();
        } catch (CharacterCodingException e) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST, "line is not valid UTF-8");
        }
    }

    /**
     * Splits a decoded line on single spaces into at most {@code maxFields} fields. When
     * {@code restIsLastField} is set, the last field takes the rest of the line, spaces
     * included (used for messages and environment values).
     */
    public static List<String> split(String line, int maxFields, boolean restIsLastField)
            throws ProtocolException {
        List<String> fields = new ArrayList<>();
        int start = 0;
        while (start <= line.length()) {
            boolean last = restIsLastField && fields.size() == maxFields - 1;
            int space = last ? -1 : line.indexOf(' ', start);
            int end = space < 0 ? line.length() : space;
            fields.add(checkField(line.substring(start, end), last));
            if (space < 0) {
                break;
            }
            if (fields.size() == maxFields) {
                throw new ProtocolException(ErrorCode.BAD_REQUEST,
                        "more than " + (maxFields - 1) + " fields after the verb");
            }
            start = space + 1;
        }
        return fields;
    }

    private static String checkField(String field, boolean mayHoldSpaces)
            throws ProtocolException {
        if (field.isEmpty() || (mayHoldSpaces && field.isBlank())) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST,
                    "empty field (two spaces in a row, or a leading or trailing space)");
        }
        if (field.getBytes(StandardCharsets.UTF_8).length > Limits.MAX_FIELD_BYTES) {
            throw new ProtocolException(ErrorCode.BAD_REQUEST,
                    "field longer than " + Limits.MAX_FIELD_BYTES + " bytes");
        }
        return field;
    }
}
