import Testing
@testable import Model

@Suite("fp16 and bf16 conversions")
struct HalfFloatTests {
    @Test func fp16KnownBitPatterns() {
        let cases: [(Float, UInt16)] = [
            (1.0, 0x3c00), (-2.0, 0xc000), (0.5, 0x3800), (65504, 0x7bff), (-65504, 0xfbff),
            (0.0, 0x0000), (-0.0, 0x8000), (0.1, 0x2e66),
            (Float.infinity, 0x7c00), (-Float.infinity, 0xfc00),
            (0x1p-14, 0x0400),                 // smallest normal
            (0x1p-24, 0x0001),                 // smallest subnormal
            (1023 * 0x1p-24, 0x03ff),          // largest subnormal
            (0x1p-25, 0x0000),                 // half the smallest subnormal: tie, to even (0)
            (3 * 0x1p-26, 0x0001),             // 0.75 units rounds up
            (3 * 0x1p-25, 0x0002),             // 1.5 units: tie, to even (2)
            (5 * 0x1p-25, 0x0002),             // 2.5 units: tie, to even (2)
            (1023.5 * 0x1p-24, 0x0400),        // rounds up out of the subnormals into the smallest normal
            (1 + 0x1p-11, 0x3c00),             // tie between 0x3c00 and 0x3c01: even
            (1 + 3 * 0x1p-11, 0x3c02),         // tie between 0x3c01 and 0x3c02: even
            (1 + 0x1p-11 + 0x1p-20, 0x3c01),   // just above the tie
            (65519, 0x7bff),                   // below the tie with infinity
            (65520, 0x7c00),                   // tie between 65504 and 65536: even is infinity
            (1e10, 0x7c00), (1e-10, 0x0000),
        ]
        for (value, bits) in cases {
            #expect(HalfFloat.fp16Bits(value) == bits, "fp16(\(value))")
        }
    }

    @Test func fp16Decoding() {
        #expect(HalfFloat.float(fp16: 0x3c00) == 1)
        #expect(HalfFloat.float(fp16: 0xc000) == -2)
        #expect(HalfFloat.float(fp16: 0x7bff) == 65504)
        #expect(HalfFloat.float(fp16: 0x0001) == 0x1p-24)
        #expect(HalfFloat.float(fp16: 0x03ff) == 1023 * 0x1p-24)
        #expect(HalfFloat.float(fp16: 0x7c00) == .infinity)
        #expect(HalfFloat.float(fp16: 0xfc00) == -.infinity)
        #expect(HalfFloat.float(fp16: 0x7e00).isNaN)
        #expect(HalfFloat.float(fp16: 0x8000).bitPattern == (-0.0 as Float).bitPattern)
    }

    @Test func nanStaysQuietNaN() {
        let bits = HalfFloat.fp16Bits(.nan)
        #expect(bits & 0x7c00 == 0x7c00 && bits & 0x0200 != 0)
        #expect(HalfFloat.fp16Bits(-Float.nan) & 0x8000 != 0)
        #expect(HalfFloat.fp16Bits(Float(bitPattern: 0x7f80_0001)) & 0x3ff != 0, "a signalling NaN must not become infinity")
        #expect(HalfFloat.float(bf16: HalfFloat.bf16Bits(.nan)).isNaN)
        #expect(HalfFloat.float(bf16: HalfFloat.bf16Bits(Float(bitPattern: 0x7f80_0001))).isNaN)
    }

    @Test func everyFiniteFP16RoundTrips() {
        let failures = (UInt16.min...UInt16.max).filter { bits in
            (bits & 0x7c00 != 0x7c00 || bits & 0x3ff == 0) && HalfFloat.fp16Bits(HalfFloat.float(fp16: bits)) != bits
        }
        #expect(failures.isEmpty, "first failures: \(failures.prefix(5))")
    }

    #if !(os(macOS) && arch(x86_64))
    /// Swift's own Float16 conversion (round to nearest even) as an independent oracle.
    @Test func fp16MatchesSwiftFloat16() {
        var rng = SynthRandom(seed: 7)
        var failures: [Float] = []
        for _ in 0..<200_000 {
            let r = UInt32(truncatingIfNeeded: rng.next())
            // Exponents 2^-31 ... 2^28: the subnormal, normal and overflow ranges of fp16.
            let f = Float(bitPattern: (r & 0x807f_ffff) | (UInt32(96 + (r >> 8) % 60) << 23))
            if HalfFloat.fp16Bits(f) != Float16(f).bitPattern { failures.append(f) }
        }
        #expect(failures.isEmpty, "first failures: \(failures.prefix(5))")
    }
    #endif

    @Test func bf16KnownBitPatterns() {
        let cases: [(Float, UInt16)] = [
            (1.0, 0x3f80), (-2.0, 0xc000), (0.0, 0x0000), (-0.0, 0x8000),
            (.infinity, 0x7f80), (-.infinity, 0xff80),
            (1 + 0x1p-8, 0x3f80),              // tie: even
            (1 + 3 * 0x1p-8, 0x3f82),          // tie: even
            (1 + 0x1p-8 + 0x1p-20, 0x3f81),    // above the tie
            (.greatestFiniteMagnitude, 0x7f80),// rounds to infinity
            (Float(bitPattern: 0x0001_8000), 0x0002), // subnormal tie: even
        ]
        for (value, bits) in cases {
            #expect(HalfFloat.bf16Bits(value) == bits, "bf16(\(value))")
        }
        #expect(HalfFloat.float(bf16: 0x3f80) == 1)
        #expect(HalfFloat.float(bf16: 0xc000) == -2)
        let failures = (UInt16.min...UInt16.max).filter { bits in
            bits & 0x7f80 != 0x7f80 && HalfFloat.bf16Bits(HalfFloat.float(bf16: bits)) != bits
        }
        #expect(failures.isEmpty, "first failures: \(failures.prefix(5))")
    }
}
