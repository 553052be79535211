package natlink;

import org.apache.spark.sql.api.java.UDF3;
import org.apache.spark.unsafe.types.UTF8String;

/**
 * Spark SQL function {@code (message binary, inner_pad binary, outer_pad binary) -> string}:
 * HMAC-SHA256 of the message from RFC 2104 pads as 64 lowercase hex digits; NULL in, NULL out.
 * Register with {@code spark.udf.registerJavaFunction(name, "natlink.HmacSha256Hex", StringType())}.
 */
public final class HmacSha256Hex implements UDF3<byte[], byte[], byte[], UTF8String> {
    private static final long serialVersionUID = 1L;

    @Override
    public UTF8String call(byte[] message, byte[] innerPad, byte[] outerPad) {
        byte[] hex = HmacSha256.hexBytes(message, innerPad, outerPad);
        return hex == null ? null : UTF8String.fromBytes(hex);
    }
}
