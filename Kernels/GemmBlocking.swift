import KernelKit

/// The analytical (BLIS-style) configuration both GEMM families derive from the shape and the caches,
/// without measuring: the register tile that issues the fewest vector instructions per useful
/// multiply-add over the whole of M (every row panel unpacks the weights again, padded rows cost as
/// much as real ones); a K block whose packed weight panel fills half of L1; an M block whose
/// activations fit half of L2; an N block whose panels fit half of this core's share of the last-level
/// cache; one thread per core, splitting M only when N alone would not feed the threads. When one row
/// panel covers M (decode), the weights stream from memory once and the K block takes the whole
/// reduction where L1 allows. The packed panel is prefetched ahead (`pf`, where the family has it) at
/// every M: the first row panel of each block streams it from memory, and the hardware prefetcher
/// stops at every panel boundary (measured: gemm-w4a4 at M = 16 twice as fast cold, M = 256 no slower).
struct GemmBlocking {
    /// Packed weight bytes per (k, output channel): 1 for INT8, 0.5 for INT4.
    var weightBytesPerK: Double
    /// K blocks round the reduction up to a multiple of this (4 for INT8, the group size for INT4)...
    var kRound: Int
    /// ...and are never capped below this.
    var kcFloor: Int
    /// Int32 lanes of the target's vectors (1 for portable C).
    var lanes: Int
    /// Vector instructions per (row, weight vector) in the inner loop: the dot products and any adds.
    var dotOps = 1
    /// Vector instructions unpacking one weight vector (INT4 nibbles: xor, shift and two masks).
    var unpackOps = 0
    /// Activation broadcasts per (row, weight vector).
    var broadcasts = 1
    /// The panel widths (nr) a caller can use; gemm-w4a4-kv wants panels that divide the head dimension.
    var panelWidths: @Sendable (Int) -> Bool = { _ in true }
    /// Prefetch distance (bytes) along the weight panels, for families with a `pf` parameter.
    var panelPrefetch = 2048

    /// Useful multiply-adds per issue cycle of a tile over all of M (a relative score): per step of
    /// the K loop a row panel issues `v` weight loads, `mr * broadcasts` activation loads and
    /// `v * (mr * dotOps + unpackOps)` vector instructions, two of each per cycle, and the front end
    /// takes four instructions a cycle, where a broadcast that feeds a single vector (v = 1) is folded
    /// into the dot product as an indexed memory operand, which Intel cores split into two again.
    /// Measured, gemm-w4a4 cold, N = 11008, K = 4096: 8 x 32 with fp32 sums in L1 beats 8 x 16 in
    /// registers by 22% at M = 64, 15% at M = 16 and 10-15% at M = 8 (one row panel: 1.63-1.84 ms vs
    /// 1.88-2.01; a microbenchmark of the 8 x 16 inner loop runs 16 dot products in 4.1 ns with the
    /// activations in registers and 5.6-6.8 ns with them folded from memory); at M = 2 and 4, where the
    /// weights' stream binds, 16 and 32 wide measure the same within the run-to-run noise.
    func tileScore(mr: Int, nr: Int, m: Int) -> Double {
        let v = Double(nr) / Double(max(lanes, 1))
        let panels = Double((m + mr - 1) / mr)
        let alu = v * (Double(mr * dotOps) + Double(unpackOps))
        let loads = v + Double(mr * broadcasts)
        let instructions = alu + loads + (v == 1 ? Double(mr * broadcasts) : 0)
        return Double(m * nr) / (panels * max(alu / 2, loads / 2, instructions / 4))
    }

    /// The register tiles the family allows (with `adjust` applied), best `tileScore` first; equal scores
    /// keep the domain's order.
    func rankedTiles(
        _ family: some KernelFamily, base: Configuration, workload: Workload, trial adjust: (inout Configuration) -> Void = { _ in }
    ) -> [(mr: Int, nr: Int)] {
        func ints(_ name: String) -> [Int] { family.intValues(name) }
        let m = max(workload["m"], 1)
        var scored: [(mr: Int, nr: Int, score: Double)] = []
        for mr in ints("mr") {
            for nr in ints("nr") where panelWidths(nr) {
                var trial = base
                trial["mr"] = .int(mr)
                trial["nr"] = .int(nr)
                trial["mc"] = .int(ints("mc").first { $0 % mr == 0 } ?? 8)
                trial["nc"] = .int(ints("nc").first { $0 % nr == 0 } ?? 64)
                adjust(&trial)
                guard (try? family.check(trial, machine: nil)) != nil else { continue }
                scored.append((mr, nr, tileScore(mr: mr, nr: nr, m: m)))
            }
        }
        // A stable order: a later tile moves ahead only when it scores better by more than rounding.
        var ranked: [(mr: Int, nr: Int, score: Double)] = []
        for t in scored {
            let at = ranked.firstIndex { t.score > $0.score + 1e-9 } ?? ranked.count
            ranked.insert(t, at: at)
        }
        return ranked.map { ($0.mr, $0.nr) }
    }

    /// Where a search starts: `configure`'s configuration, then for each thread split (the analytical
    /// one, then the other: threads along M when every thread gets two rows, else along N) the `tiles`
    /// best-ranked tiles for the rows one thread takes, each blocked for those rows. The tile score
    /// counts instructions only and the split is a rule of thumb; measured, both miss: gemm-w4a4 at
    /// M = 8 (N = K = 4096, cold) ran a 4 x 16 tile with the two threads splitting M (four rows each) at
    /// 1.4x the analytical 8 x 8 tile on undivided rows, a point the local search around the analytical
    /// one had not reached in 24 trials. `finish` completes each configuration as the family's
    /// analytical one is completed.
    func seeds(
        _ family: some KernelFamily, base: Configuration, workload: Workload, machine: MachineContext, tiles: Int = 2,
        trial adjust: (inout Configuration) -> Void = { _ in }, finish: (inout Configuration) -> Void = { _ in }
    ) -> [Configuration] {
        let threads = family.threadsPerCore(machine)
        let m = max(workload["m"], 1)
        var seeds: [Configuration] = []
        func add(_ c: Configuration) {
            if !seeds.contains(c), (try? family.check(c, machine: machine)) != nil { seeds.append(c) }
        }
        var analytical = configure(family, base: base, workload: workload, machine: machine, trial: adjust)
        finish(&analytical)
        add(analytical)
        var splits = [analytical.int("tm")]
        let other = splits[0] == 1 ? threads : 1
        if other != splits[0], family.intValues("tm").contains(other), other == 1 || m >= 2 * other { splits.append(other) }
        for tm in splits {
            var rows = workload
            rows.shape["m"] = (m + tm - 1) / tm
            for tile in rankedTiles(family, base: base, workload: rows, trial: adjust).prefix(tiles) {
                var c = configure(family, base: base, workload: rows, machine: machine, tile: tile, trial: adjust)
                c["tm"] = .int(tm)
                finish(&c)
                add(c)
            }
        }
        return seeds
    }

    /// The analytical configuration; `tile` forces the register tile instead of the best-scored one.
    func configure(
        _ family: some KernelFamily, base: Configuration, workload: Workload, machine: MachineContext, tile: (mr: Int, nr: Int)? = nil,
        trial adjust: (inout Configuration) -> Void = { _ in }
    ) -> Configuration {
        var c = base
        func ints(_ name: String) -> [Int] { family.intValues(name) }
        let m = max(workload["m"], 1), n = max(workload["n"], 1), k = max(workload["k"], 1)
        let best = tile ?? rankedTiles(family, base: base, workload: workload, trial: adjust).first
        let mr = best?.mr ?? 4, nr = best?.nr ?? 8
        c["mr"] = .int(mr)
        c["nr"] = .int(nr)
        let topology = machine.topology
        let l1 = Double(topology.dataCache(level: 1)?.sizeBytes ?? 32 << 10)
        let l2 = Int(topology.dataCache(level: 2)?.sizeBytes ?? 512 << 10)
        let llc = topology.lastLevelCache
        let l3Share = Double(Int(llc?.sizeBytes ?? 8 << 20) / max(1, llc?.pusPerInstance ?? 1))
        let kcCap = max(kcFloor, (k + kRound - 1) / kRound * kRound)
        // A panel reused by several row panels stays in half of L1; a streamed one (M <= mr) may fill it.
        let streams = m <= mr
        let l1Share = streams ? l1 : l1 / 2
        let kc = ints("kc").last { Double($0 * nr) * weightBytesPerK <= l1Share && $0 <= kcCap } ?? ints("kc")[0]
        c["kc"] = .int(kc)
        c["mc"] = .int(ints("mc").last { $0 % mr == 0 && $0 * kc <= l2 / 2 && $0 <= max(m, mr) } ?? ints("mc").first { $0 % mr == 0 } ?? mr)
        c["nc"] = .int(
            ints("nc").last { $0 % nr == 0 && Double($0 * kc) * weightBytesPerK <= l3Share / 2 && $0 <= max(n, nr) }
                ?? ints("nc").first { $0 % nr == 0 } ?? nr)
        let threads = family.threadsPerCore(machine)
        c["threads"] = .int(threads)
        // Split M only when every thread still gets several row tiles and N alone would not feed them.
        let tm = (m >= 8 * mr * threads && n / nr < 4 * threads) ? threads : 1
        c["tm"] = .int(ints("tm").contains(tm) ? tm : 1)
        c["placement"] = .name(ThreadPlacement.scatter.rawValue)
        if family.parameter("pf") != nil {
            c["pf"] = .int(ints("pf").last { $0 <= panelPrefetch } ?? 0)
        }
        return c
    }
}
