/// IEEE 754 binary16 (fp16) and bfloat16 conversions on bit patterns, so that files can be read and
/// written without hardware or library half-precision support.
///
/// Float to half rounds to nearest, ties to even, in both formats; values past the largest finite
/// half (65504, or halfway to the next power of two) become infinity; subnormals are produced and
/// read exactly; NaN stays NaN (quiet, with the top payload bits kept); signs (and -0) are kept.
public enum HalfFloat {
    /// fp16 bits of `value`, rounded to nearest even. Branch-free (every case is computed, then
    /// selected), so that loops over it vectorize.
    @inlinable
    public static func fp16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = (bits >> 16) & 0x8000
        let magnitude = bits & 0x7fff_ffff
        // Normal halves: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even;
        // a carry out of the mantissa correctly bumps the exponent.
        let rebiased = magnitude &- 0x3800_0000
        let normal = (rebiased &+ 0xfff &+ ((rebiased >> 13) & 1)) >> 13
        // Below 2^-14 the half is subnormal: in units of 2^-24 the value is below 1024, and adding 2^23
        // makes the float unit 1, so the addition itself rounds to the nearest even integer. 1024 is the
        // smallest normal's encoding, so rounding up out of the subnormals is right too.
        let subnormal = (Float(bitPattern: magnitude) * 0x1p24 + 0x1p23).bitPattern &- 0x4b00_0000
        // NaN: quiet bit plus the top payload bits. Values >= 65520 round to infinity.
        let nan = 0x7e00 | ((magnitude >> 13) & 0x3ff)
        var result = magnitude < 0x3880_0000 ? subnormal : normal
        result = magnitude >= 0x477f_f000 ? 0x7c00 : result
        result = magnitude > 0x7f80_0000 ? nan : result
        return UInt16(truncatingIfNeeded: sign | result)
    }

    /// The Float an fp16 bit pattern stands for (exact). Branch-free, like `fp16Bits`.
    @inlinable
    public static func float(fp16 bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1f
        let mantissa = UInt32(bits & 0x3ff)
        let normal = ((exponent &+ 112) << 23) | (mantissa << 13)
        let special = 0x7f80_0000 | (mantissa << 13)                              // infinity, NaN
        let subnormal = (Float(Int32(bitPattern: mantissa)) * 0x1p-24).bitPattern // exact: < 2^10 units
        var magnitude = exponent == 0 ? subnormal : normal
        magnitude = exponent == 0x1f ? special : magnitude
        return Float(bitPattern: sign | magnitude)
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
