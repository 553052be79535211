package natlink;

import org.apache.spark.sql.api.java.UDF3;
import org.apache.spark.sql.expressions.UserDefinedFunction;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.unsafe.types.UTF8String;

/**
 * Spark SQL function {@code (message binary, inner_pad binary, outer_pad binary) -> string}:
 * HMAC-SHA256 of the message from RFC 2104 pads as 64 lowercase hex digits; NULL in, NULL out.
 * Register with {@code spark.udf.registerJavaFunction(name, "natlink.HmacSha256Hex", StringType())},
 * or apply {@link #function()} to columns (no registration, so usable in any session).
 */
public final class HmacSha256Hex implements UDF3<byte[], byte[], byte[], UTF8String> {
    private static final long serialVersionUID = 1L;
    /** The name plans show for the function. */
    public static final String NAME = "natlink_hmac_sha256_hex";

    /** The function as a deterministic Spark UDF (message, inner pad, outer pad) -> string. */
    public static UserDefinedFunction function() {
        return functions.udf(new HmacSha256Hex(), DataTypes.StringType).withName(NAME);
    }

    @Override
    public UTF8String call(byte[] message, byte[] innerPad, byte[] outerPad) {
        byte[] hex = HmacSha256.hexBytes(message, innerPad, outerPad);
        return hex == null ? null : UTF8String.fromBytes(hex);
    }
}
