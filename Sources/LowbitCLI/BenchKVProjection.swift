import Foundation
import KernelKit
import Kernels
import Pipeline

extension BandwidthBenchmark {
    /// gemm-w4a4-kv (the K/V projections quantizing into the cache in their epilogue) against the two
    /// kernels it replaces: gemm-w4a4 writing fp32 Y, then kv-append quantizing Y into the cache. Same
    /// GEMM shape, blocking, threads, cache format and page size, one run; every row is verified first.
    func kvProjection(
        ms: [Int], hkv: Int, d: Int, k: Int, outliers: Int, ctx: Int, cache: String, page: Int, overrides: [String: ParamValue], rounds: Int = 5
    ) {
        let fused = GemmW4A4KV(), gemm = GemmW4A4(), append = KVAppend()
        var t = Table(
            ["M", "variant", "fused", "gemm-w4a4", "kv-append", "gemm + append", "separate / fused", "status"],
            alignments: [.right, .left, .right, .right, .right, .right, .right, .left])
        for m in ms {
            let w = Workload(family: fused.name, shape: ["m": m, "hkv": hkv, "d": d, "k": k, "outliers": outliers, "ctx": ctx])
            var fc = fused.analyticalConfiguration(for: w, machine: context)
            for (key, value) in overrides { fc[key] = value }
            if overrides["threads"] != nil && overrides["tm"] == nil { fc["tm"] = .int(1) }
            fc["cache"] = .name(cache)
            fc["page"] = .int(page)
            // gemm-w4a4 with exactly the fused kernel's blocking and threads.
            let gw = GemmW4A4KV.gemmWorkload(w)
            var gc = Configuration([:])
            for spec in gemm.parameters { gc[spec.name] = fc[spec.name] }
            // kv-append of the same m rows (one sequence appending m tokens), same threads.
            let aw = Workload(family: append.name, shape: ["b": 1, "hkv": hkv, "d": d, "ctx": max(ctx, m), "new": m])
            var ac = append.defaultConfiguration(isa: .portable, machine: context)
            ac["cache"] = .name(cache)
            ac["page"] = .int(page)
            ac["threads"] = fc["threads"]
            ac["placement"] = fc["placement"]
            // The three take turns, `rounds` times: each keeps its best minimum, so a burst of load from
            // other processes on the machine hits all of them alike.
            let points: [(any KernelFamily, Workload, Configuration)] = [(fused, w, fc), (gemm, gw, gc), (append, aw, ac)]
            var results: [TrialResult] = []
            var times: [Double?] = [nil, nil, nil]
            for _ in 0..<rounds {
                results = points.map { f, w, c in
                    let r = runner.run(f, w, c, seed: seed)
                    FileHandle.standardError.write(Data("  \(w) [\(c)]: \(r.timing.map { TrialReport.ms($0.min) } ?? r.status.rawValue)\n".utf8))
                    return r
                }
                for (i, r) in results.enumerated() {
                    if let t = r.timing?.min { times[i] = min(times[i] ?? t, t) }
                }
            }
            let separate = times[1].flatMap { g in times[2].map { g + $0 } }
            let failed = results.filter { !$0.succeeded }.map { "\($0.status.rawValue): \($0.message ?? "")" }
            t.add([
                "\(m)", fc["isa"]!.description,
                times[0].map(TrialReport.ms) ?? "-", times[1].map(TrialReport.ms) ?? "-", times[2].map(TrialReport.ms) ?? "-",
                separate.map(TrialReport.ms) ?? "-",
                (separate.flatMap { s in times[0].map { String(format: "%.2fx", s / $0) } }) ?? "-",
                failed.isEmpty ? "ok" : failed.joined(separator: "; "),
            ])
        }
        print(
            "gemm-w4a4-kv (K and V projections, hkv = \(hkv), d = \(d): N = \(2 * hkv * d), K = \(k), \(outliers) outliers) into a \(cache) cache of \(page)-token pages, on \(machine.cpu.name)"
        )
        print("fused: the GEMM quantizing each (token, head) row into the cache in its epilogue; separate: gemm-w4a4 (fp32 Y out) then kv-append of the same rows; best minimum time of \(rounds) rounds taking turns, \(dataNote)")
        print(t.render())
    }
}
