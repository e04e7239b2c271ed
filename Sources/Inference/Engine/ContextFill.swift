import KernelKit

extension Engine {
    /// Makes a sequence of `length` tokens without running the model: every layer's cache gets random K
    /// and V rows (uniform in [-1, 1], K with a few channels 20x larger per head) written by the
    /// kv-append kernel, so the entries are valid cache contents of the engine's format. For benchmarks
    /// of decode at a long context, where a real prefill would take far longer than the decode being
    /// measured; the logits that follow are meaningless, the work is the same.
    public func makeFilledSequence(length: Int, seed: UInt64) throws -> SequenceID {
        let id = try makeSequence()
        guard length > 0 else { return id }
        do {
            try kv.reserve(id.slot, length: length)
        } catch {
            release(id)
            throw error
        }
        let width = config.keyValueWidth, chunk = min(length, 256)
        var rng = SeededGenerator(seed: seed)
        let gain = (0..<width).map { $0 % config.headDim == 7 ? Float(20) : 1 }
        let keys = (0..<chunk * width).map { Float.random(in: -1...1, using: &rng) * gain[$0 % width] }
        let values = (0..<chunk * width).map { _ in Float.random(in: -1...1, using: &rng) }
        let rowSeq = [Int32](repeating: Int32(id.slot), count: chunk)
        let table = UnsafePointer(kv.table), maxPages = Int32(kv.maxPages)
        let hkv = Int32(config.numKeyValueHeads), d = Int32(config.headDim)
        for l in 0..<config.numHiddenLayers {
            let kernel = try kernels.append(sequences: 1, longest: chunk, layer: l, role: "kv-fill")
            let pool = kv.pool(l)
            var start = 0
            while start < length {
                let count = min(chunk, length - start)
                let positions = (0..<count).map { Int32(start + $0) }
                let ranges = kernel.ranges(rows: count)
                keys.withUnsafeBufferPointer { k in
                    values.withUnsafeBufferPointer { v in
                        rowSeq.withUnsafeBufferPointer { seq in
                            positions.withUnsafeBufferPointer { pos in
                                context.threads.run(shares: ranges.count) { s in
                                    guard !ranges[s].isEmpty else { return }
                                    kernel.kernel(
                                        k.baseAddress, v.baseAddress, seq.baseAddress, pos.baseAddress, table, maxPages, pool, hkv, d,
                                        Int32(ranges[s].lowerBound), Int32(ranges[s].upperBound))
                                }
                            }
                        }
                    }
                }
                start += count
            }
        }
        lengths[id.slot] = length
        return id
    }
}
