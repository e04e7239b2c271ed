import Testing

@testable import Inference

@Suite("Engine: packed weights kept per layer")
struct PackedWeightsTests {
    /// Packs `layout` into `weights`, filling the buffer with a byte derived from the layout's name, and
    /// returns whether the packing function ran and the byte the pointer now shows.
    func use(_ weights: PackedWeights, _ layout: String, _ policy: PackingPolicy) -> (packed: Bool, byte: UInt8) {
        var packed = false
        let fill = UInt8(truncatingIfNeeded: layout.unicodeScalars.first!.value)
        let p = weights.packing(layout, bytes: 64, policy: policy) { out in
            packed = true
            out.initializeMemory(as: UInt8.self, repeating: fill, count: 64)
        }
        return (packed, p.load(fromByteOffset: 63, as: UInt8.self))
    }

    @Test func leastRecentlyUsedLayoutIsDroppedAndPackedAgain() {
        let policy = PackingPolicy(layoutsPerLayer: 2)
        let w = PackedWeights()
        #expect(use(w, "a", policy) == (true, 97))
        #expect(use(w, "b", policy) == (true, 98))
        #expect(use(w, "a", policy) == (false, 97))  // kept: no packing, and now the most recent
        #expect(w.layouts == ["b", "a"])
        #expect(use(w, "c", policy) == (true, 99))  // drops b, the least recently used
        #expect(w.layouts == ["a", "c"])
        #expect(policy.packings == 3 && policy.dropped == 1 && policy.bytesHeld == 128)
        #expect(use(w, "b", policy) == (true, 98))  // packed again; a goes
        #expect(w.layouts == ["c", "b"])
        // The policy counts over every layer that shares it.
        let other = PackedWeights()
        #expect(use(other, "a", policy).packed)
        #expect(policy.packings == 5 && policy.dropped == 2 && policy.bytesHeld == 192)
    }

    @Test func oneLayoutPerLayerRepacksOnEveryChange() {
        let policy = PackingPolicy(layoutsPerLayer: 1)
        let w = PackedWeights()
        for layout in ["a", "a", "b", "a", "a"] { _ = use(w, layout, policy) }
        #expect(w.layouts == ["a"])
        #expect(policy.packings == 3 && policy.dropped == 2 && policy.bytesHeld == 64)
    }
}
