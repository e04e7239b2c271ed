import Model

/// Which logits a step returns per input.
public enum LogitsSelection: Sendable {
    /// The last token of each input (what decoding needs).
    case last
    /// Every token of each input (for comparing prefills with a reference).
    case all
}

extension Engine {
    /// Runs one batched step: each input's tokens are appended to its sequence at the next positions.
    /// Returns, per input, a Matrix of logits: one row (`.last`) or one per token (`.all`).
    public func step(_ inputs: [(sequence: SequenceID, tokens: [Int])], logits selection: LogitsSelection = .last) throws -> [Matrix] {
        guard !inputs.isEmpty else { return [] }
        var seen = Set<Int>()
        for (id, tokens) in inputs {
            try check(id)
            guard seen.insert(id.slot).inserted else { throw EngineError.invalidInput("\(id) appears twice in one step") }
            guard !tokens.isEmpty else { throw EngineError.invalidInput("\(id) has no tokens to run") }
            if let bad = tokens.first(where: { !(0..<config.vocabSize).contains($0) }) {
                throw EngineError.invalidInput("token \(bad) is outside the vocabulary 0..<\(config.vocabSize)")
            }
            try kv.reserve(id.slot, length: lengths[id.slot] + tokens.count)
        }
        let m = inputs.reduce(0) { $0 + $1.tokens.count }
        var logitRows: [Int] = []
        var row = 0
        for (_, tokens) in inputs {
            switch selection {
            case .last: logitRows.append(row + tokens.count - 1)
            case .all: logitRows += row..<(row + tokens.count)
            }
            row += tokens.count
        }
        let all = try forward(inputs.map { ($0.sequence.slot, lengths[$0.sequence.slot], $0.tokens) }, rows: m, logitRows: logitRows)
        for (id, tokens) in inputs { lengths[id.slot] += tokens.count }
        context.profile.finishStep()
        var out: [Matrix] = []
        var next = 0
        let vocab = config.vocabSize
        for (_, tokens) in inputs {
            let count = selection == .last ? 1 : tokens.count
            out.append(Matrix(rows: count, cols: vocab, values: Array(all.values[(next * vocab)..<((next + count) * vocab)])))
            next += count
        }
        return out
    }

    /// The decoder over `m` rows made of `inputs` (slot, first position, tokens); logits of `logitRows`.
    private func forward(_ inputs: [(slot: Int, start: Int, tokens: [Int])], rows m: Int, logitRows: [Int]) throws -> Matrix {
        let c = config, h = c.hiddenSize, ctx = context, s = ctx.scratch
        let hidden = s.buffer(.hidden, m * h, of: Float.self)
        let rowSeq = s.buffer(.rowSequence, m, of: Int32.self), rowPos = s.buffer(.rowPosition, m, of: Int32.self)
        var r = 0
        ctx.timed(.head) {
            embedding.withUnsafeBufferPointer { e in
                for (slot, start, tokens) in inputs {
                    for (i, t) in tokens.enumerated() {
                        rowSeq[r] = Int32(slot)
                        rowPos[r] = Int32(start + i)
                        (hidden + r * h).update(from: e.baseAddress! + t * h, count: h)
                        r += 1
                    }
                }
            }
        }
        let q = s.buffer(.q, m * c.queryWidth, of: Float.self)
        let k = s.buffer(.k, m * c.keyValueWidth, of: Float.self), v = s.buffer(.v, m * c.keyValueWidth, of: Float.self)
        let attention = s.buffer(.attention, m * c.queryWidth, of: Float.self)
        let projection = s.buffer(.projection, m * h, of: Float.self)
        let longestAppend = inputs.map(\.tokens.count).max() ?? 1
        for (l, layer) in layers.enumerated() {
            ctx.layer = l
            try layer.projectQKV(hidden, m: m, q: q, k: k, v: v, ctx)
            try appendKV(layer: l, k: k, v: v, rows: m, sequences: inputs.count, longest: longestAppend, rowSeq: rowSeq, rowPos: rowPos)
            ctx.timed(.other) { rotateQueries(q, rows: m, positions: rowPos) }
            try attend(layer: l, q: q, rows: m, rowSeq: rowSeq, rowPos: rowPos, into: attention)
            try layer.projectO(attention, m: m, into: projection, ctx)
            ctx.timed(.other) { add(projection, into: hidden, count: m * h) }
            try layer.mlp(hidden, m: m, into: projection, ctx)
            ctx.timed(.other) { add(projection, into: hidden, count: m * h) }
        }
        ctx.layer = nil
        return try ctx.timed(.head) {
            let n = s.buffer(.logitsInput, logitRows.count * h, of: Float.self)
            for (i, row) in logitRows.enumerated() {
                RowMath.rmsNorm(hidden + row * h, rows: 1, k: h, weight: finalNorm, eps: c.rmsNormEps, into: n + i * h)
            }
            var logits = Matrix(rows: logitRows.count, cols: c.vocabSize)
            try logits.values.withUnsafeMutableBufferPointer { try lmHead.apply(n, rows: logitRows.count, into: $0.baseAddress!, ctx) }
            return logits
        }
    }

    private func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    /// RoPE (rotate-half) on every query head of each row at the row's position, with the fp32 tables
    /// the attention kernel uses for keys.
    private func rotateQueries(_ q: UnsafeMutablePointer<Float>, rows m: Int, positions: UnsafePointer<Int32>) {
        let d = config.headDim, half = d / 2, heads = config.numAttentionHeads
        let cosTable = ropeCos.pointer.assumingMemoryBound(to: Float.self), sinTable = ropeSin.pointer.assumingMemoryBound(to: Float.self)
        for r in 0..<m {
            let cs = cosTable + Int(positions[r]) * half, sn = sinTable + Int(positions[r]) * half
            for head in 0..<heads {
                let x = q + (r * heads + head) * d
                for i in 0..<half {
                    let a = x[i], b = x[i + half]
                    x[i] = a * cs[i] - b * sn[i]
                    x[i + half] = b * cs[i] + a * sn[i]
                }
            }
        }
    }

    /// kv-append of every row's K (before RoPE) and V into its sequence's pages of `layer`.
    private func appendKV(layer l: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, rows m: Int, sequences: Int, longest: Int,
                          rowSeq: UnsafePointer<Int32>, rowPos: UnsafePointer<Int32>) throws {
        let kernel = try kernels.append(sequences: sequences, longest: longest, layer: l)
        let ranges = kernel.ranges(rows: m)
        let pool = kv.pool(l), table = UnsafePointer(kv.table), maxPages = Int32(kv.maxPages)
        let hkv = Int32(config.numKeyValueHeads), d = Int32(config.headDim)
        context.timed(.kvAppend) {
            context.threads.run(shares: ranges.count) { s in
                guard !ranges[s].isEmpty else { return }
                kernel.kernel(k, v, rowSeq, rowPos, table, maxPages, pool, hkv, d, Int32(ranges[s].lowerBound), Int32(ranges[s].upperBound))
            }
        }
    }

    /// attention-decode with one entry per row: the row's sequence's page table and its position + 1 as
    /// the length, so every row attends causally over its own sequence.
    private func attend(layer l: Int, q: UnsafePointer<Float>, rows m: Int, rowSeq: UnsafePointer<Int32>, rowPos: UnsafePointer<Int32>,
                        into out: UnsafeMutablePointer<Float>) throws {
        let s = context.scratch, maxPages = kv.maxPages
        let table = s.buffer(.entryTable, m * maxPages, of: Int32.self), lengths = s.buffer(.entryLengths, m, of: Int32.self)
        var longest = 1
        for r in 0..<m {
            (table + r * maxPages).update(from: kv.table + Int(rowSeq[r]) * maxPages, count: maxPages)
            lengths[r] = rowPos[r] + 1
            longest = max(longest, Int(lengths[r]))
        }
        let kernel = try kernels.attention(entries: m, longest: longest, queryHeads: config.numAttentionHeads, layer: l)
        let hq = config.numAttentionHeads, hkv = config.numKeyValueHeads, d = config.headDim
        let partials = s.buffer(.partials, m * hq * kernel.split * (d + 2), of: Float.self)
        let arrivals = s.buffer(.arrivals, m * hkv, of: Int32.self)
        arrivals.update(repeating: 0, count: m * hkv)
        let ranges = kernel.ranges(entries: m)
        let ws = s.workspaces(.workspace, shares: ranges.count, bytes: kernel.workspaceBytes)
        let pool = UnsafeRawPointer(kv.pool(l))
        let cosTable = UnsafePointer(ropeCos.pointer.assumingMemoryBound(to: Float.self))
        let sinTable = UnsafePointer(ropeSin.pointer.assumingMemoryBound(to: Float.self))
        context.timed(.attention) {
            context.threads.run(shares: ranges.count) { sh in
                guard !ranges[sh].isEmpty else { return }
                kernel.kernel(
                    q, pool, table, Int32(maxPages), lengths, Int32(m), cosTable, sinTable, out, partials, arrivals, Int32(hq), Int32(hkv),
                    Int32(d), Int32(ranges[sh].lowerBound), Int32(ranges[sh].upperBound), ws.base + sh * ws.stride)
            }
        }
    }
}
