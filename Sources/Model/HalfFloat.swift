/// IEEE 754 binary16 (fp16) and bfloat16 conversions on bit patterns, so that files can be read and
/// written without hardware or library half-precision support.
///
/// Float to half rounds to nearest, ties to even, in both formats; values past the largest finite
/// half (65504, or halfway to the next power of two) become infinity; subnormals are produced and
/// read exactly; NaN stays NaN (quiet, with the top payload bits kept); signs (and -0) are kept.
public enum HalfFloat {
    /// fp16 bits of `value`, rounded to nearest even.
    @inlinable
    public static func fp16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
        let magnitude = bits & 0x7fff_ffff
        if magnitude > 0x7f80_0000 {                         // NaN: quiet bit plus payload top bits
            return sign | 0x7e00 | UInt16(truncatingIfNeeded: (magnitude >> 13) & 0x3ff)
        }
        if magnitude >= 0x477f_f000 { return sign | 0x7c00 }  // >= 65520 rounds to infinity
        if magnitude < 0x3880_0000 {                         // below 2^-14: subnormal half (or zero)
            // In units of 2^-24 the value is below 1024; scaling by a power of two is exact, and
            // rounding to an integer is the half's rounding. 1024 is the smallest normal's encoding.
            let units = (Float(bitPattern: magnitude) * 16_777_216).rounded(.toNearestOrEven)
            return sign | UInt16(units)
        }
        let rebiased = magnitude &- 0x3800_0000             // exponent bias 127 -> 15
        let lsb = (rebiased >> 13) & 1
        return sign | UInt16(truncatingIfNeeded: (rebiased &+ 0xfff &+ lsb) >> 13)
    }

    /// The Float an fp16 bit pattern stands for (exact).
    @inlinable
    public static func float(fp16 bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1f
        let mantissa = UInt32(bits & 0x3ff)
        if exponent == 0x1f { return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13)) }
        if exponent == 0 {
            let magnitude = Float(mantissa) * 0x1p-24
            return Float(bitPattern: sign | magnitude.bitPattern)
        }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// bfloat16 bits of `value`, rounded to nearest even.
    @inlinable
    public static func bf16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if bits & 0x7fff_ffff > 0x7f80_0000 { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let lsb = (bits >> 16) & 1
        return UInt16(truncatingIfNeeded: (bits &+ 0x7fff &+ lsb) >> 16)
    }

    /// The Float a bfloat16 bit pattern stands for (exact).
    @inlinable
    public static func float(bf16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// `value` rounded to the nearest fp16 (what a write and read back gives).
    public static func roundedToFP16(_ value: Float) -> Float { float(fp16: fp16Bits(value)) }

    /// `value` rounded to the nearest bfloat16.
    public static func roundedToBF16(_ value: Float) -> Float { float(bf16: bf16Bits(value)) }
}
