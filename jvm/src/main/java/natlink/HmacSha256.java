package natlink;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;

/**
 * HMAC-SHA256 from precomputed RFC 2104 pads, as 64 lowercase hex digits (ASCII bytes).
 *
 * <p>The result is SHA-256(outerPad || SHA-256(innerPad || message)), exactly what natlink's
 * native Spark composition computes for any pad lengths. The SHA-256 states after absorbing each
 * pad are computed once per distinct pad pair and thread, and cloned per message: a message of
 * up to 55 bytes then costs two compression rounds.
 *
 * <p>No method here logs or puts message, pad or digest bytes into an exception message.
 */
public final class HmacSha256 {
    /** Pad pairs remembered per thread (a power of two); one tokenise pass uses ~20 purposes. */
    static final int SLOTS = 64;

    private static final byte[] HEX_PAIRS = new byte[512];
    private static final VarHandle LONGS = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);
    private static final ThreadLocal<States> STATES = ThreadLocal.withInitial(States::new);

    static {
        byte[] digits = "0123456789abcdef".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        for (int b = 0; b < 256; b++) {
            HEX_PAIRS[2 * b] = digits[b >>> 4];
            HEX_PAIRS[2 * b + 1] = digits[b & 0x0f];
        }
    }

    private HmacSha256() {}

    /** 64 lowercase hex digits as ASCII bytes; null when any argument is null. */
    public static byte[] hexBytes(byte[] message, byte[] innerPad, byte[] outerPad) {
        if (message == null || innerPad == null || outerPad == null) {
            return null;
        }
        States s = STATES.get();
        int slot = s.find(innerPad, outerPad);
        try {
            MessageDigest inner = (MessageDigest) s.inner[slot].clone();
            inner.update(message);
            inner.digest(s.digest, 0, 32);
            MessageDigest outer = (MessageDigest) s.outer[slot].clone();
            outer.update(s.digest, 0, 32);
            outer.digest(s.digest, 0, 32);
        } catch (CloneNotSupportedException | java.security.DigestException e) {
            throw new IllegalStateException("natlink HMAC-SHA256: SHA-256 digest unusable (" + e.getClass().getSimpleName() + ")");
        }
        byte[] out = new byte[64];
        byte[] d = s.digest;
        for (int i = 0; i < 32; i++) {
            int b = (d[i] & 0xff) << 1;
            out[2 * i] = HEX_PAIRS[b];
            out[2 * i + 1] = HEX_PAIRS[b + 1];
        }
        Arrays.fill(d, (byte) 0);
        return out;
    }

    /** The same as a Java string (for tests and callers outside Spark). */
    public static String hex(byte[] message, byte[] innerPad, byte[] outerPad) {
        byte[] out = hexBytes(message, innerPad, outerPad);
        return out == null ? null : new String(out, java.nio.charset.StandardCharsets.US_ASCII);
    }

    /** Forget this thread's cached pad states. */
    public static void clearThreadCache() {
        STATES.remove();
    }

    static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("natlink HMAC-SHA256: no SHA-256 provider", e);
        }
    }

    /** Per-thread cache: pad pair -> SHA-256 states after each pad (direct-mapped). */
    private static final class States {
        final byte[][] innerPads = new byte[SLOTS][];
        final byte[][] outerPads = new byte[SLOTS][];
        final MessageDigest[] inner = new MessageDigest[SLOTS];
        final MessageDigest[] outer = new MessageDigest[SLOTS];
        final byte[] digest = new byte[32];

        int find(byte[] innerPad, byte[] outerPad) {
            int slot = slot(innerPad, outerPad);
            if (!Arrays.equals(innerPads[slot], innerPad) || !Arrays.equals(outerPads[slot], outerPad)) {
                MessageDigest i = sha256();
                i.update(innerPad);
                MessageDigest o = sha256();
                o.update(outerPad);
                innerPads[slot] = innerPad.clone();
                outerPads[slot] = outerPad.clone();
                inner[slot] = i;
                outer[slot] = o;
            }
            return slot;
        }

        private static int slot(byte[] innerPad, byte[] outerPad) {
            long x;
            if (innerPad.length >= 8 && outerPad.length >= 8) {
                long a = (long) LONGS.get(innerPad, 0);
                long b = (long) LONGS.get(outerPad, outerPad.length - 8);
                x = a ^ Long.rotateLeft(b, 31) ^ ((long) innerPad.length << 40);
            } else {
                x = 31L * Arrays.hashCode(innerPad) + Arrays.hashCode(outerPad);
            }
            x *= 0x9E3779B97F4A7C15L;
            return (int) (x >>> (64 - Integer.numberOfTrailingZeros(SLOTS)));
        }
    }
}
