import Foundation
import Testing
@testable import Model

@Suite("Parallel parts")
struct ParallelTests {
    struct Numbered: Error, Equatable { let index: Int }

    @Test func mapKeepsIndexOrderAndRethrowsTheFirstError() throws {
        #expect(try Parallel.map(1000) { $0 * $0 } == (0..<1000).map { $0 * $0 })
        #expect(try Parallel.map(0) { $0 }.isEmpty)
        #expect(throws: Numbered(index: 3)) {
            _ = try Parallel.map(64) { i in
                if i == 3 || i == 40 { throw Numbered(index: i) }
                return i
            }
        }
    }

    @Test func forEachRunsEveryPartOnce() {
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: 257)
        counts.initialize(repeating: 0)
        defer { counts.deallocate() }
        let shared = SharedPointer(counts.baseAddress!)
        Parallel.forEach(257) { shared.pointer[$0] += 1 }
        #expect(counts.allSatisfy { $0 == 1 })
        Parallel.forEach(0) { _ in Issue.record("no parts, no calls") }
        #expect(Parallel.parts(work: 10) == 1)
        #expect(Parallel.parts(work: 1 << 22) > 1)
    }

    /// Decoding a tensor large enough to be split gives the values of the one-part decode.
    @Test func splitDecodeIsTheWholeDecode() {
        var rng = SynthRandom(seed: 3)
        let n = (1 << 20) + 7
        let halves = (0..<n).map { _ in UInt16.random(in: 0...0x7BFF, using: &rng) }
        let expected = halves.map { HalfFloat.float(fp16: $0) }
        var out = [Float](repeating: .nan, count: n)
        halves.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { ElementCodec.decode(raw, .f16, into: $0) } }
        #expect(out == expected)
    }
}
