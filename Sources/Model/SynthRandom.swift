/// xoshiro256** seeded through SplitMix64: fast, good-quality, and the same on every platform, so a
/// synthesized model depends only on its seed.
public struct SynthRandom: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    /// A generator for `seed`.
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9e37_79b9_7f4a_7c15
            var z = x
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
    }

    /// A generator for the stream called `name` under `seed` (FNV-1a of the name mixed into the seed),
    /// so each tensor's values do not depend on which other tensors are generated or in what order.
    public init(seed: UInt64, stream name: String) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        self.init(seed: seed ^ h)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    @inline(__always)
    public mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Uniform in `range`.
    public mutating func uniform(in range: ClosedRange<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * uniform()
    }

    /// Approximately standard normal: the sum of four uniform 16-bit fractions, centred and scaled to
    /// mean 0 and variance 1 (Irwin-Hall; tails end at +-2*sqrt(3)). One generator step per value, so
    /// billions of weights are cheap.
    @inline(__always)
    public mutating func normal() -> Float {
        let r = next()
        let sum = (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48)
        // Each fraction is (k + 0.5) / 65536, mean 1/2 and variance ~1/12; four of them: mean 2, variance 1/3.
        // (Int32 converts to Float in one instruction; UInt64 does not.)
        return (Float(Int32(truncatingIfNeeded: sum)) + 2) * (1.0 / 65536.0) * 1.732_050_8 - 2 * 1.732_050_8
    }
}
